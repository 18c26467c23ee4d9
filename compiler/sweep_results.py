"""A sweep's results file: Parquet (`.parquet`, `.pq`) or CSV (`.csv`), chosen by the extension, one row
per point. Every write replaces the whole file atomically (`rcc.ir.files.write_output`), so the file on
disk is always a complete table of the points finished so far, never half a row; `--resume` reads it back.

    results = ResultsFile.checked("out.parquet")
    done = results.read()            # [] when the file does not exist yet
    results.write(done + new_rows)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow
import pyarrow.csv
import pyarrow.parquet

from rcc.compiler.sweep_space import KEYS, SweepError
from rcc.ir.files import check_output_path, write_output

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
# An empty field was None, not ""; text options stay text ("0.2" is a prune budget, not a number), and so
# does a point's id (a hex digest can look like a number).
_CSV_TYPES = pyarrow.csv.ConvertOptions(strings_can_be_null=True, column_types={
    "point_id": pyarrow.string(), **{name: pyarrow.string() for name, key in KEYS.items() if key.text}})


@dataclass(frozen=True)
class ResultsFile:
    path: Path
    format: str

    @staticmethod
    def checked(path: str | os.PathLike, flag: str = "-o") -> ResultsFile:
        """The results file at `path`, its folder and extension checked before any work starts."""
        suffix = Path(path).suffix.lower()
        if suffix not in FORMATS:
            raise SweepError(f"{flag} {path}: the results file must end in .parquet, .pq or .csv")
        return ResultsFile(check_output_path(path, flag), FORMATS[suffix])

    def read(self) -> list[dict[str, Any]]:
        """The rows already written ([] when there is no file); SweepError when it is not a sweep's."""
        if not self.path.exists():
            return []
        try:
            table = (pyarrow.parquet.read_table(self.path) if self.format == "parquet"
                     else pyarrow.csv.read_csv(self.path, convert_options=_CSV_TYPES))
        except (pyarrow.ArrowException, OSError) as err:
            raise SweepError(f"--resume {self.path}: cannot read it as {self.format}: "
                             f"{str(err).splitlines()[0]}") from None
        if "point_id" not in table.column_names:
            raise SweepError(f"--resume {self.path}: not an rcc sweep results file (no point_id column)")
        return table.to_pylist()

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Replace the file with `rows` (columns in first-seen order; a row without a column has null)."""
        columns = list(dict.fromkeys(name for row in rows for name in row))
        table = pyarrow.Table.from_pylist([{name: row.get(name) for name in columns} for row in rows])
        sink = pyarrow.BufferOutputStream()
        if self.format == "parquet":
            pyarrow.parquet.write_table(table, sink)
        else:
            pyarrow.csv.write_csv(table, sink)
        write_output(self.path, sink.getvalue().to_pybytes())
