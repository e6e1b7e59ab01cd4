"""Synthetic results tables with known answers, for the analysis / plots / report tests.

Latencies follow power laws in n, so the log–log interpolation of the crossover finder is exact:

    lrt           = 0.1 · 2^-9.5 · n²      (full attention, cheaper linears)
    linformer     = 0.1 · n
    vanilla       = 1.5 · lrt
    lrt_linformer = 0.05 · n

Hence lrt/linformer = 2^-9.5 · n crosses 1 at n = 2^9.5 ≈ 724.08; linformer/vanilla crosses at
2^9.5 / 1.5 ≈ 482.7; lrt_linformer/vanilla at 2^9.5 / 3 ≈ 241.4; lrt/vanilla = 1/1.5 never crosses.
Peak memory is 2 × latency (same crossings), energy 1e-6 × latency kWh.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from bench.results import to_frame

SEQ_LENS = (64, 128, 256, 512, 1024, 2048, 4096)
MODELS = ("vanilla", "lrt", "linformer", "lrt_linformer")
LRT_LINFORMER_CROSS = 2 ** 9.5
LINFORMER_VANILLA_CROSS = 2 ** 9.5 / 1.5
LRT_LINFORMER_VANILLA_CROSS = 2 ** 9.5 / 3


def latency(model: str, n: float) -> float:
    lrt = 0.1 * 2 ** -9.5 * n * n
    return {"vanilla": 1.5 * lrt, "lrt": lrt, "linformer": 0.1 * n, "lrt_linformer": 0.05 * n}[model]


def synthetic_records(
    impls: Sequence[str] = ("math",),
    models: Sequence[str] = MODELS,
    seq_lens: Sequence[int] = SEQ_LENS,
    iqr: float | Callable[[str, int], float] = 0.0,
    failed: dict[tuple[str, int], str] | None = None,
    lat: Callable[[str, int], float] = latency,
    **common,
) -> list[dict]:
    """One ok record per (impl, model, seq_len). ``iqr``: IQR as a fraction of the median, or a function
    (model, n) → fraction. ``failed``: {(model, n): status} for points that failed (no figures)."""
    failed = failed or {}
    records = []
    for impl in impls:
        for model in models:
            for n in seq_lens:
                ms = lat(model, n)
                frac = iqr(model, n) if callable(iqr) else iqr
                status = failed.get((model, n), "ok")
                rec = dict(
                    model=model, attention_impl=impl, seq_len=n, batch_size=1, mode="inference",
                    device="cpu", dtype="float32", d_model=256, n_heads=4, d_ff=1024, n_layers=4,
                    rank=64 if "lrt" in model else None,
                    linformer_k=128 if "linformer" in model else None,
                    linformer_sharing="layerwise" if "linformer" in model else None,
                    params={"vanilla": 3_000_000, "lrt": 1_200_000, "linformer": 3_000_000 + 256 * n,
                            "lrt_linformer": 1_200_000 + 256 * n}[model],
                    status=status, error=None if status == "ok" else f"RuntimeError: {status} at n={n}",
                    sweep_name="synthetic", device_name="Test CPU 2-core", cpu_model="Test CPU",
                    torch_version="2.13.0", codecarbon_version="3.3.0", energy_source="constant (no RAPL)",
                    git_sha="0123abc", timestamp=f"2025-01-01T00:00:{len(records) % 60:02d}",
                    point_key=f"{impl}-{model}-{n}-{common.get('batch_size', 1)}",
                )
                if status == "ok":
                    rec.update(latency_ms=ms, latency_iqr_ms=frac * ms, peak_mem_mb=2 * ms,
                               energy_kwh=1e-6 * ms)
                rec.update(common)
                records.append(rec)
    return records


def synthetic(**kwargs) -> pd.DataFrame:
    """:func:`synthetic_records` as a normalized results table."""
    return to_frame(synthetic_records(**kwargs))


def log2_close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(math.log2(a) - math.log2(b)) < tol
