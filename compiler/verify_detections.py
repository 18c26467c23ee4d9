"""Set-wise verification of detections: boxes, scores and labels that host post-processing (NMS, top-k,
a score threshold) selects, compared as sets rather than element by element.

A detector's selected detections are a set: a tiny score difference reorders them, and one near a decision
(the score threshold or the top-k cut) can drop in or out. Elementwise metrics would fail any such reordering,
so a group of host-computed outputs shaped like detections (`detection_groups`: boxes [N, 4] float, then
scores [N] float, optionally labels [N] integer, consecutive in the model's outputs, with the same N in every
sample) is judged by `detection_metrics`:

1. per sample, each reference detection (highest score first) is matched to the unmatched machine detection
   of the same label with the largest IoU, if that is at least MATCH_IOU;
2. the matched boxes and scores are held to the executor's own tolerance (`output_metrics`: the integer SNR
   bound, the float machine's rel L2, the interpreter's allclose), as any other output; boxes relative to
   their own size (each pair is measured from the reference box's centre: a detector regresses boxes as
   offsets in units of its anchors' sizes, so that is the scale its quantization error has);
3. an unmatched detection (in either set) is allowed only where the tolerated error can flip one of the
   post-processing's decisions:
   - the score cut (a score threshold or a top-k): its score within `cut_margin` of the lowest score either
     set kept in that sample. The tolerance allows score errors of relative size ε (10^(−bound/20) for an
     SNR bound: 4.9 % at 26.2 dB; the rel L2 bound; the allclose rtol, plus atol), i.e. a score noise of
     σ = ε·rms(reference scores); a detection within CUT_SIGMAS·σ of the cut may flip;
   - non-maximum suppression (when its IoU threshold t is known, `nms_iou`): a detection of the same label
     in either set, scoring as high (less `cut_margin`), overlaps it by at least t − `nms_iou_margin`, so
     which suppresses which can go either way (and a flip cascades to what the suppressed box suppressed).
     The IoU margin is CUT_SIGMAS·4·e: four coordinates, each off by e of the box's size, where e is the
     matched boxes' measured rel L2 (relative to their size), capped at ε.
   Anything else unmatched fails the output.

Reported: `detections` (reference, all samples), `matched_fraction` (matched over the larger of the two set
sizes, summed over samples), `unmatched` and `unmatched_excused`, `cut_margin`, `nms_iou_margin`, `mean_iou`,
the matched boxes' and scores' metrics (`boxes`, `scores`: max_abs_err, rel_l2, snr_db) and
`constant_reference` when the reference detections are the same for every sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rcc.compiler.verify import Tolerance, VerifyResult, compare_outputs, output_metrics

MATCH_IOU = 0.5      # the usual detection-matching threshold (PASCAL VOC, COCO's AP50)
CUT_SIGMAS = 3.0     # a detection within 3σ of score noise of the cut may legitimately flip
BOX_PAD = 1e-4       # boxes are matched grown by this fraction of the sets' extent, so zero-area ones overlap


@dataclass(frozen=True)
class DetectionGroup:
    """The output names of one set of detections."""

    boxes: str
    scores: str
    labels: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.boxes, self.scores) + ((self.labels,) if self.labels else ())


def _is_boxes(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" and array.ndim == 2 and array.shape[1] == 4


def _is_per_box(array: np.ndarray, count: int, kind: str) -> bool:
    return array.dtype.kind in kind and array.ndim == 1 and array.shape[0] == count


def detection_groups(samples: Sequence[dict[str, np.ndarray]], names: Sequence[str]) -> list[DetectionGroup]:
    """The detection-shaped groups among `names` (consecutive outputs, in order) in every one of `samples`."""
    groups: list[DetectionGroup] = []
    index = 0
    while index + 1 < len(names):
        boxes, scores = names[index], names[index + 1]
        labels = names[index + 2] if index + 2 < len(names) else None

        def fits(sample: dict[str, np.ndarray], label: str | None) -> bool:
            count = sample[boxes].shape[0] if _is_boxes(np.asarray(sample[boxes])) else -1
            return count >= 0 and _is_per_box(np.asarray(sample[scores]), count, "f") and \
                (label is None or _is_per_box(np.asarray(sample[label]), count, "iub"))

        if all(boxes in s and scores in s for s in samples) and all(fits(s, None) for s in samples):
            if labels is not None and all(labels in s for s in samples) and all(fits(s, labels) for s in samples):
                groups.append(DetectionGroup(boxes, scores, labels))
                index += 3
            else:
                groups.append(DetectionGroup(boxes, scores))
                index += 2
        else:
            index += 1
    return groups


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` [N, 4] with every box of `b` [M, 4] (x1, y1, x2, y2; either corner order)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    a_lo, a_hi = np.minimum(a[:, :2], a[:, 2:]), np.maximum(a[:, :2], a[:, 2:])
    b_lo, b_hi = np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])
    overlap = np.clip(np.minimum(a_hi[:, None], b_hi[None]) - np.maximum(a_lo[:, None], b_lo[None]), 0, None)
    inter = overlap[..., 0] * overlap[..., 1]
    area_a, area_b = np.prod(a_hi - a_lo, axis=1), np.prod(b_hi - b_lo, axis=1)
    union = area_a[:, None] + area_b[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_detections(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], group: DetectionGroup
                     ) -> list[tuple[int, int, float]]:
    """(reference index, machine index, IoU) of matched detections: greedy, reference by descending score,
    same label, largest IoU at least MATCH_IOU. Boxes are compared grown by BOX_PAD of the boxes' extent on
    every side: a box clipped to the image edge can have zero area, and the IoU of two such boxes is 0/0."""
    reference, machine = np.asarray(expected[group.boxes], np.float64), np.asarray(actual[group.boxes], np.float64)
    both = np.concatenate([reference, machine])
    pad = BOX_PAD * float(both.max() - both.min()) if both.size else 0.0  # boxes clipped to zero area still match
    iou = box_iou(reference + [-pad, -pad, pad, pad], machine + [-pad, -pad, pad, pad])
    if group.labels is not None:
        iou = np.where(np.asarray(expected[group.labels])[:, None] == np.asarray(actual[group.labels])[None], iou, -1)
    taken = np.zeros(iou.shape[1], dtype=bool)
    pairs = []
    for ref in np.argsort(-np.asarray(expected[group.scores], dtype=np.float64), kind="stable"):
        if iou.shape[1] == 0:
            break
        candidates = np.where(taken, -1.0, iou[ref])
        best = int(np.argmax(candidates))
        if candidates[best] >= MATCH_IOU:
            taken[best] = True
            pairs.append((int(ref), best, float(candidates[best])))
    return pairs


def tolerance_epsilon(tolerance: Tolerance) -> tuple[float, float]:
    """(relative, absolute) score error the executor's `Tolerance` allows."""
    if tolerance.kind == "snr":
        return 10 ** (-tolerance.bound / 20), 0.0
    if tolerance.kind == "rel_l2":
        return tolerance.bound, 0.0
    return tolerance.rtol, tolerance.atol


