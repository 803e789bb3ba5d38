"""The sweep's settings and its runs: GRID, RUNS and random draws expanded and checked against
TrainConfig, with clear errors before any training."""
from __future__ import annotations

import json

import pytest

from helpers.core.config import ConfigError
from helpers.core.jsonl import DataError, read_jsonl, write_jsonl
from helpers.sweep import SweepConfig, load_best_config, run_sweep
from helpers.sweep.config import coerce_value, expand_runs, search_space
from tiny_sweep import CHITCHAT, tiny


def test_bad_sweeps_fail_before_any_training_with_clear_messages(tmp_path):
    typo = "'learning_rat', which is not a TrainConfig field; did you mean 'learning_rate'"
    with pytest.raises(ConfigError, match=typo):
        expand_runs(tiny(tmp_path, grid={"learning_rat": [1e-4]}))
    with pytest.raises(ConfigError, match="GRID is empty"):
        expand_runs(tiny(tmp_path, grid={}))
    with pytest.raises(ConfigError, match="GRID\\['lora_r'\\] is an empty list"):
        expand_runs(tiny(tmp_path, grid={"lora_r": []}))
    with pytest.raises(ConfigError, match="a grid needs a list of values"):
        expand_runs(tiny(tmp_path, grid={"lora_r": 8}))
    with pytest.raises(ConfigError, match="'output_dir', which the sweep sets itself"):
        expand_runs(tiny(tmp_path, grid={"output_dir": ["a", "b"]}))
    with pytest.raises(ConfigError, match="expected a whole number"):
        expand_runs(tiny(tmp_path, grid={"lora_r": [8, 16.5]}))
    with pytest.raises(ConfigError, match="cannot read it as float"):
        expand_runs(tiny(tmp_path, grid={"learning_rate": ["fast"]}))
    with pytest.raises(ConfigError, match="either GRID .* or RUNS"):
        expand_runs(tiny(tmp_path, grid={"lora_r": [8]}, runs=[{"lora_r": 4}]))
    with pytest.raises(ConfigError, match="SEARCH='bayes'"):
        tiny(tmp_path, search="bayes")
    with pytest.raises(ConfigError, match="EVAL_SIZE=0"):
        tiny(tmp_path, eval_size=0)
    with pytest.raises(ConfigError, match="'log_uniform' needs positive bounds"):
        expand_runs(tiny(tmp_path, search="random", grid={"learning_rate": {"log_uniform": [0, 1e-3]}}))
    with pytest.raises(ConfigError, match="BASE sets 'seed': set SEED of the sweep"):
        run_sweep(tiny(tmp_path, grid={"lora_r": [4]}, base={"seed": 1}))
    with pytest.raises(ConfigError, match="LEARNING_RATE=-0.1: must be positive"):
        run_sweep(tiny(tmp_path, grid={"learning_rate": [-0.1]}))
    with pytest.raises(DataError, match="does not exist"):
        run_sweep(tiny(tmp_path, grid={"lora_r": [4]}, dataset_path=str(tmp_path / "nope.jsonl")))
    small = tmp_path / "small.jsonl"
    write_jsonl(small, read_jsonl(CHITCHAT)[:3])
    with pytest.raises(DataError, match="3 usable rows: too few for EVAL_SIZE=4"):
        run_sweep(tiny(tmp_path, grid={"lora_r": [4]}, dataset_path=str(small)))
    assert not list((tmp_path / "sweep").glob("runs/*"))  # nothing was trained
    # notebook-style parameters: GRID as a JSON string from the environment
    cfg = SweepConfig.from_params({"GRID": '{"lora_r": [4, 8]}'}, environ={"GRID": '{"lora_alpha": [8, 16]}'})
    assert cfg.grid == {"lora_alpha": [8, 16]}
    with pytest.raises(ConfigError, match="GRID="):
        SweepConfig.from_params({}, environ={"GRID": "[1, 2"})


