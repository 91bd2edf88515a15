"""A simple dual-port RAM whose read data leaves the block RAM through its output register.

Why a primitive: on the ECP5, Yosys maps `lib.memory` onto DP16KD with the
output register bypassed (REGMODE "NOREG"), and the block RAM's clock-to-out
then takes 5.8 ns of a 6.7 ns cycle at 150 MHz (measured: the conv engine's
parameter buffer limited a whole build to 58 MHz; DESIGN.md §5 measured 90 MHz
inferred, 144 MHz with the output register). `RegisteredRAM` instantiates the
DP16KD tiles itself with REGMODE "OUTREG" and elaborates to a behavioural twin
(`lib.memory` plus a fabric register) in simulation and on other platforms.

Both variants read in two cycles: address at t, data at t + 2 (the RAM's own
register, then the output register). With `address_stages` = 1, the address and
`r_clear` first pass through a register (on ECP5 a copy per DP16KD tile, so a
wide memory's tiles spread over the die are each a short hop from their own
copy) and reads take three cycles; with 2, those copies are fed from a copy per
group of `TILES_PER_GROUP` tiles (one register driving 32 tiles' copies across
the die took 8.8 ns in one route), and reads take four. `r_clear` presented
with the address makes that read return zero (the output register's
synchronous reset): the conv engine's zero padding costs no logic after the
RAM. Writes take effect at the next edge; a read of an address written in the
same cycle returns old data. With `write_stages` = 1 the write (address, data,
enables) first passes through a register, a copy per group of tiles, and takes
effect an edge later (one write address register reached 32 tiles across the
die in 7.9 ns). A user that never reads an address in the cycle it is written
may say so (`unchecked_collisions`): the twin's memory is then marked
`no_rw_check` (rtl/row_queue.py), and board builds spare it Yosys's old-data
collision logic (on iCE40 block RAM, a register of the write and a compare).

Tiling on ECP5: every tile uses the widest DP16KD mode (1, 2, 4, 9 or 18 bits by
16 K … 1 K words) whose depth holds the whole memory, so no output multiplexer
is needed; a write lane (`granularity` bits) never shares a tile with another.
Memories deeper than 16 K words use the twin.
"""

from __future__ import annotations

import math

from amaranth import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.dsp import TARGETS, platform_target
from rtl.replica import replica
from rtl.row_queue import NO_RW_CHECK

#: Tiles that share a first-level address copy when `address_stages` is 2.
TILES_PER_GROUP = 8

#: DP16KD data widths and the depth each gives, widest first.
_DP16KD_MODES = ((18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))
#: Low address bits that select within a word, per width (Lattice TN1264).
_ADDRESS_SHIFT = {1: 0, 2: 1, 4: 2, 9: 3, 18: 4}


def dp16kd_mode(depth: int) -> tuple[int, int] | None:
    """(data width, depth) of the widest DP16KD mode that holds `depth` words."""
    for width, words in _DP16KD_MODES:
        if depth <= words:
            return width, words
    return None


