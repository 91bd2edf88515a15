"""The codec end to end in float: encode → bitstream → decode, rate, and bad input."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from defs.params import preset
from model.agc import build_generator, build_kp_detector
from model.bitstream import BitstreamError, quantize, read_stream
from model.codec import CodecError, CodecSettings, bitrate, decode_stream, encode_clip
from model.synthetic import ClipSpec, synthesize_clip

PARAMS = preset("tiny")
M = PARAMS.model


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return build_kp_detector(M).eval(), build_generator(M).eval()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return synthesize_clip(ClipSpec(seed=5, num_frames=20, size=M.image_size, face=0))


def decode(data: bytes, generator) -> object:
    return decode_stream(data, generator, preset=PARAMS.name, model=M)


def test_round_trip_keeps_the_encoders_keypoints(models, clip) -> None:
    kp_detector, generator = models
    settings = CodecSettings(gop_size=8, kp_step=1 / 128)
    encoded = encode_clip(clip, Fraction(25), PARAMS.name, kp_detector, settings)
    decoded = decode(encoded.data, generator)
    assert decoded.frames.shape == clip.shape and decoded.frames.dtype == np.uint8
    np.testing.assert_array_equal(decoded.keypoints, encoded.keypoints)
    # What the encoder quantised is what the detector said, to within half a step.
    with torch.no_grad():
        raw = kp_detector(torch.from_numpy(clip[1:8]).float().div(255).permute(0, 3, 1, 2))
    np.testing.assert_array_equal(
        encoded.keypoints[1:8], quantize(raw["value"].numpy(), 1 / 128) / 128
    )
    header, gops = read_stream(encoded.data)
    assert (header.num_frames, header.gop_size, len(gops)) == (20, 8, 3)


def test_key_frames_are_the_decoded_images(models, clip) -> None:
    kp_detector, generator = models
    settings = CodecSettings(gop_size=10, key_codec="png")
    decoded = decode(
        encode_clip(clip, Fraction(25), PARAMS.name, kp_detector, settings).data, generator
    )
    np.testing.assert_array_equal(decoded.frames[[0, 10]], clip[[0, 10]])  # PNG is lossless


def test_bitrate_split(models, clip) -> None:
    kp_detector, _ = models
    data = encode_clip(
        clip, Fraction(25), PARAMS.name, kp_detector, CodecSettings(gop_size=20)
    ).data
    rate = bitrate(data)
    assert rate.total_kbps == pytest.approx(len(data) * 8 / 1000 / (20 / 25))
    assert rate.total_kbps == pytest.approx(rate.key_frame_kbps + rate.keypoint_kbps)
    assert rate.key_frame_kbps > rate.keypoint_kbps > 0


def test_wrong_preset_and_corrupt_key_frame(models, clip) -> None:
    kp_detector, generator = models
    data = encode_clip(clip[:3], Fraction(25), "fomm-256", kp_detector, CodecSettings()).data
    with pytest.raises(CodecError, match="encoded for preset 'fomm-256'"):
        decode(data, generator)
    with pytest.raises(BitstreamError, match="at byte"):
        decode(data[: len(data) // 2], generator)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gop_size": 0}, "GOP size 0"),
        ({"key_codec": "gif"}, "key-frame codec 'gif'"),
        ({"key_quality": 101}, "quality 101"),
        ({"kp_step": 0.0}, "kp step 0.0"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        CodecSettings(**kwargs)
