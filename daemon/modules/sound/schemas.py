"""The sound module's answer: the CodeProject.AI envelope with the Sound Classifier's fields
(``label``, ``confidence``) plus the AudioSet label they come from."""

from __future__ import annotations

import msgspec
from edgewatch.daemon.modules.envelope import Envelope


class AudioSetScore(msgspec.Struct, frozen=True, omit_defaults=True):
    label: str                        # an AudioSet label (YAMNet's 521)
    confidence: float                 # 0-1, the clip's score for it
    urbanSound8K: str | None = None   # the UrbanSound8K class it counts for, if any


class SoundResponse(Envelope, kw_only=True, omit_defaults=True):
    """/v1/sound/classify: ``label`` is an UrbanSound8K class, or "unknown" when none reaches
    min_confidence (``confidence`` is then the best class's score)."""

    inferenceMs: int = 0
    processMs: int = 0
    label: str | None = None
    confidence: float | None = None
    audioSetLabel: str | None = None          # YAMNet's best AudioSet label for the clip
    audioSetConfidence: float | None = None
    audioSet: list[AudioSetScore] | None = None  # the five best AudioSet labels
    durationSeconds: float | None = None
