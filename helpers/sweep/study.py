"""The sweep's Optuna study: a journal file in the sweep folder (every trial, value and pruning
decision on disk, so on Drive on Colab), its sampler and pruner, the planned runs enqueued once, and
trials handed to workers one at a time, so that no two workers take the same one.

A worker that died leaves its trial RUNNING; the next worker to ask for a trial marks it failed
(``lost``) and enqueues a retry with the same values, which trains in the same run folder and so
resumes from its newest checkpoint. A worker is dead when its process is gone (on this machine) or, on
another runtime, when its heartbeat file (``<sweep>/workers/<id>.json``) is older than ``STALE_AFTER_S``.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from helpers.core.config import ConfigError
from helpers.core.files import SweepFiles
from helpers.sweep.config import SweepConfig, choice_value

STUDY = "sweep"
STALE_AFTER_S = float(os.environ.get("LLAMA_KIT_SWEEP_STALE_S", "180"))  # a heartbeat older than this: dead worker
MAX_LOST = 3  # retries of a trial whose worker died, before it is left failed


def quiet_optuna():
    """Optuna imported with its info lines and experimental warnings off (one line per trial is ours)."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage(sweep_dir: Path):
    """The study's JournalStorage on ``<sweep>/study.journal`` (an open-file lock: works on Drive)."""
    optuna = quiet_optuna()
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
    path = str(SweepFiles(Path(sweep_dir)).journal)
    return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


@contextmanager
def study_lock(sweep_dir: Path):
    """One worker at a time in the block (across processes and runtimes sharing the folder)."""
    quiet_optuna()
    from optuna.storages.journal import JournalFileOpenLock
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    lock = JournalFileOpenLock(str(SweepFiles(Path(sweep_dir)).journal) + ".take")
    while not lock.acquire():
        time.sleep(0.05)
    try:
        yield
    finally:
        lock.release()


