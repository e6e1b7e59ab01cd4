"""The results schema as code, atomic point records, and loading them back as one tidy table.

One grid point = one JSON record under ``results/<sweep>/points/<point_key>.json``. The consolidated
``results.csv`` / ``results.parquet`` are *derived* from those records and can always be rebuilt
(:func:`consolidate`). This module must stay importable without torch or ``bench.models``: plotting and
reporting regenerate from stored results on machines (and in notebooks) that never measured anything.

Schema: ../shared/DESIGN.md, "Results schema" (extend, don't rename), plus the extensions listed in
:data:`EXTENSION_COLUMNS`.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import pandas as pd

# --- the schema ---------------------------------------------------------------------------------------

#: Which configuration a row measured. Two rows with equal identity measured the same thing.
IDENTITY_COLUMNS: tuple[str, ...] = (
    "model", "attention_impl", "linformer_k", "linformer_sharing", "rank",
    "d_model", "n_heads", "d_ff", "n_layers",
    "seq_len", "batch_size", "mode", "device", "dtype",
)

#: What was measured (or computed analytically) for that configuration, and how.
FIGURE_COLUMNS: tuple[str, ...] = (
    "params", "flops", "dense_fallback_layers",
    "latency_ms", "latency_iqr_ms", "latency_p90_ms", "latency_runs", "cold_latency_ms",
    "tokens_per_s", "achieved_gflops", "device_peak_gflops", "fraction_of_peak",
    "peak_mem_mb", "memory_method",
    "energy_kwh", "co2_kg", "energy_source", "energy_steps", "energy_error",
    "cpu_power_w", "gpu_power_w", "ram_power_w", "pue",
)

#: Whether the point finished. ``wall_s`` is the whole point (model build included), so timeouts have one too;
#: ``measure_s`` the part spent inside the trackers (wall − measure = harness overhead).
OUTCOME_COLUMNS: tuple[str, ...] = ("status", "error", "wall_s", "measure_s")

#: Where and with what the row was measured.
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "sweep_name", "point_key", "config_hash", "timestamp",
    "torch_version", "python_version", "codecarbon_version", "git_sha",
    "device_name", "cpu_model", "country_iso_code",
)

#: Every column, in table order.
COLUMNS: tuple[str, ...] = IDENTITY_COLUMNS + FIGURE_COLUMNS + OUTCOME_COLUMNS + PROVENANCE_COLUMNS

#: Columns this suite adds to DESIGN.md's schema.
EXTENSION_COLUMNS: tuple[str, ...] = (
    "latency_runs", "cold_latency_ms", "achieved_gflops", "cpu_power_w", "gpu_power_w", "ram_power_w",
    "energy_steps", "energy_error", "memory_method", "pue", "dense_fallback_layers", "sweep_name",
    "point_key", "wall_s", "python_version", "device_peak_gflops", "fraction_of_peak", "measure_s",
)

STATUSES: tuple[str, ...] = ("ok", "oom", "error", "timeout", "skipped")
#: Statuses that mean "tried and failed" (``skipped`` was never tried).
FAILED_STATUSES: tuple[str, ...] = ("oom", "error", "timeout")

#: Whole numbers; nullable because e.g. ``linformer_k`` is absent for full attention.
INT_COLUMNS: tuple[str, ...] = (
    "linformer_k", "d_model", "n_heads", "d_ff", "n_layers", "seq_len", "batch_size",
    "params", "latency_runs", "energy_steps", "dense_fallback_layers",
)
#: Real numbers. ``rank`` is here because a float 0<r<1 is a fraction of the break-even rank
#: (FACTS.md, greenformer rank convention); ``flops`` because train-mode BERT-base steps exceed 2**53.
FLOAT_COLUMNS: tuple[str, ...] = (
    "rank", "flops", "latency_ms", "latency_iqr_ms", "latency_p90_ms", "cold_latency_ms",
    "tokens_per_s", "achieved_gflops", "peak_mem_mb", "energy_kwh", "co2_kg",
    "cpu_power_w", "gpu_power_w", "ram_power_w", "pue", "wall_s", "device_peak_gflops", "fraction_of_peak",
    "measure_s",
)
NUMERIC_COLUMNS: tuple[str, ...] = INT_COLUMNS + FLOAT_COLUMNS
STRING_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in NUMERIC_COLUMNS)

#: Figures that only a finished measurement has; a failed point keeps them NaN rather than a partial value.
#: (params/flops are analytic and stay: they are known even when the run died.)
MEASURED_COLUMNS: tuple[str, ...] = (
    "latency_ms", "latency_iqr_ms", "latency_p90_ms", "latency_runs", "cold_latency_ms",
    "tokens_per_s", "achieved_gflops", "fraction_of_peak", "peak_mem_mb",
    "energy_kwh", "co2_kg", "energy_steps", "cpu_power_w", "gpu_power_w", "ram_power_w",
)

POINTS_DIRNAME = "points"
CSV_NAME = "results.csv"
PARQUET_NAME = "results.parquet"

# A point key becomes a file name: keep it to one safe path component.
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,200}$")
_TMP_SUFFIX = ".tmp"
# Temp files are named .<target>.<host>.<pid>.<random>.tmp, so a later process can tell an abandoned one
# (its writer was killed) from one being written right now by a parallel worker.
_TMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
#: A temp file from another host is only removed once this old (its writer cannot be checked from here).
STALE_TMP_S = 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"


def blank_record(**values: Any) -> dict[str, Any]:
    """A record with every column of :data:`COLUMNS` set to None, then updated with ``values``."""
    record: dict[str, Any] = dict.fromkeys(COLUMNS)
    record.update(values)
    return record


# --- atomic writes ------------------------------------------------------------------------------------

def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` so that readers see either the old file or the whole new one, never a part.

    The temp file lives in the same directory because ``os.replace`` is only atomic within one file
    system; its name starts with '.' and ends with '.tmp' so that :func:`read_points` skips it if a
    kill -9 leaves it behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_host()}.{os.getpid()}.",
                               suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some file systems refuse a directory fd, which only costs durability.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete temp files left by writers that died mid-write (kill -9); returns what was removed.

    A temp file is stale when its writer's pid is gone on this host, or, from another host (a shared
    file system), when it is older than :data:`STALE_TMP_S`. Temp files of live writers are kept.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed, host, now = [], _host(), time.time()
    for path in directory.iterdir():
        m = _TMP_RE.match(path.name)
        if not m:
            continue
        try:
            stale = (not _pid_alive(int(m["pid"])) if m["host"] == host
                     else now - path.stat().st_mtime > STALE_TMP_S)
            if stale:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # its writer finished (renamed it) meanwhile
            continue
    return removed


def _json_value(value: Any) -> Any:
    """Plain JSON for one value: NaN/inf → None (strict JSON has no NaN), numpy scalars → Python."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"point_key={key!r}: must be a non-empty file-name-safe string ([A-Za-z0-9._=+-])")
    return key


