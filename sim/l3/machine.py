"""L3: a program's instructions run on a memory image, with the engines' state.

The three queues of docs/isa.md — load, compute, store — each run their
instructions in order; an instruction waits for the tokens its header pops and
gives the ones it pushes when done. L3 runs the load queue as far as its
tokens let it, then the compute queue, then the store queue, and again, until
every queue has reached its END: loads run as far ahead as the tokens allow,
so a load that misses a token overwrites data a compute still needs, and the
results show it. When no queue may run and some queue has not ended, the
program can never finish, and L3 says which instruction waits for which
token. Every refusal names the instruction's index and the field at fault, in
the terms the RTL controller (issue 17) checks too.

Memory words: a buffer word of b bits takes ⌈b/8⌉ bytes, little-endian; a
transfer moves `rows` rows of `row_words` words, the rows `stride` bytes apart.
Every engine is in: the conv, warp and element-wise engines and the softmax,
heatmap and motion units (their loads, commands and output streams).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from compiler.isa import TOKENS, Instruction, InstructionError, decode
from defs.isa import QUEUE_OF, Buffer, Opcode, Queue, Source
from defs.params import GraceParams
from rtl.act.heatmap_layouts import gaussian_write_layout
from rtl.act.keypoints import grid_write_layout, jacobian_write_layout, keypoint_write_layout
from rtl.act.layouts import param_write_layout, table_write_layout
from rtl.act.motion_layouts import output_layout
from rtl.act.softmax import exp_write_layout
from rtl.conv_layouts import channel_param_layout
from rtl.warp.layouts import feature_write_layout, flow_layout
from sim.l3.conv import ConvBuffers, ConvCommandError, run_command
from sim.l3.elementwise import ActState, SoftmaxState, UnitCommandError, WarpState
from sim.l3.keypoints import HeatmapState, MotionState
from sim.l3.words import signed


class ProgramError(ValueError):
    """An illegal program: one line naming the instruction's index and field."""


def word_bits(buffer: Buffer, params: GraceParams) -> int:
    """Bits of one word of a LOAD into `buffer`: the engine's buffer word, or its write
    stream's payload (from the layouts the engines define)."""
    a, n, lanes = params.array, params.numeric, params.act.lanes
    widths = {
        Buffer.CONV_INPUT: a.cols * n.act_bits,
        Buffer.CONV_WEIGHT: a.rows * a.cols * n.weight_bits,
        Buffer.CONV_PARAM: channel_param_layout(params).size,
        Buffer.CONV_RESIDUAL: n.act_bits,
        Buffer.WARP_FEATURE: feature_write_layout(params).size,
        Buffer.WARP_FLOW: flow_layout().size,
        Buffer.ACT_TABLE: table_write_layout().size,
        Buffer.ACT_PARAM: param_write_layout(params).size,
        Buffer.ACT_INPUT: lanes * n.act_bits,
        Buffer.SOFTMAX_EXP: exp_write_layout().size,
        Buffer.SOFTMAX_INPUT: n.act_bits,
        Buffer.HEATMAP_GRID: grid_write_layout(params).size,
        Buffer.HEATMAP_KEYPOINT: keypoint_write_layout(params).size,
        Buffer.HEATMAP_GAUSSIAN: gaussian_write_layout(params).size,
        Buffer.MOTION_GRID: grid_write_layout(params).size,
        Buffer.MOTION_KEYPOINT: keypoint_write_layout(params).size,
        Buffer.MOTION_JACOBIAN: jacobian_write_layout(params).size,
        Buffer.MOTION_MASK: 8,
    }
    if buffer not in widths:
        raise KeyError(buffer)
    return widths[buffer]


def source_bits(source: Source, params: GraceParams) -> int:
    """Bits of one word of an engine's output stream."""
    n = params.numeric
    widths = {
        Source.CONV: n.act_bits,
        Source.WARP: params.warp.lanes * n.act_bits,
        Source.ACT: params.act.lanes * n.act_bits,
        Source.SOFTMAX: 8,
        Source.HEATMAP: 8,
        Source.MOTION: output_layout().size,
    }
    if source not in widths:
        raise KeyError(source)
    return widths[source]


