"""L1 (fake-quantized PyTorch, model/fakequant.py) is bit-exact with L2 (model/fixed*).

Every layer's integers are compared, on the trained tiny checkpoint with synthetic clips
and on random weights (randomised BatchNorm, random keypoints and Jacobians, a singular
and a saturating Jacobian) for several seeds and shapes. A deliberately wrong rounding
rule in L1 must be caught, so the comparison cannot pass vacuously.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import model.fakequant as fq
from defs.params import GraceParams, ModelParams, preset
from grace.codec_run import load_models
from model.agc import build_generator, build_kp_detector
from model.fakequant import FakeQuantDecoder, int_views
from model.fixed import requantize
from model.fixed_decoder import (
    PIXEL_FRAC_BITS,
    QuantizedDecoder,
    decode_int,
    encode_source_int,
    quantize_image,
)
from model.fixed_motion import (
    COORD_FRAC_BITS,
    affine_motions,
    compose_jacobians,
    heatmaps,
    keypoints_to_coords,
    sparse_motions,
)
from model.fixed_ops import (
    exp_lut,
    grid_sample_fixed,
    grid_sample_fixed_mul,
    normalized_to_pixels,
    softmax_channels_fixed,
)
from model.int_backend import (
    IntBackend,
    calibration_samples,
    frame_tensor,
    quantize_decoder,
    stream_keypoints,
)
from model.metrics import frame_psnr
from model.ptq import build_quantized, calibrate
from model.synthetic import ClipSpec, synthesize_clip

TINY = preset("tiny")
#: L1 (= L2) output against the float decoder (L0) on the trained tiny model, in dB.
#: Measured 42.6 – 43.6 dB per frame on the clips below (41.9 – 43.3 dB over 44 more
#: frames of four other clips); the bound leaves about 2 dB of margin.
MIN_PSNR_VS_FLOAT = 40.0

Args = dict[str, np.ndarray]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread is fastest for these small float64 tensors, and it keeps idle OpenMP
    threads from spinning when the machine is busy (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- traces


def _warp_l2(features: np.ndarray, coords: np.ndarray, occ: np.ndarray | None = None):
    """L2's warp at normalised coordinates (of the features' size, as grid_sample)."""
    h, w = np.shape(features)[1:]
    px = normalized_to_pixels(coords[..., 0], COORD_FRAC_BITS, w, PIXEL_FRAC_BITS)
    py = normalized_to_pixels(coords[..., 1], COORD_FRAC_BITS, h, PIXEL_FRAC_BITS)
    if occ is None:
        return grid_sample_fixed(features, px, py, PIXEL_FRAC_BITS)
    return grid_sample_fixed_mul(features, px, py, PIXEL_FRAC_BITS, occ)


def l2_trace(q: QuantizedDecoder, frame: np.ndarray, args: Args) -> dict[str, np.ndarray]:
    """decode_int's record and outputs, plus the motion intermediates it does not record."""
    rec: dict[str, np.ndarray] = {}
    cache = encode_source_int(q, frame, rec)
    out = decode_int(q, cache, record=rec, **args)
    rec.update(out)
    rec["image"], rec["small"] = quantize_image(frame), cache.small
    kp_d = keypoints_to_coords(args["kp_driving_q"])
    kp_s = keypoints_to_coords(args["kp_source_q"])
    size = cache.small.shape[1]
    rec["heatmaps"] = heatmaps(kp_d, kp_s, size, q.gaussian_table)
    if q.jacobian:
        jac = rec["jacobians"] = compose_jacobians(args["jac_source_q"], args["jac_driving_q"])
        motions = affine_motions(kp_d, kp_s, jac, size)
    else:
        motions = sparse_motions(kp_d, kp_s, size)
    rec["motions"] = motions
    rec["deformed"] = np.stack([_warp_l2(cache.small, m) for m in motions])
    rec["warped"] = _warp_l2(cache.features, out["flow"], out["occlusion"])
    return rec


def l1_trace(model: FakeQuantDecoder, frame: np.ndarray, args: Args) -> dict[str, np.ndarray]:
    rec: dict[str, fq.FQ] = {}
    with torch.no_grad():
        model.decode(model.encode_source(frame, rec), record=rec, **args)
    return int_views(rec)


