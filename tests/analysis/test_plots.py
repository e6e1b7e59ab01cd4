"""bench.plots: inspect the matplotlib objects, not only the files."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

from bench import plots as P
from tests.analysis.synthetic import LRT_LINFORMER_CROSS, MODELS, log2_close, synthetic

FAILED = {("vanilla", 4096): "oom", ("lrt", 4096): "timeout"}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic(impls=("math", "sdpa"), failed=FAILED)


def _labelled(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def _failed_markers(ax) -> list:
    return [line for line in ax.get_lines() if line.get_gid() == "failed"]


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_latency_figure_series_axes_and_titles(table):
    fig = P.latency_figure(table)
    assert len(fig.axes) == 2
    for ax, impl in zip(fig.axes, ("math", "sdpa"), strict=True):
        assert impl in ax.get_title()
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert _labelled(ax) == list(MODELS)
        assert "tokens" in ax.get_xlabel()
        for line in ax.get_lines():
            if line.get_label() in P.MODEL_COLORS:
                assert mcolors.same_color(line.get_color(), P.MODEL_COLORS[line.get_label()])
        lrt = next(line for line in ax.get_lines() if line.get_label() == "lrt")
        assert list(lrt.get_xdata()) == [64, 128, 256, 512, 1024, 2048]  # 4096 timed out
    assert "ms" in fig.axes[0].get_ylabel()
    assert "Test CPU 2-core" in fig._suptitle.get_text()
    assert set(MODELS) <= set(_legend_labels(fig))


def test_failed_points_are_drawn_at_the_top(table):
    fig = P.latency_figure(table)
    for ax in fig.axes:
        markers = _failed_markers(ax)
        assert len(markers) == 2  # vanilla oom, lrt timeout
        for line in markers:
            assert line.get_marker() == "x"
            assert list(line.get_xdata()) == [4096]
            assert all(0.8 < y <= 1.0 for y in line.get_ydata())  # axes coordinates: at the top
        statuses = {t.get_text() for t in ax.texts}
        assert {"oom", "timeout"} <= statuses
    assert P.FAILED_LABEL in _legend_labels(fig)


def test_no_failed_entry_without_failures():
    fig = P.latency_figure(synthetic())
    assert not _failed_markers(fig.axes[0]) and P.FAILED_LABEL not in _legend_labels(fig)


def test_memory_and_energy_figures(table):
    mem = P.memory_figure(table)
    assert mem.axes[0].get_yscale() == "log" and "MB" in mem.axes[0].get_ylabel()
    assert _labelled(mem.axes[0]) == list(MODELS)

    energy = P.energy_figure(table)
    ax = energy.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and "J" in ax.get_ylabel()
    lin = next(line for line in ax.get_lines() if line.get_label() == "linformer")
    n = np.asarray(lin.get_xdata(), float)
    # energy_kwh = 1e-6 · 0.1 · n per step, batch 1: J/token = 1e-7 · n · 3.6e6 / n = 0.36
    assert np.allclose(lin.get_ydata(), 1e-6 * 0.1 * n * 3.6e6 / n)
    assert "constant (no RAPL)" in energy._suptitle.get_text()


def test_speedup_figure_has_reference_lines_and_crossovers(table):
    fig = P.speedup_figure(table)
    ax = fig.axes[0]
    assert _labelled(ax) == ["lrt", "linformer", "lrt_linformer", "vanilla (1×)", P.BOUNDARY_LABEL]
    boundary = next(line for line in ax.get_lines() if line.get_label() == P.BOUNDARY_LABEL)
    assert list(boundary.get_xdata()) == [512, 512]
    crossings = [line for line in ax.get_lines() if line.get_gid() == "crossover"]
    diamonds = [line for line in crossings if line.get_marker() == "D"]
    circles = [line for line in crossings if line.get_marker() == "o"]
    assert len(diamonds) == 1 and len(circles) == 2  # linformer and lrt_linformer cross vanilla
    assert log2_close(diamonds[0].get_xdata()[0], LRT_LINFORMER_CROSS)
    assert diamonds[0].get_ydata()[0] == pytest.approx(1.5)  # lrt's speed-up is 1.5× everywhere
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lrt = next(line for line in ax.get_lines() if line.get_label() == "lrt")
    assert np.allclose(lrt.get_ydata(), 1.5)
    assert len(_failed_markers(ax)) == 2
    assert "speed-up" in ax.get_ylabel()


def test_uncertain_crossovers_are_spans_not_points():
    fig = P.speedup_figure(synthetic(iqr=0.5))
    ax = fig.axes[0]
    assert not [line for line in ax.get_lines() if line.get_gid() == "crossover"]
    assert [p for p in ax.patches if p.get_gid() == "crossover"]


def test_params_figure(table):
    fig = P.params_figure(table)
    bars = fig.axes[0].patches
    assert len(bars) == 4
    heights = [b.get_height() for b in bars]
    # Linformer's params depend on n: taken at n = 512
    assert heights == pytest.approx([3.0, 1.2, 3.0 + 256 * 512 / 1e6, 1.2 + 256 * 512 / 1e6])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(MODELS)
    assert "millions" in fig.axes[0].get_ylabel()


def test_builders_refuse_mixed_combinations():
    mixed = pd.concat([synthetic(), synthetic(batch_size=8)], ignore_index=True)
    with pytest.raises(ValueError, match="batch_size"):
        P.latency_figure(mixed)


def test_plot_all_writes_png_and_svg_per_combination(tmp_path):
    df = pd.concat([synthetic(impls=("math", "sdpa"), seq_lens=(512, 1024, 4096), failed=FAILED),
                    synthetic(impls=("math",), seq_lens=(512, 1024), batch_size=8)], ignore_index=True)
    paths = P.plot_all(df, tmp_path)
    names = sorted(p.name for p in paths)
    expected = sorted(f"{kind}_{combo}.{ext}" for kind in ("latency", "memory", "energy", "speedup")
                      for combo in ("b1_inference_float32", "b8_inference_float32") for ext in ("png", "svg"))
    assert names == sorted(expected + ["params.png", "params.svg"])
    assert all(p.is_file() and p.stat().st_size > 1000 for p in paths)


def test_plot_all_skips_metrics_never_measured(tmp_path):
    df = synthetic(models=("vanilla", "lrt"), seq_lens=(64, 128))
    df["energy_kwh"] = np.nan
    names = {p.name for p in P.plot_all(df, tmp_path, formats=("png",))}
    assert "latency_b1_inference_float32.png" in names
    assert not any(n.startswith("energy") for n in names)
