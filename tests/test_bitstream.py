"""The bitstream of docs/bitstream.md: round trips, the bit layer, and a reader that fails cleanly.

The reader's contract is that malformed input raises BitstreamError and nothing
else, quickly; most tests here attack that contract (every truncation, every
byte flip, fuzzed and mutated streams, and semantically bad payloads whose CRCs
have been recomputed so the parser itself is exercised). Streams of both keypoint
coders and of version 1 are attacked; tests/test_keypoint_coding.py covers coder 1
in depth.
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
    KP_CODER_ADAPTIVE,
    KP_CODER_EXP_GOLOMB,
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
        kp_coder=KP_CODER_ADAPTIVE,
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


def header_length(data: bytes) -> int:
    """Header bytes of a valid stream: version 1 lacks the keypoint-coder byte."""
    return (42 if data[4] == 1 else 43) + data[5]


def packet_spans(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(header length, [(packet start, payload length)]) of a VALID stream, by the spec."""
    header_len = header_length(data)
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


def small_stream(kp_coder: int = KP_CODER_ADAPTIVE) -> bytes:
    h = make_header(num_frames=5, gop_size=3, num_kp=2, kp_coder=kp_coder)
    return write_stream(h, random_gops(h, np.random.default_rng(7), spread=40))


def as_version_1(data: bytes) -> bytes:
    """A v2 Exp-Golomb stream rewritten as version 1: drop the coder byte, fix the CRC."""
    assert data[4] == 2
    header_len = header_length(data)
    assert data[header_len - 5] == KP_CODER_EXP_GOLOMB
    head = data[:4] + b"\x01" + data[5 : header_len - 5]
    return head + struct.pack(">I", zlib.crc32(head)) + data[header_len:]


SMALL = small_stream()  # the default coder: adaptive
SMALL_EG = small_stream(KP_CODER_EXP_GOLOMB)
SMALL_V1 = as_version_1(SMALL_EG)
#: Every stream the fuzz and corruption tests attack, by name.
STREAMS = {"adaptive": SMALL, "exp-golomb": SMALL_EG, "version-1": SMALL_V1}


def parse_or_bitstream_error(data: bytes) -> None:
    try:
        read_stream(data)
    except BitstreamError as e:
        assert "\n" not in str(e)
        assert str(e).startswith("bitstream: ")


# ---------------------------------------------------------------------------------
# Round trips

CODERS = [KP_CODER_EXP_GOLOMB, KP_CODER_ADAPTIVE]
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


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize(("seed", "num_kp", "gop", "frames", "jac"), CASES)
def test_round_trip(seed: int, num_kp: int, gop: int, frames: int, jac: bool, coder: int) -> None:
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
        kp_coder=coder,
    )
    gops = random_gops(h, rng)
    data = write_stream(h, gops)
    h2, gops2 = read_stream(data)
    assert h2 == h
    assert_gops_equal(gops, gops2)
    stats = stream_stats(data)
    assert stats.header_bytes == 43 + len(h.preset.encode())
    assert stats.key_frame_bytes == sum(len(g.key_frame) for g in gops)
    assert stats.header_bytes + stats.key_frame_bytes + stats.keypoint_bytes == len(data)
    # each packet adds 9 framing bytes and a 7-byte GOP header to its keypoint section
    assert stats.keypoint_bytes - stats.keypoint_section_bytes == 16 * len(gops)


@pytest.mark.parametrize("coder", CODERS)
def test_round_trip_extreme_values(coder: int) -> None:
    """int32 extremes next to each other: residuals of ±(2**32 - 1) code and decode."""
    h = make_header(num_kp=2, gop_size=4, num_frames=4, jacobian=False, kp_coder=coder)
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    inter = np.array([[[hi, lo], [0, 0]], [[lo, hi], [hi, lo]], [[0, -1], [lo, hi]]], np.int32)
    g = GopPacket(2, b"\x89PNG", np.array([[lo, hi], [lo, lo]], np.int32), None, inter, None)
    _, (g2,) = read_stream(write_stream(h, [g]))
    assert_gops_equal([g], [g2])


