"""Evaluation speed: the seed's way vs ours, on the same held-out prompts (GPU; --smoke on a CPU).

The seed's evaluation answered one prompt at a time with sampling and up to 1,000 new tokens
(``model.generate`` per prompt). Ours (``helpers.common.generate.generate_answers``, what notebook 05
uses) tokenizes once, sorts the prompts by length and answers them in batches with left padding,
the KV cache and greedy decoding, stopping each answer at EOS / end of turn. Both count only the
tokens an answer really has (up to and including its stop token).

    python bench/eval_speed.py                                # embedded SmolLM2-135M, 4-bit on a GPU
    python bench/eval_speed.py --shape llama-3.2-1b           # random weights in Llama-3.2-1B shapes
    python bench/eval_speed.py --memory --shape llama-3.1-8b  # peak GPU memory, 8B in 4-bit (T4 check)
    python bench/eval_speed.py --smoke                        # a tiny CPU check of the script

Random-weight shapes (no network on the GPU machine) need the Llama 3 tokenizer: ``--tokenizer``
or ``BENCH_TOKENIZER`` (a folder with tokenizer.json and tokenizer_config.json; this machine
caches it in ~/.cache/llama-kit/llama3-tokenizer). Random weights rarely emit EOS, so every
answer runs to the cap: tokens/s is then a pure throughput figure. The seed's way can take very
long (1,000 tokens per prompt): ``--seed-budget`` seconds bound it; its rate is measured on the
prompts it finished (the first ones of the same list) and the table says how many.
Prints a table last and writes JSON (``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {  # as ../shared/bench/peer_qlora.py builds them
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, tie_word_embeddings=False),
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, tie_word_embeddings=True),
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=False),
}


def tokenizer_dir(arg: str | None) -> str:
    d = arg or os.environ.get("BENCH_TOKENIZER")
    if d:
        return d
    sys.path.insert(0, str(ROOT / "tests"))
    from offline import llama3_tokenizer_dir
    return str(llama3_tokenizer_dir())


def random_checkpoint(shape: str, tok_dir: str, root: str) -> str:
    """A folder with random weights in ``shape`` and the given tokenizer (built once)."""
    import shutil
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    path = Path(root) / shape
    if (path / "config.json").exists():
        return str(path)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = LlamaConfig(**SHAPES[shape], vocab_size=len(tok), max_position_embeddings=8192,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(dev):
        model = LlamaForCausalLM(cfg)
    torch.set_default_dtype(old)
    model.save_pretrained(str(path))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(tok_dir) / f, path / f)
    del model
    import gc
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # so the memory figures below do not count the bf16 build
    return str(path)


def held_out_prompts(tok, n: int) -> list[str]:
    from helpers.common.rows import held_out_turns
    from helpers.core.jsonl import read_jsonl
    from helpers.common.prompts import prompt_text
    rows = held_out_turns(read_jsonl(ROOT / "helpers" / "resources" / "chitchat" / "test.jsonl"))
    if n > len(rows):
        from helpers.common.resources import split_chitchat
        rows = held_out_turns(split_chitchat(0, n)[1])
    return [prompt_text(tok, r) for r in rows[:n]]


def seed_way(model, tok, prompts, max_new_tokens: int, budget_s: float) -> dict:
    """One prompt at a time, sampling (temperature 0.7, top-p 0.9), up to max_new_tokens."""
    import torch
    from helpers.common.models import model_device, stop_token_ids
    dev = model_device(model)
    eos = stop_token_ids(tok)
    torch.manual_seed(0)
    total, done = 0, 0
    t0 = time.time()
    for p in prompts:
        enc = tok(p, return_tensors="pt", add_special_tokens=False).to(dev)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=0.7, top_p=0.9,
                                 pad_token_id=tok.pad_token_id, eos_token_id=eos)
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        n = next((j + 1 for j, t in enumerate(new) if t in eos), len(new))
        total += n
        done += 1
        if time.time() - t0 > budget_s:
            break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.time() - t0
    return {"prompts": done, "tokens": total, "seconds": round(secs, 2), "tokens_per_second": round(total / secs, 1)}


def ours(model, tok, prompts, max_new_tokens: int, batch: int) -> dict:
    from helpers.common.generate import generate_answers
    g = generate_answers(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch)
    return {"prompts": len(prompts), "tokens": sum(g["new_tokens"]), "seconds": g["seconds"],
            "tokens_per_second": g["tokens_per_second"], "stopped": sum(g["stopped"])}


def load(args):
    from helpers.common.models import load_model
    name = args.model
    if args.shape:
        name = random_checkpoint(args.shape, tokenizer_dir(args.tokenizer), args.ckpt_root)
    return load_model(name, quantization=args.quantization)


def speed(args) -> dict:
    import torch
    model, tok = load(args)
    prompts = held_out_prompts(tok, args.n)
    # warm-up (CUDA kernels, allocator) so neither side pays it
    ours(model, tok, prompts[:2], 4, 2)
    rows = []
    s = seed_way(model, tok, prompts, args.seed_max_new, args.seed_budget)
    rows.append({"method": f"seed: one at a time, sampling, ≤{args.seed_max_new} new", **s})
    for cap in sorted({args.ours_max_new, args.seed_max_new}):
        o = ours(model, tok, prompts, cap, args.batch)
        rows.append({"method": f"ours: batches of {args.batch}, greedy, KV cache, sorted, ≤{cap} new", **o})
    for r in rows:
        r["ratio"] = round(r["tokens_per_second"] / rows[0]["tokens_per_second"], 1)
    return {"mode": "speed", "model": args.shape or args.model, "quantization": args.quantization,
            "prompts": len(prompts), "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "rows": rows}


def memory(args) -> dict:
    """Peak GPU memory of notebook 05's evaluation of an 8B model in 4-bit: a LoRA adapter attached,
    batched generation of long answers and batched reference perplexity."""
    import torch
    from peft import LoraConfig, get_peft_model
    from helpers.evaluation.perplexity import sequence_nll
    from helpers.common.generate import adapter_disabled, generate_answers
    model, tok = load(args)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.eval()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    after_load = torch.cuda.memory_allocated() / 2**30 if cuda else None
    # prompts of prompt_tokens random ids (as text), answers to the cap (random weights do not stop)
    g = torch.Generator().manual_seed(0)
    prompts = [tok.decode(torch.randint(1000, 20000, (args.prompt_tokens,), generator=g).tolist())
               for _ in range(args.batch)]
    t0 = time.time()
    with adapter_disabled(model):
        gen = generate_answers(model, tok, prompts, max_new_tokens=args.ours_max_new, batch_size=args.batch)
    gen2 = generate_answers(model, tok, prompts, max_new_tokens=args.ours_max_new, batch_size=args.batch)
    L = args.prompt_tokens + args.ours_max_new
    seqs = [{"input_ids": torch.randint(1000, 20000, (L,), generator=g).tolist(),
             "completion_mask": [0] * args.prompt_tokens + [1] * args.ours_max_new} for _ in range(args.ppl_batch)]
    sequence_nll(model, tok, seqs, batch_size=args.ppl_batch)
    secs = time.time() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
    return {"mode": "memory", "model": args.shape or args.model, "quantization": args.quantization,
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "rows": [{"what": "weights + LoRA loaded", "GiB": round(after_load, 2) if cuda else None},
                     {"what": f"peak allocated: generation {args.batch} × ({args.prompt_tokens} prompt + "
                              f"{args.ours_max_new} new) base and tuned, perplexity {args.ppl_batch} × {L}",
                      "GiB": round(peak, 2) if cuda else None},
                     {"what": "peak reserved by the caching allocator", "GiB": round(reserved, 2) if cuda else None}],
            "generated_tokens": sum(gen["new_tokens"]) + sum(gen2["new_tokens"]), "seconds": round(secs, 1),
            "fits_t4_16gb": (reserved < 14.5) if cuda else None}


def table(res: dict) -> str:
    if res["mode"] == "memory":
        lines = [f"memory: {res['model']} {res['quantization']} on {res['device']}", "| what | GiB |", "|---|---:|"]
        lines += [f"| {r['what']} | {r['GiB']} |" for r in res["rows"]]
        lines.append(f"fits a T4 (15 GiB usable, 0.5 GiB margin): {res['fits_t4_16gb']}")
        return "\n".join(lines)
    lines = [f"speed: {res['model']} {res['quantization']} on {res['device']}, {res['prompts']} held-out prompts",
             "| method | prompts | generated tokens | seconds | tokens/s | vs seed |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['prompts']} | {r['tokens']:,} | {r['seconds']} | {r['tokens_per_second']:,} | "
              f"{r['ratio']}× |" for r in res["rows"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded/smollm2-135m-instruct", help="model name (ignored with --shape)")
    ap.add_argument("--shape", choices=sorted(SHAPES), help="random weights in these Llama shapes")
    ap.add_argument(
        "--tokenizer", help="tokenizer folder for --shape (default BENCH_TOKENIZER or the cached Llama 3 one)"
    )
    ap.add_argument("--ckpt-root", default="/tmp/ckpt-eval", help="where random checkpoints are built")
    ap.add_argument("--quantization", default="auto", help="auto (4bit on a GPU), 4bit, 16bit, none")
    ap.add_argument("--n", type=int, default=64, help="held-out prompts")
    ap.add_argument("--batch", type=int, default=32, help="our batch size")
    ap.add_argument("--seed-max-new", type=int, default=1000, help="the seed's cap on new tokens")
    ap.add_argument("--ours-max-new", type=int, default=256, help="our cap (notebook 05's default)")
    ap.add_argument("--seed-budget", type=float, default=300, help="seconds after which the seed's way stops")
    ap.add_argument("--memory", action="store_true", help="peak GPU memory mode instead of the speed comparison")
    ap.add_argument("--prompt-tokens", type=int, default=512, help="memory mode: prompt length")
    ap.add_argument("--ppl-batch", type=int, default=8, help="memory mode: perplexity batch")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the script")
    ap.add_argument("--out", default="", help="JSON file for the results")
    a = ap.parse_args(argv)
    if a.smoke:
        import torch
        torch.set_num_threads(1)
        a.quantization = "none"
        a.n, a.batch, a.seed_max_new, a.ours_max_new, a.seed_budget = 4, 4, 12, 8, 30
        a.prompt_tokens, a.ppl_batch = 16, 2
        if a.memory and not a.shape:
            a.shape = "tiny"
        if a.shape and a.shape != "tiny":
            a.shape = "tiny"
    res = memory(a) if a.memory else speed(a)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(table(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
