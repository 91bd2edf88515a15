"""Where the conv engine's multipliers go on the die: one array row, one run of DSPs.

Why: left to itself, nextpnr's placer scattered each array row's multipliers
over two of the ECP5-85F's three DSP rows and the whole width of the die (row 5
of the 16×8 array sat between X8 and X110, Y34 and Y58), so every adder tree,
accumulator and operand register was a cross-die route and routing took 8 of
every 10 ns on the critical paths. Pinning the multipliers of each array row to
neighbouring DSP sites (nextpnr's ``BEL`` attribute, set by
`rtl.dsp.Multiplier(site=...)`) keeps a row's adder tree next to its products.

The sites are facts of the device, read off nextpnr's placement of this design
(`nextpnr-ecp5 --85k ... --write placed.json`, attribute ``NEXTPNR_BEL``): the
LFE5U-85F has three DSP rows (Y = 10, 34, 58), each of 13 blocks of four
multipliers ``MULT18_0/1`` at X = a, a + 1 and ``MULT18_4/5`` at X = a + 4, a + 5.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from defs.params import GraceParams

#: First column (X) of each DSP block of the LFE5U-85F, left to right.
_ECP5_85F_BLOCK_COLUMNS = (4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96, 105, 114)
#: The DSP rows (Y), middle first: the middle row is filled first, being nearest
#: to everything else.
_ECP5_85F_DSP_ROWS = (34, 10, 58)
#: Multiplier sites within a block, as (X offset, bel name), left to right.
_BLOCK_SITES = ((0, "MULT18_0"), (1, "MULT18_1"), (4, "MULT18_4"), (5, "MULT18_5"))


def ecp5_85f_dsp_row(y: int) -> list[str]:
    """The ``BEL`` names of one DSP row's 52 multipliers, left to right."""
    return [f"X{a + dx}/Y{y}/{bel}" for a in _ECP5_85F_BLOCK_COLUMNS for dx, bel in _BLOCK_SITES]


def _centred(sites: list[str], count: int) -> list[str]:
    start = (len(sites) - count) // 2
    return sites[start : start + count]


