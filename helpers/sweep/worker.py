"""A sweep worker: takes trials from the sweep's Optuna study one at a time and trains each with
``helpers.train.train``, as notebook 04 does. A trial's whole log goes to its run folder
(``runs/<name>/train.log``); the worker prints one line per finished trial.

``python -m helpers.sweep.worker <sweep folder>`` starts one more worker on a sweep that notebook 07
(or ``run_sweep``) set up: one per GPU (``CUDA_VISIBLE_DEVICES=1 python -m helpers.sweep.worker ...``),
or on a second Colab runtime with the same sweep folder on Drive. Workers never take the same
trial; a trial whose worker died is resumed from its newest checkpoint by the next one.
"""
from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

from helpers.common.checkpoints import checkpoint_dirs, resume_point
from helpers.common.models import ModelLoadError
from helpers.common.run import RunDir
from helpers.core.config import ConfigError
from helpers.core.jsonl import DataError
from helpers.sweep.config import SweepConfig, coerce_value, search_space
from helpers.sweep.curves import eval_curve, per_epoch, run_name
from helpers.sweep.results import finished_line, trial_row
from helpers.sweep.runs import build_run_config, fingerprint, plan_sweep
from helpers.sweep.study import (heartbeat_path, open_study, quiet_optuna, silent_trials, study_fingerprint,
                                 take_trial, worker_record)
from helpers.sweep.watch import make_watch
from helpers.train import train


