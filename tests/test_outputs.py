"""What a person sees around the steps: the data notebooks 04 and 07 fall back to (never silently),
the configuration summary, and the pipeline console's progress (real files, the real kernel)."""
import json
import sys
from pathlib import Path

import pytest

from helpers.core.jsonl import DataError
from helpers.common.resources import chitchat
from helpers.core.show import box_text
from helpers.dataset.build import default_dataset
from helpers.train.loop import TrainConfig

REPO = Path(__file__).resolve().parent.parent
CHITCHAT = chitchat("train")


class WS:  # the two attributes of helpers.common.workspace.Workspace that default_dataset reads, plus smoke
    def __init__(self, data_dir, smoke):
        self.data_dir, self.root, self.smoke = Path(data_dir), REPO, smoke


def write_dataset(folder: Path, n: int) -> Path:
    rows = [json.loads(line) for line in CHITCHAT.read_text().splitlines()[:n]]
    path = folder / "dataset" / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_small_dataset_is_an_error_outside_smoke(tmp_path):
    built = write_dataset(tmp_path, 3)
    with pytest.raises(DataError) as exc:
        default_dataset(WS(tmp_path, smoke=False))
    msg = str(exc.value)
    assert str(built) in msg and "only 3 example(s)" in msg and "notebook 02" in msg
    assert f'DATASET_PATH="{built}"' in msg and str(CHITCHAT) in msg  # both ways out, spelled out


def test_small_dataset_under_smoke_falls_back_in_a_box(tmp_path, capsys):
    write_dataset(tmp_path, 3)
    assert default_dataset(WS(tmp_path, smoke=True)) == CHITCHAT
    out = capsys.readouterr().out
    assert out.startswith("!!!!") and "SMOKE: NOT TRAINING ON NOTEBOOK 02'S DATASET" in out and str(CHITCHAT) in out


def test_enough_rows_train_on_notebook_02s_dataset(tmp_path):
    built = write_dataset(tmp_path, 25)
    assert default_dataset(WS(tmp_path, smoke=False)) == built


def test_no_dataset_trains_on_the_bundled_data_and_says_so(tmp_path, capsys):
    assert default_dataset(WS(tmp_path, smoke=False)) == CHITCHAT
    out = capsys.readouterr().out
    assert "!!" in out and "no dataset from notebook 02" in out.lower() and "DATASET_PATH" in out


def test_box_wraps_and_frames_every_line():
    text = box_text("Title", ["x " * 80, "short"])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1 and all(line.startswith("!!") for line in lines)


def test_describe_lists_what_differs_with_its_source_and_full_lists_all():
    cfg = TrainConfig.from_params({"LORA_R": 8, "RUN_NAME": "", "MAX_STEPS": -1}, environ={"LEARNING_RATE": "1e-4"},
                                  output_dir="/tmp/x/sft")
    text = cfg.describe()
    lines = text.splitlines()
    assert lines[0].startswith("TrainConfig: 3 of ") and "describe(full=True)" in lines[0]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"output_dir", "lora_r", "learning_rate"}  # RUN_NAME and MAX_STEPS equal the defaults
    assert "parameters cell" in rows["lora_r"] and "LoRA rank" in rows["lora_r"]
    assert "environment" in rows["learning_rate"] and "set in code" in rows["output_dir"]
    full = cfg.describe(full=True)
    assert len(full.splitlines()) == 1 + len(TrainConfig.field_names()) and "default" in full
    assert TrainConfig().describe().endswith(f"(cfg.describe(full=True) lists all {len(TrainConfig.field_names())}).")


def test_describe_puts_the_smoke_preset_in_one_paragraph():
    text = TrainConfig.from_params({}, environ={"SMOKE": "1"}).describe()
    assert "from the SMOKE preset" in text and "max_steps=6" in text
    assert not any(line.startswith("  max_steps ") for line in text.splitlines())


def test_pipeline_console_shows_each_cell_and_no_kernel_warning(tmp_path, monkeypatch):
    """A real notebook through helpers.pipeline: "cell n of m" lines with the elapsed time, and
    the kernel (over IPC) prints no "running over TCP without encryption" warning."""
    import subprocess
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


def test_notebook_progress_bar_total_follows_what_arxiv_reported():
    """Notebook 01's bar is a widget: its maximum must follow the total arXiv reports (1 paper
    of an asked-for 10), or the executed notebook shows a bar stuck at 1 of 10."""
    from tqdm.notebook import tqdm
    from helpers.scrape.arxiv import _set_total
    bar = tqdm(total=10, desc="arXiv papers")
    _set_total(bar, 1)
    bar.update(1)
    bar.close()
    progress = bar.container.children[1]
    assert (progress.max, progress.value, bar.total) == (1, 1, 1)
