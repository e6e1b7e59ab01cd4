"""`python -m bench {run,sweep,plot,report,estimate} [hydra overrides | RESULTS_DIR]`: parse and dispatch only.

The subcommand is taken off argv before Hydra sees it (a bare subcommand breaks @hydra.main's parser,
FACTS.md). Bad input — a ValueError from any layer, each naming its key and value — prints one line and
exits 2, before anything is written.
"""

from __future__ import annotations

import sys

USAGE = """usage: python -m bench COMMAND [ARGS]

  sweep [overrides]      measure a grid (default preset: sweep=cpu), e.g. seq_len=range(64,4097,64) model=vanilla,lrt
  run [overrides]        measure one point, e.g. model=lrt seq_len=1024 mode=train format=json
  plot RESULTS_DIR       regenerate the figures from stored results (no re-run)
  report RESULTS_DIR     regenerate figures and report.md from stored results (no re-run)
  estimate [overrides]   BERT-base training cost, vanilla vs LRT/Linformer, e.g. rank=128 format=json

Overrides use Hydra's grammar: key=value, key=a,b,c, key=range(start,stop,step); groups: model, size, device, sweep.
"""


def _run(overrides: list[str]) -> None:
    import json
    import time

    from bench.config import load_point, point_key
    from bench.measure import machine_identity
    from bench.point import measure_point, resolve_device
    from bench.sweep import record_for

    cfg = load_point(overrides)
    key = point_key(cfg, machine_identity(resolve_device(cfg.device)))
    start = time.perf_counter()
    try:
        outcome = measure_point(cfg)
    except Exception as error:  # noqa: BLE001 - a failed measurement is a result, reported like a sweep's row
        outcome = {"status": "error", "error": f"{type(error).__name__}: {error}"}
    row = record_for(cfg, key, outcome, time.perf_counter() - start)
    if cfg.format == "json":
        print(json.dumps({k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}, default=str))
    else:
        _print_point(row)
    if row["status"] != "ok":
        sys.exit(1)


def _print_point(row: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def num(key: str, spec: str) -> str:
        value = row.get(key)
        return "—" if value is None or value != value else format(value, spec)

    table = Table(title=f"{row['model']} · n={row['seq_len']} · batch={row['batch_size']} · {row['mode']} · "
                        f"{row['attention_impl']} · {row['device']} {row['dtype']}", show_header=False)
    shown = [("status", row["status"]), ("error", row.get("error")), ("params", num("params", ",")),
             ("FLOPs / step", num("flops", ".3e"))]
    if row["status"] == "ok":
        shown += [("latency (median)", f"{num('latency_ms', '.3f')} ms  (IQR {num('latency_iqr_ms', '.3f')}, "
                                       f"p90 {num('latency_p90_ms', '.3f')}, {row['latency_runs']} runs)"),
                  ("throughput", f"{num('tokens_per_s', ',.0f')} tokens/s, {num('achieved_gflops', '.1f')} GFLOP/s "
                                 f"({num('fraction_of_peak', '.0%')} of this device's matmul peak)"),
                  ("peak memory", f"{num('peak_mem_mb', '.1f')} MiB ({row.get('memory_method') or 'not measured'})"),
                  ("energy / step", f"{num('energy_kwh', '.3e')} kWh, {num('co2_kg', '.3e')} kg CO2e "
                                    f"({row.get('energy_source') or 'not measured'}, {row.get('country_iso_code')})"),
                  ("device", row.get("device_name"))]
    for name, value in shown:
        if value is not None:
            table.add_row(name, str(value))
    Console().print(table)


def _regenerate(args: list[str], what: str) -> None:
    from bench.regenerate import regenerate

    if len(args) != 1:
        raise ValueError(f"{what} takes one RESULTS_DIR, got {len(args)} arguments: {' '.join(args) or '(none)'}")
    out = regenerate(args[0], "plot" if what == "plot" else "all")
    print(f"{out['rows']} rows → {len(out['figures'])} figure files"
          + (f", {out['report']}" if out["report"] else "") + f" in {out['seconds']:.1f} s")


def _estimate(overrides: list[str]) -> None:
    from bench.estimate import estimate_from_overrides

    print(estimate_from_overrides(overrides))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, args = argv[0], argv[1:]
    commands = {
        "run": _run,
        "sweep": lambda a: __import__("bench.sweep", fromlist=["run_sweep"]).run_sweep(a),
        "plot": lambda a: _regenerate(a, "plot"),
        "report": lambda a: _regenerate(a, "report"),
        "estimate": _estimate,
    }
    if command not in commands:
        print(f"error: command={command!r}: expected one of {', '.join(commands)}", file=sys.stderr)
        sys.exit(2)
    try:
        commands[command](args)
    except ValueError as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `python -m bench estimate | head`: the reader left, nothing to report
        sys.stderr.close()
        sys.exit(0)


if __name__ == "__main__":
    main()
