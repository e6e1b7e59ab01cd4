"""Energy and CO2e of a workload, from codecarbon's OfflineEmissionsTracker.

What the numbers are (FACTS.md, "codecarbon (3.3.x) on these machines"):

- Only ``OfflineEmissionsTracker`` is used: the online tracker calls geolocation services and probes
  cloud metadata addresses, and silently assumes Canada when that fails.
- Without RAPL (or NVML for a GPU) codecarbon *estimates*: CPU power = TDP × load, where an unknown CPU
  gets 4 W per thread as its TDP, plus a RAM power from a DIMM-count model. The energy is then close
  to wall time × a constant. ``energy_source`` says which case a row is, so nobody mistakes an
  estimate for a measurement.
- Start-up costs ~1.5 s in a process's first tracker (hardware probing) and ~5 ms after, so one
  tracker wraps a loop of many calls and we divide by the count.
- ``pue`` scales both energy and power inside codecarbon; it is not applied again here.
- ``stop()`` returns kg CO2e only, and None when anything failed inside (its exceptions are
  swallowed): energy comes from ``final_emissions_data``, and a None means NaN plus a reason.

Tracking mode: "process". Codecarbon's "machine" mode turns *system-wide* CPU load into power with a
cubic curve, so on these shared, noisy machines a neighbour's work would land in our rows. "process"
bills the CPU time of this process and its children (TDP × CPU-seconds / wall / cores) and sizes RAM
power from our RSS: the energy attributable to the workload, proportional to the work it did. With
RAPL or NVML counters the mode changes nothing for CPU package or GPU energy (both are device-wide).

Nothing lands in the repo or the cwd: no output methods (no emissions.csv), ``output_dir`` is a
temporary directory (Intel Power Gadget and powermetrics write logs there), and
``allow_multiple_runs=True`` means codecarbon creates no lock file in the temp dir (and installs no
SIGINT/SIGTERM handlers of its own).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch

from bench.measure.latency import device_synchronizer

TRACKING_MODE = "process"
# codecarbon's own bundled grid data: Our World in Data's per-country energy mix (FACTS.md).
_ENERGY_MIX_RESOURCE = "data/private_infra/global_energy_mix.json"
_J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class EnergyResult:
    """Energy and emissions per step (kWh, kg CO2e) over `steps` calls that took `duration_s`
    seconds of wall time, the mean power of each component over that time (W, PUE included), and
    how codecarbon obtained them. NaN figures and a reason in `error` when codecarbon failed."""

    energy_kwh: float
    co2_kg: float
    steps: int
    duration_s: float
    cpu_power_w: float
    gpu_power_w: float
    ram_power_w: float
    energy_source: str
    pue: float
    country_iso_code: str
    tracking_mode: str = TRACKING_MODE
    error: str | None = None

    def as_row(self) -> dict[str, Any]:
        """The results-schema columns (bench/results.py) this measurement fills."""
        return {
            "energy_kwh": self.energy_kwh,
            "co2_kg": self.co2_kg,
            "energy_source": self.energy_source,
            "energy_steps": self.steps,
            "energy_error": self.error,
            "cpu_power_w": self.cpu_power_w,
            "gpu_power_w": self.gpu_power_w,
            "ram_power_w": self.ram_power_w,
            "pue": self.pue,
            "country_iso_code": self.country_iso_code,
        }


# --- country data ---------------------------------------------------------------------------------------


@functools.cache
def _energy_mix() -> dict[str, dict[str, Any]]:
    """codecarbon's bundled per-country grid data, keyed by ISO 3166-1 alpha-3 code."""
    return json.loads(resources.files("codecarbon").joinpath(_ENERGY_MIX_RESOURCE).read_text())


def validate_country(code: str) -> str:
    """`code` upper-cased, if codecarbon has grid data for it; else ValueError.

    codecarbon itself only logs an error for an unknown code and carries on with a world-average
    intensity (FACTS.md), which would put a silently wrong CO2e figure into every row.
    """
    normalized = str(code).strip().upper()
    known = _energy_mix()
    if normalized not in known:
        examples = ", ".join(c for c in ("USA", "FRA", "DEU", "GBR", "CHN", "IND", "CAN") if c in known)
        raise ValueError(
            f"country_iso_code={code!r}: unknown ISO-3 code; known: {examples}, … "
            f"({len(known)} codes in codecarbon's global_energy_mix.json)"
        )
    return normalized


def country_intensity_g_per_kwh(code: str) -> float:
    """Grid carbon intensity (g CO2e/kWh) codecarbon applies to a country, from its bundled data.

    This is the country-level figure the offline tracker uses when no region is given: the
    ``carbon_intensity`` field of global_energy_mix.json (Our World in Data), e.g. USA ≈ 369.
    """
    mix = _energy_mix()[validate_country(code)]
    if mix.get("carbon_intensity") is not None:
        return float(mix["carbon_intensity"])
    # Older data files lack the field; codecarbon then derives it from the generation mix.
    from codecarbon.core.emissions import Emissions

    return Emissions._global_energy_mix_to_emissions_rate(mix).kgs_per_kWh * 1000.0


