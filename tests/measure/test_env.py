"""collect_env and machine_identity: complete, truthful provenance that never fails."""

import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch

from bench.measure import env
from bench.measure.env import collect_env, machine_identity

KEYS = {"torch_version", "device_name", "cpu_model", "cpu_count", "torch_threads", "gpu_name",
        "gpu_memory_gb", "codecarbon_version", "git_sha", "python_version", "platform", "timestamp"}


def test_cpu_environment_is_complete_and_truthful():
    info = collect_env("cpu")
    assert KEYS <= set(info)
    assert info["torch_version"] == torch.__version__
    assert info["device_name"] == info["cpu_model"] != ""
    assert info["gpu_name"] is None and info["gpu_memory_gb"] is None
    assert info["torch_threads"] == torch.get_num_threads()
    assert 1 <= info["cpu_count"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", info["codecarbon_version"])
    assert info["python_version"] == ".".join(map(str, sys.version_info[:3]))
    stamp = datetime.fromisoformat(info["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - stamp) < timedelta(minutes=1)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="Linux /proc only")
def test_cpu_model_is_the_kernel_one():
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    if not names:
        pytest.skip("no 'model name' in /proc/cpuinfo (e.g. ARM)")
    assert env.cpu_model() == names[0]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_sha_is_the_checkout_head():
    head = subprocess.run(["git", "-C", str(env._PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    expected = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert env.git_sha() == expected


def test_git_sha_outside_a_checkout_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "_PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # don't find a repo above
    env.git_sha.cache_clear()  # read once per process: forget this checkout's sha for the test
    try:
        assert env.git_sha() == "unknown"
        assert collect_env()["git_dirty"] is None
    finally:
        env.git_sha.cache_clear()


def test_machine_identity_is_short_stable_and_changes_with_torch(monkeypatch):
    first = machine_identity("cpu")
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert machine_identity("cpu") == first
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    assert machine_identity("cpu") != first


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_environment_names_the_gpu():
    info = collect_env("cuda")
    assert info["device_name"] == info["gpu_name"] == torch.cuda.get_device_name()
    assert info["gpu_memory_gb"] > 1
    assert machine_identity("cuda") != machine_identity("cpu")
