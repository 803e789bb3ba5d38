"""Watching a sweep trial while it trains: each validation loss reported to its Optuna trial (whose
pruner decides whether it goes on), diverged runs stopped, a time-budget stop told from the end of
the run, and the worker's progress (step, losses) handed to its heartbeat."""
from __future__ import annotations

import math
import statistics


def _median_reason(trial, step: int) -> str:
    """Where the earlier finished runs stood at ``step`` (for the pruned line; the pruner decided)."""
    import optuna
    vals = [t.intermediate_values[step] for t in trial.study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if step in t.intermediate_values]
    if not vals:
        return ""
    return f"; median of {len(vals)} finished run{'s' if len(vals) != 1 else ''} there {statistics.median(vals):.4f}"


def make_watch(trial, pruner_name: str, progress=None):
    """A trainer callback reporting each validation loss to ``trial`` (``trial.report``) and
    stopping the run when ``trial.should_prune()``; a non-finite loss stops it as diverged.
    ``progress(state)`` is called at each step and validation. Its results: ``pruned``, ``diverged``
    (a reason or None) and ``time_stop`` (the step a time budget stopped it, or None)."""
    from transformers import TrainerCallback

    class SweepWatch(TrainerCallback):
        """Reports to the Optuna trial; notes why training stopped."""

        def __init__(self):
            self.training = False
            self.pruned: str | None = None
            self.diverged: str | None = None
            self.time_stop: int | None = None
            self.last: dict = {}

        def on_train_begin(self, args, state, control, **kw):
            self.training = True

        def on_train_end(self, args, state, control, **kw):
            self.training = False

        def on_step_end(self, args, state, control, **kw):
            # runs after DefaultFlowCallback and train's TimeBudget: a stop before max_steps is the time budget
            if control.should_training_stop and state.global_step < state.max_steps and self.time_stop is None:
                self.time_stop = state.global_step
            if progress:
                progress(dict(self.last, step=state.global_step, max_steps=state.max_steps))

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.last["train_loss"] = round(float(logs["loss"]), 4)

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            if not self.training or not metrics or "eval_loss" not in metrics or state.global_step <= 0:
                return
            step, loss = state.global_step, float(metrics["eval_loss"])
            self.last["eval_loss"] = round(loss, 4)
            if progress:
                progress(dict(self.last, step=step, max_steps=state.max_steps, force=True))
            if not math.isfinite(loss):
                self.diverged = f"diverged: validation loss is {loss} at step {step}"
                control.should_training_stop = True
                return control
            trial.report(loss, step)
            if step >= state.max_steps or not trial.should_prune():
                return
            self.pruned = (f"pruned at step {step} of {state.max_steps} by the {pruner_name} pruner: validation loss "
                           f"{loss:.4f}" + (_median_reason(trial, step) if pruner_name == "median" else ""))
            control.should_training_stop = True
            return control

    return SweepWatch()
