"""User models of the task API: ``POST /upload-url`` hands out a one-hour upload URL on the box,
``PUT`` there takes the spec's zip (exactly model.bin, config.json, requirements.txt, no folders),
which is checked and kept under ``<data_dir>/task_models/<name>/`` with its build status.

The spec's model.bin is "an initiated model on CPU pickled with dill". Unpickling runs whatever
code the pickle holds, so edgewatch never loads one: such an upload is kept with build_status
``fail`` and a build_message saying why and what to do instead (README "Task API")."""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edgewatch.daemon.modules.errors import BadRequest, NotFound
from edgewatch.models.files import atomic_dir, atomic_write_json

NAME = re.compile(r"^[a-z0-9_-]{3,100}$")
FILES = ("model.bin", "config.json", "requirements.txt")
TASKS = ("text-vectorisation", "qa", "text-classification", "image-classification", "text-generation",
         "summarisation", "emotion")
URL_VALID_S = 3600
PICKLE_REFUSED = ("model.bin is a Python pickle: edgewatch never unpickles an upload, because loading a pickle "
                  "runs whatever code it holds. This box runs models from its model store: use the global "
                  "models (GET /models), or for a detector `edgewatch models add` with an ONNX export")
NOT_RUNNABLE = ("model.bin is not a model edgewatch can run: the task API runs the global models of its store "
                "(GET /models); for a detector use `edgewatch models add` with an ONNX export")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise BadRequest("model_name: 3-100 characters, lowercase ascii letters, numbers, dashes (-) and underscores (_)")
    return name


@dataclass
class _Pending:
    name: str
    expires: float


class UserModels:
    """The uploaded models' folder, and the upload URLs handed out (kept in memory: a URL does not
    outlive a restart, as it would not outlive its hour)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def upload_token(self, name: str) -> str:
        check_name(name)
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._pending = {t: p for t, p in self._pending.items() if p.expires > now}
            self._pending[token] = _Pending(name, now + URL_VALID_S)
        return token

    def take(self, token: str) -> str:
        """The model name an upload URL was made for; NotFound once it expired or was used."""
        with self._lock:
            pending = self._pending.pop(token, None)
        if pending is None or pending.expires <= time.monotonic():
            raise NotFound("this upload URL is unknown or expired (they last an hour, for one upload): ask for a "
                           "new one with POST /upload-url")
        return pending.name

    def receive(self, name: str, data: bytes) -> dict:
        """Check the zip and keep the upload; returns its info. BadRequest for a zip that is not the
        spec's layout (nothing is kept then)."""
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            raise BadRequest("the upload is not a zip file: send a .zip holding model.bin, config.json and "
                             "requirements.txt") from None
        with archive:
            names = [i.filename for i in archive.infolist()]
            if sorted(names) != sorted(FILES):
                raise BadRequest(f"the zip must hold exactly {', '.join(FILES)} and no folders; it holds "
                                 f"{', '.join(names[:10]) or 'nothing'}")
            try:
                config = json.loads(archive.read("config.json"))
            except ValueError:
                raise BadRequest("config.json is not JSON") from None
            if not isinstance(config, dict) or not isinstance(config.get("description"), str) or not (
                    isinstance(config.get("task"), list) and config["task"]
                    and all(isinstance(t, str) for t in config["task"])):
                raise BadRequest('config.json needs "description" (a string) and "task" (a list of task names)')
            unknown = [t for t in config["task"] if t not in TASKS]
            if unknown:
                raise BadRequest(f"config.json: unknown task {unknown[0]!r}; tasks are {', '.join(TASKS)}")
            head = archive.read("model.bin")[:2]
        message = PICKLE_REFUSED if head[:1] == b"\x80" else NOT_RUNNABLE
        info = {"id": f"model_{name}", "name": name, "description": config["description"], "tasks": config["task"],
                "build_status": "fail", "build_message": message,
                "last_deployment": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        with atomic_dir(self.root / name, replace=True) as folder:
            (folder / "upload.zip").write_bytes(data)
            atomic_write_json(folder / "model.json", info)
        return info

    def list(self) -> list[dict]:
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(self.root.iterdir()):
            try:
                out.append(json.loads((folder / "model.json").read_text()))
            except (OSError, ValueError):
                continue
        return out

    def get(self, name: str) -> dict:
        path = self.root / name / "model.json"
        if not NAME.match(name) or not path.is_file():
            raise NotFound(f"model {name} not found")
        return json.loads(path.read_text())

    def delete(self, name: str) -> None:
        self.get(name)
        shutil.rmtree(self.root / name)
