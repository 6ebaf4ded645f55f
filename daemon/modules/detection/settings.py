"""The detection module's settings: its config section plus the backend, changeable at run time."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from edgewatch.backends.registry import BackendChoice
from edgewatch.daemon.config import DetectionConfig, Settings

log = logging.getLogger(__name__)


class DetectionSettings(DetectionConfig):
    """What /v1/settings/ObjectDetectionEdgewatch can change; applied by reloading the module."""

    backend: BackendChoice = "auto"

    @classmethod
    def from_config(cls, settings: Settings, overrides: dict[str, object]) -> "DetectionSettings":
        base = settings.detection.model_dump() | {"backend": settings.backend}
        try:
            return cls.model_validate(base | overrides)
        except ValidationError as exc:
            log.error("ignoring saved detection settings %s: %s", overrides, exc)
            return cls.model_validate(base)
