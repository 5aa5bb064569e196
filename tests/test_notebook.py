"""examples/ab_study.ipynb is executed end to end, so the example can never rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "examples" / "ab_study.ipynb"


def test_the_notebook_is_kept_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.timeout(300)
def test_the_ab_study_notebook_runs_offline_and_shows_one_progress_bar(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPER_EXAMPLE_OUT", str(tmp_path / "ab-study"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    run_cell = next(c for c in notebook.cells if "sweeper.run(" in c.source)
    printed = "".join(o.get("text", "") for o in run_cell.outputs if o.output_type == "stream")
    assert "complete - 12 requests sent, 12 jobs done" in printed
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # One bar, redrawn in place (carriage returns), not a line per update.
    progress = "".join(o.get("text", "") for o in run_cell.outputs if o.get("name") == "stderr")
    assert "sweep" in progress and progress.count("\n") <= 3, progress
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the plot of the parameter's effect
