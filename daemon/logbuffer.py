"""The recent log kept in memory for GET /v1/log/list."""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from datetime import datetime, timezone

from edgewatch.daemon.redaction import RedactingFilter


MAX_ENTRY_CHARS = 2000        # a longer line keeps its start and says how much was cut
MAX_TOTAL_CHARS = 1_000_000   # the oldest entries go first when the buffer holds more


class LogBuffer(logging.Handler):
    """The newest entries, at most ``capacity`` of them and ``max_chars`` characters in all;
    secrets are redacted before an entry is kept."""

    def __init__(self, capacity: int = 1000, max_chars: int = MAX_TOTAL_CHARS) -> None:
        super().__init__(logging.INFO)
        self._entries: deque[dict[str, object]] = deque()
        self.capacity, self.max_chars = capacity, max_chars
        self._chars = 0
        self._ids = itertools.count(1)
        self._guard = threading.Lock()
        self.addFilter(RedactingFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string must not break logging
            text = str(record.msg)
        if len(text) > MAX_ENTRY_CHARS:
            text = f"{text[:MAX_ENTRY_CHARS]}… ({len(text) - MAX_ENTRY_CHARS} more characters not kept)"
        with self._guard:
            self._chars += len(text)
            while self._entries and (len(self._entries) >= self.capacity or self._chars > self.max_chars):
                self._chars -= len(self._entries.popleft()["entry"])  # type: ignore[arg-type]
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
