"""Sound classification as a use case, the same for every transport: WAV bytes in, the module's
envelope out; what the sender can fix raises the module errors. Decoding and inference run on the
shared inference queue."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.envelope import envelope_fields
from edgewatch.daemon.modules.requests import queued
from edgewatch.daemon.modules.sound.audio import decode_wav
from edgewatch.daemon.modules.sound.features import patches
from edgewatch.daemon.modules.sound.schemas import AudioSetScore, SoundResponse

if TYPE_CHECKING:
    from edgewatch.daemon.modules.sound.module import SoundModule

UNKNOWN = "unknown"
TOP = 5  # AudioSet labels listed in an answer


def answer(module: SoundModule, command: str, received_at: float, *, success: bool = True, code: int = 200,
           message: str = "", error: str | None = None, inference_ms: float = 0.0, process_ms: float = 0.0,
           **fields: Any) -> SoundResponse:
    """The module's envelope for ``command`` with the Sound Classifier's ``fields``."""
    return SoundResponse(**envelope_fields(module, command, success=success, received_at=received_at, code=code,
                                           message=message, error=error),
                         inferenceMs=round(inference_ms), processMs=round(process_ms), **fields)


async def classify(module: SoundModule, queue: InferenceQueue, data: bytes, min_conf: float,
                   received_at: float) -> SoundResponse:
    settings = module.settings

    def job() -> tuple[np.ndarray, float, float, float, Any]:
        start = time.perf_counter()
        clip = decode_wav(data, settings.max_seconds)
        model = module.model()
        feats = patches(clip.samples)
        infer_start = time.perf_counter()
        scores = model.scores(feats)
        inference_s = time.perf_counter() - infer_start
        pooled = scores.max(axis=0) if settings.pooling == "max" else scores.mean(axis=0)
        return pooled, clip.seconds, inference_s, time.perf_counter() - start, model

    pooled, seconds, inference_s, process_s, model = await queued(queue, job)
    labels, urban = model.manifest.labels, model.urban.scores(pooled)
    best_class, (best_score, _) = max(urban.items(), key=lambda kv: kv[1][0])
    top = np.argsort(-pooled, kind="stable")[:TOP]
    audioset = [AudioSetScore(labels[i], round(float(pooled[i]), 4), model.urban.class_of(int(i))) for i in top]
    label = best_class if best_score >= min_conf else UNKNOWN
    heard = f"AudioSet: {audioset[0].label} {audioset[0].confidence:.2f}"
    message = (f"{label} ({best_score:.2f}); {heard}" if label != UNKNOWN else
               f"no UrbanSound8K class reached min_confidence {min_conf:g} (best: {best_class} {best_score:.2f}); {heard}")
    return answer(module, "classify", received_at, message=message, inference_ms=inference_s * 1000,
                  process_ms=process_s * 1000, label=label, confidence=round(best_score, 4),
                  audioSetLabel=audioset[0].label, audioSetConfidence=audioset[0].confidence, audioSet=audioset,
                  durationSeconds=round(seconds, 3))
