"""Board builds: every board's plan (fast), the log parser, and one real place-and-route."""

from __future__ import annotations

import pytest

from boards.build import (
    BuildError,
    build,
    late_by_net,
    late_by_part,
    late_by_pin,
    late_endpoints,
    parse_report,
    plan,
    prepare_tools,
    sweep,
)
from boards.targets import BOARDS, UnknownBoard, board
from defs.params import preset
from rtl.blocks import BLOCKS


@pytest.mark.parametrize("board_name", list(BOARDS))
@pytest.mark.parametrize("block", list(BLOCKS))
def test_build_plan(board_name: str, block: str) -> None:
    params = preset(board_name)
    files = plan(block, params, board_name).files
    assert "top.il" in files
    script = files["build_top.sh"]
    assert ("nextpnr-ecp5" if board_name == "ulx3s-85f" else "nextpnr-ice40") in script
    assert "--timing-allow-fail" in script
    constraints = files["top.lpf"] if board_name == "ulx3s-85f" else files["top.pcf"]
    hz = params.clock_hz
    assert (f"{hz:.0f}" in constraints) or (f"{hz / 1e6:g}" in constraints), constraints


def test_placer_seed_reaches_nextpnr_only_when_given() -> None:
    assert "--seed" not in plan("requant", preset("icebreaker")).files["build_top.sh"]
    assert "--seed 3" in plan("requant", preset("icebreaker"), seed=3).files["build_top.sh"]


def test_bad_seed_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(BuildError, match="placer seed must be a positive integer, not 0"):
        build("requant", preset("icebreaker"), tmp_path, seed=0)


def test_only_the_ecp5_top_is_placed_by_the_static_placer() -> None:
    def script(block: str, board_name: str) -> str:
        return plan(block, preset(board_name), board_name).files["build_top.sh"]

    assert "--placer static" in script("top", "ulx3s-85f")
    assert "--placer" not in script("conv", "ulx3s-85f")
    assert "--placer" not in script("requant", "icebreaker")


def test_ice40_build_uses_dsps() -> None:
    assert "-dsp" in plan("requant", preset("icebreaker")).files["top.ys"]


def test_unknown_board_and_missing_board() -> None:
    with pytest.raises(UnknownBoard, match="unknown board 'de0'; supported boards: ulx3s-85f"):
        board("de0")
    with pytest.raises(BuildError, match="no board given"):
        plan("requant", preset("tiny"))


def test_missing_tool_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("NEXTPNR_ICE40", "no-such-nextpnr")
    with pytest.raises(BuildError, match=r"no-such-nextpnr not found.*make setup"):
        prepare_tools(BOARDS["icebreaker"].tools)


NEXTPNR_LOG = """\
Info: Device utilisation:
Info: 	          TRELLIS_IO:     2/  365     0%
Info: 	          TRELLIS_FF:   440/83640     0%
Info: 	        TRELLIS_COMB:   551/83640     0%
Info: 	          MULT18X18D:     2/  156     1%
Info: 	              DP16KD:     0/  208     0%
Info: Max frequency for clock '$glbnet$clk': 120.00 MHz (PASS at 100.00 MHz)
Warning: Max frequency for clock '$glbnet$clk': 136.26 MHz (FAIL at 150.01 MHz)
"""

YOSYS_LOG = """\
2.50. Printing statistics.

=== design hierarchy ===

        +----------Count including submodules.
        |
     2651 submodules
      223   SB_CARRY
       11   SB_DFFE
      254   SB_DFFESR
      128   SB_DFFSR
     2035   SB_LUT4
        2   SB_MAC16
"""


def test_parse_report_ecp5_takes_post_route_fmax() -> None:
    report = parse_report("ecp5", yosys_log="", nextpnr_log=NEXTPNR_LOG)
    assert (report["luts"], report["ffs"], report["dsps"], report["brams"]) == (551, 440, 2, 0)
    assert report["fmax_mhz"] == 136.26
    assert report["available"]["MULT18X18D"] == 156


