"""bench.estimate: Strubell's BERT-base row, the FLOP ratio, the measured ratio, the rank sweep, bad input."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.estimate import (
    LBS_TO_KG,
    EstimateConfig,
    encoder_config,
    estimate_from_overrides,
    load_config,
    measured_ratios,
    pretraining_flop_breakdown,
    pretraining_params,
    render,
    run_estimate,
)
from bench.measure.flops import step_flops
from bench.models import make_config

REPO = Path(__file__).resolve().parents[2]
REQUIRED_ROW_KEYS = {"model", "rank", "linformer_k", "params", "train_flops", "gpu_hours", "kwh", "co2e_lbs",
                     "co2e_kg", "cost_usd_low", "cost_usd_high", "savings_pct"}


@pytest.fixture(scope="module")
def default_result():
    return run_estimate(EstimateConfig())


def row(result, model: str) -> pd.Series:
    return result.rows.set_index("model").loc[model]


# --- the baseline -------------------------------------------------------------------------------------

def test_vanilla_row_reproduces_strubell_table_3(default_result):
    vanilla = row(default_result, "vanilla")
    # Strubell et al. 2019 eq. 1-2 with their BERT-base inputs; Table 3 prints the rounded values.
    kwh = 1.58 * 79.2 * 12041.51 / 1000
    assert vanilla["kwh"] == kwh
    assert vanilla["co2e_lbs"] == 0.954 * kwh
    assert round(vanilla["kwh"]) == 1507
    assert round(vanilla["co2e_lbs"]) == 1438
    assert vanilla["co2e_kg"] == pytest.approx(1438 * LBS_TO_KG, abs=0.5)
    assert vanilla["gpu_hours"] == pytest.approx(64 * 79.2)
    assert (vanilla["cost_usd_low"], vanilla["cost_usd_high"]) == (3751, 12571)
    assert vanilla["flops_ratio"] == 1 and vanilla["savings_pct"] == 0


def test_costs_scale_with_the_ratio(default_result):
    lrt, vanilla = row(default_result, "lrt"), row(default_result, "vanilla")
    ratio = lrt["flops_ratio"]
    for key in ("hours", "gpu_hours", "kwh", "co2e_lbs", "co2e_kg", "cost_usd_low", "cost_usd_high", "co2e_kg_FRA"):
        assert lrt[key] == pytest.approx(ratio * vanilla[key])
    assert lrt["savings_pct"] == pytest.approx(100 * (1 - ratio))


def test_grid_columns_use_codecarbon_intensity(default_result):
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    vanilla = row(default_result, "vanilla")
    for code in ("USA", "FRA", "DEU", "IND", "CHN"):
        assert vanilla[f"co2e_kg_{code}"] == pytest.approx(vanilla["kwh"] * mix[code]["carbon_intensity"] / 1000)


# --- the workload -------------------------------------------------------------------------------------

def independent_train_flops(model: str) -> float:
    """The recipe from the suite's step_flops plus BERT's heads written out (Devlin et al. 2019 recipe)."""
    d, vocab = 768, 30522
    enc = make_config(model, "bert_base", max_seq_len=512, vocab_size=vocab, learned_positions=True)
    total = 0.0
    for n, fraction in ((128, 0.9), (512, 0.1)):
        pooler_nsp = 2 * d * d + 2 * d * 2
        mlm = 0.15 * n * (2 * d * d + 2 * d * vocab)
        total += fraction * (step_flops(enc, n, 256, "train") + 3 * 256 * (pooler_nsp + mlm))
    return 1_000_000 * total


def test_analytic_ratio_equals_the_flop_formulas(default_result):
    vanilla = independent_train_flops("vanilla")
    for model in ("vanilla", "lrt", "linformer", "lrt_linformer"):
        expected = independent_train_flops(model)
        assert row(default_result, model)["train_flops"] == pytest.approx(expected, rel=1e-12)
        assert row(default_result, model)["flops_ratio"] == pytest.approx(expected / vanilla, rel=1e-12)


def test_lrt_beats_30_percent_and_linformer_k256_saves_nothing(default_result):
    assert row(default_result, "lrt")["savings_pct"] > 30
    assert row(default_result, "linformer")["savings_pct"] < 0  # k = 256 ≥ 128: projects up (see assumptions)


def test_params_match_hugging_face_bert_for_pretraining():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from bench.models import count_params, factorize

    cfg = EstimateConfig()
    with torch.device("meta"):  # shapes only: no weights initialised, nothing downloaded
        hf = transformers.BertForPreTraining(transformers.BertConfig())
    assert count_params(hf) == pretraining_params(cfg, encoder_config(cfg, "vanilla")) == 110_106_428
    assert count_params(hf.bert) == 109_482_240  # FACTS.md: BertModel(BertConfig())
    # LRT factorizes the encoder only; the pooler and the heads (cls.*) stay dense.
    factorize(hf, 256, solver="random", skip=["cls.*", "bert.pooler.*"])
    assert count_params(hf) == pretraining_params(cfg, encoder_config(cfg, "lrt"))


def test_head_flops_match_flop_counter_on_a_tiny_hugging_face_bert():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from bench.measure.flops import count_flops

    # mlm_fraction=1.0: Hugging Face scores every position.
    cfg = EstimateConfig(d_model=64, n_heads=4, d_ff=256, n_layers=2, vocab_size=100, max_position_embeddings=64,
                         batch_size=2, mlm_fraction=1.0, rank=8, linformer_k=8)
    hf = transformers.BertForPreTraining(transformers.BertConfig(
        hidden_size=64, num_attention_heads=4, intermediate_size=256, num_hidden_layers=2, vocab_size=100,
        max_position_embeddings=64)).eval()
    ids = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        counted = count_flops(lambda: hf(input_ids=ids))
    assert sum(pretraining_flop_breakdown(cfg, encoder_config(cfg, "vanilla"), 16).values()) == counted


# --- the rank sweep -----------------------------------------------------------------------------------

def test_savings_grow_as_rank_falls(default_result):
    sweep = default_result.rank_sweep.sort_values("rank")
    assert sweep["savings_pct"].is_monotonic_decreasing and sweep["savings_pct"].is_unique
    assert (sweep["meets_threshold"] == (sweep["savings_pct"] >= 30)).all()


def test_rank_at_threshold_is_the_exact_crossing(default_result):
    r = default_result.rank_at_threshold
    assert r is not None
    at, above = (run_estimate(EstimateConfig(rank=x, rank_sweep=[], models=["lrt"])) for x in (r, r + 1))
    assert row(at, "lrt")["savings_pct"] >= 30 > row(above, "lrt")["savings_pct"]


def test_rank_sweep_figure_and_table_written(tmp_path):
    result = run_estimate(EstimateConfig(out_dir=str(tmp_path), rank_sweep=[64, 256, 383]))
    assert result.figure_path == tmp_path / "estimate_rank_sweep.png"
    assert result.figure_path.read_bytes()[:4] == b"\x89PNG"
    assert list(pd.read_csv(tmp_path / "estimate_rank_sweep.csv")["rank"]) == [64, 256, 383]


# --- measured mode ------------------------------------------------------------------------------------

# Train step latency per sequence (ms) at batch 8: seq_len → time.
PER_SEQUENCE_MS = {
    "vanilla": {128: 10.0, 512: 50.0},
    "lrt": {128: 6.0, 512: 35.0},
    "linformer": {128: 11.0, 512: 45.0},
    "lrt_linformer": {128: 7.0, 512: 30.0},
}


def synthetic_rows() -> list[dict]:
    base = dict(mode="train", status="ok", d_model=768, n_heads=12, d_ff=3072, n_layers=12, attention_impl="sdpa",
                device="cpu", dtype="float32", linformer_sharing="layerwise")
    rows = []
    for model, times in PER_SEQUENCE_MS.items():
        knobs = {"rank": 256 if "lrt" in model else None, "linformer_k": 256 if "linformer" in model else None}
        for n, t in times.items():
            rows.append(dict(base, **knobs, model=model, seq_len=n, batch_size=8, latency_ms=8 * t))
            # Batch 1 is overhead-dominated: ignored because batch 8 is measured for both sides.
            rows.append(dict(base, **knobs, model=model, seq_len=n, batch_size=1, latency_ms=3 * t))
    # Repeats reduce to their median; rows of another rank, size, mode or a failed run are not used.
    rows.append(dict(rows[0], latency_ms=70.0))
    rows.append(dict(rows[0], latency_ms=90.0))
    rows.append(dict(base, model="lrt", rank=128, seq_len=128, batch_size=8, latency_ms=1.0))
    rows.append(dict(base, model="lrt", rank=256, seq_len=128, batch_size=8, latency_ms=1.0, d_model=512))
    rows.append(dict(base, model="lrt", rank=256, seq_len=128, batch_size=8, latency_ms=1.0, mode="inference"))
    rows.append(dict(base, model="lrt", rank=256, seq_len=512, batch_size=8, latency_ms=1.0, status="error"))
    # A larger batch without a vanilla partner cannot be compared.
    rows.append(dict(base, model="lrt", rank=256, seq_len=512, batch_size=32, latency_ms=1.0))
    return [dict(r, point_key=f"p{i}") for i, r in enumerate(rows)]


def expected_measured_ratio(model: str) -> float:
    """Σ f·t_model / Σ f·t_vanilla: the per-length ratios weighted by 0.9/0.1 × vanilla's time."""
    t, v = PER_SEQUENCE_MS[model], PER_SEQUENCE_MS["vanilla"]
    return (0.9 * t[128] + 0.1 * t[512]) / (0.9 * v[128] + 0.1 * v[512])


