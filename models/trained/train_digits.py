"""Train the small classifier rcc's accuracy figures are judged on, and write it with its test split.

scikit-learn's digits (1,797 8×8 images of handwritten digits, shipped inside the package, so no download):
a stratified 70/30 split with a fixed seed, pixels scaled to [0, 1]; a 64-32-10 ReLU MLP trained by
scikit-learn's MLPClassifier with a fixed seed, exported with onnx.helper as MatMul-Add-Relu-MatMul-Add.

    pip install -e '.[train]' && python models/trained/train_digits.py      # rewrites the three files

Writes, beside this script: digits_mlp.onnx (input `pixels` [batch, 64] float32 → `logits` [batch, 10]),
digits_test.npz (`pixels` [540, 64] float32) and digits_test_labels.npy (int64 [540]). scikit-learn is only
needed here (the `train` extra), never by rcc or its tests.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 0
HIDDEN = 32
HERE = Path(__file__).resolve().parent


def train() -> tuple[list[np.ndarray], np.ndarray, np.ndarray, float]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    pixels = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(pixels, digits.target, test_size=0.3, random_state=SEED,
                                                        stratify=digits.target)
    model = MLPClassifier(hidden_layer_sizes=(HIDDEN,), activation="relu", alpha=1e-3, max_iter=400,
                          random_state=SEED).fit(x_train, y_train)
    params = [model.coefs_[0], model.intercepts_[0], model.coefs_[1], model.intercepts_[1]]
    return [p.astype(np.float32) for p in params], x_test, y_test.astype(np.int64), model.score(x_test, y_test)


def to_onnx(params: list[np.ndarray]) -> onnx.ModelProto:
    names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    nodes = [helper.make_node("MatMul", ["pixels", "fc1.weight"], ["fc1.mm"], name="fc1"),
             helper.make_node("Add", ["fc1.mm", "fc1.bias"], ["fc1.out"], name="fc1_bias"),
             helper.make_node("Relu", ["fc1.out"], ["relu1"], name="relu1"),
             helper.make_node("MatMul", ["relu1", "fc2.weight"], ["fc2.mm"], name="fc2"),
             helper.make_node("Add", ["fc2.mm", "fc2.bias"], ["logits"], name="fc2_bias")]
    graph = helper.make_graph(
        nodes, "digits_mlp", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(p, n) for p, n in zip(params, names)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="rcc-train")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    params, x_test, y_test, accuracy = train()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "digits_mlp.onnx").write_bytes(to_onnx(params).SerializeToString())
    np.savez_compressed(args.out / "digits_test.npz", pixels=x_test)
    np.save(args.out / "digits_test_labels.npy", y_test)
    print(f"digits_mlp: test accuracy {accuracy:.4f} (scikit-learn, float) on {len(y_test)} images")


if __name__ == "__main__":
    main()
