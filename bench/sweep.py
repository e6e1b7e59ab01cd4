"""`python -m bench sweep`: expand the grid, skip what is measured, run the rest isolated, record everything.

Every finished point is written at once, atomically, under results/<name>/points/; the tables, figures and
report are rebuilt from those records at the end (and by `python -m bench plot|report` at any time). Fan-out
beyond one process goes through Hydra's launcher plugins (bench/launch.py), not a scheduler of our own.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench import results
from bench.config import BenchConfig, expand_sweep, point_key
from bench.worker import Worker

console = Console()


def sweep_dir_of(cfg: BenchConfig) -> Path:
    return Path(cfg.results_dir) / cfg.name


def _machine(device: str) -> str:
    from bench.measure import machine_identity
    from bench.point import resolve_device

    return machine_identity(resolve_device(device))


def plan(points: list[BenchConfig], base: BenchConfig) -> tuple[list[tuple[str, BenchConfig]], int]:
    """(points still to measure with their keys, number already done).

    Done = a record with status ok under the same key; failed points are retried; overwrite=true re-measures
    all. Order: grouped by model config so the worker reuses each built model, or shuffled with `seed` to keep
    slow machine drift from biasing one model.
    """
    machines = {device: _machine(device) for device in {p.device for p in points}}
    keyed = [(point_key(p, machines[p.device]), p) for p in points]
    existing = {r.get("point_key"): r.get("status") for r in results.read_points(sweep_dir_of(base) / results.POINTS_DIRNAME)}
    todo = [(k, p) for k, p in keyed if base.overwrite or existing.get(k) != "ok"]
    if base.shuffle:
        random.Random(base.seed).shuffle(todo)
    else:
        todo.sort(key=lambda kp: (kp[1].device, kp[1].dtype, kp[1].model, repr(sorted(kp[1].model_overrides().items())),
                                  kp[1].mode, kp[1].batch_size, kp[1].seq_len))
    return todo, len(keyed) - len(todo)


def record_for(cfg: BenchConfig, key: str, outcome: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """A schema row: the worker's figures, or the identity and analytic figures of a failed point."""
    from bench.point import identity_row, provenance, resolve_device

    if outcome.get("status") == "ok":
        row = results.blank_record(**outcome)  # the worker's row already holds identity and provenance
    else:
        row = results.blank_record(**{**identity_row(cfg), **_analytic_figures(cfg),
                                      **provenance(resolve_device(cfg.device)), **outcome, "wall_s": wall_s})
    row.update(point_key=key, config_hash=key, sweep_name=cfg.name,
               country_iso_code=row.get("country_iso_code") or cfg.country_iso_code)
    return row


def _analytic_figures(cfg: BenchConfig) -> dict[str, Any]:
    """params and FLOPs are known without running: failed rows keep them (MEASURED_COLUMNS stay NaN)."""
    from bench.measure.flops import step_flops
    from bench.models import make_config

    model_cfg = make_config(cfg.model, **cfg.model_overrides())
    return {"params": model_cfg.param_count(), "flops": step_flops(model_cfg, cfg.seq_len, cfg.batch_size, cfg.mode)}


def write_sweep_config(base: BenchConfig, overrides: list[str], n_points: int) -> Path:
    """The resolved sweep config beside its results (the command's overrides and the base point)."""
    directory = sweep_dir_of(base)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"overrides": overrides, "points": n_points, "base": asdict(base)}
    path = directory / "sweep.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(payload, sort_keys=False))
    tmp.replace(path)
    return path


