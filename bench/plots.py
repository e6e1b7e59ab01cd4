"""Figures from a results table (bench.results schema), with matplotlib only (no torch).

Figures are built as :class:`matplotlib.figure.Figure` objects, not through pyplot: no global figure
registry to leak or close, no GUI backend needed (saving uses Agg for PNG), and a notebook that set its
own backend is left alone. Each builder returns its Figure so tests and notebooks can inspect it.

Layout: one file per figure kind and (batch_size, mode, dtype) combination — plus sweep, hardware and
model size when a table holds several — with one subplot per ``attention_impl``. Points that failed
(oom / timeout / error) are drawn as 'x' markers along the top of the axes, never dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from bench import analysis
from bench.results import FAILED_STATUSES

#: One colour per model, the same in every figure (Okabe–Ito palette: distinguishable by colour-blind
#: readers). Variants of one model (several ranks or k) share its colour and differ by line style.
MODEL_COLORS: dict[str, str] = {
    "vanilla": "#000000",
    "lrt": "#009E73",
    "linformer": "#0072B2",
    "lrt_linformer": "#D55E00",
}
_OTHER_COLOR = "#999999"
_LINESTYLES = ("-", "--", "-.", ":")

FAILED_LABEL = "failed (oom / timeout / error)"
BOUNDARY_LABEL = f"n = {analysis.THESIS_BOUNDARY} (thesis boundary)"
FORMATS: tuple[str, ...] = ("png", "svg")
FACET_KEY = "attention_impl"
#: What one file holds: every configuration key but the facet.
FILE_KEYS: tuple[str, ...] = tuple(k for k in analysis.CONFIG_KEYS if k != FACET_KEY)
#: Parameter counts do not depend on batch, mode, dtype or attention path: one bar chart per model size.
PARAMS_KEYS: tuple[str, ...] = ("sweep_name", "device_name", "d_model", "n_heads", "d_ff", "n_layers")
_SEQ_LABEL = "sequence length n (tokens)"


def model_color(model: str) -> str:
    """Colour of ``model`` (grey for models this suite does not know)."""
    return MODEL_COLORS.get(model, _OTHER_COLOR)


def _model_of(variant: str) -> str:
    return variant.split(" (")[0]


def _style(variant: str, variants: Sequence[str]) -> dict:
    model = _model_of(variant)
    siblings = [v for v in variants if _model_of(v) == model]
    ls = _LINESTYLES[siblings.index(variant) % len(_LINESTYLES)] if variant in siblings else "-"
    return dict(color=model_color(model), linestyle=ls, marker="o", markersize=4, linewidth=1.8)


# --- splitting a table into figures -------------------------------------------------------------------

def combinations(df: pd.DataFrame) -> Iterator[tuple[dict, pd.DataFrame]]:
    """Yield ``(keys, rows)`` per figure file: one per combination of :data:`FILE_KEYS`."""
    yield from analysis.groups(df, FILE_KEYS)


def _one_combination(df: pd.DataFrame, keys: Sequence[str]) -> None:
    parts = list(analysis.groups(df, keys))
    if len(parts) > 1:
        varying = [k for k in keys if k in df.columns and df[k].nunique(dropna=False) > 1]
        raise ValueError(f"table holds {len(parts)} combinations of {', '.join(varying)}: "
                         f"select one, or use plot_all()")


def _slug(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-").lower() or "na"


def _file_stem(kind: str, keys: dict, df: pd.DataFrame, always: Sequence[str]) -> str:
    """``kind`` + the key values naming the combination: the ``always`` keys (in that order), then any
    other key that varies in ``df`` (e.g. two sweeps or two model sizes in one table)."""
    prefix = {"batch_size": "b", "d_model": "d", "n_layers": "l", "n_heads": "h", "d_ff": "ff"}
    names = [k for k in always if k in keys] + [k for k in keys if k not in always
                                                and df[k].nunique(dropna=False) > 1]
    return "_".join([kind] + [prefix.get(k, "") + _slug(keys[k]) for k in names])


def _unique(df: pd.DataFrame, col: str) -> str:
    if col not in df.columns:
        return ""
    vals = [str(v) for v in df[col].dropna().unique()]
    return ", ".join(vals)


def _hardware(df: pd.DataFrame) -> str:
    return _unique(df, "device_name") or _unique(df, "cpu_model") or _unique(df, "device") or "unknown hardware"


def _subtitle(df: pd.DataFrame) -> str:
    bits = [_hardware(df)]
    for col, fmt in (("batch_size", "batch {}"), ("mode", "{}"), ("dtype", "{}")):
        if _unique(df, col):
            bits.append(fmt.format(_unique(df, col)))
    if _unique(df, "d_model"):
        bits.append(f"d_model {_unique(df, 'd_model')}, {_unique(df, 'n_layers')} layers")
    return " · ".join(bits)


# --- axes helpers -------------------------------------------------------------------------------------

def _facets(df: pd.DataFrame, title: str, extra_subtitle: str = ""
            ) -> tuple[Figure, list[tuple[str, Axes, pd.DataFrame]]]:
    """A figure with one subplot per attention_impl; returns it and (impl, axes, rows) per subplot."""
    impls = sorted(df[FACET_KEY].dropna().unique()) if FACET_KEY in df.columns else []
    impls = impls or ["?"]
    fig = Figure(figsize=(4.8 * len(impls) + 2.4, 4.4), layout="constrained")
    axes = fig.subplots(1, len(impls), sharey=True, squeeze=False)[0]
    sub = _subtitle(df) + (f"\n{extra_subtitle}" if extra_subtitle else "")
    fig.suptitle(f"{title}\n{sub}", fontsize=10)
    panels = []
    for impl, ax in zip(impls, axes, strict=True):
        rows = df[df[FACET_KEY] == impl] if impl != "?" else df
        ax.set_title(f"attention_impl = {impl}", fontsize=10)
        panels.append((str(impl), ax, rows))
    return fig, panels


def _seq_axis(ax: Axes, seq_lens: Sequence[float]) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted({int(n) for n in seq_lens if pd.notna(n)})
    if ticks and len(ticks) <= 12:
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(_SEQ_LABEL)
    ax.grid(True, which="major", alpha=0.3)


def _draw_failed(ax: Axes, rows: pd.DataFrame, variants: Sequence[str]) -> int:
    """'x' per failed point, along the top of the axes (y in axes units, so any y scale works);
    stacked downwards per variant so that two failed models at one n stay visible. Returns the count."""
    failed = rows[rows["status"].isin(FAILED_STATUSES)] if "status" in rows.columns else rows.iloc[:0]
    drawn = 0
    for i, variant in enumerate(variants):
        f = failed[failed["variant"] == variant]
        if f.empty:
            continue
        y = 0.96 - 0.05 * i
        ax.plot(f["seq_len"].astype(float), [y] * len(f), transform=ax.get_xaxis_transform(),
                linestyle="none", marker="x", markersize=8, markeredgewidth=2, clip_on=False,
                color=model_color(_model_of(variant)), label=f"_failed {variant}", gid="failed")
        for n, status in zip(f["seq_len"].astype(float), f["status"], strict=True):
            ax.annotate(str(status), (n, y), xycoords=ax.get_xaxis_transform(), xytext=(5, -3),
                        textcoords="offset points", fontsize=6, color=model_color(_model_of(variant)))
        drawn += len(f)
    return drawn


def _legend(fig: Figure, extra: Sequence = ()) -> None:
    handles, labels = [], []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    for h in extra:
        if h.get_label() not in labels:
            handles.append(h)
            labels.append(h.get_label())
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)


def _failed_proxy() -> Line2D:
    return Line2D([], [], linestyle="none", marker="x", markersize=8, markeredgewidth=2, color="0.3",
                  label=FAILED_LABEL)


# --- metric vs seq_len --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricSpec:
    """One y quantity of a "metric vs seq_len" figure."""
    kind: str  #: file-name stem
    title: str
    ylabel: str
    column: str  #: the results column it is computed from (to tell whether there is anything to draw)
    value: Callable[[pd.DataFrame], pd.Series]
    spread: Callable[[pd.DataFrame], pd.Series] | None = None  #: IQR in the same units as value


def _energy_per_token(df: pd.DataFrame) -> pd.Series:
    # kWh per step → joules per token: 1 kWh = 3.6e6 J; a step processes batch_size · seq_len tokens.
    return df["energy_kwh"] * 3.6e6 / (df["batch_size"].astype(float) * df["seq_len"].astype(float))


LATENCY = MetricSpec("latency", "Latency vs sequence length", "latency per step (ms, median; band = IQR)",
                     "latency_ms", lambda d: d["latency_ms"], lambda d: d["latency_iqr_ms"])
MEMORY = MetricSpec("memory", "Peak memory vs sequence length", "peak memory (MB)",
                    "peak_mem_mb", lambda d: d["peak_mem_mb"])
ENERGY = MetricSpec("energy", "Energy per token vs sequence length", "energy per token (J)",
                    "energy_kwh", _energy_per_token)
METRICS: tuple[MetricSpec, ...] = (LATENCY, MEMORY, ENERGY)


def metric_figure(df: pd.DataFrame, spec: MetricSpec) -> Figure:
    """``spec`` vs seq_len, log–log, one line per variant (median per seq_len), one subplot per
    attention_impl; failed points as 'x' at the top. ``df`` must hold one :func:`combinations` entry."""
    _one_combination(df, FILE_KEYS)
    df = analysis.with_variants(df)
    extra = ""
    if spec is ENERGY and _unique(df, "energy_source"):
        extra = f"energy source: {_unique(df, 'energy_source')}"
    fig, panels = _facets(df, spec.title, extra)
    variants = analysis.variant_order(df["variant"].dropna())
    n_failed = 0
    for _, ax, rows in panels:
        ok = analysis.ok_rows(rows, spec.column)
        ok = ok.assign(_y=spec.value(ok).astype(float),
                       _s=spec.spread(ok).astype(float) if spec.spread else np.nan)
        med = analysis.medians(ok, ["_y", "_s"])
        for variant in variants:
            line = med[med["variant"] == variant]
            if line.empty:
                continue
            x = line["seq_len"].astype(float).to_numpy()
            y = line["_y"].to_numpy()
            ax.plot(x, y, label=variant, **_style(variant, variants))
            s = np.nan_to_num(line["_s"].to_numpy())
            if s.any():
                ax.fill_between(x, np.maximum(y - s / 2, y * 1e-3), y + s / 2, alpha=0.15, linewidth=0,
                                color=model_color(_model_of(variant)))
        n_failed += _draw_failed(ax, rows, variants)
        _seq_axis(ax, rows["seq_len"].astype(float))
        ax.set_yscale("log")
    fig.axes[0].set_ylabel(spec.ylabel)
    _legend(fig, [_failed_proxy()] if n_failed else [])
    return fig


def latency_figure(df: pd.DataFrame) -> Figure:
    """Median latency per step (ms) vs seq_len, log–log, IQR as a band."""
    return metric_figure(df, LATENCY)


def memory_figure(df: pd.DataFrame) -> Figure:
    """Peak memory (MB) vs seq_len, log–log."""
    return metric_figure(df, MEMORY)


def energy_figure(df: pd.DataFrame) -> Figure:
    """Energy per token vs seq_len, log–log: ``energy_kwh · 3.6e6 / (batch_size · seq_len)`` joules."""
    return metric_figure(df, ENERGY)


# --- speed-up -----------------------------------------------------------------------------------------

def _at(ratios: pd.DataFrame, variant: str, n: float) -> float:
    """A variant's speed-up at seq_len n, interpolated like the crossovers (log–log)."""
    line = ratios[ratios["variant"] == variant].dropna(subset=["speedup"]).sort_values("seq_len")
    x = np.log2(line["seq_len"].astype(float).to_numpy())
    return float(np.exp(np.interp(math.log2(n), x, np.log(line["speedup"].to_numpy(float)))))


