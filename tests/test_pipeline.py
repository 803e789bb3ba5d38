"""helpers.pipeline: the notebooks run headless in order, each cell announced on the console, and every
notebook runs top to bottom with SMOKE=1 on a CPU with no network (in pipeline order, in one scratch
workspace, so each notebook consumes what the previous one wrote)."""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.pipeline import main, notebooks

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_are_chosen_by_number_and_an_unknown_choice_runs_nothing(tmp_path, capsys):
    assert notebooks() == NOTEBOOKS and len(NOTEBOOKS) == 7
    assert [p.name[:2] for p in notebooks(["05", "04"])] == ["04", "05"]
    assert main(["99", "--out", str(tmp_path / "runs")]) == 2
    assert "No notebooks match ['99']" in capsys.readouterr().out and not (tmp_path / "runs").exists()


def test_pipeline_console_shows_each_cell_and_no_kernel_warning(tmp_path, monkeypatch):
    """A real notebook through helpers.pipeline: "cell n of m" lines with the elapsed time, and
    the kernel (over IPC) prints no "running over TCP without encryption" warning."""
    nb = tmp_path / "nb" / "00_tiny.ipynb"
    nb.parent.mkdir()
    import nbformat
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_markdown_cell("# tiny"), nbformat.v4.new_code_cell("import time\ntime.sleep(1.5)"),
                  nbformat.v4.new_code_cell("x = 1\nprint(x)")]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, nb)
    code = ("import sys, helpers.pipeline as p; from pathlib import Path\n"
            f"prog = p.Progress(Path({str(nb)!r}), heartbeat=1.0)\n"
            f"with prog: p.run_notebook(Path({str(nb)!r}), Path({str(tmp_path / 'out')!r}), progress=prog)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), timeout=300,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "cell 1 of 2: import time" in out and "cell 2 of 2: x = 1" in out, out
    assert "still running cell 1 of 2" in out, out  # the heartbeat of a long cell
    assert "[0:0" in out and "without encryption" not in out, out
    assert (tmp_path / "out" / "00_tiny.ipynb").exists()


@pytest.fixture(scope="module")
def pipeline_env(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    saved = dict(os.environ)
    os.environ.update(SMOKE="1", LLAMA_KIT_WORKDIR=str(work / "ws"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      MPLBACKEND="Agg")
    yield work
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_headless_with_smoke(path, pipeline_env):
    from papermill.exceptions import PapermillExecutionError
    from helpers.pipeline import run_notebook
    try:
        out = run_notebook(path, pipeline_env / "executed", timeout=1200)
    except PapermillExecutionError as exc:
        pytest.fail(f"{path.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    if path.name.startswith("07_"):  # the sweep: two workers, one line per run, no training log
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                       if o.output_type == "stream")
        trial_lines = [ln for ln in text.splitlines() if ln.startswith("trial ")]
        assert len(trial_lines) == 4 and "Done:" not in text and "Epoch" not in text, text
        assert "Sweep finished: " in text and "0 failed" in text, text
        from helpers.core.files import SweepFiles
        sweep = SweepFiles(pipeline_env / "ws" / "outputs" / "sweep")
        logs = list((sweep.folder / "runs").glob("*/train.log"))
        assert sweep.journal.exists() and len(logs) == 4 and all("Done:" in p.read_text() for p in logs)
        assert len(list(sweep.workers.glob("worker-*.log"))) == 2
