"""The co-processor's Verilog runs compiled programs bit-exact with L3 (and so L2).

Under cocotb, on the simulated memory (rtl/coproc/sim_top.py) at a 20-cycle
latency with random stalls from its LFSR, Python only at the ends of a run:
- Icarus: three conv layers chained through memory (sim/coproc_programs.py);
- Verilator: a whole tiny frame on the ULX3S hardware preset — the source
  program on the key frame, then the frame program on one inter frame's
  keypoints — with the design reset in the middle of the frame program and
  the frame run again from the start: the whole image (every intermediate map
  and the pixels) equals L3's;
- Icarus, `make test-long`: the same whole frame.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from compiler.decoder import compile_decoder
from defs.coproc import Fault
from defs.params import preset
from grace.coproc_run import model_cycles
from model.int_backend import IntBackend, frame_tensor, stream_keypoints
from model.synthetic import ClipSpec, synthesize_clip
from sim.coproc_frame import frame_case, mismatches, simulate_frame
from sim.coproc_host import host_image
from sim.coproc_programs import few_layers
from sim.coproc_sim import TOPLEVEL, simulate


def test_three_layers_under_icarus(build_root) -> None:
    params = preset("tiny")
    program = few_layers(params, seed=3)
    run = simulate(
        params, host_image(program.memory, program.words), simulator="icarus",
        build_dir=build_root / "coproc", latency=20, stall_threshold=60, seed=5,
    )  # fmt: skip
    assert [r.fault for r in run.programs] == [Fault.NONE]
    assert bytes(run.memory) == bytes(program.expected)
    counters = run.programs[0].counters
    assert counters["conv_busy"] > 0 and counters["port_stall"] > 0  # the stalls happened


@pytest.fixture(scope="module")
def tiny_frame(tiny_quantized):
    kp_detector, decoder = tiny_quantized
    compiled = compile_decoder(decoder, preset("ulx3s-85f"))
    clip = synthesize_clip(ClipSpec(seed=2_000_011, num_frames=2, size=64, face=11))
    with torch.no_grad():
        source = stream_keypoints(kp_detector(frame_tensor(clip[0])))
        driving = stream_keypoints(kp_detector(frame_tensor(clip[1])))
    keypoints = IntBackend(decoder).stream_integers(driving, source)
    return frame_case(compiled, clip[0], **keypoints)


def public_scopes(verilator_build: Path) -> set[str]:
    """The scopes whose signals a Verilator build shows to VPI (cocotb's handles), from
    the symbol-table files its last run listed (an earlier build's may still lie there)."""
    classes = (verilator_build / "Vtop_classes.mk").read_text()
    files = [verilator_build / f"{name}.cpp" for name in re.findall(r"\bVtop__Syms\w*", classes)]
    assert files, "no symbol table in the Verilator build"
    text = "".join(f.read_text() for f in files)
    return set(re.findall(r"__Vscopep_(\w+)->varInsert", text))


def _check_frame(case, run) -> None:
    assert [r.fault for r in run.programs] == [Fault.NONE, Fault.NONE]
    assert mismatches(case, run.memory) == 0
    np.testing.assert_array_equal(case.frame(run.memory), case.frame(case.expected))


@pytest.mark.heavy
def test_a_whole_frame_under_verilator_after_a_reset(tiny_frame, build_root) -> None:
    run = simulate_frame(
        tiny_frame, simulator="verilator", build_dir=build_root / "coproc", latency=20,
        stall_threshold=60, seed=7, reset_after=100_000, reset_program=1,
    )  # fmt: skip
    # the source program ran once, the frame program after the reset
    assert len(run.programs) == 1
    assert run.programs[0].fault == Fault.NONE
    assert mismatches(tiny_frame, run.memory) == 0
    np.testing.assert_array_equal(
        tiny_frame.frame(run.memory), tiny_frame.frame(tiny_frame.expected)
    )
    # the co-processor cycle model (rtl/coproc_cycles.py) predicts the frame's cycles
    compiled = tiny_frame.compiled
    model = model_cycles(compiled.frame_words, compiled.params, latency=20, stalls=60)
    assert model == pytest.approx(run.programs[0].cycles, rel=0.02)
    # only the top's ports are public: every inner signal public ran the frame 2.7 x slower
    assert public_scopes(run.result.log.parent.parent) == {"TOP", TOPLEVEL}


@pytest.mark.long
def test_a_whole_frame_under_icarus(tiny_frame, build_root) -> None:
    run = simulate_frame(
        tiny_frame, simulator="icarus", build_dir=build_root / "coproc", latency=20,
        stall_threshold=60, seed=9,
    )  # fmt: skip
    _check_frame(tiny_frame, run)