def detection_metrics(actual: Sequence[dict[str, np.ndarray]], expected: Sequence[dict[str, np.ndarray]],
                      group: DetectionGroup, tolerance: Tolerance, nms_iou: float | None = None) -> dict[str, Any]:
    """Set-wise metrics of one detection group over the samples, `passed` under `tolerance` (see the module
    docstring); `output_metrics` judges the matched boxes and scores. `nms_iou`: the IoU threshold of the
    post-processing's non-maximum suppression, when known."""
    relative, absolute = tolerance_epsilon(tolerance)
    all_scores = np.concatenate([np.asarray(e[group.scores], np.float64) for e in expected])
    rms = math.sqrt(float(np.mean(all_scores**2))) if all_scores.size else 0.0
    margin = CUT_SIGMAS * (relative * rms + absolute)
    pairs = [match_detections(got, want, group) for got, want in zip(actual, expected)]
    got_boxes, want_boxes = (np.concatenate([np.asarray(sample[group.boxes])[[p[side] for p in matched]]
                                             for sample, matched in zip(samples, pairs)]).reshape(-1, 4)
                             .astype(np.float64) for side, samples in ((1, actual), (0, expected)))
    centres = np.tile((want_boxes[:, :2] + want_boxes[:, 2:]) / 2, 2)  # judged relative to the boxes' sizes
    boxes = output_metrics(got_boxes - centres, want_boxes - centres, tolerance)
    scores = output_metrics(*(np.concatenate([np.asarray(sample[group.scores])[[p[side] for p in matched]]
                                              for sample, matched in zip(samples, pairs)])
                              for side, samples in ((1, actual), (0, expected))), tolerance)
    iou_margin = CUT_SIGMAS * 4 * min(boxes["rel_l2"] or 0.0, relative + absolute)
    counted = unmatched = excused = 0
    for got, want, matched in zip(actual, expected, pairs):
        counted += max(len(got[group.scores]), len(want[group.scores]))
        cut = float(np.min(np.concatenate([np.asarray(s[group.scores], np.float64) for s in (got, want)]),
                           initial=math.inf))
        for own, other, side in ((want, got, 0), (got, want, 1)):
            left = np.setdiff1d(np.arange(len(own[group.scores])), [p[side] for p in matched])
            unmatched += len(left)
            excused += sum(cut_or_suppression(own, other, int(i), group, cut + margin, margin, nms_iou, iou_margin)
                           for i in left)
    ious = [p[2] for matched in pairs for p in matched]
    metrics: dict[str, Any] = {
        "detections": int(sum(len(e[group.scores]) for e in expected)),
        "matched_fraction": len(ious) / counted if counted else 1.0,
        "unmatched": unmatched, "unmatched_excused": excused, "cut_margin": margin, "nms_iou_margin": iou_margin,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "boxes": boxes, "scores": scores,
        "passed": bool(boxes["passed"] and scores["passed"] and unmatched == excused)}
    if len(expected) > 1 and all(_same_detections(expected[0], e, group) for e in expected[1:]):
        metrics.update(constant_reference=True, note="the reference detections do not change over the samples: "
                                                     "a pass says nothing about the input-dependent part")
    elif unmatched > excused:
        metrics["note"] = (f"{unmatched - excused} detections unmatched (label and IoU >= {MATCH_IOU:g}) "
                           f"neither within {margin:.3g} of the score cut nor within {iou_margin:.3g} of an "
                           f"NMS decision")
    return metrics


