"""Decoders and geometry on constructed tensors (exact expected values are derivable by hand)."""

import numpy as np
import pytest

from edgewatch.models.manifest import InputSpec, Preprocessing
from edgewatch.models.postprocess import decode, detect_yolo_kind
from edgewatch.models.preprocess import letterbox


def test_yolov5_rows_decode_nms_classwise_and_sort() -> None:
    nc = 3
    rows = np.zeros((1, 4, 5 + nc), np.float32)
    rows[0, 0, :5] = [100, 100, 40, 40, 0.9]; rows[0, 0, 5 + 1] = 0.9   # class 1, 0.81
    rows[0, 1, :5] = [102, 101, 40, 40, 0.9]; rows[0, 1, 5 + 1] = 0.8   # same class, overlaps → suppressed
    rows[0, 2, :5] = [101, 100, 40, 40, 0.95]; rows[0, 2, 5 + 2] = 0.95  # other class, overlaps → kept
    rows[0, 3, :5] = [300, 300, 20, 20, 0.5]; rows[0, 3, 5 + 0] = 0.5   # 0.25 < min_conf → dropped
    boxes, scores, classes = decode("yolov5", [rows], (640, 640), min_conf=0.4)
    assert classes.tolist() == [2, 1]
    assert scores[0] == pytest.approx(0.9025) and scores[1] == pytest.approx(0.81)
    np.testing.assert_allclose(boxes[1], [80, 80, 120, 120])


def test_yolov8_columns_and_allowed_classes() -> None:
    nc = 2
    cols = np.zeros((1, 4 + nc, 3), np.float32)
    cols[0, :, 0] = [50, 60, 20, 10, 0.7, 0.1]
    cols[0, :, 1] = [200, 100, 10, 10, 0.0, 0.6]
    boxes, scores, classes = decode("yolov8", [cols], (320, 320), 0.3, allowed=np.array([1]))
    assert classes.tolist() == [1]
    np.testing.assert_allclose(boxes[0], [195, 95, 205, 105])


def test_nanodet_gfl_expected_distance() -> None:
    size = (32, 32)
    outs = []
    for stride in (8, 16, 32):
        n = (32 // stride) ** 2
        scores = np.zeros((1, n, 80), np.float32)
        dist = np.full((1, n, 44), -20.0, np.float32)
        if stride == 8:
            scores[0, 5, 16] = 0.8  # anchor 5 = row 1, col 1 of a 4x4 map: centre (12, 12)
            for side, binv in enumerate([1, 2, 3, 0]):  # distances 1,2,3,0 bins of 8 px
                dist[0, 5, side * 11 + binv] = 20.0
        outs += [scores, dist]
    boxes, scores, classes = decode("nanodet_gfl", outs, size, 0.5)
    assert classes.tolist() == [16]
    np.testing.assert_allclose(boxes[0], [12 - 8, 12 - 16, 12 + 24, 12 + 0], atol=1e-3)


def test_centernet_rows() -> None:
    det = np.zeros((1, 100, 6), np.float32)
    det[0, 0] = [10, 20, 110, 220, 0.9, 15]
    det[0, 1] = [10, 20, 110, 220, 0.2, 0]
    boxes, scores, classes = decode("centernet", [det], (512, 512), 0.4)
    assert classes.tolist() == [15] and boxes.tolist() == [[10, 20, 110, 220]]


def test_letterbox_round_trip_maps_boxes_to_original_pixels() -> None:
    img = np.zeros((300, 600, 3), np.uint8)
    spec = InputSpec(shape=(1, 3, 416, 416), layout="nchw")
    tensor, geo = letterbox(img, spec, Preprocessing(color="bgr", mean=(1, 2, 3), std=(2, 2, 2)))
    assert tensor.shape == (1, 3, 416, 416) and tensor.dtype == np.float32
    assert geo.scale == pytest.approx(416 / 600) and geo.pad_x == 0 and geo.pad_y == (416 - 208) // 2
    box_in_input = np.array([[0, geo.pad_y, 416, geo.pad_y + 208]], np.float32)
    np.testing.assert_allclose(geo.to_original(box_in_input), [[0, 0, 599, 299]], atol=1.0)
    outside = np.array([[-10, -10, 500, 500]], np.float32)  # beyond the image: clipped to it
    np.testing.assert_allclose(geo.to_original(outside), [[0, 0, 599, 299]])


def test_detect_yolo_kind_explains_mismatch() -> None:
    assert detect_yolo_kind((1, 25200, 85), 80) == "yolov5"
    assert detect_yolo_kind((1, 84, 8400), 80) == "yolov8"
    with pytest.raises(ValueError, match="one class name per line"):
        detect_yolo_kind((1, 84, 8400), 3)
