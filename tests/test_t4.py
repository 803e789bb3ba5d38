"""Colab's free T4, emulated on a bigger GPU (``LLAMA_KIT_EMULATE_T4=1``: no bf16, 15 GiB): QLoRA
training in fp16 with the GradScaler, evaluation in 4 bits, merge and GGUF export, on the embedded
model. In a subprocess, since the emulation patches torch for the whole process."""
import json
import os
import subprocess
import sys

import pytest

SCRIPT = r'''
import json, math, os, sys
import torch
from transformers import TrainerCallback
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.report import evaluate_adapter
from helpers.chat.export import export_gguf, merge_adapter
from helpers.common.resources import chitchat
from helpers.common.workspace import describe_gpu
from helpers.train import TrainConfig, train

out = sys.argv[1]
EMB = "embedded/smollm2-135m-instruct"
seen = {"dtypes": set(), "grad_dtypes": set(), "scaler": None}

class Probe(TrainerCallback):
    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        for p in model.parameters():
            if p.requires_grad:
                seen["dtypes"].add(str(p.dtype))
                if p.grad is not None:
                    seen["grad_dtypes"].add(str(p.grad.dtype))

print(describe_gpu())
cfg = TrainConfig(model_name=EMB, quantization="4bit", dataset_path=str(chitchat("train")), output_dir=out + "/sft",
                  max_steps=12, per_device_batch_size=4, gradient_accumulation_steps=1, max_seq_len=256,
                  eval_steps=6, save_steps=6, logging_steps=1, report_to="none", resume="never", max_rows=200,
                  gradient_checkpointing=True, auto_fit=False)
r = train(cfg, callbacks=[Probe()])
losses = [h["loss"] for h in r.log_history if "loss" in h]
rep = evaluate_adapter(EvalConfig(adapter_dir=str(r.adapter_dir), test_path=str(chitchat("test")), quantization="4bit",
                                  max_examples=8, max_new_tokens=32, bootstrap=100, output_dir=out + "/eval"))
merged = merge_adapter(EMB, r.adapter_dir, out + "/merged")
gguf = export_gguf(merged, out + "/gguf", "f16")
print("RESULT " + json.dumps({
    "dtypes": sorted(seen["dtypes"]), "grad_dtypes": sorted(seen["grad_dtypes"]), "losses": losses,
    "metrics": {k: r.metrics.get(k) for k in ("kernels", "peak_memory_gib", "eval_loss", "quantization")},
    "ppl": {w: rep["metrics"]["perplexity"][w]["value"] for w in ("base", "tuned")},
    "merged_dtype": json.load(open(os.path.join(merged, "MERGE_INFO.json")))["dtype"],
    "gguf_bytes": os.path.getsize(gguf), "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30}))
'''


@pytest.mark.gpu
def test_t4_emulation_trains_in_fp16_evaluates_in_4bit_and_merges(tmp_path):
    env = dict(os.environ, LLAMA_KIT_EMULATE_T4="1")
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env, timeout=1200
    )
    lines = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    assert p.returncode == 0 and lines, p.stdout[-4000:] + p.stderr[-6000:]
    r = json.loads(lines[-1][7:])
    assert "Tesla T4 (T4 emulated on" in p.stdout and "fp16 compute" in p.stdout
    assert r["dtypes"] == ["torch.float32"] and r["grad_dtypes"] == [
        "torch.float32"
    ]  # fp32 master weights under the scaler
    assert "fp16 training:" in p.stdout and "kept in fp32 for the gradient scaler" in p.stdout
    assert len(r["losses"]) >= 12 and all(x == x and abs(x) < 20 for x in r["losses"])  # no inf, no NaN
    assert r["metrics"]["eval_loss"] == r["metrics"]["eval_loss"] and r["metrics"]["quantization"] == "4bit"
    assert all(v == v and v < 1e4 for v in r["ppl"].values())
    assert r["merged_dtype"] == "float16" and r["gguf_bytes"] > 100e6
    assert r["max_memory_gib"] < 15
