"""The key frame's anti-alias blur as a dense stride-1 conv on a polyphase layout (sim/blur.py).

The blur (`QuantizedDecoder.antialias`: depthwise 13 × 13, stride 4, padding 6
for both presets) runs on the conv engine unchanged: each colour's 16 phase
planes through a 3 × 3 kernel. Every check is `assert_array_equal` against
`run_conv(q.antialias, image)`, the call `encode_source_int` makes:
- NumPy: every tile through L2's dense conv (`sim.conv.reference`, i.e.
  `conv2d_int`), assembled, for tiny's real blur and fomm-256's, other scales,
  hand-made asymmetric kernels and 300 random ones, on random and extreme
  frames of many sizes, on every preset's buffers;
- the engine: tiny's real blur on its real 64² key frame in the Amaranth
  simulator (three tiles, one under back-pressure, the others in exactly the
  cycle model's cycles), tiles banded by rows and columns, uneven padding, and
  two small blurs back to back on Verilator;
- the cycles `grace bench` can print (`blur_cost`, `blur_cycles`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from defs.params import ArrayParams, BufferParams, GraceParams, ModelParams, preset
from model.codec import CodecSettings
from model.conv_shape import ConvShape
from model.fixed_decoder import QConv, quantize_image, run_conv
from model.synthetic import ClipSpec, synthesize_clip
from rtl.conv_cycles import tile_cycles
from sim.blur import (
    BlurLayoutError,
    antialias_qconv,
    assemble,
    blur_case,
    blur_cases,
    blur_cost,
    blur_cycles,
    blur_on_engine_l2,
    from_engine_order,
    phase_planes,
    plan_blur,
    polyphase,
)
from sim.conv import program, reference, simulate_amaranth, simulate_cocotb

TINY = preset("tiny")
FOMM = preset("fomm-256")
PRESET_NAMES = ("tiny", "ulx3s-85f", "icebreaker", "fomm-256")
#: The conv engine tests' array (4 × 3): its Verilator build is shared with them.
COCOTB_PARAMS = GraceParams(name="conv-test", array=ArrayParams(rows=4, cols=3))


@pytest.fixture(scope="module")
def tiny_blur() -> QConv:
    """The committed tiny decoder's real blur, quantized as `grace` quantizes it (the
    calibration on one torch thread: two spin for seconds on a loaded machine)."""
    import torch

    from grace.codec_run import load_models
    from model.int_backend import quantize_decoder

    kp_detector, generator = load_models(TINY, None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        blur = quantize_decoder(kp_detector, generator, TINY).antialias
    finally:
        torch.set_num_threads(threads)
    assert blur is not None
    return blur


def fomm_blur() -> QConv:
    m = FOMM.model
    blur = antialias_qconv(m.num_channels, m.dense_scale_factor, FOMM.numeric)
    assert blur is not None
    return blur


def frame(kind: str, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A (3, H, W) int8 key frame: random, constant, a ±checkerboard, or real pixels."""
    h, w = size
    rng = np.random.default_rng([seed, h, w])
    if kind == "random":
        x = rng.integers(-128, 128, (3, h, w))
        x.reshape(-1)[:2] = (-128, 127)
        return x
    if kind in ("0", "127", "-128"):
        return np.full((3, h, w), int(kind))
    if kind == "checker":
        board = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2
        return np.where(board, 127, -128)[None].repeat(3, 0)
    if kind == "pixels":  # quantize_image's range, 0..127
        return quantize_image(rng.integers(0, 256, (h, w, 3)))
    raise ValueError(kind)


KINDS = ("random", "0", "127", "-128", "checker", "pixels")
SIZES = [(64, 64), (13, 11), (67, 70), (5, 9), (1, 1), (20, 3), (33, 64)]


def assert_blur_exact(q: QConv, x: np.ndarray, params: GraceParams, **plan_args) -> None:
    plan = plan_blur(q, x.shape[1], x.shape[2], params, **plan_args)
    got = assemble(plan, [reference(case, params) for case in blur_cases(q, x, plan)])
    np.testing.assert_array_equal(got, run_conv(q, x, params.numeric))


