"""Crash-safe file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from edgewatch.models.conversion import worker_io


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives power loss."""
    worker_io.fsync_dir(str(path))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and rename."""
    worker_io.write_atomically(str(path), data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_copy(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` atomically; return the sha256 of what was written."""
    fd, tmp = worker_io.mkstemp_beside(str(dst))
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            _copy_hashing(inp, out, digest)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)
    return digest.hexdigest()


@contextmanager
def atomic_dir(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """Build a folder under the name ``final`` crash-safely: ``with atomic_dir(final) as tmp:``
    write into ``tmp``; when the block ends without an exception, ``tmp`` becomes ``final``.

    ``tmp`` is a fresh folder beside ``final`` (same file system, so the rename is atomic), named
    ``.<final name>.<thread id>.tmp`` (a leftover of the same name, from a killed run, is removed
    first). Before the rename every file and folder in it is fsynced; after it, ``final``'s parent.
    On an exception ``tmp`` is removed and the exception propagates, so ``final`` never names a
    half-built folder. If ``final`` exists when the block ends (built meanwhile by another process):
    ``replace=False`` keeps it and discards this build; ``replace=True`` renames the old one aside,
    renames the new one into place, then deletes the old one.
    """
    tid = threading.get_native_id()  # unique among live threads; on Linux the main thread's is the pid
    tmp = final.with_name(f".{final.name}.{tid}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists() and not replace:
            return  # the folder already in place is as good as this one (finally removes tmp)
        old = final.with_name(f".{final.name}.{tid}.old")
        shutil.rmtree(old, ignore_errors=True)
        if replace and final.exists():  # never delete in place, where a crash would leave half of it
            final.replace(old)
        try:
            tmp.replace(final)  # onto a folder that appeared meanwhile: fails (not empty), never merges
        except OSError:
            if not replace and final.exists():
                return  # another thread or process renamed its build into place first; keep that one
            if old.exists() and not final.exists():
                old.replace(final)  # put the old one back
            raise
        fsync_dir(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """fsync every regular file and folder under ``root`` (deepest first), and ``root`` itself."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def _copy_hashing(inp: BinaryIO, out: BinaryIO, digest: "hashlib._Hash") -> None:
    while chunk := inp.read(1 << 20):
        digest.update(chunk)
        out.write(chunk)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it wraps, says the disk (or the user's quota) is full: an
    OSError ENOSPC / EDQUOT, or SQLite's SQLITE_FULL (which SQLAlchemy wraps as ``.orig``)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if isinstance(e, sqlite3.Error) and (getattr(e, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL:
            return True
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return False


def _existing(path: Path) -> Path:
    """``path``, or its nearest parent that exists (a data dir not made yet lives on its parent's disk)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    return shutil.disk_usage(_existing(path)).free


def disk_full_advice(*paths: Path) -> str:
    """What to tell a user whose write under ``paths`` (a data dir, a cache dir) found the disk full."""
    disks: dict[int, str] = {}
    for path in map(_existing, paths):
        disks.setdefault(path.stat().st_dev, f"{shutil.disk_usage(path).free / 1e6:.0f} MB free on the disk of {path}")
    return (f"the disk is full ({'; '.join(disks.values())}), so nothing was changed: free space (`edgewatch "
            "status` says how much is left; `edgewatch models remove NAME` drops a model you do not use; the "
            "cache dir's conversions are rebuilt when needed), then try again")