def write_results(tmp_path: Path, rows: list[dict]) -> str:
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    return str(tmp_path)


def test_measured_ratio_is_recipe_weighted(tmp_path):
    result = run_estimate(EstimateConfig(results_dir=write_results(tmp_path, synthetic_rows())))
    for model in PER_SEQUENCE_MS:
        r = row(result, model)
        assert r["measured_ratio"] == pytest.approx(expected_measured_ratio(model))
        assert r["cost_basis"] == "measured"
        assert r["savings_pct"] == pytest.approx(100 * (1 - expected_measured_ratio(model)))
    # lrt: (0.9·6 + 0.1·35) / (0.9·10 + 0.1·50) = 8.9 / 14, not 0.9·0.6 + 0.1·0.7 = 0.61.
    assert row(result, "lrt")["measured_ratio"] == pytest.approx(8.9 / 14)
    assert row(result, "lrt")["kwh"] == pytest.approx(1.58 * 79.2 * 12041.51 / 1000 * 8.9 / 14)


def test_cost_basis_analytic_keeps_measured_ratio_beside_it(tmp_path):
    result = run_estimate(EstimateConfig(results_dir=write_results(tmp_path, synthetic_rows()),
                                         cost_basis="analytic"))
    lrt = row(result, "lrt")
    assert lrt["savings_pct"] == pytest.approx(100 * (1 - lrt["flops_ratio"]))
    assert lrt["measured_ratio"] == pytest.approx(8.9 / 14)


