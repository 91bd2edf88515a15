"""`grace bench`: the performance report, as figures (never asserted by tests).

Today it measures what exists: the float decoder on this CPU, per GOP (key-frame
encoder) and per inter frame, for each model preset, with its conv MAC count and
the effective GMAC/s. Later issues add the integer reference, the ISA simulator
and RTL cycle counts next to it.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from grace.params import preset


@dataclass(frozen=True)
class DecoderTiming:
    preset: str
    resolution: int
    gop_gmac: float
    frame_gmac: float
    gop_ms: float  # median
    frame_ms: float  # median
    threads: int

    @property
    def frame_gmac_per_s(self) -> float:
        return self.frame_gmac / (self.frame_ms / 1e3)


@torch.no_grad()
def time_float_decoder(name: str, repeats: int = 5) -> DecoderTiming:
    from model.agc import build_generator
    from model.macs import count_macs

    m = preset(name).model
    generator = build_generator(m).eval()
    count = count_macs(m)
    source = torch.rand(1, m.num_channels, m.image_size, m.image_size)
    kp = {"value": torch.rand(1, m.num_kp, 2) * 1.6 - 0.8}
    if m.estimate_jacobian:
        kp["jacobian"] = torch.eye(2).expand(1, m.num_kp, 2, 2).clone()

    def median_ms(fn) -> float:
        fn()  # warm up
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)

    cache = generator.encode_source(source)
    return DecoderTiming(
        preset=name,
        resolution=m.image_size,
        gop_gmac=count.per_gop / 1e9,
        frame_gmac=count.per_frame / 1e9,
        gop_ms=median_ms(lambda: generator.encode_source(source)),
        frame_ms=median_ms(lambda: generator.decode(cache, kp, kp)),
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
