"""The cameras of this box: configured ones plus those added at run time through the API
(persisted atomically in ``<data_dir>/cameras.json``), each a reader thread and a worker task."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from edgewatch.daemon.config import CameraSettings
from edgewatch.daemon.cameras.reader import CameraReader
from edgewatch.daemon.detection import DetectionModule
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.pipeline.camera_worker import CameraSink, CameraWorker
from edgewatch.models.files import atomic_write_json

log = logging.getLogger(__name__)


STATE_POLL_S = 0.5   # how soon a connect/disconnect reaches MQTT
STATE_EVERY_S = 10.0  # fps and frame age otherwise

CameraEntry = CameraSettings  # one model for the config file, the API and cameras.json


def announced_labels(entry: CameraEntry) -> list[str]:
    """Labels that get Home Assistant entities up front: the camera's filter, else ``person``
    (others get theirs when first seen)."""
    return list(entry.detect.filters.labels or ["person"])


class CameraError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CameraService:
    def __init__(self, configured: list[CameraEntry], data_dir: Path, module: DetectionModule,
                 queue: InferenceQueue, sink: CameraSink | None) -> None:
        self.store_path = data_dir / "cameras.json"
        self.module, self.queue, self.sink = module, queue, sink
        self.entries = self._merged(configured)
        self.running: dict[str, tuple[CameraReader, CameraWorker, asyncio.Task]] = {}
        self._state_task: asyncio.Task | None = None

    # -- persistence ------------------------------------------------------------------------------
    def _merged(self, configured: list[CameraEntry]) -> dict[str, CameraEntry]:
        """The configured cameras, with the API's additions and removals applied."""
        entries = {c.name: c for c in configured}
        added, removed = self._saved()
        for name in removed:
            entries.pop(name, None)
        entries.update(added)
        return entries

    def _save(self, added: dict[str, CameraEntry], removed: set[str]) -> None:
        atomic_write_json(self.store_path, {"added": [e.model_dump(mode="json") for e in added.values()],
                                            "removed": sorted(removed)})

    def _saved(self) -> tuple[dict[str, CameraEntry], set[str]]:
        """Cameras added and removed through the API, from cameras.json (a bad entry is logged and skipped)."""
        try:
            saved = json.loads(self.store_path.read_text())
        except FileNotFoundError:
            return {}, set()
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s); using the configured cameras only", self.store_path, exc)
            return {}, set()
        added = {}
        for raw in saved.get("added", []):
            try:
                entry = CameraEntry.model_validate(raw)
            except ValueError as exc:
                log.error("ignoring a saved camera in %s: %s", self.store_path, exc)
                continue
            added[entry.name] = entry
        return added, set(saved.get("removed", []))

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        for entry in self.entries.values():
            if entry.enabled:
                self._start(entry)
        self._state_task = asyncio.create_task(self._publish_states())

    def _start(self, entry: CameraEntry) -> None:
        reader = CameraReader(entry).start()
        worker = CameraWorker(entry.name, reader, entry.detect, self.module, self.queue, self.sink or _NoSink())
        if self.sink is not None and hasattr(self.sink, "add_camera"):
            self.sink.add_camera(entry.name, announced_labels(entry))
        self.running[entry.name] = (reader, worker, asyncio.create_task(worker.run()))
        log.info("camera %s: started (%s)", entry.name, entry.redacted_url, extra={"camera": entry.name})

    async def _stop(self, name: str) -> None:
        reader, worker, task = self.running.pop(name)
        worker.stop()
        await task
        await asyncio.to_thread(reader.stop)

    async def stop(self) -> None:
        if self._state_task is not None:
            self._state_task.cancel()
        for name in list(self.running):
            await self._stop(name)

    async def _publish_states(self) -> None:
        """Send each camera's state when it connects, drops or fails differently, and every 10 s."""
        sent: dict[str, tuple[Any, ...]] = {}
        last_full, last_sink = 0.0, None
        while True:
            await asyncio.sleep(STATE_POLL_S)
            if self.sink is None or not hasattr(self.sink, "camera_state"):
                continue
            now = asyncio.get_running_loop().time()
            full = now - last_full >= STATE_EVERY_S or self.sink is not last_sink
            last_sink = self.sink
            for name, state in self.states().items():
                key = (state.get("connected"), state.get("last_error"), state.get("enabled"))
                if full or sent.get(name) != key:
                    sent[name] = key
                    self.sink.camera_state(name, state)
            if full:
                last_full = now

    # -- run-time changes -------------------------------------------------------------------------
    async def reconfigure(self, configured: list[CameraEntry]) -> list[str]:
        """Apply a reloaded config: stop removed or changed cameras, start new or changed ones.
        Returns the names of the cameras that changed."""
        new = self._merged(configured)
        changed = sorted(name for name in self.entries.keys() | new.keys() if self.entries.get(name) != new.get(name))
        for name in changed:
            if name in self.running:
                await self._stop(name)
            if name not in new and self.sink is not None and hasattr(self.sink, "remove_camera"):
                self.sink.remove_camera(name)
        self.entries = new
        for name in changed:
            if name in new and new[name].enabled:
                self._start(new[name])
        return changed

    def set_sink(self, sink: CameraSink | None) -> None:
        """Send events to a new sink (a new broker connection after a reload)."""
        self.sink = sink
        for name, (_, worker, _) in self.running.items():
            worker.sink = sink or _NoSink()
            if sink is not None and hasattr(sink, "add_camera"):
                sink.add_camera(name, announced_labels(self.entries[name]))

    async def add(self, entry: CameraEntry) -> None:
        if entry.name in self.entries:
            raise CameraError(409, f"camera {entry.name!r} exists; remove it first or pick another name")
        added, removed = self._saved()
        added[entry.name] = entry
        removed.discard(entry.name)
        self._save(added, removed)
        self.entries[entry.name] = entry
        if entry.enabled:
            self._start(entry)

    async def remove(self, name: str) -> None:
        if name not in self.entries:
            raise CameraError(404, f"no camera {name!r}; GET /v1/cameras lists them")
        added, removed = self._saved()
        if added.pop(name, None) is None:
            removed.add(name)  # a camera from the config file: remember that it was removed
        self._save(added, removed)
        self.entries.pop(name)
        if name in self.running:
            await self._stop(name)
        if self.sink is not None and hasattr(self.sink, "remove_camera"):
            self.sink.remove_camera(name)

    def states(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, entry in self.entries.items():
            item: dict[str, Any] = {"name": name, "url": entry.redacted_url, "enabled": entry.enabled,
                                    "fps_cap": entry.fps}
            if name in self.running:
                reader, worker, _ = self.running[name]
                item |= dataclasses.asdict(reader.state())
                item |= {"frames_seen": worker.frames, "detections": worker.detections,
                         "skipped_busy": worker.skipped_busy, "tracked": worker.tracker.counts()}
            out[name] = item
        return out


class _NoSink:
    """With no broker, camera events still go to the log."""

    def camera_update(self, camera: str, events: list, counts: dict, frame: Any, located: list) -> None:
        for e in events:
            log.info("camera %s: %s %s (%s)", camera, e.kind, e.track.label, e.track.id, extra={"camera": camera})
