"""Pass tests from IR text: `fixtures/<pass-name>.ir` holds pairs of modules, an input then the expected
result of running that one pass on it (with the options of a first line `// pipeline: SPEC`, if any).
A lossy pass's file says `// lossy`: its result is then executed against the expected module's. Each pair is compared structurally and as text, and both modules
are executed on seeded random inputs, which must agree (every rewrite is checked by running it)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rcc.ir.inputs import random_inputs
from rcc.compiler.pass_manager import run_pipeline
from rcc.compiler.passes import PASSES
from rcc.ir import interpreter, modules_equal, parse_module, print_module

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_pairs() -> list:
    pairs = []
    for path in sorted(FIXTURES.glob("*.ir")):
        text = path.read_text()
        header = re.match(r"// pipeline: (.*)\n", text)
        pipeline = header.group(1).strip() if header else path.stem
        chunks = [c for c in re.split(r"(?m)^(?=module @)", text) if c.startswith("module")]
        assert len(chunks) % 2 == 0, f"{path.name}: modules must come in input/expected pairs"
        for index in range(0, len(chunks), 2):
            name = chunks[index].split()[1]
            pairs.append(pytest.param(pipeline, "// lossy" in text, chunks[index], chunks[index + 1],
                                      id=f"{path.stem}:{name}"))
    return pairs


def test_every_pass_has_a_fixture() -> None:
    assert {p.stem for p in FIXTURES.glob("*.ir")} >= set(PASSES)


@pytest.mark.parametrize("pipeline, lossy, source, expected", fixture_pairs())
def test_pass_rewrites_as_expected_and_preserves_results(pipeline, lossy, source, expected) -> None:
    module = parse_module(source)
    inputs = random_inputs(module, seed=3)
    before = interpreter.run(module, inputs)
    run_pipeline(module, pipeline)
    wanted = parse_module(expected)
    assert print_module(module) == print_module(wanted)
    assert modules_equal(module, wanted)
    after = interpreter.run(module, inputs)
    if lossy:
        before = interpreter.run(wanted, inputs)
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-5, atol=1e-6)
