"""Training metrics accumulated on the device and read back only at log points.

Per step the loop adds a few reductions to device tensors (no `.item()`, no host sync); a log
row (loss, fvu, active, dead_fraction) is materialised every `log_every` steps. `active` is the
mean number of active latents per sample (what SAE libraries call L0; the paper's "L0" is the
fraction of zeros, `l0_zero_fraction` in metrics.json). Dead latents follow the official code:
activation frequency below 10^-5.5 within a window of `window` steps.
"""

from __future__ import annotations

from typing import Any

import torch

DEAD_FREQUENCY = 10**-5.5
LOG_COLUMNS = ("step", "epoch", "loss", "fvu", "active", "dead_fraction", "lr")


class MetricsTracker:
    """Interval sums for the log and window counts for dead latents, all on `device`."""

    def __init__(self, n_latents: int, window: int, device: torch.device, track_last_fired: bool) -> None:
        self.window = window
        z = lambda: torch.zeros((), dtype=torch.float64, device=device)  # noqa: E731
        self.loss_sum, self.err_sum, self.energy_sum, self.active_sum = z(), z(), z(), z()
        self.interval_steps = 0
        self.interval_samples = 0
        self.window_counts = torch.zeros(n_latents, dtype=torch.int64, device=device)
        self.window_steps = 0
        self.window_samples = 0
        self.last_dead_fraction: torch.Tensor | None = None
        self.last_dead_count: torch.Tensor | None = None
        self.last_fired = torch.zeros(n_latents, dtype=torch.int64, device=device) if track_last_fired else None

    @torch.no_grad()
    def update(
        self, step: int, loss: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, latent_counts: torch.Tensor
    ) -> None:
        """Add one step's contribution (device ops only); `latent_counts` [n] says in how many of
        the batch's samples each latent was active."""
        counts = latent_counts
        self.window_counts += counts
        self.active_sum += counts.sum()
        self.loss_sum += loss.detach()
        xf = x.float()
        self.err_sum += (x_hat.float() - xf).square().sum()
        self.energy_sum += xf.square().sum()
        if self.last_fired is not None:
            self.last_fired.masked_fill_(counts > 0, step)
        self.interval_steps += 1
        self.interval_samples += len(x)
        self.window_steps += 1
        self.window_samples += len(x)
        if self.window_steps == self.window:
            self._close_window()

    def _close_window(self) -> None:
        dead = self.window_counts < DEAD_FREQUENCY * self.window_samples
        self.last_dead_count = dead.sum()
        self.last_dead_fraction = dead.double().mean()
        self.window_counts.zero_()
        self.window_steps = 0
        self.window_samples = 0

    def dead_mask(self, step: int, after_steps: int) -> torch.Tensor | None:
        """Latents that have not fired in the last `after_steps` steps (for AuxK)."""
        if self.last_fired is None:
            return None
        return (step - self.last_fired) >= after_steps

    def _dead(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(count, fraction) from the last complete window, else from the partial one so far."""
        if self.last_dead_count is not None and self.last_dead_fraction is not None:
            return self.last_dead_count, self.last_dead_fraction
        dead = self.window_counts < DEAD_FREQUENCY * max(self.window_samples, 1)
        return dead.sum(), dead.double().mean()

    def final_dead_latents(self) -> int:
        return int(self._dead()[0].item())

    def log_row(self, step: int, epoch: int, lr: float) -> dict[str, float]:
        """Materialise the interval's means (one host sync) and start a new interval."""
        steps, samples = max(self.interval_steps, 1), max(self.interval_samples, 1)
        values = torch.stack(
            [
                self.loss_sum / steps,
                self.err_sum / self.energy_sum.clamp_min(torch.finfo(torch.float64).tiny),
                self.active_sum / samples,
                self._dead()[1],
            ]
        ).tolist()
        for t in (self.loss_sum, self.err_sum, self.energy_sum, self.active_sum):
            t.zero_()
        self.interval_steps = self.interval_samples = 0
        loss, fvu, active, dead = values
        return {
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "fvu": fvu,
            "active": active,
            "dead_fraction": dead,
            "lr": lr,
        }

    def state_dict(self) -> dict[str, Any]:
        state = {
            name: getattr(self, name) for name in ("loss_sum", "err_sum", "energy_sum", "active_sum", "window_counts")
        }
        state |= {
            name: getattr(self, name)
            for name in ("interval_steps", "interval_samples", "window_steps", "window_samples")
        }
        for name in ("last_dead_fraction", "last_dead_count", "last_fired"):
            value = getattr(self, name)
            if value is not None:
                state[name] = value
        return {k: (v.detach().to("cpu", copy=True) if torch.is_tensor(v) else v) for k, v in state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.window_counts.device
        for name, value in state.items():
            setattr(self, name, value.to(device) if torch.is_tensor(value) else value)
