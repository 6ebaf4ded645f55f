"""The face store: registered people, the aligned crop of each face registered for them, and each
crop's embedding per model, in one SQLite file (``<data_dir>/faces.db``).

Crash safety: WAL journal with ``synchronous=FULL``. A registration is rare and small, so paying an
fsync per commit is nothing, and it makes an acknowledged registration survive a power cut as well
as a kill -9 (with NORMAL, WAL keeps the database consistent but may lose the last commits on
power loss). Every register and delete is one transaction. The schema is created and upgraded by
Alembic migrations (``migrations/``) when the store opens.

Matching is vectorised: the embeddings of the model in use are kept in memory as one N×D matrix
(reloaded after a change), so a recognition is one matrix-vector product however many are stored.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from edgewatch.models.files import fsync_dir

MIGRATIONS = Path(__file__).with_name("migrations")
MAX_USERID = 256  # characters; a name, not a document

_metadata = sa.MetaData()
people = sa.Table("people", _metadata, sa.Column("userid", sa.Text, primary_key=True),
                  sa.Column("created_at", sa.Float))
faces = sa.Table("faces", _metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("userid", sa.Text),
                 sa.Column("crop_jpeg", sa.LargeBinary), sa.Column("image_sha256", sa.Text),
                 sa.Column("created_at", sa.Float))
embeddings = sa.Table("embeddings", _metadata, sa.Column("face_id", sa.Integer, primary_key=True),
                      sa.Column("model", sa.Text, primary_key=True), sa.Column("vector", sa.LargeBinary))


class FaceStoreError(ValueError):
    """A request the store refuses; the message says what to send instead."""


@dataclass(frozen=True)
class NewFace:
    """One face to register: its aligned crop (JPEG), the photo's sha256, its embedding."""

    crop_jpeg: bytes
    image_sha256: str
    vector: np.ndarray


@dataclass(frozen=True)
class Gallery:
    """Every stored embedding of one model: row i of ``vectors`` belongs to ``userids[i]``."""

    userids: tuple[str, ...]
    vectors: np.ndarray  # N×D float32, L2-normalised rows

    def best(self, query: np.ndarray) -> tuple[str | None, float]:
        """The person most like the L2-normalised ``query`` and the cosine similarity (None, 0 when empty)."""
        if not self.userids:
            return None, 0.0
        similarity = self.vectors @ query.astype(np.float32)
        i = int(np.argmax(similarity))
        return self.userids[i], float(similarity[i])


def check_userid(userid: str) -> str:
    """A user id as sent, trimmed; FaceStoreError if it is empty, too long or has control characters."""
    userid = userid.strip()
    if not userid:
        raise FaceStoreError("send a non-empty 'userid' (the person's name or id)")
    if len(userid) > MAX_USERID:
        raise FaceStoreError(f"'userid' is {len(userid)} characters; at most {MAX_USERID}")
    if any(ord(c) < 32 or ord(c) == 127 for c in userid):
        raise FaceStoreError("'userid' contains control characters; send a plain name")
    return userid


