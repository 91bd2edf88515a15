"""A fixed-latency signed multiplier on the FPGA's DSP block, with a behavioural twin.

Why a primitive: Yosys maps an inferred ``a * b`` onto an ECP5 DSP block but never
pulls the surrounding flip-flops into it (DESIGN.md §5), so an inferred int8
multiplier array runs the combinational multiplier between fabric registers and
stalls at 90–110 MHz. Instantiating ``MULT18X18D`` with its own input and output
registers enabled reached 166–202 MHz (182 MHz for all 156 DSPs of an ECP5-85F).
So the convolution engine instantiates this component rather than writing ``*``,
and the implementation is chosen at elaboration (`platform_target`):

* ``"ecp5"``: a ``MULT18X18D`` instance: A/B input registers and the output register
  on CLK0, pipeline register bypassed, operands in the top bits of the 18-bit
  ports (low bits tied to zero) and the product read from the matching bits.
* ``"ice40"``: the twin's pipeline, which ``synth_ice40 -dsp`` packs whole into one
  ``SB_MAC16`` (A/B input registers, the 8×8 partial-product pipeline registers,
  the 16×16 product on O; no fabric flip-flops). Not an ``SB_MAC16`` instance:
  Yosys's ``ice40_dsp`` pass (run by ``-dsp``, which boards/build.py passes for every
  iCE40 build) also matches hand-instantiated ``SB_MAC16`` cells and rewrites their
  configuration from the fabric registers it finds around them, so an instance with
  internal registers comes out with A_REG = B_REG = PIPELINE_16x16_MULT_REG2 = 0
  (and CLK tied low when nothing is packed): a combinational multiplier, latency 0.
  Products narrower than 11 bits stay in logic (Yosys's minimum for a DSP).
* ``"twin"``: plain Amaranth with the same pipeline, for simulation and any other
  platform. It is checked cycle for cycle against the iCE40 vendor model on the
  post-synthesis netlist, and the ECP5 configuration is checked on its
  post-synthesis netlist (tests/test_dsp.py; Yosys has no MULT18X18D model).

Every variant has the same ``LATENCY``, no enable and no reset: the pipeline always
advances, and the registers inside the DSP blocks are not cleared by the domain's
reset, so neither are the twin's (``reset_less``; a synchronous reset would also
stop ``ice40_dsp`` packing them). Outputs in the first ``LATENCY`` cycles are
unspecified (the twin gives 0).

Yosys's ``opt_merge`` may merge the twin's input registers across multipliers fed
the same operand (DESIGN.md §5); that changes nothing here: on iCE40 each DSP still
gets its own input register, and registers inside a ``MULT18X18D`` are never merged.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, ClockSignal, Const, Instance, Module, Signal, Value, signed
from amaranth.hdl._ast import Operator
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.hierarchy import fragments, multiplications

#: Implementations `Multiplier(target=...)` accepts.
TARGETS = ("twin", "ecp5", "ice40")

#: Widest signed operand each DSP primitive takes (its input port width).
MAX_OPERAND_BITS = {"ecp5": 18, "ice40": 16}

# iCE40 devices with SB_MAC16 blocks: UltraPlus (iCE40UP*) and iCE5LP.
_ICE40_DSP_DEVICES = ("iCE40UP", "iCE5LP")


def platform_target(platform: object, chosen: str | None = None) -> str:
    """The implementation `target=None` selects for `platform` (`chosen`, a
    component's explicit target, wins when given).

    ECP5 platforms (``amaranth.vendor.LatticePlatform`` with family ``"ecp5"``, e.g.
    amaranth-boards' ULX3S) get ``"ecp5"``; iCE40 platforms
    (``amaranth.vendor.SiliconBluePlatform``) whose device has DSP blocks get
    ``"ice40"``; everything else, including no platform (simulation, plain Verilog
    export) and DSP-less iCE40 HX/LP parts, gets ``"twin"``.
    """
    if chosen is not None:
        return chosen
    if platform is None:
        return "twin"
    # Imported here: amaranth.vendor loads its platform modules lazily.
    from amaranth.vendor import LatticePlatform, SiliconBluePlatform

    if isinstance(platform, LatticePlatform) and platform.family == "ecp5":
        return "ecp5"
    if isinstance(platform, SiliconBluePlatform) and str(platform.device).startswith(
        _ICE40_DSP_DEVICES
    ):
        return "ice40"
    return "twin"


class Multiplier(wiring.Component):
    """p = a × b, both signed, LATENCY clock cycles after a and b are presented.

    No enable: it always advances. Clocked by the ``sync`` domain.
    """

    #: Clock edges from presenting a and b to p: input registers + output register.
    LATENCY: int = 2

    def __new__(
        cls, a_bits: int = 8, b_bits: int = 8, *, target: str | None = None, site: str | None = None
    ) -> Multiplier:
        # Validated before the object exists, so a rejected one is not reported by
        # Amaranth as an elaboratable that was created but never used.
        _check_arguments(a_bits, b_bits, target)
        return super().__new__(cls, src_loc_at=1)  # "never used" points at the caller

    def __init__(
        self,
        a_bits: int = 8,
        b_bits: int = 8,
        *,
        target: str | None = None,
        site: str | None = None,
    ) -> None:
        self.a_bits = a_bits
        self.b_bits = b_bits
        self.target = target
        #: nextpnr ``BEL`` of the ECP5 instance (boards/floorplan.py); the other
        #: implementations have no single cell to place and ignore it.
        self.site = site
        super().__init__(
            {
                "a": In(signed(a_bits)),
                "b": In(signed(b_bits)),
                "p": Out(signed(a_bits + b_bits)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        target = platform_target(platform, self.target)
        _check_widths(target, self.a_bits, self.b_bits)
        if target == "ecp5":
            return self._ecp5()
        if target == "ice40":
            return self._ice40()
        return self._twin()

    def _twin(self, *, keep_output: bool = False) -> Module:
        m = Module()
        a = Signal.like(self.a, name="a_reg", reset_less=True)
        b = Signal.like(self.b, name="b_reg", reset_less=True)
        attrs = {"keep": 1} if keep_output else {}
        p = Signal.like(self.p, name="p_reg", reset_less=True, attrs=attrs)
        m.d.sync += [a.eq(self.a), b.eq(self.b), p.eq(a * b)]
        m.d.comb += self.p.eq(p)
        return m

    def _ecp5(self) -> Module:
        # Operands sit in the top bits of the 18-bit ports (a·2^(18-a_bits)) and
        # the product is read that many places higher. The low bits are then
        # constant zeros, which nextpnr turns into tie-offs in the DSP tile, where
        # sign extension would route the sign bit to 10 more pins per operand:
        # with 128 DSPs, the DSP rows were the die's most congested wires.
        m = Module()
        a_pad, b_pad = 18 - self.a_bits, 18 - self.b_bits
        a = Cat(Const(0, a_pad), self.a)
        b = Cat(Const(0, b_pad), self.b)
        product = Signal(36, name="p36")
        low = a_pad + b_pad
        m.d.comb += self.p.eq(product[low : low + len(self.p)])
        placement = {"a_BEL": self.site} if self.site is not None else {}
        m.submodules.mult = Instance(
            "MULT18X18D",
            **placement,
            p_REG_INPUTA_CLK="CLK0",
            p_REG_INPUTA_CE="CE0",
            p_REG_INPUTA_RST="RST0",
            p_REG_INPUTB_CLK="CLK0",
            p_REG_INPUTB_CE="CE0",
            p_REG_INPUTB_RST="RST0",
            p_REG_INPUTC_CLK="NONE",
            p_REG_PIPELINE_CLK="NONE",
            p_REG_OUTPUT_CLK="CLK0",
            p_REG_OUTPUT_CE="CE0",
            p_REG_OUTPUT_RST="RST0",
            p_MULT_BYPASS="DISABLED",
            p_RESETMODE="SYNC",
            # The ports are one bit each (A0..A17, B0..B17, P0..P35) in Yosys's and
            # Lattice's cell libraries.
            **{f"i_A{i}": a[i] for i in range(18)},
            **{f"i_B{i}": b[i] for i in range(18)},
            **{f"i_C{i}": Const(0, 1) for i in range(18)},
            i_SIGNEDA=Const(1, 1),
            i_SIGNEDB=Const(1, 1),
            i_SOURCEA=Const(0, 1),
            i_SOURCEB=Const(0, 1),
            i_CLK0=ClockSignal("sync"),
            i_CE0=Const(1, 1),
            i_RST0=Const(0, 1),
            **{f"o_P{i}": product[i] for i in range(36)},
        )
        return m

    def _ice40(self) -> Module:
        # The pipeline of the twin, shaped for `synth_ice40 -dsp` to pack into SB_MAC16
        # (see the module docstring for why not an instance). `keep` on the product
        # register's output stops ice40_dsp from looking past it for an output
        # register: a consumer registering p with a synchronous reset would otherwise
        # make it reject the whole match and leave the registers in the fabric.
        return self._twin(keep_output=True)


def _check_arguments(a_bits: int, b_bits: int, target: str | None) -> None:
    if target is not None and target not in TARGETS:
        raise ValueError(
            f"unknown multiplier target {target!r}; choose one of "
            f"{', '.join(map(repr, TARGETS))} (or None to choose from the platform)"
        )
    for name, bits in (("a_bits", a_bits), ("b_bits", b_bits)):
        if not isinstance(bits, int) or isinstance(bits, bool) or bits < 1:
            raise ValueError(f"{name} must be a positive integer, not {bits!r}")
    if target is not None:
        _check_widths(target, a_bits, b_bits)


def _check_widths(target: str, a_bits: int, b_bits: int) -> None:
    limit = MAX_OPERAND_BITS.get(target)
    if limit is None:
        return
    if a_bits > limit or b_bits > limit:
        raise ValueError(
            f"a {a_bits}-bit × {b_bits}-bit multiplier does not fit target {target!r}: "
            f"its DSP takes signed operands of at most {limit} bits"
        )


# --------------------------------------------------------------------------- counting


@dataclass(frozen=True)
class DSPRules:
    """How Yosys maps one family's multiplications onto its DSP cell.

    The widths are the ``-D`` options synth_<family> passes to ``mul2dsp.v``
    (``help synth_ice40``; ``synth_lattice`` for ECP5): smaller products stay in
    logic, wider ones are split into partial products, one DSP each."""

    cell: str  # the primitive's cell type, as nextpnr counts it
    max_width: int  # widest operand one DSP takes
    min_width: int = 2  # narrower operands stay in logic
    min_product: int = 0  # narrower products stay in logic


#: Per FPGA family (`defs.boards.BoardSpec.family`).
DSP_RULES = {
    "ecp5": DSPRules("MULT18X18D", max_width=18),
    "ice40": DSPRules("SB_MAC16", max_width=16, min_product=11),
}


def dsp_usage(design: object, family: str, platform: object = None) -> dict[str, int]:
    """DSP cells the elaborated `design` takes on `family`, by hierarchy path.

    Why by walking the hierarchy rather than by knowing the design: whatever a
    design instantiates or infers is counted, so a budget check cannot go stale
    when the design changes. Counted per fragment: instances of the family's DSP
    cell, and every multiplication of two non-constant operands, split as
    Yosys's ``mul2dsp`` splits it (`mul_dsp_cells`). Build the design for the
    family first (e.g. ``Multiplier(target=family)``, or the `platform`): the
    walk counts what this elaboration produces.
    """
    rules = DSP_RULES[family]
    usage: dict[str, int] = {}
    for path, fragment in fragments(design, platform):
        if isinstance(fragment, Instance):
            count = int(fragment.type == rules.cell)
        else:
            count = sum(
                mul_dsp_cells(*_product_widths(op), rules) for op in multiplications(fragment)
            )
        if count:
            usage[path] = count
    return usage


def dsp_count(design: object, family: str, platform: object = None) -> int:
    """The total of `dsp_usage`: DSP cells `design` takes on `family`."""
    return sum(dsp_usage(design, family, platform).values())


def mul_dsp_cells(a_bits: int, b_bits: int, y_bits: int, rules: DSPRules) -> int:
    """DSP cells Yosys's ``mul2dsp`` uses for one a_bits × b_bits → y_bits product.

    A mirror of ``mul2dsp.v`` without ``DSP_SIGNEDONLY``: the wider operand goes
    to A; below the minimum widths the product stays in logic; an operand wider
    than a DSP is cut into DSP-wide pieces (the last one narrower), each piece a
    product of its own."""
    if a_bits < b_bits:
        a_bits, b_bits = b_bits, a_bits
    if b_bits < rules.min_width or y_bits < rules.min_product:
        return 0
    if a_bits > rules.max_width:
        pieces = -(-(a_bits - rules.max_width) // rules.max_width)
        full = mul_dsp_cells(rules.max_width, b_bits, min(y_bits, b_bits + rules.max_width), rules)
        last = a_bits - pieces * rules.max_width
        return pieces * full + mul_dsp_cells(last, b_bits, b_bits + last, rules)
    return 1


def _product_widths(op: Operator) -> tuple[int, int, int]:
    """(a, b, y) widths of a multiplication as Yosys sees it after ``wreduce``: an
    unsigned operand of a signed product takes one more bit."""
    a, b = op.operands
    signed = a.shape().signed or b.shape().signed

    def width(v: Value) -> int:
        return len(v) + (signed and not v.shape().signed)

    return width(a), width(b), len(op)
