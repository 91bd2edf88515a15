"""L1: the fused, fake-quantized PyTorch decoder, built from a `QuantizedDecoder`.

Why a second implementation: L2 (`model/fixed*`, NumPy integers) is the contract the
hardware copies; L1 writes the same rules again, independently, as fake quantization in
PyTorch, so that (a) the two can be compared layer by layer (`tests/test_fakequant.py`)
and (b) the decoder exists in a differentiable form for quantization-aware training.

Every activation is an `FQ`: a float64 tensor whose value is `scale × integer` (scale per
tensor, or per channel after a concatenation). Convolutions run in real units with
`F.conv2d` on fake-quantized weights; every rounding is the hardware's (round half up,
saturate, ReLU, multiplier·2^-shift), written here in torch. Nothing from L2 is called:
only its data (integer weights, requantize constants, lookup tables) is reused.

Exactness: float64 holds every integer below 2^53 exactly, and every integer quantity on
this path is far below that (docs/numerics.md, "L1"). Where float error can creep in (a
convolution's real-unit sum, a quotient), the result is snapped back to its integer grid
and the distance to that grid is checked (< 1/4), so an inexact step fails loudly.

Gradients: rounding uses the straight-through estimator (`x + (round(x) - x).detach()`);
tables, the softmax and the warp pass the gradient of their float counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.blocks import ALIGN_CORNERS, make_coordinate_grid
from model.fixed_decoder import IMAGE_SCALE, PIXEL_FRAC_BITS, QAffine, QConv, QuantizedDecoder
from model.fixed_motion import (
    COORD_FRAC_BITS,
    DIST_FRAC_BITS,
    HEAT_FRAC_BITS,
    JAC_FRAC_BITS,
    JAC_IN_FRAC_BITS,
    JAC_LIMIT_BITS,
    KP_FRAC_BITS,
    MASK_FRAC_BITS,
)
from model.fixed_ops import exp_lut

if TYPE_CHECKING:
    from defs.params import NumericParams

DTYPE = torch.float64
#: Softmax widths (the defaults `decode_int` uses): exp table fraction bits, reciprocal bits.
EXP_FRAC_BITS = 15
RECIP_BITS = 16
#: Occlusion and pixel tables are unsigned 8-bit.
OCC_FRAC_BITS = 8
#: Keypoint / Jacobian integers beyond this magnitude are refused (float64 exactness bound).
STREAM_LIMIT = 1 << 16
#: Largest allowed distance of a snapped value from its integer grid.
SNAP_TOLERANCE = 0.25


class FakeQuantError(ValueError):
    """An input lies outside the range where L1 is exact (one line)."""


# --------------------------------------------------------------------------- rounding


def round_half_up(x: Tensor) -> Tensor:
    """floor(x) + [x - floor(x) ≥ 1/2]: exact in float64 (unlike floor(x + 0.5))."""
    fl = torch.floor(x)
    return fl + (x - fl >= 0.5).to(x.dtype)


def quantize_ste(x: Tensor) -> Tensor:
    """round_half_up(x) forward, identity backward (straight-through estimator)."""
    return x + (round_half_up(x) - x).detach()


def replace_ste(differentiable: Tensor, exact: Tensor) -> Tensor:
    """The exact (integer-rule) value forward, the float function's gradient backward."""
    return differentiable + (exact - differentiable).detach()


def snap(x: Tensor, what: str) -> Tensor:
    """A value that is an integer up to float error → that integer (STE).

    Raises when the error reaches SNAP_TOLERANCE: the float64 path would no longer be
    exact there, and silently rounding would hide it.
    """
    q = round_half_up(x)
    with torch.no_grad():
        err = float((x - q).abs().max()) if x.numel() else 0.0
    if err >= SNAP_TOLERANCE:
        raise FakeQuantError(f"{what}: float64 value {err:.3g} away from its integer grid")
    return x + (q - x).detach()


