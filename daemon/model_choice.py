"""`detection.model: auto`: the most accurate installed detector whose latency, measured on this
box's active backend, fits ``detection.latency_budget_ms``; else the fastest.

Accuracy is the pooled AP50 of the variant on edgewatch's evaluation set, measured with
``bench/accuracy.py`` and recorded in the catalogue. Models the catalogue does not know (added
with `models add`) take part only when no catalogue detector is installed, ranked by speed. Latency is the p50 of the
backend's raw inference, measured once per model file, backend and CPU, and cached in the
cache dir, so a restart makes the same choice without measuring again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgewatch.backends.base import Backend, BackendConfig
from edgewatch.backends.registry import plan
from edgewatch.models.catalogue import catalogue
from edgewatch.models.files import atomic_write_json
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.quantize import cpu_features

def accuracy(manifest: ModelManifest, variant: str) -> tuple[float | None, str]:
    """(pooled AP50 on the evaluation set, where the figure comes from) for ``variant`` of an installed
    model; (None, why) when the catalogue has no figure for this model as installed."""
    entry = catalogue().get(manifest.name)
    if entry is None or entry.source != manifest.source or not entry.accuracy:
        return None, "not in the catalogue: accuracy unknown"
    if variant in entry.accuracy:
        return entry.accuracy[variant], f"{variant} on the evaluation set"
    # An accelerator's int8 conversion (RKNN, Edge TPU) has no figure of its own: use the ONNX one of its precision.
    precision = manifest.variants[variant].precision if variant in manifest.variants else "int8"
    proxy = precision if precision in entry.accuracy else "fp32"
    if proxy in entry.accuracy:
        return entry.accuracy[proxy], f"{proxy} ONNX on the evaluation set (no figure for {variant})"
    return None, f"no accuracy figure for {variant}"


@dataclass(frozen=True)
class Candidate:
    """One installed detector as it would run here."""

    name: str
    variant: str
    backend: str
    ap50: float | None
    ap50_source: str
    p50_ms: float | None  # None: could not be loaded here
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        ap = f"AP50 {self.ap50:.3f}" if self.ap50 is not None else "AP50 unknown"
        speed = f"{self.p50_ms:.0f} ms on {self.backend}" if self.p50_ms is not None else self.error or "not measured"
        return f"{self.name} ({self.variant}, {ap}, {speed})"


@dataclass(frozen=True)
class Choice:
    """The detector ``auto`` resolved to, and why, with every candidate considered."""

    name: str
    reason: str
    budget_ms: float
    candidates: tuple[Candidate, ...]

    def as_dict(self) -> dict[str, object]:
        return {"model": self.name, "reason": self.reason, "latency_budget_ms": self.budget_ms,
                "candidates": [c.as_dict() for c in self.candidates]}


def choose(candidates: list[Candidate], budget_ms: float) -> Choice:
    """The most accurate candidate whose p50 fits ``budget_ms`` (ties: the faster); if none fits,
    the fastest. Unknown accuracy ranks below any known figure."""
    runnable = [c for c in candidates if c.p50_ms is not None]
    if not runnable:
        raise ValueError("no candidate could be loaded: " + "; ".join(c.describe() for c in candidates))
    fits = [c for c in runnable if c.p50_ms <= budget_ms]
    if fits:
        best = max(fits, key=lambda c: (c.ap50 is not None, c.ap50 or 0.0, -c.p50_ms))
        why = f"the most accurate installed detector that fits detection.latency_budget_ms {budget_ms:g}"
    else:
        best = min(runnable, key=lambda c: c.p50_ms)
        why = f"no installed detector fits detection.latency_budget_ms {budget_ms:g}, so the fastest"
    reason = f"{why}: {best.describe()}"
    rest = [c for c in candidates if c is not best]
    if rest:
        reason += "; also installed: " + ", ".join(c.describe() for c in rest)
    return Choice(best.name, reason, budget_ms, tuple(candidates))


class LatencyCache:
    """Measured p50s in ``<cache_dir>/latency.json``, keyed by model file, backend, its thread
    setting and the CPU, so a changed file, backend or machine is measured afresh."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def key(manifest: ModelManifest, variant: str, backend: Backend) -> str:
        threads = getattr(backend.config, "threads", "")
        return "|".join((manifest.name, manifest.variants[variant].sha256, backend.type_key, f"threads={threads}",
                         cpu_features()))

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}  # missing or damaged: measure again

    def get(self, key: str) -> float | None:
        entry = self._read().get(key)
        value = entry.get("p50_ms") if isinstance(entry, dict) else None
        return float(value) if isinstance(value, (int, float)) else None

    def put(self, key: str, p50_ms: float) -> None:
        data = self._read()
        data[key] = {"p50_ms": round(p50_ms, 2), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, data)
        except OSError:
            pass  # a read-only cache dir only costs a measurement at the next start


def planned_candidate(manifest: ModelManifest, preferred: str, configs: dict[str, BackendConfig],
                      cache: LatencyCache) -> tuple[Candidate, bool]:
    """The candidate as it would run, without loading it: (candidate, True) when its p50 is in the
    cache; (candidate with p50 None, False) when it must be loaded and measured first."""
    planned = plan(preferred, manifest, configs)
    if planned is None:
        variant = manifest.default_variant
        return Candidate(manifest.name, variant, "-", *accuracy(manifest, variant), None,
                         "no backend here has a variant of it"), False
    backend, variant = planned
    p50 = cache.get(LatencyCache.key(manifest, variant, backend))
    return Candidate(manifest.name, variant, backend.type_key, *accuracy(manifest, variant), p50,
                     "" if p50 is not None else "not measured yet"), p50 is not None


def rankable(manifests: list[ModelManifest]) -> list[ModelManifest]:
    """The detectors ``auto`` chooses among: those whose accuracy is known (catalogue models); your
    own models only when no catalogue model is installed. An unknown model is never loaded and
    timed just to rank it last (a broken one could hang the start)."""
    known = [m for m in manifests if accuracy(m, m.default_variant)[0] is not None]
    return known or manifests


def sole_choice(manifest: ModelManifest, budget_ms: float) -> Choice:
    """With one detector installed there is nothing to measure or compare."""
    return Choice(manifest.name, f"the only installed detector ({manifest.default_variant})", budget_ms, ())


def preview(manifests: list[ModelManifest], preferred: str, configs: dict[str, BackendConfig],
            cache: LatencyCache, budget_ms: float) -> tuple[list[Candidate], Choice | None]:
    """What ``auto`` would choose from the cache alone (for `edgewatch models list`): the candidates,
    and the choice, or None while some candidate is not measured yet."""
    manifests = rankable(manifests)
    if len(manifests) == 1:
        return [], sole_choice(manifests[0], budget_ms)
    planned = [planned_candidate(m, preferred, configs, cache) for m in manifests]
    candidates = [c for c, _ in planned]
    if not candidates or not all(known for _, known in planned):
        return candidates, None
    return candidates, choose(candidates, budget_ms)
