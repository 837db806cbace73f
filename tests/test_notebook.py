"""lossland in Jupyter, run headless: a notebook is built here (nbformat), executed by a real
IPython kernel (nbclient + ipykernel), and its outputs checked: a surface displays as a table
with an inline PNG, figures draw into the user's subplot grid, ``plt.show()`` still shows after
lossland has written its files, the viewer embeds inline, and the progress bar is a widget.

nbclient, nbformat, ipykernel and ipywidgets are in the ``dev`` extra, as pytest is: the test
needs them (no skip), so CI, which installs the extra, always runs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest

from lossland.core import progress_bar

SRC = Path(__file__).resolve().parents[1] / "src"

# One cell per behaviour; a failing assert inside a cell fails the run with its traceback.
CELLS = {
    "surface": """\
%matplotlib inline
import tempfile
import matplotlib, matplotlib.pyplot as plt, torch
import lossland
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
data = torch.randn(64, 4), torch.randint(0, 3, (64,))
s = lossland.surface(model, data, x="-1:1:9", y="-1:1:7", progress=True)""",
    "display": "s",
    "grid": """\
fig, axs = plt.subplots(1, 2, figsize=(8, 3))
assert lossland.plot.contour(s, ax=axs[0], critical_points=True) is axs[0]
assert lossland.plot.heatmap(s, ax=axs[1], log=True) is axs[1]
plt.show()""",
    "show_after_plot": """\
backend = matplotlib.get_backend()
files = lossland.plot(s, tempfile.mkdtemp(), log=True)
assert matplotlib.get_backend() == backend, matplotlib.get_backend()
print(len(files), "files;", backend)
plt.plot([0, 1], [1, 0])
plt.show()""",
    "viewer": "lossland.view(s)",
}


def run_notebook(tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Execute ``CELLS`` in a fresh kernel; the outputs of each cell, by name."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS.values()]
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # The kernel is this interpreter with lossland's sources on its path, and no display.
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    env.pop("MPLBACKEND", None)
    client.execute(env=env)
    return {name: cell.outputs for name, cell in zip(CELLS, notebook.cells, strict=True)}


def data_of(outputs: list[dict[str, Any]], mime: str) -> list[Any]:
    return [o["data"][mime] for o in outputs if mime in o.get("data", {})]


@pytest.mark.slow
def test_a_notebook_shows_surfaces_figures_and_the_viewer(tmp_path: Path) -> None:
    outputs = run_notebook(tmp_path)
    for name, cell in outputs.items():
        errors = [o for o in cell if o["output_type"] == "error"]
        assert not errors, f"cell {name}: {errors}"
        # stderr is where a broken progress bar or a warning would show.
        assert not [o for o in cell if o.get("name") == "stderr"], f"cell {name}: {cell}"
    # The progress bar is a widget (tqdm.auto in a kernel), not text and not nothing.
    assert data_of(outputs["surface"], "application/vnd.jupyter.widget-view+json")
    (table,) = data_of(outputs["display"], "text/html")
    assert "<table" in table and "data:image/png;base64," in table and "basins" in table
    assert data_of(outputs["display"], "image/png")  # for frontends without HTML
    assert len(data_of(outputs["grid"], "image/png")) == 1  # the user's figure
    text = "".join(o.get("text", "") for o in outputs["show_after_plot"])
    count, backend = text.strip().split("; ")
    assert count == "5 files" and "inline" in backend  # "inline" (matplotlib ≥ 3.9) or its module
    assert len(data_of(outputs["show_after_plot"], "image/png")) == 1
    (frame,) = data_of(outputs["viewer"], "text/html")
    assert frame.startswith('<iframe srcdoc="&lt;!DOCTYPE html&gt;') and "plotly.js v" in frame


def test_progress_bar_is_off_when_asked_or_nowhere_to_draw(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert progress_bar(10, desc="x", unit="pt", enabled=False) is None
    assert progress_bar(0, desc="x", unit="pt") is None
    bar = progress_bar(10, desc="x", unit="pt")  # pytest's stderr is no terminal
    assert bar is not None and bar.disable
    bar.update(10)
    bar.close()
    assert capsys.readouterr().err == ""