def assert_bit_exact(q: QuantizedDecoder, frame: np.ndarray, args: Args) -> int:
    """Every layer of L1 equals L2's integers; returns how many layers were compared."""
    l1, l2 = l1_trace(FakeQuantDecoder(q), frame, args), l2_trace(q, frame, args)
    assert set(l1) == set(l2), f"layers differ: {sorted(set(l1) ^ set(l2))}"
    for name in l2:
        np.testing.assert_array_equal(l1[name], l2[name], err_msg=f"layer {name}")
    return len(l2)


def layer_count(m: ModelParams) -> int:
    """Compared tensors: 14 fixed (image, first, small, heatmaps, motions, deformed, mask
    logits / mask, occlusion logits / map, flow, warped, final logits, frame), Jacobians,
    down + up blocks, hourglass down + up, 3 per ResBlock."""
    return (
        14
        + m.estimate_jacobian
        + 2 * m.num_down_blocks
        + 2 * m.dense_num_blocks
        + 3 * m.num_bottleneck_blocks
    )


def stream_args(kp_detector: nn.Module, q: QuantizedDecoder, clip: np.ndarray) -> list[Args]:
    """decode_int's integer arguments for every inter frame, as the bitstream carries them."""
    with torch.no_grad():
        kp_source = stream_keypoints(kp_detector(frame_tensor(clip[0])))
        return [
            IntBackend(q).stream_integers(stream_keypoints(kp_detector(frame_tensor(f))), kp_source)
            for f in clip[1:]
        ]


# --------------------------------------------------------------------------- trained tiny


@pytest.fixture(scope="module")
def tiny():
    kp_detector, generator = load_models(TINY, None)
    return kp_detector, generator, quantize_decoder(kp_detector, generator, TINY)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [
        synthesize_clip(ClipSpec(seed=1_000_123, num_frames=4, size=64, face=90)),
        synthesize_clip(ClipSpec(seed=4_242, num_frames=3, size=64, face=0)),
    ]


def test_l1_equals_l2_trained_tiny(tiny, clips) -> None:
    kp_detector, _, q = tiny
    layers = 0
    for clip in clips:
        for args in stream_args(kp_detector, q, clip):
            layers = assert_bit_exact(q, clip[0], args)
    assert layers == layer_count(TINY.model)


def test_l1_tracks_float_decoder(tiny, clips) -> None:
    """Dequantized L1 output against L0 (the float generator) on the same stream keypoints."""
    kp_detector, generator, q = tiny
    model = FakeQuantDecoder(q)
    psnrs = []
    for clip in clips:
        source = frame_tensor(clip[0])
        with torch.no_grad():
            kp_source = stream_keypoints(kp_detector(source))
            float_cache = generator.encode_source(source)
            l1_cache = model.encode_source(clip[0])
            for frame in clip[1:]:
                kp_driving = stream_keypoints(kp_detector(frame_tensor(frame)))
                args = IntBackend(q).stream_integers(kp_driving, kp_source)
                l1 = fq.int_view(model.decode(l1_cache, **args)["frame"])  # pixels 0..255
                l0 = generator.decode(float_cache, kp_driving, kp_source)["prediction"][0]
                psnrs.append(frame_psnr(255 * l0.permute(1, 2, 0).double().numpy(), l1))
    assert min(psnrs) > MIN_PSNR_VS_FLOAT, psnrs


def _half_even(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x)


def _half_down(x: torch.Tensor) -> torch.Tensor:
    return torch.ceil(x - 0.5)


@pytest.mark.parametrize("rule", [_half_even, _half_down], ids=["half_even", "half_down"])
def test_wrong_rounding_rule_is_caught(tiny, clips, monkeypatch, rule) -> None:
    """L1 with another tie rule must disagree with L2 somewhere: the test is not vacuous."""
    kp_detector, _, q = tiny
    args = stream_args(kp_detector, q, clips[0])[0]
    monkeypatch.setattr(fq, "round_half_up", rule)
    with pytest.raises(AssertionError, match="layer "):
        assert_bit_exact(q, clips[0][0], args)


