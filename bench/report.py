"""A Markdown report from a results table (bench.results schema): environment, crossovers, speed-ups,
winners per seq_len, the thesis check, failed points and the figures. No torch.

Tables are formatted here (:func:`markdown_table`) rather than through ``DataFrame.to_markdown``,
which needs the optional ``tabulate`` package.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench import analysis
from bench.results import FAILED_STATUSES

REPORT_NAME = "report.md"
#: Provenance shown in the environment table, in this order (only those present).
ENV_COLUMNS: tuple[str, ...] = (
    "device_name", "device", "cpu_model", "torch_version", "codecarbon_version", "python_version",
    "energy_source", "memory_method", "country_iso_code", "pue", "git_sha",
)
_ERROR_CHARS = 160


# --- formatting ---------------------------------------------------------------------------------------

def fmt(value: object) -> str:
    """One table cell: missing → '—', booleans → yes/no, floats to 3 significant digits (thousands whole)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.0f}"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def _cell(value: object) -> str:
    text = fmt(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` as a GitHub-flavoured Markdown table (header = column names, no index)."""
    header = [_cell(str(c)) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


#: Always named in a configuration label, even when constant: a reader needs them to read any number.
_LABEL_KEYS: tuple[str, ...] = ("attention_impl", "batch_size", "mode", "dtype")


def _label_keys(df: pd.DataFrame) -> list[str]:
    """Keys that name a configuration: :data:`_LABEL_KEYS` plus any other configuration key that varies."""
    others = [k for k in analysis.CONFIG_KEYS if k not in _LABEL_KEYS]
    return [k for k in _LABEL_KEYS + tuple(others) if k in df.columns
            and (k in _LABEL_KEYS or df[k].nunique(dropna=False) > 1)]


def _label(row: pd.Series | dict, keys: Sequence[str]) -> str:
    """Short name of a configuration, e.g. ``sdpa · b8 · train · float32``."""
    def part(k: str) -> str:
        if k == "batch_size":
            return f"b{fmt(row[k])}"
        return f"{k}={fmt(row[k])}" if k in ("d_model", "n_heads", "d_ff", "n_layers") else fmt(row[k])
    return " · ".join(part(k) for k in keys) or "all"


def _with_label(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    return df.assign(configuration=[_label(r, keys) for _, r in df.iterrows()] if len(df) else [])


# --- sections -----------------------------------------------------------------------------------------

def _environment(df: pd.DataFrame) -> str:
    keys = [k for k in ("sweep_name",) + ENV_COLUMNS if k in df.columns and df[k].notna().any()]
    if not keys:
        return "No provenance recorded."
    env = df[keys].drop_duplicates().reset_index(drop=True)
    # one column per row of env: long provenance values read better down than across
    table = pd.DataFrame({"field": keys, **{f"#{i + 1}" if len(env) > 1 else "value": env.iloc[i].tolist()
                                           for i in range(len(env))}})
    note = ("Energy comes from codecarbon; `energy_source` says how it got power. Without RAPL or a GPU "
            "counter it is an estimate (close to wall time × a constant power), so read energy ratios, "
            "not absolute joules.")
    return markdown_table(table) + "\n\n" + note


def _crossover_table(df: pd.DataFrame, metric: str, keys: Sequence[str]) -> str:
    cross = analysis.find_crossovers(df, metric)
    if cross.empty:
        return f"_No pairs measured for {metric}._"
    cross = _with_label(cross, keys)
    point = [("—" if pd.isna(n) else f"≈ {n:.0f}") for n in cross["crossover_seq_len"]]
    table = pd.DataFrame({
        "configuration": cross["configuration"],
        "pair (a vs b)": cross["pair"],
        "crossover n": point,
        "bracket": [f"{fmt(lo)}–{fmt(hi)}" for lo, hi in zip(cross["lower"], cross["upper"], strict=True)],
        "uncertain": cross["uncertain"].astype(bool),
        "reading": cross["description"],
    })
    return markdown_table(table)


def _speedup_tables(df: pd.DataFrame, keys: Sequence[str]) -> str:
    ratios = analysis.ratios_vs_vanilla(df)
    ratios = ratios[ratios["model"] != "vanilla"]
    if ratios.empty:
        return "_No model was measured together with vanilla._"
    out = []
    for gkeys, g in analysis.groups(ratios):
        wide = {}
        for variant in analysis.variant_order(g["variant"]):
            v = g[g["variant"] == variant].set_index("seq_len")
            wide[f"{variant} speed-up"] = v["speedup"].map(lambda x: f"{fmt(x)}×" if pd.notna(x) else "—")
            if "memory_ratio" in v.columns:
                wide[f"{variant} memory"] = v["memory_ratio"].map(lambda x: f"{fmt(x)}×" if pd.notna(x) else "—")
        table = pd.DataFrame(wide).sort_index().fillna("—").rename_axis("n").reset_index()
        heading = f"**{_label(gkeys, keys)}**\n\n" if keys else ""
        out.append(heading + markdown_table(table))
    return "\n\n".join(out)


def _winners_table(df: pd.DataFrame, metric: str, keys: Sequence[str]) -> str:
    win = analysis.winners(df, metric)
    if win.empty:
        return f"_Nothing measured for {metric}._"
    win = _with_label(win, keys)
    win["cell"] = [f"{w} ({fmt(m)}×)" if pd.notna(m) else str(w)
                   for w, m in zip(win["winner"], win["margin"], strict=True)]
    wide = win.pivot_table(index="seq_len", columns="configuration", values="cell", aggfunc="first", sort=False)
    wide = wide.sort_index().fillna("—").rename_axis(columns=None).rename_axis("n").reset_index()
    return markdown_table(wide)


def _thesis_table(df: pd.DataFrame, keys: Sequence[str]) -> str:
    checks = pd.concat([analysis.thesis_check(df, m) for m in ("latency_ms", "peak_mem_mb")
                        if m in df.columns], ignore_index=True)
    if checks.empty:
        return "_Needs vanilla, lrt and linformer measured in one configuration._"
    checks = _with_label(checks, keys)
    table = pd.DataFrame({
        "configuration": checks["configuration"],
        "metric": checks["metric"],
        "LRT best at every n ≤ 512": checks["lrt_wins_short"],
        "Linformer best at every n ≥ 512": checks["linformer_wins_long"],
        "holds (either at 512)": checks["holds"],
        "exceptions (n: winner)": checks["exceptions"].replace("", "—"),
        "lrt vs linformer": checks["crossover"],
    }).astype(object)
    return markdown_table(table)


def _failed_table(df: pd.DataFrame) -> str:
    if "status" not in df.columns:
        return "None."
    failed = analysis.with_variants(df)
    failed = failed[failed["status"].isin(FAILED_STATUSES)]
    if failed.empty:
        return "None: every attempted point finished."
    cols = [c for c in ("variant", "attention_impl", "seq_len", "batch_size", "mode", "dtype", "status")
            if c in failed.columns]
    failed = failed.sort_values([c for c in ("attention_impl", "variant", "seq_len") if c in cols])
    table = failed[cols].rename(columns={"variant": "model"}).astype(object)
    errors = failed["error"] if "error" in failed.columns else pd.Series("", index=failed.index)
    table["error"] = [_error_line(e) for e in errors]
    return markdown_table(table)


def _error_line(error: object) -> str:
    """The telling line of an error text: a traceback's last line (the exception), else the first."""
    if error is None or (isinstance(error, float) and math.isnan(error)) or not str(error).strip():
        return "—"
    lines = str(error).strip().splitlines()
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line[:_ERROR_CHARS] + ("…" if len(line) > _ERROR_CHARS else "")


def _figures(figures: Sequence[Path], out_dir: Path) -> str:
    if not figures:
        return "_No figures (run `python -m bench plot RESULTS_DIR`)._"
    by_stem: dict[str, dict[str, str]] = {}
    for f in figures:
        rel = Path(os.path.relpath(Path(f).resolve(), out_dir.resolve())).as_posix()
        by_stem.setdefault(Path(f).stem, {})[Path(f).suffix.lstrip(".")] = rel
    out = []
    for stem, files in by_stem.items():
        links = " · ".join(f"[{fmt_}]({rel})" for fmt_, rel in sorted(files.items()))
        image = f"![{stem}]({files['png']})\n\n" if "png" in files else ""
        out.append(f"### {stem}\n\n{image}{links}")
    return "\n\n".join(out)


def _summary(df: pd.DataFrame) -> str:
    counts = df["status"].value_counts() if "status" in df.columns else pd.Series(dtype=int)
    parts = [f"{int(counts.get(s, 0))} {s}" for s in ("ok",) + FAILED_STATUSES + ("skipped",) if counts.get(s, 0)]
    sweeps = ", ".join(f"`{s}`" for s in df["sweep_name"].dropna().unique()) if "sweep_name" in df.columns else ""
    text = f"{len(df)} points ({', '.join(parts) or 'no status'})"
    return text + (f" from sweep {sweeps}." if sweeps else ".")


def write_report(df: pd.DataFrame, out_dir: Path, figures: list[Path] | None = None) -> Path:
    """Write ``out_dir/report.md`` for ``df`` and return its path; figure links are relative to out_dir.

    Crossovers, winners, speed-ups and the thesis check come from :mod:`bench.analysis`; see there
    for the formulas. Configurations are named by the keys that vary across the table.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = _label_keys(df)
    sections = [
        ("Greenformers benchmark report", _summary(df), 1),
        ("Environment", _environment(df), 2),
        ("Crossovers", (
            "Where the ratio a/b of two models crosses 1, interpolated linearly on log2(n) between the two "
            "measured points around it. Where the latency spread (each side's median ± IQR/2) lets the ratio "
            "cover 1 at a bracketing point, only the bracket is given.\n\n"
            "**Latency**\n\n" + _crossover_table(df, "latency_ms", keys)
            + "\n\n**Peak memory**\n\n" + _crossover_table(df, "peak_mem_mb", keys)), 2),
        ("Speed-up and memory saving vs vanilla",
         "`speed-up = latency(vanilla) / latency(model)`, `memory = peak(vanilla) / peak(model)`; "
         "above 1× the model is cheaper.\n\n" + _speedup_tables(df, keys), 2),
        ("Winners per sequence length",
         "Lowest median per n; in brackets, the runner-up's value over the winner's.\n\n"
         "**Latency**\n\n" + _winners_table(df, "latency_ms", keys)
         + "\n\n**Peak memory**\n\n" + _winners_table(df, "peak_mem_mb", keys), 2),
        ("Thesis check",
         "Greenformers (arXiv 2108.10808): LRT is the better choice for n ≤ 512, Linformer for n ≥ 512. "
         "Checked among vanilla, lrt and linformer, separately per attention implementation.\n\n"
         + _thesis_table(df, keys), 2),
        ("Failed points", _failed_table(df), 2),
        ("Figures", _figures(list(figures or []), out_dir), 2),
    ]
    text = "\n\n".join(f"{'#' * level} {title}\n\n{body}" for title, body, level in sections) + "\n"
    path = out_dir / REPORT_NAME
    tmp = path.with_name(f".{REPORT_NAME}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
