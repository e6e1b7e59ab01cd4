"""measure_energy: positive, self-consistent, per step, offline and leaving nothing behind."""

import math
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from bench.measure import energy
from bench.measure.energy import country_intensity_g_per_kwh, measure_energy, validate_country

SHORT_S = 0.4  # codecarbon samples power every 1 s in its monitor thread; a fraction is enough here
LOCK_FILE = Path(tempfile.gettempdir()) / ".codecarbon.lock"


def _busy():
    sum(range(20_000))


@pytest.fixture(scope="module")
def sleep_10ms():
    return measure_energy(lambda: time.sleep(0.01), min_duration_s=SHORT_S)


@pytest.fixture(scope="module")
def sleep_20ms():
    return measure_energy(lambda: time.sleep(0.02), min_duration_s=SHORT_S)


@pytest.fixture(scope="module")
def busy():
    return measure_energy(_busy, min_duration_s=SHORT_S)


def test_energy_is_positive_and_per_step(sleep_10ms):
    r = sleep_10ms
    assert r.error is None
    assert r.energy_kwh > 0 and r.co2_kg > 0
    assert SHORT_S <= r.duration_s < SHORT_S + 0.5
    # ~10 ms per sleep call, plus loop overhead: steps are counted, not guessed
    assert r.steps == pytest.approx(r.duration_s / 0.0101, rel=0.25)


def test_energy_is_duration_times_power(sleep_10ms, busy):
    for r in (sleep_10ms, busy):
        total_w = r.cpu_power_w + r.gpu_power_w + r.ram_power_w
        assert r.energy_kwh * r.steps == pytest.approx(total_w * r.duration_s / 3.6e6, rel=0.02)
        # codecarbon's RAM model is a constant, CPU power can't exceed 4 W per thread x load (FACTS.md)
        # unless RAPL measured it; either way a desktop-to-server range
        assert 0 < total_w < 2000


def test_a_call_twice_as_long_costs_twice_the_energy(sleep_10ms, sleep_20ms):
    # Both are nearly idle, so power is the same and energy per step follows time per step.
    assert sleep_20ms.energy_kwh / sleep_10ms.energy_kwh == pytest.approx(2.0, rel=0.2)


def test_busy_cpu_draws_more_power_than_sleeping(sleep_10ms, busy):
    assert busy.cpu_power_w > sleep_10ms.cpu_power_w + 0.5


def test_co2_is_energy_times_the_bundled_country_intensity(sleep_10ms):
    g_per_kwh = sleep_10ms.co2_kg * 1000 / sleep_10ms.energy_kwh
    assert g_per_kwh == pytest.approx(country_intensity_g_per_kwh("USA"), rel=1e-3)
    assert 300 < country_intensity_g_per_kwh("USA") < 450  # OWID 2023: ~369 g/kWh


def test_country_and_pue_reach_the_tracker(sleep_10ms):
    r = measure_energy(lambda: time.sleep(0.01), min_duration_s=SHORT_S, country_iso_code="fra", pue=2.0)
    assert r.error is None and r.country_iso_code == "FRA" and r.pue == 2.0
    assert r.co2_kg / r.energy_kwh == pytest.approx(country_intensity_g_per_kwh("FRA") / 1000, rel=1e-3)
    # PUE scales codecarbon's power once; the constant RAM model makes that visible
    assert r.ram_power_w == pytest.approx(2.0 * sleep_10ms.ram_power_w, rel=0.05)


def test_energy_source_names_how_power_was_obtained(sleep_10ms):
    parts = dict(p.split("=") for p in sleep_10ms.energy_source.split(";"))
    assert parts["tracking"] == "process"
    assert parts["cpu"] in {"rapl", "power_gadget", "powermetrics", "pmic", "tdp_estimate", "constant"}
    assert parts["ram"] in {"constant", "pmic"}
    if sys.platform.startswith("linux") and not Path("/sys/class/powercap/intel-rapl").exists():
        assert parts["cpu"] == "tdp_estimate"  # FACTS.md: no RAPL here, 4 W per thread x load


def test_as_row_uses_schema_names(sleep_10ms):
    row = sleep_10ms.as_row()
    assert {"energy_kwh", "co2_kg", "energy_source", "energy_steps", "energy_error",
            "cpu_power_w", "gpu_power_w", "ram_power_w", "pue"} <= set(row)


def test_unknown_country_is_refused_with_its_code():
    with pytest.raises(ValueError, match="XYZ"):
        validate_country("XYZ")
    with pytest.raises(ValueError, match="country_iso_code='ZZZ'"):
        measure_energy(_busy, country_iso_code="ZZZ")
    assert validate_country(" deu ") == "DEU"


@pytest.mark.parametrize("pue", [0.9, 0.0, float("nan")])
def test_pue_below_one_is_refused(pue):
    with pytest.raises(ValueError, match="pue"):
        measure_energy(_busy, pue=pue)


def test_nothing_is_written_to_cwd_and_no_lock_is_left(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lock_existed = LOCK_FILE.exists()
    r = measure_energy(_busy, min_duration_s=0.1)
    assert r.error is None
    assert list(tmp_path.iterdir()) == []
    assert LOCK_FILE.exists() == lock_existed


def test_min_steps_wins_over_a_short_duration():
    r = measure_energy(lambda: None, min_duration_s=0.0, min_steps=7)
    assert r.steps == 7


def test_stop_returning_none_gives_nan_and_a_reason(monkeypatch):
    from codecarbon import OfflineEmissionsTracker

    monkeypatch.setattr(OfflineEmissionsTracker, "stop", lambda self: None)
    r = measure_energy(_busy, min_duration_s=0.0)
    assert math.isnan(r.energy_kwh) and math.isnan(r.co2_kg)
    assert "returned None" in r.error
    assert r.steps >= 1


def test_an_exception_codecarbon_swallows_becomes_the_reason(monkeypatch):
    from codecarbon.emissions_tracker import BaseEmissionsTracker

    def explode(self):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(BaseEmissionsTracker, "_prepare_emissions_data", explode)
    r = measure_energy(_busy, min_duration_s=0.0)
    assert math.isnan(r.energy_kwh)
    assert "disk on fire" in r.error


def test_a_tracker_that_cannot_start_gives_nan_and_a_reason(monkeypatch):
    import codecarbon

    class Broken:
        def __init__(self, **kwargs):
            raise RuntimeError("no hardware")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", Broken)
    calls = []
    r = measure_energy(lambda: calls.append(1), min_duration_s=5.0)
    assert math.isnan(r.energy_kwh)
    assert "no hardware" in r.error
    assert calls == []  # the workload is not run for nothing


def test_a_failing_workload_propagates():
    def boom():
        raise MemoryError("out of memory")

    with pytest.raises(MemoryError):
        measure_energy(boom, min_duration_s=0.0)


def test_codecarbon_stays_quiet(capfd):
    measure_energy(_busy, min_duration_s=0.0)
    out, err = capfd.readouterr()
    assert "codecarbon" not in out + err


def test_intensity_comes_from_codecarbon_bundled_data():
    # FACTS.md: codecarbon's per-country data is Our World in Data's; a low-carbon grid is lower.
    assert country_intensity_g_per_kwh("FRA") < country_intensity_g_per_kwh("USA")
    assert energy._energy_mix()["USA"]["iso_code"] == "USA"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_energy_is_read_from_nvml():
    a = torch.randn(4096, 4096, device="cuda")
    r = measure_energy(lambda: a @ a, min_duration_s=2.0, device="cuda")
    assert r.error is None
    assert "gpu=nvml" in r.energy_source
    assert r.gpu_power_w > 0
