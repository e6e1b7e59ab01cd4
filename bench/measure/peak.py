"""This machine's achievable matmul throughput, measured in the same run as the benchmarks.

Dividing a model's achieved FLOP/s by it gives the fraction of peak, as nanoGPT's ``estimate_mfu``
does against the A100's datasheet 312 TFLOP/s. A measured dense-matmul peak is the honest ceiling on
a CPU with no datasheet figure: about 170–180 GFLOP/s fp32 for a 2048² matmul on the 2-core machines
of this project (FACTS.md, "Measuring on CPU").
"""

from __future__ import annotations

import torch

from bench.measure.latency import measure_latency


def achieved_gflops(flops: float, seconds: float) -> float:
    """Throughput in GFLOP/s: flops / seconds / 1e9 (NaN in, NaN out)."""
    if seconds <= 0:
        raise ValueError(f"seconds={seconds}: must be > 0")
    return flops / seconds / 1e9


def measure_matmul_peak_gflops(
    n: int = 2048,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    min_run_time_s: float = 1.0,
) -> float:
    """GFLOP/s of an n×n by n×n matmul: 2·n³ FLOPs (one multiply and one add per term, the
    convention of torch.utils.flop_counter) over the median time of ``measure_latency``.

    Writes into a preallocated output so the timing is the kernel, not the allocator.
    """
    if n < 1:
        raise ValueError(f"n={n}: must be >= 1")
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    result = measure_latency(lambda: torch.mm(a, b, out=out), device=device, min_run_time_s=min_run_time_s)
    return achieved_gflops(2 * n**3, result.median_ms / 1e3)
