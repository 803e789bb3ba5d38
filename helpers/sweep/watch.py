"""Watching a sweep run while it trains: pruning runs clearly behind the best finished one, stopping
diverged ones, and telling a time-budget stop from the end of the run."""
from __future__ import annotations

import math

from helpers.sweep.curves import reference_at


def make_watch(reference: dict[int, float], prune_after: int, margin: float):
    """A trainer callback that prunes a run whose validation loss is more than ``margin`` above the
    ``reference`` curve (the best finished run's) after ``prune_after`` evaluations, stops a diverged
    run, and notes a stop by the time budget (``pruned``, ``time_stop``)."""
    from transformers import TrainerCallback

    class SweepWatch(TrainerCallback):
        """Prunes a run clearly behind the best finished one; notes why training stopped."""

        def __init__(self):
            self.training = False
            self.evals = 0
            self.pruned: dict | None = None
            self.time_stop: int | None = None

        def on_train_begin(self, args, state, control, **kw):
            self.training = True

        def on_train_end(self, args, state, control, **kw):
            self.training = False

        def on_step_end(self, args, state, control, **kw):
            # runs after DefaultFlowCallback and train's TimeBudget: a stop before max_steps is the time budget
            if control.should_training_stop and state.global_step < state.max_steps and self.time_stop is None:
                self.time_stop = state.global_step

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            if not self.training or not metrics or "eval_loss" not in metrics or state.global_step <= 0:
                return
            if state.global_step >= state.max_steps:
                return
            self.evals += 1
            loss = float(metrics["eval_loss"])
            if not math.isfinite(loss):
                self.pruned = {"step": state.global_step, "eval_loss": loss, "reason": "diverged: validation loss is "
                               f"{loss} at step {state.global_step}"}
                control.should_training_stop = True
                return control
            if prune_after <= 0 or self.evals < prune_after:
                return
            ref = reference_at(reference, state.global_step)
            if ref is None or loss <= ref * (1 + margin):
                return
            self.pruned = {"step": state.global_step, "eval_loss": round(loss, 4), "reference": round(ref, 4),
                           "reason": f"clearly behind: validation loss {loss:.4f} at step {state.global_step} is "
                                     f"{100 * (loss / ref - 1):.1f}% above the best finished run's {ref:.4f} at that "
                                     "step "
                                     f"(margin {100 * margin:.0f}%, after {self.evals} evaluations)"}
            control.should_training_stop = True
            return control

    return SweepWatch()
