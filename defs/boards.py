"""The boards GRACE builds for: each one's die, its capacities and its clock target.

One table, read by the parameters (which boards a preset may name), by
`boards/` (which amaranth-boards platform and tools build it) and by the tests
and reports that check a design fits its die. Capacities are the device's
datasheet counts, as nextpnr reports them as "available".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BoardSpec:
    """One supported board and the FPGA on it."""

    name: str
    device: str  # part name as amaranth-boards and nextpnr spell it
    family: str  # "ecp5" or "ice40": selects the DSP primitive and the report's cells
    dsp: int  # MULT18X18D (ECP5) or SB_MAC16 (iCE40)
    block_ram: int  # DP16KD (18 Kbit, ECP5) or EBR (4 Kbit, iCE40)
    luts: int  # 4-input LUTs (TRELLIS_COMB on ECP5, ICESTORM_LC on iCE40)
    clock_hz: float  # the engine's clock target on this board
    memory_bytes: int = 0  # external RAM the accelerator's memory image lives in

    @property
    def dsp_cell(self) -> str:
        return {"ecp5": "MULT18X18D", "ice40": "SB_MAC16"}[self.family]

    @property
    def block_ram_cell(self) -> str:
        return {"ecp5": "DP16KD", "ice40": "ICESTORM_RAM"}[self.family]


BOARD_SPECS: dict[str, BoardSpec] = {
    "ulx3s-85f": BoardSpec(
        name="ulx3s-85f",
        device="LFE5U-85F",
        family="ecp5",
        dsp=156,
        block_ram=208,
        luts=83_640,
        clock_hz=150e6,
        memory_bytes=32 << 20,  # 32 MB SDRAM
    ),
    "icebreaker": BoardSpec(
        name="icebreaker",
        device="iCE40UP5K",
        family="ice40",
        dsp=8,
        block_ram=30,
        luts=5_280,
        clock_hz=50e6,
        memory_bytes=0,  # no RAM on the board: the UP5K's 128 KB SPRAM is the engines'
    ),
}


class UnknownBoard(KeyError):
    def __str__(self) -> str:
        return f"unknown board {self.args[0]!r}; supported boards: {', '.join(BOARD_SPECS)}"


def board_spec(name: str) -> BoardSpec:
    """The board named `name`, or one clear error listing the supported ones."""
    try:
        return BOARD_SPECS[name]
    except KeyError:
        raise UnknownBoard(name) from None