def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class FaceStore:
    """The face store at ``path``, created or migrated on open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(f"sqlite:///{path}")
        sa.event.listen(self.engine, "connect", _on_connect)
        self._migrate()
        self._lock = threading.Lock()
        self._galleries: dict[str, Gallery] = {}
        # PRAGMA data_version on one long-lived connection changes when any other connection (another
        # process: `edgewatch faces import`) commits: the cached galleries are then reloaded
        self._watch = sqlite3.connect(path, check_same_thread=False)
        self._seen_version = self._data_version()

    def _migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    # -- changes ---------------------------------------------------------------------------------
    def register(self, userid: str, new: list[NewFace], model: str) -> int:
        """Add ``new`` faces to ``userid`` (created if new), their embeddings made by ``model``, in one
        transaction; returns how many faces ``userid`` has now."""
        userid = check_userid(userid)
        if not new:
            raise FaceStoreError("no face to register")
        now = time.time()
        with self._lock, self.engine.begin() as db:
            db.execute(sa.insert(people).prefix_with("OR IGNORE").values(userid=userid, created_at=now))
            for face in new:
                face_id = db.execute(sa.insert(faces).values(userid=userid, crop_jpeg=face.crop_jpeg,
                                                            image_sha256=face.image_sha256, created_at=now)
                                     ).inserted_primary_key[0]
                db.execute(sa.insert(embeddings).values(face_id=face_id, model=model, vector=_blob(face.vector)))
            count = db.execute(sa.select(sa.func.count()).select_from(faces).where(faces.c.userid == userid)
                               ).scalar_one()
            self._galleries.clear()
        return int(count)

    def delete(self, userid: str) -> bool:
        """Remove ``userid`` and all their faces; False if there was no such person."""
        with self._lock, self.engine.begin() as db:
            gone = db.execute(sa.delete(people).where(people.c.userid == userid)).rowcount
            self._galleries.clear()
        return bool(gone)

    def add_embeddings(self, model: str, vectors: dict[int, np.ndarray]) -> None:
        """Store ``model``'s embeddings of existing faces (by face id): after a model change."""
        with self._lock, self.engine.begin() as db:
            for face_id, vector in vectors.items():
                db.execute(sa.insert(embeddings).prefix_with("OR REPLACE").values(
                    face_id=face_id, model=model, vector=_blob(vector)))
            self._galleries.clear()

    # -- reads -----------------------------------------------------------------------------------
    def userids(self) -> list[str]:
        with self.engine.connect() as db:
            return list(db.execute(sa.select(people.c.userid).order_by(people.c.userid)).scalars())

    def unembedded(self, model: str) -> list[tuple[int, bytes]]:
        """(face id, aligned crop JPEG) of the faces that have no ``model`` embedding yet."""
        has = sa.select(embeddings.c.face_id).where(embeddings.c.model == model)
        with self.engine.connect() as db:
            rows = db.execute(sa.select(faces.c.id, faces.c.crop_jpeg).where(faces.c.id.not_in(has)))
            return [(int(i), bytes(crop)) for i, crop in rows]

    def _data_version(self) -> int:
        return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    def gallery(self, model: str) -> Gallery:
        """Every ``model`` embedding, as one matrix (cached until the next change, by any process)."""
        with self._lock:
            version = self._data_version()
            if version != self._seen_version:
                self._galleries.clear()
                self._seen_version = version
            cached = self._galleries.get(model)
            if cached is not None:
                return cached
            with self.engine.connect() as db:
                rows = db.execute(sa.select(faces.c.userid, embeddings.c.vector)
                                  .join(embeddings, embeddings.c.face_id == faces.c.id)
                                  .where(embeddings.c.model == model).order_by(faces.c.id)).all()
            vectors = (np.stack([np.frombuffer(v, np.float32) for _, v in rows]) if rows
                       else np.zeros((0, 0), np.float32))
            gallery = self._galleries[model] = Gallery(tuple(u for u, _ in rows), vectors)
            return gallery

    # -- backup ----------------------------------------------------------------------------------
    def export(self, target: Path) -> int:
        """A consistent copy of the whole store at ``target`` (SQLite's online backup, safe while
        the daemon runs); returns the number of people in it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.unlink(missing_ok=True)
        source = sqlite3.connect(self.path)
        try:
            copy = sqlite3.connect(tmp)  # synchronous=FULL by default: the copy is on disk when backup returns
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
                people = copy.execute("SELECT count(*) FROM people").fetchone()[0]
            finally:
                copy.close()
        finally:
            source.close()
        tmp.replace(target)
        fsync_dir(target.parent)
        return int(people)

    def import_(self, source: Path) -> tuple[int, int]:
        """Merge the people and faces of an exported store into this one (faces already here, by
        person and crop, are skipped); returns (people added, faces added). ``source`` is only read."""
        try:
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            try:
                theirs = src.execute("SELECT id, userid, crop_jpeg, image_sha256, created_at FROM faces").fetchall()
                their_embeddings = src.execute("SELECT face_id, model, vector FROM embeddings").fetchall()
            finally:
                src.close()
        except sqlite3.DatabaseError as exc:
            raise FaceStoreError(f"{source} is not an exported face store ({exc}): make one with "
                                 "`edgewatch faces export FILE`") from None
        by_face: dict[int, list[tuple[str, bytes]]] = {}
        for face_id, model, vector in their_embeddings:
            by_face.setdefault(face_id, []).append((model, vector))
        added_people = added_faces = 0
        with self._lock, self.engine.begin() as db:
            known = {(u, hashlib.sha256(c).hexdigest())
                     for u, c in db.execute(sa.select(faces.c.userid, faces.c.crop_jpeg))}
            for their_id, userid, crop, image_sha256, created_at in theirs:
                if (userid, hashlib.sha256(crop).hexdigest()) in known:
                    continue
                added_people += db.execute(sa.insert(people).prefix_with("OR IGNORE").values(
                    userid=userid, created_at=created_at)).rowcount
                face_id = db.execute(sa.insert(faces).values(userid=userid, crop_jpeg=crop, image_sha256=image_sha256,
                                                            created_at=created_at)).inserted_primary_key[0]
                for model, vector in by_face.get(their_id, []):
                    db.execute(sa.insert(embeddings).values(face_id=face_id, model=model, vector=vector))
                added_faces += 1
            self._galleries.clear()
        return added_people, added_faces

    def check(self) -> dict[str, object]:
        """SQLite's integrity check and the row counts (for tests and `edgewatch status`)."""
        with self.engine.connect() as db:
            integrity = db.exec_driver_sql("PRAGMA integrity_check").scalar_one()
            orphans = db.execute(sa.select(sa.func.count()).select_from(faces).where(
                faces.c.userid.not_in(sa.select(people.c.userid)))).scalar_one()
            counts = {t.name: db.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                      for t in (people, faces, embeddings)}
        return {"integrity": integrity, "orphan_faces": orphans, **counts}

    def close(self) -> None:
        self._watch.close()
        self.engine.dispose()


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, np.float32).tobytes()
