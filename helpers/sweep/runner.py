"""Hyperparameter sweeps (notebook 07): many short training runs on one fixed subset, compared fairly,
on an Optuna study.

``run_sweep(SweepConfig(...))`` plans the runs (a grid: every combination; RUNS: an explicit list;
``search="random"`` or ``"tpe"``: Optuna's samplers draw NUM_SAMPLES configurations), opens the
sweep's study (a journal file in the sweep folder, on Drive on Colab), and starts WORKERS worker
processes (:mod:`helpers.sweep.worker`, one per GPU when there are several) that take trials from
the study and train each with :func:`helpers.train.train`, the same entry point as notebook 04.
While they work it prints one line per finished trial and one live progress line; each trial's
whole log stays in its run folder. The sweep folder::

    <sweep>/study.journal            the Optuna study: every trial, its values, reports and state
    <sweep>/sweep_config.json        the sweep's settings, read by every worker
    <sweep>/data/train.jsonl, val.jsonl  the subset, carved once: every run trains on the same rows
    <sweep>/runs/<name>/             one training run (adapter, run.json, log_history.json, train.log)
    <sweep>/workers/                 a heartbeat file per worker and each worker process's log
    <sweep>/results.jsonl, .md, .csv the results, written from the study (a view of it)
    <sweep>/best_config.json         the best run's settings; ``load_best_config`` reads it for notebook 04
    <plots>/<name>_<hyperparameter>.png  loss curves overlaid per hyperparameter, one colour per trial

Fair comparison: the subset and its validation rows are fixed (:mod:`helpers.sweep.subset`), every
run has the same seed, so the same data order and LoRA initialisation, and every run gets an
explicit step count (``max_steps``), so warm-up and decay are comparable. The loss is the mean over
trained tokens of the whole optimizer step, so ``batch 4 x accumulation 1`` and ``1 x 4`` give the
same curve (tests/sweep/test_runner.py checks it on the embedded model).

Resumable: the study survives a disconnect; a rerun trains only what is left, and a trial whose
worker died resumes from its newest checkpoint. Pruning: each validation loss is reported to the
trial, and Optuna's pruner (PRUNER, from the PRUNE_AFTER_EVALS-th validation) stops runs that fall
behind; bench/RESULTS.md compares the pruners.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.resources import chitchat
from helpers.core.config import ConfigError
from helpers.core.files import SweepFiles
from helpers.sweep.config import SweepConfig
from helpers.sweep.plots import plot_optuna, plot_sweep
from helpers.sweep.results import (best_run, finished_line, results_table, study_rows, table_markdown,
                                   write_best_config, write_results)
from helpers.sweep.runs import SweepPlan, plan_sweep
from helpers.sweep.study import open_study, read_heartbeat, retry_failed, study_fingerprint

FINISHED = ("done", "pruned", "failed")


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns: every run's results row, the table, the plots and the best settings."""
    sweep_dir: Path  # the sweep folder
    rows: list  # one row per configuration (results.jsonl), this sitting and earlier ones
    table: Any  # pandas DataFrame of the rows, best first
    plots: list  # PNG files written
    best: dict | None  # best_config.json content (None when no run finished with a validation loss)
    best_path: Path | None
    trained: list  # trial numbers finished in this call
    skipped: list  # trial numbers that had finished before
    stopped: str | None = None  # why the sweep stopped before its last run (a budget), else None


class Console:
    """One line per event, and one live progress line: updated in place in a notebook (a display
    handle, so the saved notebook keeps only its last state), rewritten with ``\\r`` on a terminal,
    left out in a log file."""

    def __init__(self, stream=None):
        self.stream, self.shown, self.handle = stream or sys.stdout, "", None
        self.notebook = _in_notebook()
        self.tty = not self.notebook and hasattr(self.stream, "isatty") and self.stream.isatty()

    def line(self, text: str) -> None:
        if self.tty and self.shown:
            self.stream.write("\r" + " " * len(self.shown) + "\r")
            self.shown = ""
        self.stream.write(text + "\n")
        self.stream.flush()

    def progress(self, text: str) -> None:
        if text == self.shown:
            return
        if self.notebook:
            from IPython.display import display
            if self.handle is None:
                self.handle = display({"text/plain": text}, raw=True, display_id=True)
            else:
                self.handle.update({"text/plain": text}, raw=True)
        elif self.tty:
            self.stream.write("\r" + text.ljust(len(self.shown)))
            self.stream.flush()
        self.shown = text

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and hasattr(shell, "kernel")


