"""The contract a capability module (object detection, and every one to come) fulfils.

A module is one folder under ``daemon/modules/`` plus one line in :data:`edgewatch.daemon.modules.MODULES`.
It names itself as CodeProject.AI names modules (``moduleId``, ``moduleName``), owns its settings
model (the part of its settings ``/v1/settings/{moduleId}`` may change), brings its Litestar
controllers, the MQTT job commands it answers and the tasks of the models it runs (``model_tasks``:
a manifest's task, see edgewatch.models.runtime.heads), and has a lifecycle the daemon drives: built
at start, ``start`` (load and warm up), ``apply`` new settings, ``close``. Its use cases raise
:mod:`.errors` (transport-independent); REST and MQTT map them to statuses and envelopes.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from pydantic import BaseModel, ValidationError

from edgewatch.backends.registry import load_backend

if TYPE_CHECKING:
    from litestar import Controller

    from edgewatch.backends.registry import Selection
    from edgewatch.daemon.config import Settings
    from edgewatch.daemon.inference_queue import InferenceQueue
    from edgewatch.models.manifest import ModelManifest
    from edgewatch.models.store import ModelStore

log = logging.getLogger(__name__)


class ModuleStatus(msgspec.Struct):
    """A module's state for ``/v1/status/version`` and ``edgewatch status``."""

    moduleId: str
    moduleName: str
    ready: bool      # can serve requests now
    summary: str     # one line: what it runs with, or what to do to make it ready
    backend: str | None = None            # the backend its default model runs on
    executionProvider: str | None = None
    notes: list[str] = []                 # warnings for the start log (why a backend was skipped)


class CapabilityModule(ABC):
    module_id: ClassVar[str]
    module_name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]
    model_tasks: ClassVar[frozenset[str]] = frozenset()  # the manifest tasks of the models it runs
    # settings only the config file may set (/v1/settings refuses to change them: who may call the box),
    # and settings /v1/settings shows masked
    config_only: ClassVar[frozenset[str]] = frozenset()
    secret_settings: ClassVar[frozenset[str]] = frozenset()
    # MQTT jobs it answers: the command of the jobs topic (edgewatch/jobs/<command>) → the command its answers name
    mqtt_commands: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Settings, store: ModelStore, saved: dict[str, Any]) -> None:
        self.config = config
        self.store = store
        self.settings = self.settings_from(config, saved)
        self.loading: str | None = None  # what is being loaded now (slow loads are not hangs)

    def load(self, manifest: ModelManifest, backend: str) -> Selection:
        """``manifest`` loaded on ``backend`` ("auto" or a type key) with the configured backend
        settings; :attr:`loading` names it meanwhile (a TensorRT engine build takes minutes)."""
        self.loading = manifest.name
        try:
            selection = load_backend(backend, self.store, manifest,
                                     self.config.backends.by_key(self.config.cache_dir, self.config.inference.workers))
        finally:
            self.loading = None
        log.info("loaded %s (%s variant) on %s", manifest.name, selection.backend.variant_key,
                 selection.backend.type_key, extra={"model": manifest.name})
        return selection

    def installed_models(self) -> list[ModelManifest]:
        """The installed models this module can run (by their manifest's task)."""
        return [m for m in self.store.list() if m.task in self.model_tasks]

    @classmethod
    @abstractmethod
    def controllers(cls) -> list[type[Controller]]:
        """The module's REST controllers (imported here, so a module's routes load with it)."""

    def config_section(self, config: Settings) -> dict[str, Any]:
        """The module's settings as the config file and environment give them (none by default)."""
        return {}

    def settings_from(self, config: Settings, saved: dict[str, Any]) -> BaseModel:
        """The module's settings: its config section overlaid with the changes saved through the API
        (saved changes that no longer validate are logged and ignored)."""
        base = self.config_section(config)
        try:
            return self.settings_model.model_validate(base | saved)
        except ValidationError as exc:
            log.error("ignoring saved %s settings %s: %s", self.module_id, saved, exc)
            return self.settings_model.model_validate(base)

    @abstractmethod
    def config_changed(self, old: Settings, new: Settings) -> bool:
        """Whether a config reload touches anything this module reads."""

    def check_settings(self, new: BaseModel) -> None:
        """Refuse (with :mod:`.errors`) valid-looking settings this box cannot apply."""

    def start_message(self) -> str:
        """What systemd's status line says while :meth:`start` runs."""
        return f"starting {self.module_name}"

    @abstractmethod
    def start(self) -> None:
        """Load and warm up (blocking; the daemon runs it off the event loop). Must not raise for a
        box that lacks models: the module then serves honest errors saying what to install."""

    @abstractmethod
    def apply(self, settings: BaseModel) -> None:
        """Switch to new settings (blocking)."""

    @abstractmethod
    def close(self) -> None:
        """Release runtimes and models."""

    @abstractmethod
    def status(self) -> ModuleStatus:
        """The module's state, without loading or measuring anything."""

    def execution_provider(self) -> tuple[str, bool]:
        """(provider, can use a GPU) answers report when no inference ran (errors before one)."""
        return "CPU", False

    @abstractmethod
    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> msgspec.Struct:
        """The module's answer for a failed ``command`` (REST and MQTT alike)."""

    def known_subjects(self) -> list[str]:
        """The names this module can give a tracked object as its ``sub_label`` (faces: the registered
        people); MQTT gives each a presence entity in Home Assistant."""
        return []

    async def run_job(self, command: str, payload: bytes, params: dict[str, str], queue: InferenceQueue,
                      received_at: float) -> msgspec.Struct:
        """Answer an MQTT job: ``payload`` is the job's body (an image), ``params`` its user properties.
        Raises :class:`.errors.RequestError` for what the sender can fix."""
        raise NotImplementedError(f"{self.module_id} answers no MQTT jobs")
