"""Training throughput and peak memory: our training path beside the peers, in one run.

Workload (as ../shared/BENCHMARKS.md): QLoRA (NF4, double quant, bf16 compute), LoRA r=16,
alpha=16, dropout 0 on q,k,v,o,gate,up,down; paged AdamW 8-bit for the peers, our default (fused
AdamW) for kit variants (+adam8bit for the peers' optimizer); random token ids packed to full
length; random weights in the real model shapes; warm-up steps, then timed steps. Each variant
runs in its own process so memory figures are clean.

Variants:
  hf         the usual notebook recipe: prepare_model_for_kbit_training (fp32 up-cast), SDPA,
             full logits, gradient checkpointing (use_reentrant=False)
  kit        our training path exactly as notebooks 03/04 run it: helpers.common.models.load_model(4bit),
             helpers.train.model.prepare_for_training (no up-cast), Liger RMSNorm/SwiGLU/RoPE,
             helpers.train.model.add_lora + fuse_lora (helpers/train/fast_lora.py), TRL's SFTTrainer (tiled LM
             head, no full logits), fused AdamW, checkpointed layer inputs offloaded to the CPU
  kit-nockpt the same without gradient checkpointing (where memory allows)
  unsloth    Unsloth FastLanguageModel with its own kernels and "unsloth" checkpointing
  kit-auto   our path with the memory plan notebooks use (helpers.train.memory.plan_memory picks checkpointing)
  kit-auto-15g  the same with the process capped at 15 GiB, as on a T4
  kit-ddp2   our path on 2 GPUs with DDP (torchrun; each GPU holds the 4-bit model), same per-GPU batch
  kit-fsdp2  our path on 2 GPUs with FSDP (accelerate launch, configs/accelerate/fsdp_qlora.yaml)

Flags appended to a variant with "+" switch one lever, to measure what it moves:
  +nofuse    peft's own LoRA forward instead of helpers.train.fast_lora's fused layers
  +nolayer   fused attention and MLP under torch's checkpoint instead of one function per decoder layer
  +noliger   no Liger kernels
  +nooffload checkpointed layer inputs stay on the GPU (no TRL activation offloading)
  +adam8bit  bitsandbytes' paged AdamW 8-bit (the usual recipe's) instead of torch's fused AdamW
  +torchnorm torch's fused RMSNorm instead of Liger's
  +sac       selective checkpointing (TRL's policy: keep attention outputs, recompute the rest)
  +prof      profile two timed steps with torch.profiler and print where GPU time goes (not for timing)
e.g. --variants kit,kit+nofuse,kit+nooffload,unsloth+prof

    python bench/train_speed.py --shape llama-3.1-8b --variants hf,kit,unsloth
    python bench/train_speed.py --shape tiny --variants hf,kit --steps 2   # CPU check of the harness

Prints a table (tok/s, peak GiB, ratios to hf and to unsloth, mean loss over the timed steps and
its difference to hf's) and appends JSON lines to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {  # the public configs of these models (weights are random: speed does not depend on them)
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024, tie_word_embeddings=False),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_checkpoint(shape: str, path: Path, tokenizer_dir: str | None) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    if (path / "config.json").exists():
        return
    cfg = LlamaConfig(**SHAPES[shape], max_position_embeddings=8192, rope_theta=500000.0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(dev):
        model = LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    if tokenizer_dir:
        import shutil
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(Path(tokenizer_dir) / f, path / f)
    del model


def batches(vocab: int, batch: int, seq: int, n: int):
    import torch
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (batch, seq), generator=g) for _ in range(n)]


def result_row(variant, batch, seq, steps, load_s, dt, losses, trainable):
    import torch
    res = dict(variant=variant, batch=batch, seq=seq, steps=steps, load_s=round(load_s, 1),
               tok_per_s=round(batch * seq * steps / dt, 1), s_per_step=round(dt / steps, 3),
               loss_mean=round(sum(losses) / len(losses), 4), loss_first=round(losses[0], 4),
               loss_last=round(losses[-1], 4), trainable=trainable)
    if torch.cuda.is_available():
        res["peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        res["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        res["gpu"] = torch.cuda.get_device_name()
    return res


def _profiler():
    from torch.profiler import ProfilerActivity, profile
    return profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True)


KERNEL_GROUPS = [  # (group, substrings of kernel names), first match wins
    ("dequant 4-bit", ("kDequantize", "dequantize")),
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    ("matmul", ("gemm", "nvjet", "cutlass", "sm90_", "sm80_", "ampere", "cublas", "splitk", "xmma")),
    ("triton (fused kernels)", ("triton", "_rms_norm", "_swiglu", "rope", "liger", "_fused")),
    ("optimizer", ("optimizer", "adam", "Adam")),
    ("copy / cast", ("copy", "Memcpy", "memcpy", "Memset", "cat", "to_copy")),
    ("elementwise / reduce", ("elementwise", "reduce", "vectorized", "unrolled", "index", "scatter", "gather",
                              "softmax", "Loss", "loss")),
]


def profile_summary(prof, wall_s: float, steps: int) -> str:
    """GPU time per step by kernel group, the top kernels, and how busy the GPU was."""
    from collections import defaultdict
    from torch.autograd import DeviceType
    per_kernel, spans = defaultdict(float), defaultdict(float)
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:  # kernels, and user ranges mirrored on the GPU timeline (spans)
            (spans if "#" in e.name or e.name.startswith("ProfilerStep") else per_kernel)[e.name] += e.device_time_total
    total = sum(per_kernel.values())
    if not total:
        return "profile: no GPU kernels recorded (CPU run)"
    groups = defaultdict(float)
    for name, us in per_kernel.items():
        g = next((g for g, keys in KERNEL_GROUPS if any(k in name for k in keys)), "other")
        groups[g] += us
    lines = [f"profile: {steps} steps, wall {wall_s / steps * 1e3:.1f} ms/step, GPU kernels {total / steps / 1e3:.1f} "
             f"ms/step ({100 * total / 1e6 / wall_s:.0f}% busy)", "| group | ms/step | share |", "|---|---|---|"]
    for g, us in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {g} | {us / steps / 1e3:.1f} | {100 * us / total:.1f}% |")
    for name, us in spans.items():
        lines.append(f"| span on the GPU timeline: {name[:60]} | {us / steps / 1e3:.1f} | |")
    lines += ["", "| top kernels | ms/step | share |", "|---|---|---|"]
    for name, us in sorted(per_kernel.items(), key=lambda kv: -kv[1])[:20]:
        lines.append(f"| {name[:100]} | {us / steps / 1e3:.2f} | {100 * us / total:.1f}% |")
    lines += ["", "| op launching the kernels (input shapes) | calls/step | GPU ms/step |", "|---|---|---|"]
    ops = [e for e in prof.key_averages(group_by_input_shape=True)
           if e.device_type == DeviceType.CPU and getattr(e, "self_device_time_total", 0) > 0]
    for e in sorted(ops, key=lambda e: -e.self_device_time_total)[:20]:
        lines.append(f"| {e.key} {str(e.input_shapes)[:90]} | {e.count / steps:.0f} | "
                     f"{e.self_device_time_total / steps / 1e3:.2f} |")
    lines += idle_gaps(prof, steps)
    avg = [e for e in prof.key_averages() if e.device_type == DeviceType.CPU]
    cpu_ops = sum(e.count for e in avg if e.key.startswith("aten::"))
    lines += ["", f"| CPU: op or range (aten ops per step: {cpu_ops / steps:,.0f}) | calls/step | self CPU ms/step | "
              "total CPU ms/step |", "|---|---|---|---|"]
    for e in sorted(avg, key=lambda e: -e.self_cpu_time_total)[:25]:
        lines.append(f"| {e.key[:90]} | {e.count / steps:.0f} | {e.self_cpu_time_total / steps / 1e3:.2f} | "
                     f"{e.cpu_time_total / steps / 1e3:.2f} |")
    return "\n".join(lines)


def idle_gaps(prof, steps: int, min_us: float = 100.0) -> list[str]:
    """Where the GPU sat idle: gaps between kernels/copies (any stream) longer than min_us, summed
    by the innermost CPU op running at the gap's midpoint (what the GPU was waiting for)."""
    from bisect import bisect_right
    from collections import defaultdict
    from torch.autograd import DeviceType
    gpu = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                 if e.device_type == DeviceType.CUDA and "#" not in e.name and not e.name.startswith("ProfilerStep"))
    if not gpu:
        return []
    gaps, end = [], gpu[0][1]
    for a, b in gpu[1:]:
        if a - end > min_us:
            gaps.append((end, a))
        end = max(end, b)
    cpu = sorted(((e.time_range.start, e.time_range.end, e.name) for e in prof.events()
                  if e.device_type == DeviceType.CPU), key=lambda t: t[0])
    starts = [c[0] for c in cpu]
    by_op = defaultdict(float)
    for a, b in gaps:
        mid = (a + b) / 2
        inner = None
        for c in reversed(cpu[max(0, bisect_right(starts, mid) - 4000):bisect_right(starts, mid)]):
            if c[1] >= mid and (inner is None or c[1] - c[0] < inner[1] - inner[0]):
                inner = c
        by_op[inner[2][:70] if inner else "(no CPU op)"] += b - a
    total = sum(b - a for a, b in gaps)
    out = ["", f"| GPU idle (gaps > {min_us:.0f} us, {len(gaps) / steps:.0f}/step, {total / steps / 1e3:.1f} ms/step): "
               "innermost CPU op at the gap | ms/step |", "|---|---|"]
    for name, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:15]:
        out.append(f"| {name} | {us / steps / 1e3:.2f} |")
    return out


