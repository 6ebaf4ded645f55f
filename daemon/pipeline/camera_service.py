"""The cameras of this box: configured ones plus those added at run time through the API
(persisted atomically in ``<data_dir>/cameras.json``), each a reader thread and a worker task.

One bad camera never takes the others down: a saved entry that does not validate is listed (not
started) with the reason, a camera that cannot start gets a ``last_error``, and the state
publisher outlives any failure of one round.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgewatch.daemon.cameras.config import NAME_PATTERN, describe, is_network_url
from edgewatch.daemon.cameras.reader import CameraReader
from edgewatch.daemon.config import CameraSettings
from edgewatch.daemon.modules.detection import DetectionModule
from edgewatch.daemon.modules.alpr.camera import CameraPlates
from edgewatch.daemon.modules.alpr.module import AlprModule
from edgewatch.daemon.modules.faces.camera import CameraFaces
from edgewatch.daemon.modules.faces.module import FacesModule
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.pipeline.camera_worker import CameraSink, CameraWorker
from edgewatch.daemon.redaction import printable, redact_url
from edgewatch.models.files import atomic_write_json

log = logging.getLogger(__name__)


STATE_POLL_S = 0.5   # how soon a connect/disconnect reaches MQTT
STATE_EVERY_S = 10.0  # fps and frame age otherwise
ERROR_LOG_EVERY_S = 60.0  # a failure that repeats is logged again at most this often
_NAME = re.compile(NAME_PATTERN)

CameraEntry = CameraSettings  # one model for the config file, the API and cameras.json


def announced_labels(entry: CameraEntry) -> list[str]:
    """Labels that get Home Assistant entities up front: the camera's filter, else ``person``
    (others get theirs when first seen)."""
    return list(entry.detect.filters.labels or ["person"])


class CameraError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _no_camera(name: str) -> CameraError:
    return CameraError(404, f"no camera {printable(name, 64)!r}; GET /v1/cameras lists them")


@dataclasses.dataclass(frozen=True)
class InvalidEntry:
    """A camera in cameras.json that does not validate: kept in the file, listed, never started."""

    raw: Any
    reason: str


class CameraService:
    """``max_cameras``: most cameras (configured and added); None takes the daemon config's."""

    def __init__(self, configured: list[CameraEntry], data_dir: Path, module: DetectionModule,
                 queue: InferenceQueue, sink: CameraSink | None, max_cameras: int | None = None,
                 faces: FacesModule | None = None, alpr: AlprModule | None = None) -> None:
        """``faces``: the faces module, for the cameras with ``faces.enabled``; ``alpr``: the plate
        reader, for the cameras with ``plates.enabled``."""
        self.store_path = data_dir / "cameras.json"
        self.module, self.queue, self.sink, self.faces, self.alpr = module, queue, sink, faces, alpr
        self.max_cameras = module.config.max_cameras if max_cameras is None else max_cameras
        self.invalid: dict[str, InvalidEntry] = {}
        self.errors: dict[str, str] = {}  # why an entry is not running: its start failed, or over the limit
        self._configured: set[str] = set()
        self.entries = self._merged(configured)
        self.running: dict[str, tuple[CameraReader, CameraWorker, asyncio.Task]] = {}
        self._state_task: asyncio.Task | None = None

    # -- persistence ------------------------------------------------------------------------------
    def _merged(self, configured: list[CameraEntry]) -> dict[str, CameraEntry]:
        """The configured cameras, with the API's additions and removals applied."""
        entries = {c.name: c for c in configured}
        self._configured = set(entries)
        added, self.invalid, removed = self._saved()
        for name in removed:
            entries.pop(name, None)
        entries.update(added)
        for name, bad in self.invalid.items():
            log.error("camera %s: %s", name, self._invalid_error(name, bad), extra={"camera": name})
        return entries

    def _save(self, added: dict[str, CameraEntry], invalid: dict[str, InvalidEntry], removed: set[str]) -> None:
        items = [e.model_dump(mode="json") for e in added.values()] + [bad.raw for bad in invalid.values()]
        atomic_write_json(self.store_path, {"added": items, "removed": sorted(removed)})

    def _saved(self) -> tuple[dict[str, CameraEntry], dict[str, InvalidEntry], set[str]]:
        """Cameras added (valid and invalid) and removed through the API, from cameras.json."""
        try:
            saved = json.loads(self.store_path.read_text())
            if not isinstance(saved, dict) or not isinstance(saved.get("added", []), list):
                raise ValueError("not an object with an 'added' list")
        except FileNotFoundError:
            return {}, {}, set()
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s); using the configured cameras only: fix or delete the file and restart",
                      self.store_path, printable(exc))
            return {}, {}, set()
        added: dict[str, CameraEntry] = {}
        failed: list[tuple[Any, str]] = []
        for raw in saved.get("added", []):
            try:
                entry = CameraEntry.model_validate(raw)
            except ValidationError as exc:
                failed.append((raw, describe(exc)))
                continue
            if not is_network_url(entry.url):  # written by an older version: the API now adds network cameras only
                failed.append((raw, "a local file or device can only be configured in the config file's cameras "
                                    "section, not through the API"))
                continue
            added[entry.name] = entry
        invalid: dict[str, InvalidEntry] = {}
        for raw, reason in failed:
            invalid[self._invalid_name(raw, added.keys() | invalid.keys())] = InvalidEntry(raw, reason)
        removed = saved.get("removed")
        return added, invalid, {n for n in removed if isinstance(n, str)} if isinstance(removed, list) else set()

    def _invalid_name(self, raw: Any, taken: set[str]) -> str:
        """The entry's own name when it is a valid, free one; else ``invalid-`` and a hash of the entry."""
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str) and _NAME.match(name) and name not in taken | self._configured:
            return name
        name = base = "invalid-" + hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:8]
        n = 1
        while name in taken:  # the same junk twice
            n += 1
            name = f"{base}-{n}"
        return name

    def _invalid_error(self, name: str, bad: InvalidEntry) -> str:
        return (f"not started: its entry in {self.store_path} is invalid ({bad.reason}); "
                f"remove it with DELETE /v1/cameras/{name} and add it again corrected")

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        for entry in self.entries.values():
            if entry.enabled:
                self._start(entry)
        self._state_task = asyncio.create_task(self._publish_states())

    def _start(self, entry: CameraEntry) -> None:
        """Start the camera's reader and worker; on failure the camera gets a last_error (never raises)."""
        name, extra = entry.name, {"camera": entry.name}
        self.errors.pop(name, None)
        if len(self.running) >= self.max_cameras:
            self.errors[name] = (f"not started: {len(self.running)} cameras run already, the most max_cameras allows; "
                                 "remove a camera or raise max_cameras in the config file")
            log.error("camera %s: %s", name, self.errors[name], extra=extra)
            return
        reader = None
        try:
            reader = CameraReader(entry).start()
            worker = CameraWorker(name, reader, entry.detect, self.module, self.queue, self.sink or _NoSink(),
                                  faces=self._face_stage(entry), plates=self._plate_stage(entry))
            worker.error = self._model_problem(entry)
            if worker.error:
                log.error("camera %s: %s", name, worker.error, extra=extra)
            self.running[name] = (reader, worker, asyncio.create_task(worker.run()))
        except Exception as exc:  # noqa: BLE001 - one camera must not stop the others
            if reader is not None:
                reader.stop(timeout=0)
            self.errors[name] = f"not started: {type(exc).__name__}: {printable(exc)}; the daemon log has details"
            log.exception("camera %s: could not start", name, extra=extra)
            return
        self._announce(self.sink, name, entry)
        log.info("camera %s: started (%s)", name, entry.redacted_url, extra=extra)

    def _face_stage(self, entry: CameraEntry) -> CameraFaces | None:
        if not entry.faces.enabled:
            return None
        if self.faces is None:
            log.error("camera %s: faces.enabled is set but this daemon has no faces module", entry.name,
                      extra={"camera": entry.name})
            return None
        return CameraFaces(entry.name, entry.faces, self.faces, self.queue)

    def _plate_stage(self, entry: CameraEntry) -> CameraPlates | None:
        if not entry.plates.enabled:
            return None
        if self.alpr is None:
            log.error("camera %s: plates.enabled is set but this daemon has no plate reader module", entry.name,
                      extra={"camera": entry.name})
            return None
        return CameraPlates(entry.name, entry.plates, self.alpr, self.queue)

    def _model_problem(self, entry: CameraEntry) -> str | None:
        """Why the camera's detect.model cannot be used, or None."""
        model = entry.detect.model
        if model is None:
            return None
        known = self.module.custom_models()
        if model in known:
            return None
        return (f"detect.model {printable(model, 64)!r} is not installed (installed: {', '.join(known) or 'none'}); "
                f"install it with `edgewatch models install {printable(model, 64)}` or change detect.model")

    def _announce(self, sink: CameraSink | None, name: str, entry: CameraEntry) -> None:
        if sink is None or not hasattr(sink, "add_camera"):
            return
        try:
            sink.add_camera(name, announced_labels(entry), names_people=entry.faces.enabled and self.faces is not None,
                            reads_plates=entry.plates.enabled and self.alpr is not None)
        except Exception:  # noqa: BLE001 - MQTT trouble must not stop the camera
            log.exception("camera %s: cannot announce it to Home Assistant", name, extra={"camera": name})

    async def _stop(self, name: str) -> None:
        """Stop the worker, then the reader, whatever the worker task ended with."""
        reader, worker, task = self.running.pop(name)
        worker.stop()
        try:
            await task
        except Exception:  # noqa: BLE001 - the reader must be stopped anyway
            log.exception("camera %s: its worker had failed", name, extra={"camera": name})
        finally:
            await asyncio.to_thread(reader.stop)

    async def stop(self) -> None:
        if self._state_task is not None:
            self._state_task.cancel()
        for name in list(self.running):
            await self._stop(name)

    async def _publish_states(self) -> None:
        """Send each camera's state when it connects, drops or fails differently, and every 10 s.
        A failure (for one camera or the whole round) is logged at most once a minute; the
        publisher goes on with the other cameras and the next round."""
        sent: dict[str, tuple[Any, ...]] = {}
        last_full, last_sink = 0.0, None
        logged: dict[str, float] = {}

        def failed(what: str, now: float) -> None:
            if now - logged.get(what, -ERROR_LOG_EVERY_S) >= ERROR_LOG_EVERY_S:
                logged[what] = now
                log.exception("cannot publish the state of %s; trying again every %.1f s", what, STATE_POLL_S)

        while True:
            await asyncio.sleep(STATE_POLL_S)
            now = asyncio.get_running_loop().time()
            try:
                sink = self.sink
                if sink is None or not hasattr(sink, "camera_state"):
                    continue
                full = now - last_full >= STATE_EVERY_S or sink is not last_sink
                last_sink = sink
                for name, state in self.states(invalid=False).items():
                    key = (state.get("connected"), state.get("last_error"), state.get("enabled"))
                    if full or sent.get(name) != key:
                        try:
                            sink.camera_state(name, state)
                        except Exception:  # noqa: BLE001 - one camera must not silence the others
                            failed(f"camera {name}", now)
                            continue
                        sent[name] = key
                if full:
                    last_full = now
            except Exception:  # noqa: BLE001 - the publisher must outlive any one failure
                failed("the cameras", now)

    # -- run-time changes -------------------------------------------------------------------------
    async def reconfigure(self, configured: list[CameraEntry]) -> list[str]:
        """Apply a reloaded config: stop removed or changed cameras, start new or changed ones.
        Returns the names of the cameras that changed."""
        new = self._merged(configured)
        changed = sorted(name for name in self.entries.keys() | new.keys() if self.entries.get(name) != new.get(name))
        for name in changed:
            self.errors.pop(name, None)
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
            self._announce(sink, name, self.entries[name])

    async def add(self, entry: CameraEntry) -> None:
        if entry.name in self.entries or entry.name in self.invalid:
            raise CameraError(409, f"camera {entry.name!r} exists; remove it first (DELETE /v1/cameras/{entry.name}) "
                                   "or pick another name")
        if len(self.entries) >= self.max_cameras:
            raise CameraError(409, f"this box has {len(self.entries)} cameras, the most max_cameras "
                                   f"({self.max_cameras}) allows; remove one (DELETE /v1/cameras/<name>) or raise "
                                   "max_cameras in the config file (EDGEWATCH_MAX_CAMERAS) and restart")
        problem = self._model_problem(entry)
        if problem:
            raise CameraError(400, problem)
        added, invalid, removed = self._saved()
        added[entry.name] = entry
        removed.discard(entry.name)
        self._save(added, invalid, removed)
        self.entries[entry.name] = entry
        if entry.enabled:
            self._start(entry)

    async def remove(self, name: str) -> None:
        if name in self.invalid:
            added, invalid, removed = self._saved()
            invalid.pop(name, None)
            self._save(added, invalid, removed)
            self.invalid.pop(name)
            return
        if name not in self.entries:
            raise _no_camera(name)
        added, invalid, removed = self._saved()
        if added.pop(name, None) is None:
            removed.add(name)  # a camera from the config file: remember that it was removed
        self._save(added, invalid, removed)
        self.entries.pop(name)
        self.errors.pop(name, None)
        if name in self.running:
            await self._stop(name)
        if self.sink is not None and hasattr(self.sink, "remove_camera"):
            self.sink.remove_camera(name)

    def latest(self, name: str) -> tuple[Any, list] | None:
        """A running camera's newest frame and the objects in view on it, or None (not running, no frame
        yet). Raises CameraError 404 for a camera that does not exist. Call on the event loop."""
        if name not in self.entries and name not in self.invalid:
            raise _no_camera(name)
        running = self.running.get(name)
        frame = running[0].latest() if running else None
        return None if running is None or frame is None else (frame[1], running[1].tracker.visible())

    def states(self, invalid: bool = True) -> dict[str, dict[str, Any]]:
        """Each camera's state (passwords hidden); with ``invalid`` also the saved entries that do not validate."""
        out = {}
        for name, entry in self.entries.items():
            item: dict[str, Any] = {"name": name, "url": entry.redacted_url, "enabled": entry.enabled,
                                    "fps_cap": entry.fps, "running": False, "connected": False,
                                    "last_error": self.errors.get(name), "detect_error": None}
            if name in self.running:
                reader, worker, task = self.running[name]
                item |= dataclasses.asdict(reader.state())
                item |= {"frames_seen": worker.frames, "detections": worker.detections,
                         "skipped_busy": worker.skipped_busy, "tracked": worker.tracker.counts(),
                         "motion_skipped": worker.motion_skipped, "objects": dict(worker.objects),
                         "detect_error": worker.error if not task.done() else "the camera's worker has stopped; "
                                         "see the daemon log, and restart the daemon"}
                item["last_error"] = item["last_error"] or item["detect_error"]
                if worker.faces is not None:
                    item["faces"] = {"recognised": worker.faces.recognised, "unknown_saved": worker.faces.saved,
                                     "error": worker.faces.error}
                if worker.plates is not None:
                    last = worker.plates.last
                    item["plates"] = {"read": worker.plates.read, "error": worker.plates.error,
                                      "last": dataclasses.asdict(last) if last else None}
            out[name] = item
        if invalid:
            for name, bad in self.invalid.items():
                url = bad.raw.get("url") if isinstance(bad.raw, dict) else None
                out[name] = {"name": name, "url": None if url is None else printable(redact_url(str(url))),
                             "enabled": False, "fps_cap": None, "running": False, "connected": False,
                             "invalid": True, "last_error": self._invalid_error(name, bad), "detect_error": None}
        return out


class _NoSink:
    """With no broker, camera events still go to the log."""

    def camera_update(self, camera: str, events: list, counts: dict, frame: Any, visible: list) -> None:
        for e in events:
            who = f" {e.after.sub_label[0]} ({e.after.sub_label[1]:.2f})" if e.after.sub_label else ""
            log.info("camera %s: %s %s%s (%s)", camera, e.kind, e.track.label, who, e.track.id,
                     extra={"camera": camera})
