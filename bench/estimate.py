"""What LRT and Linformer would save on BERT-base pre-training: energy, CO2e and cloud cost.

The thesis (Cahyawijaya 2021, arXiv 2108.10808, ../shared/seed-greenformers-abstract.txt) claims that
applying LRT to BERT-base cuts its training cost by more than 30%. This module checks that claim the way
Strubell et al. 2019 (arXiv 1906.02243) priced BERT-base, and lets a user re-ask it for another rank, k,
hardware or grid.

- **Baseline** (:class:`EstimateConfig` defaults): Strubell et al. 2019, Table 3, BERT-base row — V100×64,
  12,041.51 W for the whole setup, 79.2 h, PUE 1.58, 0.954 lbs CO2e/kWh, cloud cost $3,751–$12,571.
  Energy p_t = PUE · t · P / 1000 kWh, CO2e = 0.954 · p_t lbs (their eq. 1–2).
- **Workload**: the BERT pre-training recipe (Devlin et al. 2019, arXiv 1810.04805, §A.2): 1,000,000
  steps × 256 sequences, 90% of steps at 128 tokens and 10% at 512, on BERT-base *with its pre-training
  heads* (:func:`pretraining_params`, :func:`pretraining_flop_breakdown`).
- **Cost ratio** of each model to vanilla, two ways: analytic (training FLOPs over the recipe, from the
  suite's formulas in :mod:`bench.measure.flops`) and measured (recipe-weighted train-step time from a
  results table, :func:`measured_ratios`). Every cost of the baseline is scaled by the ratio used.

What each method changes (everything else stays as in dense BERT-base):

- ``lrt``: the six linears of every encoder layer (Q, K, V, attention output, FFN in, FFN out) become
  rank-r LEDs (bench.models' rank convention). The pooler, MLM transform, NSP classifier and the MLM
  decoder stay dense: the decoder is tied to the word embeddings, and embeddings are never factorized;
  the pooler and NSP classifier see one token per sequence and the MLM transform 15% of tokens, so
  factorizing them too (at rank 256) would move the FLOP ratio by 0.03 percentage points (and the
  thesis factorizes the encoder).
- ``linformer``: only the attention of every encoder layer (keys and values projected to k positions);
  the E/F projections add parameters.
- ``lrt_linformer``: both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.analysis import ratios_vs_vanilla
from bench.measure.energy import country_intensity_g_per_kwh, validate_country, validate_pue
from bench.measure.flops import TRAIN_FLOPS_MULTIPLIER, flop_breakdown
from bench.models import MODELS, PRESETS, EncoderConfig, break_even_rank, make_config
from bench.results import load as load_results
from bench.results import normalize
from bench.report import markdown_table

#: International avoirdupois pound in kg (exact by definition, 1959 international yard and pound agreement).
LBS_TO_KG = 0.45359237
BYTES_PER_MB = 1_000_000  # decimal MB, as Hugging Face reports model sizes (BERT-base ≈ 440 MB fp32)
FORMATS = ("table", "markdown", "json")
COST_BASES = ("auto", "analytic", "measured")
RANK_SWEEP_FIGURE = "estimate_rank_sweep.png"
RANK_SWEEP_TABLE = "estimate_rank_sweep.csv"
#: The pre-training heads' keys in pretraining_flop_breakdown (the encoder's come from flop_breakdown).
HEAD_COMPONENTS = ("pooler", "nsp", "mlm_transform", "mlm_decoder")


@dataclass
class EstimateConfig:
    """Every input of the estimate. Defaults: Strubell et al. 2019 Table 3's BERT-base row and Devlin et
    al. 2019's BERT-base pre-training recipe. Field names follow the rest of the suite where they mean
    the same thing (``rank``, ``linformer_k``, ``d_model``, …); ``conf/estimate/bert_base.yaml`` mirrors
    these defaults for Hydra.
    """

    # --- baseline: what vanilla BERT-base cost (Strubell et al. 2019, Table 3, "BERT_base" on V100×64) ---
    gpu_count: int = 64
    #: Average draw of the *whole* setup in watts — Strubell's p_c + p_r + g·p_g (CPU, DRAM and all
    #: g GPUs), not the power of one GPU. Multiplied by hours and PUE it gives their kWh·PUE column.
    total_power_w: float = 12041.51
    hours: float = 79.2  # wall-clock training time of the baseline run
    pue: float = 1.58  # power usage effectiveness: 2018 industry average Strubell use (Ascierto 2018)
    lbs_per_kwh: float = 0.954  # US average CO2e per kWh, EPA 2018, as in Strubell's eq. 2
    cost_usd_low: float = 3751.0  # cloud compute cost range (Strubell Table 3)
    cost_usd_high: float = 12571.0

    # --- workload: BERT pre-training recipe (Devlin et al. 2019, §A.2) ---
    steps: int = 1_000_000
    batch_size: int = 256
    seq_lens: list[int] = field(default_factory=lambda: [128, 512])
    seq_fractions: list[float] = field(default_factory=lambda: [0.9, 0.1])
    #: Fraction of positions the MLM head (transform + vocabulary decoder) runs on. 0.15 = Devlin's masking
    #: rate (§3.1); Google's run_pretraining.py gathers only the masked positions (max_predictions_per_seq
    #: 20 of 128, 80 of 512 ≈ 15.6%). 1.0 = Hugging Face BertForPreTraining, which scores every position.
    mlm_fraction: float = 0.15

    # --- model: BERT-base (Devlin et al. 2019 §3: L=12, H=768, A=12; Hugging Face BertConfig defaults) ---
    d_model: int = 768
    n_heads: int = 12
    d_ff: int = 3072
    n_layers: int = 12
    vocab_size: int = 30522
    type_vocab_size: int = 2
    max_position_embeddings: int = 512

    # --- methods ---
    models: list[str] = field(default_factory=lambda: list(MODELS))
    rank: int | float = 256  # int = absolute rank; float in (0, 1) = fraction of each layer's break-even
    linformer_k: int = 256
    linformer_sharing: str = "layerwise"

    # --- measured ratio (optional) ---
    #: A results folder or file (anything bench.results.load reads). None = analytic only.
    results_dir: str | None = None
    #: Filters on the measured rows; None accepts any value but refuses a table that mixes several.
    attention_impl: str | None = None
    device: str | None = None
    dtype: str | None = None
    #: Which ratio scales the costs: "auto" = measured when results_dir is given, else analytic.
    cost_basis: str = "auto"

    # --- outputs ---
    country_iso_code: list[str] = field(default_factory=lambda: ["USA", "FRA", "DEU", "IND", "CHN"])
    rank_sweep: list[int | float] = field(default_factory=lambda: [32, 64, 128, 192, 256, 320, 352, 383])
    savings_threshold_pct: float = 30.0  # the thesis's claim: "by more than 30%"
    out_dir: str | None = None  # where the rank-sweep figure and table go; None = write nothing
    format: str = "table"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EstimateConfig:
        """Build from a plain mapping (e.g. a resolved Hydra config), refusing unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}={values[unknown[0]]!r}: unknown estimate field; known: "
                             f"{', '.join(sorted(known))}")
        values = dict(values)
        if isinstance(values.get("country_iso_code"), str):  # `country_iso_code=FRA`, as in the rest of the suite
            values["country_iso_code"] = [values["country_iso_code"]]
        return cls(**{k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()})

    def validate(self) -> EstimateConfig:
        """Raise ValueError naming the first bad field and its value (e.g. ``hours=-1: must be > 0``)."""
        for key in ("gpu_count", "steps", "batch_size", "vocab_size", "type_vocab_size",
                    "max_position_embeddings"):
            _check_number(key, getattr(self, key), integer=True, minimum=1)
        for key in ("total_power_w", "hours", "lbs_per_kwh"):
            _check_number(key, getattr(self, key), positive=True)
        _check_number("pue", self.pue)
        validate_pue(self.pue)
        _check_number("cost_usd_low", self.cost_usd_low, minimum=0)
        _check_number("cost_usd_high", self.cost_usd_high, minimum=self.cost_usd_low,
                      note=f" (cost_usd_low={self.cost_usd_low})")
        _check_number("mlm_fraction", self.mlm_fraction, positive=True, maximum=1)
        _check_number("savings_threshold_pct", self.savings_threshold_pct, positive=True, maximum=100)
        self._validate_recipe()
        if not self.models or any(m not in MODELS for m in self.models) or len(set(self.models)) < len(self.models):
            raise ValueError(f"models={self.models!r}: expected distinct names from {', '.join(MODELS)}")
        # The model code owns rank / linformer_k / size rules; its messages already name the field.
        for name in ("vanilla", "lrt", "linformer"):
            encoder_config(self, name)
        for r in self.rank_sweep:
            try:
                encoder_config(self, "lrt", rank=r)
            except ValueError as exc:
                raise ValueError(f"rank_sweep={self.rank_sweep!r}: {exc}") from None
        for code in self.country_iso_code:
            validate_country(code)
        for key, allowed in (("format", FORMATS), ("cost_basis", COST_BASES)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        if self.cost_basis == "measured" and self.results_dir is None:
            raise ValueError("cost_basis='measured': needs results_dir= (a folder of train-mode results)")
        if self.results_dir is not None and not Path(self.results_dir).exists():
            raise ValueError(f"results_dir={self.results_dir!r}: no such file or directory")
        return self

    def _validate_recipe(self) -> None:
        if not self.seq_lens or len(self.seq_lens) != len(self.seq_fractions):
            raise ValueError(f"seq_fractions={self.seq_fractions!r}: need one fraction per seq_len "
                             f"(seq_lens={self.seq_lens!r})")
        for n in self.seq_lens:
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.max_position_embeddings:
                raise ValueError(f"seq_lens={self.seq_lens!r}: each must be an int in "
                                 f"[1, max_position_embeddings={self.max_position_embeddings}]")
        if len(set(self.seq_lens)) < len(self.seq_lens):
            raise ValueError(f"seq_lens={self.seq_lens!r}: must be distinct")
        for f in self.seq_fractions:
            _check_number("seq_fractions", f, minimum=0, maximum=1)
        if not math.isclose(sum(self.seq_fractions), 1.0, abs_tol=1e-9):
            raise ValueError(f"seq_fractions={self.seq_fractions!r}: must sum to 1 (they sum to "
                             f"{sum(self.seq_fractions):g})")

    @property
    def resolved_cost_basis(self) -> str:
        if self.cost_basis != "auto":
            return self.cost_basis
        return "analytic" if self.results_dir is None else "measured"


def _check_number(key: str, value: Any, *, integer: bool = False, positive: bool = False,
                  minimum: float | None = None, maximum: float | None = None, note: str = "") -> None:
    """One message shape for every numeric field: ``key=value: must be …``."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or \
            (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{key}={value!r}: must be {'an int' if integer else 'a finite number'}")
    if positive and value <= 0:
        raise ValueError(f"{key}={value!r}: must be > 0{note}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key}={value!r}: must be ≥ {minimum:g}{note}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{key}={value!r}: must be ≤ {maximum:g}{note}")


@dataclass
class EstimateResult:
    """One row per model (:data:`rows`), the LRT rank sweep, and every assumption behind the numbers."""

    config: EstimateConfig
    rows: pd.DataFrame
    rank_sweep: pd.DataFrame
    #: Largest integer rank whose analytic LRT savings reach the threshold (None: no rank does).
    rank_at_threshold: int | None
    assumptions: list[str]
    figure_path: Path | None = None


# --- the workload: BERT-base with its pre-training heads ------------------------------------------------

def encoder_config(cfg: EstimateConfig, model: str, rank: int | float | None = None) -> EncoderConfig:
    """The suite's EncoderConfig for `model` at cfg's size, with BERT's word and learned position
    embeddings (max_position_embeddings of them, so Linformer's E/F are k × 512 as in a BERT run).
    Raises ValueError naming the field when the model refuses a value (rank, linformer_k, …)."""
    return make_config(model, "bert_base", d_model=cfg.d_model, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                       n_layers=cfg.n_layers, max_seq_len=cfg.max_position_embeddings,
                       vocab_size=cfg.vocab_size, learned_positions=True,
                       rank=cfg.rank if rank is None else rank, linformer_k=cfg.linformer_k,
                       linformer_sharing=cfg.linformer_sharing)


def pretraining_params(cfg: EstimateConfig, enc: EncoderConfig) -> int:
    """Parameters of BERT-for-pre-training built from `enc` (Hugging Face BertForPreTraining layout).

    enc.param_count() covers the encoder layers, word and position embeddings (and Linformer's E/F);
    BERT adds token-type embeddings and an embedding LayerNorm, the pooler (d×d + d), the MLM transform
    (d×d + d and a LayerNorm), the MLM decoder's bias (its weight is the tied word embedding) and the NSP
    classifier (d×2 + 2). Vanilla BERT-base: 110,106,428 = BertModel's 109,482,240 (FACTS.md) + 624,188.
    """
    d = enc.d_model
    bert_extras = cfg.type_vocab_size * d + 2 * d + (d * d + d)
    heads = (d * d + d + 2 * d) + cfg.vocab_size + (2 * d + 2)
    return enc.param_count() + bert_extras + heads


def pretraining_flop_breakdown(cfg: EstimateConfig, enc: EncoderConfig, seq_len: int) -> dict[str, float]:
    """Forward FLOPs of one batch (cfg.batch_size sequences of `seq_len`) by component.

    Encoder components come from :func:`bench.measure.flops.flop_breakdown` (2·M·N·K per matmul; bias,
    softmax, LayerNorm, GELU and embedding look-ups not counted). Heads, same convention, per sequence:
    pooler 2·d² and NSP 2·d·2 on the [CLS] token; MLM transform 2·d² and decoder 2·d·V on
    mlm_fraction·seq_len positions. Float because mlm_fraction·seq_len need not be whole.
    """
    b, d = cfg.batch_size, enc.d_model
    masked = cfg.mlm_fraction * seq_len
    heads = (2 * b * d * d, 2 * b * d * 2, 2 * b * masked * d * d, 2 * b * masked * d * cfg.vocab_size)
    return {**flop_breakdown(enc, seq_len, b), **dict(zip(HEAD_COMPONENTS, heads, strict=True))}


def train_flops(cfg: EstimateConfig, enc: EncoderConfig, components: Collection[str] | None = None) -> float:
    """Training FLOPs of the whole recipe: steps · Σ_s fraction_s · 3 · forward FLOPs(batch at s).

    The 3× (forward + backward ≈ 2× forward) is the suite's TRAIN_FLOPS_MULTIPLIER (Kaplan et al. 2020).
    `components` limits the sum to those keys of :func:`pretraining_flop_breakdown` (None = all).
    """
    per_step = sum(f * sum(v for k, v in pretraining_flop_breakdown(cfg, enc, n).items()
                           if components is None or k in components)
                   for n, f in zip(cfg.seq_lens, cfg.seq_fractions, strict=True))
    return cfg.steps * TRAIN_FLOPS_MULTIPLIER * per_step


# --- the baseline: Strubell et al. 2019 -------------------------------------------------------------------

def energy_kwh(cfg: EstimateConfig, ratio: float = 1.0) -> float:
    """Strubell et al. 2019 eq. 1: p_t = PUE · t · P / 1000 kWh, with t = hours · ratio.

    The result already includes the PUE ("kWh·PUE" in their Table 3): 1,507 for the BERT-base defaults.
    """
    return cfg.pue * cfg.hours * ratio * cfg.total_power_w / 1000


def scaled_costs(cfg: EstimateConfig, ratio: float, intensities: Mapping[str, float]) -> dict[str, float]:
    """Every cost of the baseline run scaled by `ratio` (model cost / vanilla cost).

    Assumes the same setup runs the cheaper model at the same power for ratio × the time, so hours,
    GPU-hours, energy, CO2e and cloud cost all scale linearly. CO2e under other grids = kWh·PUE ×
    codecarbon's country intensity (`intensities`, g/kWh).
    """
    kwh = energy_kwh(cfg, ratio)
    lbs = cfg.lbs_per_kwh * kwh  # Strubell et al. 2019 eq. 2
    costs = {"hours": cfg.hours * ratio, "gpu_hours": cfg.gpu_count * cfg.hours * ratio, "kwh": kwh,
             "co2e_lbs": lbs, "co2e_kg": lbs * LBS_TO_KG,
             "cost_usd_low": cfg.cost_usd_low * ratio, "cost_usd_high": cfg.cost_usd_high * ratio}
    costs.update({f"co2e_kg_{code}": kwh * g / 1000 for code, g in intensities.items()})
    return costs


# --- measured ratio ---------------------------------------------------------------------------------------

_SIZE_KEYS = ("d_model", "n_heads", "d_ff", "n_layers")


def _matches(column: pd.Series, value: Any) -> pd.Series:
    """Row mask `column == value`, numeric where the value is a number (CSV ranks read back as floats)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        num = pd.to_numeric(column, errors="coerce").astype("float64")
        return ((num - value).abs() <= 1e-9 * max(1.0, abs(value))).fillna(False)
    return (column == value).fillna(False).astype(bool)


def _model_rows(table: pd.DataFrame, cfg: EstimateConfig, model: str) -> pd.Series:
    """Mask of ok train-mode rows of `model` at cfg's size and with cfg's knobs for that model."""
    mask = (table["model"] == model) & (table["mode"] == "train") & (table["status"] == "ok")
    for key in _SIZE_KEYS:
        mask &= _matches(table[key], getattr(cfg, key))
    attention, linear = MODELS[model]
    knobs: dict[str, Any] = {"rank": cfg.rank} if linear == "lowrank" else {}
    if attention == "linformer":
        knobs |= {"linformer_k": cfg.linformer_k, "linformer_sharing": cfg.linformer_sharing}
    for key, value in knobs.items():
        # Rows that never recorded the knob (e.g. a hand-made CSV) cannot disagree with it.
        if table.loc[mask, key].notna().any():
            mask &= _matches(table[key], value)
    return mask.astype(bool)


def _sweep_command(cfg: EstimateConfig, models: Sequence[str]) -> str:
    preset = PRESETS["bert_base"]
    size = " ".join(f"{k}={getattr(cfg, k)}" for k in _SIZE_KEYS if getattr(cfg, k) != preset[k])
    knobs = []
    if any(MODELS[m][1] == "lowrank" for m in models):
        knobs.append(f"rank={cfg.rank}")
    if any(MODELS[m][0] == "linformer" for m in models):
        knobs += [f"linformer_k={cfg.linformer_k}", f"linformer_sharing={cfg.linformer_sharing}"]
    filters = [f"{k}={getattr(cfg, k)}" for k in ("device", "dtype") if getattr(cfg, k)]
    parts = ["python -m bench sweep size=bert_base", size, "mode=train",
             f"seq_len={','.join(map(str, cfg.seq_lens))}", f"model={','.join(models)}",
             *knobs, f"attention_impl={cfg.attention_impl or 'sdpa'}", *filters]
    return " ".join(p for p in parts if p)


def measured_ratios(table: pd.DataFrame, cfg: EstimateConfig, source: str | None = None
                    ) -> tuple[dict[str, float], list[str]]:
    """Recipe-weighted measured training-time ratio of each model in cfg.models to vanilla.

    Rows used: mode=train, status=ok, cfg's d_model/n_heads/d_ff/n_layers, cfg's rank (low-rank models)
    and linformer_k/linformer_sharing (Linformer models), and cfg's attention_impl/device/dtype when set.
    Each model is compared with vanilla of the same run and configuration by
    :func:`bench.analysis.ratios_vs_vanilla` (medians of repeats). At each seq_len s, the largest batch
    size both measured is used (closest to the recipe's 256); t(s) is the step latency per sequence
    (latency_ms / batch_size), medians over configuration groups if several remain. Then

        ratio = Σ_s f_s · t_model(s) / Σ_s f_s · t_vanilla(s) = Σ_s w_s · r_s,
        r_s = t_model(s) / t_vanilla(s),  w_s = f_s · t_vanilla(s) / Σ_s' f_s' · t_vanilla(s'),

    i.e. the ratio of the two recipes' total training times: the per-length ratios weighted by the
    recipe fraction × vanilla's time at that length (0.9 · 128-token steps weigh less than their 90%).

    Returns (ratio per model, vanilla included at 1.0; notes for the assumptions). Raises ValueError
    naming what to sweep when rows are missing, or which filter to set when the rows mix several
    attention_impl / device / dtype values.
    """
    where = f"results_dir={source!r}" if source is not None else "results"
    table = normalize(table)
    needed = ["vanilla"] + [m for m in cfg.models if m != "vanilla"]
    rows = table[pd.concat([_model_rows(table, cfg, m) for m in needed], axis=1).any(axis=1)] if len(table) else table
    for key in ("attention_impl", "device", "dtype"):
        wanted = getattr(cfg, key)
        if wanted is not None:
            rows = rows[rows[key] == wanted]
        elif rows[key].nunique() > 1:
            raise ValueError(f"{where}: the matching rows mix {key}={sorted(rows[key].dropna().unique())}; "
                             f"choose one with {key}=")
    pairs = ratios_vs_vanilla(rows)
    ratios: dict[str, float] = {}
    missing: dict[str, list[int]] = {}
    notes: list[str] = []
    for model in needed:
        mine = pairs[(pairs["model"] == model) & pairs["speedup"].notna()]
        t_model, t_vanilla, used = [], [], []
        for n in cfg.seq_lens:
            at = mine[mine["seq_len"] == n]
            if at.empty:
                missing.setdefault(model, []).append(n)
                continue
            at = at[at["batch_size"] == at["batch_size"].max()]
            batch = int(at["batch_size"].iloc[0])
            t_model.append((at["latency_ms"] / batch).median())
            t_vanilla.append((at["vanilla_latency_ms"] / batch).median())
            used.append(f"{n} tokens at batch {batch}")
        if model in missing:
            continue
        ratios[model] = (sum(f * t for f, t in zip(cfg.seq_fractions, t_model, strict=True))
                         / sum(f * t for f, t in zip(cfg.seq_fractions, t_vanilla, strict=True)))
        if model != "vanilla":
            notes.append(f"measured {model}: {', '.join(used)}")
    if missing:
        # Without vanilla nothing pairs, so every model would be reported missing: name vanilla alone.
        missing = {"vanilla": missing["vanilla"]} if "vanilla" in missing else missing
        what = "; ".join(f"model={m} at seq_len={','.join(map(str, ns))}" for m, ns in missing.items())
        size = ", ".join(f"{k}={getattr(cfg, k)}" for k in _SIZE_KEYS)
        raise ValueError(f"{where}: no ok train-mode rows (paired with vanilla at a common batch size) for "
                         f"{what} with {size}; run: {_sweep_command(cfg, needed)}")
    return ratios, notes


# --- the estimate ---------------------------------------------------------------------------------------

def _analytic_row(cfg: EstimateConfig, enc: EncoderConfig, vanilla_flops: float) -> dict[str, Any]:
    params, flops = pretraining_params(cfg, enc), train_flops(cfg, enc)
    return {"params": params, "size_mb_fp32": params * 4 / BYTES_PER_MB, "size_mb_fp16": params * 2 / BYTES_PER_MB,
            "train_flops": flops, "flops_ratio": flops / vanilla_flops}


def sweep_ranks(cfg: EstimateConfig) -> tuple[pd.DataFrame, int | None]:
    """LRT's analytic savings at each rank of cfg.rank_sweep, and the largest integer rank whose savings
    reach cfg.savings_threshold_pct.

    The crossing is exact, not interpolated: FLOPs never fall as the rank grows (a layer whose rank
    reaches its break-even goes dense, and dense costs what rank = break-even would), so the search walks
    down from the largest rank that still factorizes a layer.
    """
    vanilla_flops = train_flops(cfg, encoder_config(cfg, "vanilla"))
    table = pd.DataFrame([{"rank": r, **_analytic_row(cfg, encoder_config(cfg, "lrt", rank=r), vanilla_flops)}
                          for r in cfg.rank_sweep],
                         columns=["rank", "params", "size_mb_fp32", "size_mb_fp16", "train_flops", "flops_ratio"])
    table["savings_pct"] = 100 * (1 - table["flops_ratio"])
    table["meets_threshold"] = table["savings_pct"] >= cfg.savings_threshold_pct
    lrt = encoder_config(cfg, "lrt")
    top = math.ceil(max(break_even_rank(i, o) for i, o in lrt.linear_shapes())) - 1
    target = 1 - cfg.savings_threshold_pct / 100
    crossing = next((r for r in range(top, 0, -1)
                     if train_flops(cfg, replace(lrt, rank=r)) <= target * vanilla_flops), None)
    return table, crossing


def _head_share(cfg: EstimateConfig) -> float:
    """Share of vanilla's recipe FLOPs spent in the pre-training heads (the part the suite's rows never time)."""
    enc = encoder_config(cfg, "vanilla")
    return train_flops(cfg, enc, HEAD_COMPONENTS) / train_flops(cfg, enc)


def _assumptions(cfg: EstimateConfig, intensities: Mapping[str, float], notes: Sequence[str]) -> list[str]:
    recipe = " + ".join(f"{f:g} × {n} tokens" for n, f in zip(cfg.seq_lens, cfg.seq_fractions, strict=True))
    basis = cfg.resolved_cost_basis
    lines = [
        f"Baseline = vanilla: {cfg.gpu_count} GPUs, {cfg.total_power_w:,} W for the whole setup, {cfg.hours} h, "
        f"PUE {cfg.pue}, {cfg.lbs_per_kwh} lbs CO2e/kWh, ${cfg.cost_usd_low:,.0f}–${cfg.cost_usd_high:,.0f} "
        "(defaults: Strubell et al. 2019, Table 3, BERT-base on V100×64).",
        "kWh = PUE · hours · power / 1000 (kWh·PUE, Strubell eq. 1); CO2e lbs = lbs_per_kwh · kWh (eq. 2); "
        f"kg = lbs × {LBS_TO_KG}.",
        f"Each model's costs = baseline × its cost ratio to vanilla ({basis} ratio; savings_pct = 100 · (1 − "
        "ratio)): same hardware and power draw, time ∝ cost, so hours, energy, CO2e and cloud cost scale alike.",
        f"Workload: {cfg.steps:,} steps × {cfg.batch_size} sequences, {recipe} (Devlin et al. 2019), on "
        f"{cfg.n_layers}×{cfg.d_model} (heads {cfg.n_heads}, FFN {cfg.d_ff}) with BERT's embeddings "
        f"(vocab {cfg.vocab_size}, {cfg.max_position_embeddings} positions, {cfg.type_vocab_size} token types), "
        "pooler, MLM and NSP heads.",
        f"Analytic FLOPs: 2·M·N·K per matmul, training = {TRAIN_FLOPS_MULTIPLIER}× forward; biases, softmax, "
        f"LayerNorm, GELU and embedding look-ups not counted; MLM head on {cfg.mlm_fraction:g} of positions "
        "(1.0 = every position, as Hugging Face computes).",
        "LRT factorizes Q, K, V, attention output and both FFN linears of every encoder layer; embeddings, the "
        "tied MLM decoder, MLM transform, pooler and NSP classifier stay dense. Linformer changes only attention.",
        "Size MB = params × bytes / 10^6 (fp32: 4 bytes, fp16: 2).",
    ]
    if intensities:
        lines.append("Grid CO2e = kWh·PUE × codecarbon's bundled country intensity (Our World in Data): "
                     + ", ".join(f"{c} {g:g} g/kWh" for c, g in intensities.items()) + ".")
    if any(MODELS[m][0] == "linformer" for m in cfg.models) and cfg.linformer_k >= min(cfg.seq_lens):
        lines.append(f"Linformer with k={cfg.linformer_k} ≥ seq_len {min(cfg.seq_lens)} projects keys and values "
                     "up, not down (the suite's Linformer has no full-attention fallback), so it costs more than "
                     "full attention there; at seq_len = 2k its attention and projections together cost as much "
                     "as full attention.")
    if basis == "measured":
        lines.append("Measured ratio = Σ f_s·t_model(s) / Σ f_s·t_vanilla(s), t = train step latency per sequence "
                     "on the measuring machine (a CPU or GPU other than V100s may rank models differently). The "
                     "suite times the encoder alone, without the embeddings and pre-training heads that every "
                     f"model keeps dense ({100 * _head_share(cfg):.1f}% of vanilla's analytic training FLOPs), so "
                     "the measured ratio slightly favours the cheaper models.")
        lines += notes
    return lines


def run_estimate(cfg: EstimateConfig) -> EstimateResult:
    """Validate cfg, compute one row per model and the LRT rank sweep, and write the rank-sweep figure
    and table to cfg.out_dir when it is set.

    Row columns: model, rank, linformer_k (None where the model has no such knob), params, size_mb_fp32,
    size_mb_fp16, train_flops, flops_ratio, measured_ratio (NaN unless results_dir), cost_basis,
    savings_pct, hours, gpu_hours, kwh, co2e_lbs, co2e_kg, cost_usd_low, cost_usd_high, co2e_kg_<ISO>.
    """
    cfg.validate()
    basis = cfg.resolved_cost_basis
    intensities = {validate_country(code): country_intensity_g_per_kwh(code) for code in cfg.country_iso_code}
    measured, notes = ({}, [])
    if cfg.results_dir is not None:
        measured, notes = measured_ratios(load_results(cfg.results_dir), cfg, source=cfg.results_dir)
    vanilla_flops = train_flops(cfg, encoder_config(cfg, "vanilla"))
    rows = []
    for model in cfg.models:
        enc = encoder_config(cfg, model)
        attention, linear = MODELS[model]
        row = {"model": model, "rank": cfg.rank if linear == "lowrank" else None,
               "linformer_k": cfg.linformer_k if attention == "linformer" else None,
               **_analytic_row(cfg, enc, vanilla_flops), "measured_ratio": measured.get(model, math.nan),
               "cost_basis": basis}
        ratio = row["measured_ratio"] if basis == "measured" else row["flops_ratio"]
        rows.append({**row, "savings_pct": 100 * (1 - ratio), **scaled_costs(cfg, ratio, intensities)})
    table = pd.DataFrame(rows)
    for knob in ("rank", "linformer_k"):  # keep 256 an int beside None (pandas would make it 256.0)
        table[knob] = pd.Series([row[knob] for row in rows], dtype=object)
    sweep, crossing = sweep_ranks(cfg)
    result = EstimateResult(cfg, table, sweep, crossing, _assumptions(cfg, intensities, notes))
    if cfg.out_dir is not None:
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sweep.to_csv(out / RANK_SWEEP_TABLE, index=False)
        result.figure_path = plot_rank_sweep(result, out / RANK_SWEEP_FIGURE)
    return result


def plot_rank_sweep(result: EstimateResult, path: Path | str) -> Path:
    """LRT savings (%) against rank, with the threshold as a horizontal line and the crossing rank marked."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    cfg, sweep = result.config, result.rank_sweep
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(sweep["rank"], sweep["savings_pct"], marker="o", label="LRT (analytic FLOPs)")
    ax.axhline(cfg.savings_threshold_pct, color="tab:red", linestyle="--",
               label=f"{cfg.savings_threshold_pct:g}% (thesis claim)")
    if result.rank_at_threshold is not None:
        ax.axvline(result.rank_at_threshold, color="tab:gray", linestyle=":",
                   label=f"savings ≥ {cfg.savings_threshold_pct:g}% for rank ≤ {result.rank_at_threshold}")
    ax.set_xlabel("rank r")
    ax.set_ylabel("training-cost savings vs vanilla (%)")
    ax.set_title(f"BERT pre-training cost saved by LRT ({cfg.n_layers}×{cfg.d_model})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- rendering --------------------------------------------------------------------------------------------

def _fmt(spec: str):
    return lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else spec.format(v)


def _sections(result: EstimateResult) -> list[tuple[str, pd.DataFrame]]:
    """The report's tables as (title, frame of display strings); shared by the table and markdown formats."""
    grid = [(c, f"kg CO2e {c.removeprefix('co2e_kg_')}", _fmt("{:,.0f}"))
            for c in result.rows.columns if c.startswith("co2e_kg_")]
    specs = {
        f"Model and compute ({result.config.resolved_cost_basis} ratio drives the costs)": [
            ("model", "model", _fmt("{}")), ("rank", "rank", _fmt("{:g}")), ("linformer_k", "k", _fmt("{:g}")),
            ("params", "params", _fmt("{:,}")), ("size_mb_fp32", "MB fp32", _fmt("{:,.1f}")),
            ("size_mb_fp16", "MB fp16", _fmt("{:,.1f}")), ("train_flops", "train FLOPs", _fmt("{:.3e}")),
            ("flops_ratio", "FLOP ratio", _fmt("{:.3f}")), ("measured_ratio", "measured ratio", _fmt("{:.3f}")),
            ("savings_pct", "savings %", _fmt("{:.1f}"))],
        "Cost (Strubell et al. 2019 baseline × ratio)": [
            ("model", "model", _fmt("{}")), ("hours", "hours", _fmt("{:,.1f}")),
            ("gpu_hours", "GPU-hours", _fmt("{:,.0f}")), ("kwh", "kWh·PUE", _fmt("{:,.0f}")),
            ("co2e_lbs", "CO2e lbs", _fmt("{:,.0f}")), ("co2e_kg", "CO2e kg", _fmt("{:,.0f}")),
            ("cost_usd_low", "cost $ low", _fmt("{:,.0f}")), ("cost_usd_high", "cost $ high", _fmt("{:,.0f}")),
            *grid],
        "LRT rank sweep (analytic)": [
            ("rank", "rank", _fmt("{:g}")), ("params", "params", _fmt("{:,}")),
            ("flops_ratio", "FLOP ratio", _fmt("{:.3f}")), ("savings_pct", "savings %", _fmt("{:.1f}"))],
    }
    out = []
    for title, columns in specs.items():
        source = result.rank_sweep if title.startswith("LRT rank sweep") else result.rows
        if source.empty:
            continue
        frame = pd.DataFrame({header: [fmt(v) for v in source[col].astype(object)] for col, header, fmt in columns})
        out.append((title, frame))
    return out


def _crossing_line(result: EstimateResult) -> str:
    pct = f"{result.config.savings_threshold_pct:g}%"
    if result.rank_at_threshold is None:
        return f"No LRT rank saves {pct} or more (analytic)."
    return f"LRT saves ≥ {pct} (analytic) for every rank ≤ {result.rank_at_threshold}."


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with full precision (to_json rounds to 10 digits) and NaN as None (strict JSON)."""
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def render(result: EstimateResult, fmt: str | None = None) -> str:
    """The result as "table" (aligned plain text), "markdown", or "json" (one line: an object with
    ``rows``, ``rank_sweep``, ``rank_at_threshold``, ``savings_threshold_pct``, ``cost_basis`` and
    ``assumptions``; NaN becomes null). Default: result.config.format."""
    fmt = fmt or result.config.format
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "json":
        payload = {"rows": _records(result.rows), "rank_sweep": _records(result.rank_sweep),
                   "rank_at_threshold": result.rank_at_threshold,
                   "savings_threshold_pct": result.config.savings_threshold_pct,
                   "cost_basis": result.config.resolved_cost_basis,
                   "figure": None if result.figure_path is None else str(result.figure_path),
                   "assumptions": result.assumptions}
        return json.dumps(payload, allow_nan=False)
    markdown = fmt == "markdown"
    parts = []
    for title, frame in _sections(result):
        if markdown:
            parts.append(f"### {title}\n\n{markdown_table(frame)}")
        else:
            parts.append(f"{title}\n{frame.to_string(index=False)}")
    parts.append(_crossing_line(result))
    bullet = "- " if markdown else "  * "
    parts.append(("**Assumptions**" if markdown else "Assumptions") + "\n"
                 + "\n".join(bullet + line for line in result.assumptions))
    if result.figure_path is not None:
        parts.append(f"Rank-sweep figure: {result.figure_path}")
    return "\n\n".join(parts)


# --- command line ---------------------------------------------------------------------------------------

def load_config(overrides: Sequence[str] = ()) -> EstimateConfig:
    """conf/estimate/bert_base.yaml with Hydra overrides (``key=value``, ``country_iso_code=[USA,FRA]``,
    ``results_dir=null``). Unknown or malformed overrides raise a one-line ValueError naming the key;
    values are checked by :meth:`EstimateConfig.validate` (run_estimate calls it)."""
    from bench.config import compose_checked

    known = {f.name for f in fields(EstimateConfig)}
    return EstimateConfig.from_mapping(compose_checked("estimate/bert_base", list(overrides), known, "estimate key"))


def estimate_from_overrides(overrides: Sequence[str] = ()) -> str:
    """``python -m bench estimate [overrides]``: the rendered estimate in the configured format."""
    return render(run_estimate(load_config(overrides)))


__all__ = [
    "COST_BASES", "FORMATS", "HEAD_COMPONENTS", "LBS_TO_KG", "EstimateConfig", "EstimateResult", "encoder_config",
    "energy_kwh", "estimate_from_overrides", "load_config", "measured_ratios", "plot_rank_sweep",
    "pretraining_flop_breakdown", "pretraining_params", "render", "run_estimate", "scaled_costs", "sweep_ranks",
    "train_flops",
]
