"""Hyperparameter sweeps (notebook 07): many short training runs on one fixed subset, compared fairly.

``run_sweep(SweepConfig(...))`` expands a grid (every combination), a random search (draws from
lists or ranges) or an explicit list of configurations into runs of :func:`helpers.train.train`,
the same entry point as notebook 04, and writes into the sweep folder::

    <sweep>/data/train.jsonl, val.jsonl  the subset, carved once: every run trains on the same rows
                                         in the same order and validates on the same held-out rows
    <sweep>/runs/<name>/                 one training run (helpers.common.run.RunDir: adapter, run.json,
                                         log_history.json)
    <sweep>/results.jsonl                one row per finished run: status done / pruned / failed + reason
    <sweep>/results.md, results.csv      the results table
    <sweep>/best_config.json             the best run's settings; ``load_best_config`` reads it for notebook 04
    <plots>/<name>_<hyperparameter>.png  loss curves of runs that differ only in that hyperparameter

Fair comparison: the subset and its validation rows are fixed (:mod:`helpers.sweep.subset`; a
rerun with another subset is refused), every run has the same seed, so the same data order and
LoRA initialisation, and every run gets an explicit step count (``max_steps``), so warm-up and
decay are comparable. The loss is the mean over trained tokens of the whole optimizer step: the
installed trainer divides by the number of trained tokens across all gradient-accumulation
micro-batches (``num_items_in_batch``), so ``batch 4 x accumulation 1`` and ``1 x 4`` give the
same curve (tests/sweep/test_runner.py checks it on the embedded model).

Resumable: a rerun skips runs that finished (done or pruned with the same settings), resumes a
run that was killed from its newest complete checkpoint, and redoes it when none was written.
Budgeted: ``max_steps_per_run`` is each run's length (it caps runs whose BASE or GRID gives
epochs or max_steps), ``max_minutes_per_run`` caps each run's time, ``max_minutes_total`` the
sweep's in this sitting (a run cut by it is resumed on the next rerun), and
``prune_after_evals`` stops runs whose validation loss is clearly behind the best finished run at
the same step.
"""
from __future__ import annotations

import gc
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.checkpoints import checkpoint_dirs, resume_point
from helpers.common.models import ModelLoadError, default_model_name
from helpers.common.resources import chitchat
from helpers.common.run import RunDir
from helpers.core.config import ConfigError
from helpers.core.files import SweepFiles
from helpers.core.jsonl import DataError
from helpers.sweep.config import SweepConfig, check_base, expand_runs
from helpers.sweep.curves import eval_curve, per_epoch
from helpers.sweep.plots import plot_sweep
from helpers.sweep.plots import run_history as _history
from helpers.sweep.results import (best_run, read_results, results_table, table_markdown, write_best_config,
                                   write_results)
from helpers.sweep.runs import build_run_config, fingerprint
from helpers.sweep.subset import prepare_subset
from helpers.sweep.watch import make_watch
from helpers.train import train



@dataclass
class SweepResult:
    """What :func:`run_sweep` returns: every run's results row, the table, the plots and the best settings."""
    sweep_dir: Path  # the sweep folder
    rows: list  # results.jsonl rows of every run of the sweep (this sitting and earlier ones)
    table: Any  # pandas DataFrame of the rows, best first
    plots: list  # PNG files written
    best: dict | None  # best_config.json content (None when no run finished with a validation loss)
    best_path: Path | None
    trained: list  # run names trained in this call
    skipped: list  # run names skipped because they had finished before
    stopped: str | None = None  # why the sweep stopped before its last run (a budget), else None


@dataclass
class SweepPlan:
    """The sweep ready to run: its config (with the model filled in), folders, fixed subset and runs."""
    cfg: SweepConfig
    sweep_dir: Path
    plots_dir: Path
    subset: dict  # prepare_subset's record of the fixed training and validation rows
    runs: list  # [(params, TrainConfig)] in order


def _free_memory() -> None:
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def run_sweep(cfg: SweepConfig, log=print) -> SweepResult:
    """Run every configuration of the sweep that has not finished yet; see the module docstring.

    Phases: :func:`_plan_sweep` (every run's configuration checked, the subset carved),
    :func:`_run_one` for each run (skip, resume or start it; its status), and :func:`_summarize`
    (table, plots, best configuration)."""
    t0 = time.time()
    plan = _plan_sweep(cfg, log)
    results = read_results(plan.sweep_dir)
    trained, skipped, stopped = [], [], None
    n = len(plan.runs)
    for i, (params, tc) in enumerate(plan.runs, 1):
        outcome, stopped = _run_one(plan.cfg, params, tc, plan.subset, results, plan.sweep_dir, t0, f"[{i}/{n}] ",
                                    n - i + 1, log)
        (skipped if outcome == "skipped" else trained if outcome == "trained" else []).append(tc.run_name)
        if stopped:
            break
    return _summarize(plan, results, trained, skipped, stopped, t0, log)


