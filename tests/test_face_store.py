"""The face store: atomic register/delete, vectorised matching, export/import, migrations, and no
acknowledged registration lost when the process is killed with SIGKILL at any moment."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgewatch.daemon.modules.faces.store import FaceStore, FaceStoreError, NewFace, check_userid


def vector(rng: np.random.Generator, dim: int = 192) -> np.ndarray:
    v = rng.normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def face(rng: np.random.Generator, crop: bytes = b"crop") -> NewFace:
    return NewFace(crop + rng.bytes(8), "0" * 64, vector(rng))


def test_register_match_delete(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = FaceStore(tmp_path / "faces.db")
    alice = vector(rng)
    assert store.register("alice", [NewFace(b"a1", "1" * 64, alice)], "m@1") == 1
    assert store.register("alice", [face(rng), face(rng)], "m@1") == 3  # several faces per person
    assert store.register("Zoë 山田", [face(rng)], "m@1") == 1  # unicode ids are names like any other
    assert store.userids() == ["Zoë 山田", "alice"]
    near = alice + 0.1 * vector(rng)
    who, similarity = store.gallery("m@1").best(near / np.linalg.norm(near))
    assert who == "alice" and similarity > 0.9
    assert store.gallery("other@2").best(alice) == (None, 0.0)  # another model's embeddings are not mixed in
    assert {f for f, _ in store.unembedded("other@2")} == {1, 2, 3, 4}  # what a model change must re-embed
    assert store.delete("alice") and not store.delete("alice")
    assert store.userids() == ["Zoë 山田"] and store.gallery("m@1").userids == ("Zoë 山田",)
    assert store.check() == {"integrity": "ok", "orphan_faces": 0, "people": 1, "faces": 1, "embeddings": 1}


@pytest.mark.parametrize("userid, words", [("", "non-empty"), ("   ", "non-empty"), ("x" * 257, "at most 256"),
                                           ("a\nb", "control characters")])
def test_bad_userids_are_refused_with_what_to_send(userid: str, words: str) -> None:
    with pytest.raises(FaceStoreError, match=words):
        check_userid(userid)


def test_a_failed_registration_leaves_nothing_behind(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    store = FaceStore(tmp_path / "faces.db")
    bad = NewFace(None, "0" * 64, vector(rng))  # type: ignore[arg-type]  # NOT NULL fails mid-transaction
    with pytest.raises(Exception):
        store.register("bob", [face(rng), bad], "m@1")
    assert store.userids() == [] and store.check()["faces"] == 0


def test_export_and_import_move_people_between_boxes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    here = FaceStore(tmp_path / "here.db")
    here.register("alice", [face(rng), face(rng)], "m@1")
    here.register("bob", [face(rng)], "m@1")
    assert here.export(tmp_path / "backup.db") == 2
    there = FaceStore(tmp_path / "there.db")
    there.register("carol", [face(rng)], "m@1")
    assert there.import_(tmp_path / "backup.db") == (2, 3)
    assert there.import_(tmp_path / "backup.db") == (0, 0)  # importing twice adds nothing
    assert there.userids() == ["alice", "bob", "carol"]
    assert len(there.gallery("m@1").userids) == 4 and there.check()["integrity"] == "ok"


def test_matching_cost_does_not_grow_with_python_loops(tmp_path: Path) -> None:
    """10,000 embeddings are one matrix: the gallery is built once and matching is one product."""
    rng = np.random.default_rng(4)
    store = FaceStore(tmp_path / "faces.db")
    for i in range(100):
        store.register(f"u{i:03d}", [NewFace(b"c%d" % j, "0" * 64, vector(rng)) for j in range(100)], "m@1")
    gallery = store.gallery("m@1")
    assert gallery.vectors.shape == (10_000, 192) and gallery.vectors.dtype == np.float32
    assert store.gallery("m@1") is gallery  # cached until the next change
    probe = gallery.vectors[4321]
    assert gallery.best(probe) == (gallery.userids[4321], pytest.approx(1.0, abs=1e-5))


WRITER = """
import sys, numpy as np
from pathlib import Path
from edgewatch.daemon.modules.faces.store import FaceStore, NewFace
store = FaceStore(Path(sys.argv[1]))
start, rng = int(sys.argv[2]), np.random.default_rng(int(sys.argv[2]))
for i in range(start, start + 100_000):
    v = rng.normal(size=192).astype(np.float32)
    store.register(f"user{i:06d}", [NewFace(rng.bytes(3000), "0" * 64, v / np.linalg.norm(v))], "m@1")
    print(f"ack user{i:06d}", flush=True)  # acknowledged only after the commit returned
"""


@pytest.mark.slow
def test_no_acknowledged_registration_is_lost_to_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "faces.db"
    FaceStore(db).close()  # migrated once, so every kill lands in registrations
    acknowledged: list[str] = []
    rng = random.Random(5)
    for round_ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(round_ * 100_000)],
                                stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # the clock starts at the first registration, however slow the start
        if first.startswith("ack"):
            acknowledged.append(first.split()[1])
        deadline = time.monotonic() + rng.uniform(0.3, 1.5)
        while first and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.append(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        acknowledged += [line.split()[1] for line in proc.stdout.read().splitlines() if line.startswith("ack")]
        proc.wait()
        store = FaceStore(db)
        stored = set(store.userids())
        check = store.check()
        store.close()
        assert check["integrity"] == "ok" and check["orphan_faces"] == 0, check
        assert check["faces"] == check["embeddings"] == check["people"] == len(stored)  # whole registrations only
        missing = [u for u in acknowledged if u not in stored]
        assert not missing, f"round {round_}: acknowledged but lost: {missing[:5]}"
    assert len(acknowledged) > 50  # the loop really registered, in every round


def test_changes_by_another_process_reach_the_cached_gallery(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    daemon_side = FaceStore(tmp_path / "faces.db")
    daemon_side.register("alice", [face(rng)], "m@1")
    assert daemon_side.gallery("m@1").userids == ("alice",)
    other = FaceStore(tmp_path / "faces.db")  # e.g. `edgewatch faces import` while the daemon runs
    other.register("bob", [face(rng)], "m@1")
    assert daemon_side.gallery("m@1").userids == ("alice", "bob")


def test_cli_exports_and_imports_between_boxes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from edgewatch.daemon.cli import main

    rng = np.random.default_rng(7)
    FaceStore(tmp_path / "box-a" / "faces.db").register("alice", [face(rng), face(rng)], "m@1")
    runner, backup = CliRunner(), tmp_path / "alice.db"
    monkeypatch.setenv("EDGEWATCH_DATA_DIR", str(tmp_path / "box-a"))
    out = runner.invoke(main, ["faces", "export", str(backup)])
    assert out.exit_code == 0 and "exported 1 people" in out.output
    monkeypatch.setenv("EDGEWATCH_DATA_DIR", str(tmp_path / "box-b"))
    out = runner.invoke(main, ["faces", "import", str(backup)])
    assert out.exit_code == 0 and "imported 2 face(s), 1 new people" in out.output
    assert runner.invoke(main, ["faces", "list"]).output.split() == ["alice"]
    (tmp_path / "junk.db").write_bytes(b"not sqlite")
    bad = runner.invoke(main, ["faces", "import", str(tmp_path / "junk.db")])
    assert bad.exit_code == 1 and "not an exported face store" in bad.output and "faces export" in bad.output
