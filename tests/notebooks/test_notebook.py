"""The analysis notebook executes top to bottom (nbclient) against the shipped reference results."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


def test_analysis_notebook_executes(monkeypatch):
    reference = ROOT / "results" / "reference" / "cpu-amd-epyc-2core" / "cpu"
    if not (reference / "points").is_dir():
        pytest.fail(f"no shipped reference results in {reference}")
    monkeypatch.setenv("BENCH_RESULTS", str(reference))
    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # latency, memory and speed-up figures
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "crossover_seq_len" in html and "holds" in html
