"""Text (CodeProject.AI's sentiment analysis and text summary): MiniLM sentence embeddings from the
model store, VADER's lexicon, extractive summaries."""

from edgewatch.daemon.modules.text.module import MODULE_ID, TextModule

__all__ = ["MODULE_ID", "TextModule"]
