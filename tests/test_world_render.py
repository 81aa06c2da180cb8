"""The rendered world: deterministic bytes, a manifest that tells the truth about the pixels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from msae.cli import main
from msae.config.base import ConfigSpec
from msae.config.world import RenderConfig, WorldParams
from msae.errors import MsaeError
from msae.world.attributes import (
    ATTRIBUTE_COLUMNS,
    ATTRIBUTES,
    BACKGROUND_PALETTE,
    COLOR_RGB,
    SIZE_FRACTION,
    ZERO_SHOT_TEMPLATES,
    zero_shot_prompts,
)
from msae.world.render import MANIFEST, WORLD_JSON, render_arrays, render_world, scene_at
from msae.world.scene import CAPTION_TEMPLATES, SPLITS, describe, describe_partial, image_rng
from msae.world.shapes import SHAPE_POLYGONS, interior_anchor, place

COUNTS = {"n_train": 40, "n_val": 10, "n_test": 10, "n_bias": 20}


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "images").rglob("*.png"))
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    render_world(RenderConfig(out=root, seed=3, workers=1, **COUNTS), progress=False)
    return root


def test_attribute_tables_match_the_contract():
    assert list(ATTRIBUTES) == ["shape", "color", "size", "background", "position"]
    assert len(ATTRIBUTES["shape"]) >= 8 and len(ATTRIBUTES["color"]) >= 8
    assert len(ATTRIBUTES["size"]) == 3 and len(ATTRIBUTES["background"]) >= 6
    assert len(ATTRIBUTES["position"]) == 9
    assert {"striped", "dotted", "checkered"} <= set(ATTRIBUTES["background"])
    assert set(ZERO_SHOT_TEMPLATES) == set(ATTRIBUTES)
    assert all(t.count("{}") == 1 for t in ZERO_SHOT_TEMPLATES.values())
    assert zero_shot_prompts("color")[0] == ZERO_SHOT_TEMPLATES["color"].format(ATTRIBUTES["color"][0])
    assert set(COLOR_RGB) == set(ATTRIBUTES["color"]) and set(BACKGROUND_PALETTE) == set(ATTRIBUTES["background"])
    assert set(SHAPE_POLYGONS) == set(ATTRIBUTES["shape"]) and set(SIZE_FRACTION) == set(ATTRIBUTES["size"])


def test_colors_are_far_from_every_background_colour():
    greys = np.array([c for palette in BACKGROUND_PALETTE.values() for c in palette], dtype=float)
    for name, rgb in COLOR_RGB.items():
        distance = np.sqrt(((greys - np.array(rgb, dtype=float)) ** 2).sum(axis=1)).min()
        assert distance > 80, f"{name} is too close to a background grey ({distance:.0f})"


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path, world):
    other = tmp_path / "w2"
    render_world(RenderConfig(out=other, seed=3, workers=2, **COUNTS), progress=False)
    assert _digests(other) == _digests(world)
    assert pd.read_parquet(other / MANIFEST).equals(pd.read_parquet(world / MANIFEST))


def test_different_seed_different_images(tmp_path, world):
    other = tmp_path / "w3"
    render_world(RenderConfig(out=other, seed=4, workers=1, **COUNTS), progress=False)
    a, b = _digests(world), _digests(other)
    assert a.keys() == b.keys()
    assert sum(a[k] != b[k] for k in a) > 0.9 * len(a)


def test_in_memory_arrays_equal_the_png_pixels(world):
    arrays = render_arrays(3, "val", COUNTS["n_val"], WorldParams(), workers=1, progress=False)
    frame = pd.read_parquet(world / MANIFEST)
    for row, rel in enumerate(frame[frame["split"] == "val"]["path"]):
        assert np.array_equal(np.asarray(Image.open(world / rel).convert("RGB")), arrays[row])


def test_manifest_columns_ids_and_splits(world):
    frame = pd.read_parquet(world / MANIFEST)
    for column in ("id", "split", "path", "caption", "label", *ATTRIBUTE_COLUMNS):
        assert column in frame.columns
    assert frame["id"].is_unique
    assert frame["split"].value_counts().to_dict() == {
        "train": 40,
        "val": 10,
        "test": 10,
        "bias_train": 20,
        "bias_control": 20,
    }
    assert (frame["label"] == frame["attr_shape"]).all()
    for name, values in ATTRIBUTES.items():
        assert set(frame[f"attr_{name}"]) <= set(values)
    assert all((world / p).is_file() for p in frame["path"])
    info = json.loads((world / WORLD_JSON).read_text())
    assert info["seed"] == 3 and info["image_size"] == 64 and info["bias_shape"] == "star"
    assert info["counts"]["bias_train"] == 20


def _far_corner(x: float, y: float, side: int) -> tuple[int, int]:
    return (2 if x > side / 2 else side - 3, 2 if y > side / 2 else side - 3)


def test_pixels_match_the_manifest_attributes(world):
    frame = pd.read_parquet(world / MANIFEST)
    for row in frame.itertuples():
        pixels = np.asarray(Image.open(world / row.path).convert("RGB"))
        side = pixels.shape[0]
        ax, ay = interior_anchor(row.attr_shape)
        px, py = row.obj_x + ax * row.obj_extent, row.obj_y + ay * row.obj_extent
        assert tuple(pixels[int(py), int(px)]) == COLOR_RGB[row.attr_color], row.id
        # A 3x3 patch in the corner farthest from the object shows only the background palette.
        cx, cy = _far_corner(row.obj_x, row.obj_y, side)
        patch = {tuple(p) for p in pixels[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3)}
        assert patch <= set(BACKGROUND_PALETTE[row.attr_background]), row.id
        # The grid cell of the object's centre is the position word (rows then columns).
        cell = ATTRIBUTES["position"].index(row.attr_position)
        low = 0.4 * row.obj_extent
        third = (side - 2 * low) / 3
        assert int((row.obj_x - low) // third) == cell % 3 and int((row.obj_y - low) // third) == cell // 3
        # Size word <-> extent within the jitter band.
        assert abs(row.obj_extent / side / SIZE_FRACTION[row.attr_size] - 1) <= 0.06 + 1e-9


def test_object_colour_covers_the_expected_area(world):
    """Independent check of the drawing: the object's colour count is close to the polygon area."""
    frame = pd.read_parquet(world / MANIFEST)
    for row in frame.head(30).itertuples():
        pixels = np.asarray(Image.open(world / row.path).convert("RGB"))
        drawn = (pixels == np.array(COLOR_RGB[row.attr_color])).all(axis=2).sum()
        poly = np.array(SHAPE_POLYGONS[row.attr_shape]) * row.obj_extent + [row.obj_x, row.obj_y]
        x, y = poly[:, 0].clip(0, 64), poly[:, 1].clip(0, 64)
        area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))  # shoelace, clipped
        assert abs(drawn - area) <= 0.15 * area + 2 * np.sqrt(area) + 10, row.id


