"""L3's element-wise engine and softmax unit (sim/l3/elementwise.py) against the units.

The words the host sends a unit for a tile (its write streams, its input
words, its command) run through L3's state and return what the RTL is proven
to return (the programs' `expected`, L2's values in the unit's order).
"""

from __future__ import annotations

import numpy as np
import pytest

from defs.params import ActParams, preset
from rtl.act.softmax import command_layout
from sim.act import place as place_act
from sim.act import sweep_cases as act_cases
from sim.l3.elementwise import ActState, SoftmaxState, UnitCommandError
from sim.softmax import SoftmaxCase, expected, sweep_cases
from sim.softmax import place as place_softmax

TINY = preset("tiny")


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_act_tiles_return_what_the_engine_returns(lanes: int) -> None:
    """TABLE and AFFINE tiles of every kind, tables and constants reloaded between them."""
    params = TINY.replace(name=f"act-{lanes}", act=ActParams(lanes=lanes, param_depth=96))
    state = ActState(params)
    for prog in place_act(act_cases(params, 24, seed=3, max_beats=200), params):
        for word in prog.table_writes:
            state.write_table(word)
        for word in prog.param_writes:
            state.write_param(word)
        state.inputs.extend(prog.inputs)
        out = state.run(prog.command_fields)
        got = np.array([[(w >> (8 * lane)) & 0xFF for lane in range(lanes)] for w in out])
        np.testing.assert_array_equal(got[prog.mask], prog.expected[prog.mask])
    assert not state.inputs


def test_softmax_tiles_return_what_the_unit_returns() -> None:
    cases = sweep_cases(TINY, 14, seed=5)
    state = SoftmaxState()
    got = []
    for tile in place_softmax(cases, TINY):
        for word in tile.writes["exp_write"]:
            state.write_exp(word)
        state.inputs.extend(tile.inputs)
        command = command_layout(TINY).from_bits(tile.command)
        got += state.run({"pixels": int(command.pixels), "channels": int(command.channels)})
    np.testing.assert_array_equal(got, expected(cases))


def test_a_tile_without_its_inputs_is_refused() -> None:
    state = SoftmaxState()
    state.inputs.extend([0] * 5)
    with pytest.raises(UnitCommandError, match="SOFTMAX: the input stream holds 5 words, the com"):
        state.run({"pixels": 2, "channels": 3})
    case = SoftmaxCase(np.zeros((3, 1, 1), np.int64), 0.05)
    tile = place_softmax([case], TINY)[0]
    state = SoftmaxState()  # no exp table loaded: EXP[0] is 0
    state.inputs.extend(tile.inputs)
    with pytest.raises(UnitCommandError, match="EXP\\[0\\] is not 2\\^15"):
        state.run({"pixels": 1, "channels": 3})
