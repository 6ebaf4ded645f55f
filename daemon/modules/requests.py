"""What every module's use cases share, whatever the transport: reading the common parameters,
and running work on the one inference queue."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from edgewatch.daemon.inference_queue import InferenceQueue, QueueFull
from edgewatch.daemon.metrics import count_queue_full
from edgewatch.daemon.modules.errors import BadRequest, Unavailable

T = TypeVar("T")


def confidence_value(raw: str, default: float) -> float:
    """``min_confidence`` as sent (text), or ``default`` when empty; BadRequest if not in [0, 1]."""
    raw = raw.strip()
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"min_confidence must be a number between 0 and 1, got {raw!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadRequest(f"min_confidence must be between 0 and 1, got {raw!r}")
    return value


async def queued(queue: InferenceQueue, job: Callable[[], T]) -> T:
    """``job`` run on the inference queue; a full queue is Unavailable with its Retry-After."""
    try:
        return await queue.run(job)
    except QueueFull as exc:
        count_queue_full(queue)
        raise Unavailable(f"{exc}: the box is busy, retry shortly", retry_after=exc.retry_after) from None
