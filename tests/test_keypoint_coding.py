"""Keypoint coder 1 (docs/bitstream.md): tables, ANS words, round trips, clean failures.

The spec's frequency tables, ANS coder and section layout are written again here
from the text alone (`ref_*`, plain Python integers) and must agree with
model/keypoint_coding.py and with what constriction produces, word for word:
that is the evidence a decoder can be written from docs/bitstream.md. The rest
round-trips adversarial residuals exactly (against the Exp-Golomb coder's
integers too) and attacks coder-1 packets, which must fail with one-line
BitstreamErrors.
"""

from __future__ import annotations

import bisect
import struct
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.bitstream import (
    KP_CODER_ADAPTIVE,
    KP_CODER_EXP_GOLOMB,
    BitReader,
    BitstreamError,
    BitWriter,
    GopPacket,
    StreamHeader,
    read_stream,
    stream_stats,
    write_stream,
)
from model.keypoint_coding import (
    FREQ_MAX,
    MAX_SYMBOLS_PER_WORD,
    decode_adaptive,
    encode_adaptive,
    frequency_table,
)

FUZZ = settings(deadline=1000, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
M24 = 1 << 24

# ---------------------------------------------------------------------------------
# The spec, written again


def ref_table(a: int) -> list[int]:
    """docs/bitstream.md, 'Frequency table of decay a', steps 1-5."""
    g = [M24]
    for _ in range(256):
        g.append(g[-1] * a // 256)
    w = [g[abs(s - 255)] for s in range(511)] + [2 * g[256] * 256 // (256 - a)]
    total = sum(w)
    f = [1 + x * (M24 - 512) // total for x in w]
    f[255] += M24 - sum(f)
    f_max = M24 - 2**18
    if f[255] > f_max:
        e = f[255] - f_max
        f[255] = f_max
        f[256] += e // 2
        f[254] += e - e // 2
    return f


def ref_cumulative(f: list[int]) -> list[int]:
    c = [0]
    for x in f[:-1]:
        c.append(c[-1] + x)
    return c


def ref_ans_encode(coded: Sequence[tuple[int, list[int], list[int]]]) -> list[int]:
    """The informative encoder: (symbol, f, c) in decode order -> the stored words."""
    x, out = 2**32, []
    for s, f, c in reversed(coded):
        if x >> 40 >= f[s]:
            out.append(x & 0xFFFFFFFF)
            x >>= 32
        x = (x // f[s] << 24) + c[s] + x % f[s]
    out += [x & 0xFFFFFFFF, x >> 32]
    return out[::-1]


def ref_kinds(num_kp: int, jacobian: bool) -> list[int]:
    return [j % 2 for j in range(2 * num_kp)] + ([2] * 4 * num_kp if jacobian else [])


def wrap(x: int) -> int:
    return ((x + 2**31) % 2**32) - 2**31


def ref_se_order(bits: BitReader, k: int) -> int:
    u = bits.read_ue() << k | bits.read_bits(k)
    return (u + 1) // 2 if u & 1 else -(u // 2)


def ref_decode(section: bytes, n: int, num_kp: int, jacobian: bool) -> list[list[int]]:
    """A coder-1 keypoint section -> q[f][j], following the spec text step by step."""
    kinds = ref_kinds(num_kp, jacobian)
    nk = max(kinds) + 1
    models = [tuple(section[3 * c : 3 * c + 3]) for c in range(nk)]
    (num_words,) = struct.unpack_from(">I", section, 3 * nk)
    words = list(struct.unpack_from(f">{num_words}I", section, 3 * nk + 4))
    bits = BitReader(section[3 * nk + 4 + 4 * num_words :])
    v = len(kinds)
    q = [[0] * v for _ in range(n)]
    q[0] = [ref_se_order(bits, models[kinds[j]][0]) for j in range(v)]
    if n == 1:
        assert num_words == 0
        bits.finish()
        return q
    x, i = words[0] << 32 | words[1], 2
    residual = [[0] * v for _ in range(n)]
    for c in range(nk):
        f = ref_table(models[c][2])
        cum = ref_cumulative(f)
        for fr in range(1, n):
            for j in (j for j in range(v) if kinds[j] == c):
                z = x % M24
                s = bisect.bisect_right(cum, z) - 1
                x = (x >> 24) * f[s] + z - cum[s]
                if x < 2**32 and i < num_words:
                    x, i = x << 32 | words[i], i + 1
                residual[fr][j] = s - 255 if s != 511 else None
    assert i == num_words and x == 2**32
    for c in range(nk):  # escapes follow in symbol order: kind, frame, j
        for fr in range(1, n):
            for j in (j for j in range(v) if kinds[j] == c):
                if residual[fr][j] is None:
                    residual[fr][j] = bits.read_se()
    bits.finish()
    for fr in range(1, n):
        for j in range(v):
            predictor = models[kinds[j]][1]
            pred = q[fr - 1][j] if fr == 1 or predictor == 1 else 2 * q[fr - 1][j] - q[fr - 2][j]
            q[fr][j] = wrap(pred + residual[fr][j])
    return q


def ref_section(
    models: list[tuple[int, int, int]],
    source: list[int],
    symbols: list[list[int]],
    escapes: Sequence[int],
    num_kp: int,
    jacobian: bool,
) -> bytes:
    """Build a coder-1 section from chosen symbols (kind by kind), for malformed packets."""
    kinds = ref_kinds(num_kp, jacobian)
    coded = []
    for (_, _, a), block in zip(models, symbols, strict=True):
        f = ref_table(a)
        coded += [(s, f, ref_cumulative(f)) for s in block]
    words = ref_ans_encode(coded) if coded else []
    bits = BitWriter()
    for j, value in enumerate(source):
        k = models[kinds[j]][0]
        u = 2 * value - 1 if value > 0 else -2 * value
        bits.write_ue(u >> k)
        bits.write_bits(u & ((1 << k) - 1), k)
    for value in escapes:
        bits.write_se(value)
    head = b"".join(bytes(m) for m in models)
    return head + struct.pack(f">I{len(words)}I", len(words), *words) + bits.getvalue()


# ---------------------------------------------------------------------------------
# Tables and words: the code, constriction and the spec agree


def test_tables_match_the_spec() -> None:
    for a in range(256):
        table = frequency_table(a)
        assert table.tolist() == ref_table(a), a
        assert table.sum() == M24 and table.min() >= 1 and table.max() <= FREQ_MAX
    t = frequency_table(128)  # the spec's examples
    assert (t[255], t[254], t[256], t[253], t[511]) == (5592259, 2796118, 2796118, 1398059, 1)
    t = frequency_table(0)
    assert (t[255], t[254], t[256]) == (16515072, 130818, 130817)
    assert set(t[:254].tolist() + t[257:].tolist()) == {1}


def _section_words(section: bytes, num_kinds: int) -> list[int]:
    (count,) = struct.unpack_from(">I", section, 3 * num_kinds)
    return list(struct.unpack_from(f">{count}I", section, 3 * num_kinds + 4))


def _ref_symbols(q: np.ndarray, section: bytes, num_kp: int, jacobian: bool) -> list:
    """(symbol, f, c) of q under the section's models, by the spec."""
    kinds = ref_kinds(num_kp, jacobian)
    coded = []
    for c in range(max(kinds) + 1):
        _, predictor, a = section[3 * c : 3 * c + 3]
        f = ref_table(a)
        cum = ref_cumulative(f)
        for fr in range(1, len(q)):
            for j in (j for j in range(len(kinds)) if kinds[j] == c):
                prev = int(q[fr - 1][j])
                pred = prev if fr == 1 or predictor == 1 else 2 * prev - int(q[fr - 2][j])
                r = wrap(int(q[fr][j]) - pred)
                coded.append((r + 255 if abs(r) <= 255 else 511, f, cum))
    return coded


@pytest.mark.parametrize("seed", range(6))
def test_constriction_writes_the_spec_words(seed: int) -> None:
    """encode_adaptive (via constriction) == the spec's encoder; the spec's decoder reads it."""
    rng = np.random.default_rng(seed)
    num_kp, jacobian = int(rng.integers(1, 5)), bool(seed % 2)
    n, v = int(rng.integers(2, 30)), len(ref_kinds(num_kp, jacobian))
    scale = [0.5, 3, 40, 400, 1e5, 1e9][seed]
    steps = np.rint(rng.laplace(0, scale, (n, v))).clip(-(2**30), 2**30).astype(np.int64)
    q = np.cumsum(steps, axis=0).clip(INT32_MIN, INT32_MAX)
    section = encode_adaptive(q, num_kp, jacobian)
    nk = max(ref_kinds(num_kp, jacobian)) + 1
    assert _section_words(section, nk) == ref_ans_encode(_ref_symbols(q, section, num_kp, jacobian))
    assert ref_decode(section, n, num_kp, jacobian) == q.tolist()


DOC_EXAMPLE = bytes.fromhex("03023c 0301ff 00000002 00003bb948daf4c7 6f8012f0")


def test_the_worked_example_of_the_spec() -> None:
    q = [[10, -3], [11, -3], [12, 300]]
    assert encode_adaptive(np.array(q), 1, False) == DOC_EXAMPLE
    assert ref_decode(DOC_EXAMPLE, 3, 1, False) == q
    assert decode_adaptive(DOC_EXAMPLE, 0, 3, 1, False, "example").tolist() == q


# ---------------------------------------------------------------------------------
# Exact round trips, corners included


def _gop_values(name: str, rng: np.random.Generator, n: int, v: int) -> np.ndarray:
    """(n, V) int32 values of one GOP for each adversarial case."""
    if name == "zeros":
        return np.zeros((n, v), np.int64)
    if name == "int32 limits":  # every value jumps between the two ends of int32
        return np.where(rng.random((n, v)) < 0.5, INT32_MIN, INT32_MAX)
    if name == "alternating signs":
        return np.tile(np.array([[7], [-7]]), (n // 2 + 1, v))[:n] * np.arange(1, v + 1)
    if name == "alternating int32 limits":
        return np.tile(np.array([[INT32_MAX], [INT32_MIN]]), (n // 2 + 1, v))[:n]
    if name == "one value repeated":
        return np.full((n, v), 123_456_789)
    if name == "small random walk":
        return np.cumsum(rng.integers(-3, 4, (n, v)), axis=0)
    if name == "outliers among small steps":  # escapes of every size, up to 2**31
        steps = rng.integers(-2, 3, (n, v))
        steps[rng.random((n, v)) < 0.1] = rng.choice([256, -256, 300, 70_000, 2**30], 1)[0]
        return np.cumsum(steps, axis=0).clip(INT32_MIN, INT32_MAX)
    if name == "uniform int32":
        return rng.integers(INT32_MIN, INT32_MAX, (n, v), endpoint=True)
    raise AssertionError(name)


CORNERS = [
    "zeros",
    "int32 limits",
    "alternating signs",
    "alternating int32 limits",
    "one value repeated",
    "small random walk",
    "outliers among small steps",
    "uniform int32",
]


@pytest.mark.parametrize("jacobian", [False, True])
@pytest.mark.parametrize("case", CORNERS)
def test_round_trip_is_exact_and_equals_exp_golomb(case: str, jacobian: bool) -> None:
    """Through write_stream/read_stream: GOPs of 7, 7 and 1 frames (a single-frame GOP)."""
    rng = np.random.default_rng(CORNERS.index(case))
    num_kp, frames, gop = 3, 15, 7
    v = num_kp * (6 if jacobian else 2)
    gops = []
    for start in range(0, frames, gop):
        n = min(gop, frames - start)
        q = _gop_values(case, rng, n, v).astype(np.int32)
        # the section alone, before read_stream narrows the values to int32
        section = encode_adaptive(q, num_kp, jacobian)
        np.testing.assert_array_equal(decode_adaptive(section, 0, n, num_kp, jacobian, "g"), q)
        kp = q[:, : 2 * num_kp].reshape(n, num_kp, 2)
        jac = q[:, 2 * num_kp :].reshape(n, num_kp, 2, 2) if jacobian else None
        gops.append(
            GopPacket(
                0,
                b"k",
                kp[0],
                None if jac is None else jac[0],
                kp[1:],
                None if jac is None else jac[1:],
            )
        )
    decoded = {}
    for coder in (KP_CODER_EXP_GOLOMB, KP_CODER_ADAPTIVE):
        h = StreamHeader("t", 8, 8, 25, 1, gop, num_kp, jacobian, 1 / 256, 1 / 64, frames, coder)
        decoded[coder] = read_stream(write_stream(h, gops))[1]
    for g, a, e in zip(gops, decoded[KP_CODER_ADAPTIVE], decoded[KP_CODER_EXP_GOLOMB], strict=True):
        for name in ("source_kp", "inter_kp", "source_jacobian", "inter_jacobian"):
            want = getattr(g, name)
            for got in (getattr(a, name), getattr(e, name)):
                if want is None:
                    assert got is None
                else:
                    assert got.dtype == np.int32
                    np.testing.assert_array_equal(got, want, err_msg=f"{case} {name}")


@pytest.mark.parametrize("seed", range(20))
def test_random_sections_round_trip(seed: int) -> None:
    """Direct encode/decode of random GOPs: 1..40 frames, spreads from 0 to all of int32."""
    rng = np.random.default_rng(1000 + seed)
    num_kp, jacobian = int(rng.integers(1, 12)), bool(rng.integers(0, 2))
    n, v = int(rng.integers(1, 41)), len(ref_kinds(num_kp, jacobian))
    spread = int(rng.choice([0, 1, 5, 255, 256, 10_000, 2**31 - 1]))
    steps = rng.integers(-spread, spread + 1, (n, v))
    q = np.cumsum(steps, axis=0).clip(INT32_MIN, INT32_MAX)
    section = encode_adaptive(q, num_kp, jacobian)
    np.testing.assert_array_equal(decode_adaptive(section, 0, n, num_kp, jacobian, "gop"), q)


def test_the_encoder_picks_the_predictor_that_fits() -> None:
    """Linear motion is cheapest with extrapolation (2), noise around a point with 1."""
    t = np.arange(30)[:, None]
    linear = 5 * t + np.array([[0, 100]])
    assert encode_adaptive(linear, 1, False)[1::3][:2] == b"\x02\x02"
    noise = np.random.default_rng(0).integers(-20, 21, (30, 2))
    assert encode_adaptive(noise, 1, False)[1::3][:2] == b"\x01\x01"
    for q in (linear, noise):
        np.testing.assert_array_equal(
            decode_adaptive(encode_adaptive(q, 1, False), 0, 30, 1, False, "g"), q
        )


def test_symbol_count_stays_under_the_per_word_bound() -> None:
    """All zeros is the cheapest GOP there is; it still needs a word per 1872 symbols."""
    n, num_kp = 2000, 10
    v = 6 * num_kp
    section = encode_adaptive(np.zeros((n, v), np.int64), num_kp, True)
    words = len(_section_words(section, 3))
    assert (n - 1) * v <= 1872 * (words - 1) <= MAX_SYMBOLS_PER_WORD * (words - 1)
    assert not decode_adaptive(section, 0, n, num_kp, True, "gop").any()


# ---------------------------------------------------------------------------------
# Malformed coder-1 packets: one-line BitstreamErrors


def _stream_with_section(section: bytes, n: int, num_kp: int = 1) -> bytes:
    """A valid-CRC stream of one GOP of n frames (no Jacobians) whose keypoint section is given."""
    h = StreamHeader("t", 8, 8, 25, 1, n, num_kp, False, 1 / 256, 1 / 64, n, KP_CODER_ADAPTIVE)
    zeros = np.zeros((num_kp, 2), np.int32)
    g = GopPacket(0, b"k", zeros, None, np.zeros((n - 1, num_kp, 2), np.int32), None)
    data = write_stream(h, [g])
    header_len = 43 + 1
    payload = data[header_len + 5 : -4][:8] + section
    packet = b"\x01" + struct.pack(">I", len(payload)) + payload
    return data[:header_len] + packet + struct.pack(">I", zlib.crc32(packet))


GOOD = [(0, 1, 100), (0, 1, 100)]  # source order, predictor, decay for kinds 0 and 1


def _escape_section(value: int) -> bytes:
    """n = 2, one keypoint; kind 0's only residual escaped with `value`."""
    return ref_section(GOOD, [0, 0], [[511], [255]], [value], 1, False)


MALFORMED: list[tuple[str, Callable[[], bytes], str]] = [
    ("short", lambda: _stream_with_section(b"\x00\x01", 2), "too short for its model"),
    (
        "order",
        lambda: _stream_with_section(
            ref_section([(32, 1, 0), GOOD[1]], [0, 0], [[255], [255]], [], 1, False), 2
        ),
        "source order 32",
    ),
    (
        "predictor 0",
        lambda: _stream_with_section(
            ref_section([(0, 0, 9), GOOD[1]], [0, 0], [[255], [255]], [], 1, False), 2
        ),
        "predictor 0 not 1 or 2",
    ),
    (
        "predictor 3",
        lambda: _stream_with_section(
            ref_section([GOOD[0], (0, 3, 9)], [0, 0], [[255], [255]], [], 1, False), 2
        ),
        "predictor 3",
    ),
    (
        "words run past",
        lambda: _stream_with_section(bytes([0, 1, 0] * 2) + b"\xff\xff\xff\xff" + b"\x80", 2),
        "runs past",
    ),
    (
        "no words",
        lambda: _stream_with_section(bytes([0, 1, 0] * 2) + bytes(4) + b"\xc0", 2),
        "needs at least 2",
    ),
    (
        "one word",
        lambda: _stream_with_section(bytes([0, 1, 0] * 2) + struct.pack(">II", 1, 7) + b"\xc0", 2),
        "needs at least 2",
    ),
    (
        "words without residuals",
        lambda: _stream_with_section(
            bytes([0, 1, 0] * 2) + struct.pack(">III", 2, 1, 0) + b"\xc0", 1
        ),
        "ANS words but no residuals",
    ),
    (
        "zero first word",
        lambda: _stream_with_section(
            bytes([0, 1, 0] * 2) + struct.pack(">III", 2, 0, 5) + b"\xc0", 2
        ),
        "starts with a zero word",
    ),
    (
        "too many symbols per word",  # 3000 frames of zeros claimed in two words
        lambda: _stream_with_section(
            bytes([0, 1, 0] * 2) + struct.pack(">III", 2, 1, 0) + b"\xc0", 3000
        ),
        "more than 2048 per word",
    ),
    (
        "words left over",
        lambda: _stream_with_section(
            bytes([0, 1, 0] * 2) + struct.pack(">IIII", 3, 1, 0, 12345) + b"\xc0", 2
        ),
        "does not end in the coder's initial state",
    ),
    (
        "escape inside the alphabet",
        lambda: _stream_with_section(_escape_section(-255), 2),
        "inside the alphabet",
    ),
    (
        "escape beyond int32",
        lambda: _stream_with_section(_escape_section(2**31), 2),
        "overflows int32",
    ),
    (
        "source beyond int32",
        lambda: _stream_with_section(
            ref_section(GOOD, [-(2**31) - 1, 0], [[255], [255]], [], 1, False), 2
        ),
        "key-frame value 0 overflows int32",
    ),
    (
        "escape without bits",
        lambda: _stream_with_section(ref_section(GOOD, [0, 0], [[511], [511]], [], 1, False), 2),
        "escapes but only|ends inside",
    ),
    (
        "unused byte",
        lambda: _stream_with_section(
            ref_section(GOOD, [0, 0], [[255], [255]], [], 1, False) + b"\x00", 2
        ),
        "unused byte",
    ),
    (
        "no source bits",
        lambda: _stream_with_section(
            ref_section(GOOD, [0, 0], [[255], [255]], [], 1, False)[:-1], 2
        ),
        "needs 2 source codes",
    ),
]


@pytest.mark.parametrize(("name", "make", "match"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_sections_behind_valid_crcs(
    name: str, make: Callable[[], bytes], match: str
) -> None:
    with pytest.raises(BitstreamError, match=match) as info:
        read_stream(make())
    assert "\n" not in str(info.value) and str(info.value).startswith("bitstream: ")
    assert info.value.offset is not None


def test_a_well_formed_hand_built_section_decodes() -> None:
    """The malformed cases above differ from this one in one field each."""
    _, (g,) = read_stream(_stream_with_section(_escape_section(-256), 2))
    np.testing.assert_array_equal(g.inter_kp, [[[-256, 0]]])


def _check_decoded(values: np.ndarray, n: int, v: int) -> None:
    assert values.shape == (n, v)
    assert values.min(initial=0) >= INT32_MIN and values.max(initial=0) <= INT32_MAX


@FUZZ
@given(st.binary(max_size=200), st.integers(1, 6), st.integers(1, 3), st.booleans())
def test_fuzz_arbitrary_sections(section: bytes, n: int, num_kp: int, jacobian: bool) -> None:
    try:
        values = decode_adaptive(section, 0, n, num_kp, jacobian, "fuzz")
    except BitstreamError as e:
        assert "\n" not in str(e)
        return
    _check_decoded(values, n, num_kp * (6 if jacobian else 2))


_SECTION_Q = np.cumsum(np.random.default_rng(5).integers(-300, 301, (6, 12)), axis=0)
VALID_SECTION = encode_adaptive(_SECTION_Q, 2, True)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_mutated_valid_section(edits: list[tuple[int, int]]) -> None:
    buf = bytearray(VALID_SECTION)
    for pos, byte in edits:
        buf[pos % len(buf)] = byte
    try:
        values = decode_adaptive(bytes(buf), 0, 6, 2, True, "fuzz")
    except BitstreamError as e:
        assert "\n" not in str(e)
        return
    _check_decoded(values, 6, 12)
    if bytes(buf) == VALID_SECTION:
        np.testing.assert_array_equal(values, _SECTION_Q)


# ---------------------------------------------------------------------------------
# Reporting


def test_bitrate_reports_keypoint_bits_per_frame() -> None:
    from grace.codec_run import CodecReport
    from model.codec import bitrate

    rng = np.random.default_rng(2)
    kp = np.cumsum(rng.integers(-4, 5, (50, 10, 2)), axis=0).astype(np.int32)
    gops = [GopPacket(0, b"\xff" * 300, kp[s], None, kp[s + 1 : s + 25], None) for s in (0, 25)]
    for coder, name in ((KP_CODER_EXP_GOLOMB, "exp-golomb"), (KP_CODER_ADAPTIVE, "adaptive")):
        h = StreamHeader("tiny", 64, 64, 25, 1, 25, 10, False, 1 / 256, 1 / 64, 50, coder)
        data = write_stream(h, gops)
        rate = bitrate(data)
        assert rate.keypoint_coder == name
        section = stream_stats(data).keypoint_section_bytes
        assert rate.keypoint_bits_per_frame == pytest.approx(8 * section / 50)
        lines = CodecReport(rate, None, 50, 25, 64).lines()
        kbps = rate.keypoint_bits_per_frame * 25 / 1000
        bits = rate.keypoint_bits_per_frame
        assert f"keypoints ({name} coder): {bits:.1f} bits/frame, {kbps:.2f} kbps" in lines