def _int_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def requantize_fq(
    acc: Tensor, multiplier: Tensor, shift: Tensor, relu: bool, act_bits: int
) -> Tensor:
    """The output unit on integer-valued floats: saturate(round_half_up(acc·M·2^-s)), ReLU.

    acc already includes the bias. acc·M stays below 2^(sum_bits + mult_bits) ≤ 2^49, so
    the product, the power-of-two scaling and the rounding are exact in float64.
    """
    y = quantize_ste(acc * multiplier * torch.exp2(-shift))
    lo, hi = _int_range(act_bits)
    y = torch.clamp(y, lo, hi)
    return torch.clamp(y, min=0) if relu else y


# --------------------------------------------------------------------------- tensors


@dataclass
class FQ:
    """A fake-quantized tensor: `value` = `scale` × integer (scale broadcasts to value)."""

    value: Tensor
    scale: Tensor

    def ints(self) -> Tensor:
        """The integers as float64 (differentiable: STE through the snap)."""
        return snap(self.value / self.scale, "integer view")


def int_view(x: FQ) -> npt.NDArray[np.int64]:
    """round(value / scale) as int64: what the tests compare with L2's integers."""
    with torch.no_grad():
        return torch.round(x.value / x.scale).to(torch.int64).numpy()


def int_views(record: dict[str, FQ]) -> dict[str, npt.NDArray[np.int64]]:
    return {name: int_view(t) for name, t in record.items()}


def _const(v: float | npt.ArrayLike) -> Tensor:
    return torch.from_numpy(np.array(v, dtype=np.float64))


def _channel_scale(scales: npt.ArrayLike) -> Tensor:
    return _const(scales).reshape(-1, 1, 1)


def fq_from_ints(q: Tensor, scale: float | Tensor) -> FQ:
    s = scale if isinstance(scale, Tensor) else _const(scale)
    return FQ(q * s, s)


def cat_channels(parts: list[FQ]) -> FQ:
    """Concatenate (C, H, W) tensors along channels; scales become per channel."""
    scales = [p.scale.reshape(-1, 1, 1).expand(p.value.shape[0], 1, 1) for p in parts]
    return FQ(torch.cat([p.value for p in parts]), torch.cat(scales))


def heat_k(heat: FQ, k: int) -> FQ:
    """Channel k of the heatmaps as a one-channel tensor (for the hourglass input)."""
    return FQ(heat.value[k : k + 1], heat.scale)


# --------------------------------------------------------------------------- layers


