"""The plate reader's answer: the CodeProject.AI envelope with License Plate Reader's fields."""

from __future__ import annotations

import msgspec

from edgewatch.daemon.modules.envelope import Envelope


class PlatePrediction(msgspec.Struct, frozen=True):
    """One plate, as CodeProject.AI's ALPR module answers it: ``label`` "Plate: <text>", ``plate`` the
    text (A–Z, 0–9), ``confidence`` the reading's (its characters' mean probability), the box in
    original-image pixels; then edgewatch's detector score and, again, the reading's confidence."""

    label: str
    plate: str
    confidence: float
    x_min: int
    y_min: int
    x_max: int
    y_max: int
    plate_confidence: float
    ocr_confidence: float


class AlprResponse(Envelope, kw_only=True, omit_defaults=True):
    """/v1/vision/alpr and /v1/image/alpr."""

    predictions: list[PlatePrediction]
    count: int
    inferenceMs: int
    processMs: int
