"""Wall-clock latency of any callable, on torch.utils.benchmark.Timer.

Timer brings what a hand-written loop gets wrong: a warm-up that also sizes the block of calls per
timer read (so timer overhead stays below 1e-4 of a block), accelerator synchronisation around every
timed block, and torch's thread count pinned for the measurement. Timer defaults to **one** thread, so
we pass ``num_threads=torch.get_num_threads()`` (FACTS.md, "Measuring on CPU").

These machines are shared and noisy: compare medians measured in one run, as ratios (FACTS.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.benchmark import Timer


@dataclass(frozen=True)
class LatencyResult:
    """Per-call wall times in milliseconds. ``times_ms`` holds every run, each already divided by
    the number of calls in its block (Timer's ``Measurement.times``)."""

    median_ms: float
    iqr_ms: float
    p90_ms: float
    n_runs: int
    tokens_per_s: float
    cold_ms: float
    times_ms: tuple[float, ...] = ()

    def as_row(self) -> dict[str, float | int]:
        """The results-schema columns (bench/results.py) this measurement fills."""
        return {
            "latency_ms": self.median_ms,
            "latency_iqr_ms": self.iqr_ms,
            "latency_p90_ms": self.p90_ms,
            "tokens_per_s": self.tokens_per_s,
            "latency_runs": self.n_runs,
            "cold_latency_ms": self.cold_ms,
        }


def device_synchronizer(device: str | torch.device) -> Callable[[], None]:
    """A no-argument function that waits for queued work on `device` (a no-op on CPU).

    CUDA kernels run asynchronously: a timer read without a synchronize measures only the launch.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def _synced_clock(sync: Callable[[], None]) -> Callable[[], float]:
    """perf_counter read after the device's queue drained: a start read then bills no earlier
    work to the call, an end read bills all of the call's kernels to it."""

    def clock() -> float:
        sync()
        return time.perf_counter()

    return clock


def _timed_call(fn: Callable[[], object], clock: Callable[[], float]) -> float:
    start = clock()
    fn()
    return clock() - start


def measure_latency(
    fn: Callable[[], object],
    *,
    device: str = "cpu",
    tokens_per_call: int = 0,
    min_run_time_s: float = 1.0,
    min_runs: int = 5,
    warmup: int = 1,
) -> LatencyResult:
    """Time `fn()`: the first (cold) call alone, then `warmup` untimed calls, then at least
    `min_runs` runs and `min_run_time_s` seconds of warm calls with ``Timer.blocked_autorange``.

    - median, IQR (q75 − q25) and p90 are over the per-call run times (linear interpolation, as
      ``Measurement`` computes its median and IQR).
    - ``tokens_per_s = tokens_per_call / median_s``; NaN when `tokens_per_call` is 0 (unknown).
    - ``cold_ms`` is the first call through this function, so lazy initialisation, first-touch page
      faults and (in train mode) the optimizer's lazily created state land there, not in the median.
    - On CUDA every timer read, cold or warm, follows a ``torch.cuda.synchronize(device)``, so the
      times include the kernels, not just their launch.
    """
    if min_runs < 1:
        raise ValueError(f"min_runs={min_runs}: must be >= 1")
    if not min_run_time_s >= 0:
        raise ValueError(f"min_run_time_s={min_run_time_s}: must be >= 0")
    if warmup < 0:
        raise ValueError(f"warmup={warmup}: must be >= 0")
    if tokens_per_call < 0:
        raise ValueError(f"tokens_per_call={tokens_per_call}: must be >= 0")

    clock = _synced_clock(device_synchronizer(device))
    cold_s = _timed_call(fn, clock)
    steady_s = cold_s
    for _ in range(warmup):
        steady_s = _timed_call(fn, clock)

    # Our clock, not Timer's default, which synchronises only the *current* accelerator.
    timer = Timer(stmt="fn()", globals={"fn": fn}, timer=clock, num_threads=torch.get_num_threads())
    # blocked_autorange stops on time alone: for a call slower than min_run_time_s / min_runs it
    # would return fewer runs than asked. Stretch its budget from the last warm-up's duration,
    # then top up in the (noisy) case that the runs came out slower than that estimate.
    budget_s = max(min_run_time_s, min_runs * steady_s)
    times = list(timer.blocked_autorange(min_run_time=budget_s).times)
    while len(times) < min_runs:
        missing_s = (min_runs - len(times)) * float(np.median(times))
        times.extend(timer.blocked_autorange(min_run_time=missing_s).times)

    times_ms = np.asarray(times) * 1e3
    q25, median_ms, q75, p90 = np.percentile(times_ms, [25, 50, 75, 90])
    tokens_per_s = tokens_per_call / (median_ms / 1e3) if tokens_per_call > 0 else math.nan
    return LatencyResult(
        median_ms=float(median_ms),
        iqr_ms=float(q75 - q25),
        p90_ms=float(p90),
        n_runs=len(times),
        tokens_per_s=float(tokens_per_s),
        cold_ms=cold_s * 1e3,
        times_ms=tuple(float(t) for t in times_ms),
    )
