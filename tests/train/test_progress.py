"""The training table (helpers/train/progress.py): one row per logged step with the losses, the
rate and the times, a validation joined to its step's row; and on a real tiny run of the embedded
model it replaces the Trainer's own output, its figures those of the run's log."""
import pytest

from helpers.train import train
from helpers.train.progress import COLUMNS, TrainingTable, clock, table_row
from tiny_train import cfg_for, write_convs


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_rows_join_a_validation_to_its_steps_training_log_and_say_the_time_left():
    said, now = [], Clock()
    table = TrainingTable(said.append, now)
    table.begin(0, 6)
    assert said == [table_row(COLUMNS)] and said[0].split() == ["step", "train", "loss", "val", "loss", "learning",
                                                                 "rate", "elapsed", "left"]
    now.t += 10
    table.on_log(1, {"loss": 3.21234, "learning_rate": 2e-4, "entropy": 1.0, "num_tokens": 1536.0})
    assert said[-1].split() == ["1/6", "3.2123", "-", "2.00e-04", "0:10", "0:50"]  # 5 steps left at 10 s each
    now.t += 20
    table.on_log(3, {"loss": 3.0, "learning_rate": 1e-4}, evaluating=True)  # waits for its validation
    assert len(said) == 2 and "training: step 3 of 6, 0:30 so far, about 0:30 left" == table.status(3)
    table.on_log(3, {"eval_loss": 2.5, "eval_runtime": 1.0})
    assert said[-1].split() == ["3/6", "3.0000", "2.5000", "1.00e-04", "0:30", "0:30"]
    table.on_log(3, {"train_runtime": 30.0, "train_loss": 3.1})  # the Trainer's summary: not a row
    table.on_log(6, {"eval_loss": 2.4})  # a validation without a training log at its step
    assert said[-1].split()[:4] == ["6/6", "-", "2.4000", "-"] and len(said) == 4
    assert [clock(s) for s in (None, 0, 59.6, 61, 3725)] == ["-", "0:00", "1:00", "1:01", "1:02:05"]


@pytest.fixture(scope="module")
def convs(tmp_path_factory):
    return write_convs(tmp_path_factory.mktemp("data"))


def test_a_real_run_prints_the_table_not_the_trainers_metrics(tmp_path, convs, capsys):
    said = []
    r = train(cfg_for(tmp_path / "run", convs, max_steps=4, eval_fraction=0.2, eval_steps=2, save_steps=4),
              log=said.append)
    out = capsys.readouterr()
    printed = out.out + out.err
    for noise in ("Entropy", "entropy", "Mean Token Accuracy", "Num Tokens", "Epoch", "{'loss'", "it/s]"):
        assert noise not in printed and not any(noise in s for s in said), noise
    header = said.index(table_row(COLUMNS))
    rows = [s.split() for s in said[header + 1: header + 5]]
    assert [row[0] for row in rows] == ["1/4", "2/4", "3/4", "4/4"]
    losses = {h["step"]: h for h in r.log_history if "loss" in h}
    evals = {h["step"]: h["eval_loss"] for h in r.log_history if "eval_loss" in h and h["step"] > 0}
    for row in rows:
        step = int(row[0].split("/")[0])
        assert row[1] == f"{losses[step]['loss']:.4f}" and row[3] == f"{losses[step]['learning_rate']:.2e}"
        assert row[2] == (f"{evals[step]:.4f}" if step in evals else "-")
    assert set(evals) == {2, 4}
    done = said.index(next(s for s in said if s.startswith("Done: 4 steps")))
    mean, losses_line = r.metrics["train_loss"], said[done + 1]
    assert f"train loss {mean:.4f}" in losses_line  # the mean over all steps, and the last row's figure beside it
    assert f"(the mean over all steps; {losses[4]['loss']:.4f} in the table's last row)" in losses_line
    assert losses_line.endswith(f"validation loss {r.metrics['first_eval_loss']:.4f} -> {r.metrics['eval_loss']:.4f}")
