"""Crash-safe file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import hashlib
import json
import os
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
