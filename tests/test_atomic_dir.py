"""atomic_dir: a folder built beside its final name appears whole under that name, or not at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgewatch.models.files import atomic_dir


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_folder_appears_only_when_the_block_ends(tmp_path: Path) -> None:
    final = tmp_path / "conversions" / "key"  # the parent is created too
    with atomic_dir(final) as tmp:
        assert tmp.parent == final.parent and tmp.is_dir() and tmp.name.startswith(".key.")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "model.onnx").write_bytes(b"weights")
        (tmp / "report.json").write_text("{}")
        assert not final.exists()
    assert (final / "sub" / "model.onnx").read_bytes() == b"weights"
    assert _names(final.parent) == ["key"]  # no temp folder left


def test_an_error_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "key"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(final) as tmp:
            (tmp / "half.onnx").write_bytes(b"half")
            raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_an_existing_folder_is_kept_unless_replace(tmp_path: Path) -> None:
    final = tmp_path / "key"
    final.mkdir()
    (final / "report.json").write_text("first")
    with atomic_dir(final) as tmp:  # built meanwhile by another process: theirs is as good as ours
        (tmp / "report.json").write_text("second")
    assert (final / "report.json").read_text() == "first" and _names(tmp_path) == ["key"]
    with atomic_dir(final, replace=True) as tmp:
        (tmp / "meta.json").write_text("third")
    assert _names(final) == ["meta.json"] and _names(tmp_path) == ["key"]


def test_a_leftover_of_a_killed_run_is_cleared(tmp_path: Path) -> None:
    final = tmp_path / "key"
    stale = tmp_path / f".key.{threading.get_native_id()}.tmp"
    stale.mkdir()
    (stale / "junk").write_text("from a killed run")
    with atomic_dir(final) as tmp:
        assert _names(tmp) == []
        (tmp / "ok").write_text("ok")
    assert _names(final) == ["ok"] and _names(tmp_path) == ["key"]


def test_threads_building_the_same_folder_do_not_collide(tmp_path: Path) -> None:
    final = tmp_path / "key"
    barrier, errors = threading.Barrier(4), []

    def build(n: int) -> None:
        try:
            with atomic_dir(final) as tmp:
                barrier.wait()
                (tmp / "who").write_text(str(n))
                time.sleep(0.05)
                assert (tmp / "who").read_text() == str(n)  # nobody else writes into this folder
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and _names(tmp_path) == ["key"] and _names(final) == ["who"]


def test_kill_9_mid_build_never_shows_the_final_name(tmp_path: Path) -> None:
    final = tmp_path / "key"
    script = (f"import sys, time; from pathlib import Path; from edgewatch.models.files import atomic_dir\n"
              f"with atomic_dir(Path({str(final)!r})) as tmp:\n"
              f"    (tmp / 'a').write_bytes(b'x' * 100000); print('ready', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert not final.exists()
