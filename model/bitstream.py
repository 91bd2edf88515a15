"""The GRACE bitstream, version 2: writer, parser and the bit-level coding they share.

A clip is a header followed by one packet per GOP. A packet carries the key frame
(already compressed by a standard image codec; stored as opaque bytes plus a codec
id) and the keypoints of every frame of the GOP, quantised to integers. The header
names the keypoint coder of every packet: coder 0 writes signed Exp-Golomb codes
(order 0), the key frame's keypoints as absolute values and each inter frame's as
the residual from the previous frame (version 1's only coder); coder 1 fits a model
per GOP and entropy-codes the residuals with ANS (model/keypoint_coding.py). The
reader also decodes version-1 streams (coder 0, one header byte shorter). The
normative specification is docs/bitstream.md; this module is its reference
implementation.

Why the bit I/O and Exp-Golomb coder are hand-written: they are about forty lines,
and no maintained Python library writes Exp-Golomb codes with exactly the layout
specified here (MSB-first, signed mapping 0, 1, -1, 2, -2, ... -> 0, 1, 2, 3, 4, ...,
a hard cap on the prefix length, zero padding per packet). A dependency would fix
a layout we do not control; the hardware decoder must match this one.

Robustness contract: `read_stream` raises only `BitstreamError` on malformed
input. Every length is checked against the bytes actually present before it is
used, and array sizes are checked against the number of bits in the packet
(every code is at least one bit) before anything is allocated.

NumPy and the standard library only (no torch): the receiver-side tools and the
tests import this without the model stack.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CODEC_JPEG",
    "CODEC_PNG",
    "CODEC_WEBP",
    "FORMAT_VERSION",
    "KP_CODERS",
    "KP_CODER_ADAPTIVE",
    "KP_CODER_EXP_GOLOMB",
    "MAGIC",
    "SUPPORTED_VERSIONS",
    "BitReader",
    "BitWriter",
    "BitstreamError",
    "GopPacket",
    "StreamHeader",
    "StreamStats",
    "decode_se",
    "dequantize",
    "encode_se",
    "quantize",
    "read_stream",
    "stream_stats",
    "write_stream",
]

IntArray = npt.NDArray[np.int32]

MAGIC = b"GRCE"
FORMAT_VERSION = 2  # what write_stream writes
SUPPORTED_VERSIONS = (1, 2)  # what read_stream reads

#: Keypoint coders (the header's coder byte, version 2): how packets code keypoints.
KP_CODER_EXP_GOLOMB = 0  # predictive signed Exp-Golomb, version 1's only coder
KP_CODER_ADAPTIVE = 1  # per-GOP fitted model, ANS, escapes (model/keypoint_coding.py)
KP_CODERS = {"exp-golomb": KP_CODER_EXP_GOLOMB, "adaptive": KP_CODER_ADAPTIVE}
KP_CODER_NAMES = {code: name for name, code in KP_CODERS.items()}

CODEC_JPEG = 0
CODEC_WEBP = 1
CODEC_PNG = 2
CODEC_NAMES = {CODEC_JPEG: "JPEG", CODEC_WEBP: "WebP", CODEC_PNG: "PNG"}

PACKET_GOP = 0x01

MAX_PRESET_BYTES = 32
STEP_MIN = 2.0**-32
STEP_MAX = 2.0**16

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# Largest Exp-Golomb prefix (leading zeros) a v1 reader accepts. 32 zeros allow
# codes of 33 bits, i.e. unsigned values up to 2**33 - 2 and signed values of
# magnitude up to 2**32 - 1: every difference of two int32 values.
MAX_LEADING_ZEROS = 32
UE_MAX = (1 << (MAX_LEADING_ZEROS + 1)) - 2
SE_MAX = UE_MAX // 2  # 2**32 - 1

# Header, after magic (4), version (1), preset length (1) and preset (L bytes):
# width, height, fps_num, fps_den, gop_size (u16 each), num_kp (u8), jacobian (u8),
# kp_step, jacobian_step (IEEE 754 binary64 each), num_frames (u32), and from
# version 2 on the keypoint coder (u8). Big-endian.
_HEADER_FIXED = {1: struct.Struct(">5HBBddI"), 2: struct.Struct(">5HBBddIB")}
_PACKET_HEAD = struct.Struct(">BI")  # packet type, payload length
_GOP_HEAD = struct.Struct(">BHI")  # key codec, frames in GOP, key frame length
_CRC = struct.Struct(">I")

_CORRUPT = "the file is corrupt — re-encode or re-transfer it"
_TRUNCATED = "the file is truncated — re-transfer it or re-encode the clip"
_NOT_GRACE = "this is not a GRACE stream — check the file path"
_SUPPORTED = ", ".join(map(str, SUPPORTED_VERSIONS))
_UNSUPPORTED = (
    f"this reader supports versions {_SUPPORTED} — re-encode with a GRACE release that "
    f"writes version {FORMAT_VERSION}, or upgrade the reader"
)


class BitstreamError(ValueError):
    """Corrupt, truncated or unsupported stream.

    str() is one line naming the byte offset and what to do, because it ends up in
    a CLI error line or a log. A ValueError subclass, so callers that already catch
    bad input keep working.
    """

    offset: int | None

    def __init__(self, what: str, offset: int | None = None, action: str = _CORRUPT) -> None:
        self.what = what
        self.offset = offset
        self.action = action
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(" ".join(f"bitstream: {what}{where}; {action}".split()))

    def __reduce__(self):  # keep the fields through pickling (pytest-xdist, multiprocessing)
        return (type(self), (self.what, self.offset, self.action))


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder must know before the first packet."""

    preset: str  # parameter preset name, UTF-8, 1..32 bytes
    width: int  # pixels, 1..65535
    height: int  # pixels, 1..65535
    fps_num: int  # frame rate = fps_num / fps_den, each 1..65535
    fps_den: int
    gop_size: int  # frames per GOP (key frame included), 1..65535
    num_kp: int  # keypoints per frame, 1..255
    jacobian: bool  # packets carry per-keypoint 2x2 Jacobians
    kp_step: float  # quantisation step of keypoint coordinates, 2**-32..2**16
    jacobian_step: float  # quantisation step of Jacobian entries (checked even if unused)
    num_frames: int  # frames in the clip, 1..2**32-1
    kp_coder: int = KP_CODER_ADAPTIVE  # KP_CODERS; version-1 streams read as Exp-Golomb


