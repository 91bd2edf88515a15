"""`grace quantize`: calibrate the integer decoder and report what int8 costs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from defs.params import GraceParams


def run_quantize(
    console: Console,
    params: GraceParams,
    checkpoint: Path | None,
    method: str,
    clips: int,
    out_dir: Path,
    *,
    random_weights: bool = False,
    frames: int = 16,
) -> dict:
    import torch

    from grace.codec_run import load_models
    from grace.train_run import heldout_clips
    from model.evaluate import to_uint8
    from model.int_backend import (
        IntBackend,
        frame_tensor,
        layer_sqnr,
        quantize_decoder,
        stream_keypoints,
    )
    from model.metrics import Quality, quality

    if random_weights:
        from model.agc import build_generator, build_kp_detector

        torch.manual_seed(0)
        kp_detector, generator = build_kp_detector(params.model), build_generator(params.model)
        kp_detector.eval(), generator.eval()
    else:
        kp_detector, generator = load_models(params, checkpoint)
    with console.status(f"calibrating ({method})…"):
        decoder = quantize_decoder(kp_detector, generator, params, method)
    backend = IntBackend(decoder)
    groups = heldout_clips(params, clips, frames=frames)
    report: dict = {"method": method, "random_weights": random_weights, "groups": {}}
    for group, group_clips in groups.items():
        refs, floats, ints = [], [], []
        with console.status(f"decoding {group} with float and int8…"), torch.no_grad():
            for clip in group_clips:
                source = frame_tensor(clip[0])
                kp_s = stream_keypoints(kp_detector(source))
                cache, fcache = backend.encode_source(source), generator.encode_source(source)
                for t in range(1, clip.shape[0]):
                    kp_d = stream_keypoints(kp_detector(frame_tensor(clip[t])))
                    ints.append(to_uint8(backend.decode(cache, kp_d, kp_s)["prediction"])[0])
                    floats.append(to_uint8(generator.decode(fcache, kp_d, kp_s)["prediction"])[0])
                    refs.append(clip[t])
        ref, fl, it = np.stack(refs), np.stack(floats), np.stack(ints)
        rows = {
            "float vs source": quality(ref, fl),
            "int8 vs source": quality(ref, it),
            "int8 vs float": quality(fl, it),
        }
        table = Table("comparison", *Quality.COLUMNS, title=group, box=None)
        for name, q in rows.items():
            table.add_row(name, *q.cells())
        console.print(table)
        report["groups"][group] = {k: v.__dict__ for k, v in rows.items()}
    with console.status("per-layer SQNR…"):
        sqnr = layer_sqnr(kp_detector, generator, decoder, groups[next(iter(groups))][:2])
    table = Table(
        "activation", "scale", "SQNR dB", title="per-layer SQNR (int8 vs float)", box=None
    )
    for name, value in sqnr.items():
        scale = decoder.activation_scales[name.removesuffix(".pooled")]
        table.add_row(name, f"{scale:.3g}", f"{value:.1f}")
    console.print(table)
    report["sqnr_db"] = sqnr
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = "-random" if random_weights else ""
    path = out_dir / f"{params.name}-{method}{tag}.json"
    path.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {path}")
    return report
