"""Adaptive keypoint coding (bitstream coder 1): per-GOP fitted models, rANS, escapes.

The Exp-Golomb coder of version 1 spends 1 + 2·floor(log2(2|r|)) bits on every
residual whatever the motion looks like. This coder fits, per GOP and per kind of
value (keypoint coordinate 0, coordinate 1, Jacobian entries), a predictor (the
previous value, or the linear extrapolation of the last two) and a discrete
Laplace distribution whose decay is one byte, then codes the residuals with an
ANS entropy coder (`constriction.stream.stack.AnsCoder`). Residuals outside the
model's alphabet are sent as an escape symbol plus a signed Exp-Golomb code, so
no value is ever clamped. The key frame's absolute values are Exp-Golomb codes
of an order (a per-kind byte) fitted to their spread.

Everything the decoder derives from the parameter bytes (the frequency tables)
is integer arithmetic specified in docs/bitstream.md, and constriction is only
handed those exact integers (see `_constriction_model`), so an independent
decoder reproduces the stream bit for bit.

The layer below (bit I/O, Exp-Golomb, BitstreamError) is model.bitstream's; that
module imports this one only when a stream uses coder 1.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import constriction
import numpy as np
import numpy.typing as npt

from model.bitstream import (
    INT32_MAX,
    INT32_MIN,
    BitReader,
    BitstreamError,
    BitWriter,
    _se_to_ue,
    _ue_to_se,
)

__all__ = [
    "ALPHABET_RADIUS",
    "ANS_PRECISION",
    "ESCAPE",
    "FREQ_MAX",
    "MAX_SYMBOLS_PER_WORD",
    "NUM_SYMBOLS",
    "KindModel",
    "decode_adaptive",
    "encode_adaptive",
    "frequency_table",
    "kind_of_values",
]

#: Probabilities are integers out of 2**ANS_PRECISION (constriction's default AnsCoder).
ANS_PRECISION = 24
ANS_TOTAL = 1 << ANS_PRECISION
#: Residuals -R..R have a symbol each; anything else is the escape symbol.
ALPHABET_RADIUS = 255
ESCAPE = 2 * ALPHABET_RADIUS + 1
NUM_SYMBOLS = ESCAPE + 1
#: No symbol is more probable than 1 - 2**-6, so every coded symbol costs at least
#: 0.017 bits and a packet's symbol count is bounded by its size (see MAX_SYMBOLS_PER_WORD).
FREQ_MAX = ANS_TOTAL - (ANS_TOTAL >> 6)
#: A reader refuses (n - 1)·V > MAX_SYMBOLS_PER_WORD·(W - 1) before decoding: the
#: ANS state grows by at least 2**0.0171 per symbol (docs/bitstream.md), so a
#: writer never exceeds 1872 symbols per word; this bounds allocation by file size.
MAX_SYMBOLS_PER_WORD = 2048
#: The ANS state before the first symbol is encoded (and after the last is decoded).
ANS_INITIAL_STATE = 1 << 32
PREDICTORS = (1, 2)  # 1: previous value; 2: linear extrapolation of the last two
MAX_SOURCE_ORDER = 31
_WORD = struct.Struct(">I")
_MODEL_BYTES = 3  # source order, predictor, decay


@dataclass(frozen=True)
class KindModel:
    """The three parameter bytes of one kind of value, as stored in the packet."""

    source_order: int  # Exp-Golomb order of the key frame's absolute values, 0..31
    predictor: int  # 1 or 2 (PREDICTORS)
    decay: int  # discrete Laplace decay a/256, a in 0..255


def kind_of_values(num_kp: int, jacobian: bool) -> npt.NDArray[np.int64]:
    """Kind of each of a frame's V values: 0 = coordinate 0, 1 = coordinate 1, 2 = Jacobian."""
    kinds = np.tile([0, 1], num_kp)
    if jacobian:
        kinds = np.concatenate([kinds, np.full(4 * num_kp, 2)])
    return kinds.astype(np.int64)


