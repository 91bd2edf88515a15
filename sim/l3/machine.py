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
the terms the RTL controller (issue 17) checks too: instruction fields, buffer
depths, the memory image's size, token and stream counts. Before running, the
token flags must balance (each queue takes as many tokens from a neighbour as
it is given); when every queue has ended, every engine's input and output
stream must be empty — words loaded and never consumed, or computed and never
stored, are refused, naming the instruction that left the last of them.

Memory words: a buffer word of b bits takes ⌈b/8⌉ bytes, little-endian; a
transfer moves `rows` rows of `row_words` words, the rows `stride` bytes apart.
Every engine is in: the conv, warp and element-wise engines and the softmax,
heatmap and motion units (their loads, commands and output streams).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from compiler.isa import TOKENS, Instruction, InstructionError, decode
from compiler.streams import source_bits, word_bits
from defs.isa import QUEUE_OF, Buffer, Opcode, Queue, Source
from defs.params import GraceParams
from rtl.conv_layouts import channel_param_layout
from sim.l3.conv import ConvBuffers, ConvCommandError, run_command
from sim.l3.elementwise import ActState, SoftmaxState, UnitCommandError, WarpState
from sim.l3.keypoints import HeatmapState, MotionState
from sim.l3.words import signed


class ProgramError(ValueError):
    """An illegal program: one line naming the instruction's index and field."""


@dataclass
class Machine:
    """The state L3 runs a program on: the memory image and the engines'."""

    params: GraceParams
    memory: bytearray
    conv: ConvBuffers = field(init=False)
    residual: deque[int] = field(default_factory=deque)  # the conv engine's residual stream
    warp: WarpState = field(init=False)
    act: ActState = field(init=False)
    softmax: SoftmaxState = field(init=False)
    heatmap: HeatmapState = field(init=False)
    motion: MotionState = field(init=False)
    outputs: dict[Source, deque[int]] = field(default_factory=dict)  # output streams

    def __post_init__(self) -> None:
        self.conv = ConvBuffers(self.params)
        self.warp = WarpState(self.params)
        self.act = ActState(self.params)
        self.softmax = SoftmaxState(self.params)
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

    def streams(self) -> dict[str, deque[int]]:
        """The streams whose words an instruction must take: the engines' input streams
        (by their LOAD buffer's name) and output streams ("CONV output", ...)."""
        return {
            Buffer.CONV_RESIDUAL.name: self.residual,
            Buffer.WARP_FLOW.name: self.warp.flow,
            Buffer.ACT_INPUT.name: self.act.inputs,
            Buffer.SOFTMAX_INPUT.name: self.softmax.inputs,
            Buffer.MOTION_MASK.name: self.motion.masks,
            **{f"{source.name} output": words for source, words in self.outputs.items()},
        }


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
            last = f"instruction {items[-1][0]}, {items[-1][1].op.name}" if items else "it is empty"
            raise ProgramError(f"the {queue.name.lower()} queue does not end with END ({last})")
        early = [i for i, inst in list(items)[:-1] if inst.op == Opcode.END]
        if early:
            raise ProgramError(
                f"instruction {early[0]}: END before the {queue.name.lower()} queue's last"
            )

    _check_balance(queues)

    machine = Machine(params, memory)
    tokens = {(a, b): 0 for a in Queue for b in Queue}  # tokens[(from, to)]
    fed: dict[str, tuple[int, Opcode]] = {}  # each stream's last feeder: (index, opcode)
    while any(queues.values()):
        ran = False
        for queue in Queue:  # each queue as far as its tokens let it, loads first
            while queues[queue]:
                index, inst = queues[queue][0]
                needs = [source for source, _ in _needs(inst, queue)]
                if any(tokens[(source, queue)] == 0 for source in needs):
                    break
                for source in needs:
                    tokens[(source, queue)] -= 1
                fill = {name: len(words) for name, words in machine.streams().items()}
                _execute(machine, index, inst)
                for name, words in machine.streams().items():
                    if len(words) > fill[name]:
                        fed[name] = (index, inst.op)
                if inst.tokens["push_prev"]:
                    tokens[(queue, _PREV[queue])] += 1
                if inst.tokens["push_next"]:
                    tokens[(queue, _NEXT[queue])] += 1
                queues[queue].popleft()
                ran = True
        if not ran:  # every queue left waits (_check_balance lets only a cycle get here)
            waiting = []
            for q in Queue:
                if queues[q]:
                    index, inst = queues[q][0]
                    missing = [(s, f) for s, f in _needs(inst, q) if tokens[(s, q)] == 0]
                    waiting.append(
                        _waits(index, inst, q, [s for s, _ in missing])
                        + f" ({', '.join(f'{inst.op.name}.{f}' for _, f in missing)})"
                    )
            raise ProgramError("the program can never finish: " + "; ".join(waiting))
    _check_drained(machine, fed)
    return machine


