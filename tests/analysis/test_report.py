"""bench.report and bench.regenerate: the Markdown report, and regenerating without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from bench import results as R
from bench.regenerate import regenerate
from bench.report import markdown_table, write_report
from tests.analysis.synthetic import synthetic, synthetic_records

ROOT = Path(__file__).resolve().parents[2]
FAILED = {("vanilla", 4096): "oom", ("lrt", 4096): "timeout"}


def _sweep(tmp_path: Path, **kwargs) -> Path:
    sweep = tmp_path / "synthetic"
    kwargs = {"impls": ("math", "sdpa"), "failed": FAILED, **kwargs}
    for rec in synthetic_records(**kwargs):
        R.write_point(sweep / "points", rec)
    return sweep


def test_markdown_table_formats_and_escapes():
    df = pd.DataFrame({"a": [1.0, float("nan"), 1234.5], "b": ["x|y", "two\nlines", None], "c": [True, False, True]})
    lines = markdown_table(df).splitlines()
    assert lines[0] == "| a | b | c |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| 1 | x\\|y | yes |"
    assert lines[3] == "| — | two lines | no |"
    assert lines[4] == "| 1,234 | — | yes |"


def test_report_sections(tmp_path):
    df = synthetic(impls=("math", "sdpa"), failed=FAILED)
    fig = tmp_path / "figures" / "latency_b1_inference_float32.png"
    fig.parent.mkdir()
    fig.write_bytes(b"png")
    path = write_report(df, tmp_path, [fig, fig.with_suffix(".svg")])
    text = path.read_text()
    assert path == tmp_path / "report.md"
    for heading in ("## Environment", "## Crossovers", "## Winners per sequence length", "## Thesis check",
                    "## Failed points", "## Figures"):
        assert heading in text
    # environment
    for value in ("Test CPU 2-core", "2.13.0", "3.3.0", "constant (no RAPL)", "0123abc"):
        assert value in text
    # the crossover table, with the known crossing
    assert "| configuration | pair (a vs b) | crossover n | bracket | uncertain | reading |" in text
    assert "| math · b1 · inference · float32 | lrt vs linformer | ≈ 724 | 512–1024 | no |" in text
    # failed points with status and error
    assert "| vanilla | math | 4096 | 1 | inference | float32 | oom | RuntimeError: oom at n=4096 |" in text
    assert "timeout" in text
    # winners and thesis
    assert "| n | math · b1 · inference · float32 | sdpa · b1 · inference · float32 |" in text
    assert "| 64 | lrt (1.5×) | lrt (1.5×) |" in text
    assert "| math · b1 · inference · float32 | latency_ms | yes | no | yes |" in text
    # figures as relative links
    assert "![latency_b1_inference_float32](figures/latency_b1_inference_float32.png)" in text
    assert "[svg](figures/latency_b1_inference_float32.svg)" in text


def test_report_marks_uncertain_crossovers(tmp_path):
    text = write_report(synthetic(iqr=0.5), tmp_path).read_text()
    assert "| math · b1 · inference · float32 | lrt vs linformer | — | 256–2048 | yes |" in text
    assert "_No figures" in text


def test_regenerate_writes_figures_and_report(tmp_path):
    sweep = _sweep(tmp_path)
    out = regenerate(sweep)
    assert out["rows"] == 56 and out["report"] == sweep / "report.md"
    assert all(p.parent == sweep / "figures" and p.is_file() for p in out["figures"])
    assert "figures/speedup_b1_inference_float32.png" in out["report"].read_text()
    only_report = regenerate(sweep, "report")
    assert sorted(only_report["figures"]) == sorted(out["figures"])


def test_regenerate_plot_only(tmp_path):
    sweep = _sweep(tmp_path, impls=("math",), seq_lens=(64, 128, 256))
    out = regenerate(sweep, what="plot")
    assert out["report"] is None and not (sweep / "report.md").exists() and out["figures"]


@pytest.mark.parametrize("make", ["missing", "empty", "no points"])
def test_regenerate_without_results_is_a_value_error(tmp_path, make):
    target = tmp_path / "results"
    if make != "missing":
        target.mkdir()
    if make == "no points":
        (target / "cpu" / "points").mkdir(parents=True)
    with pytest.raises(ValueError, match=f"results_dir='{target}': no results found"):
        regenerate(target)


def test_regenerate_rejects_unknown_what(tmp_path):
    with pytest.raises(ValueError, match="what='pdf'"):
        regenerate(_sweep(tmp_path, seq_lens=(64,)), what="pdf")


def test_regenerate_never_imports_torch(tmp_path):
    sweep = _sweep(tmp_path, impls=("math",), seq_lens=(64, 128, 256), failed={("lrt", 256): "oom"})
    code = textwrap.dedent(f"""
        import sys
        import bench.results, bench.analysis, bench.plots, bench.report, bench.regenerate
        out = bench.regenerate.regenerate({str(sweep)!r})
        assert out["figures"] and out["report"].is_file()
        bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "bench.models")))
        assert not bad, bad
    """)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
