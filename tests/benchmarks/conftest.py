"""Speed benchmarks (pytest-benchmark): run with `pytest tests/benchmarks -m bench`.

Each benchmark stores its analytic FLOPs and achieved GFLOP/s in `extra_info`; the terminal summary turns
them into the ratios the project's speed targets are written in, all measured in the same run (absolute
times on shared machines are noise, FACTS.md).
"""

from __future__ import annotations

import pytest

RESULTS: dict[str, dict] = {}


def record(benchmark, key: str, flops: int) -> float:
    """Store FLOPs and GFLOP/s (flops / median seconds / 1e9) for `key`; returns GFLOP/s."""
    median = benchmark.stats.stats.median
    gflops = flops / median / 1e9
    benchmark.extra_info.update(flops=flops, gflops=round(gflops, 2))
    RESULTS[key] = {"flops": flops, "seconds": median, "gflops": gflops}
    return gflops


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    peak = RESULTS.get("matmul_peak")
    if not peak:
        return
    write = terminalreporter.write_line
    write(f"\nmatmul peak (2048² fp32): {peak['gflops']:.1f} GFLOP/s")
    for key, row in sorted(RESULTS.items()):
        write(f"  {key:<40} {row['seconds'] * 1e3:9.2f} ms {row['gflops']:7.1f} GFLOP/s "
              f"{row['gflops'] / peak['gflops']:6.1%} of peak")

    def speed_vs_flops(fast: str, slow: str) -> None:
        if fast in RESULTS and slow in RESULTS:
            speedup = RESULTS[slow]["seconds"] / RESULTS[fast]["seconds"]
            flop_ratio = RESULTS[slow]["flops"] / RESULTS[fast]["flops"]
            write(f"  {fast} vs {slow}: speed-up {speedup:.2f}× of a {flop_ratio:.2f}× FLOP ratio "
                  f"({speedup / flop_ratio:.0%})")

    speed_vs_flops("layer/lrt/sdpa/n=512", "layer/vanilla/sdpa/n=512")
    speed_vs_flops("layer/linformer/math/n=4096", "layer/vanilla/math/n=4096")
    speed_vs_flops("layer/linformer/sdpa/n=4096", "layer/vanilla/sdpa/n=4096")