# -- the blurs the presets use -----------------------------------------------


def test_both_presets_blur_at_stride_4_with_a_13x13_kernel(tiny_blur: QConv) -> None:
    """tiny's decoder has the blur; fomm-256's is the same kernel (scale 0.25), and the
    helper quantizes it exactly as `build_quantized` does (a fomm-256 generator's,
    whose blur does not depend on the calibrated scales)."""
    from model.agc import build_generator
    from model.ptq import build_quantized

    m = TINY.model
    ours = antialias_qconv(m.num_channels, m.dense_scale_factor, TINY.numeric)
    generator = build_generator(FOMM.model)
    fomm = build_quantized(generator, defaultdict(lambda: 0.05), FOMM.numeric, 10).antialias
    for real, built in ((tiny_blur, ours), (fomm, fomm_blur())):
        assert real is not None and built is not None
        shape = (real.stride, real.padding, real.groups, real.weight.shape)
        assert shape == (4, 6, 3, (3, 1, 13, 13))
        for name in ("weight", "bias", "multiplier", "shift"):
            np.testing.assert_array_equal(getattr(real, name), getattr(built, name))
    assert TINY.model.dense_scale_factor == FOMM.model.dense_scale_factor == 0.25


def test_the_quantized_kernel_keeps_9x9_taps(tiny_blur: QConv) -> None:
    kernel = tiny_blur.weight[0, 0]
    assert np.count_nonzero(kernel) == 69 and kernel.sum() == 1779
    geo = polyphase(tiny_blur, 64, 64)
    assert (geo.rows.start, geo.rows.taps, geo.cols.start, geo.cols.taps) == (2, 3, 2, 3)
    full = polyphase(tiny_blur, 64, 64, support="full")
    assert (full.rows.start, full.rows.taps) == (0, 4)


def test_white_blurs_to_126(tiny_blur: QConv) -> None:
    """DC gain 1,779 · 37,379 / 2^26 = 0.991: a white frame (127) blurs to 126 away
    from the zero-padded border, on the engine's layout as in L2."""
    white = frame("127", (64, 64))
    y = blur_on_engine_l2(tiny_blur, white, TINY)
    np.testing.assert_array_equal(y, run_conv(tiny_blur, white, TINY.numeric))
    assert (y[:, 2:-2, 2:-2] == 126).all() and y.max() == 126
    assert y[:, 0, 0].tolist() == [51] * 3  # a corner sees a quarter of the kernel, fewer taps


# -- NumPy: the layout is the blur -------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_tiny_blur_on_every_preset_and_frame(tiny_blur: QConv, size: tuple[int, int]) -> None:
    for name in PRESET_NAMES:
        for kind in KINDS:
            assert_blur_exact(tiny_blur, frame(kind, size), preset(name))


@pytest.mark.parametrize("support", ["nonzero", "full"])
@pytest.mark.parametrize("kind", KINDS)
def test_fomm_blur_on_its_256_key_frame(kind: str, support: str) -> None:
    assert_blur_exact(fomm_blur(), frame(kind, (256, 256)), FOMM, support=support)


@pytest.mark.parametrize("colours", [1, 2, 3])
def test_every_colour_split_and_banding(tiny_blur: QConv, colours: int) -> None:
    """Imposed splits: 1, 2 or 3 colours per tile (2 output groups on a 2-row array),
    in row and column bands small buffers force."""
    small = GraceParams(array=ArrayParams(rows=2, cols=3), buffers=BufferParams(input_depth=400))
    for size in ((64, 64), (45, 29), (256, 256)):
        x = frame("random", size, seed=colours)
        assert_blur_exact(tiny_blur, x, small, colours_per_tile=colours)
        assert_blur_exact(tiny_blur, x, small, colours_per_tile=colours, support="full")
    plan = plan_blur(tiny_blur, 256, 256, small, colours_per_tile=colours)
    assert len({t.rows for t in plan.tiles}) > 1 and len({t.cols for t in plan.tiles}) > 1


