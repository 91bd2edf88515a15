"""The co-processor's memory side (rtl/coproc/): TransferReader and TransferWriter
through MemoryPort into SimMemory, against a Python model of the byte layout.

Memory latency 1 and 20, random stalls, random consumer and producer gaps, every
word size, unaligned addresses and strides, commands back to back; two or three
clients sharing the port; err answers; and the cycles of a full-rate transfer."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from amaranth import Fragment, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator, SimulatorContext

from rtl.coproc.memory_port import MemoryPort
from rtl.coproc.reader import TransferReader, shift_add
from rtl.coproc.sim_memory import SimMemory
from rtl.coproc.writer import TransferWriter

ADDR_BITS = 16
DEPTH = 512  # words of SimMemory


@dataclass(frozen=True)
class Transfer:
    dram_addr: int
    stride: int
    rows: int
    row_words: int
    word_bytes: int

    def addresses(self) -> list[int]:
        """The byte address of each word, in stream order."""
        return [
            self.dram_addr + r * self.stride + w * self.word_bytes
            for r in range(self.rows)
            for w in range(self.row_words)
        ]

    def cmd(self) -> dict[str, int]:
        return self.__dict__.copy()


def random_transfer(
    rng: random.Random, lo: int, hi: int, max_word: int, *, overlap: bool
) -> Transfer:
    """A transfer inside bytes [lo, hi); rows may overlap when `overlap`."""
    wb, row_words, rows = rng.randint(1, max_word), rng.randint(1, 40), rng.randint(1, 4)
    row_bytes = wb * row_words
    stride = rng.choice([row_bytes, row_bytes + rng.randint(1, 37)])
    if overlap and rng.random() < 0.3:
        stride = rng.randint(0, 2 * row_bytes)
    span = (rows - 1) * stride + row_bytes
    return Transfer(rng.randrange(lo, hi - span), stride, rows, row_words, wb)


def words_of(image: bytes, t: Transfer) -> list[tuple[int, bool]]:
    """The model: each word as (value, last)."""
    addrs = t.addresses()
    return [
        (int.from_bytes(image[a : a + t.word_bytes], "little"), i == len(addrs) - 1)
        for i, a in enumerate(addrs)
    ]


def rig(data_bytes: int, clients: list, image: bytes) -> tuple[Module, MemoryPort, SimMemory]:
    """`clients` (readers and writers) on one MemoryPort into a SimMemory holding `image`."""
    m = Module()
    init = [
        int.from_bytes(image[i : i + data_bytes], "little")
        for i in range(0, len(image), data_bytes)
    ]
    readers = [i for i, c in enumerate(clients) if isinstance(c, TransferReader)]
    m.submodules.port = port = MemoryPort(len(clients), ADDR_BITS, data_bytes, read_only=readers)
    m.submodules.mem = mem = SimMemory(ADDR_BITS, data_bytes, len(init), init=init)
    wiring.connect(m, port.bus, mem.bus)
    for i, c in enumerate(clients):
        m.submodules[f"client_{i}"] = c
        wiring.connect(m, port.client(i), c.mem)
    return m, port, mem


def setup(ctx: SimulatorContext, mem: SimMemory, latency: int, stall: int, seed: int = 7) -> None:
    ctx.set(mem.latency, latency)
    ctx.set(mem.stall_threshold, stall)
    ctx.set(mem.lfsr_seed, seed)


async def put(ctx: SimulatorContext, s: object, payload: object, rng: random.Random, gap: float,
              limit: int = 20_000) -> None:  # fmt: skip
    """Offer one element on stream `s` (after a random gap); it must be taken within `limit`."""
    while rng.random() < gap:
        await ctx.tick()
    ctx.set(s.payload, payload)
    ctx.set(s.valid, 1)
    for _ in range(limit):
        _, _, ready = await ctx.tick().sample(s.ready)
        if ready:
            ctx.set(s.valid, 0)
            return
    raise AssertionError(f"not taken in {limit} cycles")


async def take_words(ctx: SimulatorContext, reader: TransferReader, count: int, rng: random.Random,
                     ready: float, limit: int) -> list[tuple[int, bool]]:  # fmt: skip
    """`count` words off the reader's `o`, ready at random, within `limit` cycles."""
    got: list[tuple[int, bool]] = []
    for _ in range(limit):
        if len(got) == count:
            return got
        want = rng.random() < ready
        ctx.set(reader.o.ready, want)
        _, _, valid, word = await ctx.tick().sample(reader.o.valid, reader.o.payload)
        if valid and want:
            got.append((word.data, bool(word.last)))
    raise AssertionError(f"the reader gave {len(got)} of {count} words in {limit} cycles")


