"""The cartooniser's settings, changeable at run time through /v1/settings/CartooniserEdgewatch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgewatch.daemon.modules.cartoon.styles import ALIASES


class CartoonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("multistyle26", description=(
        "installed style_transfer model (edgewatch models install multistyle26): a painterly style transfer, "
        "not an anime GAN. A request's own `model` field picks a style of it, not this"))
    default_style: str = Field("celeba_distill", description=(
        "the style when a request sends no `model`: style0 ... style25, or one of CodeProject.AI's names "
        f"({', '.join(ALIASES)}), each mapped to a painterly style (celeba_distill: style23)"))
    max_side: int = Field(1024, ge=64, le=2048, description=(
        "the longest side (pixels) an image is stylised and returned at; larger uploads are shrunk to it. "
        "The styles' strokes are a fixed number of pixels, so a smaller size keeps less of the photo's "
        "structure; time grows with the pixel count (README: Cartooniser). At most 2048: the whole image "
        "is one job on the inference queue, which must stay well inside the systemd watchdog's 30 s"))

    @field_validator("default_style")
    @classmethod
    def _lower(cls, value: str) -> str:
        value = value.strip().casefold()
        if not value:
            raise ValueError("default_style must name a style")
        return value
