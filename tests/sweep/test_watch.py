"""The sweep's trainer callback driven with the trainer's own state objects and a real Optuna study:
each validation loss reported to the trial, the pruner's decision followed (with why), a diverged run
stopped, a time-budget stop noted, progress handed on."""
import math

import optuna
from transformers import TrainerControl, TrainerState

from helpers.sweep.watch import make_watch

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _evaluate(watch, step: int, loss: float, max_steps: int = 10) -> TrainerControl:
    state, control = TrainerState(global_step=step, max_steps=max_steps), TrainerControl()
    watch.on_evaluate(None, state, control, metrics={"eval_loss": loss})
    return control


def _study(pruner):
    """A study with one finished run whose validation loss was 2.0, 1.0, 0.8 at steps 1, 3, 5."""
    study = optuna.create_study(pruner=pruner)
    done = study.ask()
    for step, loss in ((1, 2.0), (3, 1.0), (5, 0.8)):
        done.report(loss, step)
    study.tell(done, 0.8)
    return study


def test_each_validation_is_reported_and_the_median_pruner_stops_a_run_behind_with_its_reason():
    study = _study(optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=3))
    trial, seen = study.ask(), []
    watch = make_watch(trial, "median", progress=seen.append)
    assert not _evaluate(watch, 1, 5.0).should_training_stop  # before training: not reported
    watch.on_train_begin(None, TrainerState(), TrainerControl())
    assert not _evaluate(watch, 1, 5.0).should_training_stop  # far behind, but in the warm-up
    control = _evaluate(watch, 3, 1.2)  # above the finished run's 1.0 at step 3
    assert control.should_training_stop and watch.diverged is None
    assert watch.pruned == ("pruned at step 3 of 10 by the median pruner: validation loss 1.2000; median of 1 "
                            "finished run there 1.0000")
    assert study.trials[1].intermediate_values == {1: 5.0, 3: 1.2}  # every report is in the study
    assert seen[-1] == {"eval_loss": 1.2, "step": 3, "max_steps": 10, "force": True}


def test_a_run_ahead_the_final_evaluation_and_no_pruner_never_stop():
    for pruner in (optuna.pruners.MedianPruner(n_startup_trials=1), optuna.pruners.NopPruner()):
        study = _study(pruner)
        watch = make_watch(study.ask(), "median")
        watch.on_train_begin(None, TrainerState(), TrainerControl())
        assert not _evaluate(watch, 3, 0.9).should_training_stop  # ahead of the finished run
        assert not _evaluate(watch, 10, 9.0, max_steps=10).should_training_stop  # the run's end: never pruned
        assert watch.pruned is None
    watch = make_watch(_study(optuna.pruners.NopPruner()).ask(), "none")
    watch.on_train_begin(None, TrainerState(), TrainerControl())
    assert not _evaluate(watch, 3, 99.0).should_training_stop and watch.pruned is None


def test_a_diverged_run_stops_at_once_and_a_time_budget_stop_is_noted():
    watch = make_watch(_study(optuna.pruners.NopPruner()).ask(), "none")
    watch.on_train_begin(None, TrainerState(), TrainerControl())
    assert _evaluate(watch, 2, math.nan).should_training_stop
    assert watch.diverged == "diverged: validation loss is nan at step 2" and watch.pruned is None
    stop = TrainerControl(should_training_stop=True)
    watch = make_watch(_study(optuna.pruners.NopPruner()).ask(), "none")
    watch.on_step_end(None, TrainerState(global_step=10, max_steps=10), stop)  # the run's own end
    assert watch.time_stop is None
    watch.on_step_end(None, TrainerState(global_step=4, max_steps=10), TrainerControl())  # going on
    assert watch.time_stop is None
    watch.on_step_end(None, TrainerState(global_step=4, max_steps=10), stop)  # stopped early: the time budget
    watch.on_step_end(None, TrainerState(global_step=5, max_steps=10), stop)
    assert watch.time_stop == 4
