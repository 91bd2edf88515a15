"""The host's side of a co-processor run: what it writes into memory, what it reads back.

The memory holds the compiled image from address 0 and the program after it
(32-byte aligned); IMAGE_BYTES covers the image only, so no transfer of the
program can touch its own words. The same layout serves the Amaranth
simulation (`run_pysim`, for short programs) and the cocotb harness
(sim/coproc_tb.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from amaranth.sim import Simulator, SimulatorContext

from defs.coproc import COUNTER_NAMES, INSTRUCTION_BYTES, Fault, Register
from defs.params import GraceParams
from rtl.coproc.sim_top import SimTop


@dataclass(frozen=True)
class HostImage:
    blob: bytes  # the memory's contents: the image, then each program
    image_bytes: int
    programs: tuple[tuple[int, int], ...]  # (PROGRAM_BASE, PROGRAM_WORDS) of each, in run order

    def words(self, bus_bytes: int) -> list[int]:
        """The memory as bus words, little-endian."""
        blob = self.blob + bytes(-len(self.blob) % bus_bytes)
        step = bus_bytes
        return [int.from_bytes(blob[i : i + step], "little") for i in range(0, len(blob), step)]


def host_image(memory: bytes | bytearray, *programs: Sequence[int]) -> HostImage:
    """The image, then each program's words from the next 32-byte boundary."""
    blob = bytearray(memory)
    placed = []
    for words in programs:
        blob += bytes(-len(blob) % INSTRUCTION_BYTES)
        placed.append((len(blob), len(words)))
        blob += b"".join(w.to_bytes(INSTRUCTION_BYTES, "little") for w in words)
    return HostImage(bytes(blob), len(memory), tuple(placed))


@dataclass
class RunResult:
    memory: bytearray  # the image after the run (IMAGE_BYTES of it)
    fault: Fault
    fault_index: int
    cycles: int
    counters: dict[str, int] = field(default_factory=dict)
    # `soft_reset`: STATUS after CONTROL's soft reset, and whether irq rose meanwhile
    status_after_reset: int | None = None
    irq_during_reset: bool = False


def run_pysim(
    params: GraceParams,
    image: HostImage,
    *,
    latency: int = 1,
    stall_threshold: int = 0,
    seed: int = 1,
    watchdog: int = 1 << 16,
    error_from: int | None = None,
    max_cycles: int = 200_000,
    preload: bool = False,
    soft_reset: bool = False,
) -> RunResult:
    """Run a program in Amaranth's simulator (slow: for programs of a few tiles)."""
    bus = params.coproc.bus_bytes
    words = image.words(bus)
    # `preload`: the memory starts with the image (its init), not filled cycle by cycle
    dut = SimTop(params, len(words) + 1, words if preload else None)
    result: dict[str, object] = {}

    async def access(ctx: SimulatorContext, reg: int, value: int | None = None) -> int:
        ctrl = dut.ctrl
        ctx.set(ctrl.cyc, 1)
        ctx.set(ctrl.stb, 1)
        ctx.set(ctrl.we, value is not None)
        ctx.set(ctrl.adr, reg)
        ctx.set(ctrl.dat_w, value or 0)
        while True:
            await ctx.tick()
            if ctx.get(ctrl.ack):
                break
        data = ctx.get(ctrl.dat_r)
        ctx.set(ctrl.cyc, 0)
        ctx.set(ctrl.stb, 0)
        return data

    async def bench(ctx: SimulatorContext) -> None:
        ctx.set(dut.latency, latency)
        ctx.set(dut.stall_threshold, stall_threshold)
        ctx.set(dut.lfsr_seed, seed)
        ctx.set(dut.error_from, len(words) + 1 if error_from is None else error_from)
        for i, word in enumerate([] if preload else words):
            ctx.set(dut.backdoor_addr, i)
            ctx.set(dut.backdoor_wdata, word)
            ctx.set(dut.backdoor_we, 1)
            await ctx.tick()
        ctx.set(dut.backdoor_we, 0)
        await access(ctx, Register.IMAGE_BYTES, image.image_bytes)
        await access(ctx, Register.WATCHDOG, watchdog)
        for base, count in image.programs:
            await access(ctx, Register.PROGRAM_BASE, base)
            await access(ctx, Register.PROGRAM_WORDS, count)
            await access(ctx, Register.CONTROL, 1)
            for _ in range(max_cycles):
                await ctx.tick()
                if ctx.get(dut.irq):
                    break
            else:
                raise AssertionError(f"no done after {max_cycles} cycles")
            status = await access(ctx, Register.STATUS)
            if status >> 8:
                break
        result["fault"] = Fault((status >> 8) & 0xFF)
        result["fault_index"] = await access(ctx, Register.FAULT_INDEX)
        result["cycles"] = await access(ctx, Register.CYCLES)
        result["counters"] = {
            name: await access(ctx, Register.COUNTERS + i) for i, name in enumerate(COUNTER_NAMES)
        }
        out = bytearray()
        for i in range(-(-image.image_bytes // bus)):
            ctx.set(dut.backdoor_addr, i)
            await ctx.tick()
            out += ctx.get(dut.backdoor_rdata).to_bytes(bus, "little")
        result["memory"] = out[: image.image_bytes]
        if soft_reset:  # the run's end reported: a soft reset clears it, with no done
            await access(ctx, Register.CONTROL, 2)
            irq = False
            for _ in range(8):
                await ctx.tick()
                irq |= bool(ctx.get(dut.irq))
            result["irq_during_reset"] = irq
            result["status_after_reset"] = await access(ctx, Register.STATUS)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return RunResult(
        result["memory"], result["fault"], result["fault_index"], result["cycles"],
        result["counters"], result.get("status_after_reset"),
        result.get("irq_during_reset", False),
    )  # fmt: skip