def background(rng: random.Random, data_bytes: int) -> bytes:
    return rng.randbytes(DEPTH * data_bytes)


READ_CASES = [
    (8, 9, 1, 0),
    (8, 9, 20, 90),
    (16, 16, 1, 60),
    (16, 12, 20, 0),
    (4, 3, 3, 120),
    (8, 1, 1, 0),
]


@pytest.mark.parametrize(("data_bytes", "max_word", "latency", "stall"), READ_CASES)
def test_reader_random(data_bytes: int, max_word: int, latency: int, stall: int) -> None:
    """Random transfers back to back: exactly the model's words and `last` flags."""
    rng = random.Random(f"read {data_bytes} {max_word} {latency} {stall}")
    image = background(rng, data_bytes)
    transfers = [random_transfer(rng, 0, len(image), max_word, overlap=True) for _ in range(8)]
    expected = [w for t in transfers for w in words_of(image, t)]
    reader = TransferReader(ADDR_BITS, data_bytes, max_word)
    m, port, mem = rig(data_bytes, [reader], image)
    got: list[tuple[int, bool]] = []

    async def feed(ctx: SimulatorContext) -> None:
        setup(ctx, mem, latency, stall)
        for t in transfers:
            await put(ctx, reader.cmd, t.cmd(), rng, 0.3)

    async def drain(ctx: SimulatorContext) -> None:
        got.extend(
            await take_words(ctx, reader, len(expected), random.Random(1), 0.7, 40 * len(expected))
        )
        assert not ctx.get(reader.error) and not ctx.get(port.error)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    assert got == expected


@pytest.mark.parametrize("b_bits", [1, 2, 3, 4, 5])
def test_shift_add_is_the_product(b_bits: int) -> None:
    """The readers' row bytes multiply (in LUTs): every `b`, random and extreme `a`."""
    a, b = Signal(16), Signal(b_bits)
    m = Module()
    product = Signal(16 + b_bits)
    m.d.comb += product.eq(shift_add(a, b))
    rng = random.Random(b_bits)
    cases = [(x, y) for x in (0, 1, 0xFFFF, *(rng.getrandbits(16) for _ in range(20)))
             for y in range(1 << b_bits)]  # fmt: skip

    async def bench(ctx: SimulatorContext) -> None:
        for x, y in cases:
            ctx.set(a, x)
            ctx.set(b, y)
            assert ctx.get(product) == x * y, f"{x} * {y}"

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def store_words(rng: random.Random, t: Transfer, max_word: int) -> list[int]:
    """Random words for a STORE, with junk above `word_bytes` that must not be written."""
    return [
        rng.getrandbits(8 * t.word_bytes)
        | rng.getrandbits(8 * max_word) >> (8 * t.word_bytes) << (8 * t.word_bytes)
        for _ in range(t.rows * t.row_words)
    ]


def apply_store(image: bytearray, t: Transfer, words: list[int]) -> None:
    for a, w in zip(t.addresses(), words, strict=True):
        image[a : a + t.word_bytes] = (w % (1 << 8 * t.word_bytes)).to_bytes(t.word_bytes, "little")


async def read_back(ctx: SimulatorContext, mem: SimMemory, data_bytes: int) -> bytes:
    """The whole memory through the backdoor, one word per cycle."""
    out = bytearray()
    for a in range(mem.depth_words):
        ctx.set(mem.backdoor_addr, a)
        await ctx.tick()
        out += ctx.get(mem.backdoor_rdata).to_bytes(data_bytes, "little")
    return bytes(out)