def _needs(inst: Instruction, queue: Queue) -> list[tuple[Queue, str]]:
    """The queues the instruction takes a token from before it runs, with the flag."""
    needs = [(_PREV[queue], "pop_prev")] if inst.tokens["pop_prev"] else []
    return needs + ([(_NEXT[queue], "pop_next")] if inst.tokens["pop_next"] else [])


def _waits(index: int, inst: Instruction, queue: Queue, sources: list[Queue]) -> str:
    return (
        f"instruction {index} ({inst.op.name}, {queue.name.lower()} queue) waits for a token "
        f"from the {' and '.join(s.name.lower() for s in sources)} queue"
    )


def _check_balance(queues: dict[Queue, deque[tuple[int, Instruction]]]) -> None:
    """Each queue must take from a neighbour exactly the tokens the neighbour gives it
    (counted on the flags): a pop beyond the pushes waits forever, a push beyond the
    pops leaves a token behind, which the next program would take."""
    for giver, taker in [(a, b) for a, b in _NEXT.items()] + [(a, b) for a, b in _PREV.items()]:
        push = "push_next" if _NEXT.get(giver) == taker else "push_prev"
        pop = "pop_prev" if _PREV.get(taker) == giver else "pop_next"
        pushes = [(i, inst) for i, inst in queues[giver] if inst.tokens[push]]
        pops = [(i, inst) for i, inst in queues[taker] if inst.tokens[pop]]
        if len(pops) > len(pushes):
            index, inst = pops[len(pushes)]
            raise ProgramError(
                "the program can never finish: "
                + _waits(index, inst, taker, [giver])
                + f" ({inst.op.name}.{pop}: its token {len(pushes) + 1}, the "
                f"{giver.name.lower()} queue gives {len(pushes)})"
            )
        if len(pushes) > len(pops):
            index, inst = pushes[len(pops)]
            raise ProgramError(
                f"instruction {index}: {inst.op.name}.{push}: a token the "
                f"{taker.name.lower()} queue never takes (it takes {len(pops)} of the "
                f"{len(pushes)} the {giver.name.lower()} queue gives)"
            )


def _check_drained(machine: Machine, fed: dict[str, tuple[int, Opcode]]) -> None:
    """Every queue has ended: words still in a stream were loaded or computed for
    nothing (an engine's input never consumed, results never stored)."""
    left = []
    for name, words in machine.streams().items():
        if not words:
            continue
        index, op = fed[name]
        if op == Opcode.LOAD:
            left.append(
                f"instruction {index}: LOAD.buffer = {name}: the program ends with {len(words)} "
                "of the stream's words never consumed (this LOAD loaded the last of them)"
            )
        else:
            left.append(
                f"instruction {index}: {op.name}: the program ends with {len(words)} of the "
                f"{name} stream's words never stored (this {op.name} produced the last of them)"
            )
    if left:
        raise ProgramError("; ".join(left))


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
        except ConvCommandError as exc:  # it names the instruction: "CONV.in_base: ..."
            raise ProgramError(f"instruction {index}: {exc}") from None
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
        except UnitCommandError as exc:  # it names the field: "ACT.pixels = 0: ..."
            raise ProgramError(f"instruction {index}: {exc}") from None
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


