"""A sweep's results: results.jsonl read and written, the table best first, the best run, and its
best_config.json read back as notebook 04 does."""
import json
import math

import pytest

from helpers.core.config import ConfigError
from helpers.core.files import SweepFiles
from helpers.sweep import load_best_config
from helpers.sweep.results import (best_run, read_results, results_table, table_markdown, write_best_config,
                                   write_results)
from helpers.train import TrainConfig
from tiny_sweep import tiny


def _row(name, status, eval_loss=None, **params):
    return {"name": name, "status": status, "params": params, "eval_loss": eval_loss, "steps": 3, "epochs": 0.5,
            "train_loss": 2.0, "best_eval_loss": eval_loss, "train_seconds": 90.0, "tokens_per_second": 100.0,
            "peak_memory_gib": 0.5, "reason": f"{status} | why\nnext line",
            "train_config": {"model_name": "m", "mode": "sft", "quantization": "none", "max_seq_len": 128, "seed": 42,
                             "max_steps": 3}}


ROWS = [_row("failed", "failed", None, learning_rate=1.0), _row("b", "done", 1.5, learning_rate=1e-4, lora_r=8),
        _row("p", "pruned", 1.1, learning_rate=1e-5, lora_r=4), _row("a", "done", 1.2, learning_rate=3e-4, lora_r=8),
        _row("nan", "done", math.nan, learning_rate=9e-3, lora_r=8)]


def test_results_round_trip_keeps_the_newest_row_of_each_run(tmp_path):
    assert read_results(tmp_path) == {}
    write_results(tmp_path, {r["name"]: r for r in ROWS[:2]})
    assert SweepFiles(tmp_path).results.exists()
    with SweepFiles(tmp_path).results.open("a") as fh:
        fh.write("not json\n" + json.dumps(dict(ROWS[1], status="failed")) + "\n" + json.dumps({"no": "name"}) + "\n")
    got = read_results(tmp_path)  # an unreadable line is skipped, the later row of a run wins
    assert list(got) == ["failed", "b"] and got["b"]["status"] == "failed" and got["failed"] == ROWS[0]


def test_table_ranks_done_by_loss_then_pruned_then_failed_and_prints_as_markdown():
    table = results_table(ROWS)
    assert list(table["run"]) == ["a", "b", "nan", "p", "failed"]
    assert list(table.columns[:4]) == ["run", "status", "learning_rate", "lora_r"]
    assert table["minutes"][0] == 1.5 and math.isnan(table["lora_r"][4])  # the failed run has no lora_r
    md = table_markdown(table).splitlines()
    assert md[0].startswith("| run | status | learning_rate | lora_r | steps |") and set(md[1]) == {"|", "-"}
    assert md[2].startswith("| a | done | 0.0003 | 8 | 3 |") and "| 1.2 | 1.2 |" in md[2]
    assert md[2].endswith("| done \\| why next line |")  # a cell never breaks the table
    assert "| nan | done | 0.009 | 8 | 3 | 0.5 | 2 |  |  |" in md[4]  # no number is shown as nan


def test_best_run_is_the_finished_one_with_the_lowest_finite_loss():
    assert best_run(ROWS)["name"] == "a"  # the pruned run's lower loss is from fewer steps
    assert best_run([ROWS[0], ROWS[2], ROWS[4]]) is None


def test_best_config_keeps_hyperparameters_not_mechanics_and_reads_back_for_notebook_04(tmp_path):
    cfg = tiny(tmp_path, grid={"learning_rate": [3e-4]},
               base={"lora_alpha": 32, "logging_steps": 1, "save_steps": 3, "report_to": "none", "max_steps": 3})
    path = SweepFiles(tmp_path).best
    best = write_best_config(cfg, ROWS[3], path)
    assert json.loads(path.read_text()) == best
    assert best["overrides"] == {"lora_alpha": 32, "learning_rate": 3e-4, "lora_r": 8}
    assert best["run"] == "a" and best["eval_loss"] == 1.2 and best["sweep_dir"] == str(tmp_path)
    assert best["trained_with"] == {"model_name": "m", "mode": "sft", "quantization": "none", "max_seq_len": 128,
                                    "seed": 42, "max_steps": 3}
    overrides = load_best_config(path)
    assert overrides == {"lora_alpha": 32, "learning_rate": 3e-4, "lora_r": 8}
    assert TrainConfig().replace(**overrides).lora_alpha == 32


def test_a_best_config_that_is_not_one_is_refused(tmp_path):
    # best_config.json that is not one
    bad = tmp_path / "best.json"
    bad.write_text(json.dumps({"overrides": {"learning_rat": 1e-4}}))
    with pytest.raises(ConfigError, match="'learning_rat' is not a TrainConfig field"):
        load_best_config(bad)
    with pytest.raises(FileNotFoundError, match="run notebook 07"):
        load_best_config(tmp_path / "missing.json")