@pytest.mark.parametrize(
    "scale, stride, kernel",
    [(0.5, 2, 5), (1 / 3, 3, 9), (0.125, 8, 29), (1 / 6, 6, 21)],
)
def test_other_scales(scale: float, stride: int, kernel: int) -> None:
    """FOMM's blur at other scales (strides 2, 3, 6, 8), quantized like the model's."""
    q = antialias_qconv(3, scale, TINY.numeric)
    assert q is not None and (q.stride, q.weight.shape[-1]) == (stride, kernel)
    for size in ((64, 64), (37, 50)):
        for kind in ("random", "127", "checker"):
            for name in ("tiny", "ulx3s-85f"):
                assert_blur_exact(q, frame(kind, size), preset(name))
                assert_blur_exact(q, frame(kind, size), preset(name), support="full")


def asymmetric_blur(
    seed: int, *, stride: int = 3, padding: int = 2, rows: slice = slice(1, 6)
) -> QConv:
    """A 7 × 7 depthwise kernel whose taps lie off centre (rows 1..5 by default,
    columns 3..6), different per channel, ReLU, per-channel constants."""
    rng = np.random.default_rng(seed)
    weight = np.zeros((3, 1, 7, 7), dtype=np.int64)
    weight[:, 0, rows, 3:7] = rng.integers(-127, 128, (3, rows.stop - rows.start, 4))
    return QConv(
        weight=weight,
        bias=rng.integers(-5000, 5000, 3),
        multiplier=rng.integers(1 << 15, 1 << 16, 3),
        shift=rng.integers(20, 24, 3),
        padding=padding,
        stride=stride,
        groups=3,
        relu=True,
    )


def uneven_padding_blur() -> tuple[QConv, np.ndarray]:
    """Stride 2, padding 3, taps in rows 0..6 and columns 3..6 of a 13 × 15 frame: the
    engine pads 1 row above and below, no column (`pad_top` ≠ `pad_left`)."""
    return asymmetric_blur(4, stride=2, padding=3, rows=slice(0, 7)), frame("random", (13, 15))


def test_an_asymmetric_per_channel_kernel() -> None:
    q = asymmetric_blur(5)
    geo = polyphase(q, 30, 30)
    assert (geo.rows.start, geo.rows.taps, geo.cols.start, geo.cols.taps) == (1, 2, 3, 2)
    for size in ((30, 30), (17, 23), (4, 4), (64, 9)):
        for kind in KINDS:
            for name in PRESET_NAMES:
                assert_blur_exact(q, frame(kind, size), preset(name))


def random_blur(rng: np.random.Generator) -> QConv:
    """A random depthwise blur: kernel 1..15, stride 1..6, padding 0..k, taps zeroed in
    a random border (so the non-zero window moves), per-channel constants."""
    k, stride = int(rng.integers(1, 16)), int(rng.integers(1, 7))
    weight = rng.integers(-127, 128, (3, 1, k, k))
    top, left = rng.integers(0, k, 2)
    weight[:, :, :top], weight[:, :, :, :left] = 0, 0
    weight[:, :, int(rng.integers(top, k)) + 1 :] = 0
    return QConv(
        weight=weight,
        bias=rng.integers(-3000, 3000, 3),
        multiplier=rng.integers(1 << 15, 1 << 16, 3),
        shift=rng.integers(18, 24, 3),
        padding=int(rng.integers(0, k + 1)),
        stride=stride,
        groups=3,
        relu=bool(rng.integers(0, 2)),
    )


