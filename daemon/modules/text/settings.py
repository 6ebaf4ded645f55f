"""The text module's settings: what /v1/settings/TextProcessingEdgewatch may change at run time."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TextSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("minilm-l6", description=(
        "installed text_embedding model (edgewatch models install minilm-l6); the sentiment layer is fitted "
        "on minilm-l6's embeddings"))
    summary_sentences: int = Field(3, ge=1, le=1000, description="num_sentences when a summary request sends none")
    max_summary_sentences: int = Field(50, ge=1, le=1000, description="the most num_sentences a request may ask for")
    max_text_chars: int = Field(20_000, ge=100, le=1_000_000, description=(
        "longest text accepted, in characters (about 1 s of CPU per 4,000 characters on a 2-core x86 box, "
        "more on a Pi); longer texts are refused with 413"))

    @model_validator(mode="after")
    def _default_within_most(self) -> TextSettings:
        if self.summary_sentences > self.max_summary_sentences:
            raise ValueError(f"summary_sentences ({self.summary_sentences}) must not exceed max_summary_sentences "
                             f"({self.max_summary_sentences})")
        return self
