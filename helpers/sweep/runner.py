"""Hyperparameter sweeps (notebook 07): many short training runs on one fixed subset, compared fairly.

``run_sweep(SweepConfig(...))`` expands a grid (every combination), a random search (draws from
lists or ranges) or an explicit list of configurations into runs of :func:`helpers.train.loop.train`,
the same entry point as notebook 04, and writes into the sweep folder::

    <sweep>/data/train.jsonl, val.jsonl  the subset, carved once: every run trains on the same rows
                                         in the same order and validates on the same held-out rows
    <sweep>/runs/<name>/                 one training run (helpers.common.run.RunDir: adapter, run.json, log_history.json)
    <sweep>/results.jsonl                one row per finished run: status done / pruned / failed + reason
    <sweep>/results.md, results.csv      the results table
    <sweep>/best_config.json             the best run's settings; ``load_best_config`` reads it for notebook 04
    <plots>/<name>_<hyperparameter>.png  loss curves of runs that differ only in that hyperparameter

Fair comparison: the subset and its validation rows are fixed (``subset.json`` records them; a
rerun with another subset is refused), every run has the same seed, so the same data order and
LoRA initialisation, and every run gets an explicit step count (``max_steps``), so warm-up and
decay are comparable. The loss is the mean over trained tokens of the whole optimizer step: the
installed trainer divides by the number of trained tokens across all gradient-accumulation
micro-batches (``num_items_in_batch``), so ``batch 4 x accumulation 1`` and ``1 x 4`` give the
same curve (tests/test_sweep.py checks it on the embedded model).

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
import hashlib
import itertools
import json
import math
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.common.checkpoints import checkpoint_dirs, resume_point
from helpers.common.models import ModelLoadError, default_model_name
from helpers.common.resources import chitchat
from helpers.common.rows import row_hash, validate_rows
from helpers.common.run import RunDir
from helpers.core.config import ConfigError, StepConfig, coerce_field, field_types, unknown_field
from helpers.core.jsonl import DataError, read_jsonl, write_jsonl
from helpers.sweep.curves import eval_curve, per_epoch, reference_at, run_name
from helpers.sweep.plots import plot_sweep
from helpers.sweep.plots import run_history as _history
from helpers.train import TrainConfig, train

# TrainConfig fields the sweep sets itself for every run (per run folder, the fixed subset, resume).
SET_BY_SWEEP = {
    "output_dir": "each run gets <sweep>/runs/<name>",
    "checkpoint_dir": "set CHECKPOINT_DIR of the sweep",
    "run_name": "the run name is made from its hyperparameter values",
    "dataset_path": "set DATASET_PATH of the sweep: the subset is drawn from it",
    "eval_path": "the validation rows are carved once from DATASET_PATH (EVAL_SIZE)",
    "eval_fraction": "use EVAL_SIZE of the sweep",
    "max_rows": "use SUBSET_SIZE of the sweep",
    "resume": "the sweep resumes killed runs itself",
    "num_shards": "a sweep run is a single sitting",
    "shard_index": "a sweep run is a single sitting",
    "max_time_minutes": "use MAX_MINUTES_PER_RUN of the sweep",
    "merge": "merge the best adapter in notebook 04/06",
    "text_sources": "notebook 03 gathers its corpus into DATASET_PATH; give the sweep DATASET_PATH",
    "use_sweep_best": "it is notebook 04's switch to read a sweep's best configuration",
}
# TrainConfig fields that are fields of the sweep too: give them there, not in BASE (GRID may vary them).
SWEEP_LEVEL = ("model_name", "mode", "quantization", "max_seq_len", "seed")
# Run mechanics: not hyperparameters, so not part of the best configuration handed to notebook 04.
MECHANICS = {"logging_steps", "eval_steps", "save_steps", "save_total_limit", "report_to", "max_steps",
             "num_train_epochs", "early_stopping_patience", "gradient_checkpointing"}
DISTRIBUTIONS = ("choice", "uniform", "log_uniform", "int_uniform")
STATUSES = ("done", "pruned", "failed")


@dataclass
class SweepConfig(StepConfig, notebooks=("07",)):
    """A hyperparameter sweep: which runs, on which subset, within which budget."""
    name: str = "sweep"  # sweep folder under the outputs folder, and its plots' prefix (use a new name for other data or model)
    output_dir: str = ""  # the sweep folder ("" = outputs/<name>; notebooks pass ws.out(name))
    plots_dir: str = ""  # where the overlay plots go ("" = <sweep folder>/plots; notebooks pass ws.plots_dir)
    checkpoint_dir: str = ""  # fast local disk for checkpoints while training ("" = inside each run folder)
    model_name: str = ""  # base model of every run; "" = Llama-3.2-1B-Instruct on a GPU, else embedded SmolLM2-135M
    dataset_path: str = ""  # JSONL the fixed subset is drawn from; "" = notebook 02's dataset (needs 20 rows), else bundled chats
    mode: str = "sft"  # "sft" or "pretrain", as in TrainConfig
    quantization: str = "auto"  # "4bit" (QLoRA), "8bit", "16bit", "none" (fp32); "auto" = 4bit on a GPU, fp32 on a CPU
    max_seq_len: int = 512  # tokens per example
    grid: dict = field(default_factory=dict)  # JSON {"field": [values]}: every combination (SEARCH="random": values to draw)
    runs: list = field(default_factory=list)  # explicit configurations [{"field": value}, ...], run as listed (instead of GRID)
    search: str = "grid"  # "grid": every combination of GRID; "random": NUM_SAMPLES draws (GRID may give {"log_uniform": [lo, hi]})
    num_samples: int = 8  # random search: how many configurations to draw
    search_seed: int = 0  # random search: seed of the draws
    base: dict = field(default_factory=dict)  # JSON: TrainConfig settings shared by every run, e.g. {"lora_alpha": 32}
    subset_size: int = 1000  # training rows of the fixed subset (the same rows, same order, for every run)
    eval_size: int = 100  # validation rows carved once from the dataset, never trained on
    subset_seed: int = 42  # seed of the subset draw
    seed: int = 42  # training seed of every run: LoRA init, data order, dropout
    max_steps_per_run: int = 200  # steps of each run; caps num_train_epochs/max_steps given in BASE or GRID (-1 = their epochs)
    max_minutes_per_run: float = 0.0  # time budget of each run (0 = none)
    max_minutes_total: float = 0.0  # time budget of the whole sweep in this sitting (0 = none); rerun to go on
    evals_per_run: int = 10  # validation points per run (sets eval_steps unless BASE gives it)
    prune_after_evals: int = 0  # stop a run clearly behind the best finished run after this many evaluations (0 = never)
    prune_margin: float = 0.1  # "clearly behind": validation loss this fraction above the best run's at the same step (0.1 = 10%)
    retry_failed: bool = True  # rerun runs that failed last time (done and pruned runs are always skipped)

    @classmethod
    def notebook_defaults(cls) -> dict[str, dict[str, Any]]:
        # Notebook 07 starts from a real sweep (a 3x2 grid, pruning on); the dataclass's run
        # budget (200 steps, no pruning) is what `python -m helpers.sweep.runner` and code get.
        return {"07": dict(grid={"learning_rate": [1e-4, 2e-4, 5e-4], "lora_r": [8, 32]},
                           base={"per_device_batch_size": 4, "gradient_accumulation_steps": 4, "lora_alpha": 16},
                           max_steps_per_run=150, prune_after_evals=3)}

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        return dict(model_name="embedded/smollm2-135m-instruct", quantization="none", max_seq_len=128,
                    grid={"learning_rate": [3e-3, 1e-5], "lora_r": [4, 8]}, runs=[], search="grid",
                    subset_size=12, eval_size=4, max_steps_per_run=3, evals_per_run=3, max_minutes_per_run=0.0,
                    prune_after_evals=1, prune_margin=0.02,
                    base={"per_device_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1, "save_steps": 3,
                          "gradient_checkpointing": False, "warmup_ratio": 0.0, "report_to": "none"})

    def validate(self) -> None:
        if self.search not in ("grid", "random"):
            raise ConfigError(f"SEARCH={self.search!r}: use 'grid' (every combination) or 'random'.")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.name or ""):
            raise ConfigError(f"NAME={self.name!r}: use letters, digits, '.', '_' or '-' (it names a folder).")
        if not isinstance(self.grid, dict):
            raise ConfigError(f"GRID must be a JSON object {{field: [values]}}, got {type(self.grid).__name__}.")
        if not isinstance(self.runs, list) or not all(isinstance(r, dict) for r in self.runs):
            raise ConfigError("RUNS must be a JSON list of objects, e.g. [{\"lora_r\": 8}, {\"lora_r\": 16}].")
        if not isinstance(self.base, dict):
            raise ConfigError(f"BASE must be a JSON object of TrainConfig fields, got {type(self.base).__name__}.")
        if self.subset_size < 1:
            raise ConfigError(f"SUBSET_SIZE={self.subset_size}: must be at least 1.")
        if self.eval_size < 1:
            raise ConfigError(f"EVAL_SIZE={self.eval_size}: a sweep compares validation losses; hold out at least 1 row.")
        if self.max_steps_per_run == 0 or self.max_steps_per_run < -1:
            raise ConfigError(f"MAX_STEPS_PER_RUN={self.max_steps_per_run}: a positive step count, or -1 for none.")
        for name in ("max_minutes_per_run", "max_minutes_total", "prune_margin"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.upper()}={getattr(self, name)}: must not be negative.")
        if self.evals_per_run < 1:
            raise ConfigError(f"EVALS_PER_RUN={self.evals_per_run}: must be at least 1.")
        if self.search == "random" and self.num_samples < 1:
            raise ConfigError(f"NUM_SAMPLES={self.num_samples}: a random search needs at least 1 draw.")

    def sweep_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("outputs") / self.name


@dataclass
class SweepResult:
    sweep_dir: Path  # the sweep folder
    rows: list  # results.jsonl rows of every run of the sweep (this sitting and earlier ones)
    table: Any  # pandas DataFrame of the rows, best first
    plots: list  # PNG files written
    best: dict | None  # best_config.json content (None when no run finished with a validation loss)
    best_path: Path | None
    trained: list  # run names trained in this call
    skipped: list  # run names skipped because they had finished before
    stopped: str | None = None  # why the sweep stopped before its last run (a budget), else None


# ----------------------------------------------------------------------------------------------
# Which runs
# ----------------------------------------------------------------------------------------------
def _train_hints() -> dict[str, Any]:
    return field_types(TrainConfig)


def _check_field(name: str, where: str, hints: dict) -> None:
    if name not in hints:
        raise unknown_field(TrainConfig, name, where)
    if name in SET_BY_SWEEP:
        raise ConfigError(f"{where} sets {name!r}, which the sweep sets itself: {SET_BY_SWEEP[name]}.")


def _coerce_value(name: str, value: Any, hints: dict, where: str) -> Any:
    """A grid/base value converted to the TrainConfig field's type, or a clear ConfigError
    (helpers.core.config.coerce_field: the one conversion of the kit)."""
    return coerce_field(TrainConfig, name, value, where)


def _sig3(x: float) -> float:
    return float(f"{x:.3g}")


def _draw(name: str, spec: Any, rng: random.Random, hints: dict) -> Any:
    if isinstance(spec, list):
        return rng.choice(spec)
    kind = next(iter(spec))
    args = spec[kind]
    if kind == "choice":
        return rng.choice(args)
    lo, hi = args
    if kind == "uniform":
        return _sig3(rng.uniform(lo, hi))
    if kind == "log_uniform":
        return _sig3(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return rng.randint(int(lo), int(hi))  # int_uniform


def _check_spec(name: str, spec: Any, search: str) -> None:
    where = f"GRID[{name!r}]"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where} is an empty list: give at least one value.")
        return
    if search == "random" and isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
        kind, args = next(iter(spec.items()))
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise ConfigError(f"{where}: 'choice' needs a non-empty list of values.")
            return
        if (not isinstance(args, list) or len(args) != 2 or not all(isinstance(a, (int, float)) for a in args)
                or args[0] > args[1]):
            raise ConfigError(f"{where}: {kind!r} needs [low, high] with low <= high, got {args!r}.")
        if kind == "log_uniform" and args[0] <= 0:
            raise ConfigError(f"{where}: 'log_uniform' needs positive bounds, got {args!r}.")
        return
    if search == "random":
        raise ConfigError(f"{where}={spec!r}: give a list of values or one of "
                          + ", ".join(f'{{"{d}": ...}}' for d in DISTRIBUTIONS) + ".")
    raise ConfigError(f"{where}={spec!r}: a grid needs a list of values, e.g. [1e-4, 2e-4]; put a fixed value "
                      f"in BASE instead.")


def expand_runs(cfg: SweepConfig) -> list[dict]:
    """The hyperparameters of every run, in order: ``[{"learning_rate": 1e-4, "lora_r": 8}, ...]``.

    Every name is checked against TrainConfig and every value converted to the field's type, so a
    typo fails here, before any model is loaded."""
    hints = _train_hints()
    if cfg.runs and cfg.grid:
        raise ConfigError("Give either GRID (combinations or random draws) or RUNS (an explicit list), not both.")
    if cfg.runs:
        configs = [dict(r) for r in cfg.runs]
        if any(not r for r in configs):
            raise ConfigError("RUNS holds an empty configuration {}: every entry needs at least one field.")
    else:
        if not cfg.grid:
            raise ConfigError('GRID is empty: give at least one TrainConfig field with a list of values, e.g. '
                              '{"learning_rate": [1e-4, 2e-4], "lora_r": [8, 16]}.')
        for name, spec in cfg.grid.items():
            _check_field(name, "GRID", hints)
            _check_spec(name, spec, cfg.search)
        names = list(cfg.grid)
        if cfg.search == "grid":
            configs = [dict(zip(names, combo)) for combo in itertools.product(*(cfg.grid[n] for n in names))]
        else:
            rng = random.Random(cfg.search_seed)
            configs, seen = [], set()
            for _ in range(cfg.num_samples * 50):
                c = {n: _draw(n, cfg.grid[n], rng, hints) for n in names}
                key = json.dumps(c, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    configs.append(c)
                if len(configs) == cfg.num_samples:
                    break
            if len(configs) < cfg.num_samples:
                print(f"Random search: only {len(configs)} distinct configurations exist in GRID "
                      f"(NUM_SAMPLES={cfg.num_samples}); running those.")
    out, seen_names = [], {}
    for i, c in enumerate(configs):
        where = f"RUNS[{i}]" if cfg.runs else "GRID"
        for name in c:
            _check_field(name, where, hints)
        conv = {n: _coerce_value(n, v, hints, where) for n, v in c.items()}
        name = run_name(conv)
        if name in seen_names:
            raise ConfigError(f"{where}: configuration {conv} appears twice (run {name!r}).")
        seen_names[name] = i
        out.append(conv)
    return out


# ----------------------------------------------------------------------------------------------
# The fixed subset
# ----------------------------------------------------------------------------------------------
def prepare_subset(cfg: SweepConfig, sweep_dir: Path, log=print) -> dict:
    """Carve the training subset and the validation rows once; reuse them on every rerun.

    Rows that cannot be trained on are left out first; training rows identical to a validation
    row are dropped, so the validation set is never trained on."""
    if not cfg.dataset_path:
        raise DataError("DATASET_PATH is empty: point it at a JSONL dataset (notebook 02's train.jsonl, "
                        "or helpers.dataset.build.default_dataset(ws)).")
    src = Path(cfg.dataset_path)
    if not src.exists():
        raise DataError(f"Dataset file {str(src)!r} does not exist.")
    data_dir = sweep_dir / "data"
    meta_path = data_dir / "subset.json"
    sig = {"dataset_path": str(src.resolve()), "dataset_sha256": hashlib.sha256(src.read_bytes()).hexdigest()[:16],
           "subset_size": cfg.subset_size, "eval_size": cfg.eval_size, "subset_seed": cfg.subset_seed,
           "mode": cfg.mode}
    train_p, val_p = data_dir / "train.jsonl", data_dir / "val.jsonl"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("signature") != sig:
            diff = {k: (meta.get("signature", {}).get(k), v) for k, v in sig.items()
                    if meta.get("signature", {}).get(k) != v}
            raise ConfigError(
                f"{sweep_dir} holds a sweep on another subset ("
                + "; ".join(f"{k}: folder has {a!r}, now {b!r}" for k, (a, b) in diff.items())
                + "). Runs on different data do not compare: use another NAME, or delete the folder to start over.")
        if train_p.exists() and val_p.exists():
            return meta
    rows = read_jsonl(src)
    usable = [r for r in rows if not validate_rows([r]) and (cfg.mode != "pretrain" or str(r.get("text") or "").strip())]
    if len(usable) < len(rows):
        log(f"{len(rows) - len(usable)} row(s) of {src} cannot be trained on and are left out of the subset.")
    if len(usable) < cfg.eval_size + 2:
        raise DataError(f"{src} has {len(usable)} usable rows: too few for EVAL_SIZE={cfg.eval_size} validation "
                        f"rows plus at least 2 training rows.")
    order = list(range(len(usable)))
    random.Random(cfg.subset_seed).shuffle(order)
    val = [usable[i] for i in order[:cfg.eval_size]]
    val_hashes = {row_hash(r) for r in val}
    train, dup = [], 0
    for i in order[cfg.eval_size:]:
        if row_hash(usable[i]) in val_hashes:
            dup += 1
            continue
        train.append(usable[i])
        if len(train) == cfg.subset_size:
            break
    if len(train) < cfg.subset_size:
        log(f"{src} has only {len(train)} usable rows besides the {cfg.eval_size} validation rows: "
            f"the subset has {len(train)} training rows, not SUBSET_SIZE={cfg.subset_size}.")
    if dup:
        log(f"{dup} training row(s) identical to a validation row were left out.")
    write_jsonl(train_p, train)
    write_jsonl(val_p, val)
    meta = {"signature": sig, "train_path": str(train_p), "val_path": str(val_p), "train_rows": len(train),
            "val_rows": len(val), "train_sha256": hashlib.sha256(train_p.read_bytes()).hexdigest()[:16],
            "val_sha256": hashlib.sha256(val_p.read_bytes()).hexdigest()[:16]}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"Subset: {len(train)} training rows and {len(val)} validation rows from {src}, in {data_dir}")
    return meta


# ----------------------------------------------------------------------------------------------
# One run's configuration
# ----------------------------------------------------------------------------------------------
def _check_base(cfg: SweepConfig, hints: dict) -> dict:
    base = {}
    for name, value in cfg.base.items():
        _check_field(name, "BASE", hints)
        if name in SWEEP_LEVEL:
            raise ConfigError(f"BASE sets {name!r}: set {name.upper()} of the sweep instead (GRID may vary it).")
        base[name] = _coerce_value(name, value, hints, "BASE")
    return base


def steps_for(tc, n_train: int) -> int:
    """Optimizer steps of a run: its max_steps, else its epochs over ``n_train`` rows."""
    if tc.max_steps > 0:
        return tc.max_steps
    micro = math.ceil(n_train / tc.per_device_batch_size)
    per_epoch = max(1, math.ceil(micro / tc.gradient_accumulation_steps))
    return max(1, math.ceil(per_epoch * tc.num_train_epochs))


def build_run_config(cfg: SweepConfig, params: dict, sweep_dir: Path, subset: dict):
    """The TrainConfig of one run: TrainConfig defaults < sweep defaults < BASE < sweep fields < run values."""
    hints = _train_hints()
    base = _check_base(cfg, hints)
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


def _make_watch(reference: dict[int, float], prune_after: int, margin: float):
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
                                     f"{100 * (loss / ref - 1):.1f}% above the best finished run's {ref:.4f} at that step "
                                     f"(margin {100 * margin:.0f}%, after {self.evals} evaluations)"}
            control.should_training_stop = True
            return control

    return SweepWatch()


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
def read_results(sweep_dir: Path) -> dict[str, dict]:
    """``{run name: row}`` from results.jsonl (the newest row of each run)."""
    p = Path(sweep_dir) / "results.jsonl"
    out: dict[str, dict] = {}
    if p.exists():
        for row in read_jsonl(p, strict=False):
            if "name" in row:
                out[row["name"]] = row
    return out


def _write_results(sweep_dir: Path, rows: dict[str, dict]) -> None:
    write_jsonl(sweep_dir / "results.jsonl", rows.values())


def _rank_key(row: dict):
    order = {"done": 0, "pruned": 1, "failed": 2}
    loss = row.get("eval_loss")
    return (order.get(row.get("status"), 3), loss if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf)


def results_table(rows: list[dict]):
    """A pandas DataFrame of the runs, best first (done by validation loss, then pruned, then failed)."""
    import pandas as pd
    params = []
    for r in rows:
        for k in r.get("params", {}):
            if k not in params:
                params.append(k)
    recs = []
    for r in sorted(rows, key=_rank_key):
        rec = {"run": r["name"], "status": r["status"]}
        rec.update({k: r.get("params", {}).get(k) for k in params})
        rec.update({"steps": r.get("steps"), "epochs": r.get("epochs"), "train_loss": r.get("train_loss"),
                    "eval_loss": r.get("eval_loss"), "best_eval_loss": r.get("best_eval_loss"),
                    "minutes": round(r["train_seconds"] / 60, 2) if r.get("train_seconds") is not None else None,
                    "tokens_per_s": r.get("tokens_per_second"), "peak_mem_gib": r.get("peak_memory_gib"),
                    "reason": r.get("reason", "")})
        recs.append(rec)
    return pd.DataFrame(recs)


def table_markdown(df) -> str:
    """A Markdown table of a DataFrame (no extra dependency)."""
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in df.to_dict("records"):
        lines.append("| " + " | ".join(cell(rec[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def best_run(rows: list[dict]) -> dict | None:
    done = [r for r in rows if r.get("status") == "done" and isinstance(r.get("eval_loss"), (int, float))
            and math.isfinite(r["eval_loss"])]
    return min(done, key=lambda r: r["eval_loss"]) if done else None


def write_best_config(cfg: SweepConfig, row: dict, path: Path) -> dict:
    base = {k: v for k, v in cfg.base.items() if k not in MECHANICS}
    overrides = dict(base, **{k: v for k, v in row["params"].items()})
    overrides = {k: v for k, v in overrides.items() if k not in SWEEP_LEVEL or k in row["params"]}
    best = {"overrides": overrides, "run": row["name"], "eval_loss": row["eval_loss"],
            "trained_with": {k: row["train_config"].get(k) for k in SWEEP_LEVEL + ("max_steps",)},
            "sweep_dir": str(path.parent), "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "how_to_use": "from helpers.sweep.runner import load_best_config; cfg = cfg.replace(**load_best_config(path))"}
    path.write_text(json.dumps(best, indent=2) + "\n")
    return best


def load_best_config(path: str | os.PathLike) -> dict:
    """The best run's TrainConfig overrides from a sweep's best_config.json (for notebook 04):
    ``cfg = cfg.replace(**load_best_config(ws.out("sweep/best_config.json")))``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run notebook 07 (the sweep) first, or leave it out.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}).") from None
    overrides = data.get("overrides") if isinstance(data, dict) else None
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path} has no 'overrides' object: is it a sweep's best_config.json?")
    hints = _train_hints()
    out = {}
    for name, value in overrides.items():
        if name not in hints:
            raise ConfigError(f"{path}: {name!r} is not a TrainConfig field (written by another version?).")
        out[name] = _coerce_value(name, value, hints, str(path))
    return out