def test_random_blurs_sweep() -> None:
    """300 random blurs on random frame sizes, on random arrays whose input buffers
    often force bands of rows and columns."""
    rng = np.random.default_rng(2024)
    checked = refusals = 0
    while checked < 300:
        q = random_blur(rng)
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        if min(h, w) + 2 * q.padding < q.weight.shape[-1]:
            continue
        array = ArrayParams(rows=int(rng.integers(1, 5)), cols=int(rng.integers(1, 9)))
        depth = int(rng.choice([64, 200, 1024]))
        params = GraceParams(array=array, buffers=BufferParams(input_depth=depth))
        try:
            assert_blur_exact(q, frame("random", (h, w), seed=checked), params)
        except BlurLayoutError as refusal:  # only for the reasons the layout states
            assert any(
                r in str(refusal) for r in ("input buffer", "weight buffer", "polyphase taps")
            )
            refusals += 1
            continue
        checked += 1
    assert refusals < 100


def test_an_all_zero_kernel_gives_the_bias() -> None:
    q = asymmetric_blur(1)
    q.weight[:] = 0
    assert polyphase(q, 20, 20).rows.taps == 1
    assert_blur_exact(q, frame("random", (20, 20)), TINY)


# -- refusals ----------------------------------------------------------------


def refused(**changes: object) -> QConv:
    q = asymmetric_blur(2)
    for name, value in changes.items():
        setattr(q, name, value)
    return q


@pytest.mark.parametrize(
    "q, message",
    [
        (refused(groups=1), "a depthwise conv is needed"),
        (refused(weight=np.ones((3, 2, 7, 7), np.int64)), "a depthwise conv is needed"),
        (refused(weight=np.ones((3, 1, 7, 5), np.int64)), "not square"),
        (refused(upsample=True), "upsampling, pooling or a residual"),
        (refused(pool=True), "upsampling, pooling or a residual"),
        (refused(residual_gain=np.ones(3, np.int64)), "upsampling, pooling or a residual"),
        (refused(stride=0), "stride 0"),
        (
            refused(weight=np.ones((3, 1, 31, 31), np.int64), stride=4, padding=15),
            "need 8 polyphase taps",
        ),
        (refused(padding=0), "leaves nothing"),
    ],
)
def test_what_the_layout_refuses(q: QConv, message: str) -> None:
    with pytest.raises(BlurLayoutError, match=message):
        plan_blur(q, 5, 5, TINY)


@pytest.mark.parametrize(
    "buffers, array, message",
    [
        (BufferParams(weight_depth=16), ArrayParams(), "take 36 words; the weight buffer holds 16"),
        (BufferParams(input_depth=16), ArrayParams(), "reads 36 input words; the input buffer"),
        (BufferParams(), ArrayParams(cols=1), "1024 channel groups of 1"),
    ],
)
def test_what_a_preset_cannot_take(buffers: BufferParams, array: ArrayParams, message: str) -> None:
    params = GraceParams(name="small", array=array, buffers=buffers)
    q = fomm_blur()  # one colour: 16 phase planes (4 groups of 4 lanes) × 3 × 3 taps
    if array.cols == 1:  # a stride-32 blur: 1,024 phase planes per colour
        q = replace(q, stride=32, padding=0, weight=np.ones((3, 1, 1, 1), np.int64))
    with pytest.raises(BlurLayoutError, match=f"blur on small: .*{message}"):
        plan_blur(q, 64, 64, params)


def test_bad_arguments_are_refused(tiny_blur: QConv) -> None:
    with pytest.raises(BlurLayoutError, match="support 'half'"):
        plan_blur(tiny_blur, 64, 64, TINY, support="half")  # type: ignore[arg-type]
    with pytest.raises(BlurLayoutError, match="4 colours per tile of 3"):
        plan_blur(tiny_blur, 64, 64, TINY, colours_per_tile=4)
    geo = polyphase(tiny_blur, 64, 64)
    with pytest.raises(BlurLayoutError, match=r"the frame is \(3, 32, 64\)"):
        phase_planes(np.zeros((3, 32, 64)), geo, range(2), range(2))
    plan = plan_blur(tiny_blur, 64, 64, TINY)
    with pytest.raises(ValueError, match="2 outputs for 3 tiles"):
        assemble(plan, [np.zeros(1)] * 2)
    with pytest.raises(ValueError, match="5 outputs for a tile of 256"):
        from_engine_order(np.zeros(5), plan.tiles[0].shape, TINY.array.rows)


