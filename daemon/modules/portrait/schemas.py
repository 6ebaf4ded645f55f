"""The portrait module's answer: the CodeProject.AI envelope with the Portrait Filter's field."""

from __future__ import annotations

from edgewatch.daemon.modules.envelope import Envelope


class PortraitResponse(Envelope, kw_only=True, omit_defaults=True):
    """/v1/image/portraitfilter: ``filtered_image`` is a JPEG of the image's size, base64, its
    background blurred."""

    inferenceMs: int = 0
    processMs: int = 0
    filtered_image: str | None = None
