"""The sweep's Optuna study on a real journal file: planned runs enqueued once, a study with other
settings refused, trials handed to concurrent worker processes without giving one twice, a dead
worker's trial failed as lost and retried with the same values, failed trials retried on request."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.core.config import ConfigError
from helpers.core.files import SweepFiles
from helpers.sweep.config import expand_runs
from helpers.sweep.study import (heartbeat_path, open_study, retry_failed, silent_trials, take_trial, worker_dead,
                                 worker_record)
from tiny_sweep import tiny

ROOT = Path(__file__).resolve().parents[2]
GRID = {"learning_rate": [1e-4, 2e-4, 5e-4, 1e-3, 2e-3], "lora_r": [4, 8]}


def _open(cfg, fp="fp"):
    return open_study(cfg, Path(cfg.output_dir), expand_runs(cfg), fp, eval_steps=1)


def test_planned_runs_are_enqueued_once_and_a_study_with_other_settings_is_refused(tmp_path):
    cfg = tiny(tmp_path, grid=GRID)
    study = _open(cfg)
    assert SweepFiles(Path(cfg.output_dir)).journal.exists()
    assert [t.user_attrs["params"] for t in study.trials] == expand_runs(cfg)  # in grid order
    again = _open(cfg)  # a rerun (another sitting, another runtime) loads it
    assert len(again.trials) == 10 and again.user_attrs == {"planned": 10, "fingerprint": "fp"}
    with pytest.raises(ConfigError, match="holds a study made with other settings"):
        _open(cfg, fp="other")


TAKER = """
import json, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from helpers.sweep.config import SweepConfig
from helpers.sweep.study import open_study, take_trial, worker_record
cfg = SweepConfig(**json.loads({cfg!r}))
study = open_study(cfg, Path(cfg.output_dir), [], "fp", 1)
taken = []
while (trial := take_trial(study, cfg, Path(cfg.output_dir), worker_record())) is not None:
    taken.append(trial.number)
    time.sleep(0.05)
    study.tell(trial, 1.0)
print(json.dumps(taken))
"""


def test_two_worker_processes_never_take_the_same_trial(tmp_path):
    cfg = tiny(tmp_path, grid=GRID)
    _open(cfg)
    fields = json.dumps({k: getattr(cfg, k) for k in cfg.field_names()})
    code = TAKER.format(tests=str(ROOT / "tests"), cfg=fields)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    taken = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sorted(taken[0] + taken[1]) == list(range(10))  # each trial once, all of them
    assert taken[0] and taken[1]  # both worked
    study = _open(cfg)
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    assert len({t.user_attrs["worker"]["id"] for t in study.trials}) == 2


def test_a_dead_workers_trial_is_lost_and_retried_with_the_same_values(tmp_path):
    cfg = tiny(tmp_path, runs=[{"learning_rate": 1e-3}, {"learning_rate": 2e-3}])
    sweep = Path(cfg.output_dir)
    study = _open(cfg)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = dict(worker_record(), pid=int(gone.stdout), id="dead-worker")
    first = take_trial(study, cfg, sweep, dead)  # taken by a worker that then died
    assert first.number == 0 and worker_dead(sweep, first.user_attrs["worker"]) == "worker dead-worker is gone"
    me = worker_record()
    nxt = take_trial(study, cfg, sweep, me)  # the next ask finds it: failed as lost, a retry enqueued
    t0 = study.trials[0]
    assert t0.state.name == "FAIL" and t0.user_attrs["lost"] == "worker dead-worker is gone"
    assert nxt.number == 1 and nxt.user_attrs["params"] == {"learning_rate": 2e-3}  # the queue goes on in order
    again = take_trial(study, cfg, sweep, me)
    assert again.number == 2 and again.user_attrs == {"origin": 0, "retry_from": 0, "params": {"learning_rate": 1e-3},
                                                      "worker": me}
    assert take_trial(study, cfg, sweep, me) is None  # nothing waiting: the planned sweep is taken


def test_a_worker_on_another_machine_is_dead_when_its_heartbeat_is_stale(tmp_path):
    other = {"id": "colab-2-77", "host": "another-runtime", "pid": 77}
    path = heartbeat_path(tmp_path, other["id"])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"time": time.time() - 30, "trial": 3}))
    assert worker_dead(tmp_path, other) is None  # beat 30 s ago: alive
    path.write_text(json.dumps({"time": time.time() - 3600, "trial": 3}))
    assert worker_dead(tmp_path, other).startswith("worker colab-2-77 silent for 36")
    assert worker_dead(tmp_path, None) == "no worker recorded"


def test_failed_trials_are_retried_only_when_asked_and_once(tmp_path):
    from optuna.trial import TrialState
    cfg = tiny(tmp_path, runs=[{"learning_rate": 1e-3}])
    study = _open(cfg)
    trial = take_trial(study, cfg, Path(cfg.output_dir), worker_record())
    study.tell(trial, state=TrialState.FAIL)  # an out-of-memory error, say
    assert retry_failed(study, everything=False) == 0
    assert retry_failed(study, everything=True) == 1 and retry_failed(study, everything=True) == 0
    assert study.trials[1].state.name == "WAITING" and study.trials[1].user_attrs["retry_from"] == 0


def test_a_trial_of_a_runtime_gone_silent_is_waited_for_then_taken_over(tmp_path):
    cfg = tiny(tmp_path, runs=[{"learning_rate": 1e-3}])
    sweep = Path(cfg.output_dir)
    study = _open(cfg)
    other = {"id": "colab-2-77", "host": "another-runtime", "pid": 77}
    beat = heartbeat_path(sweep, other["id"])
    beat.parent.mkdir(parents=True, exist_ok=True)
    beat.write_text(json.dumps({"time": time.time()}))
    take_trial(study, cfg, sweep, other)  # the other runtime took the only run
    assert silent_trials(study, sweep) == [] and take_trial(study, cfg, sweep, worker_record()) is None
    beat.write_text(json.dumps({"time": time.time() - 60}))  # a minute without a beat: perhaps disconnected
    assert silent_trials(study, sweep) == [0] and take_trial(study, cfg, sweep, worker_record()) is None
    beat.write_text(json.dumps({"time": time.time() - 600}))  # stale: failed as lost, retried here
    retry = take_trial(study, cfg, sweep, worker_record())
    assert retry.user_attrs["retry_from"] == 0 and study.trials[0].user_attrs["lost"].startswith("worker colab-2-77")
