"""The shipped world CLIP meets the quality bar on images it never saw, and loads the way
`msae embed` loads it (open_clip, pretrained=<path>, open_clip's own transform)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from msae.config.world import ClipEvalConfig
from msae.world.clip import builtin_weights_path
from msae.world.quality import QUALITY_BAR, evaluate_world_clip, load_world_clip, recall_at_k, zero_shot_accuracy
from msae.world.render import render_arrays
from msae.world.scene import WorldParams
from msae.world.train_clip import image_normalizer, to_model_input

HELD_OUT_SEED = 424242  # never used for training (the shipped weights used seed 0)

pytestmark = pytest.mark.skipif(not builtin_weights_path().is_file(), reason="world CLIP weights not trained yet")


@pytest.fixture(scope="module")
def quality() -> dict:
    torch.set_num_threads(1)
    return evaluate_world_clip(ClipEvalConfig(weights="builtin", n=600, seed=HELD_OUT_SEED, device="cpu"))


@pytest.mark.parametrize("metric", sorted(QUALITY_BAR))
def test_shipped_weights_meet_the_bar(quality, metric):
    assert quality[metric] >= QUALITY_BAR[metric], f"{metric} = {quality[metric]:.3f} < {QUALITY_BAR[metric]}"


def test_weights_are_small_fp16():
    from safetensors import safe_open

    assert builtin_weights_path().stat().st_size <= 20 * 2**20
    with safe_open(str(builtin_weights_path()), framework="pt") as handle:
        assert all(handle.get_slice(k).get_dtype() == "F16" for k in handle.keys())


def test_training_input_equals_open_clip_transform():
    """What train-clip feeds the model is exactly what open_clip's preprocessing produces."""
    model, preprocess, _, _ = load_world_clip("builtin", device="cpu")
    images = render_arrays(5, "test", 8, WorldParams(), workers=1, progress=False)
    ours = to_model_input(images, *image_normalizer(model), torch.device("cpu"))
    theirs = torch.stack([preprocess(Image.fromarray(a)) for a in images])
    torch.testing.assert_close(ours.contiguous(), theirs, atol=1e-6, rtol=0)


def test_metric_helpers_against_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 30))
    truth = rng.integers(0, 30, size=50)
    for k in (1, 5, 30):
        brute = np.mean([truth[i] in sorted(range(30), key=lambda j: -scores[i, j])[:k] for i in range(50)])
        assert recall_at_k(scores, truth, k) == pytest.approx(brute)
    emb = rng.normal(size=(40, 8))
    prompts = rng.normal(size=(5, 8))
    labels = rng.integers(0, 5, size=40)
    expected = np.mean([int(np.argmax([emb[i] @ p for p in prompts])) == labels[i] for i in range(40)])
    assert zero_shot_accuracy(emb, prompts, labels) == pytest.approx(expected)
    # known ground truth: prompts equal to the images' own class vectors classify perfectly
    assert zero_shot_accuracy(np.eye(5)[labels], np.eye(5), labels) == 1.0
    assert recall_at_k(np.eye(50), np.arange(50), 1) == 1.0
