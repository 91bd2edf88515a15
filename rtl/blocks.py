"""The blocks `grace elaborate/sim/build --block NAME` know, and their Verilog."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from amaranth.back import verilog
from amaranth.lib import wiring

from rtl.act import ActEngine
from rtl.act.heatmap import HeatmapUnit
from rtl.act.motion import MotionUnit
from rtl.act.softmax import SoftmaxUnit
from rtl.conv import ConvEngine
from rtl.coproc.top import Coprocessor
from rtl.requant import Requantizer
from rtl.warp import WarpEngine

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Each block from the parameters and block-specific options (e.g. a floorplan).
BLOCKS: dict[str, Callable[..., wiring.Component]] = {
    "requant": lambda params: Requantizer(params.numeric),
    "conv": lambda params, **options: ConvEngine(params, **options),
    "warp": lambda params: WarpEngine(params),
    "act": lambda params: ActEngine(params),
    "softmax": lambda params: SoftmaxUnit(params),
    "heatmap": lambda params: HeatmapUnit(params),
    "motion": lambda params: MotionUnit(params),
    "top": lambda params: Coprocessor(params),
}


class UnknownBlock(KeyError):
    def __str__(self) -> str:
        return f"unknown block {self.args[0]!r}; known blocks: {', '.join(BLOCKS)}"


def check_block(name: str) -> None:
    """Raise `UnknownBlock` unless `name` is a block (without building one)."""
    if name not in BLOCKS:
        raise UnknownBlock(name)


def make_block(name: str, params: GraceParams, **options: object) -> wiring.Component:
    check_block(name)
    return BLOCKS[name](params, **options)


def toplevel_name(block: str) -> str:
    """Verilog module name of a block elaborated on its own."""
    return f"grace_{block}"


def component_verilog(component: wiring.Component, block: str) -> str:
    """Verilog without source locations, so the text is stable across checkouts."""
    return verilog.convert(component, name=toplevel_name(block), emit_src=False)


def to_verilog(block: str, params: GraceParams) -> str:
    return component_verilog(make_block(block, params), block)
