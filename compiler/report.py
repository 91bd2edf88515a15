"""What a compiled program costs, layer by layer: the rows `grace compile` prints.

Per step of the program (a layer, or a unit's step: `Program.steps`): its
tiles (compute commands), instructions, bytes moved by its LOADs and STOREs,
compute cycles (each command priced by its engine's cycle model, commands one
after another) and memory cycles at a stated port bandwidth (bytes moved /
bytes per cycle). A step is memory-bound when its memory cycles exceed its
compute cycles. The frame's minimum traffic is every byte it touches moved
once: the union of the address ranges its transfers read and write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from compiler.isa import Instruction, decode
from compiler.streams import source_bits, word_bits
from defs.isa import Buffer, Opcode, Source
from defs.params import GraceParams
from model.conv_shape import ConvShape
from rtl import act_cycles, heatmap_cycles, motion_cycles, softmax_cycles, warp_cycles
from rtl.act.motion_layouts import MotionOp
from rtl.conv_cycles import tile_cycles as conv_tile_cycles

#: Port widths the report prices memory at (bytes per cycle).
BANDWIDTHS = (16, 64)


@dataclass
class StepCost:
    name: str
    tiles: int = 0
    instructions: int = 0
    bytes_loaded: int = 0
    bytes_stored: int = 0
    compute_cycles: int = 0
    ranges: list[tuple[int, int, int, int]] = field(default_factory=list, repr=False)

    @property
    def bytes_moved(self) -> int:
        return self.bytes_loaded + self.bytes_stored

    def memory_cycles(self, bytes_per_cycle: int) -> int:
        return -(-self.bytes_moved // bytes_per_cycle)

    def memory_bound(self, bytes_per_cycle: int) -> bool:
        return self.memory_cycles(bytes_per_cycle) > self.compute_cycles

    def row(self) -> dict[str, object]:
        out: dict[str, object] = {
            "step": self.name, "tiles": self.tiles, "instructions": self.instructions,
            "bytes_moved": self.bytes_moved, "compute_cycles": self.compute_cycles,
        }  # fmt: skip
        for b in BANDWIDTHS:
            out[f"memory_cycles_{b}B"] = self.memory_cycles(b)
            out[f"memory_bound_{b}B"] = self.memory_bound(b)
        return out


def command_cycles(inst: Instruction, params: GraceParams) -> int:
    """One compute command's cycles by its engine's cycle model (alone, no stalls)."""
    f = inst.fields
    if inst.op == Opcode.CONV:
        s = 2 if f["stride2"] else 1
        kh, kw = f["kernel_h"], f["kernel_w"]
        outputs = (f["out_groups"] - 1) * params.array.rows + f["last_lanes"]
        shape = ConvShape(  # a shape with the command's output size and beats
            channels=f["in_groups"] * params.array.cols, out_channels=outputs,
            height=(f["out_height"] - 1) * s + kh, width=(f["out_width"] - 1) * s + kw,
            kernel_h=kh, kernel_w=kw, stride=s, pool=bool(f["pool"]),
        )  # fmt: skip
        return conv_tile_cycles(params, shape).cycles
    if inst.op == Opcode.WARP:
        return warp_cycles.tile_cycles(params, f["out_height"] * f["out_width"], f["planes"])
    if inst.op == Opcode.ACT:
        return act_cycles.tile_cycles(params, f["pixels"], f["groups"])
    if inst.op == Opcode.SOFTMAX:
        return softmax_cycles.tile_cycles(params, f["pixels"], f["channels"])
    if inst.op == Opcode.HEATMAP:
        return heatmap_cycles.tile_cycles(params, f["size"], f["keypoints"])
    if inst.op == Opcode.MOTION:
        return motion_cycles.command_cycles(params, MotionOp(f["op"]), f["size"], f["keypoints"])
    return 0


def cost_steps(words: Sequence[int], steps: Sequence[str], params: GraceParams) -> list[StepCost]:
    """The program's steps in order of first appearance, each with its costs."""
    costs: dict[str, StepCost] = {}
    for word, name in zip(words, steps, strict=True):
        inst = decode(word, params)
        cost = costs.setdefault(name, StepCost(name))
        cost.instructions += 1
        if inst.op in (Opcode.LOAD, Opcode.STORE):
            f = inst.fields
            if inst.op == Opcode.LOAD:
                size = -(-word_bits(Buffer(f["buffer"]), params) // 8)
            else:
                size = -(-source_bits(Source(f["source"]), params) // 8)
            moved = f["rows"] * f["row_words"] * size
            if inst.op == Opcode.LOAD:
                cost.bytes_loaded += moved
            else:
                cost.bytes_stored += moved
            cost.ranges.append((f["dram_addr"], f["stride"], f["rows"], f["row_words"] * size))
        elif inst.op not in (Opcode.SYNC, Opcode.END):
            cost.tiles += 1
            cost.compute_cycles += command_cycles(inst, params)
    return list(costs.values())


def touched_bytes(costs: Sequence[StepCost]) -> int:
    """Bytes in the union of every transfer's address ranges: each moved once."""
    starts, ends = [], []
    for cost in costs:
        for addr, stride, rows, length in cost.ranges:
            first = addr + stride * np.arange(rows, dtype=np.int64)
            starts.append(first)
            ends.append(first + length)
    if not starts:
        return 0
    s, e = np.concatenate(starts), np.concatenate(ends)
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    reach = np.maximum.accumulate(e)  # the furthest end so far
    gaps = np.maximum(0, s[1:] - reach[:-1])  # a new run starts past the reach
    return int(reach[-1] - s[0] - gaps.sum())
