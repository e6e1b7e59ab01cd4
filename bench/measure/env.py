"""Where a row was measured: software versions, hardware names, and the project's git commit.

Every probe degrades to None / "unknown" instead of failing: provenance must never cost a point.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

# bench/measure/env.py -> the repository root
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_UNKNOWN = "unknown"


def collect_env(device: str = "cpu") -> dict[str, Any]:
    """Provenance for one measurement on `device`.

    Keys: torch_version, device_name (the GPU's name on CUDA, else the CPU model), cpu_model,
    cpu_count (logical CPUs this process may run on), torch_threads, gpu_name and gpu_memory_gb
    (GiB; None off CUDA), codecarbon_version, git_sha (short; "unknown" outside a git checkout or
    before the first commit), git_dirty (tracked files modified; None when unknown), python_version,
    platform, timestamp (UTC, ISO 8601).
    """
    gpu_name, gpu_memory_gb = _gpu(device)
    cpu = cpu_model()
    return {
        "torch_version": torch.__version__,
        "device_name": gpu_name or cpu,
        "cpu_model": cpu,
        "cpu_count": _cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu_name": gpu_name,
        "gpu_memory_gb": gpu_memory_gb,
        "codecarbon_version": _package_version("codecarbon"),
        "git_sha": git_sha(),
        "git_dirty": _git_dirty(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine_identity(device: str = "cpu") -> str:
    """A short, stable id (12 hex digits) of what a measurement ran on: the device name, the CPU
    model and the torch version. Rows measured elsewhere get another id, so a resume key built with
    it never mixes machines."""
    gpu_name, _ = _gpu(device)
    cpu = cpu_model()
    text = "|".join([torch.device(device).type, gpu_name or cpu, cpu, torch.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@cache
def cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo on Linux, sysctl on macOS, else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "Processor")) and ":" in line:
                name = line.split(":", 1)[1].strip()
                if name:
                    return name
    except OSError:
        pass
    if sys.platform == "darwin":
        name = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if name:
            return name
    return platform.processor() or platform.machine() or _UNKNOWN


@cache
def git_sha() -> str:
    """Short commit of the project checkout this code runs from; "unknown" if there is none.

    Read once per process: a worker measures many points, and a subprocess per point is wasted I/O."""
    return _run(["git", "-C", str(_PROJECT_ROOT), "rev-parse", "--short", "HEAD"]) or _UNKNOWN


def _git_dirty() -> bool | None:
    if git_sha() == _UNKNOWN:
        return None
    status = _run(["git", "-C", str(_PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"])
    return None if status is None else bool(status)


def _run(cmd: list[str]) -> str | None:
    """Stripped stdout of `cmd`, or None if it is missing, fails or hangs."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_count() -> int | None:
    # The affinity mask, not os.cpu_count(): a container or taskset may give us fewer cores.
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _gpu(device: str) -> tuple[str | None, float | None]:
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None, None
    try:
        props = torch.cuda.get_device_properties(dev)
        return props.name, round(props.total_memory / 2**30, 2)
    except Exception:  # noqa: BLE001 - provenance never fails a point
        return None, None


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return _UNKNOWN
