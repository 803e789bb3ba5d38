"""Sweeps on the embedded model through worker processes on a real journal file: a 2x2 grid by two
workers with pruning, a rerun that trains nothing, a worker killed mid-trial (SIGKILL) whose trial
the other worker resumes from its checkpoint with no trial run twice, and per-token loss
normalisation across gradient accumulation."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from helpers.core.files import SweepFiles
from helpers.core.jsonl import read_jsonl, write_jsonl
from helpers.sweep import load_best_config, run_sweep
from helpers.sweep.runner import start_workers
from helpers.sweep.runs import plan_sweep
from helpers.sweep.study import open_study, study_fingerprint
from tiny_sweep import CHITCHAT, MODEL, TINY_BASE, tiny

ROOT = Path(__file__).resolve().parents[2]


def test_grid_2x2_by_two_workers_prunes_writes_plots_and_best_config_and_rerun_trains_nothing(tmp_path, capsys):
    cfg = tiny(tmp_path, grid={"learning_rate": [3e-3, 1e-5], "lora_r": [4, 8]}, prune_after_evals=1, workers=2)
    res = run_sweep(cfg)
    out = capsys.readouterr().out
    by = {r["name"]: r for r in res.rows}
    assert sorted(by) == ["lr0.003_r4", "lr0.003_r8", "lr1e-05_r4", "lr1e-05_r8"]
    assert [r["trial"] for r in res.rows] == [0, 1, 2, 3] and sorted(res.trained) == [0, 1, 2, 3]
    assert len({r["worker"] for r in res.rows}) == 2  # both workers trained
    for name in ("lr0.003_r4", "lr0.003_r8"):
        r = by[name]
        assert r["status"] == "done" and r["steps"] == 3 and r["target_steps"] == 3
        assert r["eval_loss"] < r["start_eval_loss"]  # it learned
        assert r["train_seconds"] > 0 and r["tokens_per_second"] > 0
        hist = json.loads((Path(r["run_dir"]) / "log_history.json").read_text())
        assert {h["step"] for h in hist if "loss" in h} == {1, 2, 3}  # train loss per step
        assert {h["step"] for h in hist if "eval_loss" in h} >= {1, 2, 3}  # validation loss per step
        assert r["per_epoch"]["epoch"] == [1] and r["per_epoch"]["train"][0] > 0
        log = (Path(r["run_dir"]) / "train.log").read_text()  # the whole training log stays in the run folder
        assert "Done:" in log
    for name in ("lr1e-05_r4", "lr1e-05_r8"):  # barely moves: behind the finished runs at the first validation
        r = by[name]
        assert r["status"] == "pruned", r
        assert r["steps"] == 1 and r["reason"].startswith("pruned at step 1 of 3 by the median pruner")
    # what a person sees: a header, one line per trial, the summary; no training log
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert sum(ln.startswith("trial ") for ln in lines) == 4, out
    assert any(ln.startswith("trial 2 (lr=1e-05, r=4): pruned at step 1 of 3 by the median pruner: validation loss ")
               and ln.count("pruned") == 1 for ln in lines), out  # the status said once
    assert lines[-1].startswith("Sweep finished: 2 done, 2 pruned, 0 failed; 4 trained in this sitting"), out
    assert "Done:" not in out and "Trainable" not in out and len(lines) <= 8, out
    # every run saw the same subset and seed
    assert len({r["train_config"]["dataset_path"] for r in res.rows}) == 1
    assert len({r["train_config"]["eval_path"] for r in res.rows}) == 1
    assert {r["train_config"]["seed"] for r in res.rows} == {42}
    val = read_jsonl(res.sweep_dir / "data" / "val.jsonl")
    train_rows = read_jsonl(res.sweep_dir / "data" / "train.jsonl")
    assert len(val) == 4 and len(train_rows) == 12
    assert not {json.dumps(r, sort_keys=True) for r in val} & {json.dumps(r, sort_keys=True) for r in train_rows}
    # table, results.jsonl (a view of the study), plots, best config
    assert res.table["run"][0] == min(("lr0.003_r4", "lr0.003_r8"), key=lambda n: by[n]["eval_loss"])
    assert (res.sweep_dir / "results.md").read_text().startswith("| trial | status | learning_rate | lora_r |")
    assert [r["name"] for r in read_jsonl(SweepFiles(res.sweep_dir).results)] == [r["name"] for r in res.rows]
    names = {p.name for p in res.plots}
    assert {"sw_learning_rate.png", "sw_lora_r.png", "sw_train_loss.png", "sw_eval_loss.png"} <= names
    for p in res.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    best = load_best_config(res.best_path)
    assert best["learning_rate"] == 3e-3 and best["lora_r"] in (4, 8)
    assert best["per_device_batch_size"] == 2 and "logging_steps" not in best and "max_steps" not in best
    from helpers.train import TrainConfig
    assert TrainConfig().replace(**best).learning_rate == 3e-3  # what notebook 04 does with it

    # rerun: every run finished before, so no worker starts and nothing trains
    logs = sorted(SweepFiles(res.sweep_dir).workers.glob("worker-*.log"))
    sizes = [p.stat().st_size for p in logs]
    mtimes = {n: (Path(r["run_dir"]) / "run.json").stat().st_mtime for n, r in by.items()}
    again = run_sweep(cfg)
    assert again.trained == [] and again.skipped == [0, 1, 2, 3]
    assert [p.stat().st_size for p in logs] == sizes
    assert {n: (Path(r["run_dir"]) / "run.json").stat().st_mtime for n, r in by.items()} == mtimes
    assert [r["eval_loss"] for r in again.rows] == [r["eval_loss"] for r in res.rows]
    assert "4 runs finished before" in capsys.readouterr().out


def _complete_checkpoint(run_dir: Path) -> int:
    steps = [int(c.name.split("-")[1]) for c in (run_dir / "checkpoints").glob("checkpoint-*")
             if (c / "CHECKPOINT_COMPLETE").exists()]
    return max(steps, default=0)


def test_a_worker_killed_mid_trial_leaves_it_to_the_other_which_resumes_it_and_no_trial_runs_twice(tmp_path):
    cfg = tiny(tmp_path, runs=[{"learning_rate": 1e-3}, {"learning_rate": 2e-3}], max_steps_per_run=6,
               evals_per_run=2, workers=2, pruner="none", base=dict(TINY_BASE, save_steps=1, eval_steps=3))
    plan = plan_sweep(cfg, log=lambda *a: None)
    study = open_study(plan.cfg, plan.sweep_dir, plan.planned, study_fingerprint(plan.cfg, plan.subset),
                       plan.eval_steps)
    procs = start_workers(plan.sweep_dir, 2, time.time())
    runs = {0: plan.sweep_dir / "runs" / "lr0.001", 1: plan.sweep_dir / "runs" / "lr0.002"}
    victim = None
    try:
        deadline = time.time() + 900
        while time.time() < deadline and victim is None:
            for number, run in runs.items():
                if 1 <= _complete_checkpoint(run) < 6:
                    victim = number
                    break
            time.sleep(0.05)
        assert victim is not None, "no checkpoint was written"
        pid = study.trials[victim].user_attrs["worker"]["pid"]
        killed = next(p for p in procs if p.pid == pid)
        os.kill(pid, signal.SIGKILL)
        killed.wait(30)
        done_before = _complete_checkpoint(runs[victim])
        assert 1 <= done_before < 6
        survivor = next(p for p in procs if p is not killed)
        survivor.wait(900)
        assert survivor.returncode == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)
    trials = open_study(plan.cfg, plan.sweep_dir, plan.planned, study_fingerprint(plan.cfg, plan.subset),
                        plan.eval_steps).trials
    states = [(t.number, t.user_attrs.get("origin", t.number), t.state.name) for t in trials]
    assert states == [(0, 0, "FAIL" if victim == 0 else "COMPLETE"), (1, 1, "FAIL" if victim == 1 else "COMPLETE"),
                      (2, victim, "COMPLETE")], states
    lost, retry = trials[victim], trials[2]
    assert lost.user_attrs["lost"].endswith("is gone") and retry.user_attrs["retry_from"] == victim
    assert retry.user_attrs["worker"]["pid"] == survivor.pid  # the other worker took it over
    m = retry.user_attrs["metrics"]
    assert m["steps"] == 6 and m["resumed_from"] and Path(m["resumed_from"]).name.startswith("checkpoint-")
    assert int(Path(m["resumed_from"]).name.split("-")[1]) >= done_before  # from its newest checkpoint
    hist = json.loads((runs[victim] / "log_history.json").read_text())
    assert {h["step"] for h in hist if "loss" in h} == set(range(1, 7))  # the steps before the kill are kept
    # no trial ran twice: each configuration finished once, and the train logs show two starts only for the victim
    assert sorted(t.user_attrs["params"]["learning_rate"] for t in trials if t.state.name == "COMPLETE") == [1e-3, 2e-3]
    starts = {n: (r / "train.log").read_text().count("--- ") for n, r in runs.items()}
    assert starts == {victim: 2, 1 - victim: 1}, starts
    # the notebook's rerun finds the study finished
    res = run_sweep(cfg, log=lambda *a: None)
    assert res.trained == [] and [r["status"] for r in res.rows] == ["done", "done"]


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
                     "learning_rate": 1e-3}, workers=2)
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
