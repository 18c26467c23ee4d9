"""The issue-11 blocks of ``models/build_zoo.py`` (BLOCK_BUILDERS) in onnxruntime only.

They are zoo models (rcc's golden tests run them like the others); these tests keep them meaningful:
every block passes the full ONNX check, builds to the same bytes twice, runs on `model_inputs` with
finite outputs that depend on the input, and its mask (encoder padding, GPT causal) really masks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.test_models_zoo import BUILD_SCRIPT, zoo

BLOCKS = list(zoo.BLOCK_BUILDERS)


def _session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(zoo.BLOCK_BUILDERS[name]().SerializeToString(), providers=["CPUExecutionProvider"])


def test_blocks_are_in_the_zoo() -> None:
    assert set(BLOCKS) == {"transformer_encoder_block", "gpt_decoder_block", "mobilenetv3_block",
                           "bilinear_seg_head", "shufflenet_block"}
    assert set(BLOCKS) <= set(zoo.BUILDERS)


@pytest.mark.parametrize("name", BLOCKS)
def test_block_is_valid_and_reproducible(name: str) -> None:
    model = zoo.BLOCK_BUILDERS[name]()
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.name == name and model.producer_name == "rcc-zoo"
    assert model.SerializeToString() == zoo.BLOCK_BUILDERS[name]().SerializeToString()


@pytest.mark.parametrize("name", BLOCKS)
def test_block_output_depends_on_its_input(name: str) -> None:
    session = _session(name)
    outputs = np.stack([session.run(None, zoo.model_inputs(name, seed))[0] for seed in range(3)])
    assert np.isfinite(outputs).all()
    assert float(np.std(outputs - outputs.mean(axis=0))) > 0.1, "the output barely changes with the input"


def test_encoder_padding_mask_masks() -> None:
    session = _session("transformer_encoder_block")
    feeds = zoo.model_inputs("transformer_encoder_block")
    masked = session.run(None, feeds)[0]
    feeds["hidden"][0, ~feeds["mask"][0]] += 5.0  # change only the padded positions
    np.testing.assert_allclose(session.run(None, feeds)[0][0, feeds["mask"][0]], masked[0, feeds["mask"][0]],
                               rtol=1e-5, atol=1e-5)


def test_gpt_mask_is_causal() -> None:
    session = _session("gpt_decoder_block")
    feeds = zoo.model_inputs("gpt_decoder_block")
    before = session.run(None, feeds)[0]
    feeds["tokens"][0, -1] = (feeds["tokens"][0, -1] + 1) % zoo.GPT_VOCAB
    after = session.run(None, feeds)[0]
    np.testing.assert_array_equal(after[0, :-1], before[0, :-1])
    assert np.abs(after[0, -1] - before[0, -1]).max() > 0.1


def test_blocks_cli_writes_models_and_inputs(tmp_path: Path) -> None:
    refused = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--blocks"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--out" in refused.stderr
    done = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--blocks", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert {p.stem for p in tmp_path.glob("*.onnx")} == set(BLOCKS)
    tokens = np.load(tmp_path / "gpt_decoder_block.inputs.npz")["tokens"]
    assert tokens.shape == (3, 1, zoo.BLOCK_SEQUENCE) and tokens.min() >= 0 and tokens.max() < zoo.GPT_VOCAB
