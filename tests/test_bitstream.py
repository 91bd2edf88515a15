"""The bitstream of docs/bitstream.md: round trips, the bit layer, and a reader that fails cleanly.

The reader's contract is that malformed input raises BitstreamError and nothing
else, quickly; most tests here attack that contract (every truncation, every
byte flip, fuzzed and mutated streams, and semantically bad payloads whose CRCs
have been recomputed so the parser itself is exercised).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.bitstream import (
    FORMAT_VERSION,
    MAGIC,
    SE_MAX,
    BitReader,
    BitstreamError,
    BitWriter,
    GopPacket,
    StreamHeader,
    decode_se,
    dequantize,
    encode_se,
    quantize,
    read_stream,
    stream_stats,
    write_stream,
)

FUZZ = settings(deadline=1000, max_examples=500, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------
# Helpers


def make_header(**kw: object) -> StreamHeader:
    base = dict(
        preset="tiny",
        width=256,
        height=256,
        fps_num=25,
        fps_den=1,
        gop_size=4,
        num_kp=3,
        jacobian=True,
        kp_step=1 / 256,
        jacobian_step=1 / 64,
        num_frames=10,
    )
    base.update(kw)
    return StreamHeader(**base)  # type: ignore[arg-type]


def frames_per_gop(h: StreamHeader) -> list[int]:
    full, rest = divmod(h.num_frames, h.gop_size)
    return [h.gop_size] * full + ([rest] if rest else [])


def random_gops(h: StreamHeader, rng: np.random.Generator, spread: int = 300) -> list[GopPacket]:
    """Random quantised GOPs matching `h`; values in ±spread, some key frames random bytes."""
    k = h.num_kp
    gops = []
    for n in frames_per_gop(h):

        def ints(*shape: int) -> np.ndarray:
            return rng.integers(-spread, spread + 1, size=shape).astype(np.int32)

        gops.append(
            GopPacket(
                key_codec=int(rng.integers(0, 3)),
                key_frame=rng.bytes(int(rng.integers(1, 40))),
                source_kp=ints(k, 2),
                source_jacobian=ints(k, 2, 2) if h.jacobian else None,
                inter_kp=ints(n - 1, k, 2),
                inter_jacobian=ints(n - 1, k, 2, 2) if h.jacobian else None,
            )
        )
    return gops


def assert_gops_equal(a: list[GopPacket], b: list[GopPacket]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.key_codec == y.key_codec
        assert x.key_frame == y.key_frame
        for name in ("source_kp", "source_jacobian", "inter_kp", "inter_jacobian"):
            u, v = getattr(x, name), getattr(y, name)
            if u is None:
                assert v is None, name
            else:
                assert v.dtype == np.int32, name
                np.testing.assert_array_equal(u, v, err_msg=name)


def packet_spans(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(header length, [(packet start, payload length)]) of a VALID stream, by the spec."""
    header_len = 42 + data[5]
    spans, pos = [], header_len
    while pos < len(data):
        (plen,) = struct.unpack_from(">I", data, pos + 1)
        spans.append((pos, plen))
        pos += 9 + plen
    return header_len, spans


def recrc(data: bytearray, header_len: int, spans: list[tuple[int, int]]) -> bytes:
    """Recompute every CRC so that the parser, not the CRC check, sees a mutation."""
    data[header_len - 4 : header_len] = struct.pack(">I", zlib.crc32(data[: header_len - 4]))
    for start, plen in spans:
        end = start + 5 + plen
        data[end : end + 4] = struct.pack(">I", zlib.crc32(data[start:end]))
    return bytes(data)


def small_stream() -> bytes:
    h = make_header(num_frames=5, gop_size=3, num_kp=2)
    return write_stream(h, random_gops(h, np.random.default_rng(7), spread=40))


SMALL = small_stream()


def parse_or_bitstream_error(data: bytes) -> None:
    try:
        read_stream(data)
    except BitstreamError as e:
        assert "\n" not in str(e)
        assert str(e).startswith("bitstream: ")


# ---------------------------------------------------------------------------------
# Round trips

CASES = [
    # (seed, num_kp, gop_size, num_frames, jacobian)
    (0, 1, 1, 1, False),
    (1, 1, 1, 7, True),
    (2, 10, 30, 95, True),  # last GOP short (5 frames)
    (3, 10, 30, 90, False),  # exact multiple
    (4, 20, 7, 50, True),  # last GOP has 1 frame
    (5, 5, 30, 12, False),  # a single short GOP
    (6, 15, 2, 9, True),
    (7, 20, 13, 27, False),
]