@dataclass(frozen=True)
class GopPacket:
    """One GOP: the compressed key frame and the quantised keypoints of all its frames.

    Keypoint arrays hold integers q already quantised with `quantize` (so the
    writer is exact and the caller owns the float -> int decision). `==` on this
    dataclass compares NumPy arrays and is therefore not usable; compare fields.
    """

    key_codec: int  # CODEC_JPEG (0), CODEC_WEBP (1), CODEC_PNG (2)
    key_frame: bytes  # the compressed key frame, non-empty
    source_kp: IntArray  # (num_kp, 2)
    source_jacobian: IntArray | None  # (num_kp, 2, 2), or None without Jacobians
    inter_kp: IntArray  # (n_inter, num_kp, 2), n_inter = frames in GOP - 1
    inter_jacobian: IntArray | None  # (n_inter, num_kp, 2, 2), or None


@dataclass(frozen=True)
class StreamStats:
    """Where the bytes go: the rate split between images and motion."""

    header_bytes: int  # stream header including its CRC
    key_frame_bytes: int  # compressed key-frame bytes only
    keypoint_bytes: int  # everything else: packet headers, CRCs, codec ids, coded keypoints
    keypoint_section_bytes: int  # of which the packets' keypoint sections (the coder's output)


# ---------------------------------------------------------------------------------
# Quantisation


def _check_step(step: float, name: str = "step") -> float:
    step = float(step)
    if not (math.isfinite(step) and STEP_MIN <= step <= STEP_MAX):
        raise ValueError(f"{name} must be finite and in [2**-32, 2**16], got {step!r}")
    return step


def quantize(values: npt.ArrayLike, step: float) -> IntArray:
    """Float -> int32: q = round_half_away_from_zero(values / step).

    The division is done in float64; the quotient is then rounded exactly (ties
    away from zero, so the rule is symmetric in sign, like the keypoints).
    Raises ValueError for non-finite values or |q| > 2**31 - 1.
    """
    step = _check_step(step)
    v = np.asarray(values, dtype=np.float64) / step
    if not np.all(np.isfinite(v)):
        raise ValueError("quantize: values must be finite (got NaN or inf)")
    a = np.abs(v)
    whole = np.floor(a)
    r = whole + (a - whole >= 0.5)  # a - whole is exact in float64
    if r.size and float(r.max()) > INT32_MAX:
        raise ValueError(
            f"quantize: |value / step| up to {float(a.max()):.6g} exceeds the int32 range; "
            "use a larger step"
        )
    return np.copysign(r, v).astype(np.int32)