def _plan_sweep(cfg: SweepConfig, log) -> SweepPlan:
    """The sweep's plan (config with its model, folders, subset, runs): bad names and values fail
    before any data or model work, then the subset is carved (or reused)."""
    cfg.validate()
    configs = expand_runs(cfg)
    check_base(cfg)
    if not cfg.model_name:
        cfg = cfg.replace(model_name=default_model_name())
    sweep_dir = cfg.sweep_dir()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = Path(cfg.plots_dir) if cfg.plots_dir else sweep_dir / "plots"
    for params in configs:  # every run's TrainConfig is valid before any data or model work
        build_run_config(cfg, params, sweep_dir, {"train_rows": cfg.subset_size, "train_path": "", "val_path": ""})
    subset = prepare_subset(cfg, sweep_dir, log)
    plan = [(params, build_run_config(cfg, params, sweep_dir, subset)) for params in configs]
    cfg.save(sweep_dir / "sweep_config.json")
    steps = {tc.max_steps for _, tc in plan}
    length = str(plan[0][1].max_steps) if len(steps) == 1 else f"up to {max(steps)}"
    log(f"Sweep {cfg.name}: {len(plan)} runs of {length} steps on {subset['train_rows']} training rows, validated on "
        f"{subset['val_rows']} rows; results in {sweep_dir}")
    return SweepPlan(cfg, sweep_dir, plots_dir, subset, plan)


def _resume_choice(run: RunDir, tc, fp: str, prev: dict | None):
    """(checkpoint to resume or None, how the run starts): a run folder or results row with other
    settings starts over; a killed run resumes from its newest checkpoint that verifies, the same
    choice ``train`` makes with RESUME='auto'."""
    marked = run.get("sweep")
    stale = ((marked is not None and marked.get("fingerprint") != fp)
             or (prev is not None and prev.get("fingerprint") != fp))
    local, durable = checkpoint_dirs(tc.checkpoint_dir, run)
    ckpt = None if stale else resume_point("auto", local, durable, log=lambda *a: None)
    how = (f"resuming from {ckpt.name}" if ckpt else
           ("settings changed: starting over" if stale else
            ("redoing (killed before its first checkpoint)" if marked is not None else "starting")))
    return ckpt, how