def run_sweep(cfg: SweepConfig, log=print) -> SweepResult:
    """Run every trial of the sweep that has not finished yet; see the module docstring.

    Phases: :func:`helpers.sweep.runs.plan_sweep` (every run's configuration checked, the subset
    carved), the study opened (retries of failed trials enqueued), the workers started and
    watched (:func:`_watch`), and :func:`_summarize` (table, plots, best configuration)."""
    t0 = time.time()
    plan = plan_sweep(cfg, log)
    study = open_study(plan.cfg, plan.sweep_dir, plan.planned, study_fingerprint(plan.cfg, plan.subset),
                       plan.eval_steps)
    retry_failed(study, everything=plan.cfg.retry_failed)
    total = len(plan.planned) or plan.cfg.num_samples
    before = [r for r in study_rows(study) if r["status"] in ("done", "pruned")]
    length = f"{plan.max_steps}" if plan.planned and plan.eval_steps else f"up to {plan.max_steps}"
    log(f"{_n(total, 'run')} planned ({plan.cfg.search} search), {length} steps each, on "
        f"{_n(plan.subset['train_rows'], 'training row')}, validated on {_n(plan.subset['val_rows'], 'row')}; "
        f"sweep folder {plan.sweep_dir}")
    if before:
        log(f"{_n(len(before), 'run')} finished before: "
            + ", ".join(f"trial {r['trial']} {r['status']}" for r in before))
    n = min(plan.cfg.workers, total - len(before))
    stopped = _watch(plan, study, n, t0, log) if n > 0 else None
    return _summarize(plan, study, {r["number"] for r in before}, stopped, t0, log)


def _n(count: int, word: str) -> str:
    """``1 run``, ``4 runs``: a count with its noun in the right number."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _gpu_slots() -> list[str]:
    """The GPUs a worker may be given (CUDA_VISIBLE_DEVICES entries, or 0..n-1); [] on a CPU."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [x for x in env.split(",") if x.strip()]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def start_workers(sweep_dir: Path, n: int, started: float) -> list[subprocess.Popen]:
    """``n`` worker processes on the sweep, each with its own GPU while there are enough (else they
    share them in turn) and its console in ``<sweep>/workers/worker-<i>.log``."""
    gpus = _gpu_slots()
    logs = SweepFiles(Path(sweep_dir)).workers
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(n):
        env = dict(os.environ, TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        else:
            env["LLAMA_KIT_SWEEP_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
        with open(logs / f"worker-{i}.log", "ab") as fh:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "helpers.sweep.worker", str(sweep_dir), "--parent", str(os.getpid()),
                 "--started", str(started)], stdout=fh, stderr=subprocess.STDOUT, env=env))
    return procs


def _progress(plan: SweepPlan, rows: list[dict], total: int, t0: float) -> str:
    """The live line: how many finished, each running trial's step and last validation loss, time."""
    done = sum(r["status"] in FINISHED for r in rows)
    parts = []
    for r in rows:
        if r["status"] != "running":
            continue
        worker = read_heartbeat(plan.sweep_dir, r["worker"]) if r.get("worker") else {}
        if worker and worker.get("trial") == r["number"] and worker.get("max_steps"):
            val = f" val {worker['eval_loss']:.3f}" if isinstance(worker.get("eval_loss"), float) else ""
            parts.append(f"trial {r['trial']} step {worker.get('step', 0)}/{worker['max_steps']}{val}")
        else:
            parts.append(f"trial {r['trial']} starting")
    return (f"{done}/{total} runs finished" + (": " + "; ".join(parts) if parts else "")
            + f" ({(time.time() - t0) / 60:.0f} min)")


