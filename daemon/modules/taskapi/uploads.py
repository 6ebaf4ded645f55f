"""User models of the task API: ``POST /upload-url`` hands out a one-hour upload URL on the box,
``PUT`` there takes the spec's zip (exactly model.bin, config.json, requirements.txt, no folders),
which is checked and kept under ``<data_dir>/task_models/<name>/`` with its build status.

The spec's model.bin is "an initiated model on CPU pickled with dill". Unpickling runs whatever
code the pickle holds, so edgewatch never loads one: such an upload is kept with build_status
``fail`` and a build_message saying why and what to do instead. A model.bin that is a GGUF language
model (text-generation, summarisation, qa) is installed into the model store, after llama.cpp has
loaded it and generated with it here, and answers requests that name it (README "Task API")."""

from __future__ import annotations

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
from edgewatch.models.files import atomic_dir, atomic_write_json, fsync_dir
from edgewatch.models.installer import InstallError
from edgewatch.models.llm_install import install_uploaded_gguf, is_upload
from edgewatch.models.store import ModelStore

NAME = re.compile(r"^[a-z0-9_-]{3,100}$")
FILES = ("model.bin", "config.json", "requirements.txt")
TASKS = ("text-vectorisation", "qa", "text-classification", "image-classification", "text-generation",
         "summarisation", "emotion")
URL_VALID_S = 3600
PICKLE_REFUSED = ("model.bin is a Python pickle: edgewatch never unpickles an upload, because loading a pickle "
                  "runs whatever code it holds. This box runs models from its model store: use the global "
                  "models (GET /models), or for a detector `edgewatch models add` with an ONNX export")
NOT_RUNNABLE = ("model.bin is not a model edgewatch can run: it runs GGUF language models (upload one for "
                "text-generation, summarisation or qa) and the global models of its store (GET /models); for a "
                "detector use `edgewatch models add` with an ONNX export")
GGUF_TASKS = {"text-generation", "summarisation", "qa"}


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

    def __init__(self, root: Path, store: ModelStore) -> None:
        self.root, self.store = root, store
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

    def incoming(self) -> Path:
        """A fresh file to stream an upload into (beside the models: the same disk, renamed into place)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".incoming-{secrets.token_hex(8)}.zip"

    def receive(self, name: str, upload: Path) -> dict:
        """Check the zip (a file, as streamed) and keep the upload; returns its info. BadRequest for a
        zip that is not the spec's layout (nothing is kept then). The file is consumed."""
        try:
            return self._receive(name, upload)
        finally:
            upload.unlink(missing_ok=True)

    def _receive(self, name: str, upload: Path) -> dict:
        try:
            archive = zipfile.ZipFile(upload)
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
            head = archive.read("model.bin")[:4]
            with atomic_dir(self.root / name, replace=True) as folder:
                shutil.copyfile(upload, folder / "upload.zip")
                status, message = self._build(name, archive, head, config, folder)
                info = {"id": f"model_{name}", "name": name, "description": config["description"],
                        "tasks": config["task"], "build_status": status, "build_message": message,
                        "last_deployment": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
                atomic_write_json(folder / "model.json", info)
        return info

    def _build(self, name: str, archive: zipfile.ZipFile, head: bytes, config: dict, folder: Path) -> tuple[str, str]:
        """(build_status, build_message) of an upload: a GGUF language model is installed, anything else
        is kept and said why not."""
        if head[:1] == b"\x80":
            return "fail", PICKLE_REFUSED
        if head != b"GGUF":
            return "fail", NOT_RUNNABLE
        if not set(config["task"]) <= GGUF_TASKS:
            return "fail", f"a GGUF language model serves {', '.join(sorted(GGUF_TASKS))}, not {', '.join(config['task'])}"
        if self.store.has(name) and not is_upload(self.store.get(name)):
            return "fail", f"{name} is the name of a model installed from the catalogue: upload under another name"
        gguf = folder / "model.gguf"
        with archive.open("model.bin") as src, open(gguf, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)
        try:
            manifest = install_uploaded_gguf(name, gguf, config["description"], self.store)
        except InstallError as exc:
            return "fail", str(exc)
        finally:
            gguf.unlink(missing_ok=True)  # the store keeps its own copy
        rate = manifest.quantization_report.get("generation_tokens_per_s")
        return "success", f"installed: send model {name!r} to {', '.join(config['task'])} ({rate} tokens/s here)"

    def list(self) -> list[dict]:
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(self.root.iterdir()):
            if not NAME.match(folder.name):  # a build or removal a kill interrupted (.name.*.tmp/.old)
                continue
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
        """Forget the upload, and remove the model it installed from the store."""
        self.get(name)
        if self.store.has(name) and is_upload(self.store.get(name)):
            self.store.remove(name)
        (self.root / name / "model.json").unlink()  # from here on the upload is gone, whatever happens next
        fsync_dir(self.root / name)
        shutil.rmtree(self.root / name, ignore_errors=True)
