"""Background removal (CodeProject.AI's Background Remover): an image in, the same image as a PNG
whose alpha keeps the main subject (U²-Net-p's salient-object mask), optionally alpha-matted."""

from edgewatch.daemon.modules.background.module import MODULE_ID, BackgroundModule

__all__ = ["MODULE_ID", "BackgroundModule"]