def test_l1_is_differentiable(tiny, clips) -> None:
    """Straight-through rounding: gradients reach the weights; the forward is unchanged."""
    kp_detector, _, q = tiny
    args = stream_args(kp_detector, q, clips[0])[0]
    model = FakeQuantDecoder(q)
    frame = model.decode(model.encode_source(clips[0][0]), **args)["frame"]
    frame.value.mean().backward()
    for layer in (model.final, model.up_blocks[0], model.bottleneck[0][1], model.mask):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    np.testing.assert_array_equal(fq.int_view(frame), l2_trace(q, clips[0][0], args)["frame"])


# --------------------------------------------------------------------------- random weights


def _randomize_batchnorm(module: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN statistics, some negative scales (the affine's `negate` path)."""
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                c = bn.num_features
                bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                bn.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                bn.weight.copy_(torch.randn(c, generator=gen) * 0.6 + 0.8)
                bn.bias.copy_(torch.randn(c, generator=gen) * 0.2)


SMALL_FOMM = ModelParams(
    image_size=32,
    num_kp=4,
    estimate_jacobian=True,
    block_expansion=8,
    max_features=16,
    num_down_blocks=1,
    num_bottleneck_blocks=2,
    dense_block_expansion=8,
    dense_max_features=16,
    dense_num_blocks=2,
    dense_scale_factor=0.5,  # a 5×5 stride-2 anti-alias blur (tiny has 13×13, stride 4)
)

SHAPES = {
    "tiny-dac": TINY.model,
    "tiny-fomm": dataclasses.replace(TINY.model, estimate_jacobian=True),
    "small-fomm": SMALL_FOMM,
}
CASES = [("tiny-dac", 0), ("tiny-dac", 1), ("tiny-fomm", 2), ("small-fomm", 3)]


def random_decoder(m: ModelParams, seed: int) -> QuantizedDecoder:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    kp_detector, generator = build_kp_detector(m).eval(), build_generator(m).eval()
    _randomize_batchnorm(generator, gen)
    if m.estimate_jacobian:  # the detector starts at the identity Jacobian
        with torch.no_grad():
            kp_detector.jacobian.weight.normal_(0, 0.05)
    params = GraceParams(name="tiny", model=m)
    samples = calibration_samples(kp_detector, params, clips=2, frames=4)
    return build_quantized(generator, calibrate(generator, samples), params.numeric, m.num_kp)


def random_args(rng: np.random.Generator, num_kp: int, jacobian: bool) -> Args:
    """Keypoints over and beyond the frame (±1.2); Jacobians near the identity, plus a
    singular driving Jacobian (identity motion) and a near-singular one (saturates at ±16)."""
    args = {
        "kp_driving_q": rng.integers(-300, 301, (num_kp, 2)),
        "kp_source_q": rng.integers(-300, 301, (num_kp, 2)),
    }
    if jacobian:
        eye = 64 * np.eye(2, dtype=np.int64)
        jd = eye + rng.integers(-40, 41, (num_kp, 2, 2))
        jd[0] = [[64, 32], [128, 64]]  # det = 0
        jd[1] = [[64, 63], [64, 64]]  # det = 64: |J_d⁻¹| up to 64 → clamped
        args["jac_driving_q"] = jd
        args["jac_source_q"] = eye + rng.integers(-40, 41, (num_kp, 2, 2))
    return args


@pytest.mark.parametrize(("shape", "seed"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_l1_equals_l2_random_weights(shape: str, seed: int) -> None:
    m = SHAPES[shape]
    q = random_decoder(m, seed)
    assert q.jacobian == m.estimate_jacobian
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (m.image_size, m.image_size, 3), dtype=np.uint8)
    for _ in range(2):
        layers = assert_bit_exact(q, frame, random_args(rng, m.num_kp, m.estimate_jacobian))
    assert layers == layer_count(m)


def test_l1_refuses_inexact_stream_values(tiny) -> None:
    _, _, q = tiny
    model = FakeQuantDecoder(q)
    cache = model.encode_source(np.zeros((64, 64, 3), dtype=np.uint8))
    far = np.full((10, 2), fq.STREAM_LIMIT + 1)
    with pytest.raises(fq.FakeQuantError, match="keypoints beyond"):
        model.decode(cache, far, far)


# --------------------------------------------------------------------------- single ops
# Trained-model data rarely puts a requantize product or a softmax numerator exactly on a
# rounding tie, so these ops are also compared on inputs built to hit ties and extremes.


def test_requantize_ties_and_extremes() -> None:
    n = TINY.numeric
    rng = np.random.default_rng(11)
    shift = rng.integers(0, n.max_shift + 1, 4000)
    mult = rng.integers(0, n.mult_max + 1, 4000)
    lo, hi = -(1 << (n.acc_bits - 1)), (1 << (n.acc_bits - 1)) - 1
    acc = rng.integers(lo, hi, 4000, endpoint=True)
    bias = rng.integers(lo, hi, 4000, endpoint=True)
    # Exact ties: (acc + bias)·M = (2k + 1)·2^(s-1) with M = 1, small k, s ≥ 1.
    tie = slice(0, 1000)
    shift[tie] = rng.integers(1, 23, 1000)
    mult[tie], bias[tie] = 1, 0
    acc[tie] = (2 * rng.integers(-200, 200, 1000) + 1) << (shift[tie] - 1)
    acc[:4], bias[:4], mult[:4], shift[:4] = [hi, lo, hi, lo], [hi, lo, hi, lo], n.mult_max, 0
    for relu in (False, True):
        want = requantize(acc, bias, mult, shift, int(relu), n)
        total = torch.from_numpy((acc + bias).astype(np.float64))
        got = fq.requantize_fq(
            total, torch.from_numpy(mult * 1.0), torch.from_numpy(shift * 1.0), relu, n.act_bits
        )
        np.testing.assert_array_equal(got.numpy().astype(np.int64), want)


def test_warp_matches_l2_out_of_range_and_fused() -> None:
    rng = np.random.default_rng(12)
    feats = rng.integers(-128, 128, (3, 7, 9))
    coords = rng.integers(-int(1.4 * 2**14), int(1.4 * 2**14), (6, 11, 2))
    coords[0, :, 0] = 1 << 14  # the right border exactly, and one LSB beyond
    coords[1, :, 0] = (1 << 14) + 1
    occ = rng.integers(0, 256, (6, 11))
    features = fq.fq_from_ints(torch.from_numpy(feats * 1.0), 0.03)
    values = torch.from_numpy(coords * 2.0**-COORD_FRAC_BITS)
    occlusion = fq.fq_from_ints(torch.from_numpy(occ * 1.0), 2.0**-8)
    for o in (None, occlusion):
        got = fq.int_view(fq.bilinear_warp(features, values, o))
        want = _warp_l2(feats, coords, None if o is None else occ)
        np.testing.assert_array_equal(got, want)


def test_softmax_matches_l2_with_ties() -> None:
    rng = np.random.default_rng(13)
    x = rng.integers(-128, 128, (11, 9, 9))
    x[:, 0] = 127  # every channel at the maximum
    x[:, 1] = -128
    x[:2, 2], x[2:, 2] = 127, -128  # two tied maxima, the rest far below
    for scale in (0.01, 0.07, 0.5):
        logits = fq.fq_from_ints(torch.from_numpy(x * 1.0), scale)
        got = fq.int_view(fq.channel_softmax(logits, torch.from_numpy(exp_lut(scale) * 1.0)))
        np.testing.assert_array_equal(got, softmax_channels_fixed(x, scale))


def test_both_refuse_a_flow_that_needs_resizing() -> None:
    """L0 resizes the flow when the features (image / 2^down) and the motion network
    (image · dense_scale_factor) differ in size; L1 and L2 do not, so they must refuse."""
    m = dataclasses.replace(SMALL_FOMM, estimate_jacobian=False, num_down_blocks=2)
    q = random_decoder(m, 4)
    frame = np.zeros((m.image_size, m.image_size, 3), dtype=np.uint8)
    kp = np.zeros((m.num_kp, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="does not resize the flow"):
        decode_int(q, encode_source_int(q, frame), kp, kp)
    model = FakeQuantDecoder(q)
    with pytest.raises(fq.FakeQuantError, match="no flow resize"):
        model.decode(model.encode_source(frame), kp, kp)
