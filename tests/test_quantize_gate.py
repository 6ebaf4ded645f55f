"""The int8 gate's figures: AP50 against the fp32 model's own detections, on synthetic outputs
whose right answer is known (models/quantize.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgewatch.models.quantize import average_precision, cpu_features, match_detections

SIZE = (320, 320)


def rows(*dets: tuple[float, float, float, float, float, int]) -> list[np.ndarray]:
    """A CenterNet-layout output (1×K×6: x1, y1, x2, y2, score, class) holding ``dets``."""
    return [np.asarray([list(d) for d in dets] or np.zeros((0, 6)), np.float32).reshape(1, -1, 6)]


PERSON = (10, 10, 110, 210, 0.9, 0)
CAR = (150, 150, 300, 250, 0.8, 2)
FAINT_DOG = (200, 20, 260, 80, 0.35, 16)  # fp32 scores it 0.3–0.4: neither right nor wrong for int8


def judge(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict:
    x = np.zeros((1, 1), np.float32)
    return match_detections(lambda _t: reference, lambda _t: candidate, [x], [x], "centernet", SIZE)


def test_same_detections_score_full_marks_and_faint_ones_are_ignored() -> None:
    r = judge(rows(PERSON, CAR, FAINT_DOG), rows(PERSON, CAR, (*FAINT_DOG[:4], 0.37, 16)))
    assert r["reference_detections"] == 2 and r["matched"] == 2
    assert r["agreement"] == 1.0 and r["ap50"] == 1.0 and r["extra_candidate_detections"] == 0


def test_a_confident_false_detection_costs_precision() -> None:
    ghost = (20, 230, 90, 300, 0.95, 5)  # a bus nowhere in fp32's answer, ranked first
    r = judge(rows(PERSON, CAR), rows(PERSON, CAR, ghost))
    assert r["agreement"] == 1.0 and r["extra_candidate_detections"] == 1
    assert r["ap50"] == pytest.approx(2 / 3, abs=1e-3)


def test_a_missed_or_misplaced_detection_costs_recall() -> None:
    shifted = (60, 110, 160, 310, 0.9, 0)  # the person, but IoU < 0.5 with fp32's box
    r = judge(rows(PERSON, CAR), rows(shifted, CAR))
    assert r["matched"] == 1 and r["agreement"] == 0.5
    # ranked: the misplaced person (0.9, wrong), then the car (0.8, right): precision 1/2 at recall 1/2
    assert r["ap50"] == pytest.approx(0.25, abs=1e-3)


def test_average_precision_edges() -> None:
    assert average_precision([], 0) == 1.0 and average_precision([], 3) == 0.0
    assert average_precision([(0.9, 1), (0.8, 1)], 2) == 1.0
    # a late false positive does not lower the precision envelope before it
    assert average_precision([(0.9, 1), (0.8, 1), (0.5, 0)], 2) == 1.0


def test_cpu_features_name_the_machine() -> None:
    import platform

    assert cpu_features().startswith(platform.machine())
