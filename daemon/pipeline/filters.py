"""Per-camera detection filters: labels, confidence, box area, masks, and named zones."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgewatch.daemon.detection import Prediction

Point = tuple[float, float]


class Polygon(BaseModel):
    """Points as fractions of the frame (0–1), so a zone survives a resolution change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    points: tuple[Point, ...]

    @field_validator("points")
    @classmethod
    def _check(cls, points: tuple[Point, ...]) -> tuple[Point, ...]:
        if len(points) < 3:
            raise ValueError("a polygon needs at least 3 points")
        if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in points):
            raise ValueError("polygon points are fractions of the frame: each x and y between 0 and 1")
        return points

    def contains(self, x: float, y: float) -> bool:
        contour = np.asarray(self.points, dtype=np.float32).reshape(-1, 1, 2)
        return cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[str] | None = Field(None, description="report only these labels; default: all")
    min_confidence: float = Field(0.5, ge=0, le=1)
    min_area: float = Field(0.001, ge=0, le=1, description="smallest box, as a fraction of the frame")
    zones: list[Polygon] = Field(default_factory=list, description="named areas; objects report the zones they stand in")
    masks: list[Polygon] = Field(default_factory=list, description="areas where objects are ignored")
    require_zone: bool = Field(False, description="ignore objects outside every zone")


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
