"""The per-GOP source encoding's feature path as one program (compiler/source.py) on L3.

The committed tiny decoder's key frames, quantized by a TABLE tile, through its
first conv and both down blocks (pooling, output-group passes, tiles through
the whole input buffer), layer after layer ordered by tokens through the
compute queue, on tiny's and the ULX3S's arrays and buffers: L3's features
are `encode_source_int`'s, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.conv_layer import LoweredConv, read_output
from compiler.source import lower_source
from defs.params import preset
from model.fixed_decoder import encode_source_int
from model.synthetic import ClipSpec, synthesize_clip
from sim.l3.machine import run

TINY = preset("tiny")


@pytest.fixture(scope="module")
def decoder(tiny_quantized):
    return tiny_quantized[1]


def _features(decoder, frame: np.ndarray, **options) -> np.ndarray:
    lowered = lower_source(decoder, frame, TINY, **options)
    memory = bytearray(lowered.memory)
    run(lowered.words, memory, TINY)
    view = LoweredConv(
        lowered.words, lowered.memory, lowered.features_addr, lowered.features_shape, 0
    )
    return read_output(view, memory, TINY)


@pytest.mark.parametrize("seed", [1_000_123, 1_000_777])
def test_l3_encodes_the_source_as_l2_does(decoder, seed: int) -> None:
    clip = synthesize_clip(ClipSpec(seed=seed, num_frames=1, size=64, face=seed % 90))
    np.testing.assert_array_equal(
        _features(decoder, clip[0]), encode_source_int(decoder, clip[0]).features
    )


def test_extreme_frames_and_short_tiles(decoder) -> None:
    """Black, white and a checkerboard, with tiles of at most 2 output rows."""
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    for frame in (np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8),
                  np.repeat(board[..., None], 3, axis=2)):  # fmt: skip
        got = _features(decoder, frame, tile_rows=2)
        np.testing.assert_array_equal(got, encode_source_int(decoder, frame).features)


def test_the_ulx3s_array(decoder) -> None:
    """The ULX3S's 16 × 8 array: each layer's 16-lane output groups gathered into the
    next one's 8-channel input words."""
    ulx3s = preset("ulx3s-85f")
    frame = synthesize_clip(ClipSpec(seed=1_000_321, num_frames=1, size=64, face=3))[0]
    lowered = lower_source(decoder, frame, ulx3s)
    memory = bytearray(lowered.memory)
    run(lowered.words, memory, ulx3s)
    view = LoweredConv(
        lowered.words, lowered.memory, lowered.features_addr, lowered.features_shape, 0
    )
    np.testing.assert_array_equal(
        read_output(view, memory, ulx3s), encode_source_int(decoder, frame).features
    )


def test_the_icebreaker_runs_the_rows_in_bands(decoder) -> None:
    """16 channels of 64² on a 2 × 2 array: an input row is 512 words, and a pooled
    tile reads 3 rows of a 1,024-word buffer: the rows run in bands of columns."""
    frame = synthesize_clip(ClipSpec(seed=1_000_321, num_frames=1, size=64, face=5))[0]
    lowered = lower_source(decoder, frame, preset("icebreaker"))
    memory = bytearray(lowered.memory)
    run(lowered.words, memory, preset("icebreaker"))
    view = LoweredConv(
        lowered.words, lowered.memory, lowered.features_addr, lowered.features_shape, 0
    )
    got = read_output(view, memory, preset("icebreaker"))
    np.testing.assert_array_equal(got, encode_source_int(decoder, frame).features)
