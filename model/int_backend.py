"""The integer decoder behind the codec's `Backend` interface, and its calibration.

`quantize_decoder` calibrates activation scales on synthetic clips of training
identities (keypoints quantised exactly as the bitstream carries them) and
builds the `QuantizedDecoder`; `IntBackend` lets `model.codec.decode_stream`
run it like the float generator (`grace decode --backend int`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from model.bitstream import quantize
from model.codec import frames_to_tensor
from model.evaluate import to_uint8
from model.fixed_decoder import QuantizedDecoder, decode_int, encode_source_int
from model.fixed_motion import JAC_IN_FRAC_BITS, KP_FRAC_BITS
from model.generator import OcclusionAwareGenerator
from model.keypoints import KPDetector
from model.ptq import build_quantized, calibrate
from model.synthetic import ClipSpec, synthesize_clip

if TYPE_CHECKING:
    from defs.params import GraceParams

KP_STEP = 2.0**-KP_FRAC_BITS
JAC_STEP = 2.0**-JAC_IN_FRAC_BITS
CALIBRATION_SEED = 777_000


class IntBackendError(ValueError):
    """The stream cannot be decoded by the integer decoder (one line)."""


def frame_tensor(frame: np.ndarray) -> torch.Tensor:
    """One (H, W, 3) uint8 frame → (1, 3, H, W) float in [0, 1], as the codec feeds it."""
    return frames_to_tensor(np.asarray(frame)[None])


def stream_keypoints(kp: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keypoints (and Jacobians) exactly as the bitstream carries them, dequantised."""
    steps = {"value": KP_STEP, "jacobian": JAC_STEP}
    return {
        k: torch.from_numpy(quantize(v.numpy(), steps[k]) * steps[k]).float() for k, v in kp.items()
    }


@torch.no_grad()
def calibration_samples(
    kp_detector: KPDetector, params: GraceParams, clips: int = 6, frames: int = 16
) -> list[tuple[torch.Tensor, ...]]:
    """(source, kp_driving, kp_source) triples from training identities, as decoded."""
    from model.train import training_faces

    faces = training_faces()
    samples = []
    for i in range(clips):
        clip = synthesize_clip(
            ClipSpec(
                seed=CALIBRATION_SEED + i,
                num_frames=frames,
                size=params.model.image_size,
                face=faces[(7 * i) % len(faces)],
            )
        )
        source = frame_tensor(clip[0])
        kp_source = stream_keypoints(kp_detector(source))
        for t in range(1, frames, 3):
            kp_driving = stream_keypoints(kp_detector(frame_tensor(clip[t])))
            samples.append((source, kp_driving, kp_source))
    return samples


def quantize_decoder(
    kp_detector: KPDetector,
    generator: OcclusionAwareGenerator,
    params: GraceParams,
    method: str = "percentile",
) -> QuantizedDecoder:
    kp_detector.eval()
    scales = calibrate(generator.eval(), calibration_samples(kp_detector, params), method)
    return build_quantized(generator, scales, params.numeric, params.model.num_kp)


class IntBackend:
    """`Backend` over the integer decoder: tensors in, tensors out, integers inside."""

    def __init__(self, decoder: QuantizedDecoder) -> None:
        self.decoder = decoder

    def encode_source(self, source: torch.Tensor) -> object:
        frame = to_uint8(source)[0]  # the decoded key frame's pixels, exactly
        return encode_source_int(self.decoder, frame)

    def decode(self, cache: object, kp_driving: dict, kp_source: dict) -> dict[str, torch.Tensor]:
        args = self.stream_integers(kp_driving, kp_source)
        return {"prediction": frame_tensor(decode_int(self.decoder, cache, **args)["frame"])}

    def stream_integers(self, kp_driving: dict, kp_source: dict) -> dict[str, np.ndarray]:
        """decode_int's keypoint arguments from dequantised keypoint dicts (batch of 1)."""
        args = {
            "kp_driving_q": self._integers(kp_driving["value"][0], KP_STEP, "keypoints"),
            "kp_source_q": self._integers(kp_source["value"][0], KP_STEP, "keypoints"),
        }
        if self.decoder.jacobian:
            if "jacobian" not in kp_driving or "jacobian" not in kp_source:
                raise IntBackendError("this decoder needs Jacobians; the stream has none")
            args["jac_driving_q"] = self._integers(kp_driving["jacobian"][0], JAC_STEP, "Jacobians")
            args["jac_source_q"] = self._integers(kp_source["jacobian"][0], JAC_STEP, "Jacobians")
        return args

    @staticmethod
    def _integers(values: torch.Tensor, step: float, what: str) -> np.ndarray:
        scaled = values.double().numpy() / step
        q = np.round(scaled).astype(np.int64)
        if not np.array_equal(q, scaled):
            raise IntBackendError(
                f"the integer decoder needs {what} on a {step:g} grid (2^-n); re-encode the "
                "clip with the default steps"
            )
        return q


@torch.no_grad()
def layer_sqnr(
    kp_detector: KPDetector,
    generator: OcclusionAwareGenerator,
    decoder: QuantizedDecoder,
    clips: list[np.ndarray],
) -> dict[str, float]:
    """SQNR (dB) of every integer activation against the float one, over inter frames."""
    from model.ptq import activation_scale, float_trace

    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    for clip in clips:
        source = frame_tensor(clip[0])
        kp_source = stream_keypoints(kp_detector(source))
        record: dict[str, np.ndarray] = {}
        cache = encode_source_int(decoder, clip[0], record)
        gop_record = dict(record)
        for t in range(1, clip.shape[0]):
            kp_driving = stream_keypoints(kp_detector(frame_tensor(clip[t])))
            record = dict(gop_record)
            args = IntBackend(decoder).stream_integers(kp_driving, kp_source)
            decode_int(decoder, cache, record=record, **args)
            reference = float_trace(generator, source, kp_driving, kp_source)
            for name, ints in record.items():
                ref = reference[name][0].double().numpy()
                approx = ints * activation_scale(decoder.activation_scales, name)
                signal[name] = signal.get(name, 0.0) + float((ref**2).sum())
                noise[name] = noise.get(name, 0.0) + float(((ref - approx) ** 2).sum())
    return {
        name: (
            float("inf")
            if noise[name] == 0
            else 10 * float(np.log10(max(signal[name], 1e-30) / noise[name]))
        )
        for name in signal
    }
