"""The plate reader module (CodeProject.AI's License Plate Reader): a plate detector and a text
recogniser from the store, each on its CPU backend, and the reading that joins them."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from litestar import Controller
from rapidfuzz.distance import Levenshtein

from edgewatch.backends.base import Backend
from edgewatch.daemon.config import AlprConfig, Settings
from edgewatch.daemon.modules.alpr.schemas import AlprResponse
from edgewatch.daemon.modules.base import CapabilityModule, ModuleStatus
from edgewatch.daemon.modules.errors import NotFound, Unavailable
from edgewatch.daemon.modules.model_slot import ModelSlot
from edgewatch.models.manifest import ModelManifest
from edgewatch.models.runtime.plates import (DictionaryMissing, PlateRead, TextReader, characters_from,
                                              normalise_plate, read_plates)

log = logging.getLogger(__name__)

MODULE_ID = "ALPREdgewatch"
MODULE_NAME = "License Plate Reader (edgewatch)"
DETECTOR_TASK, OCR_TASK = "plate_detection", "text_recognition"
# The plate models run on ONNX Runtime: their inputs change size with every image and plate, which
# the fixed-shape accelerator conversions (RKNN, Edge TPU) cannot take.
BACKEND = "onnxruntime"


class AlprModule(CapabilityModule):
    module_id = MODULE_ID
    module_name = MODULE_NAME
    settings_model = AlprConfig
    model_tasks = frozenset({DETECTOR_TASK, OCR_TASK})
    mqtt_commands = {"alpr": "alpr"}  # edgewatch/jobs/alpr: the image as payload, min_confidence a user property
    settings: AlprConfig

    def __init__(self, config: Settings, store, saved: dict[str, Any]) -> None:
        super().__init__(config, store, saved)
        self.detector: ModelSlot[tuple[Backend, ModelManifest]] = ModelSlot(
            self, lambda manifest, load: (load(), manifest), BACKEND, what="plate detector",
            kind="a plate_detection model", suggest="plate-detector", setting="detector")
        self.ocr: ModelSlot[TextReader] = ModelSlot(
            self, self._reader, BACKEND, what="plate text", kind="a text_recognition model", suggest="ppocr-rec",
            setting="ocr", errors=(DictionaryMissing,))

    def _reader(self, manifest: ModelManifest, load) -> TextReader:
        characters = characters_from(self.store.path(manifest))  # before the load: a bad file loads nothing
        return TextReader(manifest, load(), characters)

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        from edgewatch.daemon.modules.alpr.controller import AlprController, LegacyAlprController

        return [AlprController, LegacyAlprController]

    def config_section(self, config: Settings) -> dict[str, Any]:
        return config.alpr.model_dump()

    def config_changed(self, old: Settings, new: Settings) -> bool:
        return (new.alpr, new.backends) != (old.alpr, old.backends)

    def check_settings(self, new: AlprConfig) -> None:
        for name, task, default in ((new.detector, DETECTOR_TASK, "plate-detector"), (new.ocr, OCR_TASK, "ppocr-rec")):
            if not self.store.has(name):
                raise NotFound(f"model {name!r} is not installed; install it with `edgewatch models install "
                               f"{name}` (see `edgewatch models list`)")
            if self.store.get(name).task != task:
                raise NotFound(f"{name} is not a {task} model: choose {default}")

    def start_message(self) -> str:
        return f"loading plate models {self.settings.detector} and {self.settings.ocr}"

    def start(self) -> None:
        """Load both models if installed and run them once."""
        try:
            self.read(np.zeros((64, 64, 3), np.uint8))
        except Unavailable as exc:
            log.info("alpr: %s", exc)

    def apply(self, settings: AlprConfig) -> None:
        self.detector.apply(settings)
        self.ocr.apply(settings)
        self.start()

    def close(self) -> None:
        self.detector.close()
        self.ocr.close()

    def status(self) -> ModuleStatus:
        missing = [name for name in (self.settings.detector, self.settings.ocr) if not self.store.has(name)]
        if missing:
            return ModuleStatus(self.module_id, self.module_name, False,
                                f"no plate models: run `edgewatch models install {' '.join(missing)}`")
        return self.detector.status(f"plate reading with {self.settings.detector} and {self.settings.ocr}", "")

    def execution_provider(self) -> tuple[str, bool]:
        return self.detector.execution_provider()

    async def run_job(self, command, payload, params, queue, received_at) -> AlprResponse:
        from edgewatch.daemon.modules.alpr.usecase import read_image

        return await read_image(self, queue, payload, params.get("min_confidence"), received_at)

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> AlprResponse:
        from edgewatch.daemon.modules.alpr.usecase import answer

        return answer(self, command, received_at, success=False, code=status, error=message)

    def read(self, image_bgr: np.ndarray) -> tuple[list[PlateRead], float]:
        """Every plate the detector finds in ``image_bgr`` above ``plate_threshold``, read (loading the
        models on first use), and the models' time in ms."""
        settings = self.settings
        detector, reader = self.detector.get(), self.ocr.get()
        return read_plates(detector, reader, image_bgr, settings.plate_threshold, settings.max_side)

    def accepted(self, plate: PlateRead, min_confidence: float) -> bool:
        """Whether a reading is a plate to answer: enough characters, a digit if asked, sure enough."""
        settings = self.settings
        return (len(plate.text) >= settings.min_characters and plate.ocr_confidence >= min_confidence
                and (not settings.require_digit or any(c.isdigit() for c in plate.text)))

    def known_plate(self, text: str) -> tuple[str, str] | None:
        """(name, plate) of the known plate ``text`` (normalised) reads as: the same characters, or for
        plates of 5 characters and more, at most ``match_distance`` edits away (the nearest wins)."""
        distance = self.settings.match_distance
        best: tuple[int, str, str] | None = None
        for name, plates in self.settings.known_plates.items():
            for plate in plates:
                plate = normalise_plate(plate)
                allowed = distance if len(plate) >= 5 else 0
                edits = Levenshtein.distance(text, plate, score_cutoff=allowed)
                if edits <= allowed and (best is None or edits < best[0]):
                    best = (edits, name, plate)
        return (best[1], best[2]) if best else None
