"""Peak memory shows the physics: math attention grows ~4× per doubling of n, Linformer ~2×.

Each reading runs in a fresh interpreter with glibc's mmap threshold at 64 KiB, so every activation is
mapped fresh and counted: in a long-lived process glibc serves allocations under its 32 MiB dynamic
threshold from heap pages it already holds, which hides part of a call from the high-water mark.
"""

import json
import os
import subprocess
import sys

SCRIPT = """
import json, sys
from bench.measure import make_inputs, make_step, measure_peak_memory
from bench.models import build_model
name, batch, overrides, seq_lens = json.loads(sys.argv[1])
peaks = []
for n in seq_lens:
    model = build_model(name, attention_impl="math", **overrides)
    step = make_step(model, "inference", make_inputs(batch, n, model.config.d_model))
    step()
    peaks.append(min(measure_peak_memory(step).peak_mb for _ in range(3)))
print(json.dumps(peaks))
"""


def _peaks_mb(name: str, batch: int, seq_lens: list[int], **overrides) -> list[float]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps([name, batch, overrides, seq_lens])],
                         capture_output=True, text=True, env=env, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_math_attention_memory_grows_quadratically():
    small, large = _peaks_mb("vanilla", 1, [1024, 2048], preset="tiny", n_heads=8, n_layers=1)
    assert 3.3 < large / small < 4.5


def test_linformer_memory_grows_linearly():
    small, large = _peaks_mb("linformer", 4, [2048, 4096], preset="small", n_layers=1)
    assert 1.6 < large / small < 2.4