def test_parse_report_ice40_splits_luts_and_ffs() -> None:
    log = (
        "Info: \t        ICESTORM_LC:  2268/  5280    42%\n"
        "Info: \t       ICESTORM_DSP:     2/     8    25%\n"
        "Info: Max frequency for clock 'clk': 53.22 MHz (PASS at 50.00 MHz)\n"
    )
    report = parse_report("ice40", yosys_log=YOSYS_LOG, nextpnr_log=log)
    assert (report["luts"], report["ffs"], report["dsps"]) == (2035, 11 + 254 + 128, 2)
    assert report["fmax_mhz"] == 53.22


def test_sweep_rejects_bad_seeds_before_building(tmp_path) -> None:
    with pytest.raises(BuildError, match="placer seed 2 given twice"):
        sweep("requant", preset("icebreaker"), tmp_path, seeds=(2, 3, 2))
    with pytest.raises(BuildError, match="placer seed must be a positive integer, not 0"):
        sweep("requant", preset("icebreaker"), tmp_path, seeds=(1, 0))
    assert not any(tmp_path.iterdir())


@pytest.mark.pnr
def test_real_seed_sweep_icebreaker(build_root) -> None:
    """Two seeds, two processes: a report and a bitstream per seed, in seed order."""
    seen = []
    reports = sweep(
        "requant",
        preset("icebreaker"),
        build_root,
        seeds=(2, 1),
        on_report=lambda seed, _: seen.append(seed),
    )
    assert list(reports) == [1, 2] and sorted(seen) == [1, 2]
    assert reports[1].build_dir != reports[2].build_dir
    for seed, report in reports.items():
        assert report.build_dir.name.endswith(f"-seed{seed}")
        assert report.bitstream.exists() and 10 < report.fmax_mhz < 300
        assert 0 <= report.late_endpoints < report.endpoints


def test_late_endpoints_counts_latest_arrivals_past_the_period() -> None:
    """From nextpnr's detailed timing report: each endpoint's [earliest, latest] arrival."""

    def net(*delays: list[float]) -> dict:
        return {"endpoints": [{"cell": "c", "port": "DI", "delay": d} for d in delays]}

    timing = {
        "detailed_net_timings": [net([1.0, 8.5], [0.5, 7.9]), net([2.0, 8.0]), net([9.0, 9.1])]
    }
    assert late_endpoints(timing, 8.0) == (2, 4)  # 8.0 itself is in time
    assert late_endpoints(timing, 9.5) == (0, 4)
    assert late_endpoints({}, 8.0) == (0, 0)


def test_late_endpoints_are_grouped_by_the_part_that_holds_them() -> None:
    def net(*cells: tuple[str, float]) -> dict:
        return {"endpoints": [{"cell": c, "port": "CE", "delay": [0.1, d]} for c, d in cells]}

    timing = {
        "detailed_net_timings": [
            net(("top.core.reader.word_FF_Q_2", 9.0), ("top.core.reader.ring.b_FF", 8.5)),
            net(("top.core.port.slot_1.skid_FF", 8.2), ("top.core.reader.at_FF", 7.9)),
            net(("$nextpnr_CCU2C_7$COMB0", 8.1), ("top.core.port.slot_3.o_FF", 10.0)),
        ]
    }
    assert late_by_part(timing, 8.0, depth=3) == [
        ("top.core.port", 2, 10.0),  # slot_1 and slot_3 cut to three levels
        ("top.core.reader", 2, 9.0),  # ring.b is a level deeper; at_FF is in time
        ("(top)", 1, 8.1),  # a cell without a hierarchy
    ]
    assert late_by_part(timing, 8.0, depth=2, parts=1) == [("top.core", 4, 10.0)]
    assert late_by_part(timing, 10.0) == [] and late_by_part({}, 8.0) == []


