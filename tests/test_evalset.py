"""The evaluation set's labels (models/evalset/labels.json) and the AP50 scoring bench/accuracy.py uses.

No network: the photos themselves are fetched only by bench/accuracy.py; here the committed
labels are checked for shape, pins and coverage, and the scoring on synthetic boxes whose AP
is known by hand.
"""

from __future__ import annotations

import io
import json
import lzma
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from edgewatch.models.evalset import (
    EVALUATED, GROUPS, LABELS_FILE, REGISTRIES, Box, ap50, extract_deb_verified, load_labels, match_image,
)
from edgewatch.models.files import sha256_file
from edgewatch.models.runtime.labels import COCO80
from edgewatch.models.packages import FetchError

MIN_SIDE = 12  # labels skip objects smaller than about 12 px


def test_labels_file_is_well_formed() -> None:
    raw = json.loads(LABELS_FILE.read_text())
    assert {"description", "box_format", "photos"} <= raw.keys()
    photos = load_labels()
    ids = [p.id for p in photos]
    assert len(ids) == len(set(ids)), "photo ids must be unique"
    sources = [(p.package, p.path) for p in photos]
    assert len(sources) == len(set(sources)), "a photo is listed twice"
    for p in photos:
        assert p.registry in REGISTRIES, p.id
        assert p.package and p.path and not p.path.startswith("/"), p.id
        assert re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.+~:_-]*", p.version), f"{p.id}: version {p.version!r} is not a pin"
        assert re.fullmatch(r"[0-9a-f]{64}", p.sha256), f"{p.id}: sha256 not pinned"
        assert p.licence.strip(), f"{p.id}: record where the photo's licence comes from"
        assert p.width > 0 and p.height > 0 and p.boxes, p.id
        assert any(not b.ignore for b in p.boxes), f"{p.id}: no object labelled"


def test_boxes_are_coco_classes_inside_their_photo() -> None:
    for p in load_labels():
        for b in p.boxes:
            assert b.label in COCO80, f"{p.id}: {b.label!r} is not a COCO-80 class"
            x1, y1, x2, y2 = b.box
            assert 0 <= x1 < x2 <= p.width and 0 <= y1 < y2 <= p.height, f"{p.id}: {b} outside {p.width}x{p.height}"
            if not b.ignore:
                assert b.label in EVALUATED, f"{p.id}: {b.label} is in no class group, so it would not be scored"
                assert max(x2 - x1, y2 - y1) >= MIN_SIDE, f"{p.id}: {b} is smaller than {MIN_SIDE} px"


def test_set_is_big_enough_and_covers_every_group() -> None:
    photos = load_labels()
    assert len(photos) >= 40
    boxes = [b for p in photos for b in p.boxes if not b.ignore]
    assert len(boxes) >= 100
    for group, members in GROUPS.items():
        n = sum(b.label in members for b in boxes)
        shown_in = sum(any(b.label in members and not b.ignore for b in p.boxes) for p in photos)
        assert n >= 10 and shown_in >= 3, f"{group}: only {n} boxes in {shown_in} photos"
    assert len({p.package for p in photos}) >= 3, "photos should come from several packages"


def test_groups_are_disjoint_coco_names() -> None:
    seen: set[str] = set()
    for members in GROUPS.values():
        assert members <= set(COCO80)
        assert not members & seen
        seen |= members


# --- AP50 on synthetic boxes ---------------------------------------------------------------------

def dets(*rows: tuple[str, float, tuple[float, float, float, float]]):
    labels = [r[0] for r in rows]
    scores = np.asarray([r[1] for r in rows], np.float32)
    boxes = np.asarray([r[2] for r in rows], np.float32).reshape(-1, 4)
    return boxes, scores, labels


A, B, C = (0, 0, 100, 100), (200, 0, 300, 100), (0, 200, 100, 300)


def test_perfect_detections_score_one() -> None:
    truth = [[Box("person", A), Box("car", B)], [Box("dog", C)]]
    detections = [dets(("person", 0.9, A), ("car", 0.8, B)), dets(("dog", 0.7, C))]
    per_class, groups = ap50(truth, detections)
    assert per_class == {"person": 1.0, "car": 1.0, "dog": 1.0}
    assert groups["people"].ap50 == groups["vehicles"].ap50 == groups["animals"].ap50 == 1.0
    assert groups["household"].ap50 is None and groups["household"].objects == 0
    assert groups["overall"].ap50 == groups["overall"].pooled_ap50 == 1.0 and groups["overall"].objects == 3


