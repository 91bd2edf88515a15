"""`grace bench`: the performance report, as figures (never asserted by tests).

Today it measures what exists, on this CPU: the float decoder per GOP (key-frame
encoder) and per inter frame, and the integer reference (L2, NumPy) per inter
frame, for each model preset, with the conv MAC count and the float GMAC/s.
Weights are random (speed does not depend on them). Later issues add the ISA
simulator and RTL cycle counts next to it.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from defs.params import preset


@dataclass(frozen=True)
class DecoderTiming:
    preset: str
    variant: str
    resolution: int
    gop_gmac: float
    frame_gmac: float
    gop_ms: float  # median
    frame_ms: float  # median
    int_frame_ms: float  # the integer reference (L2), median
    threads: int

    @property
    def frame_gmac_per_s(self) -> float:
        return self.frame_gmac / (self.frame_ms / 1e3)


@torch.no_grad()
def time_float_decoder(name: str, repeats: int = 5) -> DecoderTiming:
    from model.agc import build_generator
    from model.fixed_decoder import decode_int, encode_source_int
    from model.macs import count_macs
    from model.ptq import build_quantized, calibrate

    m = preset(name).model
    torch.manual_seed(0)
    generator = build_generator(m).eval()
    count = count_macs(m)
    source = torch.rand(1, m.num_channels, m.image_size, m.image_size)
    # Keypoints and Jacobians on the bitstream's grids (2^-8, 2^-6), as decoded.
    kp_q = torch.randint(-200, 200, (m.num_kp, 2))
    jac_q = torch.eye(2, dtype=torch.long).expand(m.num_kp, 2, 2) * 64 + torch.randint(
        -8, 8, (m.num_kp, 2, 2)
    )
    kp_s = {"value": kp_q[None].float() / 256}
    kp_d = {"value": (kp_q[None] + 5).float() / 256}
    int_args = {"kp_driving_q": kp_q.numpy() + 5, "kp_source_q": kp_q.numpy()}
    if m.estimate_jacobian:
        kp_s["jacobian"] = kp_d["jacobian"] = jac_q[None].float() / 64
        int_args["jac_driving_q"] = int_args["jac_source_q"] = jac_q.numpy()

    def median_ms(fn) -> float:
        fn()  # warm up
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)

    cache = generator.encode_source(source)
    scales = calibrate(generator, [(source, kp_d, kp_s)], "minmax")
    decoder = build_quantized(generator, scales, preset(name).numeric, m.num_kp)
    frame = (source[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    int_cache = encode_source_int(decoder, frame)
    return DecoderTiming(
        preset=name,
        variant="random weights",
        resolution=m.image_size,
        gop_gmac=count.per_gop / 1e9,
        frame_gmac=count.per_frame / 1e9,
        gop_ms=median_ms(lambda: generator.encode_source(source)),
        frame_ms=median_ms(lambda: generator.decode(cache, kp_d, kp_s)),
        int_frame_ms=median_ms(lambda: decode_int(decoder, int_cache, **int_args)),
        threads=torch.get_num_threads(),
    )


def run_bench(
    out_dir: Path, presets: tuple[str, ...] = ("tiny", "fomm-256"), repeats: int = 5
) -> list[DecoderTiming]:
    results = [time_float_decoder(name, repeats) for name in presets]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(
        json.dumps(
            [asdict(r) | {"frame_gmac_per_s": r.frame_gmac_per_s} for r in results], indent=2
        )
    )
    return results