@pytest.mark.parametrize(("seed", "num_kp", "gop", "frames", "jac"), CASES)
def test_round_trip(seed: int, num_kp: int, gop: int, frames: int, jac: bool) -> None:
    rng = np.random.default_rng(seed)
    h = make_header(
        preset="fomm-256é",  # non-ASCII survives
        width=int(rng.integers(1, 65536)),
        height=int(rng.integers(1, 65536)),
        fps_num=30000,
        fps_den=1001,
        gop_size=gop,
        num_kp=num_kp,
        jacobian=jac,
        kp_step=float(rng.uniform(1e-4, 1e-2)),
        jacobian_step=0.1,
        num_frames=frames,
    )
    gops = random_gops(h, rng)
    data = write_stream(h, gops)
    h2, gops2 = read_stream(data)
    assert h2 == h
    assert_gops_equal(gops, gops2)
    stats = stream_stats(data)
    assert stats.header_bytes == 42 + len(h.preset.encode())
    assert stats.key_frame_bytes == sum(len(g.key_frame) for g in gops)
    assert stats.header_bytes + stats.key_frame_bytes + stats.keypoint_bytes == len(data)


def test_round_trip_extreme_values() -> None:
    """int32 extremes next to each other: residuals of ±(2**32 - 1) code and decode."""
    h = make_header(num_kp=2, gop_size=4, num_frames=4, jacobian=False)
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    inter = np.array([[[hi, lo], [0, 0]], [[lo, hi], [hi, lo]], [[0, -1], [lo, hi]]], np.int32)
    g = GopPacket(2, b"\x89PNG", np.array([[lo, hi], [lo, lo]], np.int32), None, inter, None)
    _, (g2,) = read_stream(write_stream(h, [g]))
    assert_gops_equal([g], [g2])


def test_stream_layout_matches_the_spec() -> None:
    """A hand-computed stream: the spec is precise enough to write it byte by byte."""
    h = make_header(preset="t", gop_size=2, num_frames=2, num_kp=1, jacobian=False, kp_step=0.5)
    g = GopPacket(
        0,
        b"\xab",
        np.array([[0, 1]], np.int32),
        None,
        np.array([[[-1, 3]]], np.int32),
        None,
    )
    data = write_stream(h, [g])
    head = b"GRCE\x01\x01t" + struct.pack(">5HBBddI", 256, 256, 25, 1, 2, 1, 0, 0.5, 1 / 64, 2)
    # codes: se(0)=1, se(1)=010, residuals se(-1)=011, se(2)=00100 -> 1010011 00100 + 0000
    bits = bytes([0b10100110, 0b01000000])
    payload = b"\x00" + struct.pack(">HI", 2, 1) + b"\xab" + bits
    packet = b"\x01" + struct.pack(">I", len(payload)) + payload
    expected = (
        head + struct.pack(">I", zlib.crc32(head)) + packet + struct.pack(">I", zlib.crc32(packet))
    )
    assert data == expected


# ---------------------------------------------------------------------------------
# Quantisation


@given(
    st.floats(-4, 4, allow_nan=False),
    st.sampled_from([2.0**-16, 1 / 1000, 2.0**-8, 1 / 3, 0.1, 1.0]),
)
def test_quantize_error_at_most_half_a_step(x: float, step: float) -> None:
    q = quantize(np.array([x]), step)
    assert q.dtype == np.int32
    err = abs(float(dequantize(q, step)[0]) - x)
    # step/2 exactly, plus the float32 rounding of the reconstruction
    assert err <= step / 2 + 2.0**-23 * (abs(x) + step)


def test_quantize_rounds_half_away_from_zero() -> None:
    got = quantize(np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999999999999994, -0.0]), 1.0)
    np.testing.assert_array_equal(got, [1, -1, 2, -2, 3, -3, 0, 0])
    np.testing.assert_array_equal(quantize(np.array([0.375, -0.125]), 0.25), [2, -1])


def test_quantize_refuses_unrepresentable() -> None:
    with pytest.raises(ValueError, match="int32"):
        quantize(np.array([1.0]), 2.0**-32)
    with pytest.raises(ValueError, match="finite"):
        quantize(np.array([np.nan]), 0.1)
    with pytest.raises(ValueError, match="step"):
        quantize(np.array([1.0]), 0.0)
    assert dequantize(np.array([3], np.int32), 0.5).dtype == np.float32


# ---------------------------------------------------------------------------------
# Exp-Golomb and bit I/O


