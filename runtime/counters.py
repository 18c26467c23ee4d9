"""What the machine counts: array activations, ADC conversions, vector ops, digital adds, cycles."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Counts:
    mvm_ops: int = 0          # array activations (one array, one input bit-slice, one vector)
    adc_conversions: int = 0
    vec_ops: int = 0          # vector-unit operations (one op over `vector_lanes` elements)
    accumulations: int = 0    # digital adds merging row tiles and sign arrays
    cycles: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)
        return self

    def to_json(self) -> dict[str, int]:
        return asdict(self)