def write_point(points_dir: Path, record: dict) -> Path:
    """Write one point record atomically as ``points_dir/<point_key>.json`` and return its path.

    Rewriting the same ``point_key`` replaces the file, so a re-measured point never becomes two rows.
    Keys outside :data:`COLUMNS` are kept (the schema may be extended, never renamed).
    """
    key = _check_key(record.get("point_key"))
    status = record.get("status")
    if status is not None and status not in STATUSES:
        raise ValueError(f"status={status!r}: expected one of {', '.join(STATUSES)}")
    data = json.dumps(_json_value(dict(record)), indent=1, sort_keys=False, allow_nan=False)
    return _atomic_write(Path(points_dir) / f"{key}.json", lambda f: f.write(data.encode() + b"\n"))


def _is_point_file(path: Path) -> bool:
    return path.suffix == ".json" and not path.name.startswith(".") and path.is_file()


def point_status(points_dir: Path, key: str) -> str | None:
    """Status of the stored record for ``key``; None when there is none or it cannot be read (resume check)."""
    try:
        record = json.loads((Path(points_dir) / f"{_check_key(key)}.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record.get("status") if isinstance(record, dict) else None


def read_points(points_dir: Path) -> list[dict]:
    """All point records in ``points_dir``, sorted by file name.

    Temp files of interrupted writes (``.<name>.tmp``) are ignored; a file that is not a JSON object
    with a ``point_key`` is skipped with a warning, so one damaged file never hides the others.
    """
    points_dir = Path(points_dir)
    if not points_dir.is_dir():
        return []
    records = []
    for path in sorted(p for p in points_dir.iterdir() if _is_point_file(p)):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            warnings.warn(f"{path}: unreadable point record skipped ({exc})", stacklevel=2)
            continue
        if not isinstance(record, dict) or not record.get("point_key"):
            warnings.warn(f"{path}: not a point record (no point_key), skipped", stacklevel=2)
            continue
        records.append(record)
    return records


# --- the table ----------------------------------------------------------------------------------------

def _flatten(value: Any) -> Any:
    # Lists/dicts (e.g. a list of dense-fallback layer names) cannot share a parquet column with scalars.
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def _coerce_numeric(col: pd.Series, name: str, integer: bool) -> pd.Series:
    num = pd.to_numeric(col, errors="coerce")
    lost = col.notna() & num.isna()
    if lost.any():
        # Keep the data rather than silently turning it into NaN: a writer extended the column's meaning.
        warnings.warn(f"column {name!r} has non-numeric values (e.g. {col[lost].iloc[0]!r}); kept as text",
                      stacklevel=3)
        return col.astype("str")
    num = num.astype("float64")
    if integer and ((num.dropna() % 1) == 0).all():
        return num.astype("Int64")
    return num


def to_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Records → DataFrame: columns in :data:`COLUMNS` order (missing ones all-NaN), then any extra keys
    sorted; schema dtypes (Int64/float64/str); one row per ``point_key`` (the newest ``timestamp`` wins);
    measured figures of non-ok rows blanked to NaN."""
    rows = [{k: _flatten(v) for k, v in r.items()} for r in records]
    df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    return normalize(df)


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Bring any results-like frame (from JSON, CSV or parquet) to the schema's columns, order and dtypes."""
    df = df.copy()
    for name in COLUMNS:
        if name not in df.columns:
            df[name] = None
    extra = sorted(c for c in df.columns if c not in COLUMNS)
    df = df[list(COLUMNS) + extra]
    for name in INT_COLUMNS:
        df[name] = _coerce_numeric(df[name], name, integer=True)
    for name in FLOAT_COLUMNS:
        df[name] = _coerce_numeric(df[name], name, integer=False)
    for name in STRING_COLUMNS:
        df[name] = df[name].astype("str")  # missing stays missing (pandas' str dtype keeps NaN)
    if len(df):
        failed = df["status"].fillna("") != "ok"
        for name in MEASURED_COLUMNS:
            if pd.api.types.is_numeric_dtype(df[name]):
                df.loc[failed, name] = None
        # Same key twice (e.g. two copies of one sweep): keep the latest measurement.
        order = df.assign(_ts=df["timestamp"].fillna("")).sort_values("_ts", kind="stable")
        order = order[order["point_key"].notna()]
        dup = order.duplicated("point_key", keep="last")
        df = df.drop(index=dup.index[dup]).reset_index(drop=True)
    return df


def _write_table(sweep_dir: Path, df: pd.DataFrame) -> None:
    csv = df.to_csv(index=False).encode()
    _atomic_write(sweep_dir / CSV_NAME, lambda f: f.write(csv))
    _atomic_write(sweep_dir / PARQUET_NAME, lambda f: df.to_parquet(f, index=False))


def consolidate(sweep_dir: Path) -> pd.DataFrame:
    """Rebuild ``results.csv`` and ``results.parquet`` in ``sweep_dir`` from ``sweep_dir/points/``.

    Each file is replaced atomically, so parallel workers consolidating at once leave a complete table
    (the last writer's). Temp files abandoned by killed writers are removed first. Returns the table.
    """
    sweep_dir = Path(sweep_dir)
    remove_stale_temp_files(sweep_dir / POINTS_DIRNAME)
    remove_stale_temp_files(sweep_dir)
    df = to_frame(read_points(sweep_dir / POINTS_DIRNAME))
    _write_table(sweep_dir, df)
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    header = pd.read_csv(path, nrows=0).columns
    # Hashes, SHAs and keys may be all digits: read text columns as text so leading zeros survive.
    # Only "" means missing: an error message "None" or country "NA" is data.
    dtype = {c: "str" for c in header if c in STRING_COLUMNS}
    return pd.read_csv(path, dtype=dtype, keep_default_na=False, na_values=[""])


def _sweep_table(sweep_dir: Path) -> pd.DataFrame | None:
    """Table of one sweep folder: its points if it has any (the source of truth), else its consolidated file."""
    points = sweep_dir / POINTS_DIRNAME
    if points.is_dir() and any(_is_point_file(p) for p in points.iterdir()):
        return to_frame(read_points(points))
    if (sweep_dir / PARQUET_NAME).is_file():
        return normalize(pd.read_parquet(sweep_dir / PARQUET_NAME))
    if (sweep_dir / CSV_NAME).is_file():
        return normalize(_read_csv(sweep_dir / CSV_NAME))
    return None


def _is_sweep_dir(path: Path) -> bool:
    return (path / POINTS_DIRNAME).is_dir() or (path / PARQUET_NAME).is_file() or (path / CSV_NAME).is_file()


def load(path: Path | str) -> pd.DataFrame:
    """Load results as one DataFrame in the schema of :data:`COLUMNS`.

    ``path`` may be a ``results.csv``/``.parquet`` file, a folder of point JSONs, a sweep folder
    (``points/`` and/or the consolidated files), or any folder above sweep folders (e.g. ``results/``),
    whose sweeps are concatenated; rows without a ``sweep_name`` get their folder's name. An empty
    folder gives an empty table; a path that does not exist raises FileNotFoundError.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix == ".parquet":
            return normalize(pd.read_parquet(path))
        if path.suffix == ".csv":
            return normalize(_read_csv(path))
        if path.suffix == ".json":
            return to_frame([json.loads(path.read_text())])
        raise ValueError(f"{path}: expected a .csv, .parquet or .json results file")
    if not _is_sweep_dir(path) and any(_is_point_file(p) for p in path.iterdir()):
        return to_frame(read_points(path))

    frames = []
    for sweep_dir in _find_sweep_dirs(path):
        table = _sweep_table(sweep_dir)
        if table is not None and len(table):
            name = sweep_dir.name if sweep_dir.name != POINTS_DIRNAME else sweep_dir.parent.name
            table["sweep_name"] = table["sweep_name"].fillna(name)
            frames.append(table)
    if not frames:
        return normalize(pd.DataFrame())
    return normalize(pd.concat(frames, ignore_index=True)) if len(frames) > 1 else frames[0]


def _find_sweep_dirs(root: Path) -> list[Path]:
    """Sweep folders at or below ``root``; the walk stops at the first sweep folder on each branch."""
    if _is_sweep_dir(root):
        return [root]
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found.extend(_find_sweep_dirs(child))
    return found
