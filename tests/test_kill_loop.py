"""Durability under kill -9 (README "Durability"): the real daemon is SIGKILLed at random moments, at
least 50 times, while settings, cameras and uploaded models are changed through the API. After
each restart every change the daemon acknowledged (answered 2xx) is there, a change in flight when
it died is either fully there or not at all, and every stored file reads back whole.

EDGEWATCH_KILL_LOOPS sets the number of kills (default 50)."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from edgewatch.daemon.testing.daemon_process import DaemonProcess

DETECTION = "ObjectDetectionEdgewatch"
LOOPS = int(os.environ.get("EDGEWATCH_KILL_LOOPS", "50"))


def model_zip(description: str) -> bytes:
    """A model upload as the task API's spec lays it out; model.bin is not runnable, so it is kept as a
    failed build (a record on disk, which is what this test needs) without loading anything."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("model.bin", os.urandom(2048))
        zf.writestr("config.json", json.dumps({"description": description, "task": ["text-classification"]}))
        zf.writestr("requirements.txt", "")
    return out.getvalue()


@dataclass
class Book:
    """What the daemon acknowledged, and what was in flight when it was killed (may or may not be there)."""

    confidence: str | None = None
    confidence_pending: set[str] = field(default_factory=set)
    cameras: dict[str, bool] = field(default_factory=dict)   # name -> present (acknowledged)
    models: dict[str, bool] = field(default_factory=dict)
    pending: dict[str, set[str]] = field(default_factory=lambda: {"cameras": set(), "models": set()})
    acknowledged: int = 0
    failure: str | None = None  # what went wrong in the writer thread, if anything

    def settle(self) -> None:
        """After a restart the in-flight changes have been judged; they are no longer pending."""
        self.confidence_pending.clear()
        self.pending = {"cameras": set(), "models": set()}


def change_until_killed(url: str, book: Book, rng: random.Random, started: threading.Event, n: int) -> None:
    try:
        _change_until_killed(url, book, rng, started, n)
    except Exception as exc:  # reported by the test, not lost in a thread
        book.failure = f"kill {n}: {exc!r}"
        started.set()


def add_camera(client: httpx.Client, name: str) -> bool:
    return client.post("/v1/cameras", json={"name": name, "url": f"rtsp://127.0.0.1:9/{name}",
                                            "enabled": False}).status_code == 201


def remove_camera(client: httpx.Client, name: str) -> bool:
    return client.delete(f"/v1/cameras/{name}").status_code == 200


def upload_model(client: httpx.Client, name: str) -> bool:
    url = client.post("/backprop/upload-url", json={"model_name": name}).json()  # the URL, as a string
    return client.put("/" + url.split("://", 1)[1].split("/", 1)[1], content=model_zip(name)).status_code == 200


def delete_model(client: httpx.Client, name: str) -> bool:
    return client.delete(f"/backprop/models/{name}").status_code == 200


CHANGES = {"cameras": (add_camera, remove_camera), "models": (upload_model, delete_model)}


def _change_until_killed(url: str, book: Book, rng: random.Random, started: threading.Event, n: int) -> None:
    with httpx.Client(base_url=url, timeout=30, event_hooks={"response": [_no_server_error]}) as client:
        for i in range(10_000):
            kind = rng.choice(("setting", "setting", "cameras", "cameras", "models"))
            try:
                if kind == "setting":
                    value = f"{rng.uniform(0.2, 0.9):.3f}"
                    book.confidence_pending.add(value)
                    if client.post(f"/v1/settings/{DETECTION}",
                                   data={"name": "min_confidence", "value": value}).status_code == 200:
                        book.confidence = value
                        book.confidence_pending.discard(value)
                else:
                    add, remove = CHANGES[kind]
                    present = [name for name, here in getattr(book, kind).items() if here]
                    adding = not present or rng.random() >= 0.5
                    name = f"kill-{n}-{i}" if adding else rng.choice(present)
                    book.pending[kind].add(name)
                    if (add if adding else remove)(client, name):
                        getattr(book, kind)[name] = adding
                        book.pending[kind].discard(name)
            except (httpx.TransportError, KeyError, ValueError):
                return  # killed mid-request: not acknowledged, stays pending
            book.acknowledged += 1
            started.set()


def _no_server_error(response: httpx.Response) -> None:
    if response.status_code >= 500:
        response.read()
        raise AssertionError(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                             f"{response.text[:300]}")


def check_everything_acknowledged_is_there(url: str, book: Book, data: Path, n: int) -> None:
    for name in ("settings.json", "cameras.json"):
        if (data / name).exists():
            json.loads((data / name).read_text())  # whole, never half-written
    with httpx.Client(base_url=url, timeout=30) as client:
        confidence = client.get(f"/v1/settings/{DETECTION}").json()["settings"]["min_confidence"]
        allowed = {float(v) for v in ({book.confidence} | book.confidence_pending) - {None}}
        assert not allowed or confidence in allowed, f"kill {n}: min_confidence {confidence}, expected one of {allowed}"
        cameras = {c["name"]: c for c in client.get("/v1/cameras").json()["cameras"]}
        assert not any(c.get("invalid") for c in cameras.values()), f"kill {n}: an invalid camera entry: {cameras}"
        models = {m["name"] for m in client.get("/backprop/models", params={"include_global": "false"}).json()}
    for kind, listed in (("cameras", set(cameras)), ("models", models)):
        for name, present in getattr(book, kind).items():
            if name not in book.pending[kind]:
                assert (name in listed) == present, f"kill {n}: {kind[:-1]} {name} acknowledged " \
                                                    f"{'added' if present else 'removed'}, but it is {'not ' * present}there"
        unknown = listed - set(getattr(book, kind)) - book.pending[kind]
        assert not unknown, f"kill {n}: {kind} nobody added: {unknown}"
        # what was in flight is now decided: record what the restart shows
        for name in book.pending[kind]:
            getattr(book, kind)[name] = name in listed
    if confidence is not None:
        book.confidence = f"{confidence:.3f}" if isinstance(confidence, float) else str(confidence)
    book.settle()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_acknowledged_changes_survive_kill_9_at_random_moments(installed_data_dir: Path, cache_dir: Path,
                                                                tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(installed_data_dir, data)
    rng, book = random.Random(18), Book()
    starts = []
    for n in range(LOOPS):
        daemon = DaemonProcess(data, cache_dir, env={"EDGEWATCH_DETECTION_MODEL": "nanodet"})
        starts.append(daemon.start(timeout=90))
        check_everything_acknowledged_is_there(daemon.url, book, data, n)
        started = threading.Event()
        writer = threading.Thread(target=change_until_killed, args=(daemon.url, book, rng, started, n))
        writer.start()
        started.wait(30)
        time.sleep(rng.uniform(0.0, 0.6))  # a random moment: between requests or in the middle of one
        daemon.kill()
        writer.join(30)
        assert not writer.is_alive() and book.failure is None, book.failure
    daemon = DaemonProcess(data, cache_dir)
    daemon.start(timeout=90)
    try:
        check_everything_acknowledged_is_there(daemon.url, book, data, LOOPS)
    finally:
        daemon.stop()
    kinds = {k: sum(1 for _ in getattr(book, k)) for k in ("cameras", "models")}
    print(f"{LOOPS} kills, {book.acknowledged} acknowledged changes ({kinds}), start {min(starts):.1f}-"
          f"{max(starts):.1f} s")
    assert book.acknowledged >= LOOPS and kinds["cameras"] > 5 and kinds["models"] > 5
