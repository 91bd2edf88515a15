"""fomm-256 whole frames as programs on L3, bit-exact with L2 (`make test-long`).

Random weights (there is no fomm-256 checkpoint), calibrated on one frame, on
the ULX3S engine: the source program on a 256² key frame, then inter frames
with FOMM's Jacobians and, the same decoder made DAC, without. A frame takes
minutes on L3, so these run in `make test-long`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from compiler.decoder import compile_decoder
from defs.params import preset
from model.fixed_decoder import decode_int, encode_source_int
from model.synthetic import ClipSpec, synthesize_clip
from sim.l3.decoder import IsaDecoder

FOMM = preset("fomm-256")
HW = preset("ulx3s-85f").replace(model=FOMM.model)

pytestmark = pytest.mark.long


@pytest.fixture(scope="module")
def decoder():
    from model.agc import build_generator, build_kp_detector
    from model.int_backend import calibration_samples
    from model.ptq import build_quantized, calibrate

    torch.manual_seed(0)
    kp_detector = build_kp_detector(FOMM.model).eval()
    generator = build_generator(FOMM.model).eval()
    samples = calibration_samples(kp_detector, FOMM, clips=1, frames=2)[:1]
    scales = calibrate(generator, samples, "percentile")
    return build_quantized(generator, scales, FOMM.numeric, FOMM.model.num_kp)


@pytest.mark.parametrize("jacobian", [True, False], ids=["fomm", "dac"])
def test_fomm_256_frames_on_l3_equal_l2(decoder, jacobian: bool) -> None:
    q = dataclasses.replace(decoder, jacobian=jacobian)
    isa = IsaDecoder(compile_decoder(q, HW))
    frame = synthesize_clip(ClipSpec(seed=3_000_001, num_frames=1, size=256, face=9))[0]
    isa.encode_source(frame)
    cache = encode_source_int(q, frame)
    rng = np.random.default_rng(17)
    kp_d, kp_s = rng.integers(-230, 231, (2, q.num_kp, 2))
    jac = rng.integers(-90, 91, (2, q.num_kp, 2, 2)) if jacobian else (None, None)
    got = isa.decode(kp_d, kp_s, jac[0], jac[1])
    kw = {"jac_driving_q": jac[0], "jac_source_q": jac[1]} if jacobian else {}
    np.testing.assert_array_equal(got, decode_int(q, cache, kp_d, kp_s, **kw)["frame"])
