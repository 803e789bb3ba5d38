"""The sweep's plan and one run of it: the plan (every planned run's configuration checked, the
fixed subset carved), a run's TrainConfig (defaults < BASE < the sweep's fields < the run's values,
on the fixed subset, with the sweep's step budget) and the fingerprint of its settings."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.models import default_model_name
from helpers.sweep.config import SWEEP_LEVEL, SweepConfig, check_base, expand_runs
from helpers.sweep.curves import run_name
from helpers.sweep.subset import prepare_subset
from helpers.train import TrainConfig


@dataclass
class SweepPlan:
    """The sweep ready to run: its config (with the model filled in), folders, fixed subset and runs."""
    cfg: SweepConfig
    sweep_dir: Path
    plots_dir: Path
    subset: dict  # prepare_subset's record of the fixed training and validation rows
    planned: list  # the planned runs' hyperparameters (a grid or RUNS), in order; [] for a random or tpe search
    eval_steps: int  # steps between validations (the smallest of the runs): pruning starts from a multiple of it
    max_steps: int  # the longest run's steps


def _probe(cfg: SweepConfig) -> dict:
    """One configuration a random or tpe search can draw (each field's first value or low bound)."""
    return {k: (v[0] if isinstance(v, list) else next(iter(v.values()))[0]) for k, v in cfg.grid.items()}


def plan_sweep(cfg: SweepConfig, log=print) -> SweepPlan:
    """The sweep's plan: bad names and values fail before any data or model work, then the subset
    is carved (or reused) and the config saved in the sweep folder (``sweep_config.json``, which
    every worker reads)."""
    cfg.validate()
    planned = expand_runs(cfg)
    check_base(cfg)
    if not cfg.model_name:
        cfg = cfg.replace(model_name=default_model_name())
    sweep_dir = cfg.sweep_dir()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = Path(cfg.plots_dir) if cfg.plots_dir else sweep_dir / "plots"
    probes = planned or [_probe(cfg)]
    for params in probes:  # every run's TrainConfig is valid before any data or model work
        build_run_config(cfg, params, sweep_dir, {"train_rows": cfg.subset_size, "train_path": "", "val_path": ""})
    subset = prepare_subset(cfg, sweep_dir, log)
    tcs = [build_run_config(cfg, params, sweep_dir, subset) for params in probes]
    cfg.save(sweep_dir / "sweep_config.json")
    return SweepPlan(cfg, sweep_dir, plots_dir, subset, planned, min(tc.eval_steps for tc in tcs),
                     max(tc.max_steps for tc in tcs))


def steps_for(tc, n_train: int) -> int:
    """Optimizer steps of a run: its max_steps, else its epochs over ``n_train`` rows."""
    if tc.max_steps > 0:
        return tc.max_steps
    micro = math.ceil(n_train / tc.per_device_batch_size)
    per_epoch = max(1, math.ceil(micro / tc.gradient_accumulation_steps))
    return max(1, math.ceil(per_epoch * tc.num_train_epochs))


def build_run_config(cfg: SweepConfig, params: dict, sweep_dir: Path, subset: dict, name: str = ""):
    """The TrainConfig of one run (in ``<sweep>/runs/<name>``, by default named from its values):
    TrainConfig defaults < sweep defaults < BASE < sweep fields < run values."""
    base = check_base(cfg)
    values: dict[str, Any] = {"report_to": "none", "save_total_limit": 2}
    values.update(base)
    values.update({k: getattr(cfg, k) for k in SWEEP_LEVEL})
    values.update(params)
    name = name or run_name(params)
    tc = TrainConfig(**values)
    if "max_steps" in values or "num_train_epochs" in values or cfg.max_steps_per_run <= 0:
        steps = steps_for(tc, subset["train_rows"])  # the run's own length, capped by the budget
        if cfg.max_steps_per_run > 0:
            steps = min(steps, cfg.max_steps_per_run)
    else:
        steps = cfg.max_steps_per_run  # no length given: the budget is the length
    eval_steps = base.get("eval_steps") or params.get("eval_steps") or max(1, steps // cfg.evals_per_run)
    tc = TrainConfig(**dict(
        values, max_steps=steps, eval_steps=eval_steps,
        save_steps=params.get("save_steps") or base.get("save_steps") or eval_steps,
        logging_steps=params.get("logging_steps") or base.get("logging_steps") or max(1, steps // 100),
        output_dir=str(sweep_dir / "runs" / name), run_name=name,
        checkpoint_dir=str(Path(cfg.checkpoint_dir) / name) if cfg.checkpoint_dir else "",
        dataset_path=subset["train_path"], eval_path=subset["val_path"], eval_fraction=0.0, max_rows=0,
        num_shards=1, shard_index=-1, merge=False, resume="auto", max_time_minutes=0.0))
    tc.validate()
    return tc


def fingerprint(tc, subset: dict) -> str:
    """What makes two runs the same run: every setting but where files go and how it is resumed."""
    d = {k: v for k, v in tc.to_dict().items()
         if k not in ("output_dir", "checkpoint_dir", "run_name", "resume", "max_time_minutes", "report_to")}
    d["subset"] = [subset.get("train_sha256"), subset.get("val_sha256")]
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