def _span(machine: Machine, where: str, fields: dict[str, int], width: int) -> int:
    """The number of words the transfer moves, its bytes checked against the image."""
    for name in ("rows", "row_words"):
        if fields[name] < 1:
            raise ProgramError(f"{where}.{name} = {fields[name]}: a transfer moves 1 or more")
    size = -(-width // 8)
    last = fields["dram_addr"] + (fields["rows"] - 1) * fields["stride"]
    last += fields["row_words"] * size
    if last > len(machine.memory):
        raise ProgramError(
            f"{where}.dram_addr: bytes {fields['dram_addr']}..{last - 1} leave the "
            f"{len(machine.memory)}-byte memory image"
        )
    return fields["rows"] * fields["row_words"]


def _addresses(fields: dict[str, int], size: int) -> Iterator[int]:
    """The byte address of every word of a transfer `_span` checked, in order."""
    for r in range(fields["rows"]):
        first = fields["dram_addr"] + r * fields["stride"]
        yield from range(first, first + fields["row_words"] * size, size)


def _read(
    machine: Machine, where: str, fields: dict[str, int], buffer: Buffer, width: int
) -> Iterator[tuple[int, int, int]]:
    """(index, byte address, word) of every word a LOAD reads; a word's bytes beyond its
    `width` bits are padding, and a bit set there is refused (as in an instruction)."""
    size = -(-width // 8)
    for k, address in enumerate(_addresses(fields, size)):
        word = int.from_bytes(machine.memory[address : address + size], "little")
        if word >> width:
            raise ProgramError(
                f"{where}: word {k} (byte {address}) sets bits beyond the {width}-bit "
                f"{buffer.name} word"
            )
        yield k, address, word


def _load(machine: Machine, where: str, fields: dict[str, int]) -> None:
    p = machine.params
    try:
        buffer = Buffer(fields["buffer"])
        width = word_bits(buffer, p)
    except (ValueError, KeyError):
        raise ProgramError(
            f"{where}.buffer = {fields['buffer']}: no such buffer (docs/isa.md)"
        ) from None
    count = _span(machine, where, fields, width)
    words = _read(machine, f"{where}.dram_addr", fields, buffer, width)
    writer = machine.stream_writer(buffer)
    if writer is not None:
        if fields["buffer_addr"]:
            raise ProgramError(
                f"{where}.buffer_addr = {fields['buffer_addr']}: {buffer.name} is a stream, "
                "whose words carry their own place (buffer_addr 0)"
            )
        for k, address, word in words:
            try:
                writer(word)
            except UnitCommandError as exc:  # a payload naming a place the engine lacks
                raise ProgramError(f"{where}.dram_addr: word {k} (byte {address}): {exc}") from None
        return
    depth = {
        Buffer.CONV_INPUT: len(machine.conv.inputs),
        Buffer.CONV_WEIGHT: len(machine.conv.weights),
        Buffer.CONV_PARAM: len(machine.conv.constants["bias"]),
    }[buffer]
    base = fields["buffer_addr"]
    if base + count > depth:
        raise ProgramError(
            f"{where}.buffer_addr: words {base}..{base + count - 1} overrun the "
            f"{depth}-word {buffer.name} buffer"
        )
    if buffer in (Buffer.CONV_INPUT, Buffer.CONV_WEIGHT) and width == 8 * (-(-width // 8)):
        # whole int8 lanes, no padding: the words' bytes are their lanes, in order
        lanes = _gather(machine, fields, width // 8).view(np.int8).astype(np.int64)
        if buffer == Buffer.CONV_INPUT and p.numeric.act_bits == 8:
            machine.conv.inputs[base : base + count] = lanes
            return
        if buffer == Buffer.CONV_WEIGHT and p.numeric.weight_bits == 8:
            machine.conv.weights[base : base + count] = lanes.reshape(
                count, p.array.rows, p.array.cols
            )
            return
    for k, address, word in words:
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
            if int(view.shift) > p.numeric.max_shift:
                raise ProgramError(
                    f"{where}.dram_addr: word {k} (byte {address}): CONV_PARAM shift = "
                    f"{int(view.shift)}, the requantizer shifts by 0..{p.numeric.max_shift}"
                )
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
    count = _span(machine, where, fields, width)
    stream = machine.outputs[source]
    if count > len(stream):
        raise ProgramError(
            f"{where}.rows: {count} words to store, the {source.name} stream holds {len(stream)}"
        )
    size = -(-width // 8)
    values = np.array([stream.popleft() for _ in range(count)], dtype="<u8")
    raw = values.view(np.uint8).reshape(count, 8)[:, :size]
    memory = np.frombuffer(machine.memory, np.uint8)
    memory[_byte_index(fields, size)] = raw.reshape(-1)
    del memory  # the view pins the bytearray's size while it lives


def _byte_index(fields: dict[str, int], size: int) -> npt.NDArray[np.int64]:
    """Every byte of every word of a transfer `_span` checked, in order."""
    rows = fields["dram_addr"] + fields["stride"] * np.arange(fields["rows"], dtype=np.int64)
    words = np.arange(fields["row_words"], dtype=np.int64) * size
    return (rows[:, None, None] + words[None, :, None] + np.arange(size)[None, None, :]).ravel()


def _gather(machine: Machine, fields: dict[str, int], size: int) -> npt.NDArray[np.uint8]:
    """(words, size) bytes of every word of a transfer `_span` checked."""
    memory = np.frombuffer(machine.memory, np.uint8)
    out = memory[_byte_index(fields, size)].reshape(-1, size)
    del memory
    return out


def memory_words(values: Sequence[int] | np.ndarray, width: int) -> bytes:
    """Words of `width` bits (non-negative) as the memory image holds them."""
    size = -(-width // 8)
    return b"".join(int(v).to_bytes(size, "little") for v in values)
