"""Suite-wide fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_float_state():
    """Commands run in-process call msae.runtime.configure_torch(), which turns on flush-to-zero
    for the whole process; later tests (hypothesis float strategies) need IEEE subnormals back."""
    threads = torch.get_num_threads()
    yield
    torch.set_flush_denormal(False)
    torch.set_num_threads(threads)
