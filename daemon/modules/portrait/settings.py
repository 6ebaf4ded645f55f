"""The portrait module's settings, changeable at run time through /v1/settings/PortraitFilterEdgewatch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PortraitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("selfie-segmentation", description=(
        "installed segmentation model whose mask is kept sharp (edgewatch models install selfie-segmentation; "
        "u2netp keeps the main subject, whatever it is)"))
    default_strength: float = Field(0.5, ge=0.0, le=1.0, description="strength when a request sends none")
    max_blur: float = Field(0.03, gt=0.0, le=0.2, description=(
        "the background blur at strength 1: the Gaussian's sigma as a share of the image's longer side"))