class StoreBench:
    """Commands, words and `done` of one TransferWriter, with random gaps."""

    def __init__(
        self, writer: TransferWriter, jobs: list[tuple[Transfer, list[int]]], seed: int
    ) -> None:
        self.writer, self.jobs, self.seed = writer, jobs, seed
        self.done = 0

    async def feed_cmds(self, ctx: SimulatorContext) -> None:
        rng = random.Random(self.seed)
        for t, _ in self.jobs:
            await put(ctx, self.writer.cmd, t.cmd(), rng, 0.2)

    async def feed_words(self, ctx: SimulatorContext) -> None:
        rng = random.Random(self.seed + 1)
        for _, words in self.jobs:
            for w in words:
                await put(ctx, self.writer.i, w, rng, 0.2)

    async def take_done(self, ctx: SimulatorContext, limit: int) -> None:
        rng = random.Random(self.seed + 2)
        for _ in range(limit):
            if self.done == len(self.jobs):
                return
            want = rng.random() < 0.6
            ctx.set(self.writer.done.ready, want)
            _, _, valid = await ctx.tick().sample(self.writer.done.valid)
            self.done += bool(valid and want)
        raise AssertionError(f"{self.done} of {len(self.jobs)} stores done in {limit} cycles")


WRITE_CASES = [(8, 5, 1, 0), (8, 5, 20, 90), (4, 4, 1, 60), (16, 3, 20, 0), (8, 1, 3, 120)]


@pytest.mark.parametrize(("data_bytes", "max_word", "latency", "stall"), WRITE_CASES)
def test_writer_random(data_bytes: int, max_word: int, latency: int, stall: int) -> None:
    """Random stores back to back: memory equals the model, bytes around untouched, and
    the last `done` comes only once nothing is outstanding on the bus."""
    rng = random.Random(f"write {data_bytes} {max_word} {latency} {stall}")
    image = background(rng, data_bytes)
    model = bytearray(image)
    jobs = []
    for _ in range(8):
        t = random_transfer(rng, 0, len(image), max_word, overlap=False)
        jobs.append((t, store_words(rng, t, max_word)))
        apply_store(model, t, jobs[-1][1])
    writer = TransferWriter(ADDR_BITS, data_bytes, max_word)
    m, port, mem = rig(data_bytes, [writer], image)
    bench = StoreBench(writer, jobs, 5)
    final: list[bytes] = []

    async def check(ctx: SimulatorContext) -> None:
        setup(ctx, mem, latency, stall)
        await bench.take_done(ctx, 30 * sum(len(w) for _, w in jobs) + 200)
        assert not ctx.get(mem.bus.cyc), "done before every write was answered"
        assert not ctx.get(writer.error) and not ctx.get(port.error)
        final.append(await read_back(ctx, mem, data_bytes))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench.feed_cmds, background=True)
    sim.add_testbench(bench.feed_words, background=True)
    sim.add_testbench(check)
    sim.run()
    assert final[0] == bytes(model)


