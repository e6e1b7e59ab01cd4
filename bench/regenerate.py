"""Regenerate figures and the report from stored results: the body of ``python -m bench plot|report``.

Nothing on this path imports torch (tested): plotting stored results must take seconds and work on a
machine without the measuring stack.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.plots import FORMATS, plot_all
from bench.report import write_report
from bench.results import load

FIGURES_DIRNAME = "figures"
WHAT: tuple[str, ...] = ("all", "plot", "report")


def regenerate(results_dir: Path | str, what: str = "all") -> dict:
    """Load ``results_dir`` (a sweep folder or a folder of sweeps, see :func:`bench.results.load`) and write
    ``<results_dir>/figures/*`` (``what`` = "plot"), ``<results_dir>/report.md`` ("report", linking the
    figures already there) or both ("all").

    Returns ``{"results_dir", "rows", "figures", "report", "seconds"}``. Raises ValueError when there is
    nothing to regenerate from (the CLI maps it to exit status 2) or ``what`` is unknown.
    """
    if what not in WHAT:
        raise ValueError(f"what={what!r}: expected one of {', '.join(WHAT)}")
    start = time.perf_counter()
    results_dir = Path(results_dir)
    try:
        df = load(results_dir)
    except FileNotFoundError:
        df = None
    if df is None or df.empty:
        raise ValueError(f"results_dir='{results_dir}': no results found")
    fig_dir = results_dir / FIGURES_DIRNAME
    if what in ("all", "plot"):
        figures = plot_all(df, fig_dir)
    else:
        figures = sorted(p for p in fig_dir.glob("*") if p.suffix.lstrip(".") in FORMATS) if fig_dir.is_dir() else []
    report = write_report(df, results_dir, figures) if what in ("all", "report") else None
    return {"results_dir": results_dir, "rows": len(df), "figures": figures, "report": report,
            "seconds": time.perf_counter() - start}
