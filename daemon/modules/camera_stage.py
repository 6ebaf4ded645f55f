"""What a module's camera stage (faces, plates) shares: its work runs on the shared inference queue;
a saturated box skips a frame rather than queueing it; a missing model turns the stage off for a
while, logged once, and it says so in the camera's state until the work succeeds again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from edgewatch.daemon.inference_queue import InferenceQueue, QueueFull
from edgewatch.daemon.modules.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_UNAVAILABLE_S = 60.0  # models missing: look again this often (they can be installed at run time)


class CameraStage:
    """``what`` names the stage in the log ("face recognition", "plate reading")."""

    what = "this stage"

    def __init__(self, camera: str, queue: InferenceQueue) -> None:
        self.camera, self.queue = camera, queue
        self.error: str | None = None  # why the stage cannot work now
        self._unavailable_until = float("-inf")

    def resting(self, now: float) -> bool:
        """Whether the stage is off for now (its models were missing a moment ago)."""
        return now < self._unavailable_until

    async def run(self, now: float, job: Callable[..., T], *args: Any) -> T | None:
        """``job(*args)`` on the inference queue; None when the box is saturated (nothing counted) or
        the models are missing (the stage rests, and says why)."""
        try:
            result = await self.queue.run(job, *args)
        except QueueFull:
            return None
        except Unavailable as exc:
            why = str(exc)
            if self.error != why:
                log.warning("camera %s: %s is off until this is fixed: %s (checked again every %.0f s)",
                            self.camera, self.what, why, RETRY_UNAVAILABLE_S, extra={"camera": self.camera})
            self.error = why
            self._unavailable_until = now + RETRY_UNAVAILABLE_S
            return None
        if self.error is not None:
            log.info("camera %s: %s works again", self.camera, self.what, extra={"camera": self.camera})
            self.error = None
        return result