@functools.lru_cache(maxsize=256)
def _frequency_table(decay: int) -> tuple[int, ...]:
    weights = [ANS_TOTAL]
    for _ in range(ALPHABET_RADIUS + 1):
        weights.append(weights[-1] * decay >> 8)
    escape = 2 * weights[ALPHABET_RADIUS + 1] * 256 // (256 - decay)
    symbol_weights = weights[ALPHABET_RADIUS:0:-1] + weights[: ALPHABET_RADIUS + 1] + [escape]
    total = sum(symbol_weights)
    freq = [1 + w * (ANS_TOTAL - NUM_SYMBOLS) // total for w in symbol_weights]
    zero = ALPHABET_RADIUS  # the symbol of residual 0
    freq[zero] += ANS_TOTAL - sum(freq)
    if freq[zero] > FREQ_MAX:
        excess = freq[zero] - FREQ_MAX
        freq[zero] = FREQ_MAX
        freq[zero + 1] += excess // 2
        freq[zero - 1] += excess - excess // 2
    return tuple(freq)


def frequency_table(decay: int) -> npt.NDArray[np.int64]:
    """The NUM_SYMBOLS integer frequencies (sum 2**24, each >= 1) of decay byte `decay`."""
    if not 0 <= decay <= 255:
        raise ValueError(f"decay {decay} outside 0..255")
    return np.array(_frequency_table(decay), dtype=np.int64)


@functools.lru_cache(maxsize=1)
def _cost_bits() -> npt.NDArray[np.float64]:
    """(256, NUM_SYMBOLS) ideal code lengths, for the encoder's choice of decay."""
    tables = np.stack([frequency_table(a) for a in range(256)])
    return ANS_PRECISION - np.log2(tables)


@functools.lru_cache(maxsize=256)
def _constriction_model(decay: int) -> constriction.stream.model.Categorical:
    """constriction's model with exactly our integer frequencies.

    Its fast quantiser (perfect=False) gives symbol i the left cumulative
    floor(Σ_{j<i} p_j · (2**24 - S) / Σ p) + i. With p_j = f_j - 1 the sum is
    exactly 2**24 - S, the scale exactly 1.0 and all partial sums exact in
    float64, so the cumulatives are Σ_{j<i} f_j: our table, not an approximation
    of it. tests/test_keypoint_coding.py checks this against a reference coder.
    """
    return constriction.stream.model.Categorical(
        (frequency_table(decay) - 1).astype(np.float64), perfect=False
    )


def _wrap32(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Reduce to int32 modulo 2**32: residuals of int32 values always fit int32."""
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def _residuals(q: npt.NDArray[np.int64], predictor: int) -> npt.NDArray[np.int64]:
    """(n - 1, m) residuals of frames 1..n-1 of q (n, m) under `predictor`."""
    steps = np.diff(q, axis=0)
    if predictor == 1:
        return _wrap32(steps)
    residuals = steps.copy()
    residuals[1:] -= steps[:-1]  # frame 1 has one predecessor only: its residual is its step
    return _wrap32(residuals)


def _reconstruct(
    source: npt.NDArray[np.int64], residuals: npt.NDArray[np.int64], predictor: int
) -> npt.NDArray[np.int64]:
    """Inverse of _residuals: frames 0..n-1 from the key frame's values and the residuals.

    Cumulative sums in uint64 wrap modulo 2**64, a multiple of 2**32, so reducing
    once at the end gives the same int32 values as wrapping after every step.
    """
    steps = residuals.astype(np.uint64)
    if predictor == 2:
        steps = np.cumsum(steps, axis=0, dtype=np.uint64)
    values = np.concatenate([source[None].astype(np.uint64), steps]).cumsum(axis=0, dtype=np.uint64)
    return _wrap32((values & np.uint64(0xFFFFFFFF)).astype(np.int64))


def _ue_bits(u: int) -> int:
    return 2 * (u + 1).bit_length() - 1


def _source_order(values: list[int]) -> int:
    """The Exp-Golomb order that codes these absolute values in the fewest bits."""
    us = [_se_to_ue(v) for v in values]
    costs = [sum(_ue_bits(u >> k) + k for u in us) for k in range(MAX_SOURCE_ORDER + 1)]
    return int(np.argmin(costs))


def _fit_kind(residuals: npt.NDArray[np.int64]) -> tuple[int, float]:
    """The decay that codes one kind's residuals in the fewest bits, and that cost."""
    flat = residuals.ravel()
    inside = np.abs(flat) <= ALPHABET_RADIUS
    hist = np.bincount(flat[inside] + ALPHABET_RADIUS, minlength=2 * ALPHABET_RADIUS + 1)
    outliers = flat[~inside]
    costs = _cost_bits()[:, :ESCAPE] @ hist + _cost_bits()[:, ESCAPE] * outliers.size
    decay = int(np.argmin(costs))
    escape_bits = sum(_ue_bits(_se_to_ue(int(v))) for v in outliers)
    return decay, float(costs[decay]) + escape_bits


def _symbols(residuals: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int32], list[int]]:
    """ANS symbols of residuals (frame-major) and the escaped values, in the same order."""
    flat = residuals.ravel()
    inside = np.abs(flat) <= ALPHABET_RADIUS
    symbols = np.where(inside, flat + ALPHABET_RADIUS, ESCAPE).astype(np.int32)
    return symbols, flat[~inside].tolist()


def encode_adaptive(frames_q: npt.NDArray[np.int64], num_kp: int, jacobian: bool) -> bytes:
    """A GOP's keypoint section for coder 1, from its (n, V) quantised values.

    For each kind the encoder picks the predictor and decay that minimise the
    ideal code length, and the source order that minimises the key frame's bits;
    the choices are free (the decoder reads them), only the layout is normative.
    """
    frames_q = np.asarray(frames_q, dtype=np.int64)
    n, _ = frames_q.shape
    kinds = kind_of_values(num_kp, jacobian)
    models: list[KindModel] = []
    symbol_blocks: list[tuple[npt.NDArray[np.int32], int]] = []
    escapes: list[int] = []
    for kind in range(int(kinds.max()) + 1):
        columns = frames_q[:, kinds == kind]
        order = _source_order(columns[0].tolist())
        fits = [(*_fit_kind(_residuals(columns, p)), p) for p in PREDICTORS]
        decay, _, predictor = min(fits, key=lambda fit: fit[1])
        models.append(KindModel(order, predictor, decay))
        symbols, escaped = _symbols(_residuals(columns, predictor))
        symbol_blocks.append((symbols, decay))
        escapes += escaped
    words: list[int] = []
    if n > 1:
        coder = constriction.stream.stack.AnsCoder(np.array([0, 1], dtype=np.uint32))
        # A stack: the block decoded first is encoded last, each block back to front.
        for symbols, decay in reversed(symbol_blocks):
            coder.encode_reverse(symbols, _constriction_model(decay))
        words = coder.get_compressed()[::-1].tolist()  # in the order the decoder reads them
    bits = BitWriter()
    for j, value in enumerate(frames_q[0].tolist()):
        _write_se_order(bits, value, models[kinds[j]].source_order)
    for value in escapes:
        bits.write_se(value)
    head = b"".join(bytes([m.source_order, m.predictor, m.decay]) for m in models)
    return head + _WORD.pack(len(words)) + b"".join(_WORD.pack(w) for w in words) + bits.getvalue()


def _write_se_order(bits: BitWriter, value: int, order: int) -> None:
    """Signed Exp-Golomb of order k: ue(u >> k), then the k low bits of u."""
    u = _se_to_ue(value)
    bits.write_ue(u >> order)
    bits.write_bits(u & ((1 << order) - 1), order)


def _read_se_order(bits: BitReader, order: int) -> int:
    high = bits.read_ue()
    return _ue_to_se(high << order | bits.read_bits(order))


def decode_adaptive(
    section: bytes, base: int, frames: int, num_kp: int, jacobian: bool, where: str
) -> npt.NDArray[np.int64]:
    """Parse a coder-1 keypoint section into (frames, V) int32-valued integers.

    `base` is the section's byte offset in the stream (for error messages); every
    malformed input raises BitstreamError before anything large is allocated.
    """
    kinds = kind_of_values(num_kp, jacobian)
    num_kinds = int(kinds.max()) + 1
    per_frame = kinds.size
    head = _MODEL_BYTES * num_kinds + _WORD.size
    if len(section) < head:
        raise BitstreamError(f"{where} keypoint section too short for its model parameters", base)
    models = []
    for kind in range(num_kinds):
        order, predictor, decay = section[_MODEL_BYTES * kind : _MODEL_BYTES * (kind + 1)]
        at = base + _MODEL_BYTES * kind
        if order > MAX_SOURCE_ORDER:
            raise BitstreamError(
                f"{where} kind {kind} source order {order} > {MAX_SOURCE_ORDER}", at
            )
        if predictor not in PREDICTORS:
            raise BitstreamError(f"{where} kind {kind} predictor {predictor} not 1 or 2", at + 1)
        models.append(KindModel(order, predictor, decay))
    (num_words,) = _WORD.unpack_from(section, head - _WORD.size)
    words_at = head
    bits_at = words_at + _WORD.size * num_words
    if bits_at > len(section):
        raise BitstreamError(
            f"{where} ANS word count {num_words} runs past the end of the packet",
            base + head - _WORD.size,
        )
    num_symbols = (frames - 1) * per_frame
    _check_word_count(num_words, num_symbols, section, base, head, where)
    words = np.frombuffer(section, dtype=">u4", count=num_words, offset=words_at)
    bits = BitReader(section[bits_at:], base + bits_at, f"{where} keypoint bits")
    if per_frame > bits.remaining:  # every code is >= 1 bit: refuse before reading
        raise BitstreamError(
            f"{where} needs {per_frame} source codes but has only {bits.remaining} bits",
            base + bits_at,
        )
    source = np.empty(per_frame, dtype=np.int64)
    for j in range(per_frame):
        value = _read_se_order(bits, models[kinds[j]].source_order)
        if not INT32_MIN <= value <= INT32_MAX:
            raise BitstreamError(f"{where} key-frame value {j} overflows int32", bits.byte_offset())
        source[j] = value
    values = np.empty((frames, per_frame), dtype=np.int64)
    values[0] = source
    if frames > 1:
        blocks = _decode_symbols(words, models, kinds, frames - 1, base + words_at, where)
        for kind, symbols in enumerate(blocks):
            residuals = _unescape(symbols, bits, where)
            columns = kinds == kind
            values[:, columns] = _reconstruct(
                source[columns], residuals.reshape(frames - 1, -1), models[kind].predictor
            )
    bits.finish()
    return values


def _check_word_count(
    num_words: int, num_symbols: int, section: bytes, base: int, head: int, where: str
) -> None:
    at = base + head - _WORD.size
    if num_symbols == 0:
        if num_words:
            raise BitstreamError(f"{where} has {num_words} ANS words but no residuals", at)
        return
    if num_words < 2:
        raise BitstreamError(f"{where} ANS section of {num_words} word(s), needs at least 2", at)
    if section[head : head + _WORD.size] == bytes(_WORD.size):
        raise BitstreamError(f"{where} ANS section starts with a zero word", base + head)
    if num_symbols > MAX_SYMBOLS_PER_WORD * (num_words - 1):
        raise BitstreamError(
            f"{where} codes {num_symbols} residuals in {num_words} ANS words, more than "
            f"{MAX_SYMBOLS_PER_WORD} per word after the first",
            at,
        )


def _decode_symbols(
    words: npt.NDArray[np.uint32],
    models: list[KindModel],
    kinds: npt.NDArray[np.int64],
    inter_frames: int,
    words_offset: int,
    where: str,
) -> list[npt.NDArray[np.int32]]:
    """Every kind's symbols, kind after kind; the coder must end in its initial state."""
    # constriction's AnsCoder is a stack read from the end: reverse the read order.
    coder = constriction.stream.stack.AnsCoder(words[::-1].astype(np.uint32))
    blocks = []
    for kind, model in enumerate(models):
        count = inter_frames * int(np.count_nonzero(kinds == kind))
        blocks.append(coder.decode(_constriction_model(model.decay), count))
    rest = coder.get_compressed()
    if rest.tolist() != [0, 1]:
        raise BitstreamError(
            f"{where} ANS section does not end in the coder's initial state "
            f"({len(rest)} word(s) left over)",
            words_offset,
        )
    return blocks


def _unescape(symbols: npt.NDArray[np.int32], bits: BitReader, where: str) -> npt.NDArray[np.int64]:
    """Residuals from symbols, reading an Exp-Golomb code for each escape."""
    residuals = symbols.astype(np.int64) - ALPHABET_RADIUS
    escaped = np.flatnonzero(symbols == ESCAPE)
    if escaped.size > bits.remaining:
        raise BitstreamError(
            f"{where} has {escaped.size} escapes but only {bits.remaining} bits left",
            bits.byte_offset(),
        )
    for i in escaped.tolist():
        at = bits.byte_offset()
        value = bits.read_se()
        if abs(value) <= ALPHABET_RADIUS:
            raise BitstreamError(
                f"{where} escaped residual {value} lies inside the alphabet ±{ALPHABET_RADIUS}",
                at,
            )
        if not INT32_MIN <= value <= INT32_MAX:
            raise BitstreamError(f"{where} escaped residual overflows int32", at)
        residuals[i] = value
    return residuals
