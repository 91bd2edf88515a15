"""Register copies that synthesis keeps apart.

Why: one register cannot drive hundreds of DSP or block-RAM inputs spread over
the die in a cycle, so the conv engine copies such signals into one register
per group of rows, each placed near what it drives. Yosys's `opt_merge` folds
identical flip-flops back into one, and a `keep` on the wire does not stop it
(measured: the ECP5 build's critical path was `x_row0` routed 12.9 ns to a DSP
of row 5). The copies therefore carry `REPLICA_ATTR`, and every board build
runs `KEEP_REPLICAS` after reading the design, which marks the flip-flops
driving those wires `keep`; `opt_merge` leaves cells with `keep` alone.
"""

from __future__ import annotations

from amaranth import Module, Signal, Value

#: Attribute that marks a replica's wire in the RTLIL.
REPLICA_ATTR = "grace_replica"

#: Yosys command: `keep` on every cell driving a replica wire through its Q port.
KEEP_REPLICAS = f"setattr -set keep 1 w:* a:{REPLICA_ATTR} %i %ci1:+[Q] c:* %i"


def replica(m: Module, value: Value, name: str) -> Signal:
    """A register holding `value` one cycle later that synthesis does not merge."""
    value = Value.cast(value)
    copy = Signal(value.shape(), name=name, attrs={REPLICA_ATTR: 1})
    m.d.sync += copy.eq(value)
    return copy


def register_copies(
    name: str, keys: tuple[object, ...], width: int = 1, *, init: int = 0
) -> dict[object, Signal]:
    """Registers, one per key, that synthesis does not merge.

    For a flag with hundreds of loads: the caller gives every copy the same
    next value and hands each group of loads its own copy.
    """
    return {
        key: Signal(width, init=init, name=f"{name}_for_{key}", attrs={REPLICA_ATTR: 1})
        for key in keys
    }
