"""Every notebook's GPU path as on Colab's free T4, emulated on a bigger GPU (``LLAMA_KIT_EMULATE_T4=1``:
fp16 compute, no bf16, 15 GiB), through the same helpers calls the notebooks make.

  --part paths   the embedded SmolLM2-135M-Instruct in 4 bits: 03 domain pretraining (embeddings at a
                 smaller LR), 04 SFT stopped by its time budget and resumed, 05 base-vs-tuned
                 evaluation, 06 chat, merge and GGUF export (checked against the merged model),
                 07 a sweep
  --part shapes  random weights in the Llama-3.2-1B and Llama-3.1-8B shapes (stored in bf16, as the
                 Hub's are) with the real Llama 3 tokenizer: QLoRA on the bundled real conversations
                 with the memory plan on (real tokens/s after warm-up steps, peak memory, the plan's
                 choice and reason), then the 4-bit evaluation of the adapter

    . bench/gpu_setup.sh && python bench/t4_emulation.py --part paths
    . bench/gpu_setup.sh && python bench/t4_emulation.py --part shapes --steps 40
Prints a Markdown table and a RESULT line of JSON per step.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ["LLAMA_KIT_EMULATE_T4"] = "1"  # before anything asks the GPU what it can do
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EMB = "embedded/smollm2-135m-instruct"
WORK = Path(os.environ.get("T4_WORK", "/tmp/t4"))
ROWS: list[dict] = []


def record(step: str, seconds: float, **what) -> None:
    row = dict(step=step, seconds=round(seconds, 1), **what)
    ROWS.append(row)
    print("RESULT " + json.dumps(row, default=str), flush=True)


def peak_gib() -> float:
    import torch
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def reset_peak() -> None:
    import gc
    import torch
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def sft_config(**kw):
    from helpers.common.resources import chitchat
    from helpers.train import TrainConfig
    base = dict(model_name=EMB, quantization="4bit", dataset_path=str(chitchat("train")), max_seq_len=512,
                per_device_batch_size=8, gradient_accumulation_steps=1, logging_steps=5, eval_steps=10, save_steps=10,
                report_to="none", max_rows=400)
    base.update(kw)
    return TrainConfig(**base)


def paths() -> None:
    from helpers.chat.session import ChatSession, load_chat_model
    from helpers.evaluation.config import EvalConfig
    from helpers.evaluation.report import evaluate_adapter
    from helpers.chat.export import check_gguf, export_gguf, merge_adapter
    from helpers.common.resources import chitchat, fixture_pdf
    from helpers.core.jsonl import write_jsonl
    from helpers.dataset.pdf import read_pdf
    from helpers.common.workspace import describe_gpu
    from helpers.sweep import SweepConfig, run_sweep
    from helpers.train import train
    print(describe_gpu(), flush=True)

    # 03: continued pretraining on the paper's text, embed_tokens/lm_head at a tenth of the LR
    corpus = write_jsonl(WORK / "corpus.jsonl", [read_pdf(fixture_pdf()).row()])
    reset_peak()
    t = time.time()
    r = train(sft_config(mode="pretrain", dataset_path=str(corpus), output_dir=str(WORK / "pretrain"), lora_r=64,
                         lora_alpha=32, train_embeddings=True, embedding_lr_ratio=0.1, learning_rate=5e-5,
                         max_steps=20, eval_fraction=0.1, per_device_batch_size=4, resume="never", max_rows=0))
    m = r.metrics
    record("03 pretrain (LoRA r=64 + embeddings)", time.time() - t, steps=m["steps"], kernels=m["kernels"],
           perplexity=f"{m['start_perplexity']} -> {m['eval_perplexity']}", peak_gib=peak_gib())

    # 04: stopped by the time budget (a checkpoint, as before a Colab disconnect), then resumed
    reset_peak()
    t = time.time()
    first = train(sft_config(output_dir=str(WORK / "sft"), max_steps=40, max_time_minutes=0.05, resume="never"))
    stopped_at = first.metrics["steps"]
    r = train(sft_config(output_dir=str(WORK / "sft"), max_steps=40))
    m = r.metrics
    record("04 SFT, stopped then resumed", time.time() - t, stopped_at=stopped_at, resumed_from=m["resumed_from"],
           steps=m["steps"], eval_loss=f"{m['start_eval_loss']:.3f} -> {m['eval_loss']}", kernels=m["kernels"],
           tok_per_s=m["tokens_per_second"], peak_gib=peak_gib())
    adapter = r.adapter_dir

    # 05: base vs tuned, 4-bit
    reset_peak()
    t = time.time()
    rep = evaluate_adapter(EvalConfig(adapter_dir=str(adapter), test_path=str(chitchat("test")), quantization="4bit",
                                      max_examples=32, max_new_tokens=64, output_dir=str(WORK / "eval")))
    ppl = rep["metrics"]["perplexity"]
    record("05 evaluate (4-bit, 32 held-out conversations)", time.time() - t,
           perplexity=f"base {ppl['base']['value']:.2f}, tuned {ppl['tuned']['value']:.2f}",
           gen_tok_per_s=rep["generation"]["tuned_tokens_per_second"], peak_gib=peak_gib())

    # 06: chat, merge, GGUF
    reset_peak()
    t = time.time()
    model, tok = load_chat_model(EMB, str(adapter), quantization="4bit")
    chat = ChatSession(model, tok, max_new_tokens=48, seed=0)
    reply = chat.send("Hi! What do you like to do on weekends?")
    record("06 chat (4-bit, streaming session)", time.time() - t, reply_words=len(reply.split()),
           stop_reason=chat.last.stop_reason, tok_per_s=round(chat.last.new_tokens / max(chat.last.seconds, 1e-9)),
           peak_gib=peak_gib())
    del model
    reset_peak()
    t = time.time()
    merged = merge_adapter(EMB, adapter, WORK / "merged")
    gguf = export_gguf(merged, WORK / "gguf", "f16")
    chk = check_gguf(merged, gguf)
    record(
        "06 merge + GGUF f16",
        time.time() - t,
        merged_dtype=json.loads((merged / "MERGE_INFO.json").read_text())["dtype"],
        gguf_mb=round(gguf.stat().st_size / 1e6, 1),
        greedy_equal=chk["greedy_equal"],
        top1_agree=chk.get("top1_agree"),
        peak_gib=peak_gib(),
    )

    # 07: a small sweep
    reset_peak()
    t = time.time()
    res = run_sweep(
        SweepConfig(
            model_name=EMB,
            quantization="4bit",
            dataset_path=str(chitchat("train")),
            output_dir=str(WORK / "sweep"),
            grid={"learning_rate": [2e-4, 1e-3]},
            subset_size=160,
            eval_size=32,
            max_steps_per_run=20,
            evals_per_run=2,
            base={"per_device_batch_size": 8, "gradient_accumulation_steps": 1, "report_to": "none"},
        )
    )
    record("07 sweep (2 runs x 20 steps)", time.time() - t, runs=len(res.rows), trained=len(res.trained),
           best=json.dumps((res.best or {}).get("config", res.best))[:120], peak_gib=peak_gib())


def shapes(steps: int, warmup: int, shape_names: list[str]) -> None:
    import torch
    from transformers import TrainerCallback
    from helpers.evaluation.config import EvalConfig
    from helpers.evaluation.report import evaluate_adapter
    from helpers.common.resources import chitchat
    from helpers.train import train
    sys.path.insert(0, str(ROOT / "bench"))
    from train_speed import make_checkpoint

    class Timer(TrainerCallback):
        t0 = tok0 = t1 = tok1 = None

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == warmup:
                torch.cuda.synchronize()
                self.t0, self.tok0 = time.time(), state.num_input_tokens_seen

        def on_train_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.t1, self.tok1 = time.time(), state.num_input_tokens_seen

    for shape in shape_names:
        path = Path("/tmp/ckpt") / shape
        make_checkpoint(shape, path, os.environ.get("BENCH_TOKENIZER", "/tmp/tok"))
        reset_peak()
        t = time.time()
        timer = Timer()
        r = train(sft_config(model_name=str(path), output_dir=str(WORK / f"shape-{shape}"), max_steps=steps,
                             max_seq_len=2048, eval_fraction=0.0, eval_steps=0, save_steps=100_000, logging_steps=10,
                             resume="never", max_rows=0, auto_fit=True, warmup_ratio=2), callbacks=[timer])
        m = r.metrics
        plan = m.get("memory_plan") or {}
        rate = (timer.tok1 - timer.tok0) / (timer.t1 - timer.t0) if timer.t0 else None
        record(
            f"{shape} QLoRA, memory plan",
            time.time() - t,
            steps=m["steps"],
            tok_per_s_after_warmup=round(rate or 0),
            tok_per_s_whole_run=m["tokens_per_second"],
            loss=m["train_loss"],
            peak_gib=m["peak_memory_gib"],
            kernels=m["kernels"],
            plan=plan.get("reason") if isinstance(plan, dict) else str(plan),
            micro_batch=plan.get("per_device_batch_size") if isinstance(plan, dict) else None,
        )
        reset_peak()
        t = time.time()
        rep = evaluate_adapter(EvalConfig(adapter_dir=str(r.adapter_dir), model_name=str(path),
                                          test_path=str(chitchat("test")), quantization="4bit", max_examples=16,
                                          max_new_tokens=32, output_dir=str(WORK / f"eval-{shape}")))
        ppl = rep["metrics"]["perplexity"]
        record(f"{shape} 4-bit evaluation (16 conversations)", time.time() - t,
               perplexity=f"base {ppl['base']['value']:.0f}, tuned {ppl['tuned']['value']:.0f}",
               finite=all(math.isfinite(ppl[w]['value']) for w in ('base', 'tuned')),
               gen_tok_per_s=rep["generation"]["tuned_tokens_per_second"], peak_gib=peak_gib())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["paths", "shapes"], required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--shapes", default="llama-3.2-1b,llama-3.1-8b")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    import torch
    import transformers
    import peft
    import trl

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"trl {trl.__version__}, "
        f"GPU {torch.cuda.get_device_name()}",
        flush=True,
    )
    try:
        paths() if a.part == "paths" else shapes(a.steps, a.warmup, a.shapes.split(","))
    finally:
        keys = sorted({k for r in ROWS for k in r} - {"step", "seconds"})
        print("\n| step | seconds | " + " | ".join(keys) + " |\n|---|---|" + "---|" * len(keys))
        for r in ROWS:
            print(f"| {r['step']} | {r['seconds']} | " + " | ".join(str(r.get(k, "")) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
