"""Scenes of the offline world: sampling attributes, drawing them, and describing them in words.

Each image is a pure function of (seed, split, index): its random generator is derived from those
three numbers, so the same seed gives the same bytes whatever the number of workers or the order
in which images are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from msae.config.world import WorldParams
from msae.world.attributes import ATTRIBUTES, COLOR_RGB, SIZE_FRACTION
from msae.world.shapes import background_tile, place, texture_period

SPLITS: tuple[str, ...] = ("train", "val", "test", "bias_train", "bias_control")
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLITS)}
# Streams outside the manifest splits (e.g. CLIP training batches) use codes from here on.
EXTRA_STREAM_BASE = 100

SIZE_JITTER = 0.06

CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {size} {color} {shape} on a {background} background, in the {position}",
    "a {color} {shape}, {size}, in the {position} of a {background} background",
    "{background} background with a {size} {color} {shape} in the {position}",
    "a picture of a {size} {shape} in {color} on a {background} background, {position}",
)


@dataclass(frozen=True)
class WorldObject:
    """One drawn object: its attribute words and where it landed (pixels)."""

    shape: str
    color: str
    size: str
    position: str
    cx: float
    cy: float
    extent: float


@dataclass(frozen=True)
class Scene:
    """An image's content: a background (with its texture phase) and one or two objects.

    `objects[0]` is the primary object, whose attributes are the manifest's `attr_*` columns; a
    second object is drawn behind it.
    """

    background: str
    phase: tuple[int, int]
    objects: tuple[WorldObject, ...]
    template: int


def image_rng(seed: int, split_code: int, index: int) -> np.random.Generator:
    """The generator of one image, independent of every other image's."""
    return np.random.default_rng([seed, split_code, index])


def _pick(rng: np.random.Generator, values: tuple[str, ...]) -> str:
    return values[int(rng.integers(len(values)))]


def _biased_color(rng: np.random.Generator, shape: str, params: WorldParams) -> str:
    colors = ATTRIBUTES["color"]
    others = tuple(c for c in colors if c != params.bias_color)
    p_bias = params.bias_rate if shape == params.bias_shape else params.other_shape_bias_rate()
    return params.bias_color if rng.random() < p_bias else _pick(rng, others)


def _sample_object(rng: np.random.Generator, params: WorldParams, biased: bool, taken_cell: int | None) -> WorldObject:
    shape = _pick(rng, ATTRIBUTES["shape"])
    color = _biased_color(rng, shape, params) if biased else _pick(rng, ATTRIBUTES["color"])
    size = _pick(rng, ATTRIBUTES["size"])
    cells = [c for c in range(9) if c != taken_cell]
    cell = cells[int(rng.integers(len(cells)))]
    side = params.image_size
    extent = SIZE_FRACTION[size] * side * (1.0 + rng.uniform(-SIZE_JITTER, SIZE_JITTER))
    # Centres stay in a band that keeps at least 80% of the object's half-extent inside the image;
    # the band is cut in thirds and the centre falls in the middle 60% of its third, so the grid
    # cell is never ambiguous.
    low = 0.4 * extent
    third = (side - 2 * low) / 3
    col, row = cell % 3, cell // 3
    cx = low + (col + 0.2 + 0.6 * rng.random()) * third
    cy = low + (row + 0.2 + 0.6 * rng.random()) * third
    return WorldObject(shape, color, size, ATTRIBUTES["position"][cell], cx, cy, extent)


def sample_scene(rng: np.random.Generator, params: WorldParams, biased: bool = False) -> Scene:
    """Draw the attributes of one image (cheap: no pixels yet)."""
    background = _pick(rng, ATTRIBUTES["background"])
    period = texture_period(params.image_size)
    phase = (int(rng.integers(period)), int(rng.integers(period)))
    primary = _sample_object(rng, params, biased, None)
    objects: tuple[WorldObject, ...] = (primary,)
    if params.second_object_rate > 0 and rng.random() < params.second_object_rate:
        taken = ATTRIBUTES["position"].index(primary.position)
        objects = (primary, _sample_object(rng, params, False, taken))
    return Scene(background, phase, objects, int(rng.integers(len(CAPTION_TEMPLATES))))


def draw_scene(scene: Scene, image_size: int) -> Image.Image:
    """Render a scene to an RGB image (no anti-aliasing, so every pixel has a palette colour)."""
    tile = background_tile(scene.background, image_size)
    ox, oy = scene.phase
    image = Image.fromarray(tile[oy : oy + image_size, ox : ox + image_size])
    draw = ImageDraw.Draw(image)
    for obj in reversed(scene.objects):  # the primary object last, on top
        draw.polygon(place(obj.shape, obj.cx, obj.cy, obj.extent), fill=COLOR_RGB[obj.color])
    return image


def _phrase(obj: WorldObject) -> str:
    return f"a {obj.size} {obj.color} {obj.shape} in the {obj.position}"


def describe(scene: Scene, template: int | None = None) -> str:
    """The full caption: every attribute word of the primary object (and the second one, if any)."""
    obj = scene.objects[0]
    text = CAPTION_TEMPLATES[scene.template if template is None else template].format(
        size=obj.size, color=obj.color, shape=obj.shape, background=scene.background, position=obj.position
    )
    if len(scene.objects) > 1:
        text += ", and " + _phrase(scene.objects[1])
    return text


def describe_partial(scene: Scene, rng: np.random.Generator, generic_noun_rate: float = 0.0) -> str:
    """A short caption naming a random subset of the primary object's attributes.

    Used only while training the CLIP: short captions make the text tower map single attribute
    words (as in zero-shot prompts) onto the image features that carry them. With probability
    `generic_noun_rate` the shape is replaced by the word "shape" ("a small shape in the top"), so
    that the zero-shot prompts' generic noun means "any shape" (without it, size words stayed tied
    to particular shapes: a medium square and a large star cover similar areas).
    """
    obj = scene.objects[0]
    keep = rng.random(4) < 0.5
    # no extra draw when the rate is 0, so runs made before this option existed replay exactly
    generic = generic_noun_rate > 0 and rng.random() < generic_noun_rate
    if generic and not keep.any():
        keep[int(rng.integers(4))] = True
    words = ["a"]
    if keep[0]:
        words.append(obj.size)
    if keep[1]:
        words.append(obj.color)
    words.append("shape" if generic else obj.shape)
    if keep[2]:
        words.append(f"on a {scene.background} background")
    if keep[3]:
        words.append(f"in the {obj.position}")
    return " ".join(words)


def scene_record(scene: Scene) -> dict[str, object]:
    """The manifest columns of one scene (apart from id, split and path)."""
    obj = scene.objects[0]
    record: dict[str, object] = {
        "caption": describe(scene),
        "label": obj.shape,
        "attr_shape": obj.shape,
        "attr_color": obj.color,
        "attr_size": obj.size,
        "attr_background": scene.background,
        "attr_position": obj.position,
        "n_objects": len(scene.objects),
        "obj_x": float(obj.cx),
        "obj_y": float(obj.cy),
        "obj_extent": float(obj.extent),
    }
    second = scene.objects[1] if len(scene.objects) > 1 else None
    for name in ("shape", "color", "size", "position"):
        record[f"second_{name}"] = getattr(second, name) if second else ""
    return record