def test_random_and_tpe_searches_become_optuna_distributions_and_plan_no_runs(tmp_path):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    grid = {"learning_rate": {"log_uniform": [1e-5, 1e-3]}, "lora_r": [4, 8, 16], "lora_dropout": {"uniform": [0, 0.1]},
            "lora_alpha": {"int_uniform": [8, 32]}, "lr_scheduler": {"choice": ["cosine", "linear"]}}
    for search in ("random", "tpe"):
        cfg = tiny(tmp_path, search=search, num_samples=5, grid=grid)
        assert expand_runs(cfg) == []  # the sampler draws them
        space = search_space(cfg)
        assert space["learning_rate"] == FloatDistribution(1e-5, 1e-3, log=True)
        assert space["lora_dropout"] == FloatDistribution(0.0, 0.1)
        assert space["lora_alpha"] == IntDistribution(8, 32)
        assert space["lora_r"] == CategoricalDistribution([4, 8, 16])
        assert space["lr_scheduler"] == CategoricalDistribution(["cosine", "linear"])
    with pytest.raises(ConfigError, match="cannot read it as float"):
        expand_runs(tiny(tmp_path, search="tpe", grid={"learning_rate": ["fast", 1e-4]}))
    # explicit runs: each field's choices are its values across the runs (a list value travels as JSON)
    runs = [{"lora_r": 4, "target_modules": ["q_proj", "v_proj"]}, {"lora_r": 8}]
    space = search_space(tiny(tmp_path, runs=runs))
    assert space == {"lora_r": CategoricalDistribution([4, 8]),
                     "target_modules": CategoricalDistribution(['["q_proj", "v_proj"]'])}
    with pytest.raises(ConfigError, match="PRUNER='asha'"):
        tiny(tmp_path, pruner="asha")
    with pytest.raises(ConfigError, match="WORKERS=0"):
        tiny(tmp_path, workers=0)


def test_grid_base_and_best_config_values_go_through_the_one_conversion(tmp_path):
    """GRID, BASE and best_config.json values are converted by helpers.core.config.coerce_field, the
    conversion of the parameters cell and the environment: strings read, other values type-checked."""
    from helpers.core.config import coerce_field
    from helpers.train import TrainConfig
    runs = expand_runs(tiny(tmp_path, grid={"lora_r": ["8", 16.0], "learning_rate": [1, "2e-4"]}))
    assert runs[0] == {"lora_r": 8, "learning_rate": 1.0} and runs[-1] == {"lora_r": 16, "learning_rate": 2e-4}
    assert all(type(r["lora_r"]) is int and type(r["learning_rate"]) is float for r in runs)
    assert coerce_value("gradient_checkpointing", "no", "BASE") is False
    with pytest.raises(ConfigError, match=r"GRID\['gradient_checkpointing'\]=1: expected true or false"):
        expand_runs(tiny(tmp_path, grid={"gradient_checkpointing": [1]}))
    with pytest.raises(ConfigError, match=r"BASE\['lora_alpha'\]='wide': cannot read it as int"):
        run_sweep(tiny(tmp_path, grid={"lora_r": [4]}, base={"lora_alpha": "wide"}))
    for name in ("text_sources", "use_sweep_best"):  # notebook 03's and 04's own switches, no TrainConfig fields
        with pytest.raises(ConfigError, match=f"GRID names '{name}', which is not a TrainConfig field"):
            expand_runs(tiny(tmp_path, grid={name: ["a"] if name == "text_sources" else [True]}))
    best = tmp_path / "best_config.json"
    best.write_text(json.dumps({"overrides": {"lora_r": 8.0, "learning_rate": "3e-4"}}))
    assert load_best_config(best) == {"lora_r": 8, "learning_rate": 3e-4}
    best.write_text(json.dumps({"overrides": {"lora_r": 8.5}}))
    with pytest.raises(ConfigError, match=r"\['lora_r'\]=8.5: expected a whole number"):
        load_best_config(best)
    assert coerce_field(TrainConfig, "lora_r", "8", "GRID") == coerce_value("lora_r", "8", "GRID") == 8


def test_describe_shows_the_grid_and_base_whole_each_row_on_one_line(monkeypatch):
    """cfg.describe() in notebook 07: the values searched are what a person checks, so never cut, and each
    setting stays one row (name, value, where it came from) however long its value."""
    grid = {"learning_rate": [1e-4, 2e-4, 5e-4], "lora_r": [8, 32]}
    base = {"per_device_batch_size": 4, "gradient_accumulation_steps": 4, "lora_alpha": 16}
    monkeypatch.delenv("SMOKE", raising=False)
    long_path = "/data/" + "long-folder/" * 12 + "train.jsonl"
    cfg = SweepConfig.from_params({"GRID": json.dumps(grid), "BASE": json.dumps(base), "MAX_STEPS_PER_RUN": 150},
                                  environ={}, dataset_path=long_path)
    lines = cfg.describe().splitlines()
    row = {ln.split()[0]: ln for ln in lines[1:] if ln.startswith("  ") and not ln.startswith("   ")}
    assert repr(grid) in row["grid"] and "parameters cell" in row["grid"]
    assert repr(base) in row["base"] and repr(long_path) in row["dataset_path"] and "set in code" in row["dataset_path"]
    smoke = SweepConfig.from_params({}, environ={"SMOKE": "1"}).describe()
    assert repr(SweepConfig.smoke_preset()["grid"]) in " ".join(smoke.split()), smoke
