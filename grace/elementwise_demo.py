"""One decoded frame's element-wise ops through the units' Verilog: what `grace demo` runs.

The inter frame the int8 decoder decoded (`grace.demo.InterFrame`) is decoded
again with its activations recorded; then its heatmaps (heatmap unit), its
K + 1 motion maps and dense flow (motion unit, the flow under the frame's own
mask) and its mask softmax (softmax unit, the mask head's real logits) run
through cocotb. The flow and the mask are compared with what `decode_int`
returned; the heatmaps and motions, which it does not return, with L2's
`heatmaps` and `affine_motions` on the frame's keypoints (for a translation
model, `affine_motions` with J = 2^14·I, which equals `sparse_motions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from defs.params import GraceParams

if TYPE_CHECKING:
    from grace.demo import InterFrame
    from sim.runner import SimResult


@dataclass(frozen=True)
class UnitCheck:
    unit: str
    results: int  # values compared with decode_int's
    mismatches: int
    cycles: int  # first command to last done token, at full rate


def _checked(unit: str, run: object, result: SimResult, want: np.ndarray) -> UnitCheck:
    """The unit's outputs against decode_int's values, counted rather than asserted
    (all of them wrong when the unit returned a different count); with none wrong,
    the bench's own verdict (stream rules, tags) must hold too."""
    got, want = np.asarray(run.outputs).ravel(), np.asarray(want).ravel()
    wrong = int(np.count_nonzero(got != want)) if got.size == want.size else want.size
    if not wrong:
        result.check()
    return UnitCheck(unit, want.size, wrong, run.cycles)


def run_frame_elementwise(
    frame: InterFrame, params: GraceParams, *, simulator: str, build_root: Path, seed: int
) -> list[UnitCheck]:
    """The frame's heatmaps, motions and flow, and mask softmax on the units."""
    from model.fixed import saturate
    from model.fixed_decoder import decode_int
    from model.fixed_motion import compose_jacobians
    from rtl.act.motion_layouts import MotionOp
    from rtl.warp.layouts import FLOW_BITS
    from sim import heatmap, motion, softmax

    q, kp, cache = frame.decoder, frame.keypoints, frame.cache
    record: dict[str, np.ndarray] = {}
    decoded = decode_int(q, cache, **kp, record=record)
    size, keypoints = cache.small.shape[1], len(kp["kp_driving_q"])
    checks = []

    heat = heatmap.HeatmapCase(kp["kp_driving_q"], kp["kp_source_q"], size, q.gaussian_table)
    progs = heatmap.place([heat], params)
    run, result = heatmap.simulate_cocotb(
        progs, params, simulator=simulator, build_dir=build_root / "sim" / "heatmap" / params.key(),
        seed=seed,
    )  # fmt: skip
    checks.append(_checked("heatmap unit", run, result, heatmap.reference(heat)))

    if q.jacobian:
        jacobians = compose_jacobians(kp["jac_source_q"], kp["jac_driving_q"])
    else:
        jacobians = motion.identity_jacobians(keypoints)
    constants = motion.MotionFrame(size, kp["kp_driving_q"], kp["kp_source_q"], jacobians)
    cases = [motion.MotionCase(constants, MotionOp.MOTION, k) for k in range(keypoints + 1)]
    cases.append(motion.MotionCase(constants, MotionOp.FLOW, mask=decoded["mask"]))
    progs = motion.place(cases, params)
    run, result = motion.simulate_cocotb(
        progs, params, simulator=simulator, build_dir=build_root / "sim" / "motion" / params.key(),
        seed=seed,
    )  # fmt: skip
    motions = saturate(constants.motions(), FLOW_BITS).reshape(-1, 2)  # the warp's stream
    want = np.concatenate([motions, saturate(decoded["flow"], FLOW_BITS).reshape(-1, 2)])
    checks.append(_checked("motion unit", run, result, want))

    logits = softmax.SoftmaxCase(record["mask_logits"], q.softmax_in_scale)
    run, result = softmax.run_cocotb(
        [logits], params, simulator=simulator,
        build_dir=build_root / "sim" / "softmax" / params.key(), seed=seed,
    )  # fmt: skip
    want = decoded["mask"].reshape(keypoints + 1, -1).T
    checks.append(_checked("softmax unit", run, result, want))
    return checks
