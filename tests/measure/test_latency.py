"""measure_latency against a known answer (sleep), and the matmul peak built on it."""

import math
import time

import pytest
import torch

from bench.measure.latency import measure_latency
from bench.measure.peak import achieved_gflops, measure_matmul_peak_gflops


def test_sleep_20ms_measures_20ms():
    result = measure_latency(lambda: time.sleep(0.02), tokens_per_call=1000, min_run_time_s=0.3)
    # sleep() never returns early; the upper bound leaves room for a loaded, shared machine
    assert 19.0 <= result.median_ms <= 40.0
    assert result.iqr_ms < 0.25 * result.median_ms
    assert result.median_ms <= result.p90_ms <= max(result.times_ms)
    assert result.n_runs == len(result.times_ms) >= 5
    assert 19.0 <= result.cold_ms
    assert result.tokens_per_s == pytest.approx(1000 / (result.median_ms / 1e3))


def test_as_row_uses_schema_names():
    row = measure_latency(lambda: None, min_run_time_s=0.01).as_row()
    assert set(row) == {"latency_ms", "latency_iqr_ms", "latency_p90_ms", "tokens_per_s",
                        "latency_runs", "cold_latency_ms"}
    assert math.isnan(row["tokens_per_s"])  # tokens_per_call=0: unknown, not "0 tokens/s"


def test_min_runs_is_honoured_for_a_call_slower_than_the_time_budget():
    result = measure_latency(lambda: time.sleep(0.03), min_run_time_s=0.01, min_runs=6, warmup=0)
    assert result.n_runs >= 6
    assert 29.0 <= result.median_ms <= 60.0


def test_cold_call_is_timed_apart_from_the_warm_runs():
    calls = []

    def fn():
        time.sleep(0.1 if not calls else 0.005)
        calls.append(1)

    result = measure_latency(fn, min_run_time_s=0.1)
    assert result.cold_ms >= 95.0
    assert result.median_ms < 20.0


def test_runs_with_torch_thread_count_not_timer_default_of_one():
    seen = set()
    measure_latency(lambda: seen.add(torch.get_num_threads()), min_run_time_s=0.01)
    assert seen == {torch.get_num_threads()}


@pytest.mark.parametrize("kwargs", [{"min_runs": 0}, {"min_run_time_s": -1.0}, {"warmup": -1},
                                    {"tokens_per_call": -5}])
def test_bad_arguments_are_refused_by_name(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        measure_latency(lambda: None, **kwargs)


def test_achieved_gflops_is_flops_over_seconds():
    assert achieved_gflops(2e9, 0.5) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="seconds"):
        achieved_gflops(1.0, 0.0)


def test_matmul_peak_is_plausible():
    gflops = measure_matmul_peak_gflops(n=512, min_run_time_s=0.2)
    # FACTS.md: ~170-180 GFLOP/s on 2 cores at n=2048; a smaller n and a noisy machine do less,
    # but a number below 1 GFLOP/s means the timing (or the FLOP count) is wrong.
    assert 1.0 < gflops < 1e5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_time_includes_the_kernel_not_just_its_launch():
    # ~50 ms of GPU spinning; without a synchronize the call returns in microseconds.
    result = measure_latency(lambda: torch.cuda._sleep(100_000_000), device="cuda", min_run_time_s=0.2)
    assert result.median_ms > 10.0
    assert result.cold_ms > 10.0
