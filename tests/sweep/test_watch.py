"""The sweep's trainer callback driven with the trainer's own state objects: pruning against the best
finished run's curve, a diverged run stopped, a time-budget stop noted."""
import math

from transformers import TrainerControl, TrainerState

from helpers.sweep.watch import make_watch

REFERENCE = {1: 2.0, 3: 1.0, 5: 0.8}  # the best finished run's validation loss at its evaluations


def _evaluate(watch, step: int, loss: float, max_steps: int = 10) -> TrainerControl:
    state, control = TrainerState(global_step=step, max_steps=max_steps), TrainerControl()
    watch.on_evaluate(None, state, control, metrics={"eval_loss": loss})
    return control


def test_a_run_clearly_behind_the_reference_is_pruned_after_the_given_evaluations():
    watch = make_watch(REFERENCE, prune_after=2, margin=0.1)
    assert not _evaluate(watch, 1, 5.0).should_training_stop  # before training: not counted
    watch.on_train_begin(None, TrainerState(), TrainerControl())
    assert not _evaluate(watch, 1, 5.0).should_training_stop and watch.evals == 1  # far behind, but only 1 evaluation
    assert not _evaluate(watch, 2, 1.6).should_training_stop  # reference 1.5 at step 2: within 10%
    assert watch.pruned is None
    control = _evaluate(watch, 3, 1.2)  # 20% above the reference's 1.0
    assert control.should_training_stop and watch.evals == 3
    assert watch.pruned["step"] == 3 and watch.pruned["eval_loss"] == 1.2 and watch.pruned["reference"] == 1.0
    assert watch.pruned["reason"].startswith("clearly behind: validation loss 1.2000 at step 3 is 20.0% above")
    assert "(margin 10%, after 3 evaluations)" in watch.pruned["reason"]


def test_never_pruned_without_reference_at_the_last_step_or_when_pruning_is_off():
    for watch in (make_watch({}, 1, 0.1), make_watch(REFERENCE, 0, 0.1)):
        watch.on_train_begin(None, TrainerState(), TrainerControl())
        assert not _evaluate(watch, 3, 9.0).should_training_stop and watch.pruned is None
    watch = make_watch(REFERENCE, 1, 0.1)
    watch.on_train_begin(None, TrainerState(), TrainerControl())
    assert not _evaluate(watch, 7, 9.0).should_training_stop  # past the reference's last evaluation
    assert not _evaluate(watch, 10, 9.0, max_steps=10).should_training_stop  # the final evaluation
    watch.on_train_end(None, TrainerState(), TrainerControl())
    assert not _evaluate(watch, 3, 9.0).should_training_stop and watch.pruned is None


def test_a_diverged_run_stops_at_once_and_a_time_budget_stop_is_noted():
    watch = make_watch({}, prune_after=5, margin=0.1)
    watch.on_train_begin(None, TrainerState(), TrainerControl())
    assert _evaluate(watch, 2, math.nan).should_training_stop
    assert watch.pruned["step"] == 2 and watch.pruned["reason"] == "diverged: validation loss is nan at step 2"
    watch = make_watch({}, prune_after=0, margin=0.1)
    stop = TrainerControl(should_training_stop=True)
    watch.on_step_end(None, TrainerState(global_step=10, max_steps=10), stop)  # the run's own end
    assert watch.time_stop is None
    watch.on_step_end(None, TrainerState(global_step=4, max_steps=10), TrainerControl())  # going on
    assert watch.time_stop is None
    watch.on_step_end(None, TrainerState(global_step=4, max_steps=10), stop)  # stopped early: the time budget
    watch.on_step_end(None, TrainerState(global_step=5, max_steps=10), stop)
    assert watch.time_stop == 4
