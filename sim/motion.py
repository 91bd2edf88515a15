"""Host side of the motion unit: a frame's constants and commands in, `o` predicted.

A `MotionFrame` is what L2 takes for one frame: keypoints as the bitstream's
integers (kp_q), the composed Jacobians (`compose_jacobians`, or 2^14·I for a
DAC model) and the motion grid's side S. A `MotionCase` is one command on it:
MOTION k (`affine_motions(...)[k]`) or FLOW (`compose_flow(mask, motions)`).
`frame_writes` turns a frame into the unit's constant writes, `program` a case
into its command, mask bytes and expected entries (L2 saturated to the warp's
s18, row-major), refusing what the unit is not exact for with a one-line
`MotionProgramError`. `schedule` decides which commands reload constants and
how many done tokens they await first, and `unit_tiles` turns the commands into
the tiles both simulators run (`sim.unit_sim`: Amaranth's, and cocotb with
`sim.motion_tb`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from defs.limits import TAG_BITS
from defs.params import GraceParams
from model.fixed import saturate
from model.fixed_motion import (
    JAC_FRAC_BITS,
    affine_motions,
    compose_flow,
    compose_jacobians,
    grid_axis,
    keypoints_to_coords,
)
from model.fixed_ops import softmax_channels_fixed
from rtl.act.keypoints import (
    KP_LIMIT_Q,
    grid_write_layout,
    jacobian_write_layout,
    keypoint_write_layout,
)
from rtl.act.motion import MotionUnit
from rtl.act.motion_layouts import JAC_LIMIT, MotionOp, command_layout
from rtl.warp.layouts import FLOW_BITS
from sim import unit_sim
from sim.runner import SimResult
from sim.stream_function import pack
from sim.unit_sim import UnitRun, UnitTile

IntArray = npt.NDArray[np.int64]

#: The Jacobian kinds `random_frame` draws: 2^14·I (DAC's translations), composed
#: from random bitstream Jacobians, at the ±2^18 clip in every entry, singular
#: driving Jacobians (identity), odd multiples of 2^13 (ties of round_shift(·, 14)
#: on odd g − kp_d), and a mix of those per keypoint.
JAC_KINDS = ("translation", "random", "limit", "singular", "halves", "mixed")
#: Keypoint kinds: random within ±2^9 (both ends planted), the four corners
#: (±256: the first and last pixel centres), on pixel centres (where the grid
#: allows), at |kp_q| = 2^9, and the extremes that make motions ±1,605,632.
KP_KINDS = ("random", "corners", "centres", "edge", "extreme")
#: Mask kinds: random bytes, all 0, all 255 (the sum at its widest), one-hot 255,
#: one-hot 128 (ties of round_shift(·, 8) on odd motions), and a softmax's.
MASK_KINDS = ("random", "zero", "full", "one-hot", "half", "softmax")

#: Bits of each coordinate in an `o` word: x low, y high.
COORD_MASK = (1 << FLOW_BITS) - 1
#: The unit's constant write streams, in `FrameWrites`' order.
WRITE_PORTS = ("grid_write", "keypoint_write", "jacobian_write")


class MotionProgramError(ValueError):
    """A frame or command the unit does not take (out of its contract or fields)."""


@dataclass
class MotionFrame:
    """One frame's constants, as L2 takes them."""

    size: int  # S: the maps are S × S
    kp_driving: IntArray  # (K, 2) bitstream keypoints (x, y), KP_FRAC_BITS
    kp_source: IntArray
    jacobians: IntArray  # (K, 2, 2) composed J_s·J_d⁻¹, JAC_FRAC_BITS
    kind: str = ""

    @property
    def keypoints(self) -> int:
        return int(np.asarray(self.kp_driving).shape[0])

    def motions(self) -> IntArray:
        """L2's (K + 1, S, S, 2) motions."""
        return affine_motions(
            keypoints_to_coords(self.kp_driving),
            keypoints_to_coords(self.kp_source),
            self.jacobians,
            self.size,
        )


@dataclass
class MotionCase:
    """One command on a frame: motion map `motion`, or the flow under `mask`."""

    frame: MotionFrame
    op: MotionOp
    motion: int = 0
    mask: IntArray | None = None  # FLOW: (K + 1, S, S), 0..255
    kind: str = ""

    def describe(self) -> str:
        f = self.frame
        what = f"MOTION {self.motion}" if self.op == MotionOp.MOTION else f"FLOW {self.kind}"
        return f"{what} K={f.keypoints} S={f.size} {f.kind}".strip()