def cut_or_suppression(own: dict[str, np.ndarray], other: dict[str, np.ndarray], index: int, group: DetectionGroup,
                       near_cut: float, margin: float, nms_iou: float | None, iou_margin: float) -> bool:
    """Whether detection `index` of set `own`, unmatched in `other`, sits where the tolerated error can flip
    a decision: its score at most `near_cut`, or (with `nms_iou`) a detection of the same label in either
    set, scoring at least as high (less `margin`), overlaps it by at least `nms_iou` − `iou_margin` (so the
    suppression between the two can go either way, or went the other way in the other set)."""
    score = float(own[group.scores][index])
    if score <= near_cut:
        return True
    if nms_iou is None:
        return False
    box = np.asarray(own[group.boxes])[index:index + 1]
    for sample, is_own in ((own, True), (other, False)):
        rivals = np.asarray(sample[group.scores], np.float64) >= score - margin
        if group.labels is not None:
            rivals &= np.asarray(sample[group.labels]) == own[group.labels][index]
        if is_own:
            rivals[index] = False
        if rivals.any() and float(box_iou(box, np.asarray(sample[group.boxes])[rivals]).max()) >= nms_iou - iou_margin:
            return True
    return False


def _same_detections(a: dict[str, np.ndarray], b: dict[str, np.ndarray], group: DetectionGroup) -> bool:
    return all(np.array_equal(np.asarray(a[name]), np.asarray(b[name])) for name in group.names)


