"""The super-resolution module's settings: what /v1/settings/SuperResolutionEdgewatch may change at run time."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgewatch.daemon.modules.superresolution.tiling import MIN_TILE


class SuperResolutionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("realesr-animevideov3", description=(
        "installed super_resolution model: realesr-animevideov3 (fast, x4) or realesrgan-x4plus (general photos, "
        "x4, far slower: README has the figures); edgewatch models install NAME"))
    tile_size: int = Field(0, ge=0, le=1024, description=(
        f"input pixels per side of a tile (at least {MIN_TILE}); 0 = auto: tiles of about a second's work "
        "each, from the speed measured at install. Each tile is one job on the inference queue, so other "
        "requests run between tiles"))
    max_output_pixels: int = Field(2560 * 1440, ge=64 * 64, le=64_000_000, description=(
        "largest upscaled image (width x height) a request may ask for; larger ones are refused with 413. "
        "The upscaled image takes 16 bytes a pixel while it is built"))
    max_seconds: float = Field(60.0, gt=0, le=3600, description=(
        "longest inference a request may need, estimated before it starts from the speed measured at "
        "install; longer ones are refused with 413"))

    @field_validator("tile_size")
    @classmethod
    def _tile_not_tiny(cls, value: int) -> int:
        if 0 < value < MIN_TILE:
            raise ValueError(f"tile_size must be 0 (auto) or at least {MIN_TILE} pixels, got {value}")
        return value
