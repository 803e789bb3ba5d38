"""A sweep's results read from a real Optuna study: one row per configuration (a lost trial and its
retry are one), the finished line, results.jsonl as a view, the table best first (HTML without an
index), the best run, and its best_config.json read back as notebook 04 does."""
import json
import math
import re

import pytest

from helpers.core.config import ConfigError
from helpers.core.files import SweepFiles
from helpers.sweep import load_best_config
from helpers.core.jsonl import read_jsonl
from helpers.sweep.results import (best_markdown, best_run, finished_line, results_table, study_rows, table_html,
                                   table_markdown, write_best_config, write_results)
from helpers.train import TrainConfig
from tiny_sweep import tiny


def _row(name, status, eval_loss=None, **params):
    return {"name": name, "trial": len(name), "status": status, "params": params, "eval_loss": eval_loss, "steps": 3,
            "epochs": 0.5,
            "train_loss": 2.0, "best_eval_loss": eval_loss, "train_seconds": 90.0, "tokens_per_second": 100.0,
            "peak_memory_gib": 0.5, "reason": f"{status} | why\nnext line",
            "train_config": {"model_name": "m", "mode": "sft", "quantization": "none", "max_seq_len": 128, "seed": 42,
                             "max_steps": 3}}


ROWS = [_row("failed", "failed", None, learning_rate=1.0), _row("b", "done", 1.5, learning_rate=1e-4, lora_r=8),
        _row("p", "pruned", 1.1, learning_rate=1e-5, lora_r=4), _row("a", "done", 1.2, learning_rate=3e-4, lora_r=8),
        _row("nan", "done", math.nan, learning_rate=9e-3, lora_r=8)]


def test_rows_come_from_the_study_one_per_configuration_and_results_jsonl_is_their_view(tmp_path):
    import optuna
    from optuna.trial import TrialState
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    params = {"learning_rate": 1e-4, "lora_r": 8}
    metrics = {"eval_loss": 1.25, "train_loss": 1.5, "steps": 6, "train_seconds": 90.0, "peak_memory_gib": None}
    done = study.ask()
    for k, v in dict(params=params, run="lr0.0001_r8", metrics=metrics, reason="6 steps").items():
        done.set_user_attr(k, v)
    study.tell(done, 1.25)
    lost = study.ask()
    lost.set_user_attr("params", {"learning_rate": 1e-3, "lora_r": 8})
    lost.report(2.5, 3)
    lost.set_user_attr("reason", "lost: worker host-1 is gone; resumed by the next worker")
    study.tell(lost, state=TrialState.FAIL)
    study.enqueue_trial({}, user_attrs={"origin": 1, "retry_from": 1, "params": {"learning_rate": 1e-3, "lora_r": 8}})
    rows = study_rows(study)
    assert [(r["trial"], r["number"], r["status"]) for r in rows] == [(0, 0, "done"), (1, 1, "failed")]  # retry waits
    assert rows[1]["eval_loss"] == 2.5 and rows[1]["steps"] == 3  # its last report
    retry = study.ask()
    assert retry.user_attrs["origin"] == 1
    assert [(r["trial"], r["number"], r["status"]) for r in study_rows(study)] == [(0, 0, "done"), (1, 2, "running")]
    assert finished_line(rows[0]) == "trial 0 (lr=0.0001, r=8): done, validation loss 1.2500, 1.5 min (6 steps)"
    assert finished_line(rows[1]).startswith("trial 1 (lr=0.001, r=8): failed, validation loss 2.5000 (lost: ")
    pruned = dict(rows[0], status="pruned", reason="pruned at step 3 of 6 by the median pruner: validation loss 1.2500")
    assert finished_line(pruned) == ("trial 0 (lr=0.0001, r=8): pruned at step 3 of 6 by the median pruner: "
                                     "validation loss 1.2500")
    write_results(tmp_path, rows)
    assert read_jsonl(SweepFiles(tmp_path).results) == json.loads(json.dumps(rows))
    table = results_table(rows)
    assert "peak_mem_gib" not in table.columns  # no value in any row (a CPU): no column


def test_table_ranks_done_by_loss_then_pruned_then_failed_and_prints_as_markdown():
    table = results_table(ROWS)
    assert list(table["run"]) == ["a", "b", "nan", "p", "failed"]
    assert list(table.columns[:5]) == ["trial", "status", "learning_rate", "lora_r", "eval_loss"]
    assert table["minutes"][0] == 1.5 and math.isnan(table["lora_r"][4])  # the failed run has no lora_r
    md = table_markdown(table).splitlines()
    assert md[0].startswith("| trial | status | learning_rate | lora_r | eval_loss |") and set(md[1]) == {"|", "-"}
    assert md[2].startswith("| 1 | done | 0.0003 | 8 | 1.2 | 1.2 | 2 | 3 |")
    assert md[2].endswith("| a | done \\| why next line |")  # a cell never breaks the table
    assert "| 3 | done | 0.009 | 8 |  |  | 2 | 3 |" in md[4]  # no number is shown as nan
    html = table_html(table)
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", html)
    assert heads[:2] == ["trial", "status"] and "" not in heads and "reason" not in heads  # no index column
    assert 'white-space:nowrap;text-align:left">a</td>' in html  # names never broken
    # each reason whole, wrapped, on a row of its own under its run (so the table fits the notebook)
    assert re.search(r'<td colspan="%d" style="[^"]*white-space:normal[^"]*">done \| why\nnext line</td>' % len(heads),
                     html)
    assert ">—</td>" in html and ">None<" not in html and html.count(">nan<") == 1  # a dash; "nan" is a name


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
    text = best_markdown(best, path)  # notebook 07's last cell: names and values, no dict dump
    assert text.startswith("**Best run:** trial 1 (`a`), validation loss 1.200, with `learning_rate = 0.0003`, "
                           "`lora_r = 8`; shared by every run: `lora_alpha = 32`."), text
    assert "{" not in text and str(path) in text and "USE_SWEEP_BEST" in text


def test_a_best_config_that_is_not_one_is_refused(tmp_path):
    # best_config.json that is not one
    bad = tmp_path / "best.json"
    bad.write_text(json.dumps({"overrides": {"learning_rat": 1e-4}}))
    with pytest.raises(ConfigError, match="'learning_rat' is not a TrainConfig field"):
        load_best_config(bad)
    with pytest.raises(FileNotFoundError, match="run notebook 07"):
        load_best_config(tmp_path / "missing.json")