def make_sampler(cfg: SweepConfig):
    """grid: Optuna's GridSampler (the points are also enqueued in order); random; tpe."""
    optuna = quiet_optuna()
    if cfg.search == "grid" and not cfg.runs:
        return optuna.samplers.GridSampler({k: [choice_value(v) for v in vs] for k, vs in cfg.grid.items()},
                                           seed=cfg.search_seed)
    if cfg.search == "tpe":
        return optuna.samplers.TPESampler(seed=cfg.search_seed, n_startup_trials=max(2, cfg.num_samples // 3))
    return optuna.samplers.RandomSampler(seed=cfg.search_seed)


def make_pruner(cfg: SweepConfig, eval_steps: int):
    """PRUNER from the PRUNE_AFTER_EVALS-th validation point (step ``eval_steps * PRUNE_AFTER_EVALS``);
    the figures behind the default are in bench/RESULTS.md (bench/sweep_pruners.py)."""
    optuna = quiet_optuna()
    start = max(1, cfg.prune_after_evals * eval_steps)
    if cfg.pruner == "none" or cfg.prune_after_evals <= 0:
        return optuna.pruners.NopPruner()
    if cfg.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=start, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=start)


def study_fingerprint(cfg: SweepConfig, subset: dict) -> str:
    """What makes two sittings the same study: the search, the shared settings and the subset."""
    keys = ("search", "grid", "runs", "search_seed", "base", "model_name", "mode", "quantization", "max_seq_len",
            "seed", "max_steps_per_run", "evals_per_run")
    d = {k: getattr(cfg, k) for k in keys}
    d["subset"] = [subset.get("train_sha256"), subset.get("val_sha256")]
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def open_study(cfg: SweepConfig, sweep_dir: Path, planned: list[dict], fingerprint: str, eval_steps: int):
    """The sweep's study, created with its planned runs enqueued on the first sitting; a folder
    whose study was made with other settings is refused."""
    optuna = quiet_optuna()
    with study_lock(sweep_dir):
        study = optuna.create_study(study_name=STUDY, storage=storage(sweep_dir), sampler=make_sampler(cfg),
                                    pruner=make_pruner(cfg, eval_steps), direction="minimize", load_if_exists=True)
        old = study.user_attrs.get("fingerprint")
        if old is not None and old != fingerprint:
            raise ConfigError(f"{sweep_dir} holds a study made with other settings (search, GRID/RUNS, BASE, model or "
                              "steps): trials with different settings do not compare. Use another NAME, or delete "
                              "the folder to start over.")
        if old is None:
            for params in planned:
                study.enqueue_trial({k: choice_value(v) for k, v in params.items()}, user_attrs={"params": params})
            study.set_user_attr("planned", len(planned))
            study.set_user_attr("fingerprint", fingerprint)
    return study


def origin(t) -> int:
    """The number of the first trial of a configuration (a retry carries it)."""
    return t.user_attrs.get("origin", t.number)


def retry(study, t, **why) -> None:
    """Enqueue ``t`` again with the same values: it trains in the same run folder, so it resumes."""
    params = t.user_attrs.get("params")
    fixed = dict(t.params) or {k: choice_value(v) for k, v in (params or {}).items()}
    study.enqueue_trial(fixed, user_attrs=dict({"origin": origin(t), "retry_from": t.number},
                                               **({"params": params} if params else {}), **why))


def retry_failed(study, everything: bool) -> int:
    """Enqueue a retry of each failed trial not retried yet: lost ones (a dead worker, a sitting's
    time budget) always, others when ``everything`` (RETRY_FAILED). Returns how many."""
    optuna = quiet_optuna()
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_from"] for t in trials if "retry_from" in t.user_attrs}
    lost_count: dict[int, int] = {}
    for t in trials:
        if t.user_attrs.get("lost"):
            lost_count[origin(t)] = lost_count.get(origin(t), 0) + 1
    n = 0
    for t in trials:
        if t.state != optuna.trial.TrialState.FAIL or t.number in retried:
            continue
        lost = bool(t.user_attrs.get("lost"))
        if (lost and lost_count.get(origin(t), 0) <= MAX_LOST) or (everything and not lost):
            retry(study, t)
            n += 1
    return n


def worker_record() -> dict:
    """Who this worker is: ``{"id", "host", "pid"}``."""
    host = socket.gethostname()
    return {"id": f"{host}-{os.getpid()}", "host": host, "pid": os.getpid()}


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child not reaped yet is a zombie: gone all the same
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def worker_dead(sweep_dir: Path, worker: dict | None, now: float | None = None) -> str | None:
    """Why the worker is dead (its process is gone, or its heartbeat is stale), or None."""
    if not worker:
        return "no worker recorded"
    if worker.get("host") == socket.gethostname():  # this machine: its process tells
        return f"worker {worker['id']} is gone" if _pid_gone(int(worker.get("pid", -1))) else None
    beat = read_heartbeat(sweep_dir, worker["id"])
    age = (now or time.time()) - beat.get("time", 0)
    if age > STALE_AFTER_S:
        return f"worker {worker['id']} silent for {age:.0f} s"
    return None


def heartbeat_path(sweep_dir: Path, worker_id: str) -> Path:
    return SweepFiles(Path(sweep_dir)).workers / f"{worker_id}.json"


def read_heartbeat(sweep_dir: Path, worker_id: str) -> dict:
    """The worker's last heartbeat ``{"time", "trial", "run", "step", "max_steps", ...}``, {} if none."""
    try:
        return json.loads(heartbeat_path(sweep_dir, worker_id).read_text())
    except (OSError, ValueError):
        return {}


def silent_trials(study, sweep_dir: Path, after_s: float = 45.0) -> list[int]:
    """RUNNING trials of workers on other machines that have not beaten for ``after_s`` seconds:
    perhaps lost with their runtime (a disconnect); they are failed once ``STALE_AFTER_S`` passes."""
    optuna = quiet_optuna()
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        w = t.user_attrs.get("worker") or {}
        if w.get("host") != socket.gethostname() and time.time() - read_heartbeat(sweep_dir, w.get("id", "")).get(
                "time", 0) > after_s:
            out.append(t.number)
    return out


def fail_lost(study, sweep_dir: Path) -> list[int]:
    """Mark RUNNING trials of dead workers failed (``lost``); returns their numbers."""
    optuna = quiet_optuna()
    st = study._storage
    lost = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        why = worker_dead(sweep_dir, t.user_attrs.get("worker"))
        if why is None:
            continue
        try:
            st.set_trial_user_attr(t._trial_id, "lost", why)
            st.set_trial_user_attr(t._trial_id, "reason", f"lost: {why}; resumed by the next worker")
            st.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            lost.append(t.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    return lost


def take_trial(study, cfg: SweepConfig, sweep_dir: Path, worker: dict):
    """The next trial for this worker (a waiting one first: planned runs, retries), or None when
    the sweep has none left. Inside the study lock, so no two workers get the same trial."""
    optuna = quiet_optuna()
    with study_lock(sweep_dir):
        if fail_lost(study, sweep_dir):
            retry_failed(study, everything=False)
        trials = study.get_trials(deepcopy=False)
        waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
        if not waiting:
            if study.user_attrs.get("planned"):
                return None
            if sum(1 for t in trials if "retry_from" not in t.user_attrs) >= cfg.num_samples:
                return None
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        return trial