@pytest.mark.parametrize(("latency", "stall"), [(1, 0), (20, 70)])
def test_three_clients_share_the_port(latency: int, stall: int) -> None:
    """Two readers and a writer at once, each on its own region: each reader gets its
    own words (the answers are routed to the client that asked) and the stores land."""
    nd, max_word = 8, 5
    rng = random.Random(f"three {latency} {stall}")
    image = background(rng, nd)
    third = len(image) // 3
    readers = [TransferReader(ADDR_BITS, nd, max_word) for _ in range(2)]
    writer = TransferWriter(ADDR_BITS, nd, max_word)
    m, port, mem = rig(nd, [readers[0], writer, readers[1]], image)
    loads = [
        [random_transfer(rng, k * third, (k + 1) * third, max_word, overlap=True) for _ in range(5)]
        for k in (0, 2)
    ]
    model = bytearray(image)
    jobs = []
    for _ in range(5):
        t = random_transfer(rng, third, 2 * third, max_word, overlap=False)
        jobs.append((t, store_words(rng, t, max_word)))
        apply_store(model, t, jobs[-1][1])
    expected = [[w for t in ts for w in words_of(image, t)] for ts in loads]
    got: list[list[tuple[int, bool]]] = [[], []]
    bench = StoreBench(writer, jobs, 9)
    final: list[bytes] = []

    def feeder(k: int):
        async def feed(ctx: SimulatorContext) -> None:
            for t in loads[k]:
                await put(ctx, readers[k].cmd, t.cmd(), random.Random(k), 0.2)

        return feed

    def drainer(k: int):
        async def drain(ctx: SimulatorContext) -> None:
            n = len(expected[k])
            got[k] = await take_words(ctx, readers[k], n, random.Random(10 + k), 0.8, 60 * n)

        return drain

    async def check(ctx: SimulatorContext) -> None:
        setup(ctx, mem, latency, stall)
        await bench.take_done(ctx, 30 * sum(len(w) for _, w in jobs) + 200)
        for _ in range(1000):  # the readers may still be busy
            if not ctx.get(mem.bus.cyc):
                break
            await ctx.tick()
        assert not ctx.get(port.error)
        final.append(await read_back(ctx, mem, nd))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    for k in range(2):
        sim.add_testbench(feeder(k), background=True)
        sim.add_testbench(drainer(k))
    sim.add_testbench(bench.feed_cmds, background=True)
    sim.add_testbench(bench.feed_words, background=True)
    sim.add_testbench(check)
    sim.run()
    assert got == expected
    assert final[0] == bytes(model)


def test_read_only_clients_send_addresses_only() -> None:
    """A reader's slot in the port holds its address alone (with data and byte selects,
    the constant zeros took 146 registers per reader on the ULX3S top); a client index
    outside the port is refused."""
    port = MemoryPort(3, ADDR_BITS, 8, read_only=(0, 2))
    assert [port.client(i).request.payload.shape().size for i in range(3)] == [
        ADDR_BITS,
        ADDR_BITS + 1 + 64 + 8,
        ADDR_BITS,
    ]
    Fragment.get(port, None)  # a writer between two readers elaborates
    with pytest.raises(ValueError, match="read_only names clients 0 to 2"):
        MemoryPort(3, ADDR_BITS, 8, read_only=(3,))


def test_reader_error_stops_without_hanging() -> None:
    """A load that reaches `error_from`: the flags rise, the port names the first word
    that failed, the words before it are right, and later commands are still taken."""
    nd, max_word = 8, 6
    rng = random.Random("read error")
    image = background(rng, nd)
    error_from = DEPTH // 2
    transfers = [
        random_transfer(rng, 0, error_from * nd, max_word, overlap=True),
        Transfer(error_from * nd - 13, 100, 3, 20, 3),  # crosses into the failing words
        *[random_transfer(rng, 0, len(image), max_word, overlap=True) for _ in range(3)],
    ]
    expected = [w for t in transfers for w in words_of(image, t)]
    reader = TransferReader(ADDR_BITS, nd, max_word)
    m, port, mem = rig(nd, [reader], image)
    got: list[tuple[int, bool]] = []

    async def feed(ctx: SimulatorContext) -> None:
        setup(ctx, mem, 20, 60)
        ctx.set(mem.error_from, error_from)
        for t in transfers:
            await put(ctx, reader.cmd, t.cmd(), rng, 0.2, limit=2000)
        for _ in range(100):  # every answer in flight comes back
            await ctx.tick()
        assert ctx.get(reader.error) and ctx.get(port.error)
        assert ctx.get(port.error_addr) == error_from
        assert not ctx.get(mem.bus.cyc), "requests went on after the error"

    async def drain(ctx: SimulatorContext) -> None:
        ctx.set(reader.o.ready, 1)
        for _ in range(3000):
            _, _, valid, word = await ctx.tick().sample(reader.o.valid, reader.o.payload)
            if valid:
                got.append((word.data, bool(word.last)))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(drain, background=True)
    sim.run()
    first_bad = next(i for i, a in enumerate(transfers[1].addresses()) if a + 3 > error_from * nd)
    assert got == expected[: len(got)]
    # words already fetched may be dropped once the error is known, but none past it comes
    assert len(got) <= len(transfers[0].addresses()) + first_bad


