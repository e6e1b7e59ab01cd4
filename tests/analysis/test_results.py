"""bench.results: the schema, atomic point records, consolidation and loading."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings

import pandas as pd
import pytest

from bench import results as R
from tests.analysis.synthetic import synthetic_records

DESIGN_FIELDS = (
    "model attention_impl linformer_k linformer_sharing rank d_model n_heads d_ff n_layers seq_len batch_size "
    "mode device dtype params flops latency_ms latency_iqr_ms latency_p90_ms tokens_per_s peak_mem_mb "
    "energy_kwh co2_kg energy_source status error config_hash timestamp torch_version device_name cpu_model "
    "git_sha codecarbon_version country_iso_code"
).split()


def _temp_files(directory):
    return [p.name for p in directory.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_columns_hold_design_schema_and_extensions_once():
    assert len(set(R.COLUMNS)) == len(R.COLUMNS)
    assert set(DESIGN_FIELDS) <= set(R.COLUMNS)
    assert set(R.EXTENSION_COLUMNS) <= set(R.COLUMNS)
    assert set(R.COLUMNS) == set(DESIGN_FIELDS) | set(R.EXTENSION_COLUMNS)
    groups = R.IDENTITY_COLUMNS + R.FIGURE_COLUMNS + R.OUTCOME_COLUMNS + R.PROVENANCE_COLUMNS
    assert groups == R.COLUMNS
    assert R.IDENTITY_COLUMNS == tuple(DESIGN_FIELDS[:14])
    assert set(R.NUMERIC_COLUMNS) | set(R.STRING_COLUMNS) == set(R.COLUMNS)
    assert R.STATUSES == ("ok", "oom", "error", "timeout", "skipped")


def test_write_point_is_atomic_and_strict_json(tmp_path):
    points = tmp_path / "points"
    rec = R.blank_record(point_key="abc123", model="lrt", seq_len=64, status="ok", latency_ms=float("nan"))
    path = R.write_point(points, rec)
    assert path == points / "abc123.json"
    assert _temp_files(points) == []
    data = json.loads(path.read_text())  # strict JSON: NaN became null
    assert data["latency_ms"] is None and data["model"] == "lrt"
    # rewriting the same key replaces the file
    R.write_point(points, dict(rec, latency_ms=2.0))
    assert [p.name for p in points.iterdir()] == ["abc123.json"]
    assert json.loads(path.read_text())["latency_ms"] == 2.0


@pytest.mark.parametrize("key", [None, "", "../evil", "a/b", ".hidden"])
def test_write_point_refuses_unsafe_keys(tmp_path, key):
    with pytest.raises(ValueError, match="point_key"):
        R.write_point(tmp_path, {"point_key": key})


def test_write_point_refuses_unknown_status(tmp_path):
    with pytest.raises(ValueError, match="status='crashed'"):
        R.write_point(tmp_path, {"point_key": "k", "status": "crashed"})


def test_interrupted_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = R.write_point(tmp_path, {"point_key": "k", "status": "ok", "latency_ms": 1.0})

    def half_then_die(f):
        f.write(b'{"point_key": "k", "lat')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        R._atomic_write(path, half_then_die)
    assert json.loads(path.read_text())["latency_ms"] == 1.0
    assert _temp_files(tmp_path) == []


def test_read_points_ignores_temp_files_and_skips_corrupt_ones(tmp_path):
    R.write_point(tmp_path, {"point_key": "good", "status": "ok"})
    (tmp_path / ".half.json.x1y2.tmp").write_text('{"point_key": "half", "sta')  # a kill -9 mid-write
    (tmp_path / "broken.json").write_text('{"point_key": "broken", ')
    (tmp_path / "notes.txt").write_text("not a point")
    with pytest.warns(UserWarning, match="broken.json"):
        records = R.read_points(tmp_path)
    assert [r["point_key"] for r in records] == ["good"]
    assert R.read_points(tmp_path / "missing") == []


def test_consolidate_one_row_per_point_in_column_order(tmp_path):
    sweep = tmp_path / "cpu"
    records = synthetic_records(failed={("vanilla", 4096): "oom"})
    for rec in records:
        R.write_point(sweep / "points", rec)
    # re-measured point: same key, newer timestamp → still one row, the new value
    R.write_point(sweep / "points", dict(records[0], latency_ms=99.0, timestamp="2030-01-01T00:00:00"))
    # a failed point that carried a partial figure keeps NaN figures (but its analytic params)
    oom = next(r for r in records if r["status"] == "oom")
    R.write_point(sweep / "points", dict(oom, latency_ms=5.0))

    df = R.consolidate(sweep)
    assert len(df) == len(records) == df["point_key"].nunique()
    assert tuple(df.columns) == R.COLUMNS
    assert df.loc[df["point_key"] == records[0]["point_key"], "latency_ms"].item() == 99.0
    failed = df[df["status"] == "oom"]
    assert len(failed) == 1 and math.isnan(failed["latency_ms"].item()) and failed["params"].item() > 0
    assert (sweep / R.CSV_NAME).is_file() and (sweep / R.PARQUET_NAME).is_file()
    assert _temp_files(sweep) == []
    # numeric columns numeric, text columns text
    assert str(df["seq_len"].dtype) == "Int64" and df["latency_ms"].dtype == "float64"
    assert df["rank"].dtype == "float64" and pd.api.types.is_string_dtype(df["model"])
    assert df["energy_kwh"].isna().sum() == 1  # only the failed point


def test_consolidate_empty_sweep(tmp_path):
    df = R.consolidate(tmp_path)
    assert df.empty and tuple(df.columns) == R.COLUMNS
    assert R.load(tmp_path / R.CSV_NAME).empty


@pytest.mark.parametrize("name", [R.CSV_NAME, R.PARQUET_NAME])
def test_load_round_trips_consolidated_files(tmp_path, name):
    for rec in synthetic_records(failed={("lrt", 2048): "timeout"}, git_sha="0123"):
        R.write_point(tmp_path / "points", rec)
    expected = R.consolidate(tmp_path)
    loaded = R.load(tmp_path / name)
    pd.testing.assert_frame_equal(loaded, expected)
    assert (loaded["git_sha"] == "0123").all()  # all-digit text keeps its leading zero


def test_load_accepts_points_sweep_and_root_dirs(tmp_path):
    for sweep in ("alpha", "beta"):
        for rec in synthetic_records(models=("vanilla", "lrt"), seq_lens=(64, 128), sweep_name=None):
            R.write_point(tmp_path / "nested" / sweep / "points", dict(rec, point_key=f"{sweep}-{rec['point_key']}"))
    assert len(R.load(tmp_path / "nested" / "alpha" / "points")) == 4
    one = R.load(tmp_path / "nested" / "alpha")
    assert len(one) == 4 and set(one["sweep_name"]) == {"alpha"}
    both = R.load(tmp_path)
    assert len(both) == 8 and set(both["sweep_name"]) == {"alpha", "beta"}
    assert tuple(both.columns) == R.COLUMNS
    # a single point file
    assert len(R.load(tmp_path / "nested" / "beta" / "points" / "beta-math-lrt-64-1.json")) == 1


def test_load_prefers_points_and_falls_back_to_consolidated(tmp_path):
    for rec in synthetic_records(models=("vanilla",), seq_lens=(64,)):
        R.write_point(tmp_path / "points", rec)
    R.consolidate(tmp_path)
    R.write_point(tmp_path / "points", dict(rec, point_key="late", seq_len=128))
    assert len(R.load(tmp_path)) == 2  # the points are the truth; the csv is one point behind
    for p in (tmp_path / "points").iterdir():
        p.unlink()
    assert len(R.load(tmp_path)) == 1


def test_load_empty_and_missing(tmp_path):
    empty = R.load(tmp_path)
    assert empty.empty and tuple(empty.columns) == R.COLUMNS
    with pytest.raises(FileNotFoundError):
        R.load(tmp_path / "nope")


def test_extra_keys_are_kept_after_schema_columns(tmp_path):
    R.write_point(tmp_path, {"point_key": "k", "status": "ok", "zeta_extra": 1, "alpha_extra": "x"})
    df = R.load(tmp_path)
    assert tuple(df.columns) == R.COLUMNS + ("alpha_extra", "zeta_extra")


def test_non_numeric_value_in_numeric_column_is_kept_with_warning(tmp_path):
    R.write_point(tmp_path, {"point_key": "k", "status": "ok", "dense_fallback_layers": ["ffn.0"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = R.load(tmp_path)
    assert df["dense_fallback_layers"].item() == '["ffn.0"]'
    assert any("dense_fallback_layers" in str(w.message) for w in caught)


def test_consolidate_removes_temp_files_of_dead_writers_only(tmp_path):
    points = tmp_path / "points"
    R.write_point(points, {"point_key": "k", "status": "ok"})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = R._host()
    abandoned = points / f".k2.json.{host}.{dead}.ab12_x.tmp"
    in_flight = points / f".k3.json.{host}.{os.getpid()}.cd34_y.tmp"
    elsewhere = points / ".k4.json.otherhost.1.ef56.tmp"  # another node of a shared file system, fresh
    for p in (abandoned, in_flight, elsewhere):
        p.write_text('{"point_key": "k')
    R.consolidate(tmp_path)
    assert not abandoned.exists() and in_flight.exists() and elsewhere.exists()
    assert len(R.load(tmp_path)) == 1


def test_point_status(tmp_path):
    R.write_point(tmp_path, {"point_key": "done", "status": "ok"})
    R.write_point(tmp_path, {"point_key": "failed", "status": "oom"})
    (tmp_path / "torn.json").write_text("{")
    assert R.point_status(tmp_path, "done") == "ok"
    assert R.point_status(tmp_path, "failed") == "oom"
    assert R.point_status(tmp_path, "torn") is None and R.point_status(tmp_path, "absent") is None