def run_points(todo: list[tuple[str, BenchConfig]], base: BenchConfig) -> dict[str, float]:
    """Measure `todo` one by one in a recycled worker, writing each record as soon as it exists."""
    points_dir = sweep_dir_of(base) / results.POINTS_DIRNAME
    points_dir.mkdir(parents=True, exist_ok=True)
    stats = {"ok": 0, "failed": 0, "measure_s": 0.0}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Worker() as worker, Progress(*columns, console=console) as progress:
        task = progress.add_task(base.name, total=len(todo), failed=0)
        for key, cfg in todo:
            progress.update(task, description=f"{base.name}: {cfg.model} {cfg.attention_impl} n={cfg.seq_len} "
                                              f"b={cfg.batch_size} {cfg.mode}")
            start = time.perf_counter()
            outcome = worker.measure(cfg, cfg.timeout_s)
            row = record_for(cfg, key, outcome, time.perf_counter() - start)
            results.write_point(points_dir, row)
            if row["status"] == "ok":
                stats["ok"] += 1
                stats["measure_s"] += float(row.get("measure_s") or 0.0)
            else:
                stats["failed"] += 1
                progress.console.print(f"[red]{row['status']}[/red] {cfg.model} n={cfg.seq_len}: {row['error']}")
            progress.update(task, advance=1, failed=stats["failed"])
    return stats


def run_sweep(overrides: list[str]) -> Path:
    """The whole job: validate every point (bad input writes nothing), measure, consolidate, report."""
    base, points = expand_sweep(overrides)
    if any(o.startswith("hydra/launcher=") for o in overrides):
        from bench.launch import launch

        return launch(base, overrides, points)
    start = time.perf_counter()
    todo, done = plan(points, base)
    write_sweep_config(base, overrides, len(points))
    console.print(f"sweep '{base.name}': {len(points)} points, {done} already measured, {len(todo)} to run "
                  f"→ {sweep_dir_of(base)}")
    try:
        stats = run_points(todo, base)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every finished point is saved; re-run the same command to resume")
        finish(base)
        raise
    wall = time.perf_counter() - start
    finish(base)
    if todo:
        overhead = 1 - stats["measure_s"] / wall if wall else 0.0
        console.print(f"{stats['ok']} ok, {stats['failed']} failed in {wall:.0f} s; harness overhead "
                      f"{overhead:.0%} (time outside measurements: start-up, model builds, bookkeeping)")
    return sweep_dir_of(base)


def finish(base: BenchConfig) -> None:
    """Rebuild the tables, figures and report from the point records, and print the summary."""
    from bench.regenerate import regenerate

    directory = sweep_dir_of(base)
    df = results.consolidate(directory)
    if df.empty:
        return
    print_summary(df)
    try:
        report = regenerate(directory)["report"]
    except Exception as error:  # noqa: BLE001 - the measured rows are safe; figures can be redone with `plot`
        console.print(f"[red]figures/report failed[/red] ({type(error).__name__}: {error}); the results are saved, "
                      f"retry with: python -m bench report {directory}")
        report = None
    console.print(f"results: {directory / results.CSV_NAME}" + (f", report: {report}" if report else ""))


def _print_crossovers(df) -> None:
    """The answer users came for, in one line per configuration: where LRT and Linformer cross."""
    from bench.analysis import find_crossovers

    try:
        crossovers = find_crossovers(df)
    except (KeyError, ValueError):  # too few models or points to compare
        return
    lines = crossovers[crossovers["pair"].astype(str).str.contains("lrt vs linformer")]
    for _, row in lines.iterrows():
        console.print(f"crossover ({row['attention_impl']}, batch {row['batch_size']}, {row['mode']}): {row['description']}")


def print_summary(df) -> None:
    """Median latency (ms) per model × seq_len, one table per attention_impl/batch/mode/dtype."""
    ok = df[df["status"] == "ok"]
    for keys, group in ok.groupby(["attention_impl", "batch_size", "mode", "dtype"], dropna=False):
        pivot = group.pivot_table(index="seq_len", columns="model", values="latency_ms", aggfunc="median")
        table = Table(title=f"latency ms — attention={keys[0]} batch={keys[1]} {keys[2]} {keys[3]}")
        table.add_column("seq_len", justify="right")
        for model in pivot.columns:
            table.add_column(str(model), justify="right")
        for seq_len, row in pivot.iterrows():
            table.add_row(str(seq_len), *(f"{v:.2f}" if v == v else "—" for v in row))
        console.print(table)
    _print_crossovers(df)
    failed = df[df["status"] != "ok"]
    if len(failed):
        console.print(f"[red]{len(failed)} failed points[/red] (status and error are in their rows)")