def dp16kd_tiles(width: int, depth: int, granularity: int) -> int:
    """DP16KD instances a `width` × `depth` memory with `granularity`-bit lanes takes."""
    mode = dp16kd_mode(depth)
    if mode is None:
        return 0
    return (width // granularity) * math.ceil(granularity / mode[0])


class RegisteredRAM(wiring.Component):
    """Write port (lanes of `granularity` bits) and a two-cycle read port."""

    #: Edges from a read address to its data without address stages: the RAM's
    #: own read register and its output register.
    READ_LATENCY = 2

    def __new__(
        cls,
        width: int,
        depth: int,
        *,
        granularity: int | None = None,
        target: str | None = None,
        address_stages: int = 0,
        write_stages: int = 0,
        unchecked_collisions: bool = False,
    ) -> RegisteredRAM:
        # Validated before the object exists, so a rejected one is not reported by
        # Amaranth as an elaboratable that was created but never used.
        granularity = granularity or width
        if width % granularity:
            raise ValueError(f"width {width} is not a multiple of granularity {granularity}")
        if target is not None and target not in TARGETS:
            raise ValueError(f"unknown RAM target {target!r}; choose one of {', '.join(TARGETS)}")
        if address_stages not in (0, 1, 2):
            raise ValueError(f"address_stages must be 0, 1 or 2, not {address_stages!r}")
        if write_stages not in (0, 1):
            raise ValueError(f"write_stages must be 0 or 1, not {write_stages!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(
        self,
        width: int,
        depth: int,
        *,
        granularity: int | None = None,
        target: str | None = None,
        address_stages: int = 0,
        write_stages: int = 0,
        unchecked_collisions: bool = False,
    ) -> None:
        granularity = granularity or width
        self.width, self.depth, self.granularity, self.target = width, depth, granularity, target
        self.address_stages = address_stages
        self.write_stages = write_stages
        #: The user never reads an address in the cycle it is written.
        self.unchecked_collisions = unchecked_collisions
        #: Cycles from presenting an address to its data on `r_data`.
        self.latency = self.READ_LATENCY + address_stages
        addr = max(1, (depth - 1).bit_length())
        super().__init__(
            {
                "w_addr": In(addr),
                "w_data": In(width),
                "w_en": In(width // granularity),
                "r_addr": In(addr),
                "r_clear": In(1),
                "r_data": Out(width),
            }
        )

    def elaborate(self, platform: object) -> Module:
        target = platform_target(platform, self.target)
        if target == "ecp5" and dp16kd_mode(self.depth) is not None:
            return self._ecp5()
        return self._twin()

    def _twin(self) -> Module:
        m = Module()
        attrs = {NO_RW_CHECK: 1} if self.unchecked_collisions else {}
        m.submodules.storage = mem = Memory(
            shape=unsigned(self.width), depth=self.depth, init=[], attrs=attrs
        )
        wp = mem.write_port(granularity=self.granularity)
        rp = mem.read_port(transparent_for=())
        r_addr, r_clear = self._read_request(m, "", {}, 0)
        w_addr, w_en = self._write_request(m, {}, 0)
        w_data = self._write_data(m)
        clear = Signal()
        out = Signal(self.width)
        m.d.comb += [
            wp.addr.eq(w_addr),
            wp.data.eq(w_data),
            wp.en.eq(w_en),
            rp.addr.eq(r_addr),
            self.r_data.eq(out),
        ]
        m.d.sync += [clear.eq(r_clear), out.eq(Mux(clear, 0, rp.data))]
        return m

    def _read_request(
        self, m: Module, name: str, groups: dict[int, tuple[Value, Value]], tile: int
    ) -> tuple[Value, Value]:
        """The read address and clear as tile number `tile` sees them (copies if asked).

        `groups` collects the first-level copies (one per group of tiles) as they
        are made, so the tiles of a group share theirs.
        """
        addr, clear = self.r_addr, self.r_clear
        if self.address_stages == 2:
            group = tile // TILES_PER_GROUP
            if group not in groups:
                groups[group] = (
                    replica(m, addr, f"r_addr_group{group}"),
                    replica(m, clear, f"r_clear_group{group}"),
                )
            addr, clear = groups[group]
        if self.address_stages:
            addr = replica(m, addr, f"r_addr{name}")
            clear = replica(m, clear, f"r_clear{name}")
        return addr, clear

    def _write_data(self, m: Module) -> Value:
        """The write data as the tiles see it: one register with `write_stages`.

        Each bit goes to one tile only, so it needs no copies; but it is a
        replica all the same, so that synthesis does not merge the registers of
        memories written with the same data (the conv engine's weight buffers).
        """
        if not self.write_stages:
            return self.w_data
        return replica(m, self.w_data, "w_data_staged")

    def _write_request(
        self, m: Module, copies: dict[object, Value], tile: int, lane: int | None = None
    ) -> tuple[Value, Value]:
        """The write address and the enable of `lane` (all, if None) as tile `tile` sees them.

        With `write_stages`, each group of `TILES_PER_GROUP` tiles shares a copy
        of the address and of each lane enable it uses (made once, kept in `copies`).
        """
        enable = self.w_en if lane is None else self.w_en[lane]
        if not self.write_stages:
            return self.w_addr, enable
        group = tile // TILES_PER_GROUP
        if group not in copies:
            copies[group] = replica(m, self.w_addr, f"w_addr_group{group}")
        if (group, lane) not in copies:
            suffix = "" if lane is None else f"_lane{lane}"
            copies[(group, lane)] = replica(m, enable, f"w_en_group{group}{suffix}")
        return copies[group], copies[(group, lane)]

    def _ecp5(self) -> Module:
        m = Module()
        tile_bits, _ = dp16kd_mode(self.depth)
        shift = _ADDRESS_SHIFT[tile_bits]
        # 14-bit RAM addresses: word address above the in-word bits; in the
        # 18-bit mode the two lowest bits of port A are byte enables (both on).
        low = Const(0b11 if tile_bits == 18 else 0, shift)
        data_out = []
        groups: dict[int, tuple[Value, Value]] = {}
        write_copies: dict[object, Value] = {}
        w_data = self._write_data(m)
        for lane in range(self.width // self.granularity):
            for start in range(0, self.granularity, tile_bits):
                bits = min(tile_bits, self.granularity - start)
                first = lane * self.granularity + start
                tile_w_addr, tile_w_en = self._write_request(m, write_copies, len(data_out), lane)
                w_addr = Cat(low, tile_w_addr, Const(0, 14))[:14]
                din = Cat(w_data[first : first + bits], Const(0, 18 - bits))
                dout = Signal(18, name=f"dout_{lane}_{start}")
                data_out.append(dout[:bits])
                # each tile gets its own copies of the read request and of the
                # clear that resets its output register a cycle after the address
                tile = f"_{lane}_{start}"
                tile_addr, tile_clear = self._read_request(m, tile, groups, len(data_out) - 1)
                r_addr = Cat(Const(0, shift), tile_addr, Const(0, 14))[:14]
                clear = replica(m, tile_clear, f"clear{tile}")
                m.submodules[f"ram_{lane}_{start}"] = Instance(
                    "DP16KD",
                    p_DATA_WIDTH_A=tile_bits,
                    p_DATA_WIDTH_B=tile_bits,
                    p_REGMODE_A="NOREG",
                    p_REGMODE_B="OUTREG",
                    p_RESETMODE="SYNC",
                    p_ASYNC_RESET_RELEASE="SYNC",
                    p_CSDECODE_A="0b000",
                    p_CSDECODE_B="0b000",
                    p_WRITEMODE_A="NORMAL",
                    p_WRITEMODE_B="NORMAL",
                    p_GSR="DISABLED",
                    i_CLKA=ClockSignal("sync"),
                    i_CEA=Const(1, 1),
                    i_OCEA=Const(1, 1),
                    i_WEA=tile_w_en,
                    i_RSTA=Const(0, 1),
                    **{f"i_CSA{k}": Const(0, 1) for k in range(3)},
                    **{f"i_ADA{k}": w_addr[k] for k in range(14)},
                    **{f"i_DIA{k}": din[k] for k in range(18)},
                    i_CLKB=ClockSignal("sync"),
                    i_CEB=Const(1, 1),
                    i_OCEB=Const(1, 1),
                    i_WEB=Const(0, 1),
                    i_RSTB=clear,
                    **{f"i_CSB{k}": Const(0, 1) for k in range(3)},
                    **{f"i_ADB{k}": r_addr[k] for k in range(14)},
                    **{f"i_DIB{k}": Const(0, 1) for k in range(18)},
                    **{f"o_DOB{k}": dout[k] for k in range(18)},
                )
        m.d.comb += self.r_data.eq(Cat(*data_out))
        return m