class Heartbeat:
    """The worker's heartbeat file (``<sweep>/workers/<id>.json``: time, trial, step, losses),
    written at most every 5 s from training and every ``every`` s from a thread; the thread also
    ends the worker when its parent (the notebook) is gone, leaving its trial to be resumed."""

    def __init__(self, sweep_dir: Path, worker: dict, parent: int | None = None, every: float = 15.0):
        self.path = heartbeat_path(sweep_dir, worker["id"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.state: dict = {"worker": worker}
        self.parent, self.every, self.written = parent, every, 0.0
        self.stopped, self.lock = threading.Event(), threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.beat({}, force=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.beat({"trial": None, "done": True}, force=True)

    def beat(self, state: dict, force: bool = False) -> None:
        """Merge ``state`` and write the file (at most every 5 s unless forced); the training thread
        and the heartbeat thread both call it, one at a time."""
        force = force or state.pop("force", False)
        with self.lock:
            self.state.update(state)
            if force or time.time() - self.written >= 5:
                self.written = time.time()
                tmp = self.path.with_name(self.path.name + f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(json.dumps(dict(self.state, time=self.written)))
                os.replace(tmp, self.path)

    def start_trial(self, state: dict) -> None:
        """A new trial: the last one's step and losses are dropped."""
        with self.lock:
            self.state = {"worker": self.state["worker"]}
        self.beat(state, force=True)

    def _loop(self) -> None:
        while not self.stopped.wait(self.every):
            if self.parent and os.getppid() != self.parent:  # the notebook is gone: stop like a killed worker
                os._exit(3)
            try:
                self.beat({}, force=True)
            except OSError:  # a full or unmounted disk: try again at the next beat
                pass


def trial_params(trial, cfg: SweepConfig) -> dict:
    """The trial's hyperparameters: a planned run's own values, or the sampler's draws (each field
    suggested, so that Optuna records it), converted to TrainConfig's types."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    space = search_space(cfg)
    given = trial.user_attrs.get("params")
    out = {}
    for k in (given or space):
        d = space[k]
        if isinstance(d, CategoricalDistribution):
            v = trial.suggest_categorical(k, d.choices)
            if isinstance(v, str) and v[:1] in "[{":  # a list value travels as JSON (choice_value)
                v = json.loads(v)
        elif isinstance(d, FloatDistribution):
            v = float(f"{trial.suggest_float(k, d.low, d.high, log=d.log):.3g}")
        else:
            v = trial.suggest_int(k, d.low, d.high)
        out[k] = coerce_value(k, v, "GRID")
    return given or out


def _resume_choice(run: RunDir, tc, fp: str):
    """(checkpoint to resume or None, how the run starts): a run folder made with other settings
    starts over; a killed run resumes from its newest checkpoint that verifies."""
    marked = run.get("sweep")
    stale = marked is not None and marked.get("fingerprint") != fp
    local, durable = checkpoint_dirs(tc.checkpoint_dir, run)
    ckpt = None if stale else resume_point("auto", local, durable, log=lambda *a: None)
    how = (f"resumed from {ckpt.name}" if ckpt else "settings changed: started over" if stale else
           "redone (killed before its first checkpoint)" if marked is not None else "started")
    return ckpt, how


def _metrics(res, tc) -> dict:
    m = res.metrics
    curve = {s: v for s, v in eval_curve(res.log_history).items() if s > 0}
    return dict(steps=m["steps"], target_steps=tc.max_steps, epochs=m["epochs"], train_loss=m["train_loss"],
                eval_loss=m["eval_loss"], best_eval_loss=round(min(curve.values()), 4) if curve else m["eval_loss"],
                start_eval_loss=m.get("start_eval_loss"), train_seconds=m["train_seconds"],
                tokens_seen=m["tokens_seen"], tokens_per_second=m["tokens_per_second"],
                peak_memory_gib=m["peak_memory_gib"], resumed_from=m["resumed_from"],
                per_epoch=per_epoch(res.log_history))


def _train_logged(tc, run: RunDir, watch):
    """``train(tc)`` with every line it and the libraries print going to the run's train.log."""
    with open(run.train_log, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} worker {os.getpid()} ---")
        return train(tc, log=print, callbacks=[watch])


def run_trial(plan, study, trial, hb: Heartbeat, limit_min: float, log=print) -> dict:
    """Train one trial and tell the study how it ended; returns its results row. A config, data or
    model error fails the trial and is raised (every trial would hit it); any other error fails
    the trial alone."""
    optuna = quiet_optuna()
    cfg, states = plan.cfg, optuna.trial.TrialState
    params = trial_params(trial, cfg)
    origin = trial.user_attrs.get("origin", trial.number)
    name = run_name(params) + ("" if plan.planned else f"-t{origin}")
    tc = build_run_config(cfg, params, plan.sweep_dir, plan.subset, name=name)
    fp = fingerprint(tc, plan.subset)
    run = RunDir(tc.output_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    ckpt, how = _resume_choice(run, tc, fp)
    run.update("sweep", {"fingerprint": fp, "params": params, "trial": trial.number, "started": time.time()})
    by_sweep = bool(cfg.max_minutes_total) and (not cfg.max_minutes_per_run or limit_min < cfg.max_minutes_per_run)
    tc = tc.replace(resume="auto" if ckpt else "never", max_time_minutes=round(limit_min, 4))
    for k, v in dict(params=params, origin=origin, run=name, run_dir=str(run.path), fingerprint=fp, how=how,
                     train_config=tc.to_dict()).items():
        trial.set_user_attr(k, v)
    hb.start_trial({"trial": trial.number, "run": name, "params": params, "step": 0, "max_steps": tc.max_steps})
    watch = make_watch(trial, cfg.pruner, progress=hb.beat)
    state, value, reason, lost = states.COMPLETE, None, "", None
    try:
        res = _train_logged(tc, run, watch)
    except (ConfigError, DataError, ModelLoadError) as exc:
        trial.set_user_attr("reason", f"{type(exc).__name__}: {exc}"[:2000])
        study.tell(trial, state=states.FAIL)
        raise
    except Exception as exc:  # a run that breaks (out of memory, ...) fails alone; the sweep goes on
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if "out of memory" in reason.lower():
            reason += " (lower per_device_batch_size or max_seq_len, or raise gradient_accumulation_steps)"
        state, res = states.FAIL, None
    if res is not None:
        m = _metrics(res, tc)
        trial.set_user_attr("metrics", m)
        value = m["eval_loss"]
        if watch.diverged or not (isinstance(value, (int, float)) and math.isfinite(value)):
            state, reason = states.FAIL, watch.diverged or f"diverged: validation loss {value}"
        elif watch.pruned:
            state, reason = states.PRUNED, watch.pruned
        elif m["steps"] >= tc.max_steps:
            reason = f"{m['steps']} steps" + (f", {how}" if m.get("resumed_from") else "")
        elif watch.time_stop is not None and by_sweep:
            state, lost = states.FAIL, f"the sweep's time budget ({cfg.max_minutes_total} min) ended this sitting"
            reason = f"stopped at step {m['steps']} by {lost}: checkpointed, resumed on the next run"
        else:
            reason = (f"time budget of {cfg.max_minutes_per_run} min reached at step {m['steps']}"
                      if watch.time_stop is not None else f"stopped at step {m['steps']}")
    trial.set_user_attr("reason", reason)
    if lost:
        trial.set_user_attr("lost", lost)
    study.tell(trial, value if state == states.COMPLETE else None, state=state)
    row = trial_row(study.get_trials(deepcopy=False)[trial.number])
    log(finished_line(row))
    hb.beat({"trial": None, "run": None}, force=True)
    _free_memory()
    return row


def _free_memory() -> None:
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def run_worker(sweep_dir: Path, log=print, parent: int | None = None, started: float | None = None) -> list[int]:
    """Take and train trials of the sweep in ``sweep_dir`` until none is left (or the sweep's time
    budget is spent); returns the numbers of the trials this worker finished."""
    cfg = SweepConfig.load(Path(sweep_dir) / "sweep_config.json")
    plan = plan_sweep(cfg, log=lambda *a: None)
    study = open_study(plan.cfg, plan.sweep_dir, plan.planned, study_fingerprint(plan.cfg, plan.subset),
                       plan.eval_steps)
    t0, done, me = started or time.time(), [], worker_record()
    with Heartbeat(plan.sweep_dir, me, parent=parent) as hb:
        while True:
            left = (cfg.max_minutes_total - (time.time() - t0) / 60) if cfg.max_minutes_total else 0.0
            if cfg.max_minutes_total and left <= 0:
                break
            trial = take_trial(study, cfg, plan.sweep_dir, me)
            if trial is None and silent_trials(study, plan.sweep_dir):
                time.sleep(15)  # a trial of a runtime that went silent: take it over once it is stale
                continue
            if trial is None:
                break
            limits = [m for m in (cfg.max_minutes_per_run, left) if m]
            row = run_trial(plan, study, trial, hb, min(limits) if limits else 0.0, log)
            done.append(row["number"])
            if row.get("lost"):
                break
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.sweep.worker <sweep folder> [--parent PID] [--started EPOCH]``."""
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", help="the sweep folder (holds sweep_config.json and study.journal)")
    ap.add_argument("--parent", type=int, default=None, help="stop when this process (the notebook) is gone")
    ap.add_argument("--started", type=float, default=None, help="when the sweep's sitting started (time budget)")
    a = ap.parse_args(argv)
    threads = os.environ.get("LLAMA_KIT_SWEEP_THREADS")
    if threads:
        import torch
        torch.set_num_threads(int(threads))
    try:
        run_worker(Path(a.sweep_dir), parent=a.parent, started=a.started)
    except (ConfigError, DataError, ModelLoadError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
