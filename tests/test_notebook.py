"""examples/quickstart.ipynb executed as a user would (nbclient, the test extra's ipykernel), outputs checked."""

import os
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

import dlstudies

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _text(cell) -> str:
    """What a cell printed (stdout, not the progress on stderr) and its value's text form."""
    return "".join((o.get("text", "") if o.get("name") != "stderr" else "") + "".join(o.get("data", {}).get("text/plain", ""))
                   for o in cell.outputs)


def test_quickstart_notebook_executes_and_shows_answer_tables_and_figure(tmp_path, monkeypatch):
    # The kernel imports the dlstudies under test (this checkout's), whatever is installed.
    src = str(Path(dlstudies.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    shape, answer, table, claims, curves, figure, reloaded, section = code
    assert re.fullmatch(r"\(\d+, 7\) \[.*\]\n", _text(shape))  # the runs frame's shape, then the verdicts
    assert _text(answer).strip()  # the study's one-sentence answer
    assert {"adam", "delta", "rmsprop"} <= {line.split()[0] for line in _text(table).splitlines()[2:]}
    assert "Kingma & Ba 2015" in _text(claims)
    assert "condition" in _text(curves) and "step" in _text(curves)
    assert any("image/png" in o.get("data", {}) for o in figure.outputs)
    assert _text(reloaded).strip() == "True True"
    html = "".join(o.get("data", {}).get("text/html", "") for o in section.outputs)
    assert '<section id="optimizers">' in html and "data:image/png;base64," in html
    assert (tmp_path / "quickstart-runs" / "optimizers" / "runs.csv").is_file()