def validate_pue(pue: float) -> float:
    """PUE is total facility power / IT power, so it cannot be below 1.0."""
    if not pue >= 1.0:
        raise ValueError(f"pue={pue}: must be >= 1.0 (facility power / IT power)")
    return float(pue)


# --- measurement ----------------------------------------------------------------------------------------


def measure_energy(
    fn: Callable[[], object],
    *,
    min_duration_s: float = 2.0,
    country_iso_code: str = "USA",
    pue: float = 1.0,
    device: str = "cpu",
    min_steps: int = 1,
) -> EnergyResult:
    """Energy per call of `fn`: one tracker around a loop of at least `min_steps` calls and
    `min_duration_s` seconds, divided by the number of calls.

    Never raises for a codecarbon failure: the result then has NaN figures and the reason in
    ``error``. Errors in the arguments (country, pue) raise ValueError before anything runs, and an
    exception from `fn` itself propagates (after the tracker is stopped): that is the workload
    failing, not the measurement.

    Mean powers are each component's energy / the loop's wall time. codecarbon's own ``cpu_power``
    etc. are an unweighted mean over its measurement instants, which include the near-zero-length
    one at ``start()``, so they disagree with its energies on short runs; and its ``duration`` runs
    on past the last energy reading (the first tracker of a process loads its data files there).
    """
    country = validate_country(country_iso_code)
    pue = validate_pue(pue)
    if min_steps < 1:
        raise ValueError(f"min_steps={min_steps}: must be >= 1")
    if not min_duration_s >= 0:
        raise ValueError(f"min_duration_s={min_duration_s}: must be >= 0")
    sync = device_synchronizer(device)

    def failed(reason: str, steps: int = 0, duration_s: float = math.nan, source: str = "unknown") -> EnergyResult:
        nan = math.nan
        return EnergyResult(energy_kwh=nan, co2_kg=nan, steps=steps, duration_s=duration_s, cpu_power_w=nan,
                            gpu_power_w=nan, ram_power_w=nan, energy_source=source, pue=pue,
                            country_iso_code=country, error=reason)

    with _CodecarbonLogCapture() as logs, tempfile.TemporaryDirectory(prefix="codecarbon-") as out_dir:
        try:
            from codecarbon import OfflineEmissionsTracker

            tracker = OfflineEmissionsTracker(
                country_iso_code=country,
                pue=pue,
                tracking_mode=TRACKING_MODE,
                gpu_ids=_nvml_gpu_ids(device),
                output_dir=out_dir,
                output_methods=[],  # no emissions.csv, no API, no Prometheus
                allow_multiple_runs=True,  # no lock file, no signal handlers
                electricitymaps_api_token=None,  # offline, even if a user config sets one
                log_level="warning",  # records we capture; _CodecarbonLogCapture keeps them quiet
            )
            tracker.start()  # swallows its exceptions: check the log for them
        except Exception as exc:  # noqa: BLE001 - a broken codecarbon must not kill the point
            return failed(f"codecarbon start failed: {exc!r}")
        if logs.exception() is not None:
            _stop_quietly(tracker)
            return failed(f"codecarbon start failed: {logs.exception()}")
        source = energy_source(tracker)

        steps = 0
        start = time.perf_counter()
        try:
            while steps < min_steps or time.perf_counter() - start < min_duration_s:
                fn()
                sync()  # count only finished device work against the time budget
                steps += 1
        except BaseException:
            _stop_quietly(tracker)
            raise
        loop_s = time.perf_counter() - start

        try:
            kg = tracker.stop()
            data = getattr(tracker, "final_emissions_data", None)
        except Exception as exc:  # noqa: BLE001
            return failed(f"codecarbon stop failed: {exc!r}", steps, loop_s, source)
        if kg is None or data is None:
            reason = logs.failure() or "no exception logged"
            return failed(f"codecarbon stop() returned None: {reason}", steps, loop_s, source)

    def mean_power_w(component_kwh: float) -> float:
        return component_kwh * _J_PER_KWH / loop_s if loop_s > 0 else math.nan

    return EnergyResult(
        energy_kwh=float(data.energy_consumed) / steps,
        co2_kg=float(kg) / steps,
        steps=steps,
        duration_s=loop_s,
        cpu_power_w=mean_power_w(data.cpu_energy),
        gpu_power_w=mean_power_w(data.gpu_energy),
        ram_power_w=mean_power_w(data.ram_energy),
        energy_source=source,
        pue=pue,
        country_iso_code=country,
    )


