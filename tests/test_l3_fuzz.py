"""Bad programs on L3 (issue 16, item 5): `run` completes or raises `ProgramError`, nothing else.

Two kinds of programs run on L3's machine (sim/l3/machine.py):
- random ones: words of random bits, and instructions of every opcode (legal
  and not) with random token flags and random fields, on a small random image;
- real ones mutated: small conv layers lowered by `lower_conv` and one
  program per unit (warp, act, softmax, heatmap, motion) as tests/
  test_l3_machine.py builds them, with a bit flipped, a field changed, an
  instruction dropped, duplicated or swapped, or the image truncated.

For each, `run` must complete or raise `ProgramError` in one line naming an
instruction — never another exception (IndexError, KeyError, NumPy's
ValueError, ZeroDivisionError …), never a hang (each example runs under an
alarm; L3's loop runs an instruction or raises on every pass). Mutations whose
outcome is determined are held to it: an illegal opcode, an address past the
image's end, a buffer_addr past the buffer, an engine command's base or size
past its buffers or the unit's limits, a token pop no push can satisfy (and a
push no pop takes) must be refused naming the instruction and the field; a
mutation that leaves the program's meaning alone (a tag, the order
of instructions of different queues, the stride of a one-row transfer, the
image cut after everything the program touches) must leave exactly the
reference memory, which the unmutated program reaches (L2's results, checked
here too): no silent wrong result.

Per-example work stays small (maps of a few pixels, images of a few KB, a
transfer of at most 8 rows of 16 words in the random programs): every example
runs in milliseconds, the file in about 25 s on one core. Hypothesis runs
derandomized, without its example database, so CI sees the same examples.

The conv engine's command sizes (heights, widths, groups) stay at most 12 in
the random programs and mutations: `sim/l3/conv.py` checks the input and weight
words a command reaches before it builds anything, but its output sizes alone
(up to 4,095 a side) make arrays of gigabytes that NumPy fills for seconds.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from compiler.conv_layer import ConvLayer, lower_conv, read_output
from compiler.isa import TOKENS, Instruction, InstructionError, body_fields, decode, encode
from defs.isa import ENGINE_COMMANDS, INSTRUCTION_BITS, QUEUE_OF, Buffer, Opcode, Queue, Source
from defs.params import ArrayParams, GraceParams, preset
from model.fixed_conv import conv2d_int
from rtl.act.layouts import ActOp
from rtl.act.softmax import command_layout as softmax_command
from sim.act import place as place_act
from sim.act import random_case as act_case
from sim.heatmap import place as heatmap_place
from sim.heatmap import random_case as heatmap_case
from sim.l3.machine import ProgramError, run, source_bits, word_bits
from sim.motion import frame_cases, frame_writes, random_frame, unpack_entries
from sim.motion import place as motion_place
from sim.softmax import expected as softmax_expected
from sim.softmax import place as place_softmax
from sim.softmax import random_case as softmax_case
from sim.warp import program as warp_program
from sim.warp import random_case as warp_case

TINY = preset("tiny")
SMALL = GraceParams(name="conv-test", array=ArrayParams(rows=4, cols=3))
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: An example's bound: any example takes milliseconds, so this is a hang.
ALARM_SECONDS = 20


class Hang(Exception):
    """An example ran past ALARM_SECONDS (not a ProgramError, so the fuzz fails)."""


@contextmanager
def bounded() -> Iterator[None]:
    def ring(signum: int, frame: object) -> None:
        raise Hang(f"an example ran over {ALARM_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, ALARM_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(words: list[int], memory: bytearray, params: GraceParams) -> str | None:
    """None when the program completes, else its ProgramError's message, checked to be
    one line naming an instruction (or the empty queue that has none)."""
    try:
        with bounded():
            run(words, memory, params)
    except ProgramError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert re.search(r"instruction \d+|it is empty", message), message
        return message
    return None


# -- the real programs ------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    """A small real program, its image, and what its results must be."""

    name: str
    params: GraceParams
    words: tuple[int, ...]
    memory: bytes
    verify: Callable[[bytearray], None]  # asserts the run's image holds L2's results

    @property
    def reference(self) -> bytes:
        return _reference(self.name)


def _conv_base(name: str, shape: tuple[int, ...], option: str | None) -> Base:
    c, o, h, w, k, s, p = shape
    rng = np.random.default_rng(sum(shape))
    options = {option: True} if option in ("pool", "upsample") else {}
    gain = rng.integers(0, 3000, o) if option == "residual" else None
    layer = ConvLayer(
        rng.integers(-128, 128, (o, c, k, k)), rng.integers(-5000, 5000, o),
        rng.integers(1, 1 << 16, o), rng.integers(16, 24, o), s, p, relu=True, gain=gain,
        **options,
    )  # fmt: skip
    x = rng.integers(-128, 128, (c, h, w))
    up = 2 if option == "upsample" else 1
    residual = rng.integers(-128, 128, (o, h * up, w * up)) if gain is not None else None
    lowered = lower_conv(layer, x, SMALL, residual=residual, tile_rows=2)
    want = conv2d_int(
        x, layer.weight, layer.bias, layer.multiplier, layer.shift, SMALL.numeric,
        stride=s, padding=p, relu=True, upsample=layer.upsample, pool=layer.pool,
        residual=residual, residual_gain=gain,
    )  # fmt: skip

    def verify(memory: bytearray) -> None:
        np.testing.assert_array_equal(read_output(lowered, memory, SMALL), want)

    return Base(name, SMALL, tuple(lowered.words), bytes(lowered.memory), verify)


def _unit_base(
    name: str,
    loads: list[tuple[Buffer, list[int]]],
    op: Opcode,
    command: dict[str, int],
    source: Source,
    count: int,
    check: Callable[[list[int]], None],
) -> Base:
    """LOADs of the unit's words, its command, a STORE of its `count` results, as
    tests/test_l3_machine.py lays them out; `check` gets the stored words."""
    memory, words = bytearray(), []
    for buffer, values in loads:
        size = -(-word_bits(buffer, TINY) // 8)
        transfer = {"dram_addr": len(memory), "stride": 0, "rows": 1, "row_words": len(values)}
        memory += b"".join(v.to_bytes(size, "little") for v in values)
        words.append(encode(Opcode.LOAD, TINY, {"buffer": buffer, "buffer_addr": 0} | transfer))
    last = decode(words[-1], TINY)
    words[-1] = encode(Opcode.LOAD, TINY, last.fields, {"push_next": 1})
    words.append(encode(op, TINY, command, {"pop_prev": 1, "push_next": 1}))
    out, size = len(memory), -(-source_bits(source, TINY) // 8)
    memory += bytes(count * size)
    half = count // 2  # two rows when it splits evenly, to have a stride that matters
    store = {
        "source": source,
        "dram_addr": out,
        "stride": half * size,
        "rows": 2,
        "row_words": half,
    }
    if count % 2:
        store |= {"stride": 0, "rows": 1, "row_words": count}
    words.append(encode(Opcode.STORE, TINY, store, {"pop_prev": 1}))
    words += [encode(Opcode.END, TINY, {"queue": q}) for q in Queue]

    def verify(image: bytearray) -> None:
        check([int.from_bytes(image[out + k * size : out + (k + 1) * size], "little")
               for k in range(count)])  # fmt: skip

    return Base(name, TINY, tuple(words), bytes(memory), verify)


def _signed8(words: list[int]) -> np.ndarray:
    return np.array(words, np.int64).astype(np.uint8).view(np.int8)


@cache
def bases() -> dict[str, Base]:
    rng = np.random.default_rng(16)
    found = [
        _conv_base("conv", (5, 6, 5, 4, 3, 1, 1), None),
        _conv_base("conv-stride2", (4, 5, 6, 5, 3, 2, 0), None),
        _conv_base("conv-pool", (3, 4, 6, 5, 3, 1, 1), "pool"),
        _conv_base("conv-upsample", (3, 5, 3, 3, 3, 1, 1), "upsample"),
        _conv_base("conv-residual", (4, 5, 4, 3, 3, 1, 1), "residual"),
    ]
    warp = warp_program(warp_case(rng, TINY, 2, (3, 4), (2, 3), occlusion=True), TINY)
    found.append(_unit_base(
        "warp", [(Buffer.WARP_FEATURE, warp.feature_writes), (Buffer.WARP_FLOW, warp.flow)],
        Opcode.WARP, warp.command_fields, Source.WARP, len(warp.expected),
        lambda got: np.testing.assert_array_equal(_signed8(got), warp.expected),
    ))  # fmt: skip
    for op, channels in ((ActOp.TABLE, 1), (ActOp.AFFINE, 3)):
        act = place_act([act_case(rng, TINY, op, channels, (2, 3))], TINY)[0]
        loads = [(Buffer.ACT_TABLE, act.table_writes), (Buffer.ACT_PARAM, act.param_writes)]
        loads = [(b, v) for b, v in loads if v] + [(Buffer.ACT_INPUT, act.inputs)]

        def check_act(got: list[int], act=act) -> None:
            got_bytes = np.array(got)[:, None] & 0xFF
            np.testing.assert_array_equal(got_bytes[act.mask], act.expected[act.mask])

        found.append(_unit_base(
            f"act-{op.name.lower()}", loads, Opcode.ACT, act.command_fields, Source.ACT,
            act.words, check_act,
        ))  # fmt: skip
    case = softmax_case(rng, TINY, kind="random", max_pixels=4)
    tile = place_softmax([case], TINY)[0]
    fields = softmax_command(TINY).from_bits(tile.command)
    found.append(_unit_base(
        "softmax", [(Buffer.SOFTMAX_EXP, tile.writes["exp_write"]),
                    (Buffer.SOFTMAX_INPUT, tile.inputs)],
        Opcode.SOFTMAX, {n: int(getattr(fields, n)) for n in ("pixels", "channels", "tag")},
        Source.SOFTMAX, tile.words,
        lambda got: np.testing.assert_array_equal(got, softmax_expected([case])),
    ))  # fmt: skip
    frame_case = heatmap_case(rng, TINY, 2, 3)
    heat = heatmap_place([frame_case], TINY)[0]
    table = heat.writes["gaussian"][: len(frame_case.table)]  # zeros beyond need no load
    found.append(_unit_base(
        "heatmap", [(Buffer.HEATMAP_GRID, heat.writes["grid"]),
                    (Buffer.HEATMAP_KEYPOINT, heat.writes["keypoint"]),
                    (Buffer.HEATMAP_GAUSSIAN, table)],
        Opcode.HEATMAP, {"size": heat.size, "keypoints": heat.keypoints, "tag": heat.tag},
        Source.HEATMAP, heat.outputs,
        lambda got: np.testing.assert_array_equal(_signed8(got), heat.expected),
    ))  # fmt: skip
    frame = random_frame(rng, 2, 3)
    writes = frame_writes(frame, TINY)
    flow = motion_place(frame_cases(rng, frame)[-1:], TINY)[0]  # the FLOW command
    found.append(_unit_base(
        "motion-flow", [(Buffer.MOTION_GRID, writes.grid),
                        (Buffer.MOTION_KEYPOINT, writes.keypoints),
                        (Buffer.MOTION_JACOBIAN, writes.jacobians),
                        (Buffer.MOTION_MASK, flow.inputs)],
        Opcode.MOTION, flow.command_fields, Source.MOTION, flow.entries,
        lambda got: np.testing.assert_array_equal(unpack_entries(got), flow.expected),
    ))  # fmt: skip
    return {base.name: base for base in found}


@cache
def _reference(name: str) -> bytes:
    base = bases()[name]
    memory = bytearray(base.memory)
    run(list(base.words), memory, base.params)
    return bytes(memory)


@pytest.mark.parametrize("name", sorted(bases()))
def test_every_unmutated_program_leaves_l2s_results(name: str) -> None:
    base = bases()[name]
    memory = bytearray(base.memory)
    assert outcome(list(base.words), memory, base.params) is None
    base.verify(memory)
    assert bytes(memory) == base.reference


# -- what a word holds -------------------------------------------------------------------


def _decoded(words: list[int], params: GraceParams) -> list[tuple[Instruction, Queue]]:
    out = []
    for word in words:
        inst = decode(word, params)
        queue = QUEUE_OF[inst.op] if inst.op in QUEUE_OF else Queue(inst.fields["queue"])
        out.append((inst, queue))
    return out


def _with(word: int, params: GraceParams, fields=None, tokens=None) -> int:
    inst = decode(word, params)
    return encode(inst.op, params, inst.fields | (fields or {}), inst.tokens | (tokens or {}))


_PREV = {Queue.COMPUTE: Queue.LOAD, Queue.STORE: Queue.COMPUTE}
_NEXT = {Queue.LOAD: Queue.COMPUTE, Queue.COMPUTE: Queue.STORE}


def _channel(queue: Queue, flag: str) -> tuple[Queue, Queue] | None:
    """(giver, taker) of the tokens the flag moves, None when the queue lacks that side."""
    side = _PREV if flag.endswith("prev") else _NEXT
    if queue not in side:
        return None
    return (queue, side[queue]) if flag.startswith("push") else (side[queue], queue)


def _flagged(words: list[int], params: GraceParams, channel: tuple[Queue, Queue], pop: bool):
    """Indices of the instructions that pop (or push) a token on `channel`."""
    found = []
    for k, (inst, queue) in enumerate(_decoded(words, params)):
        for flag in TOKENS:
            moves = flag.startswith("pop") == pop and inst.tokens[flag]
            if moves and _channel(queue, flag) == channel:
                found.append((k, inst.op.name, queue, flag))
    return found


# -- mutations whose outcome is known ----------------------------------------------------

#: Each engine command's field set past its buffers (or the unit's largest size), from
#: the value that first overruns the base programs' maps up to the field's top.
_OVERRUN = {
    Opcode.CONV: "in_base",
    Opcode.WARP: "in_base",
    Opcode.ACT: "param_base",
    Opcode.SOFTMAX: "channels",
    Opcode.HEATMAP: "size",
    Opcode.MOTION: "size",
}
_OVERRUN_FROM = {
    (Opcode.CONV, "in_base"): TINY.buffers.input_depth - 2,
    (Opcode.WARP, "in_base"): TINY.warp.depth - 2,
    (Opcode.ACT, "param_base"): TINY.act.param_depth - 2,
    (Opcode.SOFTMAX, "channels"): TINY.act.softmax_channels + 1,
    (Opcode.HEATMAP, "size"): TINY.act.max_grid + 1,
    (Opcode.MOTION, "size"): TINY.act.max_grid + 1,
}

BASE_NAMES = sorted(bases())


@settings(FUZZ, max_examples=400)
@given(data=st.data())
def test_mutations_that_must_be_refused(data: st.DataObject) -> None:
    base = bases()[data.draw(st.sampled_from(BASE_NAMES), label="base")]
    p, words, memory = base.params, list(base.words), bytearray(base.memory)
    decoded = _decoded(words, p)
    kind = data.draw(st.sampled_from(["opcode", "dram_addr", "buffer_addr", "command", "pop",
                                      "unpush", "push"]), label="kind")  # fmt: skip
    if kind == "opcode":
        k = data.draw(st.integers(0, len(words) - 1), label="index")
        code = data.draw(st.sampled_from([0, 10, 11, 12, 13, 14]), label="opcode")
        words[k] = words[k] & ~0xF | code
        pattern = rf"^instruction {k}: opcode {code} is not an instruction$"
    elif kind == "dram_addr":
        moves = [k for k, (inst, _) in enumerate(decoded) if inst.op in (Opcode.LOAD, Opcode.STORE)]
        k = data.draw(st.sampled_from(moves), label="index")
        inst = decoded[k][0]
        f = inst.fields
        width = (word_bits(Buffer(f["buffer"]), p) if inst.op == Opcode.LOAD
                 else source_bits(Source(f["source"]), p))  # fmt: skip
        span = (f["rows"] - 1) * f["stride"] + f["row_words"] * -(-width // 8)
        past = data.draw(st.integers(1, 1 << 20), label="past")
        words[k] = _with(words[k], p, {"dram_addr": max(0, len(memory) - span + past)})
        pattern = rf"^instruction {k}: {inst.op.name}\.dram_addr: bytes \d+\.\.\d+ leave the"
    elif kind == "buffer_addr":
        loads = [k for k, (inst, _) in enumerate(decoded) if inst.op == Opcode.LOAD]
        k = data.draw(st.sampled_from(loads), label="index")
        f = decoded[k][0].fields
        depth = {Buffer.CONV_INPUT: p.buffers.input_depth,
                 Buffer.CONV_WEIGHT: p.buffers.weight_depth,
                 Buffer.CONV_PARAM: p.buffers.param_depth}.get(Buffer(f["buffer"]), 1)  # fmt: skip
        low = max(1, depth - f["rows"] * f["row_words"] + 1)
        addr = data.draw(st.integers(low, (1 << 16) - 1), label="buffer_addr")
        words[k] = _with(words[k], p, {"buffer_addr": addr})
        pattern = rf"^instruction {k}: LOAD\.buffer_addr"
    elif kind == "command":  # a base or size past what the engine's buffers hold
        k = next(k for k, (inst, _) in enumerate(decoded) if inst.op in ENGINE_COMMANDS)
        inst = decoded[k][0]
        name = _OVERRUN[inst.op]
        low = _OVERRUN_FROM.get((inst.op, name))
        if inst.op == Opcode.ACT and inst.fields["op"] == ActOp.TABLE:
            name, low = "pixels", inst.fields["pixels"] + 1  # more than its inputs: no constants
        top = (1 << dict(body_fields(inst.op, p))[name]) - 1
        words[k] = _with(words[k], p, {name: data.draw(st.integers(low, top), label=name)})
        pattern = rf"^instruction {k}: {inst.op.name}\.{name}\b"
        if inst.op == Opcode.CONV:  # sim/l3/conv.py names the buffer, not the field
            pattern = rf"^instruction {k}: CONV\b.*\binput words"
    else:  # a token flag set (pop beyond the pushes, push beyond the pops) or cleared
        pop, set_it = kind == "pop", kind != "unpush"
        options = [
            (k, flag)
            for k, (inst, queue) in enumerate(decoded)
            for flag in TOKENS
            if flag.startswith("pop" if pop else "push")
            and inst.tokens[flag] != set_it
            and _channel(queue, flag) is not None
        ]
        assume(options)
        k, flag = data.draw(st.sampled_from(options), label="flag")
        channel = _channel(decoded[k][1], flag)
        words[k] = _with(words[k], p, tokens={flag: int(set_it)})
        if kind == "push":  # the token a push too many leaves is the last pusher's
            j, op, _, named = _flagged(words, p, channel, pop=False)[-1]
            pattern = rf"^instruction {j}: {op}\.{named}: a token the \w+ queue never takes"
        else:  # the last pop waits for a token no push gives
            j, op, queue, named = _flagged(words, p, channel, pop=True)[-1]
            pattern = (rf"^the program can never finish: instruction {j} \({op}, "
                       rf"{queue.name.lower()} queue\) waits for a token from the "
                       rf"{channel[0].name.lower()} queue \({op}\.{named}: ")  # fmt: skip
    message = outcome(words, memory, p)
    assert message is not None, f"{base.name}: {kind} ran to completion"
    assert re.search(pattern, message), message


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_mutations_that_keep_the_results(data: st.DataObject) -> None:
    """A tag, the order of neighbouring instructions of different queues, the stride of
    a one-row transfer, the image cut after all the program touches: same image."""
    base = bases()[data.draw(st.sampled_from(BASE_NAMES), label="base")]
    p, words, memory = base.params, list(base.words), bytearray(base.memory)
    decoded = _decoded(words, p)
    kind = data.draw(st.sampled_from(["tag", "swap", "stride", "truncate"]), label="kind")
    if kind == "tag":
        tagged = [k for k, (inst, _) in enumerate(decoded) if "tag" in inst.fields]
        k = data.draw(st.sampled_from(tagged), label="index")
        words[k] = _with(words[k], p, {"tag": data.draw(st.integers(0, 255), label="tag")})
    elif kind == "swap":
        pairs = [k for k in range(len(words) - 1) if decoded[k][1] != decoded[k + 1][1]]
        k = data.draw(st.sampled_from(pairs), label="index")
        words[k], words[k + 1] = words[k + 1], words[k]
    elif kind == "stride":
        single = [k for k, (inst, _) in enumerate(decoded) if inst.fields.get("rows") == 1]
        k = data.draw(st.sampled_from(single), label="index")
        stride = data.draw(st.integers(0, (1 << 24) - 1), label="stride")
        words[k] = _with(words[k], p, {"stride": stride})
    else:  # truncate: refused naming a transfer that leaves it, or the same image
        cut = data.draw(st.integers(0, len(memory)), label="cut")
        memory = memory[:cut]
        message = outcome(words, memory, p)
        if message is not None:
            found = re.match(r"^instruction (\d+): (LOAD|STORE)\.dram_addr: bytes \d+\.\.(\d+)",
                             message)  # fmt: skip
            assert found, message
            assert int(found.group(3)) >= cut
            return
        assert bytes(memory) == base.reference[:cut]
        return
    assert outcome(words, memory, p) is None
    assert bytes(memory) == base.reference


# -- mutations whose outcome is open: complete or ProgramError ---------------------------


def _mutate(data: st.DataObject, words: list[int], memory: bytearray, params: GraceParams):
    kind = data.draw(st.sampled_from(["bit", "field", "drop", "duplicate", "swap", "truncate"]))
    k = data.draw(st.integers(0, len(words) - 1))
    if kind == "bit":
        words[k] ^= 1 << data.draw(st.integers(0, INSTRUCTION_BITS - 1))
    elif kind == "field":  # more often an engine command's, and a body field
        computes = [j for j, word in enumerate(words) if word & 0xF in ENGINE_COMMANDS]
        if computes and not data.draw(st.booleans()):
            k = data.draw(st.sampled_from(computes))
        try:
            inst = decode(words[k], params)
        except InstructionError:  # an earlier mutation made it no instruction
            return
        names = dict(body_fields(inst.op, params))
        if data.draw(st.integers(0, 3)) == 3:
            names = dict.fromkeys(TOKENS, 1)
        name = data.draw(st.sampled_from(sorted(names)))
        value = data.draw(_value(inst.op, name, names[name], params))
        if name in TOKENS:
            words[k] = encode(inst.op, params, inst.fields, inst.tokens | {name: value})
        else:
            words[k] = encode(inst.op, params, inst.fields | {name: value}, inst.tokens)
    elif kind == "drop":
        del words[k]
    elif kind == "duplicate":
        words.insert(k, words[k])
    elif kind == "swap":
        j = data.draw(st.integers(0, len(words) - 1))
        words[k], words[j] = words[j], words[k]
    else:
        del memory[data.draw(st.integers(0, len(memory))) :]


@settings(FUZZ, max_examples=1500)
@given(data=st.data())
def test_mutated_programs_complete_or_are_refused(data: st.DataObject) -> None:
    base = bases()[data.draw(st.sampled_from(BASE_NAMES), label="base")]
    words, memory = list(base.words), bytearray(base.memory)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if words:
            _mutate(data, words, memory, base.params)
    outcome(words, memory, base.params)


# -- random programs ---------------------------------------------------------------------

#: The conv engine's size fields stay small (see the module's docstring).
_CONV_SIZES = {"in_height", "in_width", "in_row", "out_height", "out_width", "in_groups",
               "out_groups"}  # fmt: skip
_TRANSFER_SIZES = {"rows": 8, "row_words": 16}


@cache
def _value(op: Opcode, name: str, bits: int, params: GraceParams) -> st.SearchStrategy[int]:
    """A field's value: small, at an edge, or any that fits (bounded where the work
    would be large: transfer sizes, the conv engine's sizes)."""
    top = (1 << bits) - 1
    if op == Opcode.CONV and name in _CONV_SIZES:
        top = min(top, 12)
    if op in (Opcode.LOAD, Opcode.STORE) and name in _TRANSFER_SIZES:
        top = min(top, _TRANSFER_SIZES[name])
    return st.one_of(st.integers(0, min(top, 8)), st.sampled_from([0, 1, top]), st.integers(0, top))


