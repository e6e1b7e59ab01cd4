"""Fan-out beyond one process through Hydra's own launcher plugins (FACTS.md, "Hydra").

`python -m bench sweep ... hydra/launcher=submitit_local` (or `submitit_slurm`, `joblib`, `ray` when their
plugins are installed) hands the same grid to Hydra's multirun: Hydra's BasicSweeper expands it exactly as
bench.config.expand_sweep does, and each job measures its one point in an isolated worker and writes its
record atomically, so parallel jobs writing one results folder never corrupt it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bench import results
from bench.config import CONF_DIR, BenchConfig, point_key, to_config


def run_job(node: DictConfig) -> str:
    """One Hydra job = one point: skipped when already measured ok here, else measured and recorded."""
    from bench.measure import machine_identity
    from bench.point import resolve_device
    from bench.sweep import record_for, sweep_dir_of
    from bench.worker import Worker

    cfg = to_config(node)
    key = point_key(cfg, machine_identity(resolve_device(cfg.device)))
    points_dir = sweep_dir_of(cfg) / results.POINTS_DIRNAME
    if not cfg.overwrite and results.point_status(points_dir, key) == "ok":
        return "skipped"
    start = time.perf_counter()
    with Worker() as worker:
        outcome = worker.measure(cfg, cfg.timeout_s)
    row = record_for(cfg, key, outcome, time.perf_counter() - start)
    results.write_point(points_dir, row)
    return row["status"]


def launch(base: BenchConfig, overrides: list[str], points: list[BenchConfig]) -> Path:
    """Run the grid through Hydra's multirun with the launcher named in `overrides`, then consolidate."""
    from bench.sweep import finish, sweep_dir_of, write_sweep_config

    directory = sweep_dir_of(base).resolve()
    write_sweep_config(base, overrides, len(points))
    argv = [sys.argv[0], "--multirun", *overrides, f"results_dir={directory.parent}",
            f"hydra.sweep.dir={directory / 'hydra'}", "hydra.sweep.subdir=${hydra.job.num}"]
    entry = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(run_job)
    saved, sys.argv = sys.argv, argv
    try:
        entry()
    finally:
        sys.argv = saved
    finish(base)
    return directory
