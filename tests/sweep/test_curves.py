"""Run names and labels, and the curves read from real log histories: a short training run of the
embedded model (two epochs, validated every other step)."""
import math

import pytest

from helpers.core.jsonl import read_jsonl, write_jsonl
from helpers.sweep.curves import eval_curve, per_epoch, run_label, run_name
from helpers.train import TrainConfig, train
from tiny_sweep import CHITCHAT, MODEL


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """The log history of 4 steps on 4 rows in batches of 2 (2 steps an epoch), validated every 2 steps."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("curves")
    rows = read_jsonl(CHITCHAT)
    write_jsonl(work / "train.jsonl", rows[:4])
    write_jsonl(work / "val.jsonl", rows[4:6])
    cfg = TrainConfig(model_name=MODEL, dataset_path=str(work / "train.jsonl"), eval_path=str(work / "val.jsonl"),
                      output_dir=str(work / "run"), quantization="none", max_steps=4, per_device_batch_size=2,
                      gradient_accumulation_steps=1, max_seq_len=128, eval_fraction=0.0, learning_rate=3e-3,
                      warmup_ratio=0.0, lora_r=4, logging_steps=1, eval_steps=2, save_steps=100, report_to="none",
                      gradient_checkpointing=False, resume="never")
    try:
        return train(cfg, log=lambda *a: None).log_history
    finally:
        torch.set_num_threads(n)


def test_eval_curve_of_real_evaluations(history):
    curve = eval_curve(history)
    assert {2, 4} <= set(curve) <= {0, 2, 4}  # validated every 2 steps (and before training, when logged)
    assert all(math.isfinite(v) and v > 0 for v in curve.values())
    assert [h["eval_loss"] for h in history if h.get("step") == 4 and "eval_loss" in h][-1] == curve[4]


def test_per_epoch_averages_of_a_real_two_epoch_run(history):
    train_loss = {h["step"]: h["loss"] for h in history if "loss" in h and "eval_loss" not in h}
    assert set(train_loss) == {1, 2, 3, 4}
    assert [h["epoch"] for h in history if h.get("step") == 2 and "loss" in h] == [1.0]  # 2 steps an epoch
    got = per_epoch(history)
    assert got["epoch"] == [1, 2]
    assert got["train"] == [round((train_loss[1] + train_loss[2]) / 2, 4),
                            round((train_loss[3] + train_loss[4]) / 2, 4)]
    assert got["eval"] == [round(eval_curve(history)[2], 4), round(eval_curve(history)[4], 4)]


def test_per_epoch_averages():
    hist = [{"step": 0, "epoch": 0, "eval_loss": 3.0}, {"step": 1, "epoch": 0.5, "loss": 2.0},
            {"step": 2, "epoch": 1.0, "loss": 1.0}, {"step": 2, "epoch": 1.0, "eval_loss": 1.5},
            {"step": 3, "epoch": 1.5, "loss": 0.8}]
    assert per_epoch(hist) == {"epoch": [1, 2], "train": [1.5, 0.8], "eval": [1.5, None]}
    assert not math.isnan(per_epoch(hist)["train"][0])


def test_run_names_and_labels_are_short_stable_and_safe_for_folders():
    params = {"learning_rate": 2e-4, "lora_r": 8, "gradient_checkpointing": False, "target_modules": "q_proj,v_proj"}
    assert run_name(params) == "lr0.0002_r8_gradient_checkpointingF_modq_proj-v_proj"
    assert run_label(params) == "lr=0.0002, r=8, gradient_checkpointing=F, mod=q_proj,v_proj"
    assert run_name({"learning_rate": 2.0004e-4}) == run_name({"learning_rate": 2e-4})  # 3 significant digits
    assert run_name({}) == "run" and len(run_name({f"x{i}": "y" * 20 for i in range(10)})) == 120
