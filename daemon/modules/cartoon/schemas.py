"""The cartooniser's answer: the CodeProject.AI envelope with the Cartooniser's ``imageBase64``."""

from __future__ import annotations

from edgewatch.daemon.modules.envelope import Envelope


class CartoonResponse(Envelope, kw_only=True, omit_defaults=True):
    """/v1/image/cartoonise: ``imageBase64`` is the stylised image as base64 PNG, at the work size
    (the upload's size, or shrunk so its longer side is max_side)."""

    inferenceMs: int = 0
    processMs: int = 0
    imageBase64: str | None = None
    style: str | None = None     # the style that was used (style0 ... style25)
    width: int | None = None     # of the returned image
    height: int | None = None
