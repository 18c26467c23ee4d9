"""What the machine counts: array activations, converter and register events, vector ops, digital adds,
bytes moved, cycles. Every instruction's counts come from its one count function, which serves both
the static estimate and the running machine.

Within a layer independent `mvm`s run in parallel on disjoint arrays and dependent ones one after another, so the
fields in `PARALLEL` (how long the crossbars are busy) take the value of the layer's longest chain of mvms; every
other field adds up (runtime/schedule.py `layer_counts`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass
class Counts:
    mvm_ops: int = 0          # array activations (one array, one input bit-slice, one vector)
    adc_conversions: int = 0
    vec_ops: int = 0          # vector-unit operations (one op over `vector_lanes` elements)
    accumulations: int = 0    # digital adds merging row tiles and sign arrays
    cycles: int = 0
    dac_drives: int = 0       # rows driven by a DAC for one array activation
    sh_samples: int = 0       # columns sampled and held for their ADC
    shift_adds: int = 0       # converted columns shifted and added into the output register
    array_steps: int = 0      # array reads in sequence: vectors × input bit-slices (arrays in parallel)
    column_steps: int = 0     # conversions of the busiest array, in sequence (its ADCs share them)
    bytes_in: int = 0         # activation bytes read from the tile buffer into the arrays' input registers
    bytes_out: int = 0        # result bytes written from the arrays back to the tile buffer
    offchip_bytes: int = 0    # model inputs and outputs over the off-chip link
    macs: int = 0             # multiply-accumulates of the layer's weight matrix (zeros included)
    vector_macs: int = 0      # multiply-accumulates done digitally by the vector unit (a matmul of activations)
    row_writes: int = 0       # array rows written at run time (weights computed by the model: attention)
    cell_writes: int = 0      # cells written at run time
    write_steps: int = 0      # row writes in sequence (rows of the fullest array; arrays written in parallel)

    def __iadd__(self, other: Counts) -> Counts:
        for key in _FIELDS:
            setattr(self, key, getattr(self, key) + getattr(other, key))
        return self

    def copy(self) -> Counts:
        fresh = Counts.__new__(Counts)
        fresh.__dict__.update(self.__dict__)
        return fresh

    def scaled(self, times: int) -> Counts:
        """The counts of `times` such runs one after another (a batch of inferences)."""
        return self.copy() if times == 1 else replace(self, **{key: getattr(self, key) * times for key in _FIELDS})

    def to_json(self) -> dict[str, int]:
        return asdict(self)


_FIELDS = tuple(f.name for f in fields(Counts))
PARALLEL = ("cycles", "array_steps", "column_steps", "write_steps")