@dataclass
class Machine:
    """The state L3 runs a program on: the memory image and the engines'."""

    params: GraceParams
    memory: bytearray
    conv: ConvBuffers = field(init=False)
    residual: deque[int] = field(default_factory=deque)  # the conv engine's residual stream
    warp: WarpState = field(init=False)
    act: ActState = field(init=False)
    softmax: SoftmaxState = field(default_factory=SoftmaxState)
    heatmap: HeatmapState = field(init=False)
    motion: MotionState = field(init=False)
    outputs: dict[Source, deque[int]] = field(default_factory=dict)  # output streams

    def __post_init__(self) -> None:
        self.conv = ConvBuffers(self.params)
        self.warp = WarpState(self.params)
        self.act = ActState(self.params)
        self.heatmap = HeatmapState(self.params)
        self.motion = MotionState(self.params)
        self.outputs = {source: deque() for source in Source}

    def stream_writer(self, buffer: Buffer) -> Callable[[int], None] | None:
        """Where a LOAD's words go when `buffer` is a write stream or an input stream."""
        residual_bits = self.params.numeric.act_bits
        return {
            Buffer.CONV_RESIDUAL: lambda w: self.residual.append(signed(w, residual_bits)),
            Buffer.WARP_FEATURE: self.warp.write_feature,
            Buffer.WARP_FLOW: self.warp.flow.append,
            Buffer.ACT_TABLE: self.act.write_table,
            Buffer.ACT_PARAM: self.act.write_param,
            Buffer.ACT_INPUT: self.act.inputs.append,
            Buffer.SOFTMAX_EXP: self.softmax.write_exp,
            Buffer.SOFTMAX_INPUT: self.softmax.inputs.append,
            Buffer.HEATMAP_GRID: self.heatmap.write_grid,
            Buffer.HEATMAP_KEYPOINT: self.heatmap.write_keypoint,
            Buffer.HEATMAP_GAUSSIAN: self.heatmap.write_gaussian,
            Buffer.MOTION_GRID: self.motion.write_grid,
            Buffer.MOTION_KEYPOINT: self.motion.write_keypoint,
            Buffer.MOTION_JACOBIAN: self.motion.write_jacobian,
            Buffer.MOTION_MASK: self.motion.masks.append,
        }.get(buffer)


#: The queue an instruction's "previous" and "next" tokens come from and go to.
_PREV = {Queue.COMPUTE: Queue.LOAD, Queue.STORE: Queue.COMPUTE}
_NEXT = {Queue.LOAD: Queue.COMPUTE, Queue.COMPUTE: Queue.STORE}