@given(st.lists(st.integers(-SE_MAX, SE_MAX), max_size=200))
def test_exp_golomb_round_trip(values: list[int]) -> None:
    assert decode_se(encode_se(values), len(values)) == values


def test_exp_golomb_worked_example() -> None:
    assert encode_se([0, 1, -1, 2, -2, 3]) == bytes.fromhex("a64298")
    w = BitWriter()
    for u, code in [(0, "1"), (1, "010"), (6, "00111"), (7, "0001000")]:
        before = w.nbits
        w.write_ue(u)
        assert w.nbits - before == len(code)


def test_exp_golomb_limits() -> None:
    with pytest.raises(ValueError):
        encode_se([SE_MAX + 1])
    # 33 leading zeros followed by a one: refused as too long, not as truncated
    too_long = int("0" * 33 + "1" + "0" * 38, 2).to_bytes(9, "big")
    with pytest.raises(BitstreamError, match="leading zeros"):
        BitReader(too_long).read_ue()
    # 32 leading zeros is the longest legal code
    ok = int("0" * 32 + "1" + "1" * 32 + "0" * 7, 2).to_bytes(9, "big")
    assert BitReader(ok).read_ue() == 2**33 - 2
    with pytest.raises(BitstreamError, match="ends inside"):
        BitReader(b"\x00\x00").read_ue()
    with pytest.raises(BitstreamError, match="padding"):
        decode_se(b"\x81", 1)  # code "1", then padding 0000001
    with pytest.raises(BitstreamError, match="unused"):
        decode_se(b"\x80\x00", 1)


# ---------------------------------------------------------------------------------
# Errors: clean, one line, right kind


def test_every_truncation_raises() -> None:
    for n in range(len(SMALL)):
        with pytest.raises(BitstreamError):
            read_stream(SMALL[:n])


def test_every_single_byte_flip_raises() -> None:
    data = bytearray(SMALL)
    for i in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            data[i] ^= mask
            with pytest.raises(BitstreamError) as info:
                read_stream(bytes(data))
            assert "\n" not in str(info.value)
            data[i] ^= mask


def test_wrong_version_names_both_versions() -> None:
    data = bytearray(SMALL)
    data[4] = 2
    with pytest.raises(BitstreamError) as info:
        read_stream(bytes(data))
    msg = str(info.value)
    assert "version 2" in msg and f"supported: {FORMAT_VERSION}" in msg
    assert info.value.offset == 4
    assert msg.count("\n") == 0


def test_messages_are_one_line_with_offset() -> None:
    _, spans = packet_spans(SMALL)
    data = bytearray(SMALL)
    data[spans[1][0] + 12] ^= 0x10  # inside packet 1's payload
    with pytest.raises(BitstreamError) as info:
        read_stream(bytes(data))
    e = info.value
    assert str(e) == (
        f"bitstream: packet 1 CRC mismatch at byte {e.offset}; "
        "the file is corrupt — re-encode or re-transfer it"
    )
    assert isinstance(e, ValueError)
    with pytest.raises(BitstreamError, match="magic"):
        read_stream(b"RIFF" + SMALL[4:])
    with pytest.raises(BitstreamError, match="trailing"):
        read_stream(SMALL + b"\x00")
    with pytest.raises(BitstreamError, match="truncated"):
        read_stream(b"GR")
    with pytest.raises(BitstreamError, match="truncated"):
        read_stream(b"")
    with pytest.raises(BitstreamError, match="magic"):
        read_stream(b"X")


def _with_payload(data: bytes, packet: int, new_payload: bytes) -> bytes:
    """Replace one packet's payload (fixing its length and CRC)."""
    _, spans = packet_spans(data)
    start, plen = spans[packet]
    packet_bytes = b"\x01" + struct.pack(">I", len(new_payload)) + new_payload
    packet_bytes += struct.pack(">I", zlib.crc32(packet_bytes))
    return data[:start] + packet_bytes + data[start + 9 + plen :]


def _payload(data: bytes, packet: int) -> bytes:
    _, spans = packet_spans(data)
    start, plen = spans[packet]
    return data[start + 5 : start + 5 + plen]


