"""The training table a person reads: one row per logged step with the step, the training loss,
the validation loss, the learning rate, the time so far and the time left, and (in a notebook) one
live line that says where the run is and disappears when it ends.

It replaces the Trainer's own progress output (its notebook table with "Entropy", "Mean Token
Accuracy" and "Num Tokens" columns, its frozen "[6/6 ..., Epoch 0/1]" bar, or a dict per log line
in a console). Every log line still goes to the run folder's ``log_history.jsonl`` (``LiveLog``).
"""
from __future__ import annotations

import sys
import time

from helpers.core.show import in_notebook

COLUMNS = ("step", "train loss", "val loss", "learning rate", "elapsed", "left")
WIDTHS = (11, 10, 8, 13, 7, 7)


def clock(seconds: float | None) -> str:
    """``seconds`` as h:mm:ss or m:ss ("-" when unknown)."""
    if seconds is None:
        return "-"
    s = int(round(max(0.0, seconds)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def table_row(cells: tuple) -> str:
    """One line of the table: the cells right-aligned under :data:`COLUMNS`."""
    return "  ".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS)).rstrip()


class TrainingTable:
    """The rows of the table, fed by the trainer's events (see :func:`progress_callback`).

    A training log and the validation at the same step make one row: a training log that a
    validation will follow (``evaluating``) waits for it. ``now`` is the clock (tests pass their own)."""

    def __init__(self, log=print, now=time.time):
        self.log, self.now = log, now
        self.pending: dict | None = None
        self.t0 = self.first_step = None
        self.max_steps = 0
        self.ended = False
        self.rows: list[str] = []

    def begin(self, step: int, max_steps: int) -> None:
        """The run starts (or resumes) at ``step`` of ``max_steps``: the header."""
        self.t0, self.first_step, self.max_steps = self.now(), step, max_steps
        self._say(table_row(COLUMNS))

    def left(self, step: int) -> float | None:
        """Seconds left at the pace of this sitting's steps so far."""
        done = step - (self.first_step or 0)
        if self.t0 is None or done <= 0 or not self.max_steps:
            return None
        return (self.now() - self.t0) / done * max(0, self.max_steps - step)

    def on_log(self, step: int, logs: dict, evaluating: bool = False) -> None:
        """A log line of the trainer: training (``loss``) or validation (``eval_loss``); others are ignored."""
        if "loss" in logs:
            self.flush()
            self.pending = {"step": step, "loss": logs["loss"], "lr": logs.get("learning_rate")}
            if not evaluating:
                self.flush()
        elif "eval_loss" in logs:
            if self.pending is not None and self.pending["step"] != step:
                self.flush()
            row = self.pending or {"step": step}
            row["eval"] = logs["eval_loss"]
            self.pending = row
            self.flush()

    def flush(self) -> None:
        """Print the row that waits, if any."""
        if self.pending is None:
            return
        r, self.pending = self.pending, None
        step = r["step"]
        cells = (f"{step}/{self.max_steps}" if self.max_steps else str(step), _loss(r.get("loss")),
                 _loss(r.get("eval")), f"{r['lr']:.2e}" if r.get("lr") is not None else "-",
                 clock(self.now() - self.t0) if self.t0 is not None else "-", clock(self.left(step)))
        self._say(table_row(cells))

    def status(self, step: int) -> str:
        """The live line: where the run is now."""
        elapsed = clock(self.now() - self.t0) if self.t0 is not None else "-"
        return f"training: step {step} of {self.max_steps}, {elapsed} so far, about {clock(self.left(step))} left"

    def _say(self, line: str) -> None:
        """Keep the line (for tests) and give it to the run's log."""
        self.rows.append(line)
        self.log(line)


def _loss(x) -> str:
    """A loss for the table: 4 decimals, or "-"."""
    return "-" if x is None else f"{x:.4f}"


class LiveLine:
    """One line in the notebook's output rewritten in place (at most every ``every`` seconds), and
    emptied at the end, so that no frozen bar is left. Outside a notebook, or with the output
    redirected (the sweep's workers write to a log file), it does nothing."""

    def __init__(self, every: float = 1.0):
        self.every, self.handle, self.last = every, None, 0.0
        self.on = in_notebook() and type(sys.stdout).__name__ == "OutStream"

    def show(self, text: str, force: bool = False) -> None:
        """Put ``text`` on the line (at most every ``every`` seconds unless ``force``)."""
        if not self.on or (not force and time.time() - self.last < self.every):
            return
        from IPython.display import display
        self.last = time.time()
        if self.handle is None:
            self.handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self.handle.update({"text/plain": text}, raw=True)

    def close(self) -> None:
        """Empty the line: the run is over, the table and the Done line say the rest."""
        if self.handle is not None:
            self.handle.update({"text/plain": ""}, raw=True)
            self.handle = None


def progress_callback(log=print):
    """A TrainerCallback that writes :class:`TrainingTable` and keeps a :class:`LiveLine` (see the
    module docstring); ``log`` gets each line of the table (the run's log function)."""
    from transformers import TrainerCallback

    class KitProgress(TrainerCallback):
        """The kit's training table and live line, in place of the Trainer's progress output."""

        def __init__(self):
            self.table, self.live = TrainingTable(log), LiveLine()

        def on_train_begin(self, args, state, control, **kw):
            if state.is_world_process_zero:
                self.table.begin(state.global_step, state.max_steps)

        def on_step_end(self, args, state, control, **kw):
            if state.is_world_process_zero:
                self.live.show(self.table.status(state.global_step))

        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs and self.table.t0 is not None and not self.table.ended:
                self.table.on_log(state.global_step, logs, evaluating=bool(control.should_evaluate))

        def on_train_end(self, args, state, control, **kw):
            self.table.flush()
            self.table.ended = True  # an evaluation after the fit (the best weights) is the Done line's
            self.live.close()

    return KitProgress()


def use_kit_progress(trainer, log=print) -> None:
    """Replace the Trainer's progress output (bar, notebook table or printed dicts) with the kit's."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    try:
        from transformers.utils.notebook import NotebookProgressCallback
    except ImportError:  # IPython not installed
        NotebookProgressCallback = ProgressCallback
    for cls in {ProgressCallback, NotebookProgressCallback, PrinterCallback}:
        while trainer.pop_callback(cls) is not None:
            pass
    trainer.add_callback(progress_callback(log))