class FQConv(nn.Module):
    """A fused conv (BN folded, bias, ReLU, residual, pool / upsample) in fake quantization.

    Real units: the weight is w_q·s_acc[o]/s_in[c] with s_acc[o] = s_out·M[o]/2^shift[o],
    the value of one accumulator unit as the output unit applies it. The conv's real sum
    divided by s_acc is then the integer accumulator, up to float error, which `snap`
    removes (bounded in docs/numerics.md, "L1").
    """

    def __init__(
        self, q: QConv, in_scale: npt.ArrayLike, out_scale: float, numeric: NumericParams
    ) -> None:
        super().__init__()
        self.q = q
        self.numeric = numeric
        mult = np.asarray(q.multiplier, dtype=np.float64)
        shift = np.asarray(q.shift, dtype=np.float64)
        acc_scale = np.where(mult > 0, out_scale * mult * np.exp2(-shift), out_scale)
        in_scale = np.broadcast_to(np.asarray(in_scale, dtype=np.float64), (q.weight.shape[1],))
        self.register_buffer("in_scale", _const(in_scale).reshape(1, -1, 1, 1))
        self.register_buffer("acc_scale", _const(acc_scale).reshape(-1, 1, 1))
        self.register_buffer("multiplier", _const(mult).reshape(-1, 1, 1))
        self.register_buffer("shift", _const(shift).reshape(-1, 1, 1))
        gain = 0 if q.residual_gain is None else q.residual_gain
        self.register_buffer("residual_gain", _const(gain).reshape(-1, 1, 1))
        self.out_scale = float(out_scale)
        w_acc = self.acc_scale.reshape(-1, 1, 1, 1)
        self.weight = nn.Parameter(_const(q.weight) * w_acc / self.in_scale)
        self.bias = nn.Parameter(_const(q.bias).reshape(-1, 1, 1) * self.acc_scale)

    def quantized_weight(self) -> Tensor:
        """Integer weights (STE), per output channel, saturated to weight_bits."""
        w_acc = self.acc_scale.reshape(-1, 1, 1, 1)
        lo, hi = _int_range(self.numeric.weight_bits)
        return torch.clamp(quantize_ste(self.weight * self.in_scale / w_acc), lo, hi)

    def _check_input_scale(self, x: FQ) -> None:
        """The input's scales must be those the real-unit weights were built for."""
        channels = x.value.shape[0]
        got = x.scale.reshape(-1).expand(channels) if x.scale.numel() == 1 else x.scale
        want = self.in_scale.reshape(-1).repeat(self.q.groups)
        if got.numel() != want.numel() or not torch.allclose(
            got.reshape(-1), want, rtol=1e-12, atol=0
        ):
            raise FakeQuantError("conv input scales differ from those the layer was built for")

    def forward(self, x: FQ, residual: FQ | None = None) -> FQ:
        q = self.q
        w_acc = self.acc_scale.reshape(-1, 1, 1, 1)
        weight = self.quantized_weight() * w_acc / self.in_scale  # fake-quantized, real units
        v = x.value[None]
        if q.upsample:
            v = F.interpolate(v, scale_factor=2, mode="nearest")
        self._check_input_scale(x)
        real = F.conv2d(v, weight, stride=q.stride, padding=q.padding, groups=q.groups)[0]
        acc = snap(real / self.acc_scale, "conv accumulator")
        if residual is not None:
            acc = acc + residual.ints() * self.residual_gain
        lo, hi = _int_range(self.numeric.acc_bits)
        with torch.no_grad():
            if acc.numel() and (acc.min() < lo or acc.max() > hi):
                raise FakeQuantError(f"conv accumulator leaves int{self.numeric.acc_bits}")
        bias = quantize_ste(self.bias / self.acc_scale)
        y = requantize_fq(acc + bias, self.multiplier, self.shift, q.relu, self.numeric.act_bits)
        if q.pool:  # 2×2 mean of integers is exact in float; then round half up
            y = quantize_ste(F.avg_pool2d(y[None], 2)[0])
        return fq_from_ints(y, self.out_scale)


class FQAffine(nn.Module):
    """A ResBlock's BN + ReLU: y = relu(a·x + b) with a = ±s_acc/s_in, requantized.

    One accumulator unit is worth s_acc = s_out·M/2^shift, and the accumulator is
    ±x + bias: the output unit alone.
    """

    def __init__(
        self, q: QAffine, in_scale: float, out_scale: float, numeric: NumericParams
    ) -> None:
        super().__init__()
        self.numeric = numeric
        mult = np.asarray(q.multiplier, dtype=np.float64)
        shift = np.asarray(q.shift, dtype=np.float64)
        acc_scale = np.where(mult > 0, out_scale * mult * np.exp2(-shift), out_scale)
        sign = np.where(np.asarray(q.negate, dtype=bool), -1.0, 1.0)
        self.register_buffer("acc_scale", _channel_scale(acc_scale))
        self.register_buffer("multiplier", _channel_scale(mult))
        self.register_buffer("shift", _channel_scale(shift))
        self.weight = nn.Parameter(_channel_scale(sign * acc_scale / in_scale))
        self.bias = nn.Parameter(_channel_scale(np.asarray(q.bias) * acc_scale))
        self.out_scale = float(out_scale)

    def forward(self, x: FQ) -> FQ:
        acc = snap((self.weight * x.value + self.bias) / self.acc_scale, "affine accumulator")
        y = requantize_fq(acc, self.multiplier, self.shift, True, self.numeric.act_bits)
        return fq_from_ints(y, self.out_scale)


# --------------------------------------------------------------------------- motion


