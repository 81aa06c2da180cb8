"""train-clip: schedule, batches, fp16 output loadable by open_clip, exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from msae.cli import main
from msae.config.world import ClipTrainingConfig
from msae.config.world import ClipTrainingOptions as TrainConfig
from msae.errors import MsaeError
from msae.world.train_clip import SceneBatches, checkpoint_dir, lr_at, train_clip

TINY = TrainConfig(steps=4, batch_size=8, warmup=1, n_train=64, seed=1, hard_batch_rate=0.5, hard_groups=2)


def _run(out, options=TINY, **kw):
    """`msae world train-clip` with the TINY (or given) weight parameters on the CPU."""
    return train_clip(ClipTrainingConfig(out=out, device="cpu", **options.weight_parameters(), **kw), progress=False)


def test_lr_schedule_closed_form():
    cfg = TrainConfig(steps=100, warmup=10, lr=2e-3)
    assert lr_at(0, cfg) == pytest.approx(2e-4)
    assert lr_at(9, cfg) == pytest.approx(2e-3)
    for step in (10, 40, 99):
        assert lr_at(step, cfg) == pytest.approx(1e-3 * (1 + math.cos(math.pi * (step - 10) / 90)))
    assert lr_at(55, cfg) == pytest.approx(1e-3)


def test_batches_are_a_function_of_the_step_and_hard_batches_are_narrow():
    cfg = TrainConfig(batch_size=32, n_train=2000, seed=2, hard_batch_rate=1.0, hard_groups=3)
    data = SceneBatches(cfg, progress=False)
    assert np.array_equal(data.indices(7), SceneBatches(cfg, progress=False).indices(7))
    assert not np.array_equal(data.indices(7), data.indices(8))
    for step in range(5):
        scenes = [data.scene(int(i)) for i in data.indices(step)]
        assert len({(s.objects[0].color, s.background) for s in scenes}) <= 3
    easy = SceneBatches(TrainConfig(batch_size=32, n_train=2000, seed=2, hard_batch_rate=0.0), progress=False)
    colours = [{easy.scene(int(i)).objects[0].color for i in easy.indices(s)} for s in range(5)]
    assert all(len(c) >= 5 for c in colours)  # uniform batches: 32 draws cover most of 8 colours
    images, captions = data.batch(0)
    assert images.shape == (32, 64, 64, 3) and images.dtype == np.uint8 and len(captions) == 32


def test_tiny_run_writes_fp16_weights_that_open_clip_loads(tmp_path):
    import open_clip

    from msae.world.clip import WORLD_MODEL, register_world_model

    torch.set_num_threads(1)
    out = _run(tmp_path / "w.safetensors", checkpoint_every=2)
    state = load_file(str(out))
    assert all(t.dtype == torch.float16 for t in state.values())
    assert (checkpoint_dir(out) / "step000002.safetensors").is_file()
    register_world_model()
    model = open_clip.create_model(WORLD_MODEL, pretrained=str(out))
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k].half(), v) for k, v in state.items())


def test_resume_continues_exactly(tmp_path):
    torch.set_num_threads(1)
    straight = _run(tmp_path / "a.safetensors", checkpoint_every=100)
    assert _run(tmp_path / "b.safetensors", stop_after=2) is None
    assert not (tmp_path / "b.safetensors").exists()
    resumed = _run(tmp_path / "b.safetensors", resume=True)
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(MsaeError, match="--resume"):
        other = TINY.model_copy(update={"lr": 5e-4})
        _run(tmp_path / "b.safetensors", other, resume=True)


@pytest.mark.parametrize(
    ("flag", "value"), [("--steps", "0"), ("--n-train", "4"), ("--hard-batch-rate", "2"), ("--warmup", "10")]
)
def test_cli_rejects_bad_training_parameters(tmp_path, capsys, flag, value):
    args = [
        "world",
        "train-clip",
        "--out",
        str(tmp_path / "w.safetensors"),
        "--steps",
        "5",
        "--batch-size",
        "8",
        "--n-train",
        "64",
        "--warmup",
        "1",
        flag,
        value,
    ]
    assert main(args) == 2
    assert flag in capsys.readouterr().err


def test_cli_rejects_wrong_suffix(tmp_path, capsys):
    assert (
        main(
            [
                "world",
                "train-clip",
                "--out",
                str(tmp_path / "w.pt"),
                "--steps",
                "2",
                "--warmup",
                "1",
                "--batch-size",
                "8",
                "--n-train",
                "64",
            ]
        )
        == 2
    )
    assert ".safetensors" in capsys.readouterr().err


def test_generic_noun_phase_replays_the_earlier_steps():

    from msae.world.train_clip import replays_identically

    saved = {k: v for k, v in TINY.weight_parameters().items() if not k.startswith("generic")}  # an older checkpoint
    assert replays_identically(saved, TINY, step=2)
    assert not replays_identically(saved, TINY.model_copy(update={"lr": 5e-4}), step=2)
    later = TINY.model_copy(update={"generic_noun_rate": 0.5, "generic_noun_from": 2})
    assert replays_identically(saved, later, step=2)
    assert not replays_identically(saved, later.model_copy(update={"generic_noun_from": 1}), step=2)
    # the batches before the switch are those of the run without the phase, after it they differ
    cfg = TrainConfig(batch_size=64, n_train=500, seed=3, partial_caption_rate=1.0)
    plain = SceneBatches(cfg, progress=False)
    phased = SceneBatches(cfg.model_copy(update={"generic_noun_rate": 1.0, "generic_noun_from": 5}), progress=False)
    assert plain.batch(4)[1] == phased.batch(4)[1]
    assert all(" shape" in c for c in phased.batch(5)[1]) and not any(" shape" in c for c in plain.batch(5)[1])