def test_late_endpoints_are_counted_by_pin_kind_and_by_net() -> None:
    def endpoint(port: str, delay: float) -> dict:
        return {"cell": "c", "port": port, "delay": [0.1, delay]}

    enable = {
        "driver": "core.writer.advance_LUT4_Z",
        "endpoints": [endpoint("CE", 9.0 + k / 10) for k in range(3)] + [endpoint("CE", 7.0)],
    }
    data = {"driver": "core.port.grant_FF", "endpoints": [endpoint("DI", 8.5), endpoint("M", 8.1)]}
    early = {"driver": "core.fast_FF", "endpoints": [endpoint("DI", 2.0)]}
    timing = {"detailed_net_timings": [data, early, enable]}
    assert late_by_pin(timing, 8.0) == [("CE", 3), ("DI", 1), ("M", 1)]
    assert late_by_net(timing, 8.0) == [
        ("core.writer.advance_LUT4_Z", "CE", 3, 4, 9.2),  # the in-time fourth counts as fanout
        ("core.port.grant_FF", "DI/M", 2, 2, 8.5),
    ]
    assert late_by_net(timing, 8.0, nets=1)[0][0] == "core.writer.advance_LUT4_Z"
    assert late_by_net(timing, 9.5) == [] and late_by_pin({}, 8.0) == []


def test_every_build_writes_the_detailed_timing_report() -> None:
    for block, board_name in (("top", "ulx3s-85f"), ("requant", "icebreaker")):
        script = plan(block, preset(board_name), board_name).files["build_top.sh"]
        assert "--report timing.json --detailed-timing-report" in script


def test_parse_report_unfinished_build() -> None:
    with pytest.raises(BuildError, match="did not finish"):
        parse_report("ecp5", yosys_log="", nextpnr_log="Info: Packing...\n")


@pytest.mark.pnr
def test_real_place_and_route_icebreaker(build_root) -> None:
    report = build("requant", preset("icebreaker"), build_root)
    assert report.bitstream.exists() and report.bitstream.stat().st_size > 0
    assert report.dsps >= 1  # the multiply went into SB_MAC16s
    assert report.luts > 100 and report.ffs > report.harness_ffs
    assert 10 < report.fmax_mhz < 300


def test_programming_failure_is_one_clear_error(monkeypatch, tmp_path) -> None:
    from boards.targets import ProgrammingError, run_programmer

    monkeypatch.setenv("OPENFPGALOADER", "false")  # a programmer that always fails
    with pytest.raises(ProgrammingError, match="plugged in"):
        run_programmer(BOARDS["icebreaker"], str(tmp_path / "top.bin"))
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "no-such-loader"))
    with pytest.raises(ProgrammingError, match="not found"):
        run_programmer(BOARDS["ulx3s-85f"], str(tmp_path / "top.bit"))


def test_the_build_table_names_late_pins_and_nets(tmp_path) -> None:
    from rich.console import Console

    from boards.build import BuildReport
    from grace.summary import render_build

    report = BuildReport(
        board="ulx3s-85f", block="top", luts=1, ffs=2, dsps=3, brams=4, fmax_mhz=90.0,
        target_mhz=150.0, harness_ffs=0, build_dir=tmp_path, bitstream=tmp_path / "top.bit",
        late_endpoints=5, endpoints=10, late_parts=(("core.writer", 3, 9.2),),
        late_pins=(("CE", 3), ("DI", 2)),
        late_nets=(("core.writer.advance_LUT4_Z", "CE", 3, 4, 9.2),),
    )  # fmt: skip
    console = Console(record=True, width=200)
    console.print(render_build(report, 1.0))
    text = console.export_text()
    assert "late, by pin" in text and "CE 3 · DI 2" in text
    assert "3 of 4 CE pins driven by core.writer.advance_LUT4_Z (latest 9.20 ns)" in text
