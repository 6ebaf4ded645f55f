"""The cartooniser (CodeProject.AI's Cartooniser, /v1/image/cartoonise): an image in, the image in a
painterly style out. No anime GAN ships offline, so this is a neural STYLE TRANSFER (26 painterly
styles, multistyle26), not the anime GAN CodeProject.AI runs; every answer's message says so."""

from edgewatch.daemon.modules.cartoon.module import MODULE_ID, CartoonModule

__all__ = ["MODULE_ID", "CartoonModule"]
