"""The scene module's settings, changeable at run time through /v1/settings/SceneClassifierEdgewatch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SceneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("mobilenet-v2", description=(
        "installed ImageNet classifier whose classes are mapped onto scenes (edgewatch models install mobilenet-v2)"))
    min_confidence: float = Field(0.25, ge=0.0, le=1.0, description=(
        "a scene is answered when its ImageNet classes' probabilities sum to at least this; otherwise the label is "
        "'unknown'"))