def test_writer_error_still_signals_done() -> None:
    """Stores reaching `error_from`: every `done` still comes, `error` rises, and the
    failing bus words are left as they were."""
    nd, max_word = 8, 4
    rng = random.Random("write error")
    image = background(rng, nd)
    error_from = DEPTH // 2
    model = bytearray(image)
    jobs = []
    for t in [
        random_transfer(rng, 0, error_from * nd, max_word, overlap=False),
        Transfer(error_from * nd - 21, 90, 3, 15, 3),
        random_transfer(rng, 0, len(image), max_word, overlap=False),
    ]:
        jobs.append((t, store_words(rng, t, max_word)))
        apply_store(model, t, jobs[-1][1])
    model[error_from * nd :] = image[error_from * nd :]
    writer = TransferWriter(ADDR_BITS, nd, max_word)
    m, port, mem = rig(nd, [writer], image)
    bench = StoreBench(writer, jobs, 3)
    final: list[bytes] = []

    async def check(ctx: SimulatorContext) -> None:
        setup(ctx, mem, 20, 60)
        ctx.set(mem.error_from, error_from)
        await bench.take_done(ctx, 3000)
        assert ctx.get(writer.error) and ctx.get(port.error)
        final.append(await read_back(ctx, mem, nd))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench.feed_cmds, background=True)
    sim.add_testbench(bench.feed_words, background=True)
    sim.add_testbench(check)
    sim.run()
    assert final[0] == bytes(model)


#: A load's cycles beyond one per word: command to first request, the port's
#: registers, the memory's latency (1), answer to word, and the edge its last word
#: is taken on.
FILL = TransferReader.CMD_TO_REQUEST + MemoryPort.LATENCY + 1 + TransferReader.ANSWER_TO_WORD + 1


