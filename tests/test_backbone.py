"""The backbone loads open_clip models by name + tag, checkpoint file or `builtin`, and encodes
exactly what open_clip computes; several prompts combine as CLIP's zero-shot classifier does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from embed_fixtures import random_image, reference_model, reference_text_embeddings, save_random_world_clip
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from msae import backbone as bb
from msae.errors import MsaeError
from msae.world import clip as world_clip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_random_world_clip(tmp_path_factory.mktemp("ckpt") / "world.safetensors", seed=1)


def test_image_and_text_encodings_equal_open_clip(checkpoint):
    model = bb.load_backbone("msae-world", str(checkpoint), device="cpu")
    assert model.dim == 128 and not model.model.training
    rng = np.random.default_rng(0)
    ref_model, ref_pre = reference_model(checkpoint)
    pixels = torch.stack([ref_pre(random_image(rng)) for _ in range(5)])
    with torch.no_grad():
        expected = ref_model.encode_image(pixels).numpy()
    got = model.encode_images(pixels).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # raw, not normalised: a random model's norms are far from 1
    assert not np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)
    texts = ["a large red star", "a small blue circle on a striped background"]
    np.testing.assert_allclose(
        model.encode_texts(texts).numpy(), reference_text_embeddings(checkpoint, texts), rtol=1e-4, atol=1e-5
    )


def test_pt_checkpoint_loads_the_same_weights(checkpoint, tmp_path):
    pt = save_random_world_clip(tmp_path / "world.pt", seed=1)
    a = bb.load_backbone("msae-world", str(checkpoint), device="cpu")
    b = bb.load_backbone("msae-world", str(pt), device="cpu")
    pixels = torch.randn(2, 3, 64, 64)
    np.testing.assert_array_equal(a.encode_images(pixels).numpy(), b.encode_images(pixels).numpy())


def test_bad_names_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(MsaeError, match=r"--model ViT-B-3: unknown .*ViT-B-32.*list_pretrained"):
        bb.load_backbone("ViT-B-3", "openai")
    with pytest.raises(MsaeError, match="nothing.safetensors: checkpoint file not found"):
        bb.load_backbone("msae-world", str(tmp_path / "nothing.safetensors"))
    with pytest.raises(MsaeError, match="not a file and not a pretrained tag of RN50.*openai"):
        bb.load_backbone("RN50", "no-such-tag")
    with pytest.raises(MsaeError, match="only for --model msae-world"):
        bb.load_backbone("RN50", "builtin")
    missing = tmp_path / "msae-world.safetensors"
    monkeypatch.setattr(world_clip, "builtin_weights_path", lambda: missing)
    with pytest.raises(MsaeError, match=f"{missing}: the world CLIP weights are missing"):
        bb.load_backbone("msae-world", "builtin")


def test_builtin_maps_to_shipped_weights(checkpoint, monkeypatch):
    monkeypatch.setattr(world_clip, "builtin_weights_path", lambda: checkpoint)
    assert bb.resolve_pretrained("msae-world", "builtin") == str(checkpoint)
    model = bb.load_backbone("msae-world", "builtin", device="cpu")
    assert model.pretrained == "builtin"


def test_device_auto_is_cpu_here_and_unknown_device_refused():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert bb.load_backbone("msae-world", None, device="auto").device.type == "cpu"
    with pytest.raises(MsaeError, match="CUDA is not available"):
        bb.load_backbone("msae-world", None, device="cuda")


def _reference_combine(block: np.ndarray) -> np.ndarray:
    """CLIP zero-shot averaging written out with explicit loops, scaled by the mean norm."""
    unit_sum = np.zeros(block.shape[1])
    norm_sum = 0.0
    for row in block.astype(np.float64):
        norm = np.sqrt((row**2).sum())
        unit_sum += row / norm
        norm_sum += norm
    return unit_sum / np.sqrt((unit_sum**2).sum()) * (norm_sum / len(block))


def test_combine_prompts_known_answer():
    e1, e2 = np.eye(3)[0], np.eye(3)[1]
    out = bb.combine_prompts(np.stack([2 * e1, 4 * e2, 5 * e1]).astype(np.float32), [2, 1])
    np.testing.assert_allclose(out[0], (e1 + e2) / np.sqrt(2) * 3.0, rtol=1e-6)
    np.testing.assert_array_equal(out[1], 5 * e1)  # one prompt: the raw embedding, bit for bit


@settings(max_examples=30, deadline=None)
@given(
    groups=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    seed=st.integers(0, 2**31),
)
def test_combine_prompts_matches_reference(groups, seed):
    rng = np.random.default_rng(seed)
    emb = (rng.normal(size=(sum(groups), 6)) * rng.uniform(0.5, 3, size=(sum(groups), 1))).astype(np.float32)
    out = bb.combine_prompts(emb, groups)
    start = 0
    for row, count in enumerate(groups):
        np.testing.assert_allclose(out[row], _reference_combine(emb[start : start + count]), rtol=1e-4, atol=1e-5)
        start += count


@given(arrays(np.float32, (1, 4), elements=st.floats(-10, 10, width=32, allow_subnormal=False)))
def test_single_prompt_is_unchanged(emb):
    np.testing.assert_array_equal(bb.combine_prompts(emb, [1]), emb)


def test_split_data_path_gives_the_same_pixels_as_open_clip():
    model = bb.load_backbone("msae-world", None, device="cpu")
    rng = np.random.default_rng(5)
    images = [random_image(rng, size) for size in (48, 64, 80)] + [random_image(rng).convert("L")]
    path = model.data_path
    assert path.mean is not None  # open_clip's transform was split
    prepared = [path.prepare(img) for img in images]
    assert all(p.dtype == torch.uint8 and p.shape == (3, 64, 64) for p in prepared)
    expected = torch.stack([model.preprocess(img) for img in images])
    assert torch.equal(path.finish(torch.stack(prepared)), expected)


def test_unsplittable_transform_runs_whole():
    from torchvision import transforms as T

    whole = T.Compose([T.Resize(8), T.ToTensor()])
    path = bb.split_preprocess(whole)
    img = random_image(np.random.default_rng(0))
    assert path.mean is None
    assert torch.equal(path.finish(torch.stack([path.prepare(img)])), whole(img)[None])
