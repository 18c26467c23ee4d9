"""The textual IR on small hand-written modules: literals, names, inline constants, and error messages
that carry line and column."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcc.ir import IRParseError, VerifyError, modules_equal, parse_module, print_module, run

SAMPLE = """\
module @sample {
  input %x : f32[2,3]
  input %"odd name/0:1" : f32[3]
  const %bias : f32[3] = [0.5, -1.25, 1e-07]
  const %big : f32[3,6]
  %sum = nn.add(%x, %"odd name/0:1") : f32[2,3]
  %y = nn.add(%sum, %bias) : f32[2,3]
  %z = nn.clip(%y) {min = -inf, max = 3.0} : f32[2,3]
  %w = nn.matmul(%z, %big) : f32[2,6]
  %s = nn.softmax(%w) {axis = 1} : f32[2,6]
  output %s, %z
}
"""
WEIGHTS = {"big": np.arange(18, dtype=np.float32).reshape(3, 6) / 10}


def test_sample_parses_prints_and_runs() -> None:
    module = parse_module(SAMPLE, WEIGHTS)
    assert print_module(module) == SAMPLE
    x, odd = np.ones((2, 3), np.float32), np.array([1, 2, 3], np.float32)
    out = run(module, {"x": x, "odd name/0:1": odd})
    z = np.minimum(x + odd + np.array([0.5, -1.25, 1e-7], np.float32), 3)
    np.testing.assert_allclose(out["z"], z)
    assert out["s"].shape == (2, 6) and np.allclose(out["s"].sum(axis=1), 1)


@pytest.mark.parametrize("text, where, what", [
    (SAMPLE.replace("nn.add(%x,", "nn.add(%x"), "6:20", "syntax error"),
    (SAMPLE.replace("%bias) :", "%nope) :"), "7:21", "%nope is not defined"),
    (SAMPLE.replace("nn.clip", "nn.clipp"), "8:8", "unknown op nn.clipp"),
    (SAMPLE.replace("{axis = 1}", "{axes = 1}"), "10:8", "no attribute 'axes'"),
    (SAMPLE.replace("{axis = 1}", "{axis = 1.5}"), "10:8", "expected int"),
    (SAMPLE.replace("f32[3] = [0.5, -1.25, 1e-07]", "f32[3] = [0.5]"), "4:9", "does not fit"),
    (SAMPLE.replace("const %big : f32[3,6]", "const %big : f32[3,4]"), "5:9", "weights file holds"),
    (SAMPLE.replace("%y = nn.add", "%sum = nn.add"), "7:3", "defined twice"),
    (SAMPLE[:-3], "", "unexpected end of input"),
    (SAMPLE.replace("input %x : f32[2,3]", "input %x : f32[2,3] default"), "2:9", "no data for the default of input"),
    (SAMPLE.replace("input %x : f32[2,3]", "input %x : f32[2,3] default = [1.0]"), "2:9", "does not fit"),
    (SAMPLE.replace("  const %bias", "  baked %x\n  const %bias"), "4:9", "baked %x is an input"),
    (SAMPLE.replace("  const %bias", "  baked %w0, %w0\n  const %bias"), "4:14", "listed twice"),
    (SAMPLE.replace("  input %x", "  baked %x\n  input %x"), "3:9", "also listed as baked"),
])
def test_parse_errors_carry_line_and_column(text, where, what) -> None:
    with pytest.raises(IRParseError) as err:
        parse_module(text, WEIGHTS, "sample.ir")
    message = str(err.value)
    assert message.startswith(f"sample.ir:{where}" if where else "sample.ir:"), message
    assert what in message and "\n" not in message


def test_wrong_result_type_is_a_verify_error_naming_the_op() -> None:
    with pytest.raises(VerifyError, match=r"%z = nn.clip.*f32\[2,4\].*f32\[2,3\]"):
        parse_module(SAMPLE.replace("{min = -inf, max = 3.0} : f32[2,3]", "{min = -inf, max = 3.0} : f32[2,4]"),
                     WEIGHTS)


floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(floats, min_size=1, max_size=16), alpha=st.floats(allow_nan=False, allow_infinity=False))
def test_float_literals_round_trip_bit_exactly(values, alpha) -> None:
    data = np.array(values, dtype=np.float32)
    text = (f"module @m {{\n  input %x : f32[{len(values)}]\n"
            f"  const %c : f32[{len(values)}] = [{', '.join(_literal(v) for v in data)}]\n"
            f"  %y = nn.leaky_relu(%x) {{alpha = {alpha!r}}} : f32[{len(values)}]\n"
            f"  %z = nn.add(%y, %c) : f32[{len(values)}]\n  output %z\n}}\n")
    module = parse_module(text)
    again = parse_module(print_module(module))
    assert modules_equal(module, again) and print_module(again) == print_module(module)
    parsed = module.constants[0].data
    nan = np.isnan(data)
    assert np.array_equal(np.isnan(parsed), nan)  # NaNs stay NaN (their payload is not part of the text form)
    assert np.array_equal(parsed[~nan].view(np.uint32), data[~nan].view(np.uint32))  # the rest bit for bit
    assert module.ops[0].attrs["alpha"] == alpha


def _literal(value: np.float32) -> str:
    from rcc.ir.printer import format_scalar

    return format_scalar(value)
