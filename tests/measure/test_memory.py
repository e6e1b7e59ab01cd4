"""measure_peak_memory against known tensors, and the n² physics of attention scores."""

import sys

import pytest
import torch

from bench.measure import memory
from bench.measure.memory import measure_peak_memory

MIB = 2**20
HOST_METHODS = ["auto", "rss_poll"]


def _touch_200_mib():
    x = torch.ones(50 * MIB)  # 50 Mi float32 = 200 MiB, every page written
    return float(x[-1])


@pytest.mark.parametrize("method", HOST_METHODS)
def test_known_tensor_is_seen_within_10_percent(method):
    result = measure_peak_memory(_touch_200_mib, method=method)
    assert result.peak_mb == pytest.approx(200.0, rel=0.10)
    assert result.method in ("linux_vmhwm", "rss_poll")
    assert result.as_row() == {"peak_mem_mb": result.peak_mb, "memory_method": result.method}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux-only")
def test_auto_uses_the_resettable_high_water_mark_on_linux():
    if not memory._can_reset_hwm():
        pytest.skip("/proc/self/clear_refs is not writable here")
    assert measure_peak_memory(lambda: None).method == "linux_vmhwm"


@pytest.mark.parametrize("method", HOST_METHODS)
def test_memory_held_before_the_call_is_not_counted(method):
    held = torch.ones(75 * MIB)  # 300 MiB alive throughout
    result = measure_peak_memory(lambda: torch.ones(25 * MIB), method=method)  # 100 MiB
    assert result.peak_mb == pytest.approx(100.0, rel=0.10)
    del held


def test_repeated_calls_of_heap_sized_blocks_read_the_same():
    # 8 MiB blocks fall under glibc's dynamic mmap threshold once a 16 MiB block was freed, so they
    # come from the heap; without trimming the heap first, a second reading would reuse resident
    # pages and show (almost) nothing.
    torch.ones(4 * MIB)  # allocated and freed at once

    def ten_blocks():
        return [torch.ones(2 * MIB) for _ in range(10)]  # 10 × 8 MiB alive at once

    readings = [measure_peak_memory(ten_blocks).peak_mb for _ in range(3)]
    assert readings == pytest.approx([80.0] * 3, rel=0.10)


def test_math_attention_scores_grow_4x_when_n_doubles():
    heads, head_dim = 8, 64

    def scores_at(n):
        q, k, v = (torch.randn(heads, n, head_dim) for _ in range(3))
        return measure_peak_memory(lambda: torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v).peak_mb

    small, large = scores_at(1024), scores_at(2048)
    assert small > 2 * heads * 1024 * 1024 * 4 / MIB * 0.9  # scores and softmax: 2 × 32 MiB
    assert large / small == pytest.approx(4.0, rel=0.2)


def test_bad_method_and_mismatched_device_are_refused():
    with pytest.raises(ValueError, match="method='nope'"):
        measure_peak_memory(lambda: None, method="nope")
    with pytest.raises(ValueError, match="cuda_max_allocated"):
        measure_peak_memory(lambda: None, method="cuda_max_allocated")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_known_tensor_is_seen_exactly():
    held = torch.ones(64 * MIB, device="cuda")  # allocated before: not counted
    result = measure_peak_memory(lambda: torch.ones(64 * MIB, device="cuda"), device="cuda")
    assert result.method == "cuda_max_allocated"
    assert result.peak_mb == pytest.approx(256.0, rel=0.01)
    del held
