"""A full disk, for real: the data dir is a small tmpfs mounted in a private mount namespace
(``unshare -Urm``, no root needed where user namespaces are enabled) and filled up while the
daemon runs. Writes then answer 507 with a JSON error saying what to free, nothing stored is lost
or half-written, detection goes on, and once there is room again the same requests succeed.
``edgewatch models install`` into a full disk says the same and leaves no partial model behind."""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edgewatch.daemon.testing.daemon_process import DaemonProcess
from edgewatch.models import installer
from edgewatch.models.photos import ensure_face_photos
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

pytestmark = pytest.mark.slow

FACES = "FaceProcessingEdgewatch"
# mount a tmpfs of $SIZE on $0, link $1 in as the data dir's models (they stay on the real disk), run the rest
MOUNT = 'mount -t tmpfs -o "size=$SIZE" edgewatch-test "$0" && ln -s "$1" "$0/models" && shift && exec "$@"'


def _private_tmpfs_works(tmp: Path) -> str | None:
    """None if this machine lets us mount a tmpfs in a private namespace, else why not."""
    if shutil.which("unshare") is None:
        return "unshare not found (util-linux)"
    proc = subprocess.run(["unshare", "-Urm", "sh", "-c", 'mount -t tmpfs -o size=64k t "$0"', str(tmp)],
                          capture_output=True, text=True)
    return None if proc.returncode == 0 else f"cannot mount a tmpfs in a user namespace here: {proc.stderr.strip()}"


@pytest.fixture(scope="module")
def models_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    root = scratch_dir(request, tmp_path_factory, "disk-full")
    why = _private_tmpfs_works(root)
    if why:
        pytest.skip(why)
    store = ModelStore(root / "models")
    for name in ("nanodet", "centerface", "mobilefacenet"):
        installer.install(name, store, cache_dir)
    return store.root


def in_namespace(pid: int, path: Path) -> Path:
    """``path`` as the process ``pid`` sees it (inside its mount namespace)."""
    return Path(f"/proc/{pid}/root") / path.relative_to("/")


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until the disk is full; returns it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def post(client: httpx.Client, path: str, **kwargs) -> httpx.Response:
    return client.post(path, timeout=60, **kwargs)


def test_a_full_disk_answers_507_loses_nothing_and_recovers(models_dir: Path, cache_dir: Path, photo_bytes,
                                                             tmp_path: Path) -> None:
    faces = {n: p.read_bytes() for n, p in ensure_face_photos(cache_dir).items()}
    data = tmp_path / "data"
    data.mkdir()
    daemon = DaemonProcess(data, cache_dir, env={"SIZE": "2m"},
                           wrapper=["unshare", "-Urm", "sh", "-c", MOUNT, str(data), str(models_dir)])
    daemon.start(timeout=60)
    try:
        seen = in_namespace(daemon.proc.pid, data)
        assert (seen / "models").is_symlink() and not (data / "faces.db").exists()  # the daemon writes in its tmpfs
        with httpx.Client(base_url=daemon.url) as client:
            r = post(client, "/v1/vision/face/register", files={"image": faces["obama"]}, data={"userid": "Barack"})
            assert r.status_code == 200, r.text
            status = client.get("/v1/status/version").json()["storage"]
            assert 0 < status["freeBytes"] <= status["totalBytes"] <= 2 * 1024**2 and status["low"]
            settings_before = client.get(f"/v1/settings/{FACES}").json()["settings"]

            filler = fill(seen)
            r = post(client, f"/v1/settings/{FACES}", data={"name": "recognition_threshold", "value": "0.61"})
            assert r.status_code == 507, r.text
            body = r.json()
            assert body["success"] is False and "disk is full" in body["error"] and "free space" in body["error"]
            assert client.get(f"/v1/settings/{FACES}").json()["settings"] == settings_before  # not half-applied
            # registrations may still fit in pages SQLite already holds; each one is either stored or a 507
            stored = ["Barack"]
            for n in range(8):
                r = post(client, "/v1/vision/face/register", files={"image": faces["biden"]},
                         data={"userid": f"Joe {n}"})
                assert r.status_code in (200, 507), r.text
                assert r.json()["success"] is (r.status_code == 200)
                assert r.status_code == 200 or "disk is full" in r.json()["error"], r.text
                if r.status_code == 200:
                    stored.append(f"Joe {n}")
            assert sorted(post(client, "/v1/vision/face/list").json()["faces"]) == sorted(stored)
            # detection writes nothing: NVRs go on getting answers
            r = post(client, "/v1/vision/detection", files={"image": photo_bytes["bus"]})
            assert r.status_code == 200 and "bus" in {p["label"] for p in r.json()["predictions"]}, r.text
            assert client.get("/v1/status/version").json()["storage"]["freeBytes"] < 64 * 1024
            told = subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", "status", "--url", daemon.url],
                                  capture_output=True, text=True, timeout=60).stdout
            assert re.search(r"→ the data dir's disk has \d+ MB free: model installs and uploads may not fit", told), told

            filler.unlink()
            r = post(client, f"/v1/settings/{FACES}", data={"name": "recognition_threshold", "value": "0.61"})
            assert r.status_code == 200 and r.json()["settings"]["recognition_threshold"] == 0.61, r.text
            r = post(client, "/v1/vision/face/register", files={"image": faces["biden"]}, data={"userid": "Joe"})
            assert r.status_code == 200, r.text
            assert sorted(post(client, "/v1/vision/face/list").json()["faces"]) == sorted([*stored, "Joe"])
            got = post(client, "/v1/vision/face/recognize", files={"image": faces["obama2"]}).json()
            assert [p["userid"] for p in got["predictions"]] == ["Barack"], got
        # the store on that disk is whole: a copy of it (database and its write-ahead log) checks out
        for name in ("faces.db", "faces.db-wal"):
            if (seen / name).exists():
                shutil.copy(seen / name, tmp_path / name)
        with sqlite3.connect(tmp_path / "faces.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        log = daemon.stop()
    assert "Traceback" not in log, log[-3000:]


def test_models_install_into_a_full_disk_says_so_and_leaves_nothing(cache_dir: Path, tmp_path: Path,
                                                                   models_dir: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = {**os.environ, "SIZE": "1m", "EDGEWATCH_DATA_DIR": str(data), "EDGEWATCH_CACHE_DIR": str(cache_dir)}
    # no models link here: the install writes into the 1 MB tmpfs itself; then what it left in the store is listed
    script = ('mount -t tmpfs -o "size=$SIZE" edgewatch-test "$0" && "$@"; rc=$?; '
              'find "$0" -mindepth 2 -printf "%P\\n"; exit $rc')
    proc = subprocess.run(["unshare", "-Urm", "sh", "-c", script, str(data), sys.executable, "-m",
                           "edgewatch.daemon.cli", "models", "install", "nanodet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the disk is full" in proc.stderr and f"MB free on the disk of {data}" in proc.stderr, proc.stderr
    assert "then try again" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.split() == [], f"left in the data dir: {proc.stdout}"
