"""Module settings changed through /v1/settings, persisted atomically across restarts."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from edgewatch.models.files import atomic_write_json

log = logging.getLogger(__name__)


class ModuleSettingsStore:
    """``<data_dir>/settings.json``: {module_id: {name: value}}; replaced whole on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Writes are atomic, so this is outside damage; keep the file for the user to inspect.
            log.error("cannot read %s (%s); using defaults. Fix or delete the file.", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def module(self, module_id: str) -> dict[str, Any]:
        value = self.load().get(module_id, {})
        return value if isinstance(value, dict) else {}

    def update(self, module_id: str, values: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            data = self.load()
            merged = {**data.get(module_id, {}), **values}
            data[module_id] = merged
            atomic_write_json(self.path, data)
            return merged