def test_missing_rows_name_what_to_sweep(tmp_path):
    rows = [r for r in synthetic_rows() if not (r["model"] == "lrt" and r["seq_len"] == 512)]
    results_dir = write_results(tmp_path, rows)
    with pytest.raises(ValueError) as err:
        run_estimate(EstimateConfig(results_dir=results_dir))
    message = str(err.value)
    assert message.startswith(f"results_dir={results_dir!r}: no ok train-mode rows")
    assert "model=lrt at seq_len=512" in message and "d_model=768" in message
    assert "run: python -m bench sweep size=bert_base mode=train seq_len=128,512" in message
    assert "model=vanilla,lrt,linformer,lrt_linformer rank=256" in message


def test_results_without_vanilla_or_any_rows(tmp_path):
    with pytest.raises(ValueError, match="model=vanilla at seq_len=128,512"):
        measured_ratios(pd.DataFrame([r for r in synthetic_rows() if r["model"] != "vanilla"]), EstimateConfig())
    with pytest.raises(ValueError, match=r"no ok train-mode rows .* model=vanilla"):
        measured_ratios(pd.DataFrame(), EstimateConfig(), source="empty")


def test_rows_mixing_devices_ask_for_a_filter():
    rows = synthetic_rows() + [dict(synthetic_rows()[0], device="cuda", point_key="gpu")]
    with pytest.raises(ValueError, match=r"mix device=\['cpu', 'cuda'\]; choose one with device="):
        measured_ratios(pd.DataFrame(rows), EstimateConfig())
    ratios, _ = measured_ratios(pd.DataFrame(rows), EstimateConfig(device="cpu"))
    assert ratios["lrt"] == pytest.approx(8.9 / 14)