def _stop_quietly(tracker: Any) -> None:
    """Stop the tracker's sampling threads on an error path; its own errors no longer matter."""
    try:
        tracker.stop()
    except Exception:  # noqa: BLE001
        pass


def _nvml_gpu_ids(device: str) -> list[int] | None:
    """The NVML index of a CUDA `device`, so only that GPU's power is billed; None (codecarbon's
    default: every visible GPU) for a CPU device or when the index cannot be found.

    CUDA and NVML can number GPUs differently (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER), and
    codecarbon's UUID matching strips "MIG-" with ``lstrip``, which also eats the "G" of an NVML
    "GPU-…" UUID, so an index it is. ``torch.cuda._get_nvml_device_index`` is the mapping torch's
    own ``torch.cuda.utilization`` uses.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    try:
        return [int(torch.cuda._get_nvml_device_index(dev))]
    except Exception:  # noqa: BLE001 - private torch API; fall back to all visible GPUs
        return None


# How codecarbon 3.3.x obtained each component's power, keyed by its hardware class and CPU mode.
# (See codecarbon/core/resource_tracker.py and codecarbon/external/hardware.py.)
_CPU_MODE_SOURCES = {
    "intel_rapl": "rapl",  # Linux powercap energy counters: measured
    "windows_emi": "rapl",  # Windows Energy Meter Interface reads the same RAPL counters
    "intel_power_gadget": "power_gadget",
    "cpu_load": "tdp_estimate",  # TDP (or 4 W/thread for an unknown CPU) × CPU load
    "constant": "constant",  # 50 % of TDP, whatever the load
}


def energy_source(tracker: Any) -> str:
    """How a started codecarbon tracker gets its power, e.g.
    ``"cpu=tdp_estimate;ram=constant;tracking=process"`` or ``"cpu=rapl;gpu=nvml;ram=constant;tracking=process"``.

    Component values: cpu ∈ {rapl, power_gadget, powermetrics, pmic, tdp_estimate, constant},
    gpu ∈ {nvml, amdsmi} (absent without a tracked GPU), ram ∈ {constant, pmic}. "constant" for RAM
    is codecarbon's DIMM-count model (5 W per estimated DIMM on x86), not a measurement.
    Reads the tracker's private ``_hardware`` list: codecarbon has no public API for this.
    """
    parts: dict[str, str] = {}
    for hw in getattr(tracker, "_hardware", None) or ():
        kind = type(hw).__name__
        if kind == "CPU":
            parts["cpu"] = _CPU_MODE_SOURCES.get(getattr(hw, "_mode", None), f"other:{getattr(hw, '_mode', '?')}")
        elif kind == "GPU":
            devices = getattr(getattr(hw, "devices", None), "devices", None) or []
            if devices:
                parts["gpu"] = "amdsmi" if "AMD" in type(devices[0]).__name__ else "nvml"
        elif kind == "RAM":
            parts["ram"] = "constant"
        elif kind == "AppleSiliconChip":
            parts[str(getattr(hw, "chip_part", "cpu")).lower()] = "powermetrics"
        elif kind == "Raspberry":
            parts[str(getattr(hw, "chip_part", "cpu")).lower()] = "pmic"
    if not parts:
        return "unknown"
    ordered = [f"{key}={parts[key]}" for key in ("cpu", "gpu", "ram") if key in parts]
    return ";".join([*ordered, f"tracking={TRACKING_MODE}"])


class _CodecarbonLogCapture(logging.Filter):
    """Keeps codecarbon quiet below ERROR while we measure, and remembers its warnings.

    codecarbon prints even at ``log_level="error"`` (FACTS.md): every tracker re-installs a stream
    handler and resets the level, and an unknown CPU warns on every new process. A filter on the
    logger itself survives that. It also lets us report *why* ``start()``/``stop()`` gave up: they
    swallow exceptions and only log them (at WARNING, with ``exc_info``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.records.append(record)
        return record.levelno >= logging.ERROR

    def exception(self) -> str | None:
        """The last exception codecarbon swallowed (and logged), or None."""
        for record in reversed(self.records):
            if record.exc_info and record.exc_info[1] is not None:
                return repr(record.exc_info[1])
        return None

    def failure(self) -> str | None:
        """The last exception codecarbon swallowed, else its last error message, else None."""
        errors = [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]
        return self.exception() or (errors[-1] if errors else None)

    def __enter__(self) -> _CodecarbonLogCapture:
        self._logger = logging.getLogger("codecarbon")
        self._level = self._logger.level
        self._logger.setLevel(logging.WARNING)
        self._logger.addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeFilter(self)
        # The tracker set its own level; leave the logger at WARNING at most, as FACTS.md asks.
        self._logger.setLevel(max(self._level, logging.WARNING))