def coordinate_grid(size: int) -> Tensor:
    """(size, size, 2) grid of (x, y) on the 2^-14 coordinate grid (L0's grid, rounded).

    L0's float grid 2j/(size-1) - 1 is never within float error of a rounding tie
    (its distance to one is at least 1/(2(size-1)) LSB), so rounding it is exact.
    """
    g = make_coordinate_grid(size, size, DTYPE)
    return round_half_up(g * 2.0**COORD_FRAC_BITS) * 2.0**-COORD_FRAC_BITS


def _stream_values(q: npt.ArrayLike, frac_bits: int, what: str) -> Tensor:
    a = np.asarray(q, dtype=np.int64)
    if a.size and np.abs(a).max() > STREAM_LIMIT:
        raise FakeQuantError(f"{what} beyond ±{STREAM_LIMIT} (L1's float64 exactness bound)")
    return _const(a) * 2.0**-frac_bits


def gaussian_heatmaps(kp_d: Tensor, kp_s: Tensor, size: int, table: Tensor) -> FQ:
    """(K+1, S, S): zero background, then saturate(G(kp_d) − G(kp_s)), scale 2^-7.

    G is the Gaussian table indexed by the squared distance rounded to 2^-14; the squared
    distance of two 2^-14-grid points (|kp| ≤ 256) is below 2^47 LSB: exact in float64.
    """
    grid = coordinate_grid(size)

    def gauss(kp: Tensor) -> Tensor:
        d = grid[None] - kp[:, None, None, :]
        index = round_half_up((d * d).sum(-1) * 2.0**DIST_FRAC_BITS)
        inside = index < table.numel()
        looked = table[index.clamp(max=table.numel() - 1).to(torch.int64)]
        return torch.where(inside, looked, torch.zeros_like(looked))

    lo, hi = _int_range(8)
    diff = torch.clamp(gauss(kp_d) - gauss(kp_s), lo, hi)
    heat = torch.cat([torch.zeros_like(diff[:1]), diff])
    return fq_from_ints(heat, 2.0**-HEAT_FRAC_BITS)


def first_order_jacobians(jac_s: Tensor, jac_d: Tensor) -> Tensor:
    """(K, 2, 2) J = J_s·J_d⁻¹ = J_s·adj(J_d)/det(J_d), rounded half up to 2^-14.

    Inputs are 2^-6-grid values of at most 2^10 in magnitude, so J_s·adj(J_d) and det(J_d) are
    exact; the correctly rounded float quotient is then exact at a tie and otherwise
    farther from one than its error. Saturates at ±16; det = 0 gives the identity.
    """
    a, b, c, d = jac_d[:, 0, 0], jac_d[:, 0, 1], jac_d[:, 1, 0], jac_d[:, 1, 1]
    det = a * d - b * c
    adj = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    num = jac_s @ adj
    singular = (det == 0)[:, None, None]
    safe = torch.where(det == 0, torch.ones_like(det), det)[:, None, None]
    jac = round_half_up(num / safe * 2.0**JAC_FRAC_BITS) * 2.0**-JAC_FRAC_BITS
    limit = 2.0**JAC_LIMIT_BITS
    jac = torch.clamp(jac, -limit, limit)
    eye = torch.eye(2, dtype=DTYPE).expand_as(jac)
    return torch.where(singular, eye, jac)


def candidate_motions(kp_d: Tensor, kp_s: Tensor, size: int, jac: Tensor | None = None) -> Tensor:
    """(K+1, S, S, 2) source coordinates: identity, then per keypoint.

    Translation (DAC): grid − kp_d + kp_s. First order (FOMM): J·(grid − kp_d), rounded
    half up to 2^-14, + kp_s. All values on the 2^-14 (products: 2^-28) grid, exact.
    """
    grid = coordinate_grid(size)
    rel = grid[None] - kp_d[:, None, None, :]
    if jac is not None:
        moved = torch.einsum("kij,khwj->khwi", jac, rel)
        rel = round_half_up(moved * 2.0**COORD_FRAC_BITS) * 2.0**-COORD_FRAC_BITS
    return torch.cat([grid[None], rel + kp_s[:, None, None, :]])


