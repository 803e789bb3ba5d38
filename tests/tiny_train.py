"""Tiny training runs on the embedded model and the bundled real conversations, for the tests of
helpers/train and of the checkpoints they write: a few CPU steps of a small LoRA."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from helpers.common.models import load_model
from helpers.common.prompts import encode
from helpers.common.resources import chitchat, chitchat_conversations
from helpers.core.jsonl import read_jsonl, write_jsonl
from helpers.train import TrainConfig
from helpers.train.model import add_lora, fuse_lora, prepare_for_training

ROOT = Path(__file__).resolve().parent.parent
EMB = "embedded/smollm2-135m-instruct"
TINY = dict(MODEL_NAME=EMB, QUANTIZATION="none", MAX_SEQ_LEN=64, PER_DEVICE_BATCH_SIZE=2, GRADIENT_ACCUMULATION_STEPS=1,
            LEARNING_RATE=1e-3, WARMUP_RATIO=0.0, LOGGING_STEPS=1, REPORT_TO="none", GRADIENT_CHECKPOINTING=False,
            LORA_R=4, LORA_ALPHA=8, TARGET_MODULES="q_proj,v_proj", EVAL_STEPS=0, SAVE_TOTAL_LIMIT=10)


def write_convs(folder: Path) -> Path:
    """The first 40 bundled conversations as a training file in ``folder``."""
    write_jsonl(folder / "train.jsonl", chitchat_conversations()[:40])
    return folder / "train.jsonl"


def cfg_for(tmp, data, **kw) -> TrainConfig:
    """The tiny run's config writing to ``tmp`` and training on ``data``; ``kw`` overrides fields."""
    params = dict(TINY, DATASET_PATH=str(data), OUTPUT_DIR=str(tmp))
    params.update({k.upper(): v for k, v in kw.items()})
    return TrainConfig.from_params(params, environ={})


def adapter_tensors(folder):
    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def chat_examples(tok, n=4, max_len=160):
    """The first ``n`` bundled conversations encoded for training (ids and the reply mask)."""
    rows = read_jsonl(chitchat("train"))[:n]
    return [{k: e[k] for k in ("input_ids", "completion_mask")}
            for e in (encode(tok, r, max_len=max_len) for r in rows)]


def lora_model(ckpt: bool, device="cpu", dtype=torch.float32):
    """The model as train() prepares it: checkpointing (the fused whole-layer path) or not, LoRA on
    every projection with B made non-zero so every adapter matrix gets a gradient, fused LoRA."""
    model, _ = load_model(EMB, quantization="none", for_training=True, verbose=False)
    model.to(device=device, dtype=dtype)
    cfg = TrainConfig(model_name=EMB, dataset_path="x", gradient_checkpointing=ckpt, lora_r=8, lora_alpha=16)
    model = prepare_for_training(model, cfg, False)
    torch.manual_seed(0)
    model = add_lora(model, cfg)
    g = torch.Generator().manual_seed(1)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data = (torch.randn(p.shape, generator=g) * 0.02).to(p.device, p.dtype)
    fuse_lora(model, "auto", "none", log=lambda *_: None)
    model.train()
    return model
