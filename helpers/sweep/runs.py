"""One run of a sweep: its TrainConfig (defaults < BASE < the sweep's fields < the run's values,
on the fixed subset, with the sweep's step budget) and the fingerprint that tells a finished run
with the same settings from one to redo."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from helpers.sweep.config import SWEEP_LEVEL, SweepConfig, check_base
from helpers.sweep.curves import run_name
from helpers.train import TrainConfig


def steps_for(tc, n_train: int) -> int:
    """Optimizer steps of a run: its max_steps, else its epochs over ``n_train`` rows."""
    if tc.max_steps > 0:
        return tc.max_steps
    micro = math.ceil(n_train / tc.per_device_batch_size)
    per_epoch = max(1, math.ceil(micro / tc.gradient_accumulation_steps))
    return max(1, math.ceil(per_epoch * tc.num_train_epochs))


def build_run_config(cfg: SweepConfig, params: dict, sweep_dir: Path, subset: dict):
    """The TrainConfig of one run: TrainConfig defaults < sweep defaults < BASE < sweep fields < run values."""
    base = check_base(cfg)
    values: dict[str, Any] = {"report_to": "none", "save_total_limit": 2}
    values.update(base)
    values.update({k: getattr(cfg, k) for k in SWEEP_LEVEL})
    values.update(params)
    name = run_name(params)
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