def speedup_figure(df: pd.DataFrame) -> Figure:
    """Speed-up over vanilla (``latency_ms(vanilla) / latency_ms(model)``) vs seq_len, log–log, with a
    line at 1× (vanilla), a reference line at n = 512, and the crossovers of :func:`analysis.find_crossovers`:
    hollow circles where a model crosses vanilla, diamonds where LRT and Linformer cross, shaded spans
    where the spread only allows a bracket."""
    _one_combination(df, FILE_KEYS)
    df = analysis.with_variants(df)
    fig, panels = _facets(df, "Speed-up over vanilla vs sequence length")
    variants = [v for v in analysis.variant_order(df["variant"].dropna()) if _model_of(v) != "vanilla"]
    ratios = analysis.ratios_vs_vanilla(df)
    cross = analysis.find_crossovers(df, "latency_ms")
    n_failed, extra = 0, {}
    for impl, ax, rows in panels:
        r = ratios[ratios[FACET_KEY] == impl] if FACET_KEY in ratios.columns else ratios
        c = cross[cross[FACET_KEY] == impl] if FACET_KEY in cross.columns else cross
        for variant in variants:
            line = r[r["variant"] == variant].dropna(subset=["speedup"])
            if not line.empty:
                ax.plot(line["seq_len"].astype(float), line["speedup"], label=variant, **_style(variant, variants))
        ax.axhline(1.0, color=model_color("vanilla"), linestyle="--", linewidth=1, label="vanilla (1×)")
        ax.axvline(analysis.THESIS_BOUNDARY, color="0.5", linestyle=":", linewidth=1.2, label=BOUNDARY_LABEL)
        for _, row in c.iterrows():
            vs_vanilla = row["b"] == "vanilla"
            if not (vs_vanilla or {_model_of(row["a"]), _model_of(row["b"])} == {"lrt", "linformer"}):
                continue
            color = model_color(_model_of(row["a"])) if vs_vanilla else "0.2"
            if row["uncertain"] and row["winner_below"] != row["winner_above"]:
                ax.axvspan(row["lower"], row["upper"], color=color, alpha=0.1, linewidth=0, gid="crossover")
                extra["span"] = Patch(color="0.2", alpha=0.15, label="crossover within noise (bracket)")
            elif pd.notna(row["crossover_seq_len"]):
                x = row["crossover_seq_len"]
                if vs_vanilla:
                    ax.plot([x], [1.0], linestyle="none", marker="o", markersize=9, markerfacecolor="none",
                            markeredgecolor=color, markeredgewidth=2, label="_crossover", gid="crossover")
                    extra["vs"] = Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
                                         markeredgecolor="0.2", markeredgewidth=2, label="crossover with vanilla")
                else:
                    ax.plot([x], [_at(r, row["a"], x)], linestyle="none", marker="D", markersize=7,
                            markerfacecolor="white", markeredgecolor=color, markeredgewidth=1.5,
                            label="_crossover", gid="crossover")
                    extra["ll"] = Line2D([], [], linestyle="none", marker="D", markerfacecolor="white",
                                         markeredgecolor="0.2", label="lrt = linformer")
        # vanilla's failures too: where the reference died, the speed-up has no finite value to draw
        n_failed += _draw_failed(ax, rows, analysis.variant_order(df["variant"].dropna()))
        _seq_axis(ax, rows["seq_len"].astype(float))
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_locator(LogLocator(base=2))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.yaxis.set_minor_locator(NullLocator())
    fig.axes[0].set_ylabel("speed-up over vanilla (×, > 1 is faster)")
    _legend(fig, list(extra.values()) + ([_failed_proxy()] if n_failed else []))
    return fig


