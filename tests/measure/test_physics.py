"""Peak memory shows the physics: math attention grows ~4× per doubling of n, Linformer ~2×."""

import pytest
import torch

from bench.measure import make_inputs, make_step, measure_peak_memory
from bench.models import build_model


def _peak_mb(name: str, seq_len: int, batch: int = 1, **overrides) -> float:
    model = build_model(name, attention_impl="math", **overrides)
    step = make_step(model, "inference", make_inputs(batch, seq_len, model.config.d_model))
    step()
    # The median of three: a long-lived process's allocator sometimes serves part of one call from pages it kept.
    return sorted(measure_peak_memory(step).peak_mb for _ in range(3))[1]


def test_math_attention_memory_grows_quadratically():
    ratio = _peak_mb("vanilla", 2048, preset="tiny", n_heads=8, n_layers=1) / _peak_mb("vanilla", 1024, preset="tiny", n_heads=8, n_layers=1)
    assert 3.3 < ratio < 4.5


def test_linformer_memory_grows_linearly():
    # Batch 4 makes the activations (tens of MB) dwarf allocator noise.
    ratio = (_peak_mb("linformer", 4096, batch=4, preset="small", n_layers=1)
             / _peak_mb("linformer", 2048, batch=4, preset="small", n_layers=1))
    assert 1.6 < ratio < 2.5
