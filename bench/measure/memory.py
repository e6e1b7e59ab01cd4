"""Peak memory of one call, above what was already held before it.

Units: MB here means MiB (2**20 bytes), the unit torch.cuda's counters and FACTS.md's numbers use.

- CUDA: the caching allocator's own high-water mark (``reset_peak_memory_stats`` /
  ``max_memory_allocated``): tensors only, not the allocator's cached-but-free blocks.
- CPU on Linux: the kernel's resettable RSS high-water mark. Writing ``5`` to ``/proc/self/clear_refs``
  resets ``VmHWM`` to the current RSS; ``VmHWM`` after the call is the true peak, however brief
  (FACTS.md, "Measuring on CPU": ``tracemalloc`` does not see torch tensors, and this method shows the
  math-attention scores at n = 2048, 12 heads as ~450 MB and SDPA as ~7 MB).
- Elsewhere, or where ``clear_refs`` is not writable: poll RSS from a side thread every ~1 ms, as
  optimum-benchmark does (FACTS.md). Peaks shorter than the poll interval can be missed.

RSS counts every resident page of the process, so the CPU methods see the call's tensors *and* its
allocator's bookkeeping: a good measure of what the call needs from the machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

MIB = 2**20
METHODS = ("auto", "cuda_max_allocated", "linux_vmhwm", "rss_poll")

_PROC_STATUS = Path("/proc/self/status")
_PROC_STATM = Path("/proc/self/statm")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_POLL_INTERVAL_S = 1e-3


@dataclass(frozen=True)
class MemoryResult:
    """Peak MiB above the pre-call baseline, and which method measured it (see module docstring)."""

    peak_mb: float
    method: str

    def as_row(self) -> dict[str, float | str]:
        """The results-schema columns (bench/results.py) this measurement fills."""
        return {"peak_mem_mb": self.peak_mb, "memory_method": self.method}


def measure_peak_memory(
    fn: Callable[[], object], *, device: str = "cpu", method: str = "auto"
) -> MemoryResult:
    """Peak memory of one call of `fn` above the memory held just before it, in MiB.

    `method` "auto" picks ``cuda_max_allocated`` for a CUDA device, else ``linux_vmhwm`` where
    ``/proc/self/clear_refs`` is writable, else ``rss_poll``. Naming one forces it (a cross-check).
    The value `fn` returns is dropped before the peak is read, but after it was counted.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    dev = torch.device(device)
    if method == "auto":
        if dev.type == "cuda":
            method = "cuda_max_allocated"
        elif _can_reset_hwm():
            method = "linux_vmhwm"
        else:
            method = "rss_poll"
    if method == "cuda_max_allocated":
        if dev.type != "cuda":
            raise ValueError(f"method='cuda_max_allocated' needs a CUDA device, got device={device!r}")
        return MemoryResult(_cuda_peak_bytes(fn, dev) / MIB, method)
    if dev.type == "cuda":
        raise ValueError(f"method={method!r} measures host RSS; use 'cuda_max_allocated' for device={device!r}")
    measure = _vmhwm_peak_bytes if method == "linux_vmhwm" else _polled_peak_bytes
    _release_freed_host_memory()
    return MemoryResult(measure(fn) / MIB, method)


# --- CUDA -----------------------------------------------------------------------------------------------


def _cuda_peak_bytes(fn: Callable[[], object], dev: torch.device) -> int:
    torch.cuda.synchronize(dev)
    gc.collect()
    torch.cuda.reset_peak_memory_stats(dev)
    baseline = torch.cuda.memory_allocated(dev)
    fn()
    torch.cuda.synchronize(dev)  # kernels still queued may allocate nothing, but their frees land now
    return max(torch.cuda.max_memory_allocated(dev) - baseline, 0)


# --- CPU ------------------------------------------------------------------------------------------------


def _release_freed_host_memory() -> None:
    """Collect garbage and hand glibc's free heap pages back to the kernel before the baseline.

    torch's CPU allocator does not cache, but glibc does: after a large free it raises its mmap
    threshold (up to 32 MiB), so later blocks below it come from the heap, whose freed pages stay
    resident. A call that reuses them faults no new pages and would show too small a peak.
    ``malloc_trim(0)`` returns them, so every call starts from the same clean baseline.
    """
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None  # musl has none
    except OSError:
        return None


def _can_reset_hwm() -> bool:
    """Whether this kernel lets us reset the RSS high-water mark (Linux >= 4.0, /proc mounted)."""
    try:
        _CLEAR_REFS.write_text("5")
        return "VmHWM:" in _PROC_STATUS.read_text()
    except OSError:
        return False


def _status_kib(field: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM) of /proc/self/status, in KiB."""
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from {_PROC_STATUS}")


def _vmhwm_peak_bytes(fn: Callable[[], object]) -> int:
    _CLEAR_REFS.write_text("5")  # VmHWM := current RSS
    baseline = _status_kib("VmRSS")
    fn()
    return max(_status_kib("VmHWM") - baseline, 0) * 1024


def _current_rss_bytes() -> int:
    """Resident set size now. /proc/self/statm on Linux (cheap enough for a 1 ms poll); elsewhere
    psutil, which is already installed as a dependency of codecarbon."""
    if _PROC_STATM.exists():
        return int(_PROC_STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import psutil

    return psutil.Process().memory_info().rss


def _polled_peak_bytes(fn: Callable[[], object]) -> int:
    baseline = _current_rss_bytes()
    peak = baseline
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _current_rss_bytes())
            time.sleep(_POLL_INTERVAL_S)

    poller = threading.Thread(target=poll, name="rss-poll", daemon=True)
    poller.start()
    try:
        result = fn()
        final = _current_rss_bytes()  # with the result still alive, for calls shorter than a poll
    finally:
        done.set()
        poller.join()
    del result
    return max(peak, final, baseline) - baseline
