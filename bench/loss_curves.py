"""Does the fast path learn the same thing as the plain recipe? Two training runs on real data,
same seed, same data, same order, differing only in the fast-path levers, with their loss curves.

  plain  the usual notebook recipe: peft's ``prepare_model_for_kbit_training`` (fp32 up-cast of
         norms, embeddings and lm_head), peft's own LoRA forward, no Liger kernels, paged AdamW
         8-bit, checkpointed activations kept on the GPU
  fast   our defaults (helpers.train.loop.train as notebooks 03/04 run it): no up-cast, fused LoRA
         layers (helpers/train/fast_lora.py), Liger RMSNorm/SwiGLU/RoPE, fused AdamW, checkpointed layer
         inputs offloaded to the CPU

Workload: the embedded SmolLM2-135M-Instruct (4-bit on a GPU, fp32 on a CPU), LoRA r=16 on all
linear layers, the bundled chitchat conversations (helpers/resources/chitchat/train.jsonl), 512 tokens,
batch 8, lr 2e-4, ``--steps`` optimizer steps, train loss every step, validation loss on 10% held
out every 50 steps. Prints per-step agreement and writes the overlay plot and a JSON.

    python bench/loss_curves.py --steps 300 --out plots     # GPU machine
    python bench/loss_curves.py --steps 4 --out /tmp/lc     # CPU check of the harness

``--compare precision`` runs the fast path twice instead: in bf16, then as on a T4 (fp16 compute
with the GradScaler, ``LLAMA_KIT_EMULATE_T4=1``), and writes fp16_vs_bf16_* files.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(kind: str, steps: int, out: Path) -> dict:
    import os
    import torch

    import helpers.train.loop as T
    import helpers.train.model as M  # prepare_model calls its prepare_for_training
    if kind == "fp16":
        os.environ["LLAMA_KIT_EMULATE_T4"] = "1"  # the kit then trains in fp16 with loss scaling
    cuda = torch.cuda.is_available()
    cfg = T.TrainConfig(model_name="embedded/smollm2-135m-instruct", quantization="4bit" if cuda else "none",
                        dataset_path=str(ROOT / "helpers/resources/chitchat/train.jsonl"), eval_fraction=0.1,
                        output_dir=str(out / f"run-{kind}"), max_seq_len=512, max_steps=steps,
                        per_device_batch_size=8, gradient_accumulation_steps=1, learning_rate=2e-4,
                        warmup_ratio=0.0, logging_steps=1, eval_steps=50, save_steps=10_000, report_to="none",
                        gradient_checkpointing=True, auto_fit=False, resume="never", seed=0,
                        kernels="none" if kind == "plain" else "auto",
                        optim=("paged_adamw_8bit" if cuda else "adamw_torch") if kind == "plain" else "auto",
                        offload_activations=kind != "plain")
    original = M.prepare_for_training
    if kind == "plain":
        def prepare_like_the_usual_recipe(model, cfg_, quantized):
            from peft import prepare_model_for_kbit_training
            if quantized:
                return prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                       gradient_checkpointing_kwargs={"use_reentrant": False})
            return original(model, cfg_, quantized)
        M.prepare_for_training = prepare_like_the_usual_recipe
    try:
        t = time.time()
        res = T.train(cfg, log=lambda *a: print(f"[{kind}]", *a, flush=True))
    finally:
        M.prepare_for_training = original
    return dict(
        kind=kind,
        seconds=round(time.time() - t, 1),
        history=res.log_history,
        kernels=res.metrics.get("kernels"),
        peak_gib=res.metrics.get("peak_memory_gib"),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="plots")
    ap.add_argument("--compare", choices=["fast-path", "precision"], default="fast-path")
    a = ap.parse_args()
    out = Path(a.out)
    work = Path("/tmp/loss-curves")
    out.mkdir(parents=True, exist_ok=True)
    kinds, stem = (("plain", "fast"), "fast_path") if a.compare == "fast-path" else (("bf16", "fp16"), "fp16_vs_bf16")
    runs = {}
    for k in kinds:
        runs[k] = run(k, a.steps, work)
        (out / f"{stem}_loss_curves.json").write_text(json.dumps(dict(runs=runs), indent=1) + "\n")
    report(runs, out, kinds, stem)
    return 0


LABELS = {
    "plain": "plain recipe",
    "fast": "fast path (defaults)",
    "bf16": "bf16 (A100/H100)",
    "fp16": "fp16 (T4 emulation)",
}


def report(runs: dict, out: Path, kinds=("plain", "fast"), stem: str = "fast_path") -> None:
    from helpers.common.plots import loss_series, plot_overlay
    ref, new = kinds
    series = {k: {s: loss for s, _, loss in loss_series(r["history"])["train"]} for k, r in runs.items()}
    evals = {k: {s: loss for s, _, loss in loss_series(r["history"])["eval"]} for k, r in runs.items()}
    common = sorted(set(series[ref]) & set(series[new]))
    rel = [abs(series[new][s] - series[ref][s]) / series[ref][s] for s in common]
    w = 20  # mean over windows of 20 steps: what a user reads off the curve
    win = [(common[i], statistics.mean(series[new][s] for s in common[i:i + w]),
            statistics.mean(series[ref][s] for s in common[i:i + w])) for i in range(0, len(common) - w + 1, w)]
    win_rel = [abs(f - p) / p for _, f, p in win]
    summary = dict(
        steps=len(common),
        mean_abs_rel_diff_per_step=statistics.mean(rel),
        max_abs_rel_diff_per_step=max(rel),
        max_abs_rel_diff_20_step_means=max(win_rel) if win_rel else None,
        eval={k: evals[k] for k in kinds},
        seconds={k: runs[k]["seconds"] for k in kinds},
        peak_gib={k: runs[k]["peak_gib"] for k in kinds},
        kernels={k: runs[k]["kernels"] for k in kinds},
    )
    (out / f"{stem}_loss_curves.json").write_text(json.dumps(dict(summary=summary, runs=runs), indent=1) + "\n")
    hist = {LABELS[k]: runs[k]["history"] for k in kinds}
    title = f"{LABELS[ref]} vs {LABELS[new]}"
    plot_overlay(hist, out / f"{stem}_loss_curves.png", f"train loss, {title} ({len(common)} steps)")
    plot_overlay(hist, out / f"{stem}_eval_loss.png", f"validation loss, {title}", which="eval")
    print(f"\n| | {ref} | {new} |\n|---|---|---|")
    for s in sorted(set(evals[ref]) | set(evals[new])):
        print(f"| validation loss at step {s} | {evals[ref].get(s, float('nan')):.4f} | "
              f"{evals[new].get(s, float('nan')):.4f} |")
    print(f"| seconds | {runs[ref]['seconds']} | {runs[new]['seconds']} |")
    print(f"| peak GiB | {runs[ref]['peak_gib']} | {runs[new]['peak_gib']} |")
    print(
        f"\ntrain loss over {len(common)} steps: mean |{new} - {ref}| / {ref} per step "
        f"{100 * summary['mean_abs_rel_diff_per_step']:.2f}%, "
        f"max per step {100 * summary['max_abs_rel_diff_per_step']:.2f}%, max over 20-step means "
        f"{100 * (summary['max_abs_rel_diff_20_step_means'] or 0):.2f}%"
    )


if __name__ == "__main__":
    sys.exit(main())
