"""The integer decoder (L2) and PTQ on the committed tiny model."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch

from defs.params import preset
from grace.codec_run import load_models
from model.agc import build_generator, build_kp_detector
from model.codec import CodecSettings, decode_stream, encode_clip
from model.fixed_decoder import decode_int, encode_source_int
from model.int_backend import (
    IntBackend,
    IntBackendError,
    calibration_samples,
    layer_sqnr,
    quantize_decoder,
)
from model.metrics import quality
from model.ptq import QuantizationError, calibrate, float_trace
from model.synthetic import ClipSpec, synthesize_clip

PARAMS = preset("tiny")
#: Per-layer SQNR of the integer decoder against the float one, in dB: measured
#: 19.9 (r1.mid) to 42.2 (occ_logits) on the first inter frames of the clip below;
#: the bound leaves about 4 dB of margin.
MIN_LAYER_SQNR_DB = 16.0


@pytest.fixture(scope="module")
def models():
    return load_models(PARAMS, None)


@pytest.fixture(scope="module")
def quantized(models):
    kp_detector, generator = models
    return quantize_decoder(kp_detector, generator, PARAMS)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return synthesize_clip(ClipSpec(seed=1_000_123, num_frames=12, size=64, face=90))


def test_float_trace_is_the_decoder(models) -> None:
    kp_detector, generator = models
    source, kp_d, kp_s = calibration_samples(kp_detector, PARAMS, clips=1, frames=4)[0]
    traced = float_trace(generator, source, kp_d, kp_s)["prediction"]
    with torch.no_grad():
        direct = generator.decode(generator.encode_source(source), kp_d, kp_s)["prediction"]
    torch.testing.assert_close(traced, direct)


def test_int_decoder_tracks_float(models, quantized, clip) -> None:
    """Through the codec: int8 loses < 0.5 dB against ground truth, and ≈ float."""
    kp_detector, generator = models
    data = encode_clip(clip, Fraction(25), PARAMS.name, kp_detector, CodecSettings()).data
    as_float = decode_stream(data, generator, preset=PARAMS.name, model=PARAMS.model).frames
    as_int = decode_stream(
        data, IntBackend(quantized), preset=PARAMS.name, model=PARAMS.model
    ).frames
    np.testing.assert_array_equal(as_int[0], as_float[0])  # the key frame itself
    float_q, int_q = quality(clip[1:], as_float[1:]), quality(clip[1:], as_int[1:])
    assert int_q.psnr > float_q.psnr - 0.5
    assert quality(as_float[1:], as_int[1:]).psnr > 38


def test_every_layer_tracks_the_float_decoder(models, quantized, clip) -> None:
    """Each integer activation decode_int records, dequantized, against the same
    tensor of the float decoder (L0, an independent path) on the same stream
    keypoints: a wrong shift, scale, padding, residual or ReLU in any one layer
    drops that layer's SQNR far below int8 noise, which a whole-frame PSNR can hide."""
    kp_detector, generator = models
    sqnr = layer_sqnr(kp_detector, generator, quantized, [clip[:4]])
    scales = quantized.activation_scales  # every tensor with a scale, but a pooled
    # conv's output is recorded after its pool, and the pixels are checked elsewhere
    assert set(sqnr) == {n for n in scales if n != "prediction" and f"{n}.pooled" not in scales}
    low = {name: round(db, 1) for name, db in sqnr.items() if db < MIN_LAYER_SQNR_DB}
    assert not low, f"layers below {MIN_LAYER_SQNR_DB} dB: {low}"
    out = decode_int(
        quantized,
        encode_source_int(quantized, clip[0]),
        np.arange(20).reshape(10, 2) * 7 - 60,
        np.arange(20).reshape(10, 2) * 7 - 57,
    )
    assert out["frame"].dtype == np.uint8 and out["frame"].shape == (64, 64, 3)
    assert (out["mask"].sum(axis=0) > 200).all()  # softmax weights ≈ 256 everywhere


def test_calibration_methods(models) -> None:
    kp_detector, generator = models
    samples = calibration_samples(kp_detector, PARAMS, clips=1, frames=4)
    minmax = calibrate(generator, samples, "minmax")
    pct = calibrate(generator, samples, "percentile")
    assert all(pct[k] <= minmax[k] + 1e-12 for k in minmax)
    with pytest.raises(QuantizationError, match="calibration method 'mse'"):
        calibrate(generator, samples, "mse")


def test_jacobians_first_order_motion() -> None:
    """FOMM mode (Jacobians): the integer decoder follows the float one (random weights)."""
    m = dataclasses.replace(PARAMS.model, estimate_jacobian=True)
    params = dataclasses.replace(PARAMS, model=m)
    torch.manual_seed(5)
    kp_detector = build_kp_detector(m).eval()
    generator = build_generator(m).eval()
    with torch.no_grad():  # non-trivial Jacobians: the detector starts at the identity
        kp_detector.jacobian.weight.normal_(0, 0.05)
    decoder = quantize_decoder(kp_detector, generator, params)
    assert decoder.jacobian
    clip = synthesize_clip(ClipSpec(seed=3, num_frames=6, size=64, face=5))
    data = encode_clip(clip, Fraction(25), params.name, kp_detector, CodecSettings()).data
    as_float = decode_stream(data, generator, preset=params.name, model=m).frames
    as_int = decode_stream(data, IntBackend(decoder), preset=params.name, model=m).frames
    assert quality(as_float[1:], as_int[1:]).psnr > 35


def test_unsupported_inputs(quantized) -> None:
    backend = IntBackend(quantized)
    off_grid = {"value": torch.full((1, 10, 2), 0.001)}
    with pytest.raises(IntBackendError, match=r"keypoints on a 0\.00390625 grid"):
        backend.decode(None, off_grid, off_grid)
    jac = dataclasses.replace(quantized, jacobian=True)
    on_grid = {"value": torch.zeros(1, 10, 2)}
    with pytest.raises(IntBackendError, match="needs Jacobians"):
        IntBackend(jac).decode(None, on_grid, on_grid)