def run(words: Sequence[int], memory: bytearray, params: GraceParams) -> Machine:
    """Run a program (its instruction words) on `memory` (changed in place by stores)."""
    queues: dict[Queue, deque[tuple[int, Instruction]]] = {q: deque() for q in Queue}
    for index, word in enumerate(words):
        try:
            inst = decode(word, params, index=index)
        except InstructionError as exc:
            raise ProgramError(str(exc)) from None
        if inst.op in QUEUE_OF:
            queue = QUEUE_OF[inst.op]
        elif inst.fields["queue"] in set(Queue):
            queue = Queue(inst.fields["queue"])
        else:
            raise ProgramError(
                f"instruction {index}: {inst.op.name}.queue = {inst.fields['queue']} names no queue"
            )
        _check_tokens(index, inst, queue)
        queues[queue].append((index, inst))
    for queue, items in queues.items():
        if not items or items[-1][1].op != Opcode.END:
            raise ProgramError(f"the {queue.name.lower()} queue does not end with END")
        early = [i for i, inst in list(items)[:-1] if inst.op == Opcode.END]
        if early:
            raise ProgramError(
                f"instruction {early[0]}: END before the {queue.name.lower()} queue's last"
            )

    machine = Machine(params, memory)
    tokens = {(a, b): 0 for a in Queue for b in Queue}  # tokens[(from, to)]
    while any(queues.values()):
        ran = False
        for queue in Queue:  # each queue as far as its tokens let it, loads first
            while queues[queue]:
                index, inst = queues[queue][0]
                needs = _needs(inst, queue)
                if any(tokens[(source, queue)] == 0 for source in needs):
                    break
                for source in needs:
                    tokens[(source, queue)] -= 1
                _execute(machine, index, inst)
                if inst.tokens["push_prev"]:
                    tokens[(queue, _PREV[queue])] += 1
                if inst.tokens["push_next"]:
                    tokens[(queue, _NEXT[queue])] += 1
                queues[queue].popleft()
                ran = True
        if not ran:
            waiting = [
                f"instruction {queues[q][0][0]} ({queues[q][0][1].op.name}, {q.name.lower()} "
                f"queue) waits for a token from the "
                + " and ".join(s.name.lower() for s in _needs(queues[q][0][1], q))
                + " queue"
                for q in Queue
                if queues[q]
            ]
            raise ProgramError("the program can never finish: " + "; ".join(waiting))
    return machine


def _needs(inst: Instruction, queue: Queue) -> list[Queue]:
    needs = [_PREV[queue]] if inst.tokens["pop_prev"] else []
    return needs + ([_NEXT[queue]] if inst.tokens["pop_next"] else [])


def _check_tokens(index: int, inst: Instruction, queue: Queue) -> None:
    """A token flag must name a neighbour the queue has (load has no previous queue,
    store no next one)."""
    for flag in TOKENS:
        side = _PREV if flag.endswith("prev") else _NEXT
        if inst.tokens[flag] and queue not in side:
            raise ProgramError(
                f"instruction {index}: {inst.op.name}.{flag} on the {queue.name.lower()} "
                "queue, which has no such neighbour"
            )


def _execute(machine: Machine, index: int, inst: Instruction) -> None:
    where = f"instruction {index}: {inst.op.name}"
    if inst.op == Opcode.LOAD:
        _load(machine, where, inst.fields)
    elif inst.op == Opcode.STORE:
        _store(machine, where, inst.fields)
    elif inst.op == Opcode.CONV:
        fields = inst.fields
        residual = list(machine.residual) if fields["residual"] else []
        try:
            out = run_command(machine.conv, fields, residual)
        except ConvCommandError as exc:
            raise ProgramError(f"{where}: {exc}") from None
        if fields["residual"]:
            used = _residual_count(fields, machine.params)
            if used > len(machine.residual):
                raise ProgramError(
                    f"{where}: the residual stream holds {len(machine.residual)} "
                    f"values, the command needs {used}"
                )
            for _ in range(used):
                machine.residual.popleft()
        mask = (1 << machine.params.numeric.act_bits) - 1
        machine.outputs[Source.CONV].extend(int(v) & mask for v in out)
    elif inst.op in _UNITS:
        source, unit = _UNITS[inst.op]
        try:
            out = getattr(machine, unit).run(inst.fields)
        except UnitCommandError as exc:
            raise ProgramError(f"{where}: {exc}") from None
        machine.outputs[source].extend(out)
    # SYNC and END act through their tokens alone; decode refused any other opcode


#: The compute opcodes L3 runs besides CONV: the output stream and the state they use.
_UNITS = {
    Opcode.WARP: (Source.WARP, "warp"),
    Opcode.ACT: (Source.ACT, "act"),
    Opcode.SOFTMAX: (Source.SOFTMAX, "softmax"),
    Opcode.HEATMAP: (Source.HEATMAP, "heatmap"),
    Opcode.MOTION: (Source.MOTION, "motion"),
}


