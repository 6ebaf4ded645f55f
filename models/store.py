"""The on-disk model store: ``<data_dir>/models/<name>/manifest.json`` plus its model files.

A model is installed when, and only when, its manifest exists. Files are written and fsynced
first, the manifest is renamed into place last, so a kill -9 at any moment leaves either the
previous complete model or the new complete model, never a half-written one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from edgewatch.models.files import atomic_copy, atomic_write_json, fsync_dir, sha256_file
from edgewatch.models.manifest import ModelManifest, Variant, check_model_name

MANIFEST = "manifest.json"


class ModelNotFound(KeyError):
    def __str__(self) -> str:
        return (f"model {self.args[0]!r} is not installed; see `edgewatch models list`, "
                f"or install it with `edgewatch models install {self.args[0]}`")


class StoreError(RuntimeError):
    pass


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, name: str) -> Path:
        return self.root / check_model_name(name)

    def list(self) -> list[ModelManifest]:
        out = []
        if self.root.is_dir():
            for d in sorted(self.root.iterdir()):
                if (d / MANIFEST).is_file():
                    try:
                        out.append(self.get(d.name))
                    except (StoreError, ValueError):
                        continue  # a foreign or damaged folder is not a model
        return out

    def has(self, name: str) -> bool:
        """Whether model ``name`` is installed: never for a name no model can have (a client's text)."""
        try:
            folder = self._dir(name)
        except ValueError:
            return False
        return (folder / MANIFEST).is_file()

    def get(self, name: str) -> ModelManifest:
        path = self._dir(name) / MANIFEST
        try:
            return ModelManifest.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ModelNotFound(name) from None
        except (ValidationError, json.JSONDecodeError) as exc:
            raise StoreError(f"manifest {path} is damaged ({exc}); reinstall with "
                             f"`edgewatch models remove {name}` then `edgewatch models install {name}`") from exc

    def path(self, manifest: ModelManifest, variant: str | None = None) -> Path:
        return self._dir(manifest.name) / manifest.variants[variant or manifest.default_variant].file

    def verify(self, manifest: ModelManifest) -> list[str]:
        """Problems with the files of an installed model (missing, wrong sha256); empty if sound."""
        problems = []
        for key, var in manifest.variants.items():
            p = self._dir(manifest.name) / var.file
            if not p.is_file():
                problems.append(f"{key}: {p} missing")
            elif sha256_file(p) != var.sha256:
                problems.append(f"{key}: {p} sha256 mismatch")
        return problems

    def commit(self, manifest: ModelManifest, files: dict[str, Path]) -> ModelManifest:
        """Install ``manifest`` with ``files`` (variant key -> source file) crash-safely.

        Each file is stored as ``<variant>-<sha12>.<ext>`` so a new install never overwrites
        a file the current manifest points at; stale files are removed after the switch.
        """
        target = self._dir(manifest.name)
        existed = target.is_dir()
        target.mkdir(parents=True, exist_ok=True)
        variants = {}
        written: list[Path] = []
        try:
            for key, src in files.items():
                old = manifest.variants[key]
                tmp_name = f".incoming-{key}{src.suffix}"
                digest = atomic_copy(src, target / tmp_name)
                if digest != old.sha256:
                    (target / tmp_name).unlink(missing_ok=True)
                    raise StoreError(f"{src} changed while installing (sha256 {digest[:12]} != {old.sha256[:12]}); "
                                     "run the install again")
                final = f"{key}-{digest[:12]}{src.suffix}"
                (target / tmp_name).replace(target / final)
                written.append(target / final)
                variants[key] = Variant(**{**old.model_dump(), "file": final})
            manifest = manifest.model_copy(update={
                "variants": variants,
                "installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            })
            atomic_write_json(target / MANIFEST, manifest.model_dump(mode="json"))
        except BaseException:  # a failed install (a full disk, say) leaves the store as it found it
            try:
                kept = {v.file for v in self.get(manifest.name).variants.values()}
            except (ModelNotFound, StoreError):
                kept = set()  # no model installed before (or a damaged one): none of its files to keep
            for path in written:
                if path.name not in kept:
                    path.unlink(missing_ok=True)
            if not existed:
                shutil.rmtree(target, ignore_errors=True)
            raise
        keep = {MANIFEST, *(v.file for v in variants.values())}
        for stale in target.iterdir():
            if stale.name not in keep:
                stale.unlink(missing_ok=True) if stale.is_file() else shutil.rmtree(stale, ignore_errors=True)
        return manifest

    def add_variant(self, name: str, key: str, variant: Variant, src: Path,
                    change: Callable[[ModelManifest], ModelManifest] | None = None) -> ModelManifest:
        """Add (or replace) one converted variant of an installed model, crash-safely: the file is
        stored under a content-addressed name first, the manifest that points at it last (passed
        through ``change`` first, e.g. to make the new variant the default)."""
        manifest = self.get(name)
        target = self._dir(name)
        digest = atomic_copy(src, target / f".incoming-{key}{src.suffix}")
        if digest != variant.sha256:
            (target / f".incoming-{key}{src.suffix}").unlink(missing_ok=True)
            raise StoreError(f"{src} changed while being added (sha256 {digest[:12]}); run the conversion again")
        final = f"{key}-{digest[:12]}{src.suffix}"
        (target / f".incoming-{key}{src.suffix}").replace(target / final)
        old = manifest.variants.get(key)
        manifest = manifest.model_copy(update={"variants": {**manifest.variants,
                                                           key: variant.model_copy(update={"file": final})}})
        if change is not None:
            manifest = change(manifest)
        atomic_write_json(target / MANIFEST, manifest.model_dump(mode="json"))
        if old is not None and old.file != final:
            (target / old.file).unlink(missing_ok=True)
        return manifest

    def update(self, name: str, change: Callable[[ModelManifest], ModelManifest]) -> ModelManifest:
        """Rewrite an installed model's manifest through ``change`` (metadata only, atomically)."""
        manifest = change(self.get(name))
        atomic_write_json(self._dir(name) / MANIFEST, manifest.model_dump(mode="json"))
        return manifest

    def remove(self, name: str) -> None:
        target = self._dir(name)
        if not (target / MANIFEST).is_file():
            raise ModelNotFound(name)
        (target / MANIFEST).unlink()  # from here on the model is gone, whatever happens next
        fsync_dir(target)
        shutil.rmtree(target, ignore_errors=True)