def test_stream_layout_matches_the_spec() -> None:
    """A hand-computed stream: the spec is precise enough to write it byte by byte."""
    h = make_header(
        preset="t",
        gop_size=2,
        num_frames=2,
        num_kp=1,
        jacobian=False,
        kp_step=0.5,
        kp_coder=KP_CODER_EXP_GOLOMB,
    )
    g = GopPacket(
        0,
        b"\xab",
        np.array([[0, 1]], np.int32),
        None,
        np.array([[[-1, 3]]], np.int32),
        None,
    )
    data = write_stream(h, [g])
    head = b"GRCE\x02\x01t" + struct.pack(
        ">5HBBddIB", 256, 256, 25, 1, 2, 1, 0, 0.5, 1 / 64, 2, KP_CODER_EXP_GOLOMB
    )
    # codes: se(0)=1, se(1)=010, residuals se(-1)=011, se(2)=00100 -> 1010011 00100 + 0000
    bits = bytes([0b10100110, 0b01000000])
    payload = b"\x00" + struct.pack(">HI", 2, 1) + b"\xab" + bits
    packet = b"\x01" + struct.pack(">I", len(payload)) + payload
    expected = (
        head + struct.pack(">I", zlib.crc32(head)) + packet + struct.pack(">I", zlib.crc32(packet))
    )
    assert data == expected
    # the same clip as version 1 (no coder byte) reads back to the same keypoints
    v1_head = b"GRCE\x01\x01t" + struct.pack(">5HBBddI", 256, 256, 25, 1, 2, 1, 0, 0.5, 1 / 64, 2)
    v1 = v1_head + struct.pack(">I", zlib.crc32(v1_head)) + data[len(head) + 4 :]
    assert as_version_1(data) == v1
    h1, (g1,) = read_stream(v1)
    assert h1 == h
    assert_gops_equal([g], [g1])


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


@pytest.mark.parametrize("name", STREAMS)
def test_every_truncation_raises(name: str) -> None:
    stream = STREAMS[name]
    for n in range(len(stream)):
        with pytest.raises(BitstreamError):
            read_stream(stream[:n])


@pytest.mark.parametrize("name", STREAMS)
def test_every_single_byte_flip_raises(name: str) -> None:
    data = bytearray(STREAMS[name])
    for i in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            data[i] ^= mask
            with pytest.raises(BitstreamError) as info:
                read_stream(bytes(data))
            assert "\n" not in str(info.value)
            data[i] ^= mask


@pytest.mark.parametrize("version", [0, 3, 255])
def test_wrong_version_names_the_versions(version: int) -> None:
    data = bytearray(SMALL)
    data[4] = version
    with pytest.raises(BitstreamError) as info:
        read_stream(bytes(data))
    msg = str(info.value)
    assert f"version {version} " in msg and "supported: 1, 2" in msg
    assert f"writes version {FORMAT_VERSION}" in msg
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
        "kp_coder": (32, ">B"),
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
        (lambda d: _header_with(d, kp_coder=2), "unknown keypoint coder 2"),
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
    """Exp-Golomb packets (coder 0); tests/test_keypoint_coding.py has coder 1's."""
    with pytest.raises(BitstreamError, match=match) as info:
        read_stream(mutate(SMALL_EG))
    assert "\n" not in str(info.value)


def test_overlong_exp_golomb_and_int32_overflow_in_a_packet() -> None:
    h = make_header(num_kp=1, gop_size=2, num_frames=2, jacobian=False, kp_coder=0)
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
@given(st.sampled_from([1, 2]), st.binary(max_size=300))
def test_fuzz_after_a_valid_magic_and_version(version: int, tail: bytes) -> None:
    parse_or_bitstream_error(MAGIC + bytes([version]) + tail)


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
@given(st.sampled_from(sorted(STREAMS)), st.lists(_EDIT, min_size=1, max_size=6))
def test_fuzz_mutated_valid_stream(name: str, edits: list[tuple[str, int, int]]) -> None:
    buf = _apply(STREAMS[name], edits)
    if bytes(buf) == STREAMS[name]:
        return
    with pytest.raises(BitstreamError):
        read_stream(bytes(buf))


