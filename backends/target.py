"""The ReRAM chip rcc compiles for: array geometry, bit widths, encoding, budgets and costs.

A `Target` is a frozen, validated value. It owns the figures every later stage derives from the chip
(slices per weight, input cycles, the largest column sum, the ADC range) so no pass recomputes them,
and it owns how a user describes a chip: a TOML file (`--target chip.toml`) whose keys are the field
names, then overrides (`with_overrides`; the command-line flags are compiler/commands/common.py).

    # chip.toml -- the options may sit at top level or in a [target] table
    xbar = "128x64"          # shorthand for xbar_rows = 128, xbar_cols = 64
    cell_bits = 1
    adc_bits = 6             # narrower than lossless: column sums above 63 saturate

Defaults follow ISAAC (Shafiee et al., ISCA 2016) and PUMA (Ankit et al., ASPLOS 2019): 128×128
arrays of 2-bit cells, a 1-bit DAC feeding inputs bit-serially, 8-bit weights and inputs, 96 arrays
per tile (ISAAC's 12 IMAs × 8 arrays) and 168 tiles per chip. A column then sums at most
128 rows × 1 × 3 = 384, so the lossless ADC is 9 bits wide (ISAAC reaches 8 with its weight-flipping
trick, which rcc does not model). Cycle counts are in abstract machine cycles; a crossbar read is
taken as 100 of them, ISAAC's 100 ns read against a ~1 GHz digital clock.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Final

from rcc.ir import xbar_figures
from rcc.ir.errors import RccError, one_line
from rcc.ir.limits import read_bounded, regular_file_problem
from rcc.ir.ops.xbar import quantize_limits


class TargetError(RccError):
    """A target option out of range, of the wrong type, or a target file that cannot be used."""


class Auto(enum.Enum):
    """Sentinel for `Target.with_overrides`: set an optional field back to automatic (None)."""

    AUTO = "auto"

    def __repr__(self) -> str:
        return "AUTO"


AUTO: Final = Auto.AUTO

ENCODINGS = ("differential", "offset")
# Where a matmul of two activations (attention) runs: the digital vector unit, or crossbars written at run time.
ATTENTION_MODES = ("vector", "crossbar")
MAX_XBAR = 4096
MAX_ADC_BITS = 32
# 16 bits, and one more: a 16-bit model's codes less their zero point (`lower-quantized`) span 17 signed bits
MAX_INPUT_BITS = 17
# Columns are summed in float32, whose integers are all exact only below 2**24.
EXACT_SUM_LIMIT = 2**24

# Fields with a command-line flag are named by the flag in messages; the rest by their TOML key.
_FLAGS = {
    "xbar_rows": "--xbar", "xbar_cols": "--xbar", "weight_bits": "--weight-bits",
    "input_bits": "--input-bits", "cell_bits": "--cell-bits", "dac_bits": "--dac-bits",
    "adc_bits": "--adc-bits", "encoding": "--encoding", "chips": "--chips", "attention": "--attention",
}
_LABELS = {"xbar_rows": "--xbar rows", "xbar_cols": "--xbar columns"}
_OPTIONAL = frozenset({"adc_bits", "chips"})  # None means automatic
_MAY_BE_ZERO = frozenset({"spare_columns"})
_DERIVED = ("magnitude_bits", "weight_slices", "input_cycles", "signs", "max_column_sum",
            "lossless_adc_bits", "effective_adc_bits", "adc_max", "adc_is_lossless",
            "weights_per_array_row", "max_arrays", "weight_max")


def _label(name: str) -> str:
    return _LABELS.get(name) or _FLAGS.get(name) or name


@dataclass(frozen=True)
class Target:
    """One ReRAM chip design; validated on construction, so every instance is usable."""

    xbar_rows: int = 128
    xbar_cols: int = 128
    weight_bits: int = 8
    input_bits: int = 8
    cell_bits: int = 2
    dac_bits: int = 1
    adc_bits: int | None = None  # None: just wide enough to be lossless
    encoding: str = "differential"  # or "offset"
    arrays_per_tile: int = 96
    tiles_per_chip: int = 168
    chips: int | None = None  # None: as many as the model needs; an int is a budget
    array_read_cycles: int = 100
    adc_conversion_cycles: int = 1
    adcs_per_array: int = 1
    vector_lanes: int = 64
    vector_op_cycles: int = 1
    accumulate_cycles: int = 1
    row_write_cycles: int = 51  # one array row written at run time: PipeLayer's 50.88 ns (HPCA 2017 §6.1)
    attention: str = "vector"  # or "crossbar": see ATTENTION_MODES and compiler/passes/place_attention.py
    spare_columns: int = 0  # per array, beside its xbar_cols: repair columns for the fault-aware pass

    def __post_init__(self) -> None:
        self.validate()

    # ---- derived figures -------------------------------------------------------------------------

    @property
    def magnitude_bits(self) -> int:
        """Bits of a weight's magnitude held in cells: the sign lives in the differential pair."""
        return xbar_figures.magnitude_bits(self.weight_bits, self.encoding)

    @property
    def weight_slices(self) -> int:
        """Neighbouring columns one weight's magnitude is sliced across, `cell_bits` each."""
        return xbar_figures.weight_slices(self.weight_bits, self.cell_bits, self.encoding)

    @property
    def input_cycles(self) -> int:
        """Cycles to feed one input value bit-serially, `dac_bits` per cycle."""
        return xbar_figures.input_cycles(self.input_bits, self.dac_bits)

    @property
    def signs(self) -> int:
        """Arrays per weight block: 2 for a differential (positive, negative) pair, 1 for offset."""
        return xbar_figures.sign_arrays(self.encoding)

    @property
    def max_column_sum(self) -> int:
        """Largest value one column can sum in one cycle: every row at full DAC level and full cell."""
        return xbar_figures.max_column_sum(self.xbar_rows, self.dac_bits, self.cell_bits)

    @property
    def lossless_adc_bits(self) -> int:
        """Narrowest ADC that converts every possible column sum without saturating."""
        return xbar_figures.lossless_adc_bits(self.xbar_rows, self.dac_bits, self.cell_bits)

    @property
    def effective_adc_bits(self) -> int:
        """ADC width in use: the one asked for, else the lossless width."""
        return self.lossless_adc_bits if self.adc_bits is None else self.adc_bits

    @property
    def adc_max(self) -> int:
        """Largest code the ADC outputs; column sums above it saturate to it."""
        return xbar_figures.adc_max(self.effective_adc_bits)

    @property
    def adc_is_lossless(self) -> bool:
        """Whether no column sum can saturate the ADC."""
        return self.effective_adc_bits >= self.lossless_adc_bits

    @property
    def weights_per_array_row(self) -> int:
        """Output channels one array holds side by side, each spanning `weight_slices` columns."""
        return xbar_figures.weights_per_array_row(self.xbar_cols, self.weight_slices)

    @property
    def max_arrays(self) -> int | None:
        """Arrays available under the `chips` budget, or None when the chip count is unbounded."""
        return None if self.chips is None else self.chips * self.tiles_per_chip * self.arrays_per_tile

    @property
    def weight_max(self) -> int:
        """Largest weight magnitude; quantised weights are symmetric in [-weight_max, weight_max]."""
        return quantize_limits(self.weight_bits, signed=True)[1]

    def input_max(self, signed: bool) -> int:
        """Largest input magnitude: 2^(input_bits-1)-1 for signed inputs, 2^input_bits-1 for unsigned."""
        return quantize_limits(self.input_bits, signed)[1]

    # ---- validation ------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise TargetError, naming the option's flag or TOML key, on the first unusable value."""
        if not isinstance(self.encoding, str) or self.encoding not in ENCODINGS:
            raise TargetError(f"--encoding must be 'differential' or 'offset', got {self.encoding!r}")
        if not isinstance(self.attention, str) or self.attention not in ATTENTION_MODES:
            raise TargetError(f"--attention must be 'vector' or 'crossbar', got {self.attention!r}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in ("encoding", "attention") or (value is None and field.name in _OPTIONAL):
                continue
            low = 0 if field.name in _MAY_BE_ZERO else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                kind = "a non-negative" if low == 0 else "a positive"
                raise TargetError(f"{_label(field.name)} must be {kind} integer, got {value!r}")
        for name in ("xbar_rows", "xbar_cols"):
            if getattr(self, name) > MAX_XBAR:
                raise TargetError(f"{_label(name)} must be at most {MAX_XBAR}, got {getattr(self, name)}")
        self._check_range("spare_columns", 0, self.xbar_cols)
        self._check_range("weight_bits", 2, 16)
        self._check_range("input_bits", 2, MAX_INPUT_BITS)  # signed activations need a sign bit and a magnitude bit
        if self.cell_bits > self.magnitude_bits:
            raise TargetError(f"--cell-bits {self.cell_bits} exceeds the {self.magnitude_bits} magnitude bits "
                              f"of a weight (--weight-bits {self.weight_bits}, --encoding {self.encoding})")
        if self.dac_bits > self.input_bits:
            raise TargetError(f"--dac-bits {self.dac_bits} exceeds --input-bits {self.input_bits}")
        if self.adc_bits is not None and self.adc_bits > MAX_ADC_BITS:
            raise TargetError(f"--adc-bits must be at most {MAX_ADC_BITS}, got {self.adc_bits}")
        if self.xbar_cols < self.weight_slices:
            raise TargetError(f"--xbar columns ({self.xbar_cols}) cannot hold the {self.weight_slices} slices "
                              f"of one weight, which sit in neighbouring columns of one array; "
                              f"use at least {self.weight_slices} columns or a larger --cell-bits")
        if self.max_column_sum >= EXACT_SUM_LIMIT:
            raise TargetError(f"--xbar rows × --dac-bits × --cell-bits: a column can sum up to "
                              f"{self.xbar_rows}·{2**self.dac_bits - 1}·{2**self.cell_bits - 1} = "
                              f"{self.max_column_sum}, but the machine sums columns exactly in float32, "
                              f"which holds integers exactly only below 2^24 = {EXACT_SUM_LIMIT}; "
                              f"use fewer rows, a narrower DAC or fewer bits per cell")

    def _check_range(self, name: str, low: int, high: int) -> None:
        value = getattr(self, name)
        if not low <= value <= high:
            raise TargetError(f"{_label(name)} must be between {low} and {high}, got {value}")

    # ---- construction ----------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: str | PathLike[str]) -> Target:
        """Read a target file: keys are field names plus `xbar = "RxC"`, at top level or in [target]."""
        data = read_toml(path, TargetError)
        data = {key: value for key, value in data.items() if key != "device"}  # [device]: rcc.backends.device
        options, prefix = data, ""
        if "target" in data:
            if not isinstance(data["target"], dict):
                raise TargetError(f"{path}: 'target' must be a table of options, got {data['target']!r}")
            extra = sorted(data.keys() - {"target"})
            if extra:
                raise TargetError(f"{path}: unknown key {extra[0]!r} beside the [target] table "
                                  f"(the options go inside it)")
            options, prefix = data["target"], "target."
        try:
            return cls(**_fields_from_options(options, prefix, path))
        except TargetError as err:
            message = str(err)
            raise TargetError(message if message.startswith(f"{path}: ") else f"{path}: {message}") from None

    def with_overrides(self, **changes: int | str | Auto | None) -> Target:
        """A validated copy with `changes` applied; None leaves a field as it is, AUTO sets an optional
        field (`adc_bits`, `chips`) back to automatic, since None already means "not given"."""
        unknown = sorted(changes.keys() - {field.name for field in dataclasses.fields(self)})
        if unknown:
            raise TargetError(f"unknown target option {unknown[0]!r}")
        updates: dict[str, Any] = {}
        for name, value in changes.items():
            if value is None:
                continue
            if value is AUTO:
                if name not in _OPTIONAL:
                    raise TargetError(f"{_label(name)} cannot be 'auto'")
                value = None
            updates[name] = value
        return dataclasses.replace(self, **updates) if updates else self

    def to_dict(self) -> dict[str, Any]:
        """All fields plus the derived figures under "derived", for reports."""
        result: dict[str, Any] = dataclasses.asdict(self)
        derived = {name: getattr(self, name) for name in _DERIVED}
        derived["input_max_signed"] = self.input_max(signed=True)
        derived["input_max_unsigned"] = self.input_max(signed=False)
        result["derived"] = derived
        return result


def read_toml(path: str | PathLike[str], error: type[RccError], label: str = "") -> dict[str, Any]:
    """A TOML file's tables; `error` with one line naming `label` and the file when it cannot be read."""
    import tomllib   # 5 ms of start-up: only where a TOML file is read

    name = f"{label} {path}" if label else str(path)
    problem = regular_file_problem(Path(path))
    if problem:
        raise error(f"{name}: {problem}")
    try:
        return tomllib.loads(read_bounded(path, name).decode())
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise error(f"{name}: invalid TOML: {one_line(err)}") from None
    except UnicodeDecodeError:
        raise error(f"{name}: invalid TOML: not UTF-8 text") from None
    except OSError as err:
        raise error(f"{name}: cannot read: {err.strerror or one_line(err)}") from None


# The cost-model presets (`rcc.backends.chip`), named here so that a command's options can list them without
# importing the cost model.
CHIP_PRESETS = ("isaac", "puma")


def read_preset_or_file(spec: str | PathLike[str], presets: tuple[str, ...], preset_file: str,
                        error: type[RccError], flag: str) -> tuple[dict[str, Any], str]:
    """(tables, origin) of a preset by name (`presets/<preset_file with {name}>` in rcc.backends) or of a
    FILE.toml; `error` naming `flag` when the spec is neither or the file cannot be read."""
    import tomllib

    text = str(spec)
    if text in presets:
        from importlib import resources   # 9 ms of start-up: only where a preset is read
        resource = resources.files("rcc.backends").joinpath("presets", preset_file.format(name=text))
        return tomllib.loads(resource.read_text()), f"preset {text}"
    if not text.endswith(".toml"):
        raise error(f"{flag} {text!r}: choose a preset ({', '.join(presets)}) or a FILE.toml")
    return read_toml(text, error, flag), text


def _fields_from_options(options: dict[str, Any], prefix: str, path: str | PathLike[str]) -> dict[str, Any]:
    names = [field.name for field in dataclasses.fields(Target)]
    for key in options:
        if key != "xbar" and key not in names:
            raise TargetError(f"{path}: unknown key {prefix + key!r} (known: xbar, {', '.join(names)})")
    fields = {key: value for key, value in options.items() if key != "xbar"}
    if "xbar" in options:
        clash = sorted({"xbar_rows", "xbar_cols"} & options.keys())
        if clash:
            raise TargetError(f"{path}: give either {prefix}xbar or {prefix}{clash[0]}, not both")
        xbar = options["xbar"]
        if isinstance(xbar, int) and not isinstance(xbar, bool):
            fields["xbar_rows"] = fields["xbar_cols"] = xbar
        elif isinstance(xbar, str):
            fields["xbar_rows"], fields["xbar_cols"] = parse_xbar(xbar, option=prefix + "xbar")
        else:
            raise TargetError(f"{path}: {prefix}xbar must be a string like \"128x64\" or a number, got {xbar!r}")
    return fields


_XBAR = re.compile(r"\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?")


def parse_xbar(text: str, *, option: str = "--xbar") -> tuple[int, int]:
    """`"128x64"` → (128, 64) rows × columns; a single number means a square array."""
    match = _XBAR.fullmatch(text)
    if match is None:
        raise TargetError(f"{option} must be ROWSxCOLS (like 128x128) or one number for a square array, "
                          f"got {text!r}")
    rows = int(match.group(1))
    return rows, int(match.group(2) or rows)
