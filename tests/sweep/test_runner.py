"""Sweeps on the embedded model: a 2x2 grid with pruning, a rerun that trains nothing, a killed run
resumed, and per-token loss normalisation across gradient accumulation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.core.jsonl import read_jsonl, write_jsonl
from helpers.sweep import load_best_config, run_sweep
from helpers.sweep import runner
from tiny_sweep import CHITCHAT, MODEL, TINY_BASE, tiny

ROOT = Path(__file__).resolve().parents[2]


def test_grid_2x2_prunes_the_clearly_behind_runs_writes_plots_and_best_config_and_rerun_trains_nothing(
        tmp_path, monkeypatch):
    cfg = tiny(tmp_path, grid={"learning_rate": [3e-3, 1e-5], "lora_r": [4, 8]}, prune_after_evals=1, prune_margin=0.02)
    res = run_sweep(cfg)
    by = {r["name"]: r for r in res.rows}
    assert list(by) == ["lr0.003_r4", "lr0.003_r8", "lr1e-05_r4", "lr1e-05_r8"]
    assert res.trained == list(by) and res.skipped == []
    for name in ("lr0.003_r4", "lr0.003_r8"):
        r = by[name]
        assert r["status"] == "done" and r["steps"] == 3 and r["target_steps"] == 3
        assert r["eval_loss"] < r["start_eval_loss"]  # it learned
        assert r["train_seconds"] > 0 and r["tokens_per_second"] > 0
        hist = json.loads((Path(r["run_dir"]) / "log_history.json").read_text())
        assert {h["step"] for h in hist if "loss" in h} == {1, 2, 3}  # train loss per step
        assert {h["step"] for h in hist if "eval_loss" in h} >= {1, 2, 3}  # validation loss per step
        assert r["per_epoch"]["epoch"] == [1] and r["per_epoch"]["train"][0] > 0
    for name in ("lr1e-05_r4", "lr1e-05_r8"):  # barely moves: behind the best run after one evaluation
        r = by[name]
        assert r["status"] == "pruned", r
        assert r["steps"] == 1 and "clearly behind" in r["reason"]
    # every run saw the same subset and seed
    assert len({r["train_config"]["dataset_path"] for r in res.rows}) == 1
    assert len({r["train_config"]["eval_path"] for r in res.rows}) == 1
    assert {r["train_config"]["seed"] for r in res.rows} == {42}
    val = read_jsonl(res.sweep_dir / "data" / "val.jsonl")
    train_rows = read_jsonl(res.sweep_dir / "data" / "train.jsonl")
    assert len(val) == 4 and len(train_rows) == 12
    assert not {json.dumps(r, sort_keys=True) for r in val} & {json.dumps(r, sort_keys=True) for r in train_rows}
    # table, plots, best config
    assert list(res.table["run"])[0] == min(("lr0.003_r4", "lr0.003_r8"), key=lambda n: by[n]["eval_loss"])
    assert (res.sweep_dir / "results.md").read_text().startswith("| run | status | learning_rate | lora_r |")
    names = {p.name for p in res.plots}
    assert {"sw_learning_rate.png", "sw_lora_r.png", "sw_train_loss.png", "sw_eval_loss.png"} <= names
    for p in res.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    best = load_best_config(res.best_path)
    assert best["learning_rate"] == 3e-3 and best["lora_r"] in (4, 8)
    assert best["per_device_batch_size"] == 2 and "logging_steps" not in best and "max_steps" not in best
    from helpers.train import TrainConfig
    tuned = TrainConfig().replace(**best)  # what notebook 04 does with it
    assert tuned.learning_rate == 3e-3

    # rerun: every run finished before, so nothing trains (train() is never entered)
    calls = []
    real_train = runner.train
    monkeypatch.setattr(runner, "train", lambda *a, **k: calls.append(a) or real_train(*a, **k))
    mtimes = {n: (Path(r["run_dir"]) / "run.json").stat().st_mtime for n, r in by.items()}
    again = run_sweep(cfg)
    assert calls == [] and again.trained == [] and again.skipped == list(by)
    assert {n: (Path(r["run_dir"]) / "run.json").stat().st_mtime for n, r in by.items()} == mtimes
    assert [r["eval_loss"] for r in again.rows] == [r["eval_loss"] for r in res.rows]


KILL_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
import torch; torch.set_num_threads(1)
from helpers.sweep import SweepConfig, run_sweep
cfg = SweepConfig(**json.loads({cfg!r}))
run_sweep(cfg)
print("FINISHED")
"""


