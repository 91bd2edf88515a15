"""RegisteredRAM: the twin in simulation, the ECP5 DP16KD tiling in the netlist."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from amaranth.sim import Simulator, SimulatorContext

from rtl.bram import TILES_PER_GROUP, RegisteredRAM, dp16kd_tiles
from rtl.replica import KEEP_REPLICAS
from sim.netlist import cells_of, synthesize


@pytest.mark.parametrize(
    ("address_stages", "write_stages"), [(0, 0), (1, 0), (2, 0), (0, 1), (2, 1)]
)
@pytest.mark.parametrize(("width", "depth", "granularity"), [(16, 64, 16), (24, 40, 8), (9, 17, 3)])
def test_twin_reads_after_its_latency_with_lanes_and_clear(
    width: int, depth: int, granularity: int, address_stages: int, write_stages: int
) -> None:
    dut = RegisteredRAM(
        width,
        depth,
        granularity=granularity,
        address_stages=address_stages,
        write_stages=write_stages,
    )
    assert dut.latency == 2 + address_stages
    rng = random.Random(width * depth)
    lanes = width // granularity
    model = [0] * depth
    errors: list[str] = []

    async def bench(ctx: SimulatorContext) -> None:
        # a read samples the RAM at the edge ending cycle `cycle + latency - 2`,
        # so it sees every write before that edge, not the one at it
        reads: list[tuple[int, int, bool]] = []  # (sampling cycle, address, clear)
        writes: list[tuple[int, int, int, int]] = []  # (edge it lands after, addr, en, data)
        results: list[tuple[int, int]] = []  # (cycle due on r_data, expected)
        for cycle in range(600):
            addr, en = rng.randrange(depth), rng.randrange(1 << lanes)
            data = rng.getrandbits(width)
            read, clear = rng.randrange(depth), rng.random() < 0.2
            ctx.set(dut.w_addr, addr)
            ctx.set(dut.w_data, data)
            ctx.set(dut.w_en, en)
            ctx.set(dut.r_addr, read)
            ctx.set(dut.r_clear, clear)
            reads.append((cycle + dut.latency - 2, read, clear))
            for when, a, c in [r for r in reads if r[0] == cycle]:
                results.append((when + 2, 0 if c else model[a]))
            reads = [r for r in reads if r[0] > cycle]
            writes.append((cycle + write_stages, addr, en, data))
            await ctx.tick()
            for _, w_addr, w_en, w_data in [w for w in writes if w[0] == cycle]:
                mask = sum(((w_en >> k) & 1) * (((1 << granularity) - 1) << (k * granularity))
                           for k in range(lanes))  # fmt: skip
                model[w_addr] = (model[w_addr] & ~mask) | (w_data & mask)
            writes = [w for w in writes if w[0] > cycle]
            for _, expected in [r for r in results if r[0] == cycle + 1]:
                got = ctx.get(dut.r_data)
                if got != expected:
                    errors.append(f"cycle {cycle}: got {got:#x}, expected {expected:#x}")
            results = [r for r in results if r[0] > cycle + 1]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not errors, errors[:5]


@pytest.mark.parametrize(
    ("width", "depth", "granularity", "tiles"),
    [(64, 8192, 64, 32), (1024, 1024, 64, 64), (63, 1024, 63, 4), (16, 300, 8, 2)],
)
def test_ecp5_tiles_are_dp16kd_with_output_registers(
    width: int, depth: int, granularity: int, tiles: int, build_root: Path
) -> None:
    assert dp16kd_tiles(width, depth, granularity) == tiles
    if width * depth > 64 * 1024:  # the big ones: the count is enough
        return
    ram = RegisteredRAM(width, depth, granularity=granularity, target="ecp5")
    work = build_root / "bram" / f"{width}x{depth}"
    top, counts = synthesize(ram, "ecp5", work, after_read=KEEP_REPLICAS)
    brams = cells_of(top, "DP16KD")
    assert len(brams) == tiles
    for cell in brams:
        params = cell["parameters"]
        assert params["REGMODE_B"] == "OUTREG" and params["REGMODE_A"] == "NOREG"
        assert params["RESETMODE"] == "SYNC"
    # one fabric flip-flop per tile: its copy of the clear flag, a cycle ahead of
    # the output register
    assert counts.get("TRELLIS_FF", 0) == tiles


@pytest.mark.parametrize(
    ("address_stages", "width", "groups"), [(1, 24, 0), (2, 24, 1), (2, 80, 2)]
)
def test_ecp5_registered_address_is_copied_per_tile(
    address_stages: int, width: int, groups: int, build_root: Path
) -> None:
    ram = RegisteredRAM(width, 600, granularity=8, target="ecp5", address_stages=address_stages)
    work = build_root / "bram" / f"copies{address_stages}_{width}"
    top, counts = synthesize(ram, "ecp5", work, after_read=KEEP_REPLICAS)
    tiles = dp16kd_tiles(width, 600, 8)
    assert len(cells_of(top, "DP16KD")) == tiles == width // 8
    assert groups == (-(-tiles // TILES_PER_GROUP) if address_stages == 2 else 0)
    # per tile: the address (10 bits) and the clear, then the clear again; per
    # group of tiles (two stages): the address and the clear once more
    assert counts.get("TRELLIS_FF", 0) == tiles * (10 + 1 + 1) + groups * (10 + 1)


@pytest.mark.parametrize(("width", "groups"), [(24, 1), (80, 2)])
def test_ecp5_staged_write_is_copied_per_group_of_tiles(
    width: int, groups: int, build_root: Path
) -> None:
    ram = RegisteredRAM(width, 600, granularity=8, target="ecp5", write_stages=1)
    work = build_root / "bram" / f"write_copies_{width}"
    top, counts = synthesize(ram, "ecp5", work, after_read=KEEP_REPLICAS)
    tiles = width // 8
    assert len(cells_of(top, "DP16KD")) == tiles
    assert groups == -(-tiles // TILES_PER_GROUP)
    # per tile: its clear copy and its lane's enable (one tile per 8-bit lane);
    # the data once; per group: the address (10 bits)
    assert counts.get("TRELLIS_FF", 0) == tiles * 2 + width + groups * 10


def test_twin_elsewhere_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="granularity"):
        RegisteredRAM(10, 16, granularity=3)
    with pytest.raises(ValueError, match="unknown RAM target"):
        RegisteredRAM(8, 16, target="xilinx")
    with pytest.raises(ValueError, match="address_stages must be 0, 1 or 2"):
        RegisteredRAM(8, 16, address_stages=3)
    with pytest.raises(ValueError, match="write_stages must be 0 or 1"):
        RegisteredRAM(8, 16, write_stages=2)
    assert dp16kd_tiles(8, 1 << 15, 8) == 0  # deeper than one tile: the twin