# --- parameters ---------------------------------------------------------------------------------------

def params_figure(df: pd.DataFrame) -> Figure:
    """Parameter count per variant (bars), labelled with millions and the ratio to vanilla.

    Linformer's E/F projections are k × n, so its count grows with n: all bars are taken at
    n = 512 when measured (the thesis boundary), else at the longest common n."""
    _one_combination(df, PARAMS_KEYS)
    df = analysis.with_variants(df)
    rows = df[df["params"].notna()] if "params" in df.columns else df.iloc[:0]
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    note = ""
    if not rows.empty:
        lens = sorted(rows["seq_len"].dropna().astype(float).unique())
        if rows.groupby("variant")["params"].nunique().max() > 1:
            at = analysis.THESIS_BOUNDARY if analysis.THESIS_BOUNDARY in lens else lens[-1]
            rows = rows[rows["seq_len"].astype(float) == at]
            note = f" (at n = {at:g}: Linformer's projections grow with n)"
    per = rows.groupby("variant")["params"].median()
    variants = analysis.variant_order(per.index)
    values = [float(per[v]) for v in variants]
    top = max(values, default=0.0)
    scale, unit, word = next(s for s in ((1e6, "M", "millions"), (1e3, "k", "thousands"), (1, "", "count"))
                             if top >= s[0] or s[0] == 1)
    bars = ax.bar(variants, [v / scale for v in values], color=[model_color(_model_of(v)) for v in variants])
    base = float(per["vanilla"]) if "vanilla" in per.index else None
    labels = [f"{v / scale:.3g} {unit}".strip() + (f"\n{v / base:.2f}× vanilla" if base else "") for v in values]
    ax.bar_label(bars, labels=labels, fontsize=8)
    ax.set_ylabel(f"parameters ({word})")
    ax.set_xlabel("model")
    ax.margins(y=0.2)
    impls = _unique(df, FACET_KEY) or "any"
    fig.suptitle(f"Parameters per model{note}\n{_hardware(df)} · attention_impl: {impls}", fontsize=10)
    return fig


