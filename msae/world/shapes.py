"""Silhouettes of the world's shapes as unit polygons, and the backgrounds they are drawn on.

Every polygon is normalised so its bounding box is centred on the origin with its longer side equal
to 1: an object's "extent" in pixels is then the side of its bounding box, whatever the shape, so
the size words mean the same for a square and for a crescent. Coordinates are image-style (y down).
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import numpy as np

from msae.world.attributes import ATTRIBUTES, BACKGROUND_PALETTE

Polygon = tuple[tuple[float, float], ...]


def _circle(n: int = 48) -> list[tuple[float, float]]:
    return [(math.cos(2 * math.pi * i / n), math.sin(2 * math.pi * i / n)) for i in range(n)]


def _regular_star(points: int, inner: float) -> list[tuple[float, float]]:
    out = []
    for i in range(2 * points):
        radius = 1.0 if i % 2 == 0 else inner
        angle = -math.pi / 2 + math.pi * i / points
        out.append((radius * math.cos(angle), radius * math.sin(angle)))
    return out


def _heart(n: int = 48) -> list[tuple[float, float]]:
    # The classic parametric heart; y is negated because image rows grow downwards.
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x, -y))
    return pts


def _crescent(n: int = 32) -> list[tuple[float, float]]:
    # Unit disc minus a disc of radius 0.8 centred at (0.5, 0): a thick crescent opening to the right.
    offset, inner = 0.5, 0.8
    x_cut = (1 + offset**2 - inner**2) / (2 * offset)
    y_cut = math.sqrt(1 - x_cut**2)
    outer_from = math.atan2(y_cut, x_cut)
    inner_from = math.atan2(y_cut, x_cut - offset)
    outer = [(math.cos(a), math.sin(a)) for a in np.linspace(outer_from, 2 * math.pi - outer_from, n)]
    back = [
        (offset + inner * math.cos(a), inner * math.sin(a))
        for a in np.linspace(2 * math.pi - inner_from, inner_from, n)
    ]
    return outer + back


def _raw_polygons() -> dict[str, list[tuple[float, float]]]:
    arm = 0.32
    return {
        "circle": _circle(),
        "square": [(-1, -1), (1, -1), (1, 1), (-1, 1)],
        "triangle": [(0, -1), (1, 0.75), (-1, 0.75)],
        "star": _regular_star(5, 0.45),
        "cross": [
            (-arm, -1),
            (arm, -1),
            (arm, -arm),
            (1, -arm),
            (1, arm),
            (arm, arm),
            (arm, 1),
            (-arm, 1),
            (-arm, arm),
            (-1, arm),
            (-1, -arm),
            (-arm, -arm),
        ],
        "heart": _heart(),
        "crescent": _crescent(),
        "arrow": [(-1, -0.25), (0.1, -0.25), (0.1, -0.7), (1, 0), (0.1, 0.7), (0.1, 0.25), (-1, 0.25)],
    }


def _normalise(points: list[tuple[float, float]]) -> Polygon:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    side = max(max(xs) - min(xs), max(ys) - min(ys))
    return tuple(((x - cx) / side, (y - cy) / side) for x, y in points)


SHAPE_POLYGONS: dict[str, Polygon] = {name: _normalise(pts) for name, pts in _raw_polygons().items()}
assert tuple(SHAPE_POLYGONS) == ATTRIBUTES["shape"], "every shape word needs a polygon"


def place(shape: str, cx: float, cy: float, extent: float) -> list[tuple[float, float]]:
    """The polygon of `shape` with its bounding box of side `extent` pixels centred at (cx, cy)."""
    return [(cx + x * extent, cy + y * extent) for x, y in SHAPE_POLYGONS[shape]]


@cache
def interior_anchor(shape: str) -> tuple[float, float]:
    """The point of the shape farthest from its outline (unit coordinates).

    The pixel there always has the object's colour, which is what the tests check; for a crescent
    the bounding-box centre is outside the shape, so the centre cannot be used.
    """
    from PIL import Image, ImageDraw
    from scipy.ndimage import distance_transform_edt

    res = 257
    mask = Image.new("L", (res, res), 0)
    ImageDraw.Draw(mask).polygon(place(shape, res / 2, res / 2, res - 1), fill=1)
    dist = distance_transform_edt(np.asarray(mask))
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return ((col - res / 2) / (res - 1), (row - res / 2) / (res - 1))


def texture_period(image_size: int) -> int:
    """Pattern repeat in pixels: eight repeats across the image."""
    return max(4, image_size // 8)


@lru_cache(maxsize=64)
def background_tile(background: str, image_size: int) -> np.ndarray:
    """A background larger than the image by one period, so a random crop shifts its phase."""
    period = texture_period(image_size)
    side = image_size + period
    palette = np.array(BACKGROUND_PALETTE[background], dtype=np.uint8)
    y, x = np.mgrid[0:side, 0:side]
    if background in ("black", "gray"):
        index = np.zeros((side, side), dtype=np.int64)
    elif background == "striped":
        index = (((x + y) % period) < period // 2).astype(np.int64)
    elif background == "checkered":
        half = period // 2
        index = ((x // half + y // half) % 2).astype(np.int64)
    elif background == "dotted":
        dx = (x % period) - period / 2 + 0.5
        dy = (y % period) - period / 2 + 0.5
        index = (dx * dx + dy * dy <= (period / 4) ** 2).astype(np.int64)
    elif background == "grid":
        index = (((x % period) == 0) | ((y % period) == 0)).astype(np.int64)
    else:
        raise KeyError(background)
    return palette[index]
