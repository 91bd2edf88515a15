"""The one parameters object shared by model, rtl, sim and boards.

Every knob of a GRACE build lives here: tensor bit widths, the PE array, buffer
depths, the clock and the target board. The object is frozen so a build is a
pure function of it; `key()` names per-parameter build directories. Invalid
values fail in `__post_init__` naming the field and the allowed range, so a
mistake surfaces where it was made rather than as a Yosys error an hour later.

This module imports only the standard library and its neighbours in `defs/`:
every other package may import it without pulling in torch, amaranth or the CLI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from defs.boards import BOARD_SPECS
from defs.limits import MAX_PRODUCT_BITS


class ParamsError(ValueError):
    """A parameter is out of range, unknown, or malformed."""


def _check_range(obj: object, name: str, lo: int | float, hi: int | float) -> None:
    value = getattr(obj, name)
    owner = type(obj).__name__
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamsError(f"{owner}.{name} = {value!r}: must be a number in {lo}..{hi}")
    if not lo <= value <= hi:
        raise ParamsError(f"{owner}.{name} = {value}: must be in {lo}..{hi}")


def _check_int_range(obj: object, name: str, lo: int, hi: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamsError(
            f"{type(obj).__name__}.{name} = {value!r}: must be an integer in {lo}..{hi}"
        )
    _check_range(obj, name, lo, hi)


@dataclass(frozen=True)
class NumericParams:
    """Bit widths of the integer datapath (see docs/numerics.md)."""

    act_bits: int = 8  # activations, symmetric per tensor
    weight_bits: int = 8  # weights, symmetric per output channel
    acc_bits: int = 32  # convolution accumulators
    bias_bits: int = 32  # per-channel bias, added to the accumulator
    mult_bits: int = 16  # unsigned per-channel requantize multiplier
    max_shift: int = 47  # requantize right shift is 0 .. max_shift
    # unsigned per-channel gain of a residual entering the accumulator; 15 bits keep
    # it a positive 16-bit DSP operand on iCE40 as on ECP5 (tiny's largest: 2,688)
    gain_bits: int = 15

    def __post_init__(self) -> None:
        _check_int_range(self, "act_bits", 2, 16)
        _check_int_range(self, "weight_bits", 2, 16)
        _check_int_range(self, "acc_bits", 8, 48)
        _check_int_range(self, "bias_bits", 8, 48)
        _check_int_range(self, "mult_bits", 1, 32)
        _check_int_range(self, "gain_bits", 1, 24)
        if self.product_bits > MAX_PRODUCT_BITS:
            raise ParamsError(
                f"NumericParams: product width {self.product_bits} "
                f"(max(acc_bits, bias_bits) + 1 + mult_bits) must be at most "
                f"{MAX_PRODUCT_BITS} so the NumPy reference stays exact in int64; "
                "narrow acc_bits, bias_bits or mult_bits"
            )
        _check_int_range(self, "max_shift", 1, self.product_bits - 1)

    @property
    def sum_bits(self) -> int:
        """Width of accumulator + bias, kept exact (no wrap, no saturation)."""
        return max(self.acc_bits, self.bias_bits) + 1

    @property
    def product_bits(self) -> int:
        """Width of (accumulator + bias) × multiplier, signed, exact."""
        return self.sum_bits + self.mult_bits

    @property
    def shift_bits(self) -> int:
        """Width of the shift field that carries 0 .. max_shift."""
        return self.max_shift.bit_length()

    @property
    def mult_max(self) -> int:
        return (1 << self.mult_bits) - 1


@dataclass(frozen=True)
class ArrayParams:
    """Shape of the convolution PE array: rows × cols int8 MACs."""

    rows: int = 4
    cols: int = 4

    def __post_init__(self) -> None:
        _check_int_range(self, "rows", 1, 64)
        _check_int_range(self, "cols", 1, 64)

    @property
    def macs(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class BufferParams:
    """Depths (in words) of the on-chip buffers."""

    input_depth: int = 1024
    weight_depth: int = 1024
    accumulator_slots: int = 16  # finished pixel vectors waiting for the output unit
    param_depth: int = 256  # per-output-channel constants (bias, multiplier, shift, gain)
    fifo_depth: int = 4  # stream FIFOs between decoupled stages
    # int32 partial sums carried between the passes of a layer split over its input
    # channels (docs/conv_engine.md): a partial tile has at most this many output
    # elements. A power of two: the element index wraps at it.
    partial_depth: int = 1024

    def __post_init__(self) -> None:
        for name in ("input_depth", "weight_depth", "param_depth"):
            _check_int_range(self, name, 16, 1 << 20)
        _check_int_range(self, "accumulator_slots", 2, 1024)
        _check_int_range(self, "fifo_depth", 1, 1024)
        _check_int_range(self, "partial_depth", 16, 1 << 16)
        if self.partial_depth & (self.partial_depth - 1):
            raise ParamsError(
                f"BufferParams.partial_depth = {self.partial_depth}: must be a power of two "
                "(the partial sums' element index wraps at it)"
            )


@dataclass(frozen=True)
class WarpParams:
    """The warp engine (rtl/warp/): channel lanes per cycle and its banked feature buffer.

    The buffer is four banks (even/odd row × even/odd column) of `depth` words;
    a word holds `lanes` channels of one pixel, so a tile's planes of H × W take
    ceil(H/2)·ceil(W/2) words each per bank (docs/warp_engine.md).
    """

    lanes: int = 1
    depth: int = 1024  # words per bank

    def __post_init__(self) -> None:
        _check_int_range(self, "lanes", 1, 16)
        _check_int_range(self, "depth", 16, 1 << 16)


@dataclass(frozen=True)
class ActParams:
    """The element-wise engine (rtl/act/): lanes per cycle and its constant buffers.

    Each lane has its own copy of the runtime-loaded tables (`TABLES` of 256
    entries) and its own output path; `param_depth` per-channel constant sets
    (negate, bias, multiplier, shift) serve the affine op. The other fields size
    the softmax and keypoint units' buffers (one lane each).
    """

    lanes: int = 1
    param_depth: int = 256
    # the keypoint units (heatmaps, motions, flow) and the softmax: the largest
    # frame they take, sized for fomm-256 (10 keypoints + background on a 64² grid)
    max_keypoints: int = 16  # per-frame keypoint (and Jacobian) registers
    max_grid: int = 128  # entries of the grid axis table: motion maps up to this side
    gaussian_depth: int = 2048  # entries of the Gaussian table (fomm-256's has 1,818)
    softmax_channels: int = 32  # channels of one softmax pixel, at most

    def __post_init__(self) -> None:
        _check_int_range(self, "lanes", 1, 16)
        _check_int_range(self, "param_depth", 16, 1 << 16)
        _check_int_range(self, "max_keypoints", 1, 64)
        _check_int_range(self, "max_grid", 2, 4096)
        _check_int_range(self, "gaussian_depth", 16, 1 << 14)
        _check_int_range(self, "softmax_channels", 1, 64)


@dataclass(frozen=True)
class CoprocParams:
    """The co-processor around the engines (rtl/coproc/, docs/coprocessor.md).

    `bus_bytes` is the external memory port's data width; the queues hold
    fetched instructions waiting for their unit; `stream_loads` LOADs into an
    engine's input stream may wait for their engine at once (their tokens are
    given when they are queued); `outstanding` requests may be in flight on the
    memory port.
    """

    bus_bytes: int = 8
    queue_depth: int = 8
    stream_loads: int = 16
    outstanding: int = 32

    def __post_init__(self) -> None:
        _check_int_range(self, "bus_bytes", 8, 64)
        if self.bus_bytes & (self.bus_bytes - 1):
            raise ParamsError(
                f"CoprocParams.bus_bytes = {self.bus_bytes}: must be a power of two (8..64)"
            )
        _check_int_range(self, "queue_depth", 2, 256)
        _check_int_range(self, "stream_loads", 2, 256)
        _check_int_range(self, "outstanding", 2, 256)


@dataclass(frozen=True)
class ModelParams:
    """Shape of the FOMM/DAC decoder graph (DESIGN.md §3)."""

    image_size: int = 64
    num_channels: int = 3
    num_kp: int = 10
    estimate_jacobian: bool = False  # False = DAC
    block_expansion: int = 16  # generator
    max_features: int = 64  # generator
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 2
    dense_block_expansion: int = 8
    dense_max_features: int = 64
    dense_num_blocks: int = 3
    dense_scale_factor: float = 0.25
    kp_block_expansion: int = 8  # keypoint detector (encoder side only)
    kp_max_features: int = 64
    kp_num_blocks: int = 3
    kp_scale_factor: float = 0.25
    kp_temperature: float = 0.1

    @property
    def dense_size(self) -> int:
        """Side of the dense motion network's grid: heatmaps, motions, mask and flow."""
        return round(self.image_size * self.dense_scale_factor)

    def __post_init__(self) -> None:
        _check_int_range(self, "image_size", 16, 1024)
        _check_int_range(self, "num_channels", 1, 4)
        _check_int_range(self, "num_kp", 1, 64)
        _check_int_range(self, "block_expansion", 1, 1024)
        _check_int_range(self, "max_features", 1, 4096)
        _check_int_range(self, "num_down_blocks", 0, 6)
        _check_int_range(self, "num_bottleneck_blocks", 0, 32)
        _check_int_range(self, "dense_block_expansion", 1, 1024)
        _check_int_range(self, "dense_max_features", 1, 4096)
        _check_int_range(self, "dense_num_blocks", 1, 8)
        _check_range(self, "dense_scale_factor", 1 / 64, 1.0)
        _check_int_range(self, "kp_block_expansion", 1, 1024)
        _check_int_range(self, "kp_max_features", 1, 4096)
        _check_int_range(self, "kp_num_blocks", 1, 8)
        _check_range(self, "kp_scale_factor", 1 / 64, 1.0)
        _check_range(self, "kp_temperature", 1e-3, 10.0)
        if not isinstance(self.estimate_jacobian, bool):
            raise ParamsError(
                f"ModelParams.estimate_jacobian = {self.estimate_jacobian!r}: must be true or false"
            )
        kp_size = round(self.image_size * self.kp_scale_factor)
        if kp_size % (1 << self.kp_num_blocks):
            raise ParamsError(
                f"ModelParams.kp_num_blocks = {self.kp_num_blocks}: the keypoint detector "
                f"input ({kp_size}²) must halve cleanly that many times; "
                f"change image_size or kp_num_blocks"
            )
        dense_size = self.dense_size
        if dense_size % (1 << self.dense_num_blocks):
            raise ParamsError(
                f"ModelParams.dense_num_blocks = {self.dense_num_blocks}: the dense-motion "
                f"input ({dense_size}²) must halve cleanly that many times; "
                f"change image_size or dense_num_blocks"
            )


