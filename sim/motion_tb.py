"""cocotb testbench for the motion unit's elaborated Verilog (`sim.unit_bench`).

Its write streams are the grid axis, the keypoints and the Jacobians; its input
stream the flow's mask bytes. The host side is `sim.motion.simulate_cocotb`.
"""

from __future__ import annotations

import cocotb

from sim.unit_bench import run_tiles

#: The unit's write streams, in the order loads.txt counts their words.
WRITE_PORTS = ("grid_write", "keypoint_write", "jacobian_write")


@cocotb.test()
async def motion_commands(dut: object) -> None:
    await run_tiles(dut, "motion", WRITE_PORTS, "motion unit")
