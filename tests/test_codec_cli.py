"""`grace encode/decode` from the command line, including every bad-input path."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from defs.params import preset
from grace.cli import main
from model.agc import build_generator, build_kp_detector
from model.checkpoint import save_checkpoint

M = preset("tiny").model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-random.pth"
    save_checkpoint(path, M, build_kp_detector(M), build_generator(M))
    return str(path)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grace: error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_encode_decode_synthetic(tmp_path, checkpoint) -> None:
    stream = tmp_path / "clip.grace"
    result = run(
        "encode",
        "--synthetic",
        "3",
        "--frames",
        "12",
        "--gop",
        "6",
        "-o",
        str(stream),
        "--checkpoint",
        checkpoint,
    )
    assert result.exit_code == 0, result.output
    assert "kbps" in result.output and stream.exists()
    out = tmp_path / "out.mp4"
    result = run(
        "decode",
        str(stream),
        "-o",
        str(out),
        "--checkpoint",
        checkpoint,
        "--synthetic",
        "3",
        "--backend",
        "float",
    )
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output and "MS-SSIM" in result.output
    assert out.stat().st_size > 0 and out.with_suffix(".png").exists()


def test_decode_on_the_isa_backend(tmp_path, checkpoint) -> None:
    """`--backend isa` decodes on L3 (compiled for the ULX3S); a preset whose buffers
    cannot hold a layer is refused in one line."""
    stream = tmp_path / "clip.grace"
    encoded = run(
        "encode", "--synthetic", "3", "--frames", "3", "--gop", "3", "-o", str(stream),
        "--checkpoint", checkpoint,
    )  # fmt: skip
    assert encoded.exit_code == 0, encoded.output
    out = tmp_path / "isa.mp4"
    args = ["decode", str(stream), "-o", str(out), "--checkpoint", checkpoint, "--backend", "isa"]
    result = run(*args, "--synthetic", "3")
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output and out.stat().st_size > 0
    from defs.params import BufferParams

    small = preset("tiny").replace(name="small", buffers=BufferParams(input_depth=16))
    hw = tmp_path / "small.json"
    hw.write_text(small.to_json())
    result = run(*args, "--hw", str(hw))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--backend isa on small: first: conv:" in lines[0], result.output


def test_encode_a_folder_of_frames_of_another_size(tmp_path, checkpoint) -> None:
    from PIL import Image

    from model.synthetic import ClipSpec, synthesize_clip

    frames = synthesize_clip(ClipSpec(seed=1, num_frames=4, size=96))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f[:, 8:]).save(folder / f"{i:03d}.png")  # 96x88: cropped + resized
    result = run("encode", str(folder), "-o", str(tmp_path / "f.grace"), "--checkpoint", checkpoint)
    assert result.exit_code == 0, result.output
    assert "4 frames" in result.output and "64x64" in result.output


def test_bad_streams_name_the_byte(tmp_path, checkpoint) -> None:
    stream = tmp_path / "clip.grace"
    assert (
        run(
            "encode",
            "--synthetic",
            "2",
            "--frames",
            "4",
            "-o",
            str(stream),
            "--checkpoint",
            checkpoint,
        ).exit_code
        == 0
    )
    data = stream.read_bytes()
    cases = {
        "truncated": data[:-7],
        "corrupt": data[:60] + bytes([data[60] ^ 0x40]) + data[61:],
        "version": data[:4] + b"\x09" + data[5:],
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.grace"
        path.write_bytes(blob)
        result = run("decode", str(path), "-o", str(tmp_path / "x.mp4"), "--checkpoint", checkpoint)
        one_line_error(result, "bitstream:")
        if name != "version":
            assert "at byte" in result.output
        else:
            assert "9" in result.output


def test_other_bad_inputs(tmp_path, checkpoint) -> None:
    junk = tmp_path / "video.mp4"
    junk.write_bytes(b"this is not a video")
    one_line_error(
        run("encode", str(junk), "-o", str(tmp_path / "a.grace"), "--checkpoint", checkpoint),
        str(junk),
        "not a readable video",
    )
    one_line_error(
        run(
            "encode",
            str(tmp_path / "missing.mp4"),
            "-o",
            str(tmp_path / "b.grace"),
            "--checkpoint",
            checkpoint,
        ),
        "no such file",
    )
    one_line_error(
        run("encode", "--synthetic", "1", "-o", str(tmp_path / "c.grace"), "--params", "nope"),
        "unknown preset 'nope'",
    )
    one_line_error(
        run(
            "encode",
            "--synthetic",
            "1",
            "-o",
            str(tmp_path / "d.grace"),
            "--checkpoint",
            str(tmp_path / "none.pth"),
        ),
        "not found",
    )
    one_line_error(
        run(
            "encode",
            "--synthetic",
            "1",
            "-o",
            str(tmp_path / "e.grace"),
            "--checkpoint",
            checkpoint,
            "--gop",
            "0",
        ),
        "GOP size 0",
    )
    one_line_error(
        run(
            "decode",
            str(tmp_path / "none.grace"),
            "-o",
            str(tmp_path / "f.mp4"),
            "--checkpoint",
            checkpoint,
        ),
        "cannot read",
    )
    one_line_error(
        run("encode", "-o", str(tmp_path / "g.grace"), "--checkpoint", checkpoint), "give an INPUT"
    )
    one_line_error(
        run(
            "encode",
            "--synthetic",
            "1",
            "--face",
            "500",
            "-o",
            str(tmp_path / "h.grace"),
            "--checkpoint",
            checkpoint,
        ),
        "face",
    )