# -- the conv engine, in simulation ------------------------------------------


def key_frame() -> np.ndarray:
    """tiny's real key frame size (64²), real pixels: a synthetic face, quantized."""
    clip = synthesize_clip(ClipSpec(seed=7, num_frames=1, size=TINY.model.image_size, face=90))
    return quantize_image(clip[0])


def test_tiny_blur_on_the_engine(tiny_blur: QConv) -> None:
    """tiny's whole key frame through the conv engine's RTL: one tile per colour (each
    fills the 1,024-word input buffer), the first under back-pressure with the
    stream-rule checker, the others without, each in exactly `tile_cycles`."""
    x = key_frame()
    plan = plan_blur(tiny_blur, *x.shape[1:], TINY)
    assert [(t.colours, t.shape) for t in plan.tiles] == [
        (range(c, c + 1), ConvShape(16, 1, 16, 16, 3, 3, padding=1, padding_w=1)) for c in range(3)
    ]
    outputs = []
    for k, (tile, case) in enumerate(zip(plan.tiles, blur_cases(tiny_blur, x, plan), strict=True)):
        prog = program(case, TINY, tag=k)
        assert len(prog.input_writes) == TINY.buffers.input_depth
        quiet = k > 0
        run = simulate_amaranth([prog], TINY, ready_prob=1.0 if quiet else 0.7, seed=k)
        if quiet:
            assert run.cycles == tile.cycles
        outputs.append(from_engine_order(run.outputs, tile.shape, TINY.array.rows))
    np.testing.assert_array_equal(assemble(plan, outputs), run_conv(tiny_blur, x, TINY.numeric))


def test_banded_tiles_on_the_engine() -> None:
    """A stride-3 asymmetric ReLU blur on a 3 × 2 array whose 100-word input buffer
    forces row and column bands and two output groups: every tile through the RTL,
    under back-pressure, assembled, equals L2's blur."""
    params = GraceParams(array=ArrayParams(rows=2, cols=3), buffers=BufferParams(input_depth=100))
    q, x = asymmetric_blur(9), frame("random", (13, 17), seed=9)
    plan = plan_blur(q, *x.shape[1:], params, colours_per_tile=3)
    assert len(plan.tiles) > 2 and len({t.cols for t in plan.tiles}) > 1
    outputs = []
    for k, tile in enumerate(plan.tiles):
        prog = program(blur_case(q, x, plan, tile), params, tag=k)
        run = simulate_amaranth([prog], params, ready_prob=0.6, seed=k)
        outputs.append(from_engine_order(run.outputs, tile.shape, params.array.rows))
    np.testing.assert_array_equal(assemble(plan, outputs), run_conv(q, x, params.numeric))


def test_uneven_padding_on_the_engine() -> None:
    q, x = uneven_padding_blur()
    plan = plan_blur(q, *x.shape[1:], COCOTB_PARAMS)
    (tile,) = plan.tiles
    assert (tile.shape.padding, tile.shape.padding_w, tile.shape.out_channels) == (1, 0, 3)
    prog = program(blur_case(q, x, plan, tile), COCOTB_PARAMS)
    run = simulate_amaranth([prog], COCOTB_PARAMS, ready_prob=0.6, seed=4)
    got = from_engine_order(run.outputs, tile.shape, COCOTB_PARAMS.array.rows)
    np.testing.assert_array_equal(assemble(plan, [got]), run_conv(q, x, TINY.numeric))


