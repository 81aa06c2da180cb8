"""The training tracker (msae.sae.tracking) on constructed count sequences with known answers: the
dead-latent window rule (frequency < 10^-5.5 per window), the final count reported as NDN's
training value, AuxK's steps-since-fired mask, and the logged means."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msae.sae.tracking import DEAD_FREQUENCY, MetricsTracker

N = 4


def feed(tracker: MetricsTracker, step: int, counts: list[int], rows: int, err: float = 1.0) -> None:
    """One step of `rows` samples whose latents fired `counts` times; x has energy 4 per row and
    x_hat misses it by `err` per row."""
    x = torch.full((rows, 1), 2.0)
    tracker.update(step, torch.tensor(0.5 * step), x, x - err**0.5, torch.tensor(counts))


def test_window_rule_counts_latents_below_the_frequency_threshold():
    rows = 200_000  # two steps: 400k samples, so the threshold is 10^-5.5 * 4e5 = 1.26 activations
    assert 1 < DEAD_FREQUENCY * 2 * rows < 2
    tracker = MetricsTracker(N, window=2, device=torch.device("cpu"), track_last_fired=False)
    feed(tracker, 0, [0, 1, 2, 0], rows)
    assert tracker.final_dead_latents() == 2  # the partial window so far: threshold 0.63, 0 and 3 dead
    feed(tracker, 1, [0, 0, 0, 5], rows)  # window closes: totals 0, 1, 2, 5 -> latents 0 and 1 dead
    assert tracker.final_dead_latents() == 2
    row = tracker.log_row(2, 0, 1e-3)
    assert row["dead_fraction"] == 0.5
    feed(tracker, 2, [3, 3, 3, 3], rows)  # a new partial window does not replace the closed one
    assert tracker.final_dead_latents() == 2
    feed(tracker, 3, [0, 0, 0, 0], rows)  # second window: totals 3 each -> none dead
    assert tracker.final_dead_latents() == 0


def test_partial_window_before_the_first_close_uses_the_samples_so_far():
    tracker = MetricsTracker(N, window=10, device=torch.device("cpu"), track_last_fired=False)
    feed(tracker, 0, [0, 1, 7, 0], 400_000)  # threshold 1.26: latents 0, 1, 3 dead so far
    assert tracker.final_dead_latents() == 3
    assert tracker.log_row(1, 0, 1e-3)["dead_fraction"] == 0.75


def test_log_row_means_active_count_and_fvu_over_the_interval():
    tracker = MetricsTracker(N, window=100, device=torch.device("cpu"), track_last_fired=False)
    feed(tracker, 0, [10, 0, 5, 5], rows=10, err=1.0)  # 20 activations over 10 samples
    feed(tracker, 1, [30, 0, 0, 0], rows=30, err=0.25)  # 30 over 30
    row = tracker.log_row(2, 0, 0.1)
    assert row["active"] == pytest.approx(50 / 40)
    assert row["fvu"] == pytest.approx((10 * 1.0 + 30 * 0.25) / (40 * 4.0))
    assert row["loss"] == pytest.approx((0.0 + 0.5) / 2)
    assert (row["step"], row["epoch"], row["lr"]) == (2, 0, 0.1)
    feed(tracker, 2, [1, 1, 1, 1], rows=4)  # the next interval starts afresh
    assert tracker.log_row(3, 0, 0.1)["active"] == pytest.approx(1.0)


def test_auxk_dead_mask_is_steps_since_last_fired():
    tracker = MetricsTracker(N, window=100, device=torch.device("cpu"), track_last_fired=True)
    for step, counts in enumerate([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]):
        feed(tracker, step, counts, rows=8)
    mask = tracker.dead_mask(step=3, after_steps=3)  # last fired at 0, 1, 3 and never (0)
    assert mask is not None and mask.tolist() == [True, False, False, True]
    assert MetricsTracker(N, 1, torch.device("cpu"), track_last_fired=False).dead_mask(4, 3) is None


def test_state_round_trip_continues_the_same_window():
    a = MetricsTracker(N, window=3, device=torch.device("cpu"), track_last_fired=True)
    feed(a, 0, [0, 2, 0, 1], 200_000)
    b = MetricsTracker(N, window=3, device=torch.device("cpu"), track_last_fired=True)
    b.load_state_dict(a.state_dict())
    for tracker in (a, b):
        feed(tracker, 1, [0, 0, 0, 1], 200_000)
        feed(tracker, 2, [0, 0, 0, 0], 200_000)  # closes: totals 0, 2, 0, 2 over 600k (threshold 1.9)
    assert a.final_dead_latents() == b.final_dead_latents() == 2
    assert a.log_row(3, 0, 1.0) == b.log_row(3, 0, 1.0)


def brute_dead(counts: np.ndarray, rows: np.ndarray, window: int, upto: int) -> int:
    """Dead count after steps 0..upto-1: the last complete window's totals, else the partial one's."""
    closed = upto // window
    lo, hi = ((closed - 1) * window, closed * window) if closed else (0, upto)
    total, samples = counts[lo:hi].sum(0), max(int(rows[lo:hi].sum()), 1)
    return int((total < DEAD_FREQUENCY * samples).sum())


def test_window_rule_equals_brute_force_over_many_windows():
    rng = np.random.default_rng(0)
    n, window, steps = 16, 3, 20
    rows = rng.integers(100_000, 300_000, steps)  # thresholds of about 1-3 activations per window
    counts = rng.choice([0, 0, 0, 1, 2, 5], size=(steps, n))
    tracker = MetricsTracker(n, window=window, device=torch.device("cpu"), track_last_fired=False)
    seen = set()
    for t in range(steps):
        x = torch.ones(int(rows[t]), 1)
        tracker.update(t, torch.tensor(0.0), x, x, torch.tensor(counts[t]))
        want = brute_dead(counts, rows, window, t + 1)
        seen.add(want)
        assert tracker.final_dead_latents() == want, t
        assert tracker.log_row(t + 1, 0, 1.0)["dead_fraction"] == want / n, t
    assert len(seen) > 3  # the sequence exercises different answers
