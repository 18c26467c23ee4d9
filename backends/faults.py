"""Which cells of a chip are stuck: a random map drawn from two rates and a seed, or a map read from a file.

Arrays are numbered over a program as the machine programs them: the `mvm` instructions in order, within
one its array blocks (packed blocks, or dense tiles group × row tile × column tile), within a block its sign
arrays (positive, then negative). Cells are (row, column) of an array; states are OK, STUCK_OFF (the
high-resistance state: reads as zero) and STUCK_ON (the low-resistance state: reads as the top level).

    faults = RandomFaults(stuck_off_rate=0.09, stuck_on_rate=0.01, seed=0)
    faults = load_fault_map("chip7.csv")      # lines "array,row,column,state", state off|on (or 0|1)
    states = faults.states(array_index, rows=128, cols=128)     # uint8 [rows, cols]

A random map's array `a` depends on (seed, a) only, so a compiler pass and the machine see the same chip.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from rcc.backends.device import DeviceError
from rcc.ir.limits import read_bounded, regular_file_problem

OK, STUCK_OFF, STUCK_ON = 0, 1, 2
_FAULT_STREAM = 0x5A17  # keeps fault draws apart from the device's noise draws of the same seed
_STATES = {"off": STUCK_OFF, "0": STUCK_OFF, "on": STUCK_ON, "1": STUCK_ON}


class FaultMap:
    """The stuck cells of a chip; `states(array, rows, cols)` gives an array's cells."""

    def states(self, array: int, rows: int, cols: int) -> np.ndarray:
        raise NotImplementedError

    def check(self, arrays: int, rows: int, cols: int) -> None:
        """DeviceError when the map names an array or cell the program's chip does not have."""


@dataclass(frozen=True)
class RandomFaults(FaultMap):
    """Each cell independently stuck off with probability `stuck_off_rate`, on with `stuck_on_rate`."""

    stuck_off_rate: float
    stuck_on_rate: float
    seed: int = 0

    def states(self, array: int, rows: int, cols: int) -> np.ndarray:
        draw = np.random.default_rng([self.seed, _FAULT_STREAM, array]).random((rows, cols))
        result = np.zeros((rows, cols), dtype=np.uint8)
        result[draw < self.stuck_off_rate] = STUCK_OFF
        result[(draw >= self.stuck_off_rate) & (draw < self.stuck_off_rate + self.stuck_on_rate)] = STUCK_ON
        return result


@dataclass(frozen=True)
class ListedFaults(FaultMap):
    """Faults listed cell by cell: `cells` int64 [N, 4] of (array, row, column, state)."""

    cells: np.ndarray
    origin: str = "fault map"
    _by_array: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for array in np.unique(self.cells[:, 0]) if self.cells.size else []:
            self._by_array[int(array)] = self.cells[self.cells[:, 0] == array]

    def states(self, array: int, rows: int, cols: int) -> np.ndarray:
        result = np.zeros((rows, cols), dtype=np.uint8)
        listed = self._by_array.get(array)
        if listed is not None:
            result[listed[:, 1], listed[:, 2]] = listed[:, 3]
        return result

    def check(self, arrays: int, rows: int, cols: int) -> None:
        if not self.cells.size:
            return
        for column, (name, limit) in enumerate((("array", arrays), ("row", rows), ("column", cols))):
            bad = np.flatnonzero(self.cells[:, column] >= limit)
            if bad.size:
                raise DeviceError(f"{self.origin}: entry {bad[0] + 1} names {name} {self.cells[bad[0], column]}, "
                                  f"but the program's chip has {limit} {name}s"
                                  f"{' per array' if name != 'array' else ''}")


def load_fault_map(path: str | PathLike[str]) -> ListedFaults:
    """A fault-map CSV: one stuck cell per line, `array,row,column,state` (state `off`/`on`, or 0 for stuck
    at the high-resistance state and 1 for the low); a header line and `#` comments are allowed. Read like
    every input file (rcc.ir.limits): a regular file of at most RCC_MAX_TEXT_BYTES."""
    origin = f"--fault-map {path}"
    problem = regular_file_problem(Path(path))
    if problem:
        raise DeviceError(f"{origin}: {problem}")
    try:
        text = read_bounded(path, "--fault-map").decode("utf-8-sig")   # -sig: a spreadsheet's byte-order mark
        lines = list(csv.reader(row for row in io.StringIO(text, newline="")
                                if row.strip() and not row.lstrip().startswith("#")))
    except (OSError, UnicodeDecodeError) as err:
        raise DeviceError(f"{origin}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    except csv.Error as err:
        raise DeviceError(f"{origin}: not a CSV of array,row,column,state lines ({err})") from None
    if lines and lines[0] and lines[0][0].strip().lower() == "array":
        lines = lines[1:]
    cells = []
    for number, line in enumerate(lines, start=1):
        fields = [item.strip() for item in line]
        try:
            if len(fields) != 4 or fields[3].lower() not in _STATES:
                raise ValueError
            array, row, column = (int(item) for item in fields[:3])
            if min(array, row, column) < 0:
                raise ValueError
        except ValueError:
            raise DeviceError(f"{origin}: entry {number} {','.join(fields)!r} is not array,row,column,off|on") from None
        for name, value in (("array", array), ("row", row), ("column", column)):
            if value >= 2**63:      # the cells are int64; no chip comes near
                raise DeviceError(f"{origin}: entry {number} names {name} {value}, out of range")
        cells.append((array, row, column, _STATES[fields[3].lower()]))
    return ListedFaults(np.array(cells, dtype=np.int64).reshape(-1, 4), origin)