def test_small_blurs_on_verilator(tiny_blur: QConv, build_root) -> None:
    """tiny's blur on a 13 × 11 frame (all colours in one tile) and the uneven-padding
    blur, resident side by side and issued back to back, on the conv engine's Verilog
    (the engine tests' 4 × 3 array, so the build is shared), under back-pressure; the
    first alone in the model's cycles when nothing stalls."""
    build_dir = build_root / "sim" / "conv" / COCOTB_PARAMS.key()
    blurs = [(tiny_blur, frame("random", (13, 11), seed=3)), uneven_padding_blur()]
    plans = [plan_blur(q, *x.shape[1:], COCOTB_PARAMS) for q, x in blurs]
    assert [len(plan.tiles) for plan in plans] == [1, 1]
    first = program(blur_case(*blurs[0], plans[0], plans[0].tiles[0]), COCOTB_PARAMS, tag=5)
    second = program(
        blur_case(*blurs[1], plans[1], plans[1].tiles[0]), COCOTB_PARAMS, tag=6,
        in_base=len(first.input_writes), weight_base=len(first.weight_writes), param_base=3,
    )  # fmt: skip
    run, result = simulate_cocotb(
        [first, second], COCOTB_PARAMS, simulator="verilator", build_dir=build_dir,
        ready_prob=0.6, seed=2,
    )  # fmt: skip
    result.check()
    assert run.tokens == [5, 6]
    split = len(first.expected)
    for (q, x), plan, values in zip(
        blurs, plans, (run.outputs[:split], run.outputs[split:]), strict=True
    ):
        got = from_engine_order(values, plan.tiles[0].shape, COCOTB_PARAMS.array.rows)
        np.testing.assert_array_equal(assemble(plan, [got]), run_conv(q, x, TINY.numeric))
    alone, result = simulate_cocotb([first], COCOTB_PARAMS, simulator="verilator",
                                    build_dir=build_dir)  # fmt: skip
    result.check()
    assert alone.cycles == plans[0].tiles[0].cycles


# -- cycles --------------------------------------------------------------------


def test_blur_cycles_are_the_cycle_model_of_the_real_shape(tiny_blur: QConv) -> None:
    """tiny: three 16 → 1 3 × 3 tiles on 16 × 16 phase planes; fomm-256: 48 phase
    planes of 64 × 64 split 32 + 16 over its 16,384-word input buffer."""
    tile = ConvShape(16, 1, 16, 16, 3, 3, padding=1, padding_w=1)
    assert blur_cycles(TINY) == 3 * tile_cycles(TINY, tile).cycles == 27_786
    assert blur_cycles(TINY) == plan_blur(tiny_blur, 64, 64, TINY).cycles
    fomm = [ConvShape(32, 2, 64, 64, 3, 3, 1, 1, 1), ConvShape(16, 1, 64, 64, 3, 3, 1, 1, 1)]
    assert blur_cycles(FOMM) == sum(tile_cycles(FOMM, s).cycles for s in fomm) == 221_279
    cost = blur_cost(FOMM)
    assert cost.gop_size == CodecSettings().gop_size == 32
    assert cost.frame_cycles == cost.gop_cycles / 32 and cost.tiles == 2
    print("\n" + "\n".join(blur_cost(preset(name)).describe() for name in PRESET_NAMES))


def test_the_design_study_figures() -> None:
    """docs/activation_engine.md §2.1: the whole fomm-256 blur as one 48 → 3 tile on
    the ULX3S engine, 3 × 3 taps (the non-zero window) and 4 × 4 (the full kernel)."""
    ulx3s = preset("ulx3s-85f")
    big = ulx3s.replace(
        model=FOMM.model, buffers=replace(ulx3s.buffers, input_depth=32768, weight_depth=2048)
    )
    q = fomm_blur()
    # §2.1 says 393,262 for the full kernel; the layout that yields exactly the 64 × 64
    # outputs (65 × 65 phase planes, padding 1) costs 393,265
    for support, cycles in (("nonzero", 221_233), ("full", 393_265)):
        plan = plan_blur(q, 256, 256, big, support=support, colours_per_tile=3)
        assert len(plan.tiles) == 1 and plan.cycles == cycles
    real = ulx3s.replace(model=FOMM.model)
    assert blur_cost(real).tiles == 3  # 8,192 input words: one colour's 2 × 64² a tile


def test_no_blur_at_scale_1() -> None:
    params = TINY.replace(model=ModelParams(dense_scale_factor=1.0))
    assert blur_cycles(params) == 0
    assert antialias_qconv(3, 1.0, TINY.numeric) is None