def group_output_metrics(metrics: dict[str, Any], group: DetectionGroup) -> dict[str, dict[str, Any]]:
    """One entry per output of the group, in the shape of `output_metrics` (so tables and the worst-output
    summary read them): boxes and scores carry their matched metrics, every entry the set-wise figures."""
    shared = {key: value for key, value in metrics.items() if key not in ("boxes", "scores")}
    entries = {group.boxes: {**shared, **_summary(metrics["boxes"])},
               group.scores: {**shared, **_summary(metrics["scores"])}}
    if group.labels is not None:  # matched by label: the labels of matched pairs agree by construction
        entries[group.labels] = {**shared, "max_abs_err": 0.0, "rel_l2": 0.0, "snr_db": None}
    return entries


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"max_abs_err": metrics["max_abs_err"], "rel_l2": metrics["rel_l2"], "snr_db": metrics["snr_db"],
            "snr_input_db": None, "rel_l2_input": None, "detection_set": True}


def compare_with_detections(actual: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]],
                            executor: str, tolerance: Tolerance, host_outputs: Sequence[str],
                            nms_iou: float | None = None) -> VerifyResult:
    """`compare_outputs` over K samples, except that detection-shaped groups among `host_outputs` (the outputs
    host post-processing computes) are judged set-wise; `extra["detection_groups"]` names them."""
    groups = detection_groups([*actual, *expected], [name for name in expected[0] if name in host_outputs])
    grouped = {name for group in groups for name in group.names}
    result = compare_outputs([{n: v for n, v in a.items() if n not in grouped} for a in actual],
                             [{n: v for n, v in e.items() if n not in grouped} for e in expected], executor, tolerance)
    if not groups:
        return result
    for group in groups:
        metrics = detection_metrics(actual, expected, group, tolerance, nms_iou)
        result.outputs.update(group_output_metrics(metrics, group))
    result.outputs = {name: result.outputs[name] for name in expected[0]}  # the model's output order
    result.extra["detection_groups"] = [list(group.names) for group in groups]
    return result


def verify_host_outputs(parts: list[dict[str, np.ndarray]], finals: list[dict[str, np.ndarray]],
                        expected: list[dict[str, np.ndarray]], executor: str, tolerance: Tolerance,
                        host_info: dict[str, Any], nms_iou: float | None = None) -> VerifyResult:
    """Verification of a model split for the host: `finals` (the model's outputs, machine part then host)
    against `expected` (onnxruntime's outputs, with the tensors the machine part hands to the host exposed
    as extra outputs), detection groups set-wise (`compare_with_detections`). When there are such groups the
    final outputs no longer check the machine part elementwise, so each tensor it hands to the host (`parts`:
    the machine part's outputs) is compared under `tolerance` as an output named `NAME (to host)`; constant
    ones (shape constants the prefix hands over, the same in every sample and on the machine) are skipped."""
    finals_expected = [{name: e[name] for name in host_info["final_outputs"]} for e in expected]
    result = compare_with_detections(finals, finals_expected, executor, tolerance, host_info["outputs"], nms_iou)
    if "detection_groups" in result.extra:
        boundary = [name for name in host_info["inputs"] if name in parts[0] and name in expected[0] and
                    not all(np.array_equal(sample[name], expected[0][name]) for sample in [*parts, *expected])]
        handed = compare_outputs([{n: p[n] for n in boundary} for p in parts],
                                 [{n: e[n] for n in boundary} for e in expected], executor, tolerance)
        result.outputs.update({f"{name} (to host)": metrics for name, metrics in handed.outputs.items()})
    return result
