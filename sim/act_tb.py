"""cocotb testbench for the element-wise engine's elaborated Verilog (`sim.unit_bench`).

Its write streams are the tables and the per-channel constants; the host side
is `sim.act.simulate_cocotb`.
"""

from __future__ import annotations

import cocotb

from sim.unit_bench import run_tiles

#: The engine's write streams, in the order loads.txt counts their words.
WRITE_PORTS = ("table_write", "param_write")


@cocotb.test()
async def act_tiles(dut: object) -> None:
    await run_tiles(dut, "act", WRITE_PORTS, "element-wise engine")