def dequantize(q: npt.ArrayLike, step: float) -> npt.NDArray[np.float32]:
    """Int -> float32: q * step, formed in float64 then rounded once to float32."""
    step = _check_step(step)
    return (np.asarray(q, dtype=np.float64) * step).astype(np.float32)


# ---------------------------------------------------------------------------------
# Bit I/O and Exp-Golomb


def _se_to_ue(v: int) -> int:
    """Signed -> unsigned: 0, 1, -1, 2, -2, ... -> 0, 1, 2, 3, 4, ..."""
    return 2 * v - 1 if v > 0 else -2 * v


def _ue_to_se(u: int) -> int:
    return (u + 1) >> 1 if u & 1 else -(u >> 1)


class BitWriter:
    """MSB-first bit writer. Bits are kept as a '0'/'1' string: linear time, no bit loop."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._nbits = 0

    @property
    def nbits(self) -> int:
        return self._nbits

    def write_bits(self, value: int, n: int) -> None:
        """Write the n low bits of value, most significant first."""
        if n < 0 or value < 0 or value >> n:
            raise ValueError(f"write_bits: {value} does not fit in {n} bits")
        if n:
            self._parts.append(format(value, f"0{n}b"))
            self._nbits += n

    def write_ue(self, u: int) -> None:
        """Unsigned Exp-Golomb, order 0: (len(bin(u+1)) - 1) zeros, then bin(u+1)."""
        if not 0 <= u <= UE_MAX:
            raise ValueError(f"write_ue: {u} outside 0..{UE_MAX}")
        code = format(u + 1, "b")
        self._parts.append("0" * (len(code) - 1) + code)
        self._nbits += 2 * len(code) - 1

    def write_se(self, v: int) -> None:
        """Signed Exp-Golomb: write_ue of the mapping 0, 1, -1, 2, -2, ... -> 0, 1, 2, 3, 4."""
        if not -SE_MAX <= v <= SE_MAX:
            raise ValueError(f"write_se: {v} outside ±{SE_MAX}")
        self.write_ue(_se_to_ue(v))

    def getvalue(self) -> bytes:
        """The bits so far, zero-padded to a whole number of bytes."""
        bits = "".join(self._parts)
        bits += "0" * (-len(bits) % 8)
        return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


class BitReader:
    """MSB-first bit reader over `data`; errors name the byte offset `base + bitpos // 8`."""

    def __init__(self, data: bytes, base_offset: int = 0, context: str = "bit payload") -> None:
        self._bits = format(int.from_bytes(data, "big"), f"0{8 * len(data)}b") if data else ""
        self._pos = 0
        self._base = base_offset
        self._context = context

    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._bits) - self._pos

    def _offset(self) -> int:
        return self._base + self._pos // 8

    def byte_offset(self) -> int:
        """Stream offset of the byte holding the next bit (for error messages)."""
        return self._offset()

    def read_bits(self, n: int) -> int:
        if n > self.remaining:
            raise BitstreamError(f"{self._context} ends inside a field", self._offset())
        value = int(self._bits[self._pos : self._pos + n], 2) if n else 0
        self._pos += n
        return value

    def read_ue(self) -> int:
        start = self._pos
        one = self._bits.find("1", start, start + MAX_LEADING_ZEROS + 1)
        if one < 0:
            if self.remaining <= MAX_LEADING_ZEROS:
                raise BitstreamError(
                    f"{self._context} ends inside an Exp-Golomb code", self._offset()
                )
            raise BitstreamError(
                f"Exp-Golomb code with more than {MAX_LEADING_ZEROS} leading zeros in "
                f"{self._context}",
                self._offset(),
            )
        lz = one - start
        end = one + 1 + lz
        if end > len(self._bits):
            raise BitstreamError(f"{self._context} ends inside an Exp-Golomb code", self._offset())
        code = int(self._bits[one:end], 2)
        self._pos = end
        return code - 1

    def read_se(self) -> int:
        return _ue_to_se(self.read_ue())

    def finish(self) -> None:
        """Check the padding: fewer than 8 bits left, all zero."""
        if self.remaining >= 8:
            raise BitstreamError(
                f"{self.remaining // 8} unused byte(s) after the last code in {self._context}",
                self._offset(),
            )
        if "1" in self._bits[self._pos :]:
            raise BitstreamError(f"non-zero padding bits in {self._context}", self._offset())


def encode_se(values: Iterable[int]) -> bytes:
    """Signed Exp-Golomb codes of `values`, concatenated and zero-padded to bytes."""
    w = BitWriter()
    for v in values:
        w.write_se(int(v))
    return w.getvalue()


def decode_se(data: bytes, count: int) -> list[int]:
    """Inverse of encode_se: `count` values; the rest must be zero padding (< 8 bits)."""
    r = BitReader(bytes(data))
    if count > r.remaining:
        raise BitstreamError(f"{count} codes cannot fit in {r.remaining} bits", 0)
    out = [r.read_se() for _ in range(count)]
    r.finish()
    return out


# ---------------------------------------------------------------------------------
# Writer


def _gop_frame_counts(num_frames: int, gop_size: int) -> list[int]:
    full, rest = divmod(num_frames, gop_size)
    return [gop_size] * full + ([rest] if rest else [])


def _validate_header(h: StreamHeader) -> bytes:
    """Check every field's range; return the UTF-8 preset name."""
    if not isinstance(h.preset, str):
        raise ValueError(f"preset must be a str, got {type(h.preset).__name__}")
    preset = h.preset.encode("utf-8")
    if not 1 <= len(preset) <= MAX_PRESET_BYTES:
        raise ValueError(
            f"preset name must be 1..{MAX_PRESET_BYTES} UTF-8 bytes, got {len(preset)}"
        )
    for name, lo, hi in (
        ("width", 1, 0xFFFF),
        ("height", 1, 0xFFFF),
        ("fps_num", 1, 0xFFFF),
        ("fps_den", 1, 0xFFFF),
        ("gop_size", 1, 0xFFFF),
        ("num_kp", 1, 0xFF),
        ("num_frames", 1, 0xFFFFFFFF),
    ):
        value = getattr(h, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an int, got {value!r}")
        if not lo <= value <= hi:
            raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    if not isinstance(h.jacobian, bool | np.bool_):
        raise ValueError(f"jacobian must be a bool, got {h.jacobian!r}")
    if isinstance(h.kp_coder, bool) or h.kp_coder not in KP_CODER_NAMES:
        raise ValueError(f"kp_coder must be 0 (exp-golomb) or 1 (adaptive), got {h.kp_coder!r}")
    _check_step(h.kp_step, "kp_step")
    _check_step(h.jacobian_step, "jacobian_step")
    return preset


def _int_array(a: object, shape: tuple[int, ...], what: str) -> npt.NDArray[np.int64]:
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{what} must be a NumPy integer array, got {type(a).__name__}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be quantised integers (see quantize), got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{what} has shape {a.shape}, expected {shape}")
    a = a.astype(np.int64)
    if a.size and (a.min() < INT32_MIN or a.max() > INT32_MAX):
        raise ValueError(f"{what} has values outside int32 ({a.min()}..{a.max()})")
    return a


def _encode_gop(h: StreamHeader, g: GopPacket, frames: int, i: int) -> bytes:
    """Validate one GOP against the header and return its packet payload."""
    what = f"GOP {i}"
    if isinstance(g.key_codec, bool) or g.key_codec not in CODEC_NAMES:
        raise ValueError(
            f"{what}: key_codec must be 0 (JPEG), 1 (WebP) or 2 (PNG), got {g.key_codec!r}"
        )
    if not isinstance(g.key_frame, bytes | bytearray | memoryview):
        raise ValueError(f"{what}: key_frame must be bytes, got {type(g.key_frame).__name__}")
    key = bytes(g.key_frame)
    if not key:
        raise ValueError(f"{what}: key_frame is empty")
    n_inter = frames - 1
    k = h.num_kp
    src = _int_array(g.source_kp, (k, 2), f"{what}: source_kp")
    inter = _int_array(g.inter_kp, (n_inter, k, 2), f"{what}: inter_kp")
    # Row f of `frames_q` is frame f's values in stream order: per keypoint its two
    # coordinates, then (with Jacobians) per keypoint its four entries row-major.
    frames_q = np.concatenate([src[None], inter]).reshape(frames, 2 * k)
    if h.jacobian:
        if g.source_jacobian is None or g.inter_jacobian is None:
            raise ValueError(f"{what}: header says jacobian=True but the GOP has no Jacobians")
        src_j = _int_array(g.source_jacobian, (k, 2, 2), f"{what}: source_jacobian")
        inter_j = _int_array(g.inter_jacobian, (n_inter, k, 2, 2), f"{what}: inter_jacobian")
        jac = np.concatenate([src_j[None], inter_j]).reshape(frames, 4 * k)
        frames_q = np.concatenate([frames_q, jac], axis=1)
    elif g.source_jacobian is not None or g.inter_jacobian is not None:
        raise ValueError(f"{what}: header says jacobian=False but the GOP has Jacobians")
    if len(key) > 0xFFFFFFFF:
        raise ValueError(f"{what}: key frame of {len(key)} bytes exceeds 2**32 - 1")
    if h.kp_coder == KP_CODER_ADAPTIVE:
        # Imported here: it builds on this module's bit layer, and needs constriction.
        from model.keypoint_coding import encode_adaptive

        section = encode_adaptive(frames_q, k, bool(h.jacobian))
    else:
        section = _encode_exp_golomb(frames_q)
    return _GOP_HEAD.pack(g.key_codec, frames, len(key)) + key + section


def _encode_exp_golomb(frames_q: npt.NDArray[np.int64]) -> bytes:
    """Coder 0: frame 0's values, then each frame's residual from the previous one."""
    coded = np.concatenate([frames_q[:1], np.diff(frames_q, axis=0)]).reshape(-1)
    w = BitWriter()
    for v in coded.tolist():
        w.write_se(v)
    return w.getvalue()


def write_stream(header: StreamHeader, gops: list[GopPacket]) -> bytes:
    """Serialise a clip. Validates everything first: a stream it writes always reads back.

    Raises ValueError naming the field or GOP when the input is inconsistent with
    the header (shapes, GOP count and sizes, codec id, preset name, ranges).
    """
    preset = _validate_header(header)
    counts = _gop_frame_counts(header.num_frames, header.gop_size)
    if len(gops) != len(counts):
        raise ValueError(
            f"{header.num_frames} frames in GOPs of {header.gop_size} need {len(counts)} "
            f"GOPs, got {len(gops)}"
        )
    head = (
        MAGIC
        + bytes([FORMAT_VERSION, len(preset)])
        + preset
        + _HEADER_FIXED[FORMAT_VERSION].pack(
            header.width,
            header.height,
            header.fps_num,
            header.fps_den,
            header.gop_size,
            header.num_kp,
            int(bool(header.jacobian)),
            float(header.kp_step),
            float(header.jacobian_step),
            header.num_frames,
            header.kp_coder,
        )
    )
    out = [head, _CRC.pack(zlib.crc32(head))]
    for i, (g, frames) in enumerate(zip(gops, counts, strict=True)):
        payload = _encode_gop(header, g, frames, i)
        if len(payload) > 0xFFFFFFFF:
            raise ValueError(f"GOP {i}: packet payload of {len(payload)} bytes exceeds 2**32 - 1")
        packet = _PACKET_HEAD.pack(PACKET_GOP, len(payload)) + payload
        out += [packet, _CRC.pack(zlib.crc32(packet))]
    return b"".join(out)


# ---------------------------------------------------------------------------------
# Reader


class _Cursor:
    """Bounds-checked reads from the stream; every failure is a BitstreamError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        left = len(self.data) - self.pos
        if n > left:
            raise BitstreamError(
                f"truncated: {what} needs {n} byte(s), {left} left", self.pos, _TRUNCATED
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


def _read_header(cur: _Cursor) -> tuple[StreamHeader, int]:
    data = cur.data
    if len(data) < len(MAGIC):
        if data == MAGIC[: len(data)]:
            raise BitstreamError(
                f"truncated: stream is {len(data)} byte(s) long", len(data), _TRUNCATED
            )
        raise BitstreamError(f"bad magic {data!r}, expected {MAGIC!r}", 0, _NOT_GRACE)
    magic = cur.take(4, "magic")
    if magic != MAGIC:
        raise BitstreamError(f"bad magic {magic!r}, expected {MAGIC!r}", 0, _NOT_GRACE)
    version = cur.take(1, "format version")[0]
    if version not in SUPPORTED_VERSIONS:
        raise BitstreamError(
            f"unsupported format version {version} (supported: {_SUPPORTED})",
            4,
            _UNSUPPORTED,
        )
    preset_len = cur.take(1, "preset name length")[0]
    preset_raw = cur.take(preset_len, "preset name")
    fixed = cur.take(_HEADER_FIXED[version].size, "header fields")
    crc_at = cur.pos
    (crc,) = _CRC.unpack(cur.take(_CRC.size, "header CRC"))
    if zlib.crc32(data[:crc_at]) != crc:
        raise BitstreamError("header CRC mismatch", crc_at)
    # The CRC matched, so from here on a bad value was written that way on purpose
    # or by a broken writer: say which field.
    w, ht, fn, fd, gop, nkp, jac, kp_step, j_step, nfr, *coder = _HEADER_FIXED[version].unpack(
        fixed
    )
    kp_coder = coder[0] if coder else KP_CODER_EXP_GOLOMB
    if not 1 <= preset_len <= MAX_PRESET_BYTES:
        raise BitstreamError(f"preset name length {preset_len} not in 1..{MAX_PRESET_BYTES}", 5)
    try:
        preset = preset_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BitstreamError("preset name is not valid UTF-8", 6) from None
    base = 6 + preset_len
    for name, value, off in (
        ("width", w, 0),
        ("height", ht, 2),
        ("fps_num", fn, 4),
        ("fps_den", fd, 6),
        ("gop_size", gop, 8),
        ("num_kp", nkp, 10),
        ("num_frames", nfr, 28),
    ):
        if value == 0:
            raise BitstreamError(f"header field {name} is 0", base + off)
    if jac not in (0, 1):
        raise BitstreamError(f"jacobian flag is {jac}, must be 0 or 1", base + 11)
    for name, step, off in (("kp_step", kp_step, 12), ("jacobian_step", j_step, 20)):
        if not (math.isfinite(step) and STEP_MIN <= step <= STEP_MAX):
            raise BitstreamError(f"{name} {step!r} outside [2**-32, 2**16]", base + off)
    if kp_coder not in KP_CODER_NAMES:
        raise BitstreamError(f"unknown keypoint coder {kp_coder}", base + 32)
    header = StreamHeader(
        preset=preset,
        width=w,
        height=ht,
        fps_num=fn,
        fps_den=fd,
        gop_size=gop,
        num_kp=nkp,
        jacobian=bool(jac),
        kp_step=kp_step,
        jacobian_step=j_step,
        num_frames=nfr,
        kp_coder=kp_coder,
    )
    return header, cur.pos


def _decode_gop(h: StreamHeader, payload: bytes, base: int, frames: int, index: int) -> GopPacket:
    """Parse one GOP payload (CRC already checked). `base` = payload's stream offset."""
    where = f"packet {index}"
    if len(payload) < _GOP_HEAD.size:
        raise BitstreamError(f"{where} payload too short for its GOP header", base)
    codec, nfr, key_len = _GOP_HEAD.unpack_from(payload)
    if codec not in CODEC_NAMES:
        raise BitstreamError(f"{where} has unknown key-frame codec id {codec}", base)
    if nfr != frames:
        raise BitstreamError(
            f"{where} has {nfr} frame(s) but the header implies {frames}", base + 1
        )
    if key_len == 0:
        raise BitstreamError(f"{where} has an empty key frame", base + 3)
    bits_at = _GOP_HEAD.size + key_len
    if bits_at > len(payload):
        raise BitstreamError(
            f"{where} key frame length {key_len} runs past the end of the packet", base + 3
        )
    key = payload[_GOP_HEAD.size : bits_at]
    k = h.num_kp
    if h.kp_coder == KP_CODER_ADAPTIVE:
        from model.keypoint_coding import decode_adaptive

        values = decode_adaptive(payload[bits_at:], base + bits_at, frames, k, h.jacobian, where)
    else:
        values = _decode_exp_golomb(h, payload, base, bits_at, frames, where)
    values32 = values.astype(np.int32)
    kp = values32[:, : 2 * k].reshape(frames, k, 2)
    if h.jacobian:
        jac = values32[:, 2 * k :].reshape(frames, k, 2, 2)
        src_j, inter_j = jac[0].copy(), jac[1:].copy()
    else:
        src_j = inter_j = None
    return GopPacket(
        key_codec=codec,
        key_frame=bytes(key),
        source_kp=kp[0].copy(),
        source_jacobian=src_j,
        inter_kp=kp[1:].copy(),
        inter_jacobian=inter_j,
    )


def _decode_exp_golomb(
    h: StreamHeader, payload: bytes, base: int, bits_at: int, frames: int, where: str
) -> npt.NDArray[np.int64]:
    """Coder 0's keypoint section: (frames, V) values, checked against int32."""
    per_frame = h.num_kp * (6 if h.jacobian else 2)
    reader = BitReader(payload[bits_at:], base + bits_at, f"{where} keypoint payload")
    total = per_frame * frames
    if total > reader.remaining:  # every code is >= 1 bit: refuse before allocating
        raise BitstreamError(
            f"{where} needs {total} keypoint codes but has only {reader.remaining} bits",
            base + bits_at,
        )
    values = np.empty((frames, per_frame), dtype=np.int64)
    prev = [0] * per_frame
    for f in range(frames):
        row = values[f]
        for j in range(per_frame):
            v = reader.read_se()
            if f:
                v += prev[j]
            if not INT32_MIN <= v <= INT32_MAX:
                kind = "residual" if f else "value"
                raise BitstreamError(
                    f"{where} frame {f}: keypoint {kind} overflows int32",
                    base + bits_at + reader.position // 8,
                )
            prev[j] = v
            row[j] = v
    reader.finish()
    return values


def _read(data: bytes) -> tuple[StreamHeader, list[GopPacket], StreamStats]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"read_stream expects bytes, got {type(data).__name__}")
    data = bytes(data)
    cur = _Cursor(data)
    header, header_bytes = _read_header(cur)
    # Packets are produced lazily from the frame count: a huge num_frames in a
    # short file fails at the first missing packet, without allocating for it.
    n_gops = -(-header.num_frames // header.gop_size)
    last = header.num_frames - (n_gops - 1) * header.gop_size
    gops: list[GopPacket] = []
    key_bytes = section_bytes = 0
    for i in range(n_gops):
        start = cur.pos
        if start == len(data):
            raise BitstreamError(
                f"truncated: stream ends after {i} of {n_gops} packets", start, _TRUNCATED
            )
        ptype, plen = _PACKET_HEAD.unpack(cur.take(_PACKET_HEAD.size, f"packet {i} header"))
        if ptype != PACKET_GOP:
            raise BitstreamError(f"packet {i} has unknown type 0x{ptype:02x}", start)
        payload = cur.take(plen, f"packet {i} payload")
        (crc,) = _CRC.unpack(cur.take(_CRC.size, f"packet {i} CRC"))
        if zlib.crc32(data[start : start + _PACKET_HEAD.size + plen]) != crc:
            raise BitstreamError(f"packet {i} CRC mismatch", cur.pos - _CRC.size)
        frames = last if i == n_gops - 1 else header.gop_size
        g = _decode_gop(header, payload, start + _PACKET_HEAD.size, frames, i)
        key_bytes += len(g.key_frame)
        section_bytes += plen - _GOP_HEAD.size - len(g.key_frame)
        gops.append(g)
    if cur.pos != len(data):
        raise BitstreamError(
            f"{len(data) - cur.pos} byte(s) of trailing data after the last packet", cur.pos
        )
    stats = StreamStats(
        header_bytes=header_bytes,
        key_frame_bytes=key_bytes,
        keypoint_bytes=len(data) - header_bytes - key_bytes,
        keypoint_section_bytes=section_bytes,
    )
    return header, gops, stats


def read_stream(data: bytes) -> tuple[StreamHeader, list[GopPacket]]:
    """Parse and fully validate a stream. Raises only BitstreamError on malformed data."""
    header, gops, _ = _read(data)
    return header, gops


def stream_stats(data: bytes) -> StreamStats:
    """Byte split of a valid stream (parses and validates it; BitstreamError if it is bad)."""
    return _read(data)[2]