def test_a_run_killed_midway_is_resumed_from_its_checkpoint_on_rerun(tmp_path):
    cfg = tiny(tmp_path, runs=[{"learning_rate": 1e-3}], max_steps_per_run=6, evals_per_run=6,
               base=dict(TINY_BASE, save_steps=1, eval_steps=3))
    fields = {k: getattr(cfg, k) for k in cfg.field_names()}
    script = tmp_path / "run_sweep.py"
    script.write_text(KILL_SCRIPT.format(root=str(ROOT), cfg=json.dumps(fields)))
    run_dir = Path(cfg.output_dir) / "runs" / "lr0.001"
    log = open(tmp_path / "killed.log", "wb")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if any((c / "CHECKPOINT_COMPLETE").exists() for c in (run_dir / "checkpoints").glob("checkpoint-*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, ("the run ended before it could be killed:\n"
                                     + (tmp_path / "killed.log").read_text()[-3000:])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()
    assert not (Path(cfg.output_dir) / "results.jsonl").exists()  # killed: no result recorded
    done_before = max(int(c.name.split("-")[1]) for c in (run_dir / "checkpoints").glob("checkpoint-*")
                      if (c / "CHECKPOINT_COMPLETE").exists())
    assert 1 <= done_before < 6

    res = run_sweep(cfg)
    row = res.rows[0]
    assert res.trained == ["lr0.001"]
    assert row["status"] == "done" and row["steps"] == 6
    assert row["resumed_from"] and Path(row["resumed_from"]).name.startswith("checkpoint-")
    assert int(Path(row["resumed_from"]).name.split("-")[1]) >= done_before
    hist = json.loads((run_dir / "log_history.json").read_text())
    assert {h["step"] for h in hist if "loss" in h} == set(range(1, 7))  # the steps before the kill are kept


def _one_exchange(row: dict) -> dict:
    return {"messages": row["messages"][:2]}


def test_loss_is_per_token_so_gradient_accumulation_gives_the_same_curve(tmp_path):
    """Batch 4 x accumulation 1 and 1 x 4 on the same 4 rows: the same per-token loss per step.

    The rows are picked with very different reply lengths, so the average of per-micro-batch means
    (the old gradient-accumulation bug) would differ clearly from the per-token mean."""
    rows = [_one_exchange(r) for r in read_jsonl(CHITCHAT)[:200]]
    rows = [r for r in rows if len(r["messages"]) == 2 and r["messages"][1]["role"] == "assistant"]
    rows.sort(key=lambda r: len(r["messages"][1]["content"]))
    picked = rows[:2] + rows[-2:]  # the two shortest and two longest replies
    data = tmp_path / "five.jsonl"
    write_jsonl(data, picked + [rows[len(rows) // 2]])
    cfg = tiny(tmp_path, dataset_path=str(data), subset_size=4, eval_size=1, max_steps_per_run=2, evals_per_run=1,
               runs=[{"per_device_batch_size": 4, "gradient_accumulation_steps": 1},
                     {"per_device_batch_size": 1, "gradient_accumulation_steps": 4}],
               base={"logging_steps": 1, "gradient_checkpointing": False, "warmup_ratio": 0.0, "report_to": "none",
                     "learning_rate": 1e-3})
    res = run_sweep(cfg)
    curves = []
    for r in res.rows:
        assert r["status"] == "done", r
        hist = json.loads((Path(r["run_dir"]) / "log_history.json").read_text())
        curves.append({h["step"]: h["loss"] for h in hist if "loss" in h})
    assert set(curves[0]) == set(curves[1]) == {1, 2}
    for step in (1, 2):
        assert curves[0][step] == pytest.approx(curves[1][step], rel=2e-3), (step, curves)

    # step 1 is the untrained model (LoRA starts as a no-op) on all 4 training rows: compute both averages
    import torch
    from helpers.common.models import load_model
    from helpers.common.prompts import encode_many
    from helpers.train import TrainConfig
    model, tok = load_model(MODEL, quantization="none")
    model.eval()
    enc, _ = encode_many(tok, read_jsonl(res.sweep_dir / "data" / "train.jsonl"), "auto", 128)
    sums, counts = [], []
    with torch.no_grad():
        for e in enc:
            ids = torch.tensor([e["input_ids"]])
            mask = torch.tensor(e["completion_mask"][1:], dtype=torch.bool)
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            nll = -logp.gather(1, ids[0, 1:, None])[:, 0]
            sums.append(float(nll[mask].sum()))
            counts.append(int(mask.sum()))
    per_token = sum(sums) / sum(counts)
    mean_of_means = sum(s / c for s, c in zip(sums, counts)) / len(sums)
    assert abs(per_token - mean_of_means) > 0.1, (per_token, mean_of_means)  # the rows make the difference visible
    for c in curves:
        assert c[1] == pytest.approx(per_token, abs=2e-3)
    assert TrainConfig  # noqa
