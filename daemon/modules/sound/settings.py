"""The sound module's settings, changeable at run time through /v1/settings/SoundClassifierEdgewatch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SoundSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("yamnet", description=(
        "installed sound classifier (edgewatch models install yamnet --accept-licence "
        "LicenseRef-Qualcomm-AI-Hub-Proprietary)"))
    min_confidence: float = Field(0.4, ge=0.0, le=1.0, description=(
        "score an UrbanSound8K class needs to be the answer's label when a request sends no min_confidence; "
        "below it the label is 'unknown'"))
    max_seconds: float = Field(30.0, ge=1.0, le=600.0, description=(
        "longest recording classified; longer ones are refused with 413 (README: Sound has the time a clip takes)"))
    pooling: Literal["mean", "max"] = Field("mean", description=(
        "how the scores of the 0.96 s patches (every 0.48 s) make the clip's: mean (YAMNet's own, for a "
        "clip of one sound) or max (finds a short sound in a long clip, with more false alarms)"))
