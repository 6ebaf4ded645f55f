"""The portrait filter (CodeProject.AI's Portrait Filter): an image in, the same image with the
background behind its people blurred (MediaPipe's selfie person mask), as strong as ``strength`` asks."""

from edgewatch.daemon.modules.portrait.module import MODULE_ID, PortraitModule

__all__ = ["MODULE_ID", "PortraitModule"]
