"""Pure functions of a results table (bench.results schema): ratios, crossovers, winners, the thesis check.

Conventions used throughout:

- Only rows with ``status == "ok"`` and a value for the metric take part.
- A *configuration group* is everything that must be equal for two rows to be compared: see
  :data:`CONFIG_KEYS`. It includes ``sweep_name`` and ``device_name`` because these machines are shared
  and noisy, so times are compared as ratios within one run, never across runs (FACTS.md, "Measuring on
  CPU").
- A *variant* is a model plus the knobs that matter to it (rank for LRT, k and sharing for Linformer).
  When a table holds one variant per model, the variant is just the model name.
- Several rows for the same variant, group and seq_len (e.g. repeats) are reduced to their median.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

#: Columns that must match for two rows to be compared (only those present in a table are used).
CONFIG_KEYS: tuple[str, ...] = (
    "sweep_name", "device_name", "device", "dtype", "mode", "batch_size", "attention_impl",
    "d_model", "n_heads", "d_ff", "n_layers",
)

MODELS: tuple[str, ...] = ("vanilla", "lrt", "linformer", "lrt_linformer")
#: The knobs that distinguish variants of each model (others are ignored: a sweep may record
#: ``linformer_k`` on vanilla rows too, where it means nothing).
MODEL_KNOBS: dict[str, tuple[str, ...]] = {
    "vanilla": (),
    "lrt": ("rank",),
    "linformer": ("linformer_k", "linformer_sharing"),
    "lrt_linformer": ("rank", "linformer_k", "linformer_sharing"),
}
_KNOB_LABEL = {"rank": "r", "linformer_k": "k", "linformer_sharing": ""}

#: Model pairs (a, b) whose ratio a/b is searched for a crossing of 1.
PAIRS: tuple[tuple[str, str], ...] = (
    ("lrt", "linformer"),
    ("lrt", "vanilla"),
    ("linformer", "vanilla"),
    ("lrt_linformer", "vanilla"),
)

#: Metric → the column holding its spread, read as the interval [median − iqr/2, median + iqr/2].
SPREAD: dict[str, str] = {"latency_ms": "latency_iqr_ms"}
#: Metric → what "a has the lower value" means, for sentences.
BETTER: dict[str, str] = {
    "latency_ms": "faster",
    "peak_mem_mb": "uses less memory",
    "energy_kwh": "uses less energy",
}

#: The thesis's boundary between short and long sequences (Greenformers abstract: LRT for ≤ 512,
#: Linformer for ≥ 512).
THESIS_BOUNDARY = 512


# --- shared helpers -----------------------------------------------------------------------------------

def config_keys(df: pd.DataFrame) -> list[str]:
    """The :data:`CONFIG_KEYS` present in ``df``."""
    return [k for k in CONFIG_KEYS if k in df.columns]


def _fmt_knob(name: str, value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{_KNOB_LABEL[name]}={value}" if _KNOB_LABEL[name] else str(value)


def variant_labels(df: pd.DataFrame) -> pd.Series:
    """Label per row: the model name, plus its knobs where the table holds several variants of it.

    E.g. ``lrt`` when every LRT row has one rank; ``lrt (r=128)`` / ``lrt (r=256)`` when there are two.
    """
    labels = df["model"].astype(object).copy()
    for model, knobs in MODEL_KNOBS.items():
        knobs = tuple(k for k in knobs if k in df.columns)
        rows = df["model"] == model
        if not knobs or not rows.any():
            continue
        varying = [k for k in knobs if df.loc[rows, k].nunique(dropna=False) > 1]
        if not varying:
            continue
        for idx in df.index[rows]:
            parts = [_fmt_knob(k, df.at[idx, k]) for k in varying if pd.notna(df.at[idx, k])]
            labels[idx] = f"{model} ({', '.join(parts)})" if parts else model
    return labels


def with_variants(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``variant`` column (kept if already there, so labels stay those of the full table)."""
    if "variant" in df.columns:
        return df
    return df.assign(variant=variant_labels(df) if len(df) else pd.Series(dtype=object))