# --- everything ---------------------------------------------------------------------------------------

def save(fig: Figure, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Save ``fig`` as ``stem.<fmt>`` for each format; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        # No creation date in SVGs, so regenerating unchanged results gives unchanged files.
        metadata = {"Date": None} if fmt == "svg" else None
        fig.savefig(path, dpi=150, metadata=metadata)
        paths.append(path)
    return paths


def _drawable(df: pd.DataFrame, column: str) -> bool:
    has_value = column in df.columns and df[column].notna().any()
    has_failed = "status" in df.columns and df["status"].isin(FAILED_STATUSES).any()
    return has_value or has_failed


def plot_all(df: pd.DataFrame, out_dir: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write every figure for ``df`` into ``out_dir``; returns the files written.

    Per (batch_size, mode, dtype) combination (and sweep / hardware / model size where they vary):
    ``latency_<combo>``, ``memory_<combo>``, ``energy_<combo>``, ``speedup_<combo>``; per model size:
    ``params[_<size>]``; each as PNG and SVG. A figure whose metric was never measured is skipped.
    """
    out_dir = Path(out_dir)
    df = analysis.with_variants(df)
    paths: list[Path] = []
    for keys, rows in combinations(df):
        name = lambda kind: _file_stem(kind, keys, df, always=("batch_size", "mode", "dtype"))  # noqa: E731
        for spec in METRICS:
            if _drawable(rows, spec.column):
                paths += save(metric_figure(rows, spec), out_dir / name(spec.kind), formats)
        if _drawable(rows, "latency_ms") and (rows["model"] == "vanilla").any():
            paths += save(speedup_figure(rows), out_dir / name("speedup"), formats)
    for keys, rows in analysis.groups(df, PARAMS_KEYS):
        if _drawable(rows, "params") and rows["params"].notna().any():
            paths += save(params_figure(rows), out_dir / _file_stem("params", keys, df, always=()), formats)
    return paths
