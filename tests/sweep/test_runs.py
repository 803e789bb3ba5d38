"""One sweep run's TrainConfig (layered settings, the step budget, the fixed subset) and its fingerprint."""
from pathlib import Path

import pytest

from helpers.core.config import ConfigError
from helpers.sweep.runs import build_run_config, fingerprint, steps_for
from helpers.train import TrainConfig
from tiny_sweep import MODEL, tiny

SUBSET = {"train_rows": 12, "train_path": "/subset/train.jsonl", "val_path": "/subset/val.jsonl",
          "train_sha256": "aaaa", "val_sha256": "bbbb"}


def test_run_config_layers_base_sweep_fields_and_run_values_on_the_fixed_subset(tmp_path):
    cfg = tiny(tmp_path, grid={"lora_r": [4]}, max_seq_len=64, max_steps_per_run=9, evals_per_run=3,
               base={"lora_alpha": 32, "learning_rate": 1e-4, "per_device_batch_size": 2})
    tc = build_run_config(cfg, {"learning_rate": 5e-4, "lora_r": 16}, Path(cfg.output_dir), SUBSET)
    assert tc.learning_rate == 5e-4 and tc.lora_r == 16  # the run's values win over BASE
    assert tc.lora_alpha == 32 and tc.per_device_batch_size == 2  # BASE over TrainConfig's defaults
    assert tc.max_seq_len == 64 and tc.model_name == MODEL and tc.seed == 42 and tc.quantization == "none"
    # the budget is the length; evaluations, checkpoints and logs follow from it
    assert (tc.max_steps, tc.eval_steps, tc.save_steps, tc.logging_steps) == (9, 3, 3, 1)
    assert tc.report_to == "none" and tc.save_total_limit == 2  # the sweep's defaults
    assert tc.run_name == "lr0.0005_r16" and tc.output_dir == str(Path(cfg.output_dir) / "runs" / "lr0.0005_r16")
    assert (tc.dataset_path, tc.eval_path, tc.eval_fraction, tc.max_rows) == ("/subset/train.jsonl",
                                                                              "/subset/val.jsonl", 0.0, 0)
    assert tc.merge is False and tc.checkpoint_dir == "" and tc.resume == "auto"
    fast = tiny(tmp_path, grid={"lora_r": [4]}, checkpoint_dir=str(tmp_path / "fast"))
    assert build_run_config(fast, {"lora_r": 4}, Path(cfg.output_dir), SUBSET).checkpoint_dir == str(
        tmp_path / "fast" / "r4")
    with pytest.raises(ConfigError, match="LEARNING_RATE=-0.1: must be positive"):
        build_run_config(cfg, {"learning_rate": -0.1}, Path(cfg.output_dir), SUBSET)


def test_a_run_that_gives_its_own_length_is_capped_by_the_budget(tmp_path):
    # 12 training rows, batch 2, no accumulation: 6 steps an epoch, so 2 epochs are 12 steps
    capped = tiny(tmp_path, grid={"lora_r": [4]}, max_steps_per_run=5)
    assert build_run_config(capped, {"num_train_epochs": 2.0}, tmp_path, SUBSET).max_steps == 5
    assert build_run_config(capped, {"max_steps": 4}, tmp_path, SUBSET).max_steps == 4
    free = tiny(tmp_path, grid={"lora_r": [4]}, max_steps_per_run=-1)
    tc = build_run_config(free, {"num_train_epochs": 2.0}, tmp_path, SUBSET)
    assert tc.max_steps == 12 and tc.eval_steps == 12 // 3
    # 13 rows in batches of 4: 4 micro-batches, 2 optimizer steps an epoch; 1.5 epochs round up to 3
    assert steps_for(TrainConfig(per_device_batch_size=4, gradient_accumulation_steps=2, num_train_epochs=1.5), 13) == 3
    assert steps_for(TrainConfig(max_steps=7), 1000) == 7


def test_fingerprint_tells_runs_apart_by_settings_and_data_not_by_where_files_go(tmp_path):
    cfg = tiny(tmp_path, grid={"lora_r": [4]})
    tc = build_run_config(cfg, {"lora_r": 4}, Path(cfg.output_dir), SUBSET)
    fp = fingerprint(tc, SUBSET)
    assert len(fp) == 16 and fp == fingerprint(build_run_config(cfg, {"lora_r": 4}, tmp_path / "other", SUBSET), SUBSET)
    moved = tc.replace(output_dir=str(tmp_path / "x"), checkpoint_dir=str(tmp_path / "y"), run_name="other",
                       resume="never", max_time_minutes=3.0)
    assert fingerprint(moved, SUBSET) == fp
    assert fingerprint(tc.replace(learning_rate=tc.learning_rate * 2), SUBSET) != fp
    assert fingerprint(tc, dict(SUBSET, val_sha256="cccc")) != fp