# ----------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------
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
    cfg, sweep_dir, plots_dir, subset, plan = _plan_sweep(cfg, log)
    results = read_results(sweep_dir)
    trained, skipped, stopped = [], [], None
    for i, (params, tc) in enumerate(plan, 1):
        outcome, stopped = _run_one(cfg, params, tc, subset, results, sweep_dir, t0, f"[{i}/{len(plan)}] ",
                                    len(plan) - i + 1, log)
        (skipped if outcome == "skipped" else trained if outcome == "trained" else []).append(tc.run_name)
        if stopped:
            break
    return _summarize(cfg, plan, results, sweep_dir, plots_dir, trained, skipped, stopped, t0, log)


def _plan_sweep(cfg: SweepConfig, log):
    """(cfg with its model, sweep folder, plots folder, subset, [(params, TrainConfig)]): bad names
    and values fail before any data or model work, then the subset is carved (or reused)."""
    cfg.validate()
    configs = expand_runs(cfg)
    _check_base(cfg, _train_hints())
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
    return cfg, sweep_dir, plots_dir, subset, plan


def _resume_choice(run: RunDir, tc, fp: str, prev: dict | None):
    """(checkpoint to resume or None, how the run starts): a run folder or results row with other
    settings starts over; a killed run resumes from its newest checkpoint that verifies, the same
    choice ``train`` makes with RESUME='auto'."""
    marked = run.get("sweep")
    stale = (marked is not None and marked.get("fingerprint") != fp) or (prev is not None and prev.get("fingerprint") != fp)
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
    limits = [m for m in (cfg.max_minutes_per_run, (cfg.max_minutes_total - elapsed) if cfg.max_minutes_total else 0) if m]
    limit = min(limits) if limits else 0.0
    by_sweep_budget = bool(cfg.max_minutes_total) and (not cfg.max_minutes_per_run or limit < cfg.max_minutes_per_run)
    tc = tc.replace(resume="auto" if ckpt else "never", max_time_minutes=round(limit, 4))
    log(f"{tag}{name}: {how}, {tc.max_steps} steps" + (f", at most {limit:.1f} min" if limit else ""))
    # the best finished run so far is the reference for pruning
    ref_row = best_run(list(results.values()))
    watch = _make_watch(eval_curve(_history(ref_row)) if ref_row else {}, cfg.prune_after_evals, cfg.prune_margin)
    base_row = {"name": name, "params": params, "fingerprint": fp, "run_dir": str(run.path),
                "target_steps": tc.max_steps, "train_config": tc.to_dict()}
    try:
        res = train(tc, log=log, callbacks=[watch])
    except (ConfigError, DataError, ModelLoadError) as exc:
        results[name] = dict(base_row, status="failed", reason=f"{type(exc).__name__}: {exc}"[:500],
                             finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        _write_results(sweep_dir, results)
        raise
    except Exception as exc:  # a run that breaks (out of memory, ...) is recorded; the sweep goes on
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        if "out of memory" in msg.lower():
            msg += " (lower per_device_batch_size or max_seq_len, or raise gradient_accumulation_steps)"
        log(f"{tag}{name}: FAILED: {msg}")
        results[name] = dict(base_row, status="failed", reason=msg, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        _write_results(sweep_dir, results)
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
    if status == "done" and not (_finite(m.get("eval_loss")) and (m.get("train_loss") is None or _finite(m["train_loss"]))):
        status, reason = "failed", f"diverged: train loss {m.get('train_loss')}, validation loss {m.get('eval_loss')}"
    curve = {s: v for s, v in eval_curve(res.log_history).items() if s > 0}
    results[name] = dict(
        base_row, status=status, reason=reason, steps=m["steps"], epochs=m["epochs"], train_loss=m["train_loss"],
        eval_loss=m["eval_loss"], best_eval_loss=round(min(curve.values()), 4) if curve else m["eval_loss"],
        start_eval_loss=m.get("start_eval_loss"), train_seconds=m["train_seconds"],
        tokens_seen=m["tokens_seen"], tokens_per_second=m["tokens_per_second"],
        peak_memory_gib=m["peak_memory_gib"], resumed_from=m["resumed_from"],
        per_epoch=per_epoch(res.log_history), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    _write_results(sweep_dir, results)
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


def _summarize(cfg: SweepConfig, plan: list, results: dict, sweep_dir: Path, plots_dir: Path, trained: list,
               skipped: list, stopped: str | None, t0: float, log) -> SweepResult:
    """The results table (Markdown and CSV), the overlay plots and the best run's configuration."""
    rows = [results[tc.run_name] for _, tc in plan if tc.run_name in results]
    table = results_table(rows)
    if rows:
        (sweep_dir / "results.md").write_text(table_markdown(table))
        table.to_csv(sweep_dir / "results.csv", index=False)
    plots = plot_sweep(rows, plots_dir, cfg.name)
    best = best_run(rows)
    best_path: Path | None = sweep_dir / "best_config.json"
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