def _around_a_gap(sites: list[str], share: int, cols: int) -> list[str]:
    """`share` runs of `cols` sites, half each side of the row's spare sites."""
    left = (share // 2) * cols
    right = share * cols - left
    return sites[:left] + sites[len(sites) - right :]


def ecp5_85f_mac_sites(rows: int, cols: int) -> dict[tuple[int, int], str]:
    """A site for every (row, col) multiplier: each array row on one DSP row, contiguous.

    Array rows are shared out over the DSP rows as evenly as their capacity allows
    (the middle row takes the remainder first). The top and bottom rows' shares sit
    in the middle of their DSP rows; the middle DSP row keeps its spare sites at
    its centre, for the engine's other multipliers (requantize, residual gain,
    input address), which work with the control logic at the die's centre: left
    the spare sites at the ends, the requantizer's multiplier landed in a corner
    and its routes set the clock. Consecutive array rows stay on one DSP row, so
    the operand registers shared by a group of rows stay near one another.
    """
    row_sites = len(ecp5_85f_dsp_row(_ECP5_85F_DSP_ROWS[0]))
    per_dsp_row = row_sites // cols if cols >= 1 else 0
    if rows < 1 or rows > per_dsp_row * len(_ECP5_85F_DSP_ROWS):
        raise ValueError(
            f"a {rows}×{cols} array does not fit the LFE5U-85F's DSP rows one array row "
            f"per DSP run ({len(_ECP5_85F_DSP_ROWS)} rows of {row_sites} multipliers)"
        )
    base, extra = divmod(rows, len(_ECP5_85F_DSP_ROWS))
    # (never above a row's capacity: base < per_dsp_row whenever extra > 0)
    shares = [base + (k < extra) for k in range(len(_ECP5_85F_DSP_ROWS))]
    sites: dict[tuple[int, int], str] = {}
    # array rows run top to bottom of the die (Y = 10, 34, 58)
    first_row = 0
    for y in sorted(_ECP5_85F_DSP_ROWS):
        share = shares[_ECP5_85F_DSP_ROWS.index(y)]
        dsp_sites = ecp5_85f_dsp_row(y)
        if y == _ECP5_85F_DSP_ROWS[0]:
            run = _around_a_gap(dsp_sites, share, cols)
        else:
            run = _centred(dsp_sites, share * cols)
        for k, site in enumerate(run):
            sites[(first_row + k // cols, k % cols)] = site
        first_row += share
    return sites


#: The conv engine's multipliers outside the array, as the engine's elaborated
#: hierarchy names their modules: the residual gain, the input address, the
#: requantizer's two slices.
CONV_UNIT_MULTIPLIERS = (
    "output.residual_gain",
    "address.row_times_width",
    "output.path.requant.partial0_dsp",
    "output.path.requant.partial1_dsp",
)


def ecp5_85f_unit_sites(rows: int, cols: int) -> dict[str, str]:
    """The engine's other multipliers on the middle DSP row's spare sites, at its
    centre, left to right (as many as there are spare sites).

    The placer was free to put them on any unused site: with the partial sums'
    block RAM added it put the requantizer's two at the top row's right end
    (X109, X114), pulling the output path there, and the output unit's control
    loops through the residual queue and the result credits set the clock at
    142 MHz; pinned to the centre, 151 MHz (docs/conv_engine.md).
    """
    taken = set(ecp5_85f_mac_sites(rows, cols).values())
    spare = [site for site in ecp5_85f_dsp_row(_ECP5_85F_DSP_ROWS[0]) if site not in taken]
    middle = _centred(spare, min(len(spare), len(CONV_UNIT_MULTIPLIERS)))
    return dict(zip(CONV_UNIT_MULTIPLIERS, middle, strict=False))


#: The warp engine's multipliers, by instance (an unnamed part's number may change:
#: a wildcard, still held to one multiplier each).
WARP_MULTIPLIERS = (
    "address.row_times_width",
    "axis_x.scale*",
    "axis_y.scale*",
    "lerp0.column0",
    "lerp0.column1",
    "lerp0.row",
    "output0.requant.partial0_dsp",
    "output0.requant.partial1_dsp",
)


def ecp5_85f_warp_sites() -> dict[str, str]:
    """The warp engine's eight multipliers side by side at the middle DSP row's centre.

    Left to the placer, a change that only moved two payloads' bit positions took
    the default seed from 164.0 to 137.6 MHz (the output path's control routed
    across the die); pinned, 160.7 MHz, and 166.4 / 170.1 with seeds 2 and 3
    (docs/warp_engine.md)."""
    middle = _centred(ecp5_85f_dsp_row(_ECP5_85F_DSP_ROWS[0]), len(WARP_MULTIPLIERS))
    return dict(zip(WARP_MULTIPLIERS, middle, strict=True))


#: Floorplans by FPGA device: (rows, cols) → the multipliers' ``BEL`` sites.
_MAC_FLOORPLANS = {"LFE5U-85F": ecp5_85f_mac_sites}
_UNIT_FLOORPLANS = {"LFE5U-85F": ecp5_85f_unit_sites}


#: Where a block's build finds an engine's multipliers: the harness calls a block
#: `block`; the co-processor's board top holds its engines in its core.
_ENGINE_PATHS = {
    ("conv", "conv"): "block",
    ("warp", "warp"): "block",
    ("top", "conv"): "coproc.core.conv",
}


def block_options(block: str, params: GraceParams, device: str) -> dict[str, object]:
    """Keyword arguments for `make_block` (or the co-processor's board top) that place
    `block` on `device` (may be none): the conv array's sites, in the engine alone and
    in the co-processor alike (unpinned in the top, the placer spread the array's rows
    over the die and the router stalled at ~6,000 overused wires)."""
    floorplan = _MAC_FLOORPLANS.get(device)
    if block not in ("conv", "top") or floorplan is None:
        return {}
    return {"mac_sites": floorplan(params.array.rows, params.array.cols)}


def pin_commands(block: str, params: GraceParams, device: str, top: str) -> str:
    """Yosys commands, run after reading the design, that give the conv engine's
    multipliers outside the array, and the warp engine's, their sites (an empty
    string elsewhere).

    Their instances live in parts other engines share (the requantizer), so
    they are pinned by name here rather than through the engine's arguments;
    each name must select exactly one multiplier, so a renamed part fails the
    build instead of losing its site.
    """
    floorplan = _UNIT_FLOORPLANS.get(device)
    if floorplan is None or block not in ("conv", "warp", "top"):
        return ""
    if block == "warp":
        engine, sites = "warp", ecp5_85f_warp_sites()
    else:
        engine, sites = "conv", floorplan(params.array.rows, params.array.cols)
    prefix = f"{top}.{_ENGINE_PATHS[block, engine]}"
    commands = []
    for path, site in sites.items():
        cell = f"{prefix}.{path}/t:MULT18X18D"
        commands += [f"select -assert-count 1 {cell}", f'setattr -set BEL "{site}" {cell}']
    return "; ".join(commands)
