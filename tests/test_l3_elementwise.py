"""L3's element-wise engine and softmax unit (sim/l3/elementwise.py) against the units.

The words the host sends a unit for a tile (its write streams, its input
words, its command) run through L3's state and return what the RTL is proven
to return (the programs' `expected`, L2's values in the unit's order).
"""

from __future__ import annotations

import numpy as np
import pytest

from defs.params import ActParams, WarpParams, preset
from rtl.act.layouts import ActOp, param_write_layout
from rtl.act.softmax import command_layout
from rtl.warp.layouts import feature_write_layout
from sim.act import place as place_act
from sim.act import sweep_cases as act_cases
from sim.l3.elementwise import ActState, SoftmaxState, UnitCommandError, WarpState
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
    state = SoftmaxState(TINY)
    got = []
    for tile in place_softmax(cases, TINY):
        for word in tile.writes["exp_write"]:
            state.write_exp(word)
        state.inputs.extend(tile.inputs)
        command = command_layout(TINY).from_bits(tile.command)
        got += state.run({"pixels": int(command.pixels), "channels": int(command.channels)})
    np.testing.assert_array_equal(got, expected(cases))


def test_a_tile_without_its_inputs_is_refused() -> None:
    state = SoftmaxState(TINY)
    state.inputs.extend([0] * 5)
    with pytest.raises(
        UnitCommandError, match=r"SOFTMAX\.pixels: the SOFTMAX_INPUT stream holds 5 words, the com"
    ):
        state.run({"pixels": 2, "channels": 3})
    case = SoftmaxCase(np.zeros((3, 1, 1), np.int64), 0.05)
    tile = place_softmax([case], TINY)[0]
    state = SoftmaxState(TINY)  # no exp table loaded: EXP[0] is 0
    state.inputs.extend(tile.inputs)
    with pytest.raises(UnitCommandError, match="EXP\\[0\\] is not 2\\^15"):
        state.run({"pixels": 1, "channels": 3})


@pytest.mark.parametrize(
    ("state", "command", "message"),
    [
        ("act", {"op": ActOp.TABLE, "pixels": 0, "groups": 1, "table": 0},
         "ACT.pixels = 0: must be 1 or more"),  # IndexError: a float index array
        ("act", {"op": ActOp.AFFINE, "pixels": 1, "groups": 0, "param_base": 0, "relu": 0},
         "ACT.groups = 0: must be 1 or more"),  # ValueError: the max of no addresses
        ("act", {"op": ActOp.AFFINE, "pixels": 1, "groups": 2, "param_base": 255, "relu": 0},
         "ACT.param_base: constants 255..256 leave the 256-word buffers"),
        ("softmax", {"pixels": 1, "channels": 0}, "SOFTMAX.channels = 0: must be 1 or more"),
        ("softmax", {"pixels": 1, "channels": 33}, "SOFTMAX.channels = 33: the unit takes 1..32"),
        ("warp", {"planes": 0}, "WARP.planes = 0: must be 1 or more"),  # np.stack of nothing
        ("warp", {"out_width": 0}, "WARP.out_width = 0: must be 1 or more"),  # TypeError
        ("warp", {"in_base": 1021},  # AssertionError, when a flow entry sampled the far end
         "WARP.in_base: the map's words run 1021..1024, the banks hold 1024"),
    ],
)  # fmt: skip
def test_commands_a_unit_cannot_serve_are_refused(state: str, command: dict, message: str):
    """Checked from the fields and depths before anything is read (the inputs are there:
    the refusal is the command's, not the stream's)."""
    units = {"act": ActState, "softmax": SoftmaxState, "warp": WarpState}
    unit = units[state](TINY)
    warp = {"in_base": 0, "in_plane": 4, "in_row": 2, "in_height": 3, "in_width": 3,
            "planes": 1, "out_height": 1, "out_width": 1, "occlusion": 0}  # fmt: skip
    if state == "warp":
        command = warp | command
    for stream in (getattr(unit, n) for n in ("inputs", "flow") if hasattr(unit, n)):
        stream.extend([0] * 64)
    with pytest.raises(UnitCommandError) as info:
        unit.run(command)
    assert str(info.value).startswith(message)


def test_writes_a_unit_cannot_hold_are_refused() -> None:
    """A place the buffer lacks (IndexError before), a shift the requantizer lacks
    (requantize's ValueError at the command before)."""
    params = TINY.replace(name="act-3", act=ActParams(lanes=3, param_depth=96))
    act = ActState(params)
    layout = param_write_layout(params)
    with pytest.raises(UnitCommandError, match=r"^ACT_PARAM write: lane = 3, the buffer holds"):
        act.write_param(layout.const({"lane": 3}).as_bits())
    with pytest.raises(UnitCommandError, match=r"^ACT_PARAM write: addr = 100, the buffer holds"):
        act.write_param(layout.const({"addr": 100}).as_bits())
    with pytest.raises(UnitCommandError, match=r"shift = 48 \(lane 1, addr 2\), the requant"):
        act.write_param(layout.const({"lane": 1, "addr": 2, "data": {"shift": 48}}).as_bits())
    deep = TINY.replace(name="warp-1000", warp=WarpParams(depth=1000))
    feature = feature_write_layout(deep).const({"addr": 1000, "bank": 3}).as_bits()
    with pytest.raises(UnitCommandError, match=r"^WARP_FEATURE write: addr = 1000, the buffer"):
        WarpState(deep).write_feature(feature)