def identity_jacobians(keypoints: int) -> IntArray:
    """J = 2^14·I per keypoint: `affine_motions` then equals `sparse_motions` exactly."""
    return np.broadcast_to(np.eye(2, dtype=np.int64) << JAC_FRAC_BITS, (keypoints, 2, 2)).copy()


def unsaturated(case: MotionCase) -> IntArray:
    """L2's result before the warp's saturation, (S·S, 2) row-major."""
    motions = case.frame.motions()
    if case.op == MotionOp.MOTION:
        values = motions[case.motion]
    else:
        values = compose_flow(case.mask, motions)
    return values.reshape(-1, 2)


def reference(case: MotionCase) -> IntArray:
    """What `o` carries: L2 saturated to the warp's s18, (S·S, 2) row-major (x, y)."""
    return saturate(unsaturated(case), FLOW_BITS)


# -- refusals ---------------------------------------------------------------------------


def _ints(name: str, values: npt.ArrayLike, shape: tuple, lo: int, hi: int, fix: str) -> IntArray:
    a = np.asarray(values)
    if a.shape != shape:
        raise MotionProgramError(f"{name} must have shape {shape}, got {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise MotionProgramError(f"{name} must hold integers, got {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        raise MotionProgramError(f"{name} must lie in {lo}..{hi}, got {a.min()}..{a.max()}: {fix}")
    return a


def check_frame(frame: MotionFrame, params: GraceParams) -> None:
    """Refuse a frame the unit is not exact for, or whose sizes exceed its buffers."""
    act = params.act
    if not isinstance(frame.size, int | np.integer) or not 2 <= frame.size <= act.max_grid:
        raise MotionProgramError(
            f"grid side S = {frame.size}: the unit takes 2..{act.max_grid} (ActParams.max_grid)"
        )
    k = np.asarray(frame.kp_driving).shape[0] if np.ndim(frame.kp_driving) else 0
    if not 1 <= k <= act.max_keypoints:
        raise MotionProgramError(
            f"{k} keypoints: the unit takes 1..{act.max_keypoints} (ActParams.max_keypoints)"
        )
    kp_fix = "the unit is exact only for |kp_q| ≤ 2^9; decode this frame on the host"
    for name in ("kp_driving", "kp_source"):
        _ints(name, getattr(frame, name), (k, 2), -KP_LIMIT_Q, KP_LIMIT_Q, kp_fix)
    jac_fix = "clip them as compose_jacobians does"
    _ints("jacobians", frame.jacobians, (k, 2, 2), -JAC_LIMIT, JAC_LIMIT, jac_fix)


def check_case(case: MotionCase, params: GraceParams) -> None:
    check_frame(case.frame, params)
    if case.op not in set(MotionOp):
        known = ", ".join(f"{o.name} = {o.value}" for o in MotionOp)
        raise MotionProgramError(f"op {case.op!r}: the unit knows {known}")
    k, s = case.frame.keypoints, case.frame.size
    if case.op == MotionOp.MOTION:
        if not isinstance(case.motion, int | np.integer) or not 0 <= case.motion <= k:
            raise MotionProgramError(
                f"motion {case.motion}: a frame of {k} keypoints has motions 0..{k}"
            )
    elif case.mask is None:
        raise MotionProgramError("a FLOW case needs a mask of K + 1 channels")
    else:
        _ints("mask", case.mask, (k + 1, s, s), 0, 255, "the softmax's masks are u8")


# -- the unit's view --------------------------------------------------------------------


@dataclass(frozen=True)
class FrameWrites:
    """A frame's constant writes, one stream each."""

    grid: list[int]
    keypoints: list[int]
    jacobians: list[int]


def frame_writes(frame: MotionFrame, params: GraceParams) -> FrameWrites:
    """The grid axis of S, both keypoint sets (coordinate format) and J, as stream words."""
    check_frame(frame, params)
    k, s = frame.keypoints, frame.size
    grid = pack(grid_write_layout(params), {"index": np.arange(s), "value": grid_axis(s)})
    coords = [keypoints_to_coords(frame.kp_driving), keypoints_to_coords(frame.kp_source)]
    keypoints = pack(
        keypoint_write_layout(params),
        {
            "keypoint": np.tile(np.arange(k), 2),
            "source": np.repeat([0, 1], k),
            "x": np.concatenate([c[:, 0] for c in coords]),
            "y": np.concatenate([c[:, 1] for c in coords]),
        },
    )
    kk, row, col = np.meshgrid(np.arange(k), [0, 1], [0, 1], indexing="ij")
    jacobians = pack(
        jacobian_write_layout(params),
        {"keypoint": kk, "row": row, "col": col, "value": np.asarray(frame.jacobians)},
    )
    return FrameWrites(grid, keypoints, jacobians)


@dataclass
class MotionProgram:
    """One command's words, its mask bytes and the (x, y) entries it must return."""

    command: int
    inputs: list[int]  # FLOW: mask bytes, pixel-major, background first
    expected: IntArray  # (S·S, 2)
    command_fields: dict[str, int]
    case: MotionCase

    @property
    def tag(self) -> int:
        return self.command_fields["tag"]

    @property
    def entries(self) -> int:
        return len(self.expected)


def program(case: MotionCase, params: GraceParams, *, tag: int = 1) -> MotionProgram:
    """The command, mask bytes and expected entries of one case (after its refusals)."""
    check_case(case, params)
    if not 0 <= tag < 1 << TAG_BITS:
        raise MotionProgramError(f"tag {tag}: the unit takes 0..{(1 << TAG_BITS) - 1}")
    flow = case.op == MotionOp.FLOW
    fields = {
        "op": int(case.op),
        "size": case.frame.size,
        "keypoints": case.frame.keypoints,
        "motion": 0 if flow else int(case.motion),
        "tag": tag,
    }
    command = pack(command_layout(params), {k: [v] for k, v in fields.items()})[0]
    inputs = np.asarray(case.mask).transpose(1, 2, 0).ravel().tolist() if flow else []
    return MotionProgram(command, inputs, reference(case), fields, case)


def unpack_entries(words: list[int]) -> IntArray:
    """`o` words → (N, 2) signed (x, y)."""
    raw = np.array([[w & COORD_MASK, (w >> FLOW_BITS) & COORD_MASK] for w in words], np.int64)
    raw = raw.reshape(-1, 2)
    return np.where(raw >> (FLOW_BITS - 1), raw - (1 << FLOW_BITS), raw)


def pack_entries(entries: npt.ArrayLike) -> list[int]:
    """(N, 2) signed (x, y) → `o` words."""
    return [
        (int(x) & COORD_MASK) | ((int(y) & COORD_MASK) << FLOW_BITS) for x, y in np.asarray(entries)
    ]


def split_outputs(entries: IntArray, progs: list[MotionProgram]) -> list[IntArray]:
    """A run's entries, one array per command, in order."""
    total = sum(p.entries for p in progs)
    if len(entries) != total:
        raise AssertionError(f"{len(entries)} output entries, the commands make {total}")
    return np.split(entries, np.cumsum([p.entries for p in progs])[:-1])


def place(
    cases: list[MotionCase], params: GraceParams, *, first_tag: int = 0
) -> list[MotionProgram]:
    """The cases as commands back to back, tags counting up from `first_tag`."""
    return [
        program(case, params, tag=(first_tag + k) % (1 << TAG_BITS)) for k, case in enumerate(cases)
    ]


@dataclass(frozen=True)
class Load:
    """The constants written before a command, and the done tokens awaited before them."""

    writes: FrameWrites | None
    wait: int


def schedule(progs: list[MotionProgram], params: GraceParams) -> list[Load]:
    """Each command whose frame differs from the one before reloads every constant,
    once all earlier commands are done (their done tokens: they read them)."""
    loads, current = [], None
    for k, prog in enumerate(progs):
        frame = prog.case.frame
        if frame is current:
            loads.append(Load(None, 0))
        else:
            loads.append(Load(frame_writes(frame, params), k))
            current = frame
    return loads


# -- generators -------------------------------------------------------------------------


def random_keypoints(
    rng: np.random.Generator, keypoints: int, size: int, kind: str
) -> tuple[IntArray, IntArray]:
    """(kp_d, kp_s), each (K, 2) bitstream integers, of one of `KP_KINDS`."""
    shape = (keypoints, 2)
    if kind == "random":
        kd, ks = rng.integers(-KP_LIMIT_Q, KP_LIMIT_Q + 1, (2, *shape))
        flat = kd.reshape(-1)
        flat[: min(2, flat.size)] = [-KP_LIMIT_Q, KP_LIMIT_Q][: min(2, flat.size)]
        return kd, ks
    if kind == "corners":
        corner = KP_LIMIT_Q // 2  # ±2^14 in the coordinate format
        return rng.choice([-corner, corner], shape), rng.choice([-corner, corner], shape)
    if kind == "centres":  # the nearest bitstream value to a pixel centre (exact where it can be)
        axis = grid_axis(size)
        centres = np.floor(axis / 64 + 0.5).astype(np.int64)
        return rng.choice(centres, shape), rng.choice(centres, shape)
    if kind == "edge":
        edge = [-KP_LIMIT_Q, KP_LIMIT_Q]
        kd, ks = rng.choice(edge, shape), rng.integers(-KP_LIMIT_Q, KP_LIMIT_Q + 1, shape)
        return kd, np.where(rng.random(shape) < 0.5, rng.choice(edge, shape), ks)
    if kind == "extreme":  # with J = ±2^18 everywhere: m = ±1,605,632 at (S−1, S−1)
        sign = np.where(np.arange(keypoints) % 2 == 0, 1, -1)[:, None]
        return np.full(shape, -KP_LIMIT_Q), np.broadcast_to(sign * KP_LIMIT_Q, shape).copy()
    raise ValueError(f"unknown keypoint kind {kind!r}; known: {', '.join(KP_KINDS)}")


def random_jacobians(rng: np.random.Generator, keypoints: int, kind: str) -> IntArray:
    """(K, 2, 2) composed Jacobians of one of `JAC_KINDS` (bitstream ones composed by
    `compose_jacobians`, except the translations)."""
    one = 1 << 6  # 1.0 in the bitstream's Jacobians (JAC_IN_FRAC_BITS)
    eye = np.eye(2, dtype=np.int64) * one
    if kind == "translation":
        return identity_jacobians(keypoints)
    if kind == "mixed":
        kinds = [k for k in JAC_KINDS if k != "mixed"]
        picks = [
            random_jacobians(rng, 1, kinds[int(rng.integers(len(kinds)))]) for _ in range(keypoints)
        ]
        return np.concatenate(picks)
    jd = np.broadcast_to(eye, (keypoints, 2, 2)).copy()
    if kind == "random":
        js = rng.integers(-2 * one, 2 * one + 1, (keypoints, 2, 2))
        jd = rng.integers(-2 * one, 2 * one + 1, (keypoints, 2, 2))
        jd[:, 0, 0] += 3 * one  # mostly well-conditioned, some large entries
    elif kind == "limit":  # J_s ≥ 16 in size: every entry clips to ±2^18
        js = rng.choice([-2000, 2000], (keypoints, 2, 2))
    elif kind == "singular":  # det J_d = 0: the identity
        js = rng.integers(-2 * one, 2 * one + 1, (keypoints, 2, 2))
        row = rng.integers(-one, one + 1, (keypoints, 1, 2))
        jd = np.concatenate([row, 2 * row], axis=1)
    elif kind == "halves":  # odd multiples of 2^13, one entry per row zero
        js = rng.choice([-3, -1, 1, 3], (keypoints, 2, 2)) * (one // 2)
        js[np.arange(keypoints), :, rng.integers(0, 2, keypoints)] = 0
    else:
        raise ValueError(f"unknown Jacobian kind {kind!r}; known: {', '.join(JAC_KINDS)}")
    return compose_jacobians(js, jd)


def random_frame(
    rng: np.random.Generator, keypoints: int, size: int, *, kp: str = "random", jac: str = "random"
) -> MotionFrame:
    if kp == "extreme":
        sign = np.where(np.arange(keypoints) % 2 == 0, 1, -1)[:, None, None]
        js = np.full((keypoints, 2, 2), 2000) * sign
        jacobians = compose_jacobians(js, np.broadcast_to(np.eye(2, dtype=np.int64) * 64, js.shape))
        jac = "limit"
    else:
        jacobians = random_jacobians(rng, keypoints, jac)
    kd, ks = random_keypoints(rng, keypoints, size, kp)
    return MotionFrame(size, kd, ks, jacobians, kind=f"kp {kp}, J {jac}")


def random_mask(rng: np.random.Generator, keypoints: int, size: int, kind: str) -> IntArray:
    """(K + 1, S, S) mask bytes of one of `MASK_KINDS`."""
    shape = (keypoints + 1, size, size)
    if kind == "random":
        mask = rng.integers(0, 256, shape)
        mask.reshape(-1)[:2] = [0, 255]
        return mask
    if kind in ("zero", "full"):
        return np.full(shape, 0 if kind == "zero" else 255)
    if kind in ("one-hot", "half"):
        hot = rng.integers(0, keypoints + 1, (size, size))
        return np.where(
            np.arange(keypoints + 1)[:, None, None] == hot, 255 if kind == "one-hot" else 128, 0
        )
    if kind == "softmax":
        logits = rng.integers(-128, 128, shape)
        return softmax_channels_fixed(logits, float(rng.uniform(0.02, 0.2))).astype(np.int64)
    raise ValueError(f"unknown mask kind {kind!r}; known: {', '.join(MASK_KINDS)}")


def frame_cases(
    rng: np.random.Generator, frame: MotionFrame, masks: tuple[str, ...] = ("random",)
) -> list[MotionCase]:
    """A frame's commands as the decoder issues them: every motion map, then the flow
    under each of `masks`."""
    cases = [MotionCase(frame, MotionOp.MOTION, k) for k in range(frame.keypoints + 1)]
    for kind in masks:
        mask = random_mask(rng, frame.keypoints, frame.size, kind)
        cases.append(MotionCase(frame, MotionOp.FLOW, mask=mask, kind=kind))
    return cases


# -- simulation -------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionRun:
    outputs: IntArray  # (N, 2): every `o` entry, in arrival order
    tokens: list[int]
    cycles: int  # from the first command's transfer to the last done token's
    stalls: dict[str, int] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)  # edge of each command's transfer
    returned: list[int] = field(default_factory=list)  # edge of each token's transfer


def unit_tiles(progs: list[MotionProgram], params: GraceParams) -> list[UnitTile]:
    """The commands as the tiles `sim.unit_sim` runs, each with the constant writes
    `schedule` gives it."""
    tiles = []
    for prog, load in zip(progs, schedule(progs, params), strict=True):
        writes, w = {}, load.writes  # none while the frame stays
        if w is not None:
            writes = dict(zip(WRITE_PORTS, (w.grid, w.keypoints, w.jacobians), strict=True))
        tiles.append(UnitTile(prog.command, writes, load.wait, prog.inputs, prog.entries, prog.tag))
    return tiles


def _motion_run(run: UnitRun) -> MotionRun:
    return MotionRun(
        unpack_entries(run.outputs), run.tokens, run.cycles, run.stalls, run.accepted, run.returned
    )


def simulate_amaranth(
    progs: list[MotionProgram],
    params: GraceParams,
    *,
    ready_prob: float = 1.0,
    in_prob: float = 1.0,
    write_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    dsp_target: str | None = None,
    stall_limit: int = 5000,
) -> MotionRun:
    """Load each frame's constants (after the commands before it are done), issue the
    commands, collect the outputs.

    Constant writes are offered `write_prob` of the cycles on each of the three
    streams, mask bytes `in_prob`; `o` and `done` are taken under random
    back-pressure and checked against the stream rules; the tokens must be the
    commands' tags in order, each after its command's last entry
    (`sim.unit_sim.simulate_amaranth`).
    """
    if not progs:
        raise ValueError("simulate_amaranth: no programs to run")
    run = unit_sim.simulate_amaranth(
        MotionUnit(params, dsp_target=dsp_target), unit_tiles(progs, params),
        ready_prob=ready_prob, in_prob=in_prob, write_prob=write_prob,
        done_ready_prob=done_ready_prob, seed=seed, stall_limit=stall_limit,
    )  # fmt: skip
    return _motion_run(run)


def simulate_cocotb(
    progs: list[MotionProgram],
    params: GraceParams,
    *,
    simulator: str,
    build_dir: Path,
    ready_prob: float = 1.0,
    in_prob: float = 1.0,
    write_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    waves: bool = False,
) -> tuple[MotionRun, SimResult]:
    """The same as `simulate_amaranth`, on the elaborated Verilog under cocotb.

    The bench (`sim.motion_tb`) fails the cocotb test (see `SimResult.check`) on
    a broken stream rule, a wrong entry, or a done token that is not its
    command's tag.
    """
    run, result = unit_sim.simulate_cocotb(
        "motion", params, unit_tiles(progs, params), WRITE_PORTS,
        expected=pack_entries(np.concatenate([p.expected for p in progs])), simulator=simulator,
        build_dir=build_dir, ready_prob=ready_prob, in_prob=in_prob, write_prob=write_prob,
        done_ready_prob=done_ready_prob, seed=seed, waves=waves,
    )  # fmt: skip
    return _motion_run(run), result