def _residual_count(fields: dict[str, int], params: GraceParams) -> int:
    ho, wo = fields["out_height"], fields["out_width"]
    pixels = (ho // 2) * (wo // 2) * 4 if fields["pool"] else ho * wo
    outputs = (fields["out_groups"] - 1) * params.array.rows + fields["last_lanes"]
    return pixels * outputs


def _span(machine: Machine, where: str, fields: dict[str, int], width: int) -> list[int]:
    """The byte address of every word the transfer names, checked against the image."""
    rows, row_words, stride = fields["rows"], fields["row_words"], fields["stride"]
    if rows < 1 or row_words < 1:
        raise ProgramError(f"{where}: rows = {rows}, row_words = {row_words}: both must be ≥ 1")
    size = -(-width // 8)
    last = fields["dram_addr"] + (rows - 1) * stride + row_words * size
    if last > len(machine.memory):
        raise ProgramError(
            f"{where}.dram_addr: bytes {fields['dram_addr']}..{last - 1} leave the "
            f"{len(machine.memory)}-byte memory image"
        )
    return [
        fields["dram_addr"] + r * stride + k * size for r in range(rows) for k in range(row_words)
    ]


def _load(machine: Machine, where: str, fields: dict[str, int]) -> None:
    p = machine.params
    try:
        buffer = Buffer(fields["buffer"])
        width = word_bits(buffer, p)
    except (ValueError, KeyError):
        raise ProgramError(
            f"{where}.buffer = {fields['buffer']}: no such buffer (docs/isa.md)"
        ) from None
    size = -(-width // 8)
    words = [
        int.from_bytes(machine.memory[a : a + size], "little")
        for a in _span(machine, where, fields, width)
    ]
    writer = machine.stream_writer(buffer)
    if writer is not None:
        try:
            for word in words:
                writer(word)
        except UnitCommandError as exc:
            raise ProgramError(f"{where}: {exc}") from None
        return
    depth = {
        Buffer.CONV_INPUT: len(machine.conv.inputs),
        Buffer.CONV_WEIGHT: len(machine.conv.weights),
        Buffer.CONV_PARAM: len(machine.conv.constants["bias"]),
    }[buffer]
    base = fields["buffer_addr"]
    if base + len(words) > depth:
        raise ProgramError(
            f"{where}.buffer_addr: words {base}..{base + len(words) - 1} overrun the "
            f"{depth}-word {buffer.name} buffer"
        )
    for k, word in enumerate(words):
        addr = base + k
        if buffer == Buffer.CONV_INPUT:
            machine.conv.write_input(addr, word)
        elif buffer == Buffer.CONV_WEIGHT:
            row_bits = p.array.cols * p.numeric.weight_bits
            for row in range(p.array.rows):
                machine.conv.write_weight(
                    addr, row, (word >> (row * row_bits)) & ((1 << row_bits) - 1)
                )
        else:
            view = channel_param_layout(p).from_bits(word)
            machine.conv.write_constants(
                addr, {n: int(getattr(view, n)) for n in ("bias", "multiplier", "shift", "gain")}
            )


def _store(machine: Machine, where: str, fields: dict[str, int]) -> None:
    try:
        source = Source(fields["source"])
        width = source_bits(source, machine.params)
    except (ValueError, KeyError):
        raise ProgramError(
            f"{where}.source = {fields['source']}: no such stream (docs/isa.md)"
        ) from None
    addresses = _span(machine, where, fields, width)
    stream = machine.outputs[source]
    if len(addresses) > len(stream):
        raise ProgramError(
            f"{where}.rows: {len(addresses)} words to store, the {source.name} stream holds "
            f"{len(stream)}"
        )
    size = -(-width // 8)
    for address in addresses:
        machine.memory[address : address + size] = stream.popleft().to_bytes(size, "little")


def memory_words(values: Sequence[int] | np.ndarray, width: int) -> bytes:
    """Words of `width` bits (non-negative) as the memory image holds them."""
    size = -(-width // 8)
    return b"".join(int(v).to_bytes(size, "little") for v in values)
