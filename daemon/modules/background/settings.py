"""The background module's settings, changeable at run time through /v1/settings/BackgroundRemoverEdgewatch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BackgroundSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("u2netp", description=(
        "installed segmentation model whose mask keeps the subject (edgewatch models install u2netp; "
        "selfie-segmentation keeps people only)"))
    matting_max_side: int = Field(800, ge=64, le=4096, description=(
        "use_alphamatting: the longest side the matting is solved at (its time grows with the pixels; "
        "larger images get the alpha scaled up along the boundary)"))
    matting_band: int = Field(10, ge=1, le=64, description=(
        "use_alphamatting: how far (pixels at the matting size) the uncertain band reaches into the mask on "
        "each side of its boundary; the alpha is solved inside it"))
