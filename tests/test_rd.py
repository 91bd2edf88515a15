"""`grace rd`: the quick run end to end, the conventional codecs, fronts and crossovers."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from grace.cli import main
from model.conventional import CONVENTIONAL, encode_decode, key_frame_repeat
from model.metrics import quality
from model.rd import crossover, front, interpolate

# --------------------------------------------------------------------------------------------
# The quick run, through the CLI


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[dict, object]:
    out = tmp_path_factory.mktemp("rd")
    result = CliRunner().invoke(main, ["rd", "--quick", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "rd.json").read_text()), out


def test_quick_run_writes_every_codec_and_metric(quick_report) -> None:
    report, out = quick_report
    assert list(report["codecs"]) == ["grace", "hevc", "av1", "h264", "repeat"]
    assert set(report["metrics"]) == {"psnr", "ssim", "ms_ssim", "gmsd"}
    assert report["frames_per_clip"] == 16 and len(report["clips"]) == 1
    for codec in report["codecs"].values():
        assert len(codec["points"]) == 2
        for p in codec["points"]:
            assert p["bytes"] > 0 and p["kbps"] == pytest.approx(p["bytes"] * 8 / 1000 / 0.64)
            assert 15 < p["psnr"] < 60, p
            assert 0 < p["ssim"] <= 1 and 0 < p["ms_ssim"] <= 1, p
            assert 0 <= p["gmsd"] < 0.35, p
    for p in report["codecs"]["grace"]["points"]:  # the stream's parts add up to the whole
        assert p["key_frame_kbps"] + p["keypoint_kbps"] == pytest.approx(p["kbps"])
    for name in ("grace", "hevc", "av1", "h264"):  # the front is the curve: ascending in rate
        for key, curve in report["fronts"][name].items():
            assert [r for r, _ in curve] == sorted(r for r, _ in curve), (name, key)
    for key in report["metrics"]:
        assert set(report["crossovers"][key]) == {"hevc", "av1", "h264"}
        for row in report["crossovers"][key].values():
            assert row["sentence"].startswith("GRACE ")
    for name in ("rd.png", "strip.png"):
        assert Image.open(out / name).format == "PNG"
    strip = Image.open(out / "strip.png")
    assert strip.width >= 6 * 64 * 3  # source + five codecs
    assert [t["codec"] for t in report["strip"]["tiles"]] == list(report["codecs"])


def test_quick_run_rates_rise_as_settings_fine(quick_report) -> None:
    """Within a sweep (finer CRF, higher JPEG quality) both rate and PSNR go up."""
    report, _ = quick_report
    for name, codec in report["codecs"].items():
        sweeps: dict[str, list[dict]] = {}
        for p in codec["points"]:
            sweeps.setdefault(p["sweep"], []).append(p)
        for points in sweeps.values():
            rates = [p["kbps"] for p in points]
            assert rates == sorted(rates) and len(set(rates)) == len(rates), (name, rates)
            psnrs = [p["psnr"] for p in points]
            assert psnrs == sorted(psnrs), (name, psnrs)


def test_quick_run_grace_beats_repeating_its_key_frame(quick_report) -> None:
    """The decoder really animates: better than showing the key frame at any quality."""
    report, _ = quick_report
    grace = min(p["psnr"] for p in report["codecs"]["grace"]["points"])
    repeat = max(p["psnr"] for p in report["codecs"]["repeat"]["points"])
    assert grace > repeat + 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--codecs", "hevc,vp8"], "unknown codec 'vp8'; choose from grace, hevc"),
        (["--codecs", " , "], "name at least one of"),
        (["--min-kbps", "100", "--max-kbps", "5"], "bitrate range 100-5 kbps is empty"),
        (["--min-kbps", "0"], "bitrate range 0-100 kbps is empty"),
        (["--frames", "1"], "need at least 1 clip of 2 frames"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], message: str, tmp_path) -> None:
    result = CliRunner().invoke(main, ["rd", "--quick", "-o", str(tmp_path), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grace: error: "), result.output
    assert message in lines[0]


def test_missing_encoder_is_named(monkeypatch, tmp_path) -> None:
    import av

    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libsvtav1"})
    result = CliRunner().invoke(
        main, ["rd", "--quick", "--codecs", "grace,av1", "-o", str(tmp_path)]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "no libsvtav1 encoder (needed for av1)" in lines[0] and "--codecs" in lines[0]
    assert not (tmp_path / "rd.json").exists()


# --------------------------------------------------------------------------------------------
# The conventional codecs


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    from model.synthetic import ClipSpec, synthesize_clip

    return synthesize_clip(ClipSpec(seed=5, num_frames=8, size=64, face=3))


def nal_types(packets: tuple[bytes, ...], hevc: bool) -> set[int]:
    """NAL unit types of Annex B packets (start codes 00 00 01)."""
    types = set()
    for data in packets:
        parts = data.split(b"\x00\x00\x01")[1:]
        types |= {(p[0] >> 1) & 0x3F if hevc else p[0] & 0x1F for p in parts if p}
    return types


@pytest.mark.parametrize("name", list(CONVENTIONAL))
def test_conventional_codec_round_trip(name: str, clip: np.ndarray) -> None:
    codec = CONVENTIONAL[name]
    coarse = encode_decode(clip, Fraction(25), codec, codec.quick[0])
    fine = encode_decode(clip, Fraction(25), codec, codec.quick[1])
    assert coarse.frames.shape == fine.frames.shape == clip.shape
    assert 0 < coarse.payload_bytes < fine.payload_bytes
    assert quality(clip, coarse.frames).psnr < quality(clip, fine.frames).psnr
    assert quality(clip, fine.frames).psnr > 30
    if name == "h264":  # x264's options SEI (NAL 6) is filtered out before counting
        assert 6 not in nal_types(fine.packets, hevc=False) and 5 in nal_types(fine.packets, False)
    if name == "av1":  # temporal delimiters (OBU type 2: header byte 0x12, size 0) removed
        assert not any(p.startswith(b"\x12\x00") for p in fine.packets)
    if name == "hevc":  # info=0: no prefix SEI (NAL 39)
        assert 39 not in nal_types(fine.packets, hevc=True) and 32 in nal_types(fine.packets, True)


def test_odd_frame_size_is_padded_and_cropped(clip: np.ndarray) -> None:
    odd = clip[:, :61, :63]
    coded = encode_decode(odd, Fraction(25), CONVENTIONAL["h264"], 20)
    assert coded.frames.shape == odd.shape
    assert quality(odd, coded.frames).psnr > 30


def test_key_frame_repeat_sends_one_jpeg(clip: np.ndarray) -> None:
    coded = key_frame_repeat(clip, 50)
    assert len(coded.packets) == 1 and coded.packets[0][:2] == b"\xff\xd8"
    assert (coded.frames == coded.frames[0]).all()
    assert quality(clip[:1], coded.frames[:1]).psnr > 28


# --------------------------------------------------------------------------------------------
# Fronts and crossovers on tables with known answers

GRACE = [(2.0, 26.0), (8.0, 28.0), (32.0, 30.0)]  # 25 + log2(kbps)
HEVC = [(4.0, 20.0), (16.0, 32.0), (64.0, 38.0)]  # 8 + 6·log2(kbps) up to 16 kbps


def test_front_keeps_only_points_better_than_every_cheaper_one() -> None:
    points = [(10, 30.0), (5, 31.0), (20, 29.0), (40, 33.0), (40, 32.0), (3, float("nan"))]
    assert front(points, higher_is_better=True) == [(5, 31.0), (40, 33.0)]
    assert front([(1, 0.2), (2, 0.3), (4, 0.1)], higher_is_better=False) == [(1, 0.2), (4, 0.1)]


def test_interpolation_is_linear_in_log_rate_and_not_extended() -> None:
    assert interpolate(GRACE, 4.0) == pytest.approx(27.0)
    assert interpolate(GRACE, 1.9) is None and interpolate(GRACE, 33.0) is None


def test_crossover_known_answer() -> None:
    """25 + x = 8 + 6x in x = log2(kbps): x = 3.4, the crossover is 2^3.4 ≈ 10.56 kbps."""
    x = crossover(GRACE, HEVC, higher_is_better=True)
    assert x.common == (4.0, 32.0)
    assert x.below_kbps == pytest.approx(2**3.4)
    assert len(x.wins) == 1 and x.wins[0] == pytest.approx((4.0, 2**3.4))
    assert x.b_floor == 4.0 and x.a_floor == 2.0
    assert "below 10.6 kbps" in x.sentence("GRACE", "HEVC")
    # The same table as a lower-is-better metric (negated) gives the same answer.
    flipped = crossover(
        [(r, -v) for r, v in GRACE], [(r, -v) for r, v in HEVC], higher_is_better=False
    )
    assert flipped.below_kbps == pytest.approx(2**3.4)
    # Limits clip the common range.
    assert crossover(GRACE, HEVC, True, limits=(5.0, 8.0)).below_kbps == 8.0


def test_crossover_never_everywhere_and_middle() -> None:
    never = crossover([(1.0, 10.0), (100.0, 20.0)], [(1.0, 30.0), (100.0, 40.0)], True)
    assert never.wins == () and never.below_kbps is None
    assert "never beats" in never.sentence("GRACE", "AV1")
    always = crossover([(1.0, 30.0), (100.0, 40.0)], [(2.0, 10.0), (50.0, 20.0)], True)
    assert always.below_kbps == 50.0 and "whole common range" in always.sentence("G", "A")
    # A wins only between the two crossings of a flat line and a rising one... then falling.
    middle = crossover(
        [(1.0, 10.0), (10.0, 30.0), (100.0, 10.0)], [(1.0, 20.0), (100.0, 20.0)], True
    )
    assert middle.below_kbps is None
    ((lo, hi),) = middle.wins
    assert lo == pytest.approx(math.sqrt(10)) and hi == pytest.approx(math.sqrt(1000))
    assert crossover(GRACE, [(64.0, 1.0), (128.0, 2.0)], True).common is None
