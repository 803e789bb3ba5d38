"""Packed defaults at several shapes of data, the usual recipe beside the kit (issue 31).

The chat protocol of ``bench/quality.py`` (the embedded SmolLM2-135M-Instruct in 4-bit, LoRA r=16,
3,000 chitchat conversations for training, the baseline's 300 others held out, one epoch) with the
data cut into other shapes, so that a packed row holds a different number k of examples:

* ``conv``: the conversations (first 12 turns), k about 2 at rows of 512;
* ``exchange``: each conversation's first user turn and first reply, k about 8 at rows of 512 and
  16 at 1024 (notebook 04's MAX_SEQ_LEN);
* ``triples``: instruction/input/output rows of the length notebook 02's teacher writes: "Write the
  next reply in this conversation." with the conversation so far (up to five turns) as input and
  the next reply as output.

For each shape (``name:rows``), the usual recipe (padded, one example per row, batch 16, lr 2e-4,
10 warm-up steps) for each ``--recipe-seeds``, and the kit's defaults (packed rows of ``rows``
tokens, rows per step and learning rate as helpers.train.config.packed_step sets them, WARMUP_RATIO
0.03) for each ``--seeds``; then the perplexity of the held-out replies (outputs) under each tuned
model, and the kit's relative to the recipe of the same seed with a paired bootstrap 95% interval
over the held-out examples. Prints a table; one JSON line per run in ``--out/shapes.jsonl``.

    python bench/shapes.py --out /tmp/shapes                          # GPU: every shape, 2 kit seeds
    python bench/shapes.py --smoke --out /tmp/shapes                  # tiny CPU check
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import EMBEDDED, baseline_split, chat_recipe, held_out_sequences  # noqa: E402

TRIPLE_INSTRUCTION = "Write the next reply in this conversation."


def shaped(rows: list[dict], shape: str) -> list[dict]:
    """The conversations cut into ``shape`` (module docstring); rows without a reply are left out."""
    out = []
    for r in rows:
        msgs = r["messages"]
        if shape == "conv":
            out.append(r)
        elif shape == "exchange":
            if len(msgs) >= 2 and msgs[1]["role"] == "assistant":
                out.append({"id": r["id"], "messages": msgs[:2]})
        elif shape == "triples":
            last = max((i for i, m in enumerate(msgs[:6]) if m["role"] == "assistant"), default=None)
            if last is None:
                continue
            context = "\n".join(f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}"
                                for m in msgs[:last])
            out.append({"id": r["id"], "instruction": TRIPLE_INSTRUCTION, "input": context,
                        "output": msgs[last]["content"]})
        else:
            raise SystemExit(f"unknown shape {shape!r}: conv, exchange or triples")
    return out


def held_out_nll(adapter: str, quant: str, seqs: list[dict], batch: int) -> list[tuple[float, int]]:
    """(nll, tokens) of each held-out sequence's scored tokens under the tuned model."""
    from helpers.common.models import load_model
    from helpers.evaluation.perplexity import sequence_nll
    model, tok = load_model(EMBEDDED, quantization=quant, adapter=adapter)
    nll, cnt, _ = sequence_nll(model, tok, seqs, batch_size=batch)
    del model
    return list(zip(nll, cnt))


def one_run(a, shape: str, rows_len: int, packed: bool, seed: int, data: Path, seqs: list[dict],
            step_examples: float = 2.0) -> dict:
    """Train one run (recipe or kit) on ``data`` and score the held-out replies."""
    from helpers.train import TrainConfig, train
    name = f"{shape}{rows_len}_{'kit' if packed else 'recipe'}_s{seed}_x{step_examples:g}"
    warm = 0 if a.smoke else (TrainConfig.warmup_ratio if packed else 10)
    cfg = chat_recipe(a, data, Path(a.out) / name, packing=packed, num_train_epochs=1.0, max_steps=a.max_steps,
                      per_device_batch_size=a.batch, warmup_ratio=warm, seed=seed)
    cfg = cfg.replace(max_seq_len=rows_len if packed else a.max_len, packed_step_examples=step_examples)
    t = time.time()
    result = train(cfg, log=lambda *x: None)
    wall = time.time() - t
    m = result.metrics
    pk = (m.get("data", {}).get("train", {}).get("packing")) or {}
    return {"shape": shape, "rows_len": rows_len if packed else a.max_len, "run": "kit" if packed else "recipe",
            "seed": seed, "step_examples": step_examples if packed else None,
            "k": round(pk["examples"] / pk["rows"], 2) if pk else 1.0, "learning_rate": pk.get("learning_rate",
                                                                                               cfg.learning_rate),
            "rows_per_step": pk.get("rows_per_step", a.batch), "steps": m["steps"],
            "train_seconds": m["train_seconds"], "wall_seconds": round(wall, 1),
            "nll": held_out_nll(str(result.adapter_dir), a.quantization, seqs, a.ppl_batch)}