def _header_with(data: bytes, **fields: int) -> bytes:
    """Rewrite header fields (by spec offset) and fix the header CRC."""
    offsets = {
        "width": (0, ">H"),
        "num_kp": (10, ">B"),
        "gop_size": (8, ">H"),
        "jacobian": (11, ">B"),
        "kp_step": (12, ">d"),
        "num_frames": (28, ">I"),
    }
    header_len, spans = packet_spans(data)
    buf = bytearray(data)
    base = 6 + data[5]
    for name, value in fields.items():
        off, fmt = offsets[name]
        struct.pack_into(fmt, buf, base + off, value)
    return recrc(buf, header_len, spans)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: _header_with(d, width=0), "width is 0"),
        (lambda d: _header_with(d, num_kp=0), "num_kp is 0"),
        (lambda d: _header_with(d, jacobian=2), "jacobian flag"),
        (lambda d: _header_with(d, kp_step=float("nan")), "kp_step"),
        (lambda d: _header_with(d, num_frames=6), "header implies"),
        (lambda d: _header_with(d, num_frames=2**32 - 1, gop_size=1), "header implies"),
        (lambda d: _header_with(d, num_frames=3), "trailing"),
        (
            lambda d: _header_with(d, num_kp=255, gop_size=65535, num_frames=2**32 - 1),
            "header implies",
        ),
        (lambda d: _with_payload(d, 0, b"\x07" + _payload(d, 0)[1:]), "codec id 7"),
        (
            lambda d: _with_payload(
                d, 0, _payload(d, 0)[:3] + b"\xff\xff\xff\xff" + _payload(d, 0)[7:]
            ),
            "runs past",
        ),
        (
            lambda d: _with_payload(
                d, 0, _payload(d, 0)[:3] + b"\x00\x00\x00\x00" + _payload(d, 0)[7:]
            ),
            "empty key frame",
        ),
        (lambda d: _with_payload(d, 0, _payload(d, 0)[:-3]), "bits|ends inside"),
        (lambda d: _with_payload(d, 0, _payload(d, 0) + b"\x00"), "unused"),
        (lambda d: _with_payload(d, 1, _payload(d, 1)[:5]), "too short|runs past"),
    ],
)
def test_semantic_errors_behind_valid_crcs(mutate, match: str) -> None:
    with pytest.raises(BitstreamError, match=match) as info:
        read_stream(mutate(SMALL))
    assert "\n" not in str(info.value)


def test_overlong_exp_golomb_and_int32_overflow_in_a_packet() -> None:
    h = make_header(num_kp=1, gop_size=2, num_frames=2, jacobian=False)
    g = GopPacket(0, b"k", np.zeros((1, 2), np.int32), None, np.zeros((1, 1, 2), np.int32), None)
    data = write_stream(h, [g])
    head = _payload(data, 0)[: 7 + 1]
    # 40 zero bits then ones: a code with more than 32 leading zeros
    bad = _with_payload(data, 0, head + b"\x00" * 5 + b"\xff" * 20)
    with pytest.raises(BitstreamError, match="leading zeros"):
        read_stream(bad)
    # source x = 2**31 - 1 and a residual of +1: the reconstruction overflows int32
    w = BitWriter()
    for v in (2**31 - 1, 0, 1, 0):
        w.write_se(v)
    with pytest.raises(BitstreamError, match="overflows int32"):
        read_stream(_with_payload(data, 0, head + w.getvalue()))
    # a source value beyond int32 is refused too
    w = BitWriter()
    for v in (2**31, 0, 0, 0):
        w.write_se(v)
    with pytest.raises(BitstreamError, match="overflows int32"):
        read_stream(_with_payload(data, 0, head + w.getvalue()))


def test_read_stream_type_error_for_non_bytes() -> None:
    with pytest.raises(TypeError):
        read_stream("GRCE")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------
# Fuzzing: only BitstreamError, never a hang


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    parse_or_bitstream_error(data)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_after_a_valid_magic_and_version(tail: bytes) -> None:
    parse_or_bitstream_error(MAGIC + bytes([FORMAT_VERSION]) + tail)


_EDIT = st.tuples(
    st.sampled_from(["insert", "delete", "replace"]),
    st.integers(0, 10**6),
    st.integers(0, 255),
)


def _apply(data: bytes, edits: list[tuple[str, int, int]]) -> bytearray:
    buf = bytearray(data)
    for op, pos, byte in edits:
        i = pos % (len(buf) + 1)
        if op == "insert":
            buf.insert(i, byte)
        elif buf and op == "delete":
            del buf[i % len(buf)]
        elif buf:
            buf[i % len(buf)] = byte
    return buf