def _watch(plan: SweepPlan, study, n: int, t0: float, log) -> str | None:
    """Start ``n`` workers and follow the study until they end: a line per finished trial, one live
    progress line. Interrupted (the stop button), the workers are stopped; their trials resume on
    the next run. Returns why the sitting ended early (the time budget), else None."""
    total = len(plan.planned) or plan.cfg.num_samples
    seen = {r["number"] for r in study_rows(study) if r["status"] in FINISHED}
    procs = start_workers(plan.sweep_dir, n, t0)
    con = Console() if log is print else None
    try:
        while True:
            running = [p for p in procs if p.poll() is None]
            rows = study_rows(study)
            for r in rows:
                if r["status"] in FINISHED and r["number"] not in seen:
                    seen.add(r["number"])
                    (con.line if con else log)(finished_line(r))
            if not running:
                break
            if con:
                con.progress(_progress(plan, rows, total, t0))
            time.sleep(0.5)
    except BaseException:
        _stop(procs)
        raise
    finally:
        if con:
            con.progress(_progress(plan, study_rows(study), total, t0))
            con.close()
    _check_exits(plan, procs)
    lost = [r for r in study_rows(study) if r["status"] == "failed" and r.get("lost") and "time budget" in r["lost"]]
    if lost or (plan.cfg.max_minutes_total and (time.time() - t0) / 60 >= plan.cfg.max_minutes_total):
        why = (f"sweep time budget of {plan.cfg.max_minutes_total} min reached; "
               f"{_n(total - sum(r['status'] in ('done', 'pruned') for r in study_rows(study)), 'run')} left: rerun "
               "to continue")
        log(why)
        return why
    return None


def _stop(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(15)


def _check_exits(plan: SweepPlan, procs: list) -> None:
    """A worker that stopped on a configuration, data or model error: raise it here with its message."""
    for i, p in enumerate(procs):
        if p.returncode == 2:
            text = (SweepFiles(plan.sweep_dir).workers / f"worker-{i}.log").read_text(errors="replace")
            lines = [ln for ln in text.splitlines() if ln.strip()]
            raise ConfigError(lines[-1] if lines else f"worker {i} stopped with an error")


def _summarize(plan: SweepPlan, study, before: set, stopped: str | None, t0: float, log) -> SweepResult:
    """The results (results.jsonl as a view of the study, Markdown, CSV), the plots and the best run's
    configuration."""
    cfg, sweep_dir = plan.cfg, plan.sweep_dir
    rows = study_rows(study)
    table = results_table(rows)
    write_results(sweep_dir, rows)
    if rows:
        (sweep_dir / "results.md").write_text(table_markdown(table))
        table.to_csv(sweep_dir / "results.csv", index=False)
    plots = plot_sweep(rows, plan.plots_dir, cfg.name)
    if cfg.search != "grid" or cfg.runs:
        plots += plot_optuna(study, plan.plots_dir, cfg.name)
    best = best_run(rows)
    best_path: Path | None = SweepFiles(sweep_dir).best
    best_cfg = write_best_config(cfg, best, best_path) if best else None
    if not best:
        best_path = None
    count = {s: sum(r["status"] == s for r in rows) for s in FINISHED}
    trained = [r["number"] for r in rows if r["status"] in FINISHED and r["number"] not in before]
    log(f"Sweep finished: {count['done']} done, {count['pruned']} pruned, {count['failed']} failed; "
        f"{len(trained)} trained in this sitting ({(time.time() - t0) / 60:.1f} min)"
        + ("" if best else "; no run finished with a validation loss, so no best configuration"))
    return SweepResult(sweep_dir, rows, table, plots, best_cfg, best_path, trained, sorted(before), stopped)


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.sweep.runner [sweep.json]``: fields from the file, then the environment."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print(SweepConfig().describe(full=True))
        return 0
    params = {k.upper(): v for k, v in json.loads(Path(argv[0]).read_text()).items()} if argv else {}
    cfg = SweepConfig.from_params(params)
    if not cfg.dataset_path:
        cfg = cfg.replace(dataset_path=str(chitchat("train")))
    print(cfg.describe())
    res = run_sweep(cfg)
    print(table_markdown(res.table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