# --- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (dict(hours=-1), "hours=-1: must be > 0"),
    (dict(hours=0), "hours=0: must be > 0"),
    (dict(total_power_w=0), "total_power_w=0: must be > 0"),
    (dict(total_power_w=-5.0), "total_power_w=-5.0: must be > 0"),
    (dict(gpu_count=0), "gpu_count=0: must be ≥ 1"),
    (dict(gpu_count=2.5), "gpu_count=2.5: must be an int"),
    (dict(pue=0.9), "pue=0.9: must be >= 1"),
    (dict(lbs_per_kwh=0), "lbs_per_kwh=0: must be > 0"),
    (dict(cost_usd_high=100), "cost_usd_high=100: must be ≥ 3751"),
    (dict(rank=0), "rank=0: must be a positive int"),
    (dict(rank=1.5), "rank=1.5: a float rank is a fraction"),
    (dict(rank=700), "rank=700: reaches the break-even rank of every layer"),
    (dict(linformer_k=0), "linformer_k=0: must be an int in [1, max_seq_len=512]"),
    (dict(linformer_k=1024), "linformer_k=1024: must be an int in [1, max_seq_len=512]"),
    (dict(linformer_sharing="rows"), "linformer_sharing='rows'"),
    (dict(country_iso_code=["USA", "XYZ"]), "country_iso_code='XYZ'"),
    (dict(seq_fractions=[0.8, 0.1]), "seq_fractions=[0.8, 0.1]: must sum to 1"),
    (dict(seq_fractions=[1.0]), "seq_fractions=[1.0]: need one fraction per seq_len"),
    (dict(seq_lens=[128, 1024]), "seq_lens=[128, 1024]: each must be an int in [1, max_position_embeddings=512]"),
    (dict(models=["vanilla", "bert"]), "models=['vanilla', 'bert']"),
    (dict(rank_sweep=[64, 700]), "rank_sweep=[64, 700]: rank=700"),
    (dict(mlm_fraction=0), "mlm_fraction=0: must be > 0"),
    (dict(format="xml"), "format='xml': expected one of table, markdown, json"),
    (dict(cost_basis="measured"), "cost_basis='measured': needs results_dir="),
    (dict(results_dir="/nonexistent/results"), "results_dir='/nonexistent/results': no such file"),
])
def test_bad_input_names_its_key(overrides, message):
    with pytest.raises(ValueError) as err:
        run_estimate(EstimateConfig(**overrides))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_field_is_refused():
    with pytest.raises(ValueError, match="^hourz=3: unknown estimate field"):
        EstimateConfig.from_mapping({"hourz": 3})


# --- config file and output ---------------------------------------------------------------------------

def test_hydra_config_mirrors_the_dataclass_defaults():
    values = yaml.safe_load((REPO / "conf" / "estimate" / "bert_base.yaml").read_text())
    assert values == asdict(EstimateConfig())
    assert EstimateConfig.from_mapping(values) == EstimateConfig()


def test_command_line_overrides_compose_the_config_file():
    cfg = load_config(["rank=0.5", "country_iso_code=[FRA]", "results_dir=null", "format=json"])
    assert (cfg.rank, cfg.country_iso_code, cfg.results_dir, cfg.hours) == (0.5, ["FRA"], None, 79.2)
    payload = json.loads(estimate_from_overrides(["rank=128", "format=json"]).splitlines()[-1])
    assert payload["rows"][1]["rank"] == 128
    with pytest.raises(ValueError, match=r"^hourz=3: unknown estimate key 'hourz' \(did you mean hours\?\)$"):
        load_config(["hourz=3"])


def test_json_last_line_is_one_object_with_rows(default_result):
    payload = json.loads(render(default_result, "json").splitlines()[-1])
    assert [r["model"] for r in payload["rows"]] == ["vanilla", "lrt", "linformer", "lrt_linformer"]
    for r in payload["rows"]:
        assert REQUIRED_ROW_KEYS <= r.keys()
    assert payload["rows"][1]["rank"] == 256 and payload["rows"][0]["rank"] is None
    assert payload["rows"][0]["measured_ratio"] is None  # NaN → null: strict JSON
    assert payload["rank_at_threshold"] == default_result.rank_at_threshold
    assert payload["rank_sweep"] and payload["assumptions"]


@pytest.mark.parametrize("fmt, marker", [("table", "kWh·PUE"), ("markdown", "| model |")])
def test_text_formats_show_every_model_and_the_assumptions(default_result, fmt, marker):
    text = render(default_result, fmt)
    assert marker in text and "Strubell" in text
    assert all(model in text for model in ("vanilla", "lrt", "linformer", "lrt_linformer"))
    assert f"rank ≤ {default_result.rank_at_threshold}" in text
