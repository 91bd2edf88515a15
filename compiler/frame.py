"""One inter frame lowered to a program: keypoints in, pixels out (issue 16).

`decode_int` (L2) as the engines run it, step by step (docs/isa.md, "The
frame program"):

1. HEATMAP: the K + 1 heatmaps, stored a pixel's K + 1 bytes at a time into
   the hourglass input's heat plane.
2. MOTION × (K + 1): each sparse motion's {x, y} words, stored one byte into
   flow entries (`rtl.warp.layouts.flow_layout`: occlusion byte first).
3. WARP × (K + 1): the small key frame (in the warp's feature payload slots,
   laid out per GOP) warped by each motion, stored into the hourglass input's
   deformed plane (3 bytes a pixel per motion).
4. the hourglass, mask and occlusion convs (`emit_conv`); the hourglass input's
   channels are in the planes' order, the weights reading it follow them.
5. SOFTMAX over the mask logits; the occlusion TABLE stored into the flow
   entries' first bytes; MOTION FLOW under the masks into the same entries.
6. WARP of the source features (payload slots, per GOP) with the occlusion,
   in batches of planes the banks hold.
7. per bottleneck block an AFFINE, two convs (the second with the residual);
   the up blocks, the final conv, and the pixel TABLE into the frame's bytes.

Between steps the stores are synced to the loads that read their results
(`sync_stores`); no region is written twice in a frame, so only those
read-after-write orders need tokens. The host writes the frame's keypoints
(and composed Jacobians) as payload words before each run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from compiler.conv_layer import Image, Program, conv_size, emit_conv, from_qconv, sync_stores
from compiler.payload import pack, payload_bytes, table_bytes, word_bytes
from compiler.tensor import LoweringError, Plane, Tensor, pixel_chunks, transfer_fields
from defs.isa import Buffer, Opcode, Source
from defs.params import GraceParams
from model.fixed_decoder import QAffine, QConv, QuantizedDecoder
from model.fixed_motion import JAC_FRAC_BITS, grid_axis, keypoints_to_coords
from model.fixed_ops import LUT_SIZE, exp_lut
from rtl.act.heatmap_layouts import gaussian_write_layout
from rtl.act.keypoints import grid_write_layout, jacobian_write_layout, keypoint_write_layout
from rtl.act.layouts import ActOp, param_layout, param_write_layout
from rtl.act.motion_layouts import MotionOp
from rtl.act.motion_layouts import output_layout as motion_output_layout
from rtl.act.softmax import EXP_FRAC_BITS, exp_write_layout
from rtl.warp.layouts import feature_write_layout, flow_layout

IntArray = npt.NDArray[np.int64]

#: The element-wise engine's tables during a frame.
OCCLUSION_TABLE, PIXEL_TABLE = 0, 1


def round_up(value: int, step: int) -> int:
    return -(-value // step) * step


@dataclass(frozen=True)
class WarpSlots:
    """A map laid out as the warp's feature payload words, their places filled in: in
    `batches` of planes the banks hold at once, each batch's words a LOAD's rows."""

    tensor: Tensor  # planes of slots: channel c of pixel p one payload word
    batches: tuple[tuple[int, int], ...]  # (first channel, channels)


def warp_slots(image: Image, channels: int, size: int, params: GraceParams, rows: int) -> WarpSlots:
    """Room for a (C, S, S) map as warp feature payload slots, planes of `rows` channels (a
    producer conv's output groups), each slot's bank and address filled in."""
    if params.warp.lanes != 1:
        raise LoweringError(f"warp: feature slots are laid out for 1 lane, not {params.warp.lanes}")
    layout = feature_write_layout(params)
    slot = word_bytes(layout)
    half = -(-size // 2)
    in_plane = half * half
    per_batch = params.warp.depth // in_plane
    if per_batch < 1:
        raise LoweringError(
            f"warp: a {size}×{size} plane takes {in_plane} words a bank; a bank holds "
            f"{params.warp.depth}"
        )
    y, x = np.divmod(np.arange(size * size), size)
    planes, batches = [], []
    for c0 in range(0, channels, rows):
        n = min(rows, channels - c0)
        place = np.zeros((size * size, n), np.int64)  # each slot's plane index in its batch
        for b0 in range(0, n, per_batch):
            nb = min(per_batch, n - b0)
            batches.append((c0 + b0, nb))
            place[:, b0 : b0 + nb] = np.arange(nb)
        blob = payload_bytes(
            layout,
            {
                "data": np.zeros(place.size, np.int64),
                "addr": (place * in_plane + ((y >> 1) * half + (x >> 1))[:, None]).ravel(),
                "bank": np.repeat(2 * (y & 1) + (x & 1), n),
            },
        )
        planes.append(Plane(image.place(blob), n, n * slot, slot))
    return WarpSlots(Tensor(tuple(planes), size, size), tuple(batches))


@dataclass(frozen=True)
class FrameInputs:
    """Where the host writes a frame's keypoints and Jacobians (payload words)."""

    keypoints_addr: int  # 2K keypoint words: driving then source
    jacobians_addr: int  # 4K Jacobian words
    keypoints: int  # K
    jacobian: bool  # FOMM: the host writes J_s·J_d⁻¹; DAC: identities stay


def keypoint_words(
    inputs: FrameInputs,
    kp_driving_q: npt.ArrayLike,
    kp_source_q: npt.ArrayLike,
    params: GraceParams,
) -> bytes:
    coords = [keypoints_to_coords(kp_driving_q), keypoints_to_coords(kp_source_q)]
    k = inputs.keypoints
    if any(c.shape != (k, 2) for c in coords):
        raise LoweringError(f"frame: {k} keypoints expected, got {[c.shape for c in coords]}")
    return payload_bytes(
        keypoint_write_layout(params),
        {
            "keypoint": np.tile(np.arange(k), 2),
            "source": np.repeat([0, 1], k),
            "x": np.concatenate([c[:, 0] for c in coords]),
            "y": np.concatenate([c[:, 1] for c in coords]),
        },
    )


def jacobian_words(jacobians: npt.ArrayLike, params: GraceParams) -> bytes:
    """(K, 2, 2) composed Jacobians (JAC_FRAC_BITS) as the motion unit's write words."""
    jac = np.asarray(jacobians, dtype=np.int64)
    k = jac.shape[0]
    kk, row, col = np.meshgrid(np.arange(k), [0, 1], [0, 1], indexing="ij")
    return payload_bytes(
        jacobian_write_layout(params), {"keypoint": kk, "row": row, "col": col, "value": jac}
    )


def identity_jacobians(k: int) -> IntArray:
    return np.broadcast_to(np.eye(2, dtype=np.int64) << JAC_FRAC_BITS, (k, 2, 2)).copy()


class FrameLowering:
    """Emits one frame's program into `program`, its constants and maps into `image`."""

    def __init__(self, q: QuantizedDecoder, params: GraceParams, image: Image) -> None:
        self.q, self.params, self.image = q, params, image
        self.program = Program(params)
        if params.act.lanes != 1:
            raise LoweringError(
                f"frame: laid out for a 1-lane element-wise engine, not {params.act.lanes}"
            )
        if q.num_kp > params.act.max_keypoints:
            raise LoweringError(
                f"frame: {q.num_kp} keypoints; the heatmap and motion units take "
                f"{params.act.max_keypoints}"
            )

    # -- constants ---------------------------------------------------------------------

    def _place(self, blob: bytes) -> int:
        return self.image.place(blob)

    def _load(self, buffer: Buffer, addr: int, words: int, **tokens: int) -> None:
        fields = {"buffer": buffer, "buffer_addr": 0} | transfer_fields(addr, 0, 1, words)
        self.program.emit(Opcode.LOAD, fields, **tokens)

    def _table(self, table: int, entries: npt.ArrayLike) -> tuple[int, int]:
        return self._place(table_bytes(table, entries)), LUT_SIZE

    # -- the frame ---------------------------------------------------------------------

    def lower(self, small: WarpSlots, features: WarpSlots) -> tuple[list[int], FrameInputs, Tensor]:
        """The frame's program words, where its inputs go, and its (H, W, 3) pixels' map."""
        q, p, image = self.q, self.params, self.image
        size, k = small.tensor.height, q.num_kp
        cols = p.array.cols
        pixels = size * size
        emit = self.program.emit

        # constants the units hold for the frame
        grid = payload_bytes(
            grid_write_layout(p), {"index": np.arange(size), "value": grid_axis(size)}
        )
        grid_addr = self._place(grid)
        depth = p.act.gaussian_depth
        if len(q.gaussian_table) > depth:
            raise LoweringError(
                f"heatmap: a {len(q.gaussian_table)}-entry table; the unit holds {depth}"
            )
        gaussian_addr = self._place(
            payload_bytes(
                gaussian_write_layout(p),
                {"index": np.arange(len(q.gaussian_table)), "data": q.gaussian_table},
            )
        )
        kp_bytes = word_bytes(keypoint_write_layout(p))
        inputs = FrameInputs(
            image.reserve(2 * k * kp_bytes),
            image.place(jacobian_words(identity_jacobians(k), p)),
            k,
            q.jacobian,
        )

        # 1. heatmaps → the hourglass input's heat plane
        self.program.step = "heatmaps"
        heat = Plane(image.reserve(pixels * round_up(k + 1, cols)), k + 1, round_up(k + 1, cols))
        self._load(Buffer.HEATMAP_GRID, grid_addr, size)
        self._load(Buffer.HEATMAP_GAUSSIAN, gaussian_addr, len(q.gaussian_table))
        self._load(Buffer.HEATMAP_KEYPOINT, inputs.keypoints_addr, 2 * k, push_next=1)
        emit(Opcode.HEATMAP, {"size": size, "keypoints": k, "tag": 0}, pop_prev=1, push_next=1)
        emit(
            Opcode.STORE,
            {"source": Source.HEATMAP} | heat.transfer(0, k + 1, 0, pixels),
            pop_prev=1,
        )

        # 2. the sparse motions → flow entries, one region each
        entry = word_bytes(flow_layout())
        motion_bytes = word_bytes(motion_output_layout())
        if (
            flow_layout()["x"].offset != 8 * (entry - motion_bytes)
            or motion_output_layout()["x"].offset
        ):
            raise LoweringError("flow: the motion words do not meet the flow entries' bytes")
        flows = [image.reserve(pixels * entry) for _ in range(k + 1)]
        self.program.step = "motions"
        self._load(Buffer.MOTION_GRID, grid_addr, size)
        self._load(Buffer.MOTION_JACOBIAN, inputs.jacobians_addr, 4 * k)
        self._load(Buffer.MOTION_KEYPOINT, inputs.keypoints_addr, 2 * k, push_next=1)
        for m, flow_addr in enumerate(flows):
            command = {"op": MotionOp.MOTION, "size": size, "keypoints": k, "motion": m, "tag": m}
            emit(Opcode.MOTION, command, pop_prev=int(m == 0), push_next=1)
            store = transfer_fields(flow_addr + entry - motion_bytes, entry, pixels, 1)
            emit(Opcode.STORE, {"source": Source.MOTION} | store, pop_prev=1)

        # 3. the small frame warped by each motion → the deformed plane
        c_small = small.tensor.channels
        width = round_up(c_small * (k + 1), cols)
        deformed = Plane(image.reserve(pixels * width), c_small * (k + 1), width)
        self.program.step = "warp.deformed"
        sync_stores(self.program)
        targets = [(flow_addr, deformed, m * c_small) for m, flow_addr in enumerate(flows)]
        self._warp(small, targets, pixels, occlusion=False)

        # 4. the hourglass: its input in the planes' order (heat, then deformed)
        x = Tensor((heat, deformed), size, size)
        per = 1 + c_small  # L2's order: per motion its heatmap, then its warped colours
        order = np.concatenate(
            [
                np.arange(k + 1) * per,
                (np.arange(k + 1)[:, None] * per + 1 + np.arange(c_small)).ravel(),
            ]
        )
        skips, orders = [x], [order]
        out, out_order = x, order
        for i, block in enumerate(q.hourglass_down):
            out = self._conv(f"hg_down{i}", block, out, out_order)
            out_order = None
            skips.append(out)
            orders.append(None)
        skips.pop(), orders.pop()
        for i, block in enumerate(q.hourglass_up):
            up = self._conv(f"hg_up{i}", block, out, out_order)
            skip, skip_order = skips.pop(), orders.pop()
            out = up + skip
            out_order = _concat_order(up.channels, skip.channels, skip_order)
        # the softmax reads a pixel's K + 1 logits together: one plane, whatever the array
        logits = self._conv("mask", q.mask, out, out_order, out=_one_plane(image, q.mask, out))
        occ_logits = self._conv("occlusion", q.occlusion, out, out_order)

        # 5. softmax, occlusion, dense flow → the final flow entries
        flow_addr = image.reserve(pixels * entry)
        masks_addr = image.reserve(pixels * (k + 1))
        exp = exp_lut(q.softmax_in_scale, EXP_FRAC_BITS)
        exp_addr = self._place(
            payload_bytes(exp_write_layout(), {"index": np.arange(LUT_SIZE), "data": exp})
        )
        occ_table = self._table(OCCLUSION_TABLE, q.occlusion_lut)
        pixel_table = self._table(PIXEL_TABLE, q.pixel_lut)
        plane, first = logits.locate(0, k + 1)
        self.program.step = "softmax"
        sync_stores(self.program)
        self._load(Buffer.SOFTMAX_EXP, exp_addr, LUT_SIZE, pop_next=1)
        load = {"buffer": Buffer.SOFTMAX_INPUT, "buffer_addr": 0} | plane.transfer(
            first, k + 1, 0, pixels
        )
        emit(Opcode.LOAD, load, push_next=1)
        emit(
            Opcode.SOFTMAX, {"pixels": pixels, "channels": k + 1, "tag": 0}, pop_prev=1, push_next=1
        )
        emit(
            Opcode.STORE,
            {"source": Source.SOFTMAX} | transfer_fields(masks_addr, 0, 1, pixels * (k + 1)),
            pop_prev=1,
        )
        self.program.step = "occlusion.table"
        self._load(Buffer.ACT_TABLE, occ_table[0], occ_table[1])
        self._load(Buffer.ACT_TABLE, pixel_table[0], pixel_table[1])
        plane, first = occ_logits.locate(0, 1)
        load = {"buffer": Buffer.ACT_INPUT, "buffer_addr": 0} | plane.transfer(first, 1, 0, pixels)
        emit(Opcode.LOAD, load, push_next=1)
        command = {"op": ActOp.TABLE, "pixels": pixels, "groups": 1, "param_base": 0}
        emit(
            Opcode.ACT,
            command | {"table": OCCLUSION_TABLE, "relu": 0, "tag": 0},
            pop_prev=1,
            push_next=1,
        )
        emit(
            Opcode.STORE,
            {"source": Source.ACT} | transfer_fields(flow_addr, entry, pixels, 1),
            pop_prev=1,
        )
        self.program.step = "flow"
        sync_stores(self.program)
        load = {"buffer": Buffer.MOTION_MASK, "buffer_addr": 0}
        emit(
            Opcode.LOAD,
            load | transfer_fields(masks_addr, 0, 1, pixels * (k + 1)),
            pop_next=1,
            push_next=1,
        )
        command = {"op": MotionOp.FLOW, "size": size, "keypoints": k, "motion": 0, "tag": k + 1}
        emit(Opcode.MOTION, command, pop_prev=1, push_next=1)
        store = transfer_fields(flow_addr + entry - motion_bytes, entry, pixels, 1)
        emit(Opcode.STORE, {"source": Source.MOTION} | store, pop_prev=1)

        # 6. the source features, warped with the occlusion → one plane
        c_feat = features.tensor.channels
        feat = Tensor((Plane(image.reserve(pixels * c_feat), c_feat, c_feat),), size, size)
        self.program.step = "warp.features"
        sync_stores(self.program)
        self._warp(features, [(flow_addr, feat.planes[0], 0)], pixels, occlusion=True)

        # 7. the bottleneck, the up blocks, the final conv and the pixel table
        constants, together = self._affine_constants(q.bottleneck, c_feat)
        for i, (_, conv1, conv2) in enumerate(q.bottleneck):
            self.program.step = f"r{i}.affine"
            base = i * c_feat if together else 0
            act = self._affine(feat, base, constants=constants[i])
            mid = self._conv(f"r{i}.conv1", conv1, act, None)
            feat = self._conv(f"r{i}.conv2", conv2, mid, None, residual=feat)
        for i, block in enumerate(q.up_blocks):
            feat = self._conv(f"up{i}", block, feat, None)
        final_map = _one_plane(image, q.final, feat)  # the pixel table reads a pixel's colours
        final = self._conv("final", q.final, feat, None, out=final_map)
        c_out, height, width_px = final.shape
        frame = Plane(image.reserve(height * width_px * c_out), c_out, c_out)
        plane, first = final.locate(0, c_out)
        frame_pixels = height * width_px
        self.program.step = "pixels"
        sync_stores(self.program)
        for j, (p0, n) in enumerate(pixel_chunks(frame_pixels)):
            load = {"buffer": Buffer.ACT_INPUT, "buffer_addr": 0}
            load |= plane.transfer(first, c_out, p0, n)
            emit(Opcode.LOAD, load, pop_next=int(j == 0), push_next=1)
            command = {"op": ActOp.TABLE, "pixels": n, "groups": c_out, "param_base": 0}
            command |= {"table": PIXEL_TABLE, "relu": 0, "tag": j % 256}
            emit(Opcode.ACT, command, pop_prev=1, push_next=1)
            store = {"source": Source.ACT} | frame.transfer(0, c_out, p0, n)
            emit(Opcode.STORE, store, pop_prev=1)
        self.program.step = "end"
        return self.program.end(), inputs, Tensor((frame,), height, width_px)

    # -- steps -------------------------------------------------------------------------

    def _conv(
        self,
        name: str,
        q: QConv,
        x: Tensor,
        order: IntArray | None,
        residual: Tensor | None = None,
        out: Tensor | None = None,
    ) -> Tensor:
        """A conv after the stores before it (synced to its first load)."""
        self.program.step = name
        sync_stores(self.program)
        layer = from_qconv(q, order)
        try:
            return emit_conv(
                self.program, self.image, layer, x, residual=residual, out=out, after_store=True
            )
        except LoweringError as exc:
            raise LoweringError(f"{name}: {exc}") from None

    def _warp(
        self,
        slots: WarpSlots,
        targets: list[tuple[int, Plane, int]],
        pixels: int,
        *,
        occlusion: bool,
    ) -> None:
        """Per batch of `slots`' planes, one WARP per target (flow entries' address, the
        plane its results go to, from which channel): after the stores before."""
        emit = self.program.emit
        size = slots.tensor.height
        half = -(-size // 2)
        tag = 0
        for j, (c0, n) in enumerate(slots.batches):
            plane, lane = slots.tensor.locate(c0, n)
            load = {"buffer": Buffer.WARP_FEATURE, "buffer_addr": 0}
            load |= transfer_fields(
                plane.addr + lane * plane.channel_bytes, plane.pixel_bytes, pixels, n
            )
            # the first waits for the stores before; a batch's after the last WARP before it
            emit(Opcode.LOAD, load, pop_next=1)
            for t, (flow_addr, out, channel) in enumerate(targets):
                load = {"buffer": Buffer.WARP_FLOW, "buffer_addr": 0}
                emit(Opcode.LOAD, load | transfer_fields(flow_addr, 0, 1, pixels), push_next=1)
                command = {
                    "in_base": 0, "in_plane": half * half, "in_row": half, "in_height": size,
                    "in_width": size, "planes": n, "out_height": size, "out_width": size,
                    "occlusion": int(occlusion), "tag": tag % 256,
                }  # fmt: skip
                frees = t == len(targets) - 1 and j + 1 < len(slots.batches)
                emit(Opcode.WARP, command, pop_prev=1, push_prev=int(frees), push_next=1)
                store = {"source": Source.WARP} | out.transfer(channel + c0, n, 0, pixels)
                emit(Opcode.STORE, store, pop_prev=1)
                tag += 1

    def _affine_constants(
        self, blocks: list[tuple[QAffine, QConv, QConv]], channels: int
    ) -> tuple[list[tuple[int, int] | None], bool]:
        """Per block, the constants (address, words) to load before its AFFINE, or None
        when they are in place; and whether every block's are in place at once (block i's
        at i·channels), else each block loads its own at 0 once the block before is done."""
        p = self.params
        if channels > p.act.param_depth:
            raise LoweringError(
                f"affine: {channels} channels of constants; the element-wise engine holds "
                f"{p.act.param_depth}"
            )
        together = len(blocks) * channels <= p.act.param_depth
        groups = [blocks] if together else [[b] for b in blocks]
        loads: list[tuple[int, int] | None] = []
        for group in groups:
            fields: dict[str, list[int]] = {"negate": [], "bias": [], "multiplier": [], "shift": []}
            for affine, _, _ in group:
                for name in fields:
                    fields[name] += [int(v) for v in getattr(affine, name)]
            total = len(group) * channels
            blob = payload_bytes(
                param_write_layout(p),
                {
                    "lane": np.zeros(total, np.int64),
                    "addr": np.arange(total),
                    "data": pack(param_layout(p), fields),
                },
            )
            loads.append((self._place(blob), total))
        if together:
            loads += [None] * (len(blocks) - 1)
        return loads, together

    def _affine(self, x: Tensor, param_base: int, *, constants: tuple[int, int] | None) -> Tensor:
        """relu(affine) of every plane of `x` (after the stores before), into a map of the
        same planes; `constants` (address, words) loaded first when given."""
        emit = self.program.emit
        pixels = x.height * x.width
        sync_stores(self.program)
        if constants is not None:
            self._load(Buffer.ACT_PARAM, constants[0], constants[1], pop_next=1)
        planes = []
        c0 = 0
        for j, plane in enumerate(x.planes):
            out = Plane(self.image.reserve(pixels * plane.channels), plane.channels, plane.channels)
            load = {"buffer": Buffer.ACT_INPUT, "buffer_addr": 0} | plane.transfer(
                0, plane.channels, 0, pixels
            )
            emit(Opcode.LOAD, load, pop_next=int(constants is None and j == 0), push_next=1)
            command = {"op": ActOp.AFFINE, "pixels": pixels, "groups": plane.channels}
            command |= {"param_base": param_base + c0, "table": 0, "relu": 1, "tag": j % 256}
            emit(Opcode.ACT, command, pop_prev=1, push_next=1)
            emit(
                Opcode.STORE,
                {"source": Source.ACT} | out.transfer(0, plane.channels, 0, pixels),
                pop_prev=1,
            )
            planes.append(out)
            c0 += plane.channels
        return Tensor(tuple(planes), x.height, x.width)


def _one_plane(image: Image, q: QConv, x: Tensor) -> Tensor:
    """Room for the output of `q` on `x` as one plane (every channel of a pixel together)."""
    o = q.weight.shape[0]
    h, w = conv_size(from_qconv(q), x.height, x.width)
    if q.pool:
        h, w = h // 2, w // 2
    return Tensor((Plane(image.reserve(h * w * o), o, o),), h, w)


def _concat_order(first: int, second: int, second_order: IntArray | None) -> IntArray | None:
    """The order of a concatenation's channels, when the second part's is permuted."""
    if second_order is None:
        return None
    return np.concatenate([np.arange(first), first + np.asarray(second_order)])
