"""A sweep run's name and label (from its hyperparameters), and the curves read from its log:
the validation curve and per-epoch averages."""
from __future__ import annotations

import math
import re
from typing import Any

# Short names for run folders and plot labels.
ABBREV = {"learning_rate": "lr", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "drop",
          "weight_decay": "wd", "per_device_batch_size": "bs", "gradient_accumulation_steps": "ga",
          "num_train_epochs": "ep", "lr_scheduler": "sched", "warmup_ratio": "warm", "max_seq_len": "len",
          "max_grad_norm": "clip", "target_modules": "mod", "max_steps": "steps", "quantization": "q",
          "replay_share": "replay"}


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def run_name(params: dict) -> str:
    """Folder name of a run from its hyperparameters, e.g. ``lr0.0002_r8`` (same values, same name)."""
    parts = [f"{ABBREV.get(k, k)}{_fmt(v)}" for k, v in params.items()]
    name = re.sub(r"[^A-Za-z0-9.+_-]", "-", "_".join(parts))[:120]
    return name or "run"


def run_label(params: dict) -> str:
    """Plot label of a run, e.g. ``lr=0.0002, r=8``."""
    return ", ".join(f"{ABBREV.get(k, k)}={_fmt(v)}" for k, v in params.items())


def eval_curve(history: list[dict]) -> dict[int, float]:
    """``{step: validation loss}`` of a run (the last value of each step)."""
    return {int(h["step"]): float(h["eval_loss"]) for h in history if "eval_loss" in h and h.get("step") is not None}


def per_epoch(history: list[dict]) -> dict[str, list]:
    """Average train loss of each epoch and the last validation loss within it (epoch 1 = (0, 1])."""
    train: dict[int, list[float]] = {}
    ev: dict[int, float] = {}
    for h in history:
        epoch = h.get("epoch")
        if epoch is None or not h.get("step"):
            continue
        k = max(1, math.ceil(float(epoch) - 1e-6))
        if h.get("loss") is not None and "eval_loss" not in h:
            train.setdefault(k, []).append(float(h["loss"]))
        if "eval_loss" in h:
            ev[k] = float(h["eval_loss"])
    epochs = sorted(set(train) | set(ev))
    return {"epoch": epochs,
            "train": [round(sum(train[e]) / len(train[e]), 4) if e in train else None for e in epochs],
            "eval": [round(ev[e], 4) if e in ev else None for e in epochs]}