def _to_pixels(coord: Tensor, size: int) -> Tensor:
    """Normalised coordinate (align_corners=True) → pixel, rounded half up to 2^-8."""
    exact = (coord + 1) * (size - 1) / 2  # 2^-15 grid: exact
    return round_half_up(exact * 2.0**PIXEL_FRAC_BITS) * 2.0**-PIXEL_FRAC_BITS


def bilinear_warp(features: FQ, coords: Tensor, occlusion: FQ | None = None) -> FQ:
    """grid_sample(bilinear, zeros, align_corners=True) of (C, H, W) at (Ho, Wo, 2) coords.

    The pixel coordinate is rounded to 2^-8 first; the four weights are then products of
    2^-8-grid fractions, the weighted sum of int8 values is exact on the 2^-16 grid, and
    one round half up (after the occlusion multiply, 2^-8 grid, when fused) gives the int8
    output at the features' scale. Taps outside the image read 0.
    """
    v = features.ints()
    c, h, w = v.shape
    px, py = _to_pixels(coords[..., 0], w), _to_pixels(coords[..., 1], h)
    x0, y0 = torch.floor(px), torch.floor(py)
    fx, fy = px - x0, py - y0
    flat = v.reshape(c, h * w)
    acc = torch.zeros((c, *px.shape), dtype=DTYPE)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).to(torch.int64)
            taps = flat[:, index.reshape(-1)].reshape(c, *px.shape)
            acc = acc + taps * torch.where(inside, wx * wy, torch.zeros_like(wx))
    # The float warp at the unrounded coordinates, for gradients only.
    smooth = F.grid_sample(
        features.value[None], coords[None], padding_mode="zeros", align_corners=ALIGN_CORNERS
    )[0]
    if occlusion is not None:
        occ = occlusion.ints() * 2.0**-OCC_FRAC_BITS
        acc, smooth = acc * occ, smooth * occlusion.value
    lo, hi = _int_range(8)
    exact = torch.clamp(round_half_up(acc), lo, hi) * features.scale
    return FQ(replace_ste(smooth, exact), features.scale)


def channel_softmax(logits: FQ, exp_table: Tensor) -> FQ:
    """Softmax over channels: EXP[max − x], exact sum S, r = round_half_up(2^R/S), 2^-8 out.

    The quotient 2^R/S (S < 2^20) is correctly rounded, so the rounding of r is exact.
    """
    x = logits.ints()
    k = (x.max(dim=0, keepdim=True).values - x).to(torch.int64)
    e = exp_table[k]
    s = e.sum(dim=0, keepdim=True)
    r_bits = EXP_FRAC_BITS + RECIP_BITS - 1
    r = round_half_up(2.0**r_bits / s)
    out = torch.clamp(round_half_up(e * r * 2.0 ** -(r_bits - MASK_FRAC_BITS)), 0, 255)
    exact = out * 2.0**-MASK_FRAC_BITS
    return FQ(replace_ste(F.softmax(logits.value, dim=0), exact), _const(2.0**-MASK_FRAC_BITS))


def table_lookup(x: FQ, table: Tensor, scale: float, smooth: Tensor) -> FQ:
    """table[q + 128] for int8 q, value × scale; `smooth` (the float function) for gradients."""
    index = (x.ints() + 128).to(torch.int64)
    return FQ(replace_ste(smooth, table[index] * scale), _const(scale))


def compose_dense_flow(mask: FQ, motions: Tensor) -> Tensor:
    """Σ_k mask_k·motion_k (2^-22 grid, exact), rounded half up to the 2^-14 coordinate grid."""
    m = mask.ints() * 2.0**-MASK_FRAC_BITS
    total = (m[..., None] * motions).sum(dim=0)
    return quantize_ste(total * 2.0**COORD_FRAC_BITS) * 2.0**-COORD_FRAC_BITS


# --------------------------------------------------------------------------- decoder


@dataclass
class FQSourceCache:
    """Per-GOP state: the encoder output and the key frame at motion resolution."""

    features: FQ
    small: FQ


