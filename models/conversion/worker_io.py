"""Crash-safe file writes, in plain standard-library Python.

The one implementation used both by edgewatch (models/files.py) and by the converter worker
scripts, which run in other venvs where edgewatch is not installed and import this file by path.
"""

from __future__ import annotations

import os
import tempfile


def fsync_dir(directory: str) -> None:
    """Flush a directory entry so a rename inside it survives power loss (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def mkstemp_beside(path: str) -> tuple[int, str]:
    """A temp file next to ``path`` with ordinary umask permissions (mkstemp alone gives 0600,
    which a service running as another user could not read)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path``: temp file in the same folder, fsync, rename, fsync the folder.
    A reader (or a crash) sees the old file or the new one, never half of either."""
    fd, tmp = mkstemp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))
