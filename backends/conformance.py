"""Checks every backend must pass with the same model and photos: shared by the test suite
(tests/backends) and by `edgewatch selftest` on a user's box."""

from __future__ import annotations

import gc
import os
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgewatch.backends.base import Backend, BackendError
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime import run
from edgewatch.models.runtime.heads import HEADS
from edgewatch.models.runtime.preprocess import letterbox
from edgewatch.models.quantize import iou

MAIN_CONF = 0.5      # fp32 detections this confident are the "main objects" a backend must find
MATCH_IOU = 0.8
CANDIDATE_CONF = 0.3
# A quantised variant (int8, an NPU's or TPU's) rounds differently on each CPU and chip: one
# borderline object may go. It must still find this share of the main objects, counted over each
# photo and its mirror image, so a single detection cannot flip the verdict; an fp32 variant
# must find them all.
QUANTISED_SHARE = 0.85

Detections = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


def detect(backend: Backend, manifest: ModelManifest, image_bgr: np.ndarray, min_conf: float) -> Detections:
    """Run one photo through the backend on the daemon's own run path."""
    found = run.detect(backend, manifest, image_bgr, min_conf)
    return found.boxes, found.scores, found.classes


class Conformance:
    """Runs the checks for one backend class and one model variant against an fp32 reference backend."""

    CONCURRENCY_ROUNDS = 5
    RELOAD_CYCLES = 8

    def __init__(self, factory: Callable[[], Backend], model_path: Path, manifest: ModelManifest, variant: str,
                 reference: Backend, photos: dict[str, Path]) -> None:
        self.factory, self.model_path, self.manifest, self.variant = factory, model_path, manifest, variant
        self.reference = reference
        self.images = {name: cv2.imread(str(p), cv2.IMREAD_COLOR) for name, p in photos.items()}

    def _loaded(self) -> Backend:
        backend = self.factory()
        backend.load(self.model_path, self.manifest, self.variant)
        return backend

    def check_outputs(self) -> str:
        backend = self._loaded()
        try:
            spec, pre = backend.input_format()
            tensor, _ = letterbox(next(iter(self.images.values())), spec, pre)
            outputs, ref = backend.infer(tensor), self.reference.infer(letterbox(
                next(iter(self.images.values())), *self.reference.input_format())[0])
            got = sorted((tuple(o.shape), str(o.dtype)) for o in outputs)
            want = sorted((tuple(o.shape), str(o.dtype)) for o in ref)
            assert got == want, f"outputs {got} differ from the reference's {want}"
            assert all(np.isfinite(o).all() for o in outputs), "non-finite values in the outputs"
            return f"{len(outputs)} outputs, shapes and dtypes as the reference"
        finally:
            backend.close()

    def check_agreement(self) -> str:
        backend = self._loaded()
        try:
            total = matched = 0
            missing = []
            for name, photo in self.images.items():
                for view, img in ((name, photo), (f"{name} mirrored", cv2.flip(photo, 1))):
                    rb, _, rc = detect(self.reference, self.manifest, img, MAIN_CONF)
                    cb, _, cc = detect(backend, self.manifest, img, CANDIDATE_CONF)
                    for box, cls in zip(rb, rc):
                        total += 1
                        same = cc == cls
                        if same.any() and iou(box, cb[same]).max() >= MATCH_IOU:
                            matched += 1
                        else:
                            missing.append(f"{view}:{self.manifest.labels[cls]}")
            assert total > 0, "the reference found nothing on the photos"
            need = total if self.variant == "fp32" else int(np.ceil(QUANTISED_SHARE * total))
            assert matched >= need, f"{matched}/{total} main objects found (need {need}); missing {missing}"
            return (f"{matched}/{total} main objects (fp32 conf ≥ {MAIN_CONF}, photos and mirrors) found with "
                    f"IoU ≥ {MATCH_IOU}" + (f"; missed {missing}" if missing else ""))
        finally:
            backend.close()

    def _result(self, backend: Backend, image: np.ndarray):
        """What one run on ``image`` gives, as the checks compare it."""
        return detect(backend, self.manifest, image, CANDIDATE_CONF)

    def _same(self, got, expected) -> bool:
        return np.array_equal(got[2], expected[2]) and np.allclose(got[0], expected[0], atol=1.0)

    def check_concurrency(self, threads: int = 4, rounds: int | None = None) -> str:
        rounds = rounds or self.CONCURRENCY_ROUNDS
        backend = self._loaded()
        try:
            names = list(self.images)
            expected = {n: self._result(backend, self.images[n]) for n in names}
            errors: list[str] = []

            def worker(i: int) -> None:
                try:
                    for r in range(rounds):
                        n = names[(i + r) % len(names)]
                        if not self._same(self._result(backend, self.images[n]), expected[n]):
                            errors.append(f"thread {i} got another result for {n}")
                except Exception as exc:  # reported, not raised, so every thread finishes
                    errors.append(f"thread {i}: {exc!r}")

            pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
            [t.start() for t in pool]
            [t.join() for t in pool]
            assert not errors, "; ".join(errors[:3])
            return f"{threads} threads x {rounds} photos, every result equal to the sequential one"
        finally:
            backend.close()

    def check_reload(self, cycles: int | None = None) -> str:
        cycles = cycles or self.RELOAD_CYCLES
        def rss_mb() -> float:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
            return 0.0

        img = next(iter(self.images.values()))
        first = None
        for i in range(cycles):
            backend = self._loaded()
            self._result(backend, img)
            backend.close()
            gc.collect()
            if i == 1:  # after one full cycle, caches and allocators have settled
                first = (rss_mb(), threading.active_count())
        rss, threads = rss_mb(), threading.active_count()
        assert first is not None
        assert threads <= first[1], f"threads grew from {first[1]} to {threads} over {cycles} load/close cycles"
        assert rss - first[0] < 64, f"RSS grew {rss - first[0]:.0f} MB over {cycles} load/close cycles"
        return f"{cycles} load/infer/close cycles: RSS {first[0]:.0f} → {rss:.0f} MB, threads stable"

    def check_corrupt(self, scratch: Path) -> str:
        bad = scratch / f"corrupt{self.model_path.suffix}"
        data = self.model_path.read_bytes()
        bad.write_bytes(data[: len(data) // 3] + os.urandom(256))
        backend = self.factory()
        try:
            backend.load(bad, self.manifest, self.variant)
        except BackendError as exc:
            return f"refused with BackendError: {str(exc)[:80]}"
        finally:
            backend.close()
            bad.unlink(missing_ok=True)
        raise AssertionError("a corrupt model file loaded without a BackendError")

    def run_all(self, scratch: Path) -> list[CheckResult]:
        results = []
        for name, fn in (("outputs", self.check_outputs), ("agreement", self.check_agreement),
                         ("concurrency", self.check_concurrency), ("reload", self.check_reload),
                         ("corrupt model", lambda: self.check_corrupt(scratch))):
            try:
                results.append(CheckResult(name, True, fn()))
            except AssertionError as exc:
                results.append(CheckResult(name, False, str(exc)))
            except Exception as exc:  # a crash is a failed check with its reason, not a crashed selftest
                results.append(CheckResult(name, False, f"{exc!r}\n{traceback.format_exc(limit=3)}"))
        return results


class ImageConformance(Conformance):
    """The same checks for a backend running an image-to-image model (super-resolution on ncnn), which
    finds no objects and has no fp32 ONNX twin to agree with. Detection's "agreement" becomes
    fidelity: each photo (and its mirror), shrunk to at most ``side`` pixels, comes back upscaled by a
    whole factor, and that output shrunk back to the input's size matches the input (PSNR ≥
    MIN_ROUND_TRIP_DB), so the backend feeds and reads the model right. ``reference`` is unused."""

    CONCURRENCY_ROUNDS = 3  # an upscaled photo takes longer than a detection
    MIN_ROUND_TRIP_DB = 20.0  # measured: Real-ESRGAN x4 on the photos 28-33 dB; fed 0-255 instead of 0-1: < 5 dB

    def __init__(self, factory: Callable[[], Backend], model_path: Path, manifest: ModelManifest, variant: str,
                 photos: dict[str, Path], side: int = 64) -> None:
        super().__init__(factory, model_path, manifest, variant, None, photos)  # type: ignore[arg-type]
        order = cv2.COLOR_BGR2RGB if manifest.preprocessing.color == "rgb" else None
        for name, img in list(self.images.items()):
            scale = min(1.0, side / max(img.shape[:2]))
            small = cv2.resize(img, (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
            self.images[name] = cv2.cvtColor(small, order) if order is not None else small

    def _run(self, backend: Backend, image: np.ndarray) -> np.ndarray:
        return backend.infer(image[None])[0]

    def check_outputs(self) -> str:
        backend = self._loaded()
        try:
            image = next(iter(self.images.values()))
            outputs = backend.infer(image[None])
            assert len(outputs) == 1, f"{len(outputs)} outputs, expected one image"
            out, (h, w) = outputs[0], image.shape[:2]
            scale = out.shape[2] // h
            assert out.dtype == np.float32 and out.shape == (1, 3, h * scale, w * scale) and scale >= 1, (
                f"output {out.dtype} {out.shape} is not an RGB image scaled by a whole factor from {w}x{h}")
            assert np.isfinite(out).all(), "non-finite values in the output"
            return f"one float32 output, {w}x{h} → {w * scale}x{h * scale} (x{scale})"
        finally:
            backend.close()

    def check_agreement(self) -> str:
        backend = self._loaded()
        try:
            worst = (np.inf, "")
            for name, photo in self.images.items():
                for view, img in ((name, photo), (f"{name} mirrored", cv2.flip(photo, 1))):
                    out = HEADS[self.manifest.postprocessing].decoder([self._run(backend, img)])[0]
                    back = cv2.resize(out, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
                    mse = float(np.mean((back - img.astype(np.float32)) ** 2))
                    worst = min(worst, (10 * np.log10(255 ** 2 / max(mse, 1e-12)), view))
            assert worst[0] >= self.MIN_ROUND_TRIP_DB, (
                f"{worst[1]}: the upscaled image shrunk back is {worst[0]:.1f} dB from the input (need "
                f"{self.MIN_ROUND_TRIP_DB}): check the model's input scaling (preprocessing std) and its weights")
            return f"{2 * len(self.images)} views upscaled and shrunk back: ≥ {worst[0]:.1f} dB PSNR to the input"
        finally:
            backend.close()

    def _result(self, backend: Backend, image: np.ndarray) -> np.ndarray:
        return self._run(backend, image)

    def _same(self, got: np.ndarray, expected: np.ndarray) -> bool:
        return np.allclose(got, expected, atol=1e-4)

