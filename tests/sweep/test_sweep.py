"""The sweep end to end on the smoke preset: rows, resume, failures, kill -9, launchers, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench import results

FAST = ["sweep=smoke", "min_run_time_s=0.02", "min_runs=2", "energy_min_duration_s=0.05"]


def bench(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def point_files(root: Path, name: str = "smoke") -> list[Path]:
    return sorted((root / name / "points").glob("*.json"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    bench("sweep", *FAST, f"results_dir={root}")
    return root


def test_grid_size_equals_rows_and_all_outputs_exist(smoke):
    df = results.load(smoke / "smoke")
    assert len(df) == 6 == len(point_files(smoke))
    assert set(df["status"]) == {"ok"}
    assert set(df["model"]) == {"vanilla", "lrt", "linformer"} and set(df["seq_len"]) == {64, 256}
    assert (df["latency_ms"] > 0).all() and (df["flops"] > 0).all() and (df["energy_kwh"] > 0).all()
    assert len(set(df["point_key"])) == 6
    for name in ("results.csv", "results.parquet", "sweep.yaml", "report.md"):
        assert (smoke / "smoke" / name).is_file(), name
    assert list(pd.read_csv(smoke / "smoke" / "results.csv").columns[:len(results.COLUMNS)]) == list(results.COLUMNS)


def test_resume_writes_nothing_new(smoke):
    before = {p: p.stat().st_mtime_ns for p in point_files(smoke)}
    proc = bench("sweep", *FAST, f"results_dir={smoke}")
    assert "6 already measured, 0 to run" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in point_files(smoke)} == before


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    proc = bench("sweep", *FAST, f"results_dir={tmp_path}", "fail_at=256", "energy=false", check=False)
    assert proc.returncode == 0, proc.stderr
    df = results.load(tmp_path / "smoke").set_index(["model", "seq_len"])
    assert (df.xs(256, level="seq_len")["status"] == "error").all()
    assert (df.xs(64, level="seq_len")["status"] == "ok").all()
    assert df.xs(256, level="seq_len")["error"].str.contains("injected failure").all()
    assert df.xs(256, level="seq_len")["flops"].notna().all()  # analytic figures survive a failure
    assert df.xs(256, level="seq_len")["device_name"].notna().all()  # and so does provenance
    # A re-run retries the failed points (and only those).
    proc = bench("sweep", *FAST, f"results_dir={tmp_path}", "energy=false")
    assert "3 already measured, 3 to run" in proc.stdout
    assert set(results.load(tmp_path / "smoke")["status"]) == {"ok"}


@pytest.mark.slow
def test_oom_kill_and_timeout_are_their_own_statuses(tmp_path):
    bench("sweep", *FAST, f"results_dir={tmp_path}", "model=vanilla", "seq_len=64,256", "fail_at=kill:64", "energy=false")
    bench("sweep", *FAST, f"results_dir={tmp_path}", "model=lrt", "seq_len=64,256", "fail_at=hang:256",
          "timeout_s=20", "energy=false")
    df = results.load(tmp_path / "smoke").set_index(["model", "seq_len"])["status"]
    assert df[("vanilla", 64)] == "oom" and df[("vanilla", 256)] == "ok"
    assert df[("lrt", 256)] == "timeout" and df[("lrt", 64)] == "ok"


def test_kill_9_mid_sweep_then_rerun_gives_one_row_per_point(tmp_path):
    args = [sys.executable, "-m", "bench", "sweep", *FAST, f"results_dir={tmp_path}", "energy=false",
            "seq_len=64,128,256,512", "min_run_time_s=0.3"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while len(point_files(tmp_path)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(point_files(tmp_path))
    assert 2 <= partial < 12
    bench("sweep", *FAST, f"results_dir={tmp_path}", "energy=false", "seq_len=64,128,256,512", "min_run_time_s=0.3")
    df = results.load(tmp_path / "smoke")
    assert len(df) == 12 and df["point_key"].is_unique and set(df["status"]) == {"ok"}
    assert not list((tmp_path / "smoke" / "points").glob("*.tmp"))


@pytest.mark.slow
def test_submitit_local_launcher_gives_the_same_rows(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    common = ["sweep=smoke", "model=vanilla,lrt", "seq_len=64", "energy=false", "min_run_time_s=0.02", "min_runs=2"]
    bench("sweep", *common, f"results_dir={tmp_path / 'basic'}")
    bench("sweep", *common, f"results_dir={tmp_path / 'submitit'}", "hydra/launcher=submitit_local",
          "hydra.launcher.timeout_min=10")
    identity = list(results.IDENTITY_COLUMNS) + ["point_key", "status"]
    basic = results.load(tmp_path / "basic" / "smoke")[identity].sort_values("point_key").reset_index(drop=True)
    submitit = results.load(tmp_path / "submitit" / "smoke")[identity].sort_values("point_key").reset_index(drop=True)
    pd.testing.assert_frame_equal(basic, submitit)
    assert len(basic) == 2


@pytest.mark.parametrize("args, message", [
    (["batch_size=0"], "error: batch_size=0: must be ≥ 1"),
    (["sweep=nope"], "error: sweep=nope: unknown sweep; choose from cpu, smoke, thesis"),
    (["seq_len=range(64,"], "error: seq_len=range(64,: malformed override"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    proc = bench("sweep", *args, f"results_dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [message] or proc.stderr.strip().startswith(message)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_run_prints_one_json_row(tmp_path):
    proc = bench("run", "size=tiny", "model=lrt_linformer", "seq_len=128", "mode=train", "format=json",
                 "min_run_time_s=0.02", "energy_min_duration_s=0.05")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    for column in results.IDENTITY_COLUMNS + ("params", "flops", "latency_ms", "peak_mem_mb", "energy_kwh",
                                              "co2_kg", "energy_source", "status", "config_hash", "torch_version"):
        assert column in row, column
    assert row["model"] == "lrt_linformer" and row["mode"] == "train" and row["status"] == "ok"
    assert row["rank"] == 16 and row["linformer_k"] == 32
