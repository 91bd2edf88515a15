"""The parameters object: presets, validation messages, JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from defs.params import (
    PRESETS,
    ArrayParams,
    GraceParams,
    ModelParams,
    NumericParams,
    ParamsError,
    load,
    preset,
)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_json_round_trip(name: str) -> None:
    params = preset(name)
    again = GraceParams.from_json(params.to_json())
    assert again == params
    assert again.key() == params.key()


def test_presets_are_distinct_builds() -> None:
    keys = {p.key() for p in PRESETS.values()}
    assert len(keys) == len(PRESETS)


def test_fomm_256_is_the_vox_256_graph() -> None:
    m = preset("fomm-256").model
    assert (m.image_size, m.block_expansion, m.max_features) == (256, 64, 512)
    assert (m.num_down_blocks, m.num_bottleneck_blocks, m.num_kp) == (2, 6, 10)
    assert (m.dense_block_expansion, m.dense_max_features, m.dense_num_blocks) == (64, 1024, 5)


def test_board_presets_name_their_board() -> None:
    for name in ("ulx3s-85f", "icebreaker"):
        assert preset(name).board == name


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: NumericParams(act_bits=1), "NumericParams.act_bits = 1: must be in 2..16"),
        (lambda: NumericParams(act_bits=8.5), "NumericParams.act_bits = 8.5: must be an integer"),
        (lambda: NumericParams(act_bits=True), "NumericParams.act_bits = True"),
        (lambda: NumericParams(max_shift=60), "NumericParams.max_shift = 60: must be in 1..48"),
        (lambda: NumericParams(acc_bits=48, mult_bits=32), "product width 81"),
        (lambda: ArrayParams(rows=0), "ArrayParams.rows = 0: must be in 1..64"),
        (
            lambda: ModelParams(image_size=80, kp_num_blocks=2, dense_num_blocks=5),
            "dense_num_blocks = 5",
        ),
        (lambda: ModelParams(image_size=80), "kp_num_blocks = 3"),
        (lambda: ModelParams(estimate_jacobian="yes"), "estimate_jacobian"),
        (lambda: GraceParams(clock_hz=5e9), "GraceParams.clock_hz = 5000000000.0"),
        (lambda: GraceParams(board="de10"), "GraceParams.board = 'de10': must be one of"),
        (lambda: GraceParams(name=""), "GraceParams.name"),
    ],
)
def test_invalid_parameters_name_the_field(make, message: str) -> None:
    with pytest.raises(ParamsError, match=_escaped(message)):
        make()


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_params_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("tiny").clock_hz = 1.0  # type: ignore[misc]


def test_from_json_rejects_unknown_and_malformed() -> None:
    with pytest.raises(ParamsError, match=r"GraceParams\.numeric: unknown field.*act_width"):
        GraceParams.from_dict({"numeric": {"act_width": 8}})
    with pytest.raises(ParamsError, match="malformed"):
        GraceParams.from_json("{not json")
    with pytest.raises(ParamsError, match=r"GraceParams\.array: expected a JSON object"):
        GraceParams.from_dict({"array": [4, 4]})


def test_partial_json_keeps_defaults() -> None:
    params = GraceParams.from_dict({"numeric": {"act_bits": 6}})
    assert params.numeric.act_bits == 6
    assert params.numeric.acc_bits == NumericParams().acc_bits


def test_load_presets_and_files(tmp_path) -> None:
    assert load("tiny") is PRESETS["tiny"]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(preset("icebreaker").replace(name="mine").to_dict()))
    assert load(str(path)).name == "mine"
    with pytest.raises(ParamsError, match="unknown preset 'tinny'; known presets: tiny"):
        load("tinny")
    with pytest.raises(ParamsError, match="cannot read parameters file"):
        load(str(tmp_path / "missing.json"))


def test_derived_widths() -> None:
    n = NumericParams()
    assert n.sum_bits == 33
    assert n.product_bits == 49
    assert n.shift_bits == 6
    assert n.mult_max == 65535
