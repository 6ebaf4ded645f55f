"""What a camera reports, as configuration: filters, zones, masks, detection settings.

Plain models with no dependencies on the pipeline, so the daemon's config can embed them.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class TrackingConfig(BaseModel):
    """How a camera's detections become objects (README 'Camera tracking')."""

    model_config = ConfigDict(extra="forbid")
    confirm_frames: int = Field(3, ge=1, le=30, description=(
        "detections an object needs before it is reported and counted (one of them may be a frame where other "
        "detections hide it); a one-frame detection is never reported"))
    min_iou: float = Field(0.2, gt=0, lt=1, description=(
        "least overlap between a detection and an object's predicted box for them to match"))
    count_grace_s: float = Field(0.6, ge=0, description=(
        "an object the detector misses stays counted this long (a flicker, someone passing in front); "
        "at most end_after_s"))
    recheck_every_s: float = Field(10.0, gt=0, le=3600, description=(
        "while the motion gate finds the scene still, a detection re-checks the objects this often"))
    stationary_after_s: float = Field(10.0, gt=0, description="an object that has not moved this long is stationary")
    update_every_s: float = Field(5.0, gt=0, description=(
        "at most one update event per object this often (more when its zones or stationary state change)"))


class DetectConfig(BaseModel):
    """What a camera detects and reports."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="installed detector or ipcam preset; default: the default detector")
    filters: FilterConfig = FilterConfig()
    motion_threshold: float = Field(0.005, ge=0, le=1, description="share of changed pixels that counts as motion")
    end_after_s: float = Field(5.0, gt=0, description="an object unseen this long has left")
    tracking: TrackingConfig = TrackingConfig()