def ok_rows(df: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Rows with ``status == "ok"`` (and a value for ``metric``), with a ``variant`` column.

    Variants are labelled on the full table first, so a variant that failed everywhere cannot make
    the others' labels change."""
    rows = with_variants(df)
    if "status" in rows.columns:
        rows = rows[rows["status"] == "ok"]
    if metric is not None:
        rows = rows[rows[metric].notna()]
    return rows


def groups(df: pd.DataFrame, keys: Sequence[str] = CONFIG_KEYS) -> Iterator[tuple[dict, pd.DataFrame]]:
    """Yield ``(values, rows)`` per group of equal ``keys`` (default: the configuration group); values
    maps each key present in ``df`` to its value.

    Missing key values form their own group (``dropna=False``) instead of silently vanishing.
    """
    keys = [k for k in keys if k in df.columns]
    if not keys:
        yield {}, df
        return
    for values, rows in df.groupby(keys, dropna=False, sort=True):
        yield dict(zip(keys, values, strict=True)), rows


def medians(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Median of ``columns`` per (variant, model, seq_len) (rows need a ``variant`` column)."""
    agg = rows.groupby(["variant", "model", "seq_len"], sort=True)[list(columns)].median()
    return agg.reset_index()


def variant_order(variants: pd.Series | Sequence[str]) -> list[str]:
    """Distinct variants in :data:`MODELS` order (unknown models last), then by label."""
    def rank(v: str) -> tuple[int, str]:
        model = v.split(" (")[0]
        return (MODELS.index(model) if model in MODELS else len(MODELS), v)
    return sorted(set(variants), key=rank)


# --- ratios against vanilla ---------------------------------------------------------------------------

_RATIO_METRICS: dict[str, str] = {
    "latency_ms": "speedup", "peak_mem_mb": "memory_ratio", "energy_kwh": "energy_ratio",
}


def ratios_vs_vanilla(df: pd.DataFrame) -> pd.DataFrame:
    """Every model against ``vanilla`` of the same configuration group, per seq_len (ok rows only).

    - ``speedup      = latency_ms(vanilla) / latency_ms(model)``
    - ``memory_ratio = peak_mem_mb(vanilla) / peak_mem_mb(model)``
    - ``energy_ratio = energy_kwh(vanilla) / energy_kwh(model)``

    All three read "how many times cheaper than vanilla": > 1 means the model saves. Vanilla's own
    rows are included (ratios 1). A seq_len where vanilla has no ok row, or a non-positive value,
    gets NaN ratios.

    Columns: config keys, ``seq_len``, ``model``, ``variant``, then per metric the model's value,
    ``vanilla_<metric>`` and the ratio.
    """
    metrics = [m for m in _RATIO_METRICS if m in df.columns]
    rows = ok_rows(df)
    out = []
    for keys, g in groups(rows):
        med = medians(g, metrics)
        base = med[med["model"] == "vanilla"].set_index("seq_len")[metrics]
        for m in metrics:
            ref = med["seq_len"].map(base[m]).astype("float64") if len(base) else np.nan
            med[f"vanilla_{m}"] = ref
            med[_RATIO_METRICS[m]] = (ref / med[m]).where(med[m] > 0)  # no ratio against a zero
        out.append(med.assign(**keys))
    cols = config_keys(df) + ["seq_len", "model", "variant"]
    for m in metrics:
        cols += [m, f"vanilla_{m}", _RATIO_METRICS[m]]
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols]


# --- crossovers ---------------------------------------------------------------------------------------

def _sign(x: float) -> int:
    return 0 if x == 0 else (1 if x > 0 else -1)


def _ratio_bounds(a: np.ndarray, a_spread: np.ndarray, b: np.ndarray, b_spread: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Interval of a/b when a ∈ [a − sa/2, a + sa/2] and b ∈ [b − sb/2, b + sb/2]:
    [(a − sa/2)/(b + sb/2), (a + sa/2)/(b − sb/2)] (upper → ∞ when b − sb/2 ≤ 0)."""
    lo = (a - a_spread / 2) / (b + b_spread / 2)
    den = b - b_spread / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        hi = np.where(den > 0, (a + a_spread / 2) / den, np.inf)
    return lo, hi


def _n(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:g}"


def crossings(seq_len: Sequence[float], ratio: Sequence[float], lo: Sequence[float], hi: Sequence[float]
              ) -> list[dict]:
    """Where ``ratio`` (a/b, > 0) crosses 1 along ``seq_len`` (sorted ascending).

    Between two measured points n₀ < n₁ whose ratios r₀, r₁ lie on opposite sides of 1, the crossing is
    interpolated linearly in log–log space:

        log2 n* = log2 n₀ + (0 − ln r₀) / (ln r₁ − ln r₀) · (log2 n₁ − log2 n₀)

    (ln r rather than r so that swapping a and b gives the same n*; two power laws cross exactly there.)
    If the interval [lo, hi] of either bracketing point contains 1, noise could put the crossing anywhere
    nearby: no point is claimed, and the bracket widens outwards to the nearest points whose intervals
    exclude 1 (or to the ends of the measured range). Uncertain brackets that overlap merge; a merged
    bracket with a on the same side at both ends is a wiggle within noise, not a crossing, and is dropped.

    Returns dicts with ``crossover_seq_len`` (NaN when uncertain), ``lower``, ``upper``, ``uncertain``
    and ``direction`` (−1: a/b < 1 below, i.e. a wins below and b above; +1: the reverse).
    """
    n = np.asarray(seq_len, dtype=float)
    r = np.asarray(ratio, dtype=float)
    # the side of 1 each point is *clearly* on (0: its interval covers 1), and the side of its median
    clear = [(-1 if h < 1 else (1 if l > 1 else 0)) for l, h in zip(lo, hi, strict=True)]
    med = [_sign(math.log(v)) for v in r]
    nonzero = [i for i, s in enumerate(med) if s]  # a ratio of exactly 1 is decided by its neighbours
    found: list[dict] = []
    for i0, i1 in zip(nonzero, nonzero[1:]):
        if med[i0] == med[i1]:
            continue
        if clear[i0] and clear[i1] and i1 == i0 + 1:
            x0, x1 = math.log2(n[i0]), math.log2(n[i1])
            l0, l1 = math.log(r[i0]), math.log(r[i1])
            x = x0 + (0 - l0) / (l1 - l0) * (x1 - x0)
            found.append(dict(crossover_seq_len=2.0 ** x, lower=n[i0], upper=n[i1], uncertain=False,
                              direction=med[i0], j=(i0, i1)))
            continue
        j0 = next((j for j in range(i0, -1, -1) if clear[j]), 0)
        j1 = next((j for j in range(i1, len(n)) if clear[j]), len(n) - 1)
        if found and found[-1]["uncertain"] and found[-1]["j"][1] >= j0:
            j0 = found.pop()["j"][0]
        found.append(dict(crossover_seq_len=float("nan"), lower=n[j0], upper=n[j1], uncertain=True,
                          direction=0, j=(j0, j1)))
    result = []
    for item in found:
        j0, j1 = item.pop("j")
        if item["uncertain"]:
            # the side a is on below and above the bracket, from the medians at its ends
            before = med[j0] or -med[j1]
            after = med[j1] or -med[j0]
            if before == after:
                continue
            item["direction"] = before
        result.append(item)
    return result


def _pair_rows(ga: pd.DataFrame, gb: pd.DataFrame, metric: str) -> pd.DataFrame:
    """a and b aligned on the seq_lens where both have a positive value (a memory delta of 0, say,
    forms no ratio)."""
    spread = SPREAD.get(metric)
    cols = [metric] + ([spread] if spread and spread in ga.columns else [])
    both = ga[["seq_len"] + cols].merge(gb[["seq_len"] + cols], on="seq_len", suffixes=("_a", "_b"))
    both = both[(both[f"{metric}_a"] > 0) & (both[f"{metric}_b"] > 0)]
    return both.set_index("seq_len").sort_index()


def _describe(a: str, b: str, metric: str, item: dict | None, n: np.ndarray, ratio: np.ndarray,
              noisy: list[float], winner: str | None = None) -> str:
    better = BETTER.get(metric, f"has the lower {metric}")
    if item is None:
        if winner is None:
            return (f"no clear crossover: {a} and {b} swap places only within the measured spread "
                    f"(n = {', '.join(_n(x) for x in noisy)})")
        text = f"no crossover ({winner} always {better}, n = {_n(n[0])}–{_n(n[-1])})"
        if noisy:
            text += f"; the spread covers 1 at n = {', '.join(_n(x) for x in noisy)}"
        return text
    below, above = (a, b) if item["direction"] < 0 else (b, a)
    if item["uncertain"]:
        return (f"crossover between {_n(item['lower'])} and {_n(item['upper'])} ({below} {better} below, "
                f"{above} above); the measured spread covers 1 there, so no single point is claimed")
    return (f"{below} {better} below n ≈ {item['crossover_seq_len']:.0f}, {above} above "
            f"(between {_n(item['lower'])} and {_n(item['upper'])})")


def find_crossovers(df: pd.DataFrame, metric: str = "latency_ms",
                    pairs: Sequence[tuple[str, str]] = PAIRS) -> pd.DataFrame:
    """Crossovers of ``metric`` for each model pair in each configuration group.

    For each pair (a, b) (each variant of a against each variant of b), the ratio a/b of the medians is
    followed along the seq_lens both measured ok, and every crossing of 1 is located by
    :func:`crossings` (log–log interpolation). The uncertainty interval of a/b at a point uses the
    spread column of :data:`SPREAD` (``latency_iqr_ms`` for latency: each side ∈ median ± IQR/2); metrics
    without one (memory, energy) are certain unless the ratio is exactly 1. A missing IQR counts as 0.

    One row per crossing, or one ``no crossover`` row when a/b stays on one side of 1 (then
    ``crossover_seq_len`` is NaN, ``lower``/``upper`` are the measured range and ``uncertain`` says
    whether the spread covers 1 anywhere). Columns: config keys, ``a``, ``b``, ``pair``, ``metric``,
    ``crossover_seq_len``, ``lower``, ``upper``, ``uncertain``, ``winner_below``, ``winner_above``,
    ``n_points``, ``description``.
    """
    spread = SPREAD.get(metric)
    rows = ok_rows(df, metric)
    cols = [metric] + ([spread] if spread and spread in rows.columns else [])
    out = []
    for keys, g in groups(rows):
        med = medians(g, cols)
        by_model = {m: med[med["model"] == m] for m in med["model"].unique()}
        for ma, mb in pairs:
            if ma not in by_model or mb not in by_model:
                continue
            for va in variant_order(by_model[ma]["variant"]):
                for vb in variant_order(by_model[mb]["variant"]):
                    ga = by_model[ma][by_model[ma]["variant"] == va]
                    gb = by_model[mb][by_model[mb]["variant"] == vb]
                    both = _pair_rows(ga, gb, metric)
                    if both.empty:
                        continue
                    out.extend(dict(keys, **item) for item in _pair_crossovers(va, vb, metric, both))
    cols_out = config_keys(df) + ["a", "b", "pair", "metric", "crossover_seq_len", "lower", "upper",
                                  "uncertain", "winner_below", "winner_above", "n_points", "description"]
    result = pd.DataFrame(out, columns=cols_out)
    result["uncertain"] = result["uncertain"].astype(bool)
    return result


def _pair_crossovers(a: str, b: str, metric: str, both: pd.DataFrame) -> list[dict]:
    spread = SPREAD.get(metric)
    n = both.index.to_numpy(dtype=float)
    va, vb = both[f"{metric}_a"].to_numpy(float), both[f"{metric}_b"].to_numpy(float)
    if spread and f"{spread}_a" in both.columns:
        sa = np.nan_to_num(both[f"{spread}_a"].to_numpy(float))
        sb = np.nan_to_num(both[f"{spread}_b"].to_numpy(float))
    else:
        sa = sb = np.zeros_like(va)
    ratio = va / vb
    lo, hi = _ratio_bounds(va, sa, vb, sb)
    base = dict(a=a, b=b, pair=f"{a} vs {b}", metric=metric, n_points=len(n))
    items = crossings(n, ratio, lo, hi)
    if not items:
        noisy = [x for x, l, h in zip(n, lo, hi, strict=True) if l <= 1 <= h]
        sides = {_sign(math.log(x)) for x in ratio} - {0}
        winner = (a if sides == {-1} else b) if len(sides) == 1 else None
        return [dict(base, crossover_seq_len=float("nan"), lower=n[0], upper=n[-1], uncertain=bool(noisy),
                     winner_below=winner, winner_above=winner,
                     description=_describe(a, b, metric, None, n, ratio, noisy, winner))]
    result = []
    for item in items:
        below, above = (a, b) if item["direction"] < 0 else (b, a)
        result.append(dict(base, crossover_seq_len=item["crossover_seq_len"], lower=item["lower"],
                           upper=item["upper"], uncertain=item["uncertain"], winner_below=below,
                           winner_above=above, description=_describe(a, b, metric, item, n, ratio, [])))
    return result


# --- winners and the thesis ---------------------------------------------------------------------------

def winners(df: pd.DataFrame, metric: str = "latency_ms",
            models: Sequence[str] | None = None) -> pd.DataFrame:
    """Per configuration group and seq_len: the variant with the lowest median ``metric`` (fastest for
    latency, smallest for memory), the runner-up, and ``margin = runner_up_value / winner_value`` (≥ 1).

    ``models`` restricts the contest (default: every model in the table). Columns: config keys,
    ``seq_len``, ``metric``, ``winner``, ``winner_model``, ``winner_value``, ``runner_up``,
    ``runner_up_value``, ``margin``, ``n_models``.
    """
    rows = ok_rows(df, metric)
    if models is not None:
        rows = rows[rows["model"].isin(models)]
    out = []
    for keys, g in groups(rows):
        med = medians(g, [metric])
        for n, at in med.groupby("seq_len", sort=True):
            at = at.sort_values([metric, "variant"])
            first = at.iloc[0]
            second = at.iloc[1] if len(at) > 1 else None
            out.append(dict(keys, seq_len=n, metric=metric, winner=first["variant"],
                            winner_model=first["model"], winner_value=first[metric],
                            runner_up=None if second is None else second["variant"],
                            runner_up_value=np.nan if second is None else second[metric],
                            margin=np.nan if second is None else second[metric] / first[metric],
                            n_models=len(at)))
    cols = config_keys(df) + ["seq_len", "metric", "winner", "winner_model", "winner_value", "runner_up",
                              "runner_up_value", "margin", "n_models"]
    return pd.DataFrame(out, columns=cols)


def thesis_check(df: pd.DataFrame, metric: str = "latency_ms") -> pd.DataFrame:
    """Does "LRT wins for n ≤ 512, Linformer for n ≥ 512" hold, per configuration group?

    The contest is among {vanilla, lrt, linformer} (the thesis's three models), on ``metric``:

    - ``lrt_wins_short``: LRT has the lowest value at every measured seq_len ≤ 512;
    - ``linformer_wins_long``: Linformer has the lowest value at every measured seq_len ≥ 512;
    - ``holds``: LRT wins every n < 512, Linformer every n > 512, and at n = 512 one of the two does.
      (Read literally, both halves claim n = 512, so they can never both be true when 512 is measured;
      the thesis names 512 as the boundary, so either winner is accepted there.)

    A half with no measured seq_len in its range is NA. ``exceptions`` lists the seq_lens where the
    expected model lost and who won instead; ``crossover*`` is the measured lrt-vs-linformer crossover
    (see :func:`find_crossovers`), to compare with 512. Attention implementations (``math`` / ``sdpa``)
    are separate groups, since fused attention moves the crossover (FACTS.md, "What changes the crossover").
    """
    contest = ("vanilla", "lrt", "linformer")
    win = winners(df, metric, models=contest)
    cross = find_crossovers(df, metric, pairs=(("lrt", "linformer"),))
    keys = config_keys(df)
    out = []
    for gkeys, g in groups(win):
        n = g["seq_len"].to_numpy(float)
        w = g["winner_model"].to_numpy(object)
        short, long_ = n <= THESIS_BOUNDARY, n >= THESIS_BOUNDARY

        def all_won(mask: np.ndarray, model: str) -> object:
            return bool((w[mask] == model).all()) if mask.any() else pd.NA

        expected = np.where(n < THESIS_BOUNDARY, "lrt", np.where(n > THESIS_BOUNDARY, "linformer", ""))
        ok = np.where(n == THESIS_BOUNDARY, np.isin(w, ("lrt", "linformer")), w == expected)
        exceptions = "; ".join(f"n={_n(x)}: {v}" for x, v, good in zip(n, g["winner"], ok, strict=True)
                               if not good)
        c = cross
        for k, v in gkeys.items():
            c = c[c[k].isna()] if pd.isna(v) else c[c[k] == v]
        certain = c[~c["uncertain"] & c["crossover_seq_len"].notna()]
        out.append(dict(
            gkeys, metric=metric,
            seq_lens=", ".join(_n(x) for x in n),
            lrt_wins_short=all_won(short, "lrt"),
            linformer_wins_long=all_won(long_, "linformer"),
            holds=bool(ok.all()) if short.any() and long_.any() else pd.NA,
            exceptions=exceptions,
            crossover_seq_len=certain["crossover_seq_len"].iloc[0] if len(certain) == 1 else np.nan,
            crossover_uncertain=bool(c["uncertain"].any()) if len(c) else pd.NA,
            crossover="; ".join(c["description"]) if len(c) else "lrt or linformer not measured",
        ))
    cols = keys + ["metric", "seq_lens", "lrt_wins_short", "linformer_wins_long", "holds", "exceptions",
                   "crossover_seq_len", "crossover_uncertain", "crossover"]
    result = pd.DataFrame(out, columns=cols)
    for col in ("lrt_wins_short", "linformer_wins_long", "holds", "crossover_uncertain"):
        result[col] = result[col].astype("boolean")
    return result
