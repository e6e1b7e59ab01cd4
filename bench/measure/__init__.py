"""Trackers that measure any callable: latency, peak memory, energy/CO2e, throughput peak, environment.

Each result says how it was measured (``LatencyResult.n_runs``, ``MemoryResult.method``,
``EnergyResult.energy_source``) and maps onto the results schema with ``.as_row()``.
This room never imports bench.models or bench.sweep (../shared/DESIGN.md).
"""

from bench.measure.energy import (
    EnergyResult,
    country_intensity_g_per_kwh,
    energy_source,
    measure_energy,
    validate_country,
    validate_pue,
)
from bench.measure.env import collect_env, cpu_model, git_sha, machine_identity
from bench.measure.latency import LatencyResult, device_synchronizer, measure_latency
from bench.measure.memory import MemoryResult, measure_peak_memory
from bench.measure.peak import achieved_gflops, measure_matmul_peak_gflops
from bench.measure.workload import make_inputs, make_step

__all__ = [
    "EnergyResult", "LatencyResult", "MemoryResult",
    "achieved_gflops", "collect_env", "country_intensity_g_per_kwh", "cpu_model", "device_synchronizer",
    "energy_source", "git_sha", "machine_identity", "make_inputs", "make_step",
    "measure_energy", "measure_latency", "measure_matmul_peak_gflops", "measure_peak_memory",
    "validate_country", "validate_pue",
]
