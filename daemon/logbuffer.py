"""The recent log kept in memory for GET /v1/log/list."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from datetime import datetime, timezone


class LogBuffer(logging.Handler):
    def __init__(self, capacity: int = 1000) -> None:
        super().__init__(logging.INFO)
        self._entries: deque[dict[str, object]] = deque(maxlen=capacity)
        self._ids = itertools.count(1)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string must not break logging
            text = str(record.msg)
        with self._guard:
            self._entries.append({
                "id": next(self._ids),
                "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "entry": text,
                "level": record.levelname.lower(),
                "category": record.name,
                "label": "",
            })

    def after(self, last_id: int, count: int) -> list[dict[str, object]]:
        with self._guard:
            return [e for e in self._entries if e["id"] > last_id][:count]  # type: ignore[operator]