def run_manual(variant: str, path: Path, batch: int, seq: int, steps: int, warmup: int) -> dict:
    """The peers' loop: model(input_ids, labels).loss.backward(); optimizer step."""
    import torch
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    if variant.startswith("unsloth"):
        from unsloth import FastLanguageModel

        model, _ = FastLanguageModel.from_pretrained(
            str(path), max_seq_length=seq, load_in_4bit=True, dtype=torch.bfloat16
        )
        model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=16, lora_dropout=0, target_modules=TARGETS,
                                                 bias="none", use_gradient_checkpointing="unsloth", random_state=0)
    else:  # hf: the usual notebook recipe
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
        kw = {}
        if dev == "cuda":
            kw = dict(quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                             bnb_4bit_use_double_quant=True,
                                                             bnb_4bit_compute_dtype=torch.bfloat16),
                      device_map={"": 0})
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=torch.bfloat16 if dev == "cuda" else torch.float32, attn_implementation="sdpa", **kw
        )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
        torch.manual_seed(0)
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, bias="none",
                                                 task_type="CAUSAL_LM", target_modules=TARGETS))
    load_s = time.time() - t0
    params = [p for p in model.parameters() if p.requires_grad]
    if dev == "cuda":
        import bitsandbytes as bnb
        opt = bnb.optim.PagedAdamW8bit(params, lr=2e-4)
    else:
        opt = torch.optim.AdamW(params, lr=2e-4)
    model.train()
    data = batches(model.config.vocab_size, batch, seq, warmup + steps)
    losses = []

    def step(ids):
        ids = ids.to(dev)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.item()

    for i in range(warmup):
        step(data[i])
    if dev == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    prof = _profiler() if "+prof" in variant else None
    if prof is not None:
        prof.__enter__()
    t = time.time()
    for i in range(steps):
        losses.append(step(data[warmup + i]))
    if dev == "cuda":
        torch.cuda.synchronize()
    dt = time.time() - t
    if prof is not None:
        prof.__exit__(None, None, None)
        print(profile_summary(prof, dt, steps), flush=True)
    return result_row(variant, batch, seq, steps, load_s, dt, losses, sum(p.numel() for p in params))


