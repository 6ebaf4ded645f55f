"""The one installed model a single-model module runs (``settings.model``): loaded on first use,
released on a settings change or close, with the module's own wording for what is missing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from edgewatch.backends.base import Backend, BackendError
from edgewatch.daemon.modules.base import CapabilityModule, ModuleStatus
from edgewatch.daemon.modules.errors import Unavailable
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.store import ModelNotFound

if TYPE_CHECKING:
    from pydantic import BaseModel

T = TypeVar("T")
# what a module makes of its model: given the manifest and a function that loads it on the backend
# (so checks that need no backend come first, and a failing one loads nothing)
Build = Callable[[ModelManifest, Callable[[], Backend]], T]


def install_command(name: str) -> str:
    return f"edgewatch models install {name}"


class ModelSlot(Generic[T]):
    """``module.settings.model`` (or the setting named ``setting``) built with ``build`` on ``backend``
    (a type key, or one per manifest), loaded on first use under its own lock; :class:`Unavailable`
    says what to install or fix.

    The messages name the model as ``what`` ("no {what} model ..."); a model of another task is told
    to be ``kind`` (if given) and pointed to ``suggest``; ``errors`` raised by ``build`` or the load
    become ``cannot_run`` (formatted with ``name`` and ``exc``)."""

    def __init__(self, module: CapabilityModule, build: Build[T], backend: str | Callable[[ModelManifest], str], *,
                 what: str, suggest: str, kind: str | None = None, install: Callable[[str], str] = install_command,
                 errors: tuple[type[Exception], ...] = (BackendError,),
                 cannot_run: str = "{name} cannot run here: {exc}", setting: str = "model") -> None:
        self._module, self._build, self._backend, self._setting = module, build, backend, setting
        self._what, self._suggest, self._kind, self._install = what, suggest, kind, install
        self._errors, self._cannot_run = errors, cannot_run
        self._lock = threading.Lock()
        self._loaded: tuple[T, Backend] | None = None

    def get(self) -> T:
        """The configured model, loading it on first use."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load(self.name)
            return self._loaded[0]

    def _load(self, name: str) -> tuple[T, Backend]:
        module = self._module
        try:
            manifest = module.store.get(name)
        except ModelNotFound:
            raise Unavailable(f"no {self._what} model {name!r} installed: run `{self._install(name)}` "
                              "on the box") from None
        if manifest.task not in module.model_tasks:
            kind = f", not {self._kind}" if self._kind else ""
            raise Unavailable(f"{name} is a {manifest.task} model{kind}: set model in "
                              f"/v1/settings/{module.module_id} to {self._suggest}")
        loaded: list[Backend] = []

        def load() -> Backend:
            key = self._backend if isinstance(self._backend, str) else self._backend(manifest)
            loaded.append(module.load(manifest, key).backend)
            return loaded[0]

        try:
            return self._build(manifest, load), loaded[0]
        except BaseException as exc:
            for backend in loaded:  # loaded, then the build failed: nothing holds it but us
                backend.close()
            if isinstance(exc, self._errors):
                raise Unavailable(self._cannot_run.format(name=name, exc=exc)) from None
            raise

    @property
    def name(self) -> str:
        """The model the module's settings name for this slot."""
        return getattr(self._module.settings, self._setting)  # type: ignore[attr-defined]

    def apply(self, settings: BaseModel) -> None:
        """Give the module ``settings`` and release the model (the next :meth:`get` loads theirs)."""
        with self._lock:
            old, self._loaded = self._loaded, None
            self._module.settings = settings
        if old is not None:
            old[1].close()

    def close(self) -> None:
        with self._lock:
            old, self._loaded = self._loaded, None
        if old is not None:
            old[1].close()

    @property
    def backend(self) -> Backend | None:
        """The loaded model's backend (None before the first use; loads nothing)."""
        with self._lock:
            return self._loaded[1] if self._loaded else None

    def status(self, ready: str, missing: str) -> ModuleStatus:
        """The module's status: ``missing`` while the configured model is not installed, else ``ready``
        with the backend it runs on once loaded."""
        module = self._module
        if not module.store.has(self.name):
            return ModuleStatus(module.module_id, module.module_name, False, missing)
        backend = self.backend
        return ModuleStatus(module.module_id, module.module_name, True, ready,
                            backend.type_key if backend else None, backend.execution_provider if backend else None)

    def execution_provider(self) -> tuple[str, bool]:
        backend = self.backend
        return (backend.execution_provider, bool(backend.can_use_gpu)) if backend else ("CPU", False)


class SingleModelModule(CapabilityModule):
    """A module that runs one model from the store, held in ``self.slot``: new settings release it
    and warm the new one up (``start``), closing releases it, and answers report the backend it ran on."""

    slot: ModelSlot

    def apply(self, settings: BaseModel) -> None:
        self.slot.apply(settings)
        self.start()

    def close(self) -> None:
        self.slot.close()

    def execution_provider(self) -> tuple[str, bool]:
        return self.slot.execution_provider()
