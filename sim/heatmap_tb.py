"""cocotb testbench for the heatmap unit's elaborated Verilog (`sim.unit_bench`).

Its write streams are the grid axis, the keypoints and the Gaussian table; it
has no input stream. The host side is `sim.heatmap.simulate_cocotb`.
"""

from __future__ import annotations

import cocotb

from sim.unit_bench import run_tiles

#: The unit's write streams, in the order loads.txt counts their words.
WRITE_PORTS = ("grid_write", "keypoint_write", "gaussian_write")


@cocotb.test()
async def heatmap_frames(dut: object) -> None:
    await run_tiles(dut, "heatmap", WRITE_PORTS, "heatmap unit", has_input=False)