@FUZZ
@given(st.lists(_EDIT, min_size=1, max_size=6))
def test_fuzz_mutated_valid_stream(edits: list[tuple[str, int, int]]) -> None:
    buf = _apply(SMALL, edits)
    if bytes(buf) == SMALL:
        return
    with pytest.raises(BitstreamError):
        read_stream(bytes(buf))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_mutated_payloads_with_fixed_crcs(edits: list[tuple[int, int]]) -> None:
    """Replace bytes anywhere except lengths and CRCs, then fix the CRCs: the parser must cope."""
    header_len, spans = packet_spans(SMALL)
    editable = list(range(5, header_len - 4))
    for start, plen in spans:
        editable += range(start + 5, start + 5 + plen)
    buf = bytearray(SMALL)
    for pos, byte in edits:
        buf[editable[pos % len(editable)]] = byte
    parse_or_bitstream_error(recrc(buf, header_len, spans))


# ---------------------------------------------------------------------------------
# Writer validation


def _valid() -> tuple[StreamHeader, list[GopPacket]]:
    h = make_header()
    return h, random_gops(h, np.random.default_rng(1))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda h, g: (replace(h, preset="x" * 33), g), "preset"),
        (lambda h, g: (replace(h, preset=""), g), "preset"),
        (lambda h, g: (replace(h, width=0), g), "width"),
        (lambda h, g: (replace(h, gop_size=0), g), "gop_size"),
        (lambda h, g: (replace(h, num_kp=256), g), "num_kp"),
        (lambda h, g: (replace(h, kp_step=0.0), g), "kp_step"),
        (lambda h, g: (replace(h, num_frames=11), g), "GOP 2: inter_kp has shape"),
        (lambda h, g: (replace(h, num_frames=13), g), "need 4 GOPs, got 3"),
        (lambda h, g: (h, g[:-1]), "GOPs"),
        (lambda h, g: (h, [*g[:-1], replace(g[-1], key_codec=3)]), "key_codec"),
        (lambda h, g: (h, [*g[:-1], replace(g[-1], key_frame=b"")]), "empty"),
        (lambda h, g: (h, [replace(g[0], source_kp=g[0].source_kp[:2]), *g[1:]]), "shape"),
        (lambda h, g: (h, [replace(g[0], inter_kp=g[0].inter_kp[:2]), *g[1:]]), "shape"),
        (lambda h, g: (h, [replace(g[0], inter_jacobian=None), *g[1:]]), "Jacobians"),
        (lambda h, g: (replace(h, jacobian=False), g), "Jacobians"),
        (
            lambda h, g: (h, [replace(g[0], source_kp=g[0].source_kp * 0.5), *g[1:]]),
            "quantised integers",
        ),
        (
            lambda h, g: (
                h,
                [replace(g[0], source_kp=g[0].source_kp.astype(np.int64) + 2**31), *g[1:]],
            ),
            "int32",
        ),
    ],
)
def test_writer_rejects_bad_input(change, match: str) -> None:
    h, g = change(*_valid())
    with pytest.raises(ValueError, match=match):
        write_stream(h, g)


# ---------------------------------------------------------------------------------
# Rate: predictive coding pays off


def _trajectory_stream(kp: np.ndarray, gop: int, step: float) -> bytes:
    frames, num_kp, _ = kp.shape
    h = make_header(gop_size=gop, num_kp=num_kp, num_frames=frames, jacobian=False, kp_step=step)
    q = quantize(kp, step)
    gops = [
        GopPacket(0, b"\xff\xd8", q[s], None, q[s + 1 : s + gop], None)
        for s in range(0, frames, gop)
    ]
    data = write_stream(h, gops)
    _, back = read_stream(data)
    np.testing.assert_array_equal(back[0].inter_kp, q[1:gop])
    return data


def test_predictive_coding_compresses_smooth_motion() -> None:
    rng = np.random.default_rng(3)
    frames, num_kp, gop, step = 120, 10, 30, 1 / 256
    start = rng.uniform(-0.8, 0.8, size=(1, num_kp, 2))
    smooth = np.clip(start + np.cumsum(rng.normal(0, 0.004, (frames, num_kp, 2)), 0), -1, 1)
    independent = rng.uniform(-1, 1, size=(frames, num_kp, 2))
    smooth_bytes = stream_stats(_trajectory_stream(smooth, gop, step)).keypoint_bytes
    indep_bytes = stream_stats(_trajectory_stream(independent, gop, step)).keypoint_bytes
    # the same smooth trajectory coded as absolute values (what prediction avoids)
    absolute_bytes = len(encode_se(quantize(smooth, step).ravel().tolist()))
    assert smooth_bytes < 0.5 * indep_bytes
    assert smooth_bytes < 0.5 * absolute_bytes