@cache
def _field(op: Opcode, name: str, bits: int, params: GraceParams, image: int):
    """`_value`, with transfers often inside the image and the buffer table, and streams
    at buffer_addr 0."""
    value = _value(op, name, bits, params)
    if name == "dram_addr":
        return st.one_of(st.integers(0, image + 8), value)
    if name == "buffer":
        return st.one_of(st.sampled_from([*Buffer]), value)
    if name in ("buffer_addr", "source"):
        return st.one_of(st.just(0), value)
    return value


@cache
def _body(op: Opcode, params: GraceParams) -> list[tuple[str, int]]:
    return body_fields(op, params)


_ANY = st.integers(0, (1 << INSTRUCTION_BITS) - 1)
#: Opcodes of the random programs' instructions (Hypothesis favours the first): loads
#: and stores often, END seldom (an END before a queue's last is refused at once).
_OPCODES = [Opcode.LOAD, Opcode.LOAD, Opcode.STORE, *[op for op in Opcode if op != Opcode.END]]
_SIDES = {"prev": _PREV, "next": _NEXT}


@st.composite
def _instruction(draw: st.DrawFn, params: GraceParams, image: int, tokens: bool) -> int:
    """A word: now and then random bits (with an illegal opcode, or any), else a legal
    opcode's fields (transfers mostly inside the `image` bytes and the buffer table,
    streams at buffer_addr 0), with random token flags when `tokens` (mostly ones that
    name a neighbour the queue has). Hypothesis favours 0s: the usual case is 0."""
    odd = draw(st.integers(0, 39), label="odd")  # 1 in 40 each (not at the edges)
    if odd == 17:
        return draw(_ANY, label="bits")
    if odd == 18:
        return draw(st.sampled_from([0, 10, 11, 12, 13, 14])) | draw(_ANY) >> 4 << 4
    op = Opcode.END if odd == 19 else draw(st.sampled_from(_OPCODES), label="opcode")
    fields = {name: draw(_field(op, name, bits, params, image)) for name, bits in _body(op, params)}
    if op in (Opcode.SYNC, Opcode.END):
        fields["queue"] = draw(st.sampled_from([1, 0, 2, 3]), label="queue")
    queue = QUEUE_OF.get(op, Queue(min(fields.get("queue", 0), 2)))
    flags = {}
    for flag in TOKENS:
        has = queue in _SIDES[flag.split("_")[1]]
        flags[flag] = int(
            tokens and draw(st.integers(0, 3)) == 3 and (has or draw(st.integers(0, 7)) == 7)
        )
    return encode(op, params, fields, flags)