def test_ap_is_the_area_under_the_precision_envelope() -> None:
    # Two people; ranked: hit (0.9), miss (0.8, nowhere near), hit (0.7). Precision/recall:
    # (1, 0.5), (0.5, 0.5), (0.67, 1.0): AP = 0.5 * 1 + 0.5 * 2/3.
    truth = [[Box("person", A), Box("person", B)]]
    detections = [dets(("person", 0.9, A), ("person", 0.8, C), ("person", 0.7, (205, 5, 305, 105)))]
    per_class, groups = ap50(truth, detections)
    assert per_class["person"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert groups["people"].ap50 == pytest.approx(5 / 6)


def test_iou_threshold_duplicates_and_wrong_class() -> None:
    truth = [[Box("car", A)]]
    # IoU of (0,0,100,100) with (0,0,100,50) is 0.5: a hit; the duplicate on the same car is a false
    # positive, and so is a truck on it (another class), ranked above the hit.
    detections = [dets(("truck", 0.95, A), ("car", 0.9, (0, 0, 100, 50)), ("car", 0.8, A))]
    per_class, groups = ap50(truth, detections)
    assert per_class["car"] == 1.0  # the car's own ranking: hit first, then the duplicate
    assert "truck" not in per_class  # no truck in the ground truth: not averaged in
    # pooled over vehicles the truck comes first: precision 1/2 at recall 1
    assert groups["vehicles"].pooled_ap50 == pytest.approx(0.5)
    below = [dets(("car", 0.9, (0, 0, 100, 49)))]
    assert ap50(truth, below)[0]["car"] == 0.0


def test_ignore_regions_and_unscored_classes() -> None:
    truth = [[Box("person", A), Box("person", (200, 200, 400, 400), ignore=True)]]
    # a detection inside the crowd counts neither way; a kite (in no group) is not scored; a
    # person mostly outside the crowd region is a false positive.
    detections = [dets(("person", 0.95, (250, 250, 300, 300)), ("kite", 0.9, (0, 300, 50, 350)),
                       ("person", 0.8, A), ("person", 0.7, (350, 350, 500, 500)))]
    matched = match_image(truth[0], *detections[0])
    assert [(c, tp) for c, _, tp in matched] == [("person", 1), ("person", 0)]
    per_class, groups = ap50(truth, detections)
    assert per_class == {"person": 1.0}
    assert groups["people"].objects == 1


def test_group_mean_and_pooled_differ_as_defined() -> None:
    # Cat found (AP 1), dog missed with a confident false positive (AP 0): the class mean is 0.5.
    # Pooled, the false positive ranks first, so the one hit of two animals comes at precision 1/2.
    truth = [[Box("cat", A), Box("dog", B)]]
    detections = [dets(("dog", 0.99, C), ("cat", 0.9, A))]
    per_class, groups = ap50(truth, detections)
    assert per_class == {"cat": 1.0, "dog": 0.0}
    assert groups["animals"].ap50 == pytest.approx(0.5)
    assert groups["animals"].pooled_ap50 == pytest.approx(0.25)  # recall 1/2 at precision 1/2
    assert groups["animals"].classes == 2 and groups["animals"].objects == 2


def test_images_and_detections_must_pair_up() -> None:
    with pytest.raises(ValueError):
        ap50([[Box("cat", A)]], [])


# --- photos from a Debian package ----------------------------------------------------------------

def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def test_photos_come_out_of_a_deb_verified(tmp_path: Path) -> None:
    photo = b"\xff\xd8 not really a jpeg, but bytes with a known digest"
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        info = tarfile.TarInfo("./usr/share/demo/data/photo.jpg")
        info.size = len(photo)
        tf.addfile(info, io.BytesIO(photo))
    deb = tmp_path / "demo_1.0-1_all.deb"
    deb.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.xz", lzma.compress(b"")),
                         ("data.tar.xz", lzma.compress(tar.getvalue()))]))
    (tmp_path / "ref").write_bytes(photo)
    digest = sha256_file(tmp_path / "ref")
    got = extract_deb_verified(deb, {"usr/share/demo/data/photo.jpg": digest}, tmp_path / "out")
    assert got["usr/share/demo/data/photo.jpg"].read_bytes() == photo
    with pytest.raises(FetchError, match="sha256"):
        extract_deb_verified(deb, {"usr/share/demo/data/photo.jpg": "0" * 64}, tmp_path / "out2")
