"""Set-wise verification of detections (compiler/verify_detections.py): a reordered set matches, a dropped or
moved detection fails unless it sits at the cut, and a small detector (conv head on the machine, sigmoid
scores, NonMaxSuppression and gathers on the host) verifies end to end in every executor, its detections
judged as sets and the tensors handed to the host elementwise."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from rcc.compiler.driver import compile_model, verify_compiled
from rcc.compiler.host_run import HostPart
from rcc.compiler.verify import FLOAT_MACHINE_TOLERANCE, INTERPRETER_TOLERANCE, Tolerance, integer_snr_bound
from rcc.compiler.verify_detections import (DetectionGroup, box_iou, compare_with_detections, detection_groups,
                                            detection_metrics)
from tests.hostile.builders import save_model, tensor

GROUP = DetectionGroup("boxes", "scores", "labels")
INT_TOLERANCE = Tolerance("snr", bound=integer_snr_bound(8, 8))


def detections(boxes: list, scores: list, labels: list) -> dict[str, np.ndarray]:
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.array(scores, np.float32),
            "labels": np.array(labels, np.int64)}


REFERENCE = detections([[0, 0, 10, 10], [20, 20, 30, 30], [0, 20, 10, 30], [40, 0, 50, 8]],
                       [0.9, 0.8, 0.7, 0.52], [1, 2, 1, 3])


def test_box_iou() -> None:
    iou = box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2], [0, 0, 2, 2], [5, 5, 6, 6]]))
    np.testing.assert_allclose(iou, [[1 / 3, 1.0, 0.0]])


def test_a_reordered_set_matches_exactly() -> None:
    order = [2, 0, 3, 1]
    shuffled = {name: array[order] for name, array in REFERENCE.items()}
    metrics = detection_metrics([shuffled], [REFERENCE], GROUP, INTERPRETER_TOLERANCE)
    assert metrics["passed"] and metrics["matched_fraction"] == 1.0 and metrics["unmatched"] == 0
    assert metrics["boxes"]["max_abs_err"] == 0 and metrics["scores"]["max_abs_err"] == 0


def test_a_dropped_confident_detection_fails_and_one_at_the_cut_does_not() -> None:
    without_first = {name: array[1:] for name, array in REFERENCE.items()}
    metrics = detection_metrics([without_first], [REFERENCE], GROUP, INT_TOLERANCE)
    assert not metrics["passed"] and metrics["unmatched"] == 1 and metrics["unmatched_excused"] == 0
    assert metrics["matched_fraction"] == 0.75 and "unmatched" in metrics["note"]
    # the last detection (0.52) dropped, another one just below it (0.50) kept: both within the cut margin
    swapped = detections([[0, 0, 10, 10], [20, 20, 30, 30], [0, 20, 10, 30], [60, 60, 70, 70]],
                         [0.9, 0.8, 0.7, 0.50], [1, 2, 1, 2])
    metrics = detection_metrics([swapped], [REFERENCE], GROUP, INT_TOLERANCE)
    assert metrics["passed"] and metrics["unmatched"] == 2 == metrics["unmatched_excused"]
    # the integer bound's margin (3 · 4.9 % of the scores' rms) covers 0.02; the float machine's does not
    assert 0.02 < metrics["cut_margin"] < 0.2
    assert not detection_metrics([swapped], [REFERENCE], GROUP, FLOAT_MACHINE_TOLERANCE)["passed"]


def test_boxes_clipped_to_zero_area_still_match() -> None:
    flat = detections([[13.4, 0, 78.9, 0], [0, 0, 10, 10]], [0.75, 0.5], [70, 1])
    nearly = detections([[13.40003, 0, 78.93, 0], [0, 0, 10, 10]], [0.75, 0.5], [70, 1])
    metrics = detection_metrics([nearly], [flat], GROUP, INTERPRETER_TOLERANCE)
    assert metrics["unmatched"] == 0 and metrics["matched_fraction"] == 1.0


def test_a_moved_box_or_a_changed_label_fails() -> None:
    moved = {name: array.copy() for name, array in REFERENCE.items()}
    moved["boxes"][1] += 1.5  # IoU 0.74: still matched, but a 15 % error in its coordinates
    metrics = detection_metrics([moved], [REFERENCE], GROUP, INT_TOLERANCE)
    assert metrics["unmatched"] == 0 and not metrics["boxes"]["passed"] and not metrics["passed"]
    assert detection_metrics([moved], [REFERENCE], GROUP, Tolerance("snr", bound=10.0))["passed"]
    relabelled = {name: array.copy() for name, array in REFERENCE.items()}
    relabelled["labels"][0] = 7
    metrics = detection_metrics([relabelled], [REFERENCE], GROUP, INT_TOLERANCE)
    assert not metrics["passed"] and metrics["unmatched"] == 2


def test_a_suppression_that_flips_at_the_nms_threshold_is_excused() -> None:
    """F overlaps the higher-scored D by IoU 0.49925: the reference keeps it under an NMS threshold of 0.5, the
    machine (D off by 0.01) suppresses it; G, far off, sets the score cut at 0.3. Within the IoU margin the matched boxes' error gives, that is
    excused when the threshold is known; F overlapping D by 0.25 is not."""
    def pair(shift: float) -> dict[str, np.ndarray]:
        return detections([[0, 0, 10, 10], [0, shift, 10, 10 + shift], [50, 50, 60, 60]], [0.9, 0.8, 0.3], [1, 1, 1])
    machine = detections([[0, 0.01, 10, 10.01], [50, 50, 60, 60]], [0.9, 0.3], [1, 1])
    metrics = detection_metrics([machine], [pair(3.34)], GROUP, INT_TOLERANCE, nms_iou=0.5)
    assert metrics["passed"] and metrics["unmatched"] == 1 == metrics["unmatched_excused"]
    assert 0.00075 < metrics["nms_iou_margin"] < 0.1
    assert not detection_metrics([machine], [pair(3.34)], GROUP, INT_TOLERANCE)["passed"]
    assert not detection_metrics([machine], [pair(6.0)], GROUP, INT_TOLERANCE, nms_iou=0.5)["passed"]


def test_only_host_outputs_shaped_like_detections_are_grouped() -> None:
    sample = {**REFERENCE, "logits": np.zeros((1, 5), np.float32)}
    assert detection_groups([sample], ["logits", "boxes", "scores", "labels"]) == [GROUP]
    assert detection_groups([sample], ["scores", "boxes"]) == []
    fewer = {**sample, "scores": sample["scores"][:2]}
    assert detection_groups([sample, fewer], ["boxes", "scores", "labels"]) == []
    shuffled = {name: array[::-1] for name, array in REFERENCE.items()}
    assert not compare_with_detections([shuffled], [REFERENCE], "interpreter", INTERPRETER_TOLERANCE, []).passed
    result = compare_with_detections([shuffled], [REFERENCE], "interpreter", INTERPRETER_TOLERANCE, list(REFERENCE))
    assert result.passed and result.extra["detection_groups"] == [list(GROUP.names)]
    assert list(result.outputs) == ["boxes", "scores", "labels"]


def detector_model(path) -> str:
    """x [1, 3, 8, 8] → conv 3×3 + relu → box deltas (1×1 conv, added to 64 anchor boxes of side 2 on a unit
    grid) and class scores (1×1 conv, sigmoid; 3 classes) → NonMaxSuppression (IoU 0.45, score 0.5, 6 per
    class) → boxes [K, 4], scores [K], labels [K]."""
    rng = np.random.default_rng(3)
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    anchors = np.stack([cols, rows, cols + 2, rows + 2], -1).reshape(1, 64, 4).astype(np.float32)
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32), "w_feat"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32), "w_box"),
             numpy_helper.from_array(rng.normal(0, 0.6, (3, 8, 1, 1)).astype(np.float32), "w_cls"),
             numpy_helper.from_array(anchors, "anchors"),
             numpy_helper.from_array(np.array([1, 64, 4], np.int64), "box_shape"),
             numpy_helper.from_array(np.array([64, 4], np.int64), "flat_shape"),
             numpy_helper.from_array(np.array([1, 3, 64], np.int64), "score_shape"),
             numpy_helper.from_array(np.array([-1], np.int64), "vector"),
             numpy_helper.from_array(np.array([6], np.int64), "per_class"),
             numpy_helper.from_array(np.array([0.45], np.float32), "iou"),
             numpy_helper.from_array(np.array([0.5], np.float32), "threshold"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array(2, np.int64), "two")]
    node = helper.make_node
    nodes = [node("Conv", ["x", "w_feat"], ["f0"], pads=[1, 1, 1, 1]), node("Relu", ["f0"], ["f"]),
             node("Conv", ["f", "w_box"], ["d"]), node("Transpose", ["d"], ["dt"], perm=[0, 2, 3, 1]),
             node("Reshape", ["dt", "box_shape"], ["deltas"]), node("Add", ["anchors", "deltas"], ["all_boxes"]),
             node("Reshape", ["all_boxes", "flat_shape"], ["flat_boxes"]),
             node("Conv", ["f", "w_cls"], ["c"]), node("Reshape", ["c", "score_shape"], ["cl"]),
             node("Sigmoid", ["cl"], ["all_scores"]),
             node("NonMaxSuppression", ["all_boxes", "all_scores", "per_class", "iou", "threshold"], ["selected"],
                  name="nms"),
             node("Gather", ["selected", "one"], ["labels"], axis=1),
             node("Gather", ["selected", "two"], ["index"], axis=1),
             node("Gather", ["flat_boxes", "index"], ["boxes"], axis=0),
             node("GatherND", ["all_scores", "selected"], ["scores"])]
    outputs = [tensor("boxes", [None, 4]), tensor("scores", [None]), tensor("labels", [None], TensorProto.INT64)]
    return str(save_model(path / "detector.onnx", nodes, [tensor("x", [1, 3, 8, 8])], outputs, inits))


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> str:
    return detector_model(tmp_path_factory.mktemp("detector"))


@pytest.mark.parametrize("precision, executor", [("int", "machine"), ("float", "machine"), ("int", "interpreter")])
def test_a_detector_verifies_set_wise_end_to_end(detector, precision, executor) -> None:
    compiled = compile_model(detector, precision=precision)
    assert compiled.program.host["op_type"] == "NonMaxSuppression"
    assert HostPart(compiled.program).nms_iou == pytest.approx(0.45)
    result = verify_compiled(detector, compiled, executor=executor, samples=3).to_json()
    assert result["passed"], result
    assert result["detection_groups"] == [["boxes", "scores", "labels"]]
    boxes = result["outputs"]["boxes"]
    assert boxes["detections"] > 3 and boxes["matched_fraction"] > 0.8 and not boxes.get("constant_reference")
    handed = {name for name in result["outputs"] if name.endswith("(to host)")}
    assert handed == {"all_boxes (to host)", "all_scores (to host)", "flat_boxes (to host)"}
