"""Object detection: the first capability module (see edgewatch.daemon.modules.base)."""

from edgewatch.daemon.modules.detection.detector import Detector, NoModelInstalled, Outcome
from edgewatch.daemon.modules.detection.module import MODULE_ID, MODULE_NAME, DetectionModule
from edgewatch.daemon.modules.detection.settings import DetectionSettings

__all__ = ["MODULE_ID", "MODULE_NAME", "DetectionModule", "DetectionSettings", "Detector", "NoModelInstalled",
           "Outcome"]
