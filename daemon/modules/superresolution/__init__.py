"""Super-resolution (CodeProject.AI's Super Resolution): an image in, the same image 4x larger out,
upscaled by Real-ESRGAN on the ncnn backend, tile by tile."""

from edgewatch.daemon.modules.superresolution.module import MODULE_ID, SuperResolutionModule

__all__ = ["MODULE_ID", "SuperResolutionModule"]