def _run_one(cfg: SweepConfig, params: dict, tc, subset: dict, results: dict, sweep_dir: Path, t0: float,
             tag: str, left: int, log) -> tuple[str, str | None]:
    """Train one run of the sweep unless it finished before; its results row is written. Returns
    ("skipped" | "trained" | "not started", why the sweep's time budget ends the sitting or None)."""
    name, fp = tc.run_name, fingerprint(tc, subset)
    prev = results.get(name)
    if prev and prev.get("fingerprint") == fp and (prev["status"] in ("done", "pruned")
                                                   or (prev["status"] == "failed" and not cfg.retry_failed)):
        log(f"{tag}{name}: {prev['status']} before ({prev.get('reason', '')}), skipped")
        return "skipped", None
    elapsed = (time.time() - t0) / 60
    if cfg.max_minutes_total and elapsed >= cfg.max_minutes_total:
        stopped = (f"sweep time budget of {cfg.max_minutes_total} min reached after {elapsed:.1f} min; "
                   f"{left} run(s) left: rerun to continue")
        log(stopped)
        return "not started", stopped
    run = RunDir(tc.output_dir)
    ckpt, how = _resume_choice(run, tc, fp, prev)
    run.update("sweep", {"fingerprint": fp, "params": params, "started": time.time()})
    left_total = (cfg.max_minutes_total - elapsed) if cfg.max_minutes_total else 0
    limits = [m for m in (cfg.max_minutes_per_run, left_total) if m]
    limit = min(limits) if limits else 0.0
    by_sweep_budget = bool(cfg.max_minutes_total) and (not cfg.max_minutes_per_run or limit < cfg.max_minutes_per_run)
    tc = tc.replace(resume="auto" if ckpt else "never", max_time_minutes=round(limit, 4))
    log(f"{tag}{name}: {how}, {tc.max_steps} steps" + (f", at most {limit:.1f} min" if limit else ""))
    # the best finished run so far is the reference for pruning
    ref_row = best_run(list(results.values()))
    watch = make_watch(eval_curve(_history(ref_row)) if ref_row else {}, cfg.prune_after_evals, cfg.prune_margin)
    base_row = {"name": name, "params": params, "fingerprint": fp, "run_dir": str(run.path),
                "target_steps": tc.max_steps, "train_config": tc.to_dict()}
    try:
        res = train(tc, log=log, callbacks=[watch])
    except (ConfigError, DataError, ModelLoadError) as exc:
        results[name] = dict(base_row, status="failed", reason=f"{type(exc).__name__}: {exc}"[:500],
                             finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        write_results(sweep_dir, results)
        raise
    except Exception as exc:  # a run that breaks (out of memory, ...) is recorded; the sweep goes on
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        if "out of memory" in msg.lower():
            msg += " (lower per_device_batch_size or max_seq_len, or raise gradient_accumulation_steps)"
        log(f"{tag}{name}: FAILED: {msg}")
        results[name] = dict(base_row, status="failed", reason=msg, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        write_results(sweep_dir, results)
        _free_memory()
        return "trained", None
    m = res.metrics
    status, reason = _status(tc, m, watch)
    if status == "stopped":  # the sweep's budget, not the run's: checkpointed, resumed on the next rerun
        if by_sweep_budget:
            stopped = (f"sweep time budget of {cfg.max_minutes_total} min reached during {name} at step {m['steps']}; "
                       "it is checkpointed: rerun to continue")
            log(stopped)
            _free_memory()
            return "trained", stopped
        status, reason = "done", f"time budget of {cfg.max_minutes_per_run} min reached at step {m['steps']}"
    finite = _finite(m.get("eval_loss")) and (m.get("train_loss") is None or _finite(m["train_loss"]))
    if status == "done" and not finite:
        status, reason = "failed", f"diverged: train loss {m.get('train_loss')}, validation loss {m.get('eval_loss')}"
    curve = {s: v for s, v in eval_curve(res.log_history).items() if s > 0}
    results[name] = dict(
        base_row, status=status, reason=reason, steps=m["steps"], epochs=m["epochs"], train_loss=m["train_loss"],
        eval_loss=m["eval_loss"], best_eval_loss=round(min(curve.values()), 4) if curve else m["eval_loss"],
        start_eval_loss=m.get("start_eval_loss"), train_seconds=m["train_seconds"],
        tokens_seen=m["tokens_seen"], tokens_per_second=m["tokens_per_second"],
        peak_memory_gib=m["peak_memory_gib"], resumed_from=m["resumed_from"],
        per_epoch=per_epoch(res.log_history), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    write_results(sweep_dir, results)
    log(f"{tag}{name}: {status}, validation loss {m['eval_loss']} ({reason})")
    _free_memory()
    return "trained", None


def _status(tc, m: dict, watch) -> tuple[str, str]:
    """Why a run that trained without error ended: pruned, done (its steps, early stopping), or
    "stopped" by a time budget (the caller tells the run's budget from the sweep's)."""
    steps = m["steps"]
    if watch.pruned:
        return "pruned", watch.pruned["reason"]
    if steps >= tc.max_steps:
        return "done", f"{steps} steps ({m['epochs']} epochs)"
    if watch.time_stop is not None:
        return "stopped", ""
    if tc.early_stopping_patience:
        return "done", f"early stopping at step {steps}"
    return "done", f"stopped at step {steps}"


def _summarize(plan: SweepPlan, results: dict, trained: list, skipped: list, stopped: str | None, t0: float,
               log) -> SweepResult:
    """The results table (Markdown and CSV), the overlay plots and the best run's configuration."""
    cfg, sweep_dir, plots_dir = plan.cfg, plan.sweep_dir, plan.plots_dir
    rows = [results[tc.run_name] for _, tc in plan.runs if tc.run_name in results]
    table = results_table(rows)
    if rows:
        (sweep_dir / "results.md").write_text(table_markdown(table))
        table.to_csv(sweep_dir / "results.csv", index=False)
    plots = plot_sweep(rows, plots_dir, cfg.name)
    best = best_run(rows)
    best_path: Path | None = SweepFiles(sweep_dir).best
    best_cfg = None
    if best:
        best_cfg = write_best_config(cfg, best, best_path)
        log(f"Best run: {best['name']} (validation loss {best['eval_loss']}); its settings are in {best_path}")
    else:
        best_path = None
        log("No run finished with a validation loss: no best configuration written.")
    log(f"Sweep {cfg.name}: {len(trained)} run(s) trained now, {len(skipped)} skipped (finished before), "
        f"{len(plots)} plot(s) in {plots_dir} ({(time.time() - t0) / 60:.1f} min)")
    return SweepResult(sweep_dir, rows, table, plots, best_cfg, best_path, trained, skipped, stopped)


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.sweep.runner [sweep.json]``: fields from the file, then the environment."""
    import sys
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