@FUZZ
@given(
    st.sampled_from(sorted(STREAMS)),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_fuzz_mutated_payloads_with_fixed_crcs(name: str, edits: list[tuple[int, int]]) -> None:
    """Replace bytes anywhere except lengths and CRCs, then fix the CRCs: the parser must cope."""
    stream = STREAMS[name]
    header_len, spans = packet_spans(stream)
    editable = list(range(5, header_len - 4))
    for start, plen in spans:
        editable += range(start + 5, start + 5 + plen)
    buf = bytearray(stream)
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
        (lambda h, g: (replace(h, kp_coder=2), g), "kp_coder"),
        (lambda h, g: (replace(h, kp_coder=True), g), "kp_coder"),
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


def _trajectory_stream(kp: np.ndarray, gop: int, step: float, coder: int) -> bytes:
    frames, num_kp, _ = kp.shape
    h = make_header(
        gop_size=gop,
        num_kp=num_kp,
        num_frames=frames,
        jacobian=False,
        kp_step=step,
        kp_coder=coder,
    )
    q = quantize(kp, step)
    gops = [
        GopPacket(0, b"\xff\xd8", q[s], None, q[s + 1 : s + gop], None)
        for s in range(0, frames, gop)
    ]
    data = write_stream(h, gops)
    _, back = read_stream(data)
    np.testing.assert_array_equal(back[0].inter_kp, q[1:gop])
    return data


@pytest.mark.parametrize("coder", CODERS)
def test_predictive_coding_compresses_smooth_motion(coder: int) -> None:
    rng = np.random.default_rng(3)
    frames, num_kp, gop, step = 120, 10, 30, 1 / 256
    start = rng.uniform(-0.8, 0.8, size=(1, num_kp, 2))
    smooth = np.clip(start + np.cumsum(rng.normal(0, 0.004, (frames, num_kp, 2)), 0), -1, 1)
    independent = rng.uniform(-1, 1, size=(frames, num_kp, 2))
    smooth_bytes = stream_stats(_trajectory_stream(smooth, gop, step, coder)).keypoint_bytes
    indep_bytes = stream_stats(_trajectory_stream(independent, gop, step, coder)).keypoint_bytes
    # the same smooth trajectory coded as absolute values (what prediction avoids)
    absolute_bytes = len(encode_se(quantize(smooth, step).ravel().tolist()))
    assert smooth_bytes < 0.5 * indep_bytes
    assert smooth_bytes < 0.5 * absolute_bytes


def test_adaptive_coder_beats_exp_golomb_on_smooth_motion() -> None:
    """The point of coder 1: head-like motion (slow sways plus detector noise) costs clearly
    fewer bits than with coder 0."""
    rng = np.random.default_rng(4)
    frames, num_kp, gop, step = 120, 10, 30, 1 / 256
    t = np.arange(frames)[:, None, None]
    start = rng.uniform(-0.6, 0.6, size=(1, num_kp, 2))
    sway = 0.15 * np.sin(2 * np.pi * t / rng.uniform(40, 80, size=(1, 1, 2)))
    smooth = start + sway + rng.normal(0, 0.004, (frames, num_kp, 2))
    bits = {
        coder: stream_stats(_trajectory_stream(smooth, gop, step, coder)).keypoint_section_bytes
        for coder in CODERS
    }
    assert bits[KP_CODER_ADAPTIVE] < 0.8 * bits[KP_CODER_EXP_GOLOMB], bits


# ---------------------------------------------------------------------------------
# Version 1: streams written before the adaptive coder still decode

#: Written by the version-1 writer (commit 966dcd3, before this format change): GOPs of
#: 3, 5 frames, 2 keypoints with Jacobians; GOP 1 holds the int32 extremes.
V1_FIXTURE = bytes.fromhex(
    "47524345010474696e790040004000190001000302013f700000000000003f9000000000000000000005c3fc1d"
    "75010000005200000300000003ffd8ff00ed01ec02b2010600dd00424050807dc01150023401d404c00c5804a0"
    "013c00ab02582800b40031200a2812e0188008300cd00e380223025802fa01be00d5c0b603340148804140fb1f"
    "f699010000004f0200020000000489504e4700000001fffffffc0000000100000001b009f009600a580a602800"
    "70c06c009800000000ffffffff800000007fffffff850903100c4005ec00bdc012b803bc0164009540e8e36cd1"
)


def test_version_1_fixture_decodes() -> None:
    h, (g0, g1) = read_stream(V1_FIXTURE)
    assert h == StreamHeader(
        "tiny", 64, 64, 25, 1, 3, 2, True, 1 / 256, 1 / 64, 5, kp_coder=KP_CODER_EXP_GOLOMB
    )
    lo, hi = -(2**31), 2**31 - 1
    np.testing.assert_array_equal(g0.source_kp, [[237, -61], [-172, 131]])
    np.testing.assert_array_equal(g0.inter_kp, [[[40, 87], [144, 46]], [[171, -15], [-83, -227]]])
    np.testing.assert_array_equal(g0.inter_jacobian[1, 1], [[70, 143], [-211, 104]])
    assert g1.key_frame == b"\x89PNG" and g1.key_codec == 2
    np.testing.assert_array_equal(g1.source_kp, [[hi, lo], [0, -1]])
    np.testing.assert_array_equal(g1.inter_kp, [[[lo, hi], [5, -5]]])
    np.testing.assert_array_equal(
        g1.inter_jacobian, [[[[208, 173], [214, -296]], [[-259, 253], [197, -222]]]]
    )
    # the v2 writer's Exp-Golomb packets are byte for byte version 1's
    again = write_stream(h, [g0, g1])
    assert as_version_1(again) == V1_FIXTURE
    stats = stream_stats(V1_FIXTURE)
    assert stats.header_bytes == 42 + 4
