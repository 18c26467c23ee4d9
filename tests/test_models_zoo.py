"""Tests for the checked-in ONNX model zoo built by ``models/build_zoo.py``.

They check that every model is valid ONNX, runs in onnxruntime with finite
non-degenerate outputs, that the pruned LeNet really is sparse, and that the
checked-in ``models/*.onnx`` files match a fresh deterministic build.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
BUILD_SCRIPT = MODELS_DIR / "build_zoo.py"


def _load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rcc_build_zoo", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zoo = _load_builder()
NAMES = list(zoo.BUILDERS)


@pytest.fixture(scope="module")
def models() -> dict[str, onnx.ModelProto]:
    return zoo.build_all()


def _run(model: onnx.ModelProto, seed: int = 0) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, zoo.model_inputs(model.graph.name, seed))


def _static_shape(vi: onnx.ValueInfoProto) -> list[int]:
    dims = vi.type.tensor_type.shape.dim
    assert all(d.HasField("dim_value") for d in dims), f"{vi.name} has a non-static shape"
    return [d.dim_value for d in dims]


def test_zoo_contents() -> None:
    assert set(NAMES) >= {
        "mlp", "lenet5", "resnet_small", "dcgan_generator", "fcn_segmenter",
        "unet_small", "subpixel_sr", "lenet5_pruned",
    }


@pytest.mark.parametrize("name", NAMES)
def test_check_model(models: dict[str, onnx.ModelProto], name: str) -> None:
    onnx.checker.check_model(models[name], full_check=True)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_and_naming(models: dict[str, onnx.ModelProto], name: str) -> None:
    model = models[name]
    assert model.producer_name == "rcc-zoo"
    assert model.ir_version == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert model.graph.name == name
    node_names = [n.name for n in model.graph.node]
    assert all(node_names), "every node must be named"
    assert len(set(node_names)) == len(node_names), "node names must be unique"
    init_names = {i.name for i in model.graph.initializer}
    assert not init_names & {i.name for i in model.graph.input}, "weights must not be graph inputs"
    for vi in model.graph.input:  # token ids and masks are integer and boolean
        assert vi.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.BOOL)
        _static_shape(vi)
    for vi in model.graph.output:
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        _static_shape(vi)
    batch = _static_shape(model.graph.input[0])[0]
    assert batch == (4 if name == "mlp" else 1)


@pytest.mark.parametrize("name", NAMES)
def test_runs_with_nondegenerate_outputs(models: dict[str, onnx.ModelProto], name: str) -> None:
    model = models[name]
    outputs = _run(model)
    assert len(outputs) == len(model.graph.output)
    for vi, out in zip(model.graph.output, outputs):
        assert list(out.shape) == _static_shape(vi)
        assert out.dtype == np.float32
        assert np.isfinite(out).all()
        assert out.std() > 1e-3, f"{name}:{vi.name} is degenerate (std={out.std()})"


def test_expected_output_shapes(models: dict[str, onnx.ModelProto]) -> None:
    expected = {
        "mlp": [4, 10],
        "lenet5": [1, 10],
        "resnet_small": [1, 10],
        "dcgan_generator": [1, 3, 32, 32],
        "fcn_segmenter": [1, 5, 32, 32],
        "unet_small": [1, 2, 32, 32],
        "subpixel_sr": [1, 1, 48, 48],
        "lenet5_pruned": [1, 10],
    }
    for name, shape in expected.items():
        assert _static_shape(models[name].graph.output[0]) == shape, name


def _conv_gemm_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    weight_names = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in weight_names}


def test_pruned_weights_are_sparse(models: dict[str, onnx.ModelProto]) -> None:
    weights = _conv_gemm_weights(models["lenet5_pruned"])
    assert len(weights) == 5  # conv1, conv2, fc1, fc2, fc3
    for name, w in weights.items():
        zero_frac = float((w == 0).mean())
        assert zero_frac >= 0.90, f"{name}: only {zero_frac:.3f} zeros"
        assert (w == 0).sum() == -(-w.size * 92 // 100), f"{name}: prune count not exact"


def test_pruned_is_masked_lenet5(models: dict[str, onnx.ModelProto]) -> None:
    dense = {i.name: numpy_helper.to_array(i) for i in models["lenet5"].graph.initializer}
    pruned = {i.name: numpy_helper.to_array(i) for i in models["lenet5_pruned"].graph.initializer}
    assert dense.keys() == pruned.keys()
    weight_names = set(_conv_gemm_weights(models["lenet5"]))
    for name, p in pruned.items():
        d = dense[name]
        if name in weight_names:
            kept = p != 0
            np.testing.assert_array_equal(p[kept], d[kept])
            # Magnitude pruning: every kept entry is at least as large as every pruned one.
            assert np.abs(d[kept]).min() >= np.abs(d[~kept]).max()
        else:
            np.testing.assert_array_equal(p, d)  # biases untouched


def test_depth_to_space_modes(models: dict[str, onnx.ModelProto]) -> None:
    modes = {
        name: [a.s.decode() for n in models[name].graph.node if n.op_type == "DepthToSpace" for a in n.attribute if a.name == "mode"]
        for name in ("subpixel_sr", "subpixel_sr_crd")
    }
    assert modes == {"subpixel_sr": ["DCR"], "subpixel_sr_crd": ["CRD"]}


def test_build_is_deterministic(models: dict[str, onnx.ModelProto]) -> None:
    again = zoo.build_all()
    for name, model in models.items():
        assert again[name].SerializeToString() == model.SerializeToString(), name


@pytest.mark.parametrize("name", NAMES)
def test_checked_in_file_matches_fresh_build(models: dict[str, onnx.ModelProto], name: str) -> None:
    path = MODELS_DIR / f"{name}.onnx"
    assert path.is_file(), f"{path} missing; run: python models/build_zoo.py"
    assert path.read_bytes() == models[name].SerializeToString(), (
        f"{path} is stale; run: python models/build_zoo.py"
    )


def test_no_stray_onnx_files() -> None:
    assert {p.stem for p in MODELS_DIR.glob("*.onnx")} == set(NAMES)


def test_file_sizes_are_small() -> None:
    for path in MODELS_DIR.glob("*.onnx"):
        assert path.stat().st_size < 1_000_000, path


def test_cli_out_and_check(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(BUILD_SCRIPT), *args], capture_output=True, text=True, check=False
        )

    assert cli("--out", str(tmp_path)).returncode == 0
    assert cli("--check", "--out", str(tmp_path)).returncode == 0
    (tmp_path / "mlp.onnx").write_bytes(b"corrupted")
    result = cli("--check", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "mlp.onnx" in result.stderr