def compare(kit: dict, recipe: dict, boot: int) -> dict:
    """The kit's held-out perplexity relative to the recipe's, paired over the held-out examples."""
    from helpers.evaluation.stats import paired_bootstrap
    return paired_bootstrap(recipe["nll"], kit["nll"], "ppl", boot, relative=True)


def table(rows: list[dict]) -> str:
    lines = ["| shape | rows of | run | step examples | seed | k | rows/step | lr | steps | train s | held-out ppl | "
             "vs recipe [95% CI] |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ppl = math.exp(sum(n for n, _ in r["nll"]) / max(1, sum(c for _, c in r["nll"])))
        vs = r.get("vs_recipe")
        cell = (f"{100 * vs['relative']['value']:+.2f}% [{100 * vs['relative']['ci'][0]:+.2f}, "
                f"{100 * vs['relative']['ci'][1]:+.2f}]") if vs else "—"
        lines.append(f"| {r['shape']} | {r['rows_len']} | {r['run']} | {r.get('step_examples') or '—'} | "
                     f"{r['seed']} | {r['k']:.1f} | "
                     f"{r['rows_per_step']} | {r['learning_rate']:.3g} | {r['steps']} | {r['train_seconds']} | "
                     f"{ppl:.3f} | {cell} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="exchange:1024,triples:1024,exchange:512", help="name:rows, comma-separated")
    ap.add_argument("--seeds", default="42,43", help="the kit's seeds")
    ap.add_argument("--recipe-seeds", default="42", help="the recipe's seeds (the kit's seed of the same value is "
                                                          "compared with it, else the first)")
    ap.add_argument("--step-examples", default="2", help="the kit's PACKED_STEP_EXAMPLES, comma-separated (the "
                                                             "first for every seed, the others for the first seed)")
    ap.add_argument("--out", default="bench/shapes_out", help="work folder; runs already in its shapes.jsonl are "
                                                              "reused")
    ap.add_argument("--quantization", default="4bit")
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--ppl-batch", type=int, default=32)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the script")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.smoke:
        a.quantization, a.n_train, a.n_test, a.batch, a.max_steps, a.ppl_batch, a.bootstrap = "none", 24, 6, 4, 2, 4, 50
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from helpers.core.jsonl import write_jsonl
    train_rows, test_rows = baseline_split(a.n_train, a.n_test)
    done: list[dict] = []
    if (out / "shapes.jsonl").exists():
        done = [json.loads(x) for x in (out / "shapes.jsonl").read_text().splitlines() if x.strip()]

    def run(shape, rows_len, packed, seed, data, seqs, step_examples=2.0) -> dict:
        key = (shape, rows_len if packed else a.max_len, "kit" if packed else "recipe", seed,
               step_examples if packed else None)
        for r in done:
            if (r["shape"], r["rows_len"], r["run"], r["seed"], r.get("step_examples")) == key:
                return r
        r = one_run(a, shape, rows_len, packed, seed, data, seqs, step_examples)
        if packed:
            recipe = recipes.get(seed) or next(iter(recipes.values()))
            r["vs_recipe"] = compare(r, recipe, a.bootstrap)
        done.append(r)
        print("RESULT " + json.dumps({k: v for k, v in r.items() if k != "nll"}), flush=True)
        with open(out / "shapes.jsonl", "w") as f:
            f.writelines(json.dumps(x) + "\n" for x in done)
        return r

    steps = [float(x) for x in a.step_examples.split(",") if x.strip()]
    for spec in [s.strip() for s in a.shapes.split(",") if s.strip()]:
        shape, rows_len = spec.split(":")[0], int(spec.split(":")[1]) if ":" in spec else 512
        tr, te = shaped(train_rows, shape), shaped(test_rows, shape)
        data = out / f"{shape}_train.jsonl"
        write_jsonl(data, tr)
        seqs = held_out_sequences(te, a.max_len)
        recipes: dict = {}
        for seed in [int(s) for s in a.recipe_seeds.split(",") if s.strip()]:
            recipes[seed] = run(shape, rows_len, False, seed, data, seqs)
        for i, seed in enumerate([int(s) for s in a.seeds.split(",") if s.strip()]):
            for x in steps if i == 0 else steps[:1]:
                run(shape, rows_len, True, seed, data, seqs, x)
    print(table(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