def run_kit(variant: str, path: Path, batch: int, seq: int, steps: int, warmup: int) -> dict | None:
    """Our path: the same functions helpers.train.loop.train() calls, driven by TRL's SFTTrainer."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig

    from helpers.common.models import load_model
    from helpers.train import TrainConfig
    from helpers.train.model import add_lora, apply_fast_kernels, fuse_lora, prepare_for_training
    from helpers.train.trainer import kit_trainer_class

    cuda = torch.cuda.is_available()
    base, *flags = variant.split("+")
    t0 = time.time()
    cfg = TrainConfig(model_name=str(path), quantization="4bit" if cuda else "none", lora_r=16, lora_alpha=16,
                      lora_dropout=0.0, target_modules=",".join(TARGETS), per_device_batch_size=batch,
                      gradient_accumulation_steps=1, max_seq_len=seq,
                      gradient_checkpointing=(base != "kit-nockpt"),
                      kernels="none" if not cuda or "noliger" in flags else "auto")
    if base.endswith("-15g") and cuda:
        torch.cuda.set_per_process_memory_fraction(15 * 2**30 / torch.cuda.get_device_properties(0).total_memory)
        os.environ["LLAMA_KIT_GPU_MEMORY_GIB"] = "15"
    model, tok = load_model(str(path), quantization=cfg.quantization, for_training=True, verbose=False)
    plan = None
    if base.startswith("kit-auto") and cuda:
        from helpers.train.memory import plan_memory
        plan = plan_memory(model, cfg, quantized=True)
        cfg = cfg.replace(gradient_checkpointing=plan.gradient_checkpointing)
        batch = plan.per_device_batch_size
        print(f"memory plan ({variant}): {plan.reason}", flush=True)
    if "sac" in flags:
        from trl.models import enable_selective_activation_checkpointing
        enable_selective_activation_checkpointing(model)
    model = prepare_for_training(model, cfg, quantized=cuda)
    applied = apply_fast_kernels(model, cfg.kernels, log=lambda *_: None)
    if "torchnorm" in flags:  # torch's fused RMSNorm kernel (less Python per call than Liger's Triton launch)
        import types
        def _rms(self, x):
            return torch.nn.functional.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.variance_epsilon)
        for m in model.modules():
            if type(m).__name__.endswith("RMSNorm") and hasattr(m, "variance_epsilon"):
                m.forward = types.MethodType(_rms, m)
    torch.manual_seed(0)
    model = add_lora(model, cfg)
    if "nolayer" in flags:  # the fused attention and MLP under torch's checkpoint, not one function per layer
        import helpers.train.fast_lora
        helpers.train.fast_lora._is_llama_layer = lambda m: False
    if "nofuse" not in flags:
        applied = fuse_lora(model, "auto", applied, log=lambda *_: None)
    print(f"{variant}: kernels {applied}", flush=True)
    load_s = time.time() - t0
    data = batches(model.config.vocab_size, batch, seq, warmup + steps)
    rows = [{"input_ids": r.tolist(), "completion_mask": [1] * seq} for b in data for r in b]
    timing: dict = {"losses": []}

    prof = _profiler() if "prof" in flags else None

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == warmup:
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                if prof is not None:
                    prof.__enter__()
                timing["t"] = time.time()

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == warmup + steps:
                if cuda:
                    torch.cuda.synchronize()
                timing["dt"] = time.time() - timing["t"]
                if prof is not None:
                    prof.__exit__(None, None, None)
                    print(profile_summary(prof, timing["dt"], steps), flush=True)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs and state.global_step > warmup:
                timing["losses"].append(float(logs["loss"]))

    args = SFTConfig(
        output_dir="/tmp/kit-bench",
        max_steps=warmup + steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        learning_rate=2e-4,
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim=("paged_adamw_8bit" if "adam8bit" in flags else "adamw_torch_fused") if cuda else "adamw_torch",
        activation_offloading=bool(
            cuda and cfg.gradient_checkpointing and "nooffload" not in flags and base != "kit-fsdp2"
        ),
        ddp_find_unused_parameters=False,
        ddp_broadcast_buffers=False,  # as helpers.train.loop.train
        bf16=cuda,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        max_length=seq,
        packing=False,
        completion_only_loss=True,
        gradient_checkpointing=False,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        shuffle_dataset=False,
        disable_tqdm=True,
        seed=0,
    )
    if args.n_gpu > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        args._n_gpu = 1  # one process: one GPU, as helpers.train.loop does
    Trainer = kit_trainer_class()
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                      callbacks=[Clock()])
    trainer.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    row = result_row(variant, batch * world, seq, steps, load_s, timing["dt"], timing["losses"] or [float("nan")],
                     trainable)
    row["world_size"] = world
    if plan is not None:
        row["plan"] = plan.reason
    if world > 1:
        import torch.distributed as dist
        peaks = [None] * world
        dist.all_gather_object(peaks, row.get("peak_alloc_gib"))
        row["peak_alloc_gib_per_gpu"] = peaks
        row["peak_alloc_gib"] = max((p for p in peaks if p is not None), default=None)
        if dist.get_rank() != 0:
            return None
    return row


def table(rows: list[dict]) -> str:
    by = {r["variant"]: r for r in rows if "tok_per_s" in r}
    hf, un = by.get("hf"), by.get("unsloth")
    lines = ["| variant | GPUs | tok/s | peak GiB (max per GPU) | vs hf | vs unsloth | mean loss | loss vs hf |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "tok_per_s" not in r:
            lines.append(f"| {r['variant']} | | failed: {r.get('error', '')[:80]} | | | | | |")
            continue
        vs_hf = f"{r['tok_per_s'] / hf['tok_per_s']:.2f}x" if hf else "-"
        vs_un = f"{r['tok_per_s'] / un['tok_per_s']:.2f}x" if un else "-"
        dl = f"{100 * (r['loss_mean'] - hf['loss_mean']) / hf['loss_mean']:+.2f}%" if hf else "-"
        lines.append(
            f"| {r['variant']} | {r.get('world_size', 1)} | {r['tok_per_s']:,.0f} | {r.get('peak_alloc_gib', '-')} "
            f"| {vs_hf} | {vs_un} | "
            f"{r['loss_mean']} | {dl} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="llama-3.1-8b", choices=sorted(SHAPES))
    ap.add_argument("--variants", default="hf,kit,unsloth")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--ckpt", default="/tmp/ckpt")
    ap.add_argument("--tokenizer", default=os.environ.get("BENCH_TOKENIZER"))
    ap.add_argument("--site-unsloth", default=os.environ.get("SITE_UNSLOTH"), help="PYTHONPATH for the unsloth variant")
    ap.add_argument("--one", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    batch = a.batch or (2 if a.shape == "llama-3.1-8b" else 8)
    path = Path(a.ckpt) / a.shape
    if a.one:
        fn = run_kit if a.one.startswith("kit") else run_manual
        row = fn(a.one, path, batch, a.seq, a.steps, a.warmup)
        if row is not None:
            print("RESULT " + json.dumps(row), flush=True)
        return 0
    t = time.time()
    make_checkpoint(a.shape, path, a.tokenizer)
    print(f"checkpoint {a.shape} ready in {time.time() - t:.0f}s", flush=True)
    rows = []
    for v in a.variants.split(","):
        env = dict(os.environ)
        if v.startswith("unsloth") and a.site_unsloth:
            env["PYTHONPATH"] = a.site_unsloth + os.pathsep + str(ROOT)
        args = ["--one", v, "--shape", a.shape, "--batch", str(batch), "--seq", str(a.seq),
                "--steps", str(a.steps), "--warmup", str(a.warmup), "--ckpt", a.ckpt]
        if v.startswith("kit-ddp2"):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", __file__] + args
        elif v.startswith("kit-fsdp2"):
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(ROOT / "configs" / "accelerate" / "fsdp_qlora.yaml"), "--num_processes", "2", __file__] + args
        else:
            cmd = [sys.executable, __file__] + args
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        for out in p.stdout.splitlines():  # the child's profile tables, memory plan and kernels in use
            if out.startswith(("profile:", "| ", "memory plan", f"{v}: ", "aten")):
                print(out, flush=True)
        line = [out for out in p.stdout.splitlines() if out.startswith("RESULT ")]
        if line:
            rows.append(json.loads(line[-1][7:]))
            print(line[-1], flush=True)
        else:
            print(f"FAILED {v}\n{p.stdout[-1500:]}\n{p.stderr[-3000:]}", flush=True)
            rows.append(dict(variant=v, error=(p.stderr or p.stdout)[-300:].replace("\n", " ")))
    if a.out:
        with open(a.out, "a") as fh:
            for r in rows:
                fh.write(json.dumps(dict(shape=a.shape, **r)) + "\n")
    print(f"\n{a.shape}, batch {batch} x seq {a.seq}, {a.steps} timed steps after {a.warmup} warm-up")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
