"""The whole decoder as programs (compiler/decoder.py) on L3, bit-exact with L2.

The committed tiny decoder on the ULX3S preset: the source program (the key
frame quantized, encoded into the source features and blurred into the small
frame, all as warp payload words) and the frame program (heatmaps, motions,
warps, hourglass, softmax, occlusion, flow, the occluded warp, bottleneck, up
blocks, pixel table), frame after frame of a GOP on one memory image: every
frame equals `decode_int`'s, every source map `encode_source_int`'s. FOMM's
first-order motions (Jacobians) and a warp bank too small for all features at
once (the warp in batches) run too; a preset that cannot hold a layer is
refused in one line.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from compiler.conv_layer import read_map
from compiler.decoder import compile_decoder
from compiler.tensor import LoweringError
from defs.params import BufferParams, WarpParams, preset
from model.fixed_decoder import decode_int, encode_source_int
from model.int_backend import IntBackend, frame_tensor, stream_keypoints
from model.synthetic import ClipSpec, synthesize_clip
from sim.l3.decoder import IsaDecoder

TINY = preset("tiny")
ULX3S = preset("ulx3s-85f")


@pytest.fixture(scope="module")
def models(tiny_quantized):
    return tiny_quantized


@torch.no_grad()
def _keypoints(kp_detector, decoder, frame: np.ndarray) -> dict[str, np.ndarray]:
    kp = stream_keypoints(kp_detector(frame_tensor(frame)))
    return IntBackend(decoder).stream_integers(kp, kp)


def _check_gop(decoder, kp_detector, clip: np.ndarray, params, frames: list[int]) -> None:
    isa = IsaDecoder(compile_decoder(decoder, params))
    isa.encode_source(clip[0])
    cache = encode_source_int(decoder, clip[0])
    c = isa.compiled
    np.testing.assert_array_equal(read_map(c.features.tensor, isa.memory), cache.features)
    np.testing.assert_array_equal(read_map(c.small.tensor, isa.memory), cache.small)
    source = _keypoints(kp_detector, decoder, clip[0])
    for t in frames:
        driving = _keypoints(kp_detector, decoder, clip[t])
        got = isa.decode(driving["kp_driving_q"], source["kp_driving_q"])
        want = decode_int(decoder, cache, driving["kp_driving_q"], source["kp_driving_q"])
        np.testing.assert_array_equal(got, want["frame"])


@pytest.mark.parametrize("seed", [2_000_011, 2_000_500])
def test_l3_decodes_gops_as_l2_does(models, seed: int) -> None:
    kp_detector, decoder = models
    clip = synthesize_clip(ClipSpec(seed=seed, num_frames=6, size=64, face=seed % 90))
    _check_gop(decoder, kp_detector, clip, ULX3S, [5, 2])


def test_first_order_motions_and_a_warp_in_batches(models) -> None:
    """FOMM's Jacobians (composed on the host, near-singular ones included) and a
    bank of 1,024 words: the features warp in four batches of 16 planes."""
    _, decoder = models
    fomm = dataclasses.replace(decoder, jacobian=True)
    params = ULX3S.replace(warp=WarpParams(depth=1024))
    isa = IsaDecoder(compile_decoder(fomm, params))
    assert len(isa.compiled.features.batches) == 4
    clip = synthesize_clip(ClipSpec(seed=2_000_777, num_frames=1, size=64, face=7))
    isa.encode_source(clip[0])
    cache = encode_source_int(fomm, clip[0])
    rng = np.random.default_rng(31)
    kp_d, kp_s = rng.integers(-64, 65, (2, 10, 2))
    jac_d, jac_s = rng.integers(-90, 91, (2, 10, 2, 2))
    jac_d[0] = [[64, 64], [64, 64]]  # singular: the identity
    got = isa.decode(kp_d, kp_s, jac_d, jac_s)
    want = decode_int(fomm, cache, kp_d, kp_s, jac_driving_q=jac_d, jac_source_q=jac_s)
    np.testing.assert_array_equal(got, want["frame"])


def test_the_tiny_presets_array_decodes_too(models) -> None:
    """tiny's 4 × 4 array and 1,024-word buffers: the hourglass rows in bands of
    columns, the logits' four-lane groups gathered into one plane for the softmax."""
    kp_detector, decoder = models
    clip = synthesize_clip(ClipSpec(seed=2_000_222, num_frames=3, size=64, face=21))
    _check_gop(decoder, kp_detector, clip, TINY, [2])


def test_a_preset_too_small_is_refused_in_one_line(models) -> None:
    _, decoder = models
    small = TINY.replace(buffers=BufferParams(input_depth=16, weight_depth=64))
    with pytest.raises(LoweringError, match=r"^first: conv: ") as info:
        compile_decoder(decoder, small)
    assert "\n" not in str(info.value)


def test_a_bitstream_decodes_on_l3_as_on_l2(models) -> None:
    """The codec end to end: a stream of two GOPs, decoded by the int backend (L2) and
    by the isa backend (the compiled decoder on L3), frame for frame."""
    from fractions import Fraction

    from model.codec import CodecSettings, decode_stream, encode_clip
    from model.int_backend import IntBackend
    from sim.l3.decoder import IsaBackend, IsaDecoder

    kp_detector, decoder = models
    clip = synthesize_clip(ClipSpec(seed=2_000_900, num_frames=4, size=64, face=11))
    data = encode_clip(clip, Fraction(25), "tiny", kp_detector, CodecSettings(gop_size=2)).data
    integers = IntBackend(decoder)
    frames = []
    isa = IsaBackend(
        IsaDecoder(compile_decoder(decoder, ULX3S)), integers, lambda: frames.append(1)
    )
    got = decode_stream(data, isa, preset="tiny", model=TINY.model).frames
    want = decode_stream(data, integers, preset="tiny", model=TINY.model).frames
    np.testing.assert_array_equal(got, want)
    assert len(frames) == 2  # one inter frame per GOP, each reported
