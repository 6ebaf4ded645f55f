"""The detection module's settings: its config section plus the backend, changeable at run time."""

from __future__ import annotations

from edgewatch.backends.registry import BackendChoice
from edgewatch.daemon.config import DetectionConfig


class DetectionSettings(DetectionConfig):
    """What /v1/settings/ObjectDetectionEdgewatch can change; applied by reloading the module."""

    backend: BackendChoice = "auto"
