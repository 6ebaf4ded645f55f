"""Decoders and geometry on constructed tensors (exact expected values are derivable by hand)."""

import numpy as np
import pytest

from edgewatch.models.manifest import InputSpec, Preprocessing
from edgewatch.models.layout_recognition import recognise
from edgewatch.models.runtime.heads import decode
from edgewatch.models.tensor_info import TensorInfo
from edgewatch.models.runtime.preprocess import letterbox


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


def test_yolov5_normalized_rows_scale_to_input_pixels() -> None:
    """The TF.js YOLOv5 layout (npm ``yolov5``): cx, cy, w, h are fractions of the input's width and
    height; boxes come back in input pixels (x by width, y by height), NMS'd and sorted as for yolov5."""
    nc = 80
    rows = np.zeros((1, 6, 5 + nc), np.float32)
    rows[0, 0, :5] = [0.5, 0.25, 0.1, 0.2, 0.9]; rows[0, 0, 5 + 5] = 0.9      # bus, 0.81
    rows[0, 1, :5] = [0.502, 0.251, 0.1, 0.2, 0.9]; rows[0, 1, 5 + 5] = 0.7   # same class, overlaps → suppressed
    rows[0, 2, :5] = [0.25, 0.5, 0.05, 0.4, 0.95]; rows[0, 2, 5 + 0] = 1.0    # person, 0.95
    rows[0, 3, :5] = [0.8, 0.8, 0.1, 0.1, 0.3]; rows[0, 3, 5 + 15] = 1.0      # objectness < min_conf: dropped early
    rows[0, 4, :5] = [0.8, 0.2, 0.1, 0.1, 0.6]; rows[0, 4, 5 + 41] = 0.5      # 0.6 passes, 0.3 product does not
    rows[0, 5, :5] = [0.1, 0.9, 0.1, 0.1, 0.5]; rows[0, 5, 5 + 41] = 0.9      # cup, 0.45
    boxes, scores, classes = decode("yolov5_normalized", [rows], (640, 320), min_conf=0.4)
    assert classes.tolist() == [0, 5, 41]
    np.testing.assert_allclose(scores, [0.95, 0.81, 0.45], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[160 - 16, 160 - 64, 160 + 16, 160 + 64],
                                       [320 - 32, 80 - 32, 320 + 32, 80 + 32],
                                       [64 - 32, 288 - 16, 64 + 32, 288 + 16]], atol=1e-3)
    none = decode("yolov5_normalized", [rows], (640, 320), min_conf=0.99)
    assert none[0].shape == (0, 4) and none[1].size == 0 and none[2].size == 0


def test_yolov5_early_objectness_filter_changes_nothing() -> None:
    """Dropping rows whose objectness is under min_conf before the N×C multiply gives exactly what
    scoring every row gives, on a 25 200-row tensor like YOLOv5s's; pixel and normalised layouts agree."""
    rng = np.random.default_rng(1)
    pred = rng.random((1, 25200, 85), dtype=np.float32)
    pred[0, :, 4] **= 4  # most rows have low objectness, as in a real frame
    size = (640, 640)
    for min_conf in (0.25, 0.4, 0.7):
        scores = pred[0, :, 5:] * pred[0, :, 4:5]
        best = scores.max(axis=1)
        keep = best >= min_conf
        boxes, got, cls = decode("yolov5_normalized", [pred], size, min_conf, iou=1.0, max_det=10**6)
        assert len(got) == int(keep.sum()) > 0
        np.testing.assert_allclose(np.sort(got), np.sort(best[keep]))
        pixels = pred.copy()
        pixels[0, :, :4] *= 640
        pb, ps, pc = decode("yolov5", [pixels], size, min_conf, iou=1.0, max_det=10**6)
        np.testing.assert_allclose(pb, boxes, atol=1e-3)
        assert ps.tolist() == got.tolist() and pc.tolist() == cls.tolist()


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


def test_yolo_kind_from_the_output_shape_explains_a_mismatch() -> None:
    image = [TensorInfo("images", (1, 3, 640, 640), "float32")]
    assert recognise(image, [TensorInfo("output0", (1, 25200, 85), "float32")], 80).kind == "yolov5"
    assert recognise(image, [TensorInfo("output0", (1, 84, 8400), "float32")], 80).kind == "yolov8"
    with pytest.raises(ValueError, match="one class name per line"):
        recognise(image, [TensorInfo("output0", (1, 84, 8400), "float32")], 3)
