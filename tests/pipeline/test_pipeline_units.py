"""Motion gate, filters and zones (the tracker: test_tracker.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgewatch.daemon.modules.envelope import Prediction
from edgewatch.daemon.pipeline.filters import apply
from edgewatch.daemon.pipeline.rules import FilterConfig, Polygon
from edgewatch.daemon.pipeline.motion import MotionGate


def test_motion_gate_static_scene_quiet_real_change_fires(photos) -> None:
    street = cv2.resize(cv2.imread(str(photos["bus"])), (1280, 720))
    gate = MotionGate()
    assert gate.moved(street)  # the first frame: nothing learnt yet
    rng = np.random.default_rng(0)
    for _ in range(20):  # the same scene with sensor noise
        noisy = np.clip(street.astype(np.int16) + rng.integers(-4, 5, street.shape), 0, 255).astype(np.uint8)
        assert not gate.moved(noisy)
    changed = street.copy()
    changed[200:520, 300:560] = cv2.resize(cv2.imread(str(photos["astronaut"])), (260, 320))  # someone steps in
    assert gate.moved(changed) and gate.last_changed > 0.02


def pred(label: str, conf: float, box: tuple[int, int, int, int]) -> Prediction:
    return Prediction(label, conf, *box)


def test_filters_labels_confidence_area_masks_and_zones() -> None:
    config = FilterConfig(labels=["person", "car"], min_confidence=0.5, min_area=0.01,
                          zones=[Polygon(name="driveway", points=((0, 0.5), (0.5, 0.5), (0.5, 1), (0, 1)))],
                          masks=[Polygon(name="street", points=((0.8, 0), (1, 0), (1, 1), (0.8, 1)))])
    preds = [pred("person", 0.9, (100, 300, 200, 700)),   # foot (150, 700) in the driveway
             pred("person", 0.9, (700, 100, 800, 300)),   # outside zones: kept, no zone
             pred("person", 0.3, (100, 300, 200, 700)),   # too unsure
             pred("dog", 0.9, (100, 300, 200, 700)),      # label not wanted
             pred("car", 0.9, (10, 10, 20, 20)),          # too small
             pred("car", 0.9, (850, 200, 990, 500))]      # in the mask
    kept = apply(preds, config, 1000, 750)
    assert [(k.prediction.label, k.zones) for k in kept] == [("person", ("driveway",)), ("person", ())]
    only_zones = apply(preds, config.model_copy(update={"require_zone": True}), 1000, 750)
    assert len(only_zones) == 1
    with pytest.raises(ValueError, match="fractions"):
        Polygon(name="bad", points=((0, 0), (2, 0), (0, 1)))

