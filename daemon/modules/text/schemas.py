"""The text module's answers: the CodeProject.AI envelope with the text API's own fields."""

from __future__ import annotations

from edgewatch.daemon.modules.envelope import Envelope


class TextResponse(Envelope, kw_only=True, omit_defaults=True):
    """The envelope of /v1/text answers; each command fills its own fields."""

    inferenceMs: int = 0
    processMs: int = 0
    is_positive: bool | None = None            # sentiment
    positive_probability: float | None = None  # sentiment
    summary: str | None = None                 # summarize