def load_cycles(nd: int, t: Transfer) -> int:
    """Cycles from offering `t` to taking its last word: latency 1, no stalls, always ready."""
    reader = TransferReader(ADDR_BITS, nd, 16)
    image = bytes(range(256)) * (DEPTH * nd // 256)
    m, _, mem = rig(nd, [reader], image)
    cycles = 0

    async def bench(ctx: SimulatorContext) -> None:
        nonlocal cycles
        setup(ctx, mem, 1, 0)
        ctx.set(reader.o.ready, 1)
        ctx.set(reader.cmd.payload, t.cmd())
        ctx.set(reader.cmd.valid, 1)
        got = []
        while not got or not got[-1][1]:
            _, _, ready, valid, word = await ctx.tick().sample(
                reader.cmd.ready, reader.o.valid, reader.o.payload
            )
            cycles += 1
            assert cycles < 10 * len(t.addresses()) + 100, "the load did not end"
            if ready:
                ctx.set(reader.cmd.valid, 0)
            if valid:
                got.append((word.data, bool(word.last)))
        assert got == words_of(image, t)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return cycles


@pytest.mark.parametrize(
    ("nd", "t", "bound"),
    [
        (8, Transfer(3, 0, 1, 256, 1), 256 + FILL),  # a 1-byte word per cycle
        (8, Transfer(5, 301, 4, 64, 1), 256 + FILL),  # rows follow without a gap
        (8, Transfer(3, 0, 1, 64, 8), 64 + FILL),  # an 8-byte word per cycle
        (8, Transfer(7, 0, 1, 64, 9), 64 * 9 // 8 + FILL),  # 9 bytes in 1.125 cycles
        (16, Transfer(9, 0, 1, 64, 16), 64 + FILL),
    ],
)
def test_reader_full_rate(nd: int, t: Transfer, bound: int) -> None:
    cycles = load_cycles(nd, t)
    print(f"load data_bytes={nd} {t}: {cycles} cycles for {t.rows * t.row_words} words")
    assert cycles <= bound


def test_writer_full_rate() -> None:
    """1-byte words at one per cycle, and `done` a few cycles after the last."""
    nd, n = 8, 256
    writer = TransferWriter(ADDR_BITS, nd, 4)
    m, _, mem = rig(nd, [writer], bytes(DEPTH * nd))
    cycles = 0

    async def bench(ctx: SimulatorContext) -> None:
        nonlocal cycles
        setup(ctx, mem, 1, 0)
        ctx.set(writer.cmd.payload, Transfer(5, 300, 2, n // 2, 1).cmd())
        ctx.set(writer.cmd.valid, 1)
        ctx.set(writer.i.valid, 1)
        ctx.set(writer.done.ready, 1)
        taken = 0
        while True:
            ctx.set(writer.i.payload, taken & 0xFF)
            _, _, ready, i_ready, done = await ctx.tick().sample(
                writer.cmd.ready, writer.i.ready, writer.done.valid
            )
            cycles += 1
            assert cycles < 10 * n, "the store did not end"
            if ready:
                ctx.set(writer.cmd.valid, 0)
            if taken < n:  # valid was up: a ready took a word
                taken += i_ready
                if taken == n:
                    ctx.set(writer.i.valid, 0)
            if done:
                break
        assert taken == n

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    print(f"store 256 1-byte words in 2 rows: {cycles} cycles to done")
    # a word a cycle, then the last one's way to its write, the port, the memory (1)
    fill = TransferWriter.WORD_TO_WRITE + MemoryPort.LATENCY + 1 + TransferWriter.ACK_TO_DONE
    assert cycles <= n + fill


@pytest.mark.parametrize("latency", [1, 2, 7, 63])
def test_sim_memory_latency_stalls_and_order(latency: int) -> None:
    """Driving the bus directly: each answer exactly `latency` cycles after its request,
    in order, with the data at the time of the request (a later write does not leak
    into an earlier read); about threshold/256 of the cycles stall."""
    nd = 4
    mem = SimMemory(ADDR_BITS, nd, 64, init=list(range(100, 164)))
    bus = mem.bus
    # (write, addr, data): a read, a write to the same word, the read again
    ops = [(0, 5, 0), (1, 5, 0xAABBCCDD), (0, 5, 0), (0, 6, 0), (1, 7, 1), (0, 7, 0)] * 4
    answers: list[tuple[int, int]] = []  # (cycle, data)
    issued: list[int] = []
    stalls = 0

    async def bench(ctx: SimulatorContext) -> None:
        nonlocal stalls
        setup(ctx, mem, latency, 100, seed=0x1234)
        ctx.set(bus.cyc, 1)
        ctx.set(bus.sel, 0xF)
        pending = list(ops)
        for cycle in range(2000):
            if pending:
                we, adr, dat = pending[0]
                ctx.set(bus.stb, 1)
                ctx.set(bus.we, we)
                ctx.set(bus.adr, adr)
                ctx.set(bus.dat_w, dat)
            else:
                ctx.set(bus.stb, 0)
            _, _, stall, ack, err, dat_r = await ctx.tick().sample(
                bus.stall, bus.ack, bus.err, bus.dat_r
            )
            assert not err
            stalls += stall
            if ack:
                answers.append((cycle, dat_r))
            if pending and not stall:
                pending.pop(0)
                issued.append(cycle)
            if not pending and len(answers) == len(ops) and cycle > 400:
                return

    sim = Simulator(mem)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert [c for c, _ in answers] == [c + latency for c in issued]
    reads = [d for (we, _, _), (_, d) in zip(ops, answers, strict=True) if not we]
    assert reads[:4] == [105, 0xAABBCCDD, 106, 1]
    assert 0.25 < stalls / 400 < 0.55  # 100/256 of the cycles, roughly