#: Boards that `boards/` knows how to build for (defs/boards.py has their dies).
BOARDS = tuple(BOARD_SPECS)


@dataclass(frozen=True)
class GraceParams:
    """Everything a GRACE build depends on."""

    name: str = "tiny"
    numeric: NumericParams = field(default_factory=NumericParams)
    array: ArrayParams = field(default_factory=ArrayParams)
    buffers: BufferParams = field(default_factory=BufferParams)
    model: ModelParams = field(default_factory=ModelParams)
    warp: WarpParams = field(default_factory=WarpParams)
    act: ActParams = field(default_factory=ActParams)
    coproc: CoprocParams = field(default_factory=CoprocParams)
    clock_hz: float = 100e6  # target clock; boards constrain to it
    board: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ParamsError(f"GraceParams.name = {self.name!r}: must be a non-empty string")
        _check_range(self, "clock_hz", 1e6, 1e9)
        if self.board is not None and self.board not in BOARDS:
            raise ParamsError(
                f"GraceParams.board = {self.board!r}: must be one of {', '.join(BOARDS)} or null"
            )

    # -- serialisation -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        return _from_dict(cls, data, "GraceParams")

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParamsError(f"parameters JSON is malformed: {exc}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    def key(self) -> str:
        """Short stable hash: one build directory per parameter set."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:10]


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        sub = _NESTED.get((cls, name))
        kwargs[name] = _from_dict(sub, value, f"{where}.{name}") if sub else value
    return cls(**kwargs)


_NESTED: dict[tuple[type, str], type] = {
    (GraceParams, "numeric"): NumericParams,
    (GraceParams, "array"): ArrayParams,
    (GraceParams, "buffers"): BufferParams,
    (GraceParams, "model"): ModelParams,
    (GraceParams, "warp"): WarpParams,
    (GraceParams, "act"): ActParams,
    (GraceParams, "coproc"): CoprocParams,
}


# -- named presets -----------------------------------------------------------

_FOMM_256 = ModelParams(
    image_size=256,
    num_kp=10,
    estimate_jacobian=True,
    block_expansion=64,
    max_features=512,
    num_down_blocks=2,
    num_bottleneck_blocks=6,
    dense_block_expansion=64,
    dense_max_features=1024,
    dense_num_blocks=5,
    dense_scale_factor=0.25,
    kp_block_expansion=32,
    kp_max_features=1024,
    kp_num_blocks=5,
    kp_scale_factor=0.25,
    kp_temperature=0.1,
)

PRESETS: dict[str, GraceParams] = {
    # Whole frames decode in RTL simulation inside a test.
    "tiny": GraceParams(name="tiny"),
    # The exact vox-256 graph: cost model, ISA simulator, benchmarks.
    "fomm-256": GraceParams(
        name="fomm-256",
        array=ArrayParams(rows=16, cols=8),  # the ULX3S engine, so benchmarks match silicon
        buffers=BufferParams(
            input_depth=16384,
            weight_depth=2048,
            param_depth=2048,
            accumulator_slots=16,
            partial_depth=4096,  # the ULX3S engine's
        ),
        model=_FOMM_256,
        warp=WarpParams(depth=8192),  # the ULX3S engine's: 16 DP16KD
        act=ActParams(param_depth=1024),  # the ULX3S engine's
        clock_hz=150e6,
    ),
    # ECP5-85F (its capacities: defs/boards.py). 16×8 = 128 MACs: every
    # FOMM width (64 … 1024) is a multiple of both sides; 4 more DSPs serve the
    # address multiply, the residual gain and the requantizer.
    "ulx3s-85f": GraceParams(
        name="ulx3s-85f",
        array=ArrayParams(rows=16, cols=8),
        # 15 slots: the accumulator FIFO (16 deep) fits distributed RAM, not 15 DP16KD;
        # 4,096 partial sums (8 DP16KD): one output group of fomm-256's widest split
        # layer (1024 → 256 at 16², 1,152 weight words a group) in one tile
        buffers=BufferParams(
            input_depth=8192,
            weight_depth=1024,
            param_depth=1024,
            accumulator_slots=15,
            partial_depth=4096,
        ),
        # 4 banks × 8,192 words: 16 DP16KD, 8 planes of 64² (docs/warp_engine.md)
        warp=WarpParams(depth=8192),
        # 1 lane: a fomm-256 frame's 6.3 M affine elements take 1.8 % of the
        # conv cycles, every element-wise op 1.9 % (docs/activation_engine.md)
        act=ActParams(param_depth=1024),
        clock_hz=BOARD_SPECS["ulx3s-85f"].clock_hz,
        board="ulx3s-85f",
    ),
    # iCE40 UP5K (defs/boards.py). 2×2 MACs + the address multiply,
    # the residual gain and the requantizer's two slices = all 8 DSPs.
    "icebreaker": GraceParams(
        name="icebreaker",
        array=ArrayParams(rows=2, cols=2),
        # 512 partial sums (4 EBR): a 16² output group of tiny's 7 × 7 heads (1,274
        # weight words a group) in one tile
        buffers=BufferParams(
            input_depth=1024,
            weight_depth=512,
            param_depth=256,
            accumulator_slots=16,
            partial_depth=512,
        ),
        # 4 banks × 512 words: 4 EBR, 8 planes of 16²
        warp=WarpParams(depth=512),
        clock_hz=BOARD_SPECS["icebreaker"].clock_hz,
        board="icebreaker",
    ),
}


def preset(name: str) -> GraceParams:
    """A named preset, or a clear error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ParamsError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def load(spec: str) -> GraceParams:
    """A preset name, or a path to a JSON file written by `grace params`."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if spec.endswith(".json"):
        try:
            text = path.read_text()
        except OSError as exc:
            raise ParamsError(f"cannot read parameters file {spec}: {exc.strerror}") from None
        return GraceParams.from_json(text)
    return preset(spec)
