"""Per-camera detection filters: labels, confidence, box area, masks, and named zones."""

from __future__ import annotations

from dataclasses import dataclass

from edgewatch.daemon.modules.envelope import Prediction
from edgewatch.daemon.pipeline.rules import FilterConfig

@dataclass(frozen=True, slots=True)
class Located:
    prediction: Prediction
    zones: tuple[str, ...]


def apply(predictions: list[Prediction], config: FilterConfig, width: int, height: int) -> list[Located]:
    """Keep the predictions this camera reports, each with the zones its foot point lies in."""
    kept = []
    for p in predictions:
        if p.confidence < config.min_confidence or (config.labels is not None and p.label not in config.labels):
            continue
        if (p.x_max - p.x_min) * (p.y_max - p.y_min) < config.min_area * width * height:
            continue
        foot = ((p.x_min + p.x_max) / 2 / width, p.y_max / height)  # where the object stands
        if any(m.contains(*foot) for m in config.masks):
            continue
        zones = tuple(z.name for z in config.zones if z.contains(*foot))
        if config.require_zone and not zones:
            continue
        kept.append(Located(p, zones))
    return kept
