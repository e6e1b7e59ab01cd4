"""bench.analysis on synthetic tables with known crossings (see tests/analysis/synthetic.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench import analysis as A
from tests.analysis.synthetic import (
    LINFORMER_VANILLA_CROSS,
    LRT_LINFORMER_CROSS,
    LRT_LINFORMER_VANILLA_CROSS,
    latency,
    log2_close,
    synthetic,
)


def _pair(cross: pd.DataFrame, pair: str, impl: str | None = None) -> pd.DataFrame:
    rows = cross[cross["pair"] == pair]
    return rows[rows["attention_impl"] == impl] if impl else rows


def test_crossovers_found_at_known_seq_lens():
    cross = A.find_crossovers(synthetic())
    assert set(cross["pair"]) == {"lrt vs linformer", "lrt vs vanilla", "linformer vs vanilla",
                                  "lrt_linformer vs vanilla"}
    for pair, expected, lower, upper in [
        ("lrt vs linformer", LRT_LINFORMER_CROSS, 512, 1024),
        ("linformer vs vanilla", LINFORMER_VANILLA_CROSS, 256, 512),
        ("lrt_linformer vs vanilla", LRT_LINFORMER_VANILLA_CROSS, 128, 256),
    ]:
        row = _pair(cross, pair).iloc[0]
        assert log2_close(row["crossover_seq_len"], expected), (pair, row["crossover_seq_len"])
        assert (row["lower"], row["upper"]) == (lower, upper)
        assert not row["uncertain"]
    row = _pair(cross, "lrt vs linformer").iloc[0]
    assert (row["winner_below"], row["winner_above"]) == ("lrt", "linformer")
    assert "lrt faster below n ≈ 724" in row["description"]


def test_no_crossover_is_reported_as_such():
    row = _pair(A.find_crossovers(synthetic()), "lrt vs vanilla").iloc[0]
    assert math.isnan(row["crossover_seq_len"]) and not row["uncertain"]
    assert row["winner_below"] == row["winner_above"] == "lrt"
    assert row["description"].startswith("no crossover (lrt always faster")
    assert (row["lower"], row["upper"]) == (64, 4096)


def test_crossing_is_symmetric_in_the_pair():
    n, r = [512, 1024], [0.8, 1.7]
    ab = A.crossings(n, r, r, r)[0]
    ba = A.crossings(n, [1 / x for x in r], [1 / x for x in r], [1 / x for x in r])[0]
    assert log2_close(ab["crossover_seq_len"], ba["crossover_seq_len"])
    assert ab["direction"] == -ba["direction"]


def test_noise_at_a_bracketing_point_gives_a_bracket_not_a_point():
    # IQR = 80% of the median at 512: lrt/linformer's interval there covers 1, so the crossing may lie
    # on either side of 512: between the nearest clear points, 256 and 1024.
    noisy = synthetic(iqr=lambda model, n: 0.8 if n == 512 else 0.01)
    row = _pair(A.find_crossovers(noisy), "lrt vs linformer").iloc[0]
    assert row["uncertain"]
    assert math.isnan(row["crossover_seq_len"])
    assert (row["lower"], row["upper"]) == (256, 1024)
    assert "between 256 and 1024" in row["description"]
    assert (row["winner_below"], row["winner_above"]) == ("lrt", "linformer")


def test_noise_at_one_bracketing_point_is_enough():
    noisy = synthetic(iqr=lambda model, n: 0.9 if n == 1024 else 0.0)
    row = _pair(A.find_crossovers(noisy), "lrt vs linformer").iloc[0]
    assert row["uncertain"] and (row["lower"], row["upper"]) == (512, 2048)


def test_wider_noise_widens_the_bracket_to_clear_points():
    # 50% IQR everywhere: at 256 and 2048 the ratio is still clearly on one side, in between it is not.
    row = _pair(A.find_crossovers(synthetic(iqr=0.5)), "lrt vs linformer").iloc[0]
    assert row["uncertain"] and (row["lower"], row["upper"]) == (256, 2048)
    assert "between 256 and 2048" in row["description"]


def test_small_noise_keeps_the_point():
    row = _pair(A.find_crossovers(synthetic(iqr=0.05)), "lrt vs linformer").iloc[0]
    assert not row["uncertain"] and log2_close(row["crossover_seq_len"], LRT_LINFORMER_CROSS)


def test_wiggle_within_noise_is_not_a_crossover():
    # lrt ≈ linformer everywhere, the medians swapping sides within a wide spread
    lat = lambda model, n: 10.0 * (1.05 if (model == "lrt") == (n in (128, 512)) else 0.95)  # noqa: E731
    row = A.find_crossovers(synthetic(models=("lrt", "linformer"), lat=lat, iqr=0.5)).iloc[0]
    assert math.isnan(row["crossover_seq_len"]) and row["uncertain"]
    assert row["description"].startswith("no clear crossover")


def test_memory_has_no_spread_so_it_stays_certain():
    noisy = synthetic(iqr=0.5)  # latency noise must not leak into the memory verdict
    row = _pair(A.find_crossovers(noisy, "peak_mem_mb"), "lrt vs linformer").iloc[0]
    assert not row["uncertain"] and log2_close(row["crossover_seq_len"], LRT_LINFORMER_CROSS)
    assert "uses less memory" in row["description"]


def test_memory_equal_at_a_point_is_uncertain():
    lat = lambda model, n: latency(model, n) if n != 512 else 50.0  # noqa: E731
    df = synthetic(models=("lrt", "linformer"), lat=lat)
    row = A.find_crossovers(df, "peak_mem_mb").iloc[0]
    assert row["uncertain"] and (row["lower"], row["upper"]) == (256, 1024)


def test_crossovers_use_only_ok_rows_and_common_seq_lens():
    df = synthetic(failed={("linformer", 1024): "oom"})
    row = _pair(A.find_crossovers(df), "lrt vs linformer").iloc[0]
    # without 1024 the bracket is 512–2048; two power laws still cross at exactly 2^9.5
    assert (row["lower"], row["upper"]) == (512, 2048)
    assert log2_close(row["crossover_seq_len"], LRT_LINFORMER_CROSS)
    assert row["n_points"] == 6


def test_groups_are_kept_apart():
    # sdpa: vanilla twice as fast as under math → a different linformer-vs-vanilla crossover
    lat_sdpa = lambda model, n: latency(model, n) / (2 if model == "vanilla" else 1)  # noqa: E731
    df = pd.concat([synthetic(impls=("math",)), synthetic(impls=("sdpa",), lat=lat_sdpa)], ignore_index=True)
    cross = A.find_crossovers(df)
    assert len(cross) == 8
    math_x = _pair(cross, "linformer vs vanilla", "math")["crossover_seq_len"].item()
    sdpa_x = _pair(cross, "linformer vs vanilla", "sdpa")["crossover_seq_len"].item()
    assert log2_close(math_x, LINFORMER_VANILLA_CROSS) and log2_close(sdpa_x, 2 * LINFORMER_VANILLA_CROSS)


def test_ratios_vs_vanilla():
    df = synthetic(failed={("vanilla", 4096): "oom"})
    r = A.ratios_vs_vanilla(df)
    lrt = r[r["model"] == "lrt"].set_index("seq_len")
    assert np.allclose(lrt.loc[64:2048, "speedup"], 1.5)
    assert np.allclose(lrt.loc[64:2048, "memory_ratio"], 1.5)
    assert np.allclose(lrt.loc[64:2048, "energy_ratio"], 1.5)
    assert math.isnan(lrt.loc[4096, "speedup"])  # no vanilla to compare with
    van = r[r["model"] == "vanilla"]
    assert np.allclose(van["speedup"], 1.0)
    lin = r[(r["model"] == "linformer") & (r["seq_len"] == 1024)]
    assert lin["speedup"].item() == pytest.approx(latency("vanilla", 1024) / latency("linformer", 1024))
    assert r["speedup"].dtype == "float64"


def test_ratios_never_mix_groups():
    slow_vanilla = lambda m, n: latency(m, n) * (3 if m == "vanilla" else 1)  # noqa: E731
    df = pd.concat([synthetic(), synthetic(batch_size=8, lat=slow_vanilla)], ignore_index=True)
    r = A.ratios_vs_vanilla(df)
    lrt = r[r["model"] == "lrt"]
    assert np.allclose(lrt[lrt["batch_size"] == 1]["speedup"], 1.5)
    assert np.allclose(lrt[lrt["batch_size"] == 8]["speedup"], 4.5)


def test_winners():
    w = A.winners(synthetic()).set_index("seq_len")
    assert w.loc[64, "winner"] == "lrt" and w.loc[64, "runner_up"] == "vanilla"
    assert w.loc[64, "margin"] == pytest.approx(1.5)
    assert w.loc[4096, "winner"] == "lrt_linformer"
    trio = A.winners(synthetic(), models=("vanilla", "lrt", "linformer")).set_index("seq_len")
    assert list(trio["winner"]) == ["lrt"] * 4 + ["linformer"] * 3
    mem = A.winners(synthetic(), "peak_mem_mb")
    assert (mem["metric"] == "peak_mem_mb").all()


def test_thesis_check_holds_with_512_as_the_boundary():
    t = A.thesis_check(synthetic(impls=("math", "sdpa"))).set_index("attention_impl")
    assert list(t.index) == ["math", "sdpa"]
    row = t.loc["math"]
    assert row["lrt_wins_short"] == True  # noqa: E712
    # read literally the long half fails: LRT, not Linformer, wins at n = 512
    assert row["linformer_wins_long"] == False  # noqa: E712
    assert row["holds"] == True  # noqa: E712
    assert log2_close(row["crossover_seq_len"], LRT_LINFORMER_CROSS)
    assert row["exceptions"] == ""


def test_thesis_check_reports_where_it_fails():
    # sdpa-like: vanilla fastest at short lengths, so LRT does not win there
    def lat(model: str, n: int) -> float:
        return latency(model, n) * (0.5 if model == "vanilla" and n <= 128 else 1)

    row = A.thesis_check(synthetic(lat=lat)).iloc[0]
    assert row["lrt_wins_short"] == False and row["holds"] == False  # noqa: E712
    assert row["exceptions"] == "n=64: vanilla; n=128: vanilla"


def test_thesis_check_without_long_points_is_na():
    row = A.thesis_check(synthetic(seq_lens=(64, 128, 256))).iloc[0]
    assert row["lrt_wins_short"] == True  # noqa: E712
    assert pd.isna(row["linformer_wins_long"]) and pd.isna(row["holds"])


def test_variants_get_their_own_labels_and_crossovers():
    df = pd.concat([synthetic(models=("vanilla", "lrt", "linformer")),
                    synthetic(models=("lrt",), rank=128, lat=lambda m, n: 1.2 * latency(m, n))],
                   ignore_index=True)
    df["point_key"] = [f"k{i}" for i in range(len(df))]
    labels = set(A.variant_labels(df))
    assert labels == {"vanilla", "lrt (r=64)", "lrt (r=128)", "linformer"}
    cross = A.find_crossovers(df)
    assert {"lrt (r=64) vs linformer", "lrt (r=128) vs linformer"} <= set(cross["pair"])


def test_empty_tables_give_empty_results():
    empty = synthetic().iloc[:0]
    for frame in (A.find_crossovers(empty), A.ratios_vs_vanilla(empty), A.winners(empty), A.thesis_check(empty)):
        assert frame.empty


def test_zero_values_form_no_ratio():
    # a memory delta of 0 MB (tiny model) must not break the log-ratio or produce infinite ratios
    df = synthetic(models=("vanilla", "lrt", "linformer"))
    df.loc[(df["model"] == "lrt") & (df["seq_len"] == 64), "peak_mem_mb"] = 0.0
    row = _pair(A.find_crossovers(df, "peak_mem_mb"), "lrt vs linformer").iloc[0]
    assert row["n_points"] == 6 and log2_close(row["crossover_seq_len"], LRT_LINFORMER_CROSS)
    r = A.ratios_vs_vanilla(df)
    assert r.loc[(r["model"] == "lrt") & (r["seq_len"] == 64), "memory_ratio"].isna().all()