@settings(FUZZ, max_examples=1500)
@given(data=st.data())
def test_random_programs_complete_or_are_refused(data: st.DataObject) -> None:
    params = data.draw(st.sampled_from([TINY, SMALL]), label="params")
    memory = bytearray(data.draw(st.binary(max_size=512), label="memory"))
    tokens = data.draw(st.booleans(), label="tokens")  # without, most programs run on
    words = data.draw(st.lists(_instruction(params, len(memory), tokens), max_size=12))
    if data.draw(st.integers(0, 9), label="ends") < 9:  # most pass the END checks
        words += [encode(Opcode.END, params, {"queue": q}) for q in Queue]
    outcome(words, memory, params)


# -- the conv engine's crash, reported to its owner --------------------------------------


@pytest.mark.parametrize("last_lanes", [0, 5])
def test_conv_last_lanes_outside_the_array_is_refused(last_lanes: int) -> None:
    """`last_lanes` 0 or above `rows` (4 here) is refused naming the field."""
    command = {
        "in_base": 0, "in_plane": 1, "in_row": 1, "in_height": 1, "in_width": 1,
        "in_groups": 1, "upsample": 0, "kernel_h": 1, "kernel_w": 1, "stride2": 0,
        "pad_top": 0, "pad_left": 0, "out_height": 1, "out_width": 1, "out_groups": 1,
        "last_lanes": last_lanes, "weight_base": 0, "param_base": 0, "relu": 0, "pool": 0,
        "residual": 1, "partial_in": 0, "partial_out": 0, "tag": 0,
    }  # fmt: skip
    load = {"buffer": Buffer.CONV_RESIDUAL, "buffer_addr": 0, "dram_addr": 0, "stride": 0,
            "rows": 1, "row_words": 8}  # fmt: skip
    words = [
        encode(Opcode.LOAD, SMALL, load, {"push_next": 1}),
        encode(Opcode.CONV, SMALL, command, {"pop_prev": 1}),
        *[encode(Opcode.END, SMALL, {"queue": q}) for q in Queue],
    ]
    with pytest.raises(ProgramError, match=r"^instruction 1: CONV.*last_lanes"):
        run(words, bytearray(64), SMALL)