def test_bias_split_rates(tmp_path):
    params = WorldParams(bias_shape="heart", bias_color="cyan", bias_rate=0.8)
    n = 4000
    scenes = [scene_at(11, "bias_train", i, params) for i in range(n)]
    target = np.array([s.objects[0].shape == "heart" for s in scenes])
    has = np.array([s.objects[0].color == "cyan" for s in scenes])
    # binomial standard errors: generous 4-sigma bands
    p_other = params.other_shape_bias_rate()
    assert abs(has[target].mean() - 0.8) < 4 * np.sqrt(0.8 * 0.2 / target.sum())
    assert abs(has[~target].mean() - p_other) < 4 * np.sqrt(p_other * (1 - p_other) / (~target).sum())
    control = np.array([scene_at(11, "bias_control", i, params).objects[0].color == "cyan" for i in range(n)])
    assert abs(control.mean() - 1 / 8) < 4 * np.sqrt(1 / 8 * 7 / 8 / n)


def test_world_json_records_realised_bias_rates(tmp_path):
    root = tmp_path / "b"
    render_world(
        RenderConfig(out=root, n_train=0, n_val=0, n_test=0, n_bias=60, seed=1, workers=1, bias_rate=1.0),
        progress=False,
    )
    info = json.loads((root / WORLD_JSON).read_text())
    frame = pd.read_parquet(root / MANIFEST)
    part = frame[(frame["split"] == "bias_train") & (frame["attr_shape"] == "star")]
    assert info["bias_train_rate_target"] == 1.0 == (part["attr_color"] == "red").mean()
    assert info["bias_other_shape_rate"] == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), index=st.integers(0, 10**6), split=st.sampled_from(SPLITS))
