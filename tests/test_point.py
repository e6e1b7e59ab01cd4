"""One point measured in-process for all four models in both modes: the row is complete and consistent."""

import math

import pytest

from bench.config import load_point
from bench.point import ModelCache, measure_point

FAST = ["size=tiny", "min_run_time_s=0.02", "min_runs=2", "energy_min_duration_s=0.05"]


@pytest.mark.parametrize("mode", ["inference", "train"])
@pytest.mark.parametrize("model", ["vanilla", "lrt", "linformer", "lrt_linformer"])
def test_every_model_and_mode_measures(model, mode):
    cfg = load_point([*FAST, f"model={model}", f"mode={mode}", "seq_len=128", "batch_size=2"])
    row = measure_point(cfg)
    assert row["status"] == "ok" and row["model"] == model and row["mode"] == mode
    assert row["tokens_per_s"] == pytest.approx(2 * 128 / (row["latency_ms"] / 1e3))
    assert row["achieved_gflops"] == pytest.approx(row["flops"] / (row["latency_ms"] / 1e3) / 1e9)
    assert row["peak_mem_mb"] > 0 and row["energy_kwh"] > 0 and not math.isnan(row["co2_kg"])
    assert row["memory_method"] in ("linux_vmhwm", "rss_poll") and row["energy_source"].startswith("cpu=")
    assert (row["rank"] is not None) == model.startswith("lrt")
    assert (row["linformer_k"] is not None) == model.endswith("linformer")


def test_model_cache_reuses_a_model_across_seq_len_and_rebuilds_on_change():
    cache = ModelCache()
    a = cache.get(load_point([*FAST, "seq_len=64"]), "cpu")
    assert cache.get(load_point([*FAST, "seq_len=256", "mode=train"]), "cpu") is a
    assert cache.get(load_point([*FAST, "seq_len=64", "attention_impl=math"]), "cpu") is not a


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("model", ["vanilla", "lrt_linformer"])
def test_cuda_point_uses_device_counters(model, dtype):
    cfg = load_point([*FAST, f"model={model}", "device=cuda", f"dtype={dtype}", "mode=train", "seq_len=512"])
    row = measure_point(cfg)
    assert row["status"] == "ok" and row["device"] == "cuda" and row["memory_method"] == "cuda_max_allocated"
    assert row["peak_mem_mb"] > 0 and "gpu=" in row["energy_source"]
