"""Attribute ground truth of the offline world: the values every image is drawn from.

The words here are the words in the captions, so a concept found by an SAE can be named and checked
against the manifest. Shapes were chosen as clearly different silhouettes at 64x64 (no hexagon next
to the circle, no thin-armed star next to the triangle); colours are saturated hues and every
background is built from neutral greys, so an object's colour never blends into its background.
"""

from __future__ import annotations

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "star", "cross", "heart", "crescent", "arrow"),
    "color": ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"),
    "size": ("small", "medium", "large"),
    "background": ("black", "gray", "striped", "dotted", "checkered", "grid"),
    "position": (
        "top left",
        "top",
        "top right",
        "left",
        "center",
        "right",
        "bottom left",
        "bottom",
        "bottom right",
    ),
}

# One prompt per attribute for zero-shot classification; `{}` is replaced by the attribute value.
ZERO_SHOT_TEMPLATES: dict[str, str] = {
    "shape": "a {} shape",
    "color": "a {} shape",
    "size": "a {} shape",
    "background": "a shape on a {} background",
    "position": "a shape in the {}",
}

# RGB of each colour word; every channel pattern differs from the neutral greys of the backgrounds.
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 35),
    "orange": (255, 140, 0),
    "yellow": (250, 230, 20),
    "green": (30, 190, 50),
    "cyan": (0, 215, 230),
    "blue": (30, 70, 240),
    "purple": (150, 40, 210),
    "pink": (255, 105, 190),
}

# Each background's palette (first = base colour, then pattern colours); greys only.
BACKGROUND_PALETTE: dict[str, tuple[tuple[int, int, int], ...]] = {
    "black": ((10, 10, 10),),
    "gray": ((128, 128, 128),),
    "striped": ((50, 50, 50), (175, 175, 175)),
    "dotted": ((90, 90, 90), (215, 215, 215)),
    "checkered": ((30, 30, 30), (150, 150, 150)),
    "grid": ((200, 200, 200), (70, 70, 70)),
}

# Bounding-box extent of an object (fraction of the image side) for each size word; "small" stays
# large enough (about 20 px at 64x64) for its silhouette to be read.
SIZE_FRACTION: dict[str, float] = {"small": 0.32, "medium": 0.48, "large": 0.66}

ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(f"attr_{name}" for name in ATTRIBUTES)


def zero_shot_prompts(attribute: str) -> list[str]:
    """The prompts of one attribute, in the order of its values."""
    template = ZERO_SHOT_TEMPLATES[attribute]
    return [template.format(value) for value in ATTRIBUTES[attribute]]