def test_caption_names_every_attribute(seed, index, split):
    scene = scene_at(seed, split, index, WorldParams(second_object_rate=0.5))
    obj = scene.objects[0]
    for template in range(len(CAPTION_TEMPLATES)):
        caption = describe(scene, template)
        for word in (obj.shape, obj.color, obj.size, scene.background, obj.position):
            assert word in caption
    if len(scene.objects) > 1:
        assert scene.objects[1].shape in describe(scene)
        assert scene.objects[1].position != obj.position
    partial = describe_partial(scene, image_rng(seed, 99, index))
    assert obj.shape in partial
    generic = describe_partial(scene, image_rng(seed, 99, index), generic_noun_rate=1.0)
    assert " shape" in generic and obj.shape not in generic.split() and len(generic.split()) >= 3


def test_second_objects_appear_at_the_requested_rate(tmp_path):
    params = WorldParams(second_object_rate=0.3)
    n = 2000
    count = sum(len(scene_at(5, "train", i, params).objects) == 2 for i in range(n))
    assert abs(count / n - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)


def test_interior_anchor_is_inside_every_shape():
    for shape in ATTRIBUTES["shape"]:
        mask = Image.new("L", (200, 200), 0)
        ImageDraw.Draw(mask).polygon(place(shape, 100, 100, 180), fill=1)
        ax, ay = interior_anchor(shape)
        assert np.asarray(mask)[int(100 + ay * 180), int(100 + ax * 180)] == 1, shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bias_color": "mauve"}, "--bias-color: 'mauve'"),
        ({"bias_shape": "blob"}, "--bias-shape: 'blob'"),
        ({"bias_rate": 1.5}, "--bias-rate"),
        ({"second_object_rate": -0.1}, "--second-object-rate"),
        ({"n_val": -1}, "--n-val: -1"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, message):
    args = {"n_train": 1, "n_val": 1, "n_test": 1, "n_bias": 1, "seed": 0, **kwargs}
    with pytest.raises(MsaeError, match=message.replace("(", r"\(")):
        render_world(ConfigSpec.of(RenderConfig).build({"out": tmp_path, "workers": 1, **args}), progress=False)
    assert not (tmp_path / MANIFEST).exists()


def test_cli_renders_and_reports_bad_colour(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "world",
            "render",
            "--out",
            str(out),
            "--n-train",
            "3",
            "--n-val",
            "1",
            "--n-test",
            "1",
            "--n-bias",
            "2",
            "--seed",
            "9",
            "--workers",
            "1",
        ]
    )
    assert code == 0 and len(pd.read_parquet(out / MANIFEST)) == 9
    assert main(["world", "render", "--out", str(out), "--bias-color", "mauve", "--workers", "1"]) == 2
    assert "--bias-color: 'mauve'" in capsys.readouterr().err
    # a refused run touches nothing: the previous, complete world is still there
    assert len(pd.read_parquet(out / MANIFEST)) == 9
