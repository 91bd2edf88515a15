"""cocotb testbench for the softmax unit's elaborated Verilog (`sim.unit_bench`).

Its one write stream is the exp table; the host side is `sim.softmax`.
"""

from __future__ import annotations

import cocotb

from sim.unit_bench import run_tiles


@cocotb.test()
async def softmax_tiles(dut: object) -> None:
    await run_tiles(dut, "softmax", ("exp_write",), "softmax unit")
