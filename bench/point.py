"""Measure one grid point into one results row: build (or reuse) the model, then time, memory, energy.

This is the only place where bench.models meets bench.measure; `run` calls it in-process and `sweep`
calls it inside an isolated worker (bench/worker.py).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import torch
from torch import nn

from bench.config import BenchConfig
from bench.measure import (
    achieved_gflops,
    collect_env,
    make_inputs,
    make_step,
    measure_energy,
    measure_latency,
    measure_matmul_peak_gflops,
    measure_peak_memory,
)
from bench.measure.flops import step_flops
from bench.models import build_model, count_params

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str) -> str:
    """`auto` → cuda when a GPU is visible, else cpu."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class ModelCache:
    """Keeps the last model built, so consecutive points of one model config (the sweep orders them so)
    differ only in inputs and are not rebuilt."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._model: nn.Module | None = None

    def get(self, cfg: BenchConfig, device: str) -> nn.Module:
        key = (cfg.model, tuple(sorted(cfg.model_overrides().items())), device, cfg.dtype)
        if key != self._key:
            self._model = None  # free the old model before building the next
            self._model = build_model(cfg.model, **cfg.model_overrides()).to(device=device, dtype=DTYPES[cfg.dtype])
            self._key = key
        return self._model


_PEAKS: dict[tuple[str, str], float] = {}


def device_peak_gflops(device: str, dtype: str) -> float:
    """This device's matmul throughput (2048² product), measured once per process: the denominator of
    `fraction_of_peak` (nanoGPT's estimate_mfu uses a datasheet figure; a CPU has none we can trust).

    On CPU the fp32 peak is used for every dtype: without native fp16 units a 2048² half-precision product
    runs at well under 1 GFLOP/s here (a minute per measurement), far below what the model's kernels reach.
    """
    if device != "cuda":
        dtype = "float32"
    if (device, dtype) not in _PEAKS:
        _PEAKS[device, dtype] = measure_matmul_peak_gflops(device=device, dtype=DTYPES[dtype])
    return _PEAKS[device, dtype]


def _inject_failure(cfg: BenchConfig) -> None:
    """Test hook: `fail_at=<seq_len>` raises, `hang:<seq_len>` hangs, `kill:<seq_len>` dies like an OOM kill."""
    if cfg.fail_at is None:
        return
    kind, _, at = str(cfg.fail_at).rpartition(":")
    if at not in ("all", str(cfg.seq_len)):
        return
    if kind == "hang":
        time.sleep(10**6)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected failure (fail_at={cfg.fail_at})")


def identity_row(cfg: BenchConfig) -> dict[str, Any]:
    """The identity columns of a point; method fields are blank for models that do not use them."""
    from bench.models import make_config

    model_cfg = make_config(cfg.model, **cfg.model_overrides())
    lowrank, linformer = model_cfg.linear_kind == "lowrank", model_cfg.attention_kind == "linformer"
    return {
        "model": cfg.model, "attention_impl": cfg.attention_impl,
        "linformer_k": model_cfg.linformer_k if linformer else None,
        "linformer_sharing": model_cfg.linformer_sharing if linformer else None,
        "rank": model_cfg.rank if lowrank else None,
        "d_model": model_cfg.d_model, "n_heads": model_cfg.n_heads, "d_ff": model_cfg.d_ff,
        "n_layers": model_cfg.n_layers, "seq_len": cfg.seq_len, "batch_size": cfg.batch_size, "mode": cfg.mode,
        "device": resolve_device(cfg.device), "dtype": cfg.dtype, "sweep_name": cfg.name,
    }


def provenance(device: str) -> dict[str, Any]:
    """Where and with what a row was measured (failed rows get it too, from the sweep's process)."""
    env = collect_env(device)
    return {k: env[k] for k in ("timestamp", "torch_version", "device_name", "cpu_model", "git_sha",
                                "codecarbon_version", "python_version")}


def measure_point(cfg: BenchConfig, cache: ModelCache | None = None) -> dict[str, Any]:
    """Every figure of one point. Exceptions propagate: the caller records them in the row."""
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    model = (cache or ModelCache()).get(cfg, device)
    _inject_failure(cfg)
    inputs = make_inputs(cfg.batch_size, cfg.seq_len, model.config.d_model, device=device, dtype=DTYPES[cfg.dtype])
    step = make_step(model, cfg.mode, inputs)
    tokens = cfg.batch_size * cfg.seq_len
    flops = step_flops(model.config, cfg.seq_len, cfg.batch_size, cfg.mode)
    measure_start = time.perf_counter()

    latency = measure_latency(step, device=device, tokens_per_call=tokens, min_run_time_s=cfg.min_run_time_s,
                              min_runs=cfg.min_runs)
    row: dict[str, Any] = {**identity_row(cfg), **latency.as_row()}
    if cfg.memory:
        row.update(measure_peak_memory(step, device=device).as_row())
    if cfg.energy:
        row.update(measure_energy(step, min_duration_s=cfg.energy_min_duration_s,
                                  country_iso_code=cfg.country_iso_code, pue=cfg.pue, device=device).as_row())
    measure_s = time.perf_counter() - measure_start
    report = getattr(model, "factorization_report", None)
    achieved = achieved_gflops(flops, latency.median_ms / 1e3)
    peak = device_peak_gflops(device, cfg.dtype)
    row.update(
        status="ok", error=None, params=count_params(model), flops=flops, achieved_gflops=achieved,
        device_peak_gflops=peak, fraction_of_peak=achieved / peak,
        dense_fallback_layers=len(report.kept_dense) if report else 0,
        measure_s=measure_s, wall_s=time.perf_counter() - start, **provenance(device),
    )
    return row