class FakeQuantDecoder(nn.Module):
    """L1: the whole decoder of a `QuantizedDecoder`, as fake quantization in float64."""

    def __init__(self, q: QuantizedDecoder) -> None:
        super().__init__()
        self.q = q
        n = q.numeric
        sc = q.activation_scales

        def vec(scale: float, c: int) -> np.ndarray:
            return np.full(c, scale)

        def cin(qc: QConv) -> int:
            return qc.weight.shape[1]

        def cout(qc: QConv) -> int:
            return qc.weight.shape[0]

        self.first = FQConv(q.first, IMAGE_SCALE, sc["first"], n)
        s, down = sc["first"], []
        for i, block in enumerate(q.down_blocks):
            down.append(FQConv(block, s, sc[f"down{i}"], n))
            s = sc[f"down{i}"]
        self.down_blocks = nn.ModuleList(down)
        self.feature_scale = s
        self.antialias = (
            None if q.antialias is None else FQConv(q.antialias, IMAGE_SCALE, IMAGE_SCALE, n)
        )
        channels = cin(q.first)
        hg_in = np.tile(np.r_[2.0**-HEAT_FRAC_BITS, vec(IMAGE_SCALE, channels)], q.num_kp + 1)
        skips, hg_down = [hg_in], []
        for i, block in enumerate(q.hourglass_down):
            hg_down.append(FQConv(block, skips[-1], sc[f"hg_down{i}"], n))
            skips.append(vec(sc[f"hg_down{i}"], cout(block)))
        self.hourglass_down = nn.ModuleList(hg_down)
        s_in, hg_up = skips.pop(), []
        for i, block in enumerate(q.hourglass_up):
            hg_up.append(FQConv(block, s_in, sc[f"hg_up{i}"], n))
            s_in = np.r_[vec(sc[f"hg_up{i}"], cout(block)), skips.pop()]
        self.hourglass_up = nn.ModuleList(hg_up)
        self.mask = FQConv(q.mask, s_in, sc["mask_logits"], n)
        self.occlusion = FQConv(q.occlusion, s_in, sc["occ_logits"], n)
        blocks, s = [], self.feature_scale
        for i, (affine, conv1, conv2) in enumerate(q.bottleneck):
            blocks.append(
                nn.ModuleList(
                    [
                        FQAffine(affine, s, sc[f"r{i}.act"], n),
                        FQConv(conv1, sc[f"r{i}.act"], sc[f"r{i}.mid"], n),
                        FQConv(conv2, sc[f"r{i}.mid"], sc[f"r{i}.out"], n),
                    ]
                )
            )
            s = sc[f"r{i}.out"]
        self.bottleneck = nn.ModuleList(blocks)
        up = []
        for i, block in enumerate(q.up_blocks):
            up.append(FQConv(block, s, sc[f"up{i}"], n))
            s = sc[f"up{i}"]
        self.up_blocks = nn.ModuleList(up)
        self.final = FQConv(q.final, s, sc["final_logits"], n)
        self.register_buffer("gaussian_table", _const(q.gaussian_table))
        self.register_buffer("exp_table", _const(exp_lut(q.softmax_in_scale, EXP_FRAC_BITS)))
        self.register_buffer("occlusion_lut", _const(q.occlusion_lut))
        self.register_buffer("pixel_lut", _const(q.pixel_lut))

    def encode_source(
        self, frame: npt.ArrayLike, record: dict[str, FQ] | None = None
    ) -> FQSourceCache:
        """Per GOP: (H, W, 3) uint8 key frame → encoder features and the small source.

        The frame enters as round_half_up(p/255 / (1/127)); p·127/255 is never a tie.
        """
        seen: dict[str, FQ] = {} if record is None else record
        p = _const(np.asarray(frame, dtype=np.float64).transpose(2, 0, 1)) / 255
        image = fq_from_ints(quantize_ste(p / IMAGE_SCALE), IMAGE_SCALE)
        seen["image"] = image
        out = seen["first"] = self.first(image)
        for i, block in enumerate(self.down_blocks):
            out = seen[f"down{i}.pooled"] = block(out)
        small = image if self.antialias is None else self.antialias(image)
        seen["small"] = small
        return FQSourceCache(out, small)

    def decode(
        self,
        cache: FQSourceCache,
        kp_driving_q: npt.ArrayLike,
        kp_source_q: npt.ArrayLike,
        record: dict[str, FQ] | None = None,
        jac_driving_q: npt.ArrayLike | None = None,
        jac_source_q: npt.ArrayLike | None = None,
    ) -> dict[str, FQ]:
        """One inter frame from bitstream integers, as `decode_int`; `record` gets every layer.

        Returns frame (H, W, 3, scale 1/255), mask, occlusion and flow (H, W, 2, 2^-14).
        """
        seen: dict[str, FQ] = {} if record is None else record
        kp_d = _stream_values(kp_driving_q, KP_FRAC_BITS, "keypoints")
        kp_s = _stream_values(kp_source_q, KP_FRAC_BITS, "keypoints")
        size = cache.small.value.shape[1]
        if cache.features.value.shape[1:] != cache.small.value.shape[1:]:
            raise FakeQuantError("source features and motion resolution differ (no flow resize)")
        coord = _const(2.0**-COORD_FRAC_BITS)
        heat = seen["heatmaps"] = gaussian_heatmaps(kp_d, kp_s, size, self.gaussian_table)
        jac = None
        if self.q.jacobian:
            if jac_driving_q is None or jac_source_q is None:
                raise FakeQuantError("this decoder needs the keypoints' Jacobians")
            jac = first_order_jacobians(
                _stream_values(jac_source_q, JAC_IN_FRAC_BITS, "Jacobians"),
                _stream_values(jac_driving_q, JAC_IN_FRAC_BITS, "Jacobians"),
            )
            seen["jacobians"] = FQ(jac, _const(2.0**-JAC_FRAC_BITS))
        motions = candidate_motions(kp_d, kp_s, size, jac)
        seen["motions"] = FQ(motions, coord)
        deformed = [bilinear_warp(cache.small, m) for m in motions]
        seen["deformed"] = FQ(torch.stack([d.value for d in deformed]), cache.small.scale)
        x = cat_channels([part for k, d in enumerate(deformed) for part in (heat_k(heat, k), d)])
        skips = [x]
        for i, block in enumerate(self.hourglass_down):
            skips.append(block(skips[-1]))
            seen[f"hg_down{i}.pooled"] = skips[-1]
        out = skips.pop()
        for i, block in enumerate(self.hourglass_up):
            up = seen[f"hg_up{i}"] = block(out)
            out = cat_channels([up, skips.pop()])
        logits = seen["mask_logits"] = self.mask(out)
        mask = seen["mask"] = channel_softmax(logits, self.exp_table)
        occ_logits = seen["occ_logits"] = self.occlusion(out)
        occlusion = table_lookup(
            occ_logits, self.occlusion_lut, 2.0**-OCC_FRAC_BITS, torch.sigmoid(occ_logits.value)
        )
        occlusion = seen["occlusion"] = FQ(occlusion.value[0], occlusion.scale)
        flow = compose_dense_flow(mask, motions)
        seen["flow"] = FQ(flow, coord)
        feat = seen["warped"] = bilinear_warp(cache.features, flow, occlusion)
        for i, (affine, conv1, conv2) in enumerate(self.bottleneck):
            act = seen[f"r{i}.act"] = affine(feat)
            mid = seen[f"r{i}.mid"] = conv1(act)
            feat = seen[f"r{i}.out"] = conv2(mid, residual=feat)
        for i, block in enumerate(self.up_blocks):
            feat = seen[f"up{i}"] = block(feat)
        logits = seen["final_logits"] = self.final(feat)
        pixels = table_lookup(logits, self.pixel_lut, 1 / 255, torch.sigmoid(logits.value))
        frame = seen["frame"] = FQ(pixels.value.permute(1, 2, 0), pixels.scale)
        return {"frame": frame, "mask": mask, "occlusion": occlusion, "flow": seen["flow"]}
