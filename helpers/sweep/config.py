"""The sweep's settings and which runs it makes (notebook 07).

:class:`SweepConfig` holds the sweep's fields; :func:`expand_runs` turns a grid (every combination)
or the explicit RUNS into each run's hyperparameters, and :func:`search_space` a random or TPE
search's GRID into Optuna distributions; names are checked against TrainConfig and values converted
to the fields' types, so a typo fails before any data or model work. :func:`check_base` does the
same for BASE.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.core.config import ConfigError, StepConfig, coerce_field, field_types, unknown_field
from helpers.core.files import SWEEP_RUN
from helpers.sweep.curves import run_name
from helpers.train import TrainConfig

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
}
# TrainConfig fields that are fields of the sweep too: give them there, not in BASE (GRID may vary them).
SWEEP_LEVEL = ("model_name", "mode", "quantization", "max_seq_len", "seed")
# Run mechanics: not hyperparameters, so not part of the best configuration handed to notebook 04.
MECHANICS = {"logging_steps", "eval_steps", "save_steps", "save_total_limit", "report_to", "max_steps",
             "num_train_epochs", "early_stopping_patience", "gradient_checkpointing"}
DISTRIBUTIONS = ("choice", "uniform", "log_uniform", "int_uniform")
STATUSES = ("done", "pruned", "failed")
SEARCHES = ("grid", "random", "tpe")
PRUNERS = ("median", "halving", "none")



@dataclass
class SweepConfig(StepConfig, notebooks=("07",)):
    """A hyperparameter sweep: which runs, on which subset, within which budget."""
    describe_whole = ("grid", "runs", "base")  # cfg.describe() shows the values searched whole
    name: str = SWEEP_RUN  # sweep folder under the outputs folder, and its plots' prefix (use a new name for other data
                           # or model)
    output_dir: str = ""  # the sweep folder ("" = outputs/<name>; notebooks pass ws.out(name))
    plots_dir: str = ""  # where the overlay plots go ("" = <sweep folder>/plots; notebooks pass ws.plots_dir)
    checkpoint_dir: str = ""  # fast local disk for checkpoints while training ("" = inside each run folder)
    model_name: str = ""  # base model of every run; "" = Llama-3.2-1B-Instruct on a GPU, else embedded SmolLM2-135M
    dataset_path: str = ""  # JSONL the fixed subset is drawn from; "" = notebook 02's dataset (needs 20 rows), else
                            # bundled chats
    mode: str = "sft"  # "sft" or "pretrain", as in TrainConfig
    quantization: str = "auto"  # "4bit" (QLoRA), "8bit", "16bit", "none" (fp32); "auto" = 4bit on a GPU, fp32 on a CPU
    max_seq_len: int = 512  # tokens per example
    grid: dict = field(default_factory=dict)  # JSON {"field": [values]}: every combination (SEARCH="random" or "tpe":
                                              # values to draw, or {"log_uniform": [lo, hi]})
    runs: list = field(default_factory=list)  # explicit configurations [{"field": value}, ...], run as listed (instead
                                              # of GRID)
    search: str = "grid"  # "grid": every combination of GRID; "random" or "tpe" (Optuna's Bayesian sampler):
                          # NUM_SAMPLES draws
    num_samples: int = 8  # random or tpe search: how many configurations to try
    search_seed: int = 0  # random or tpe search: seed of the sampler
    base: dict = field(default_factory=dict)  # JSON: TrainConfig settings shared by every run, e.g. {"lora_alpha": 32}
    subset_size: int = 1000  # training rows of the fixed subset (the same rows, same order, for every run)
    eval_size: int = 100  # validation rows carved once from the dataset, never trained on
    subset_seed: int = 42  # seed of the subset draw
    seed: int = 42  # training seed of every run: LoRA init, data order, dropout
    max_steps_per_run: int = 200  # steps of each run; caps num_train_epochs/max_steps given in BASE or GRID (-1 = their
                                  # epochs)
    max_minutes_per_run: float = 0.0  # time budget of each run (0 = none)
    max_minutes_total: float = 0.0  # time budget of the whole sweep in this sitting (0 = none); rerun to go on
    evals_per_run: int = 10  # validation points per run (sets eval_steps unless BASE gives it)
    pruner: str = "median"  # stop runs that fall behind at a validation step: "median" (of earlier runs at that step),
                            # "halving" (successive halving), "none"
    prune_after_evals: int = 0  # pruning starts at this validation point of a run (0 = never prune)
    workers: int = 1  # runs trained at once, each in its own process (one per GPU when there are several)
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
                    prune_after_evals=1, pruner="median", workers=2,
                    base={"per_device_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1,
                          "save_steps": 3, "gradient_checkpointing": False, "warmup_ratio": 0.0, "report_to": "none"})

    def validate(self) -> None:
        if self.search not in SEARCHES:
            raise ConfigError(f"SEARCH={self.search!r}: use 'grid' (every combination), 'random' or 'tpe'.")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"PRUNER={self.pruner!r}: use 'median', 'halving' or 'none'.")
        if self.workers < 1:
            raise ConfigError(f"WORKERS={self.workers}: at least 1.")
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
            raise ConfigError(f"EVAL_SIZE={self.eval_size}: a sweep compares validation losses; hold out at least "
                              "1 row.")
        if self.max_steps_per_run == 0 or self.max_steps_per_run < -1:
            raise ConfigError(f"MAX_STEPS_PER_RUN={self.max_steps_per_run}: a positive step count, or -1 for none.")
        for name in ("max_minutes_per_run", "max_minutes_total", "prune_after_evals"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.upper()}={getattr(self, name)}: must not be negative.")
        if self.evals_per_run < 1:
            raise ConfigError(f"EVALS_PER_RUN={self.evals_per_run}: must be at least 1.")
        if self.search != "grid" and self.num_samples < 1:
            raise ConfigError(f"NUM_SAMPLES={self.num_samples}: a {self.search} search needs at least 1 draw.")

    def sweep_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("outputs") / self.name


def _train_hints() -> dict[str, Any]:
    return field_types(TrainConfig)


def check_field(name: str, where: str, hints: dict) -> None:
    """Refuse a name that is not a TrainConfig field, or one the sweep sets itself."""
    if name not in hints:
        raise unknown_field(TrainConfig, name, where)
    if name in SET_BY_SWEEP:
        raise ConfigError(f"{where} sets {name!r}, which the sweep sets itself: {SET_BY_SWEEP[name]}.")


def coerce_value(name: str, value: Any, where: str) -> Any:
    """A grid/base value converted to the TrainConfig field's type, or a clear ConfigError
    (helpers.core.config.coerce_field: the one conversion of the kit)."""
    return coerce_field(TrainConfig, name, value, where)


def _check_spec(name: str, spec: Any, search: str) -> None:
    where = f"GRID[{name!r}]"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where} is an empty list: give at least one value.")
        return
    if search != "grid" and isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS:
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
    if search != "grid":
        raise ConfigError(f"{where}={spec!r}: give a list of values or one of "
                          + ", ".join(f'{{"{d}": ...}}' for d in DISTRIBUTIONS) + ".")
    raise ConfigError(f"{where}={spec!r}: a grid needs a list of values, e.g. [1e-4, 2e-4]; put a fixed value "
                      f"in BASE instead.")


def _check_grid(cfg: SweepConfig, hints: dict) -> None:
    if cfg.runs and cfg.grid:
        raise ConfigError("Give either GRID (combinations or draws) or RUNS (an explicit list), not both.")
    if not cfg.runs and not cfg.grid:
        raise ConfigError('GRID is empty: give at least one TrainConfig field with a list of values, e.g. '
                          '{"learning_rate": [1e-4, 2e-4], "lora_r": [8, 16]}.')
    for name, spec in cfg.grid.items():
        check_field(name, "GRID", hints)
        _check_spec(name, spec, cfg.search)


def expand_runs(cfg: SweepConfig) -> list[dict]:
    """The hyperparameters of every planned run, in order: ``[{"learning_rate": 1e-4, "lora_r": 8}, ...]``:
    every combination of a grid, or the explicit RUNS. A random or TPE search plans none (its
    sampler draws them, :func:`search_space`); its GRID is checked all the same.

    Every name is checked against TrainConfig and every value converted to the field's type, so a
    typo fails here, before any model is loaded."""
    hints = _train_hints()
    _check_grid(cfg, hints)
    if cfg.runs:
        configs = [dict(r) for r in cfg.runs]
        if any(not r for r in configs):
            raise ConfigError("RUNS holds an empty configuration {}: every entry needs at least one field.")
    elif cfg.search == "grid":
        names = list(cfg.grid)
        configs = [dict(zip(names, combo)) for combo in itertools.product(*(cfg.grid[n] for n in names))]
    else:
        for name, spec in cfg.grid.items():  # every value a draw can give converts
            for v in (spec if isinstance(spec, list) else next(iter(spec.values()))):
                coerce_value(name, v, "GRID")
        return []
    out, seen_names = [], {}
    for i, c in enumerate(configs):
        where = f"RUNS[{i}]" if cfg.runs else "GRID"
        for name in c:
            check_field(name, where, hints)
        conv = {n: coerce_value(n, v, where) for n, v in c.items()}
        name = run_name(conv)
        if name in seen_names:
            raise ConfigError(f"{where}: configuration {conv} appears twice (run {name!r}).")
        seen_names[name] = i
        out.append(conv)
    return out


def choice_value(v: Any) -> Any:
    """A value as an Optuna categorical choice (None, bool, int, float or str; a list becomes JSON)."""
    return v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v)


def search_space(cfg: SweepConfig) -> dict:
    """``{field: optuna distribution}`` of the search: GRID's lists as categorical choices, its
    ``{"uniform"|"log_uniform"|"int_uniform": [lo, hi]}`` as ranges; explicit RUNS give each field
    the choices of its values across the runs."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    specs: dict[str, list] = {}
    if cfg.runs:
        for r in cfg.runs:
            for k, v in r.items():
                specs.setdefault(k, [])
                if choice_value(v) not in specs[k]:
                    specs[k].append(choice_value(v))
        return {k: CategoricalDistribution(v) for k, v in specs.items()}
    space = {}
    for name, spec in cfg.grid.items():
        if isinstance(spec, list):
            space[name] = CategoricalDistribution(list(dict.fromkeys(choice_value(v) for v in spec)))
            continue
        kind, args = next(iter(spec.items()))
        if kind == "choice":
            space[name] = CategoricalDistribution([choice_value(v) for v in args])
        elif kind == "int_uniform":
            space[name] = IntDistribution(int(args[0]), int(args[1]))
        else:
            space[name] = FloatDistribution(float(args[0]), float(args[1]), log=kind == "log_uniform")
    return space


def check_base(cfg: SweepConfig) -> dict:
    """BASE checked against TrainConfig (no field the sweep sets or varies itself) and converted."""
    hints = _train_hints()
    base = {}
    for name, value in cfg.base.items():
        check_field(name, "BASE", hints)
        if name in SWEEP_LEVEL:
            raise ConfigError(f"BASE sets {name!r}: set {name.upper()} of the sweep instead (GRID may vary it).")
        base[name] = coerce_value(name, value, "BASE")
    return base
