"""A forgetting test that forgets, and what replay, a smaller rate or fewer epochs do about it (issue 31).

QUALITY.md §3 (notebook 03's recipe on the R manuals, 1 and 3 epochs at 5e-5) found no forgetting
at all, so it could not show that replay helps. Seed 004's collapse came from raw-text SFT of an
instruct model on a small single-author corpus (about 350k words) for several epochs at a higher
rate: wrong syntax, repeated words and missing spaces after one epoch, hardly readable after six.
This protocol does that with what runs here:

* the model: the embedded SmolLM2-135M-Instruct (the largest real model that installs by name);
* the corpus: the seven R manuals' pages (about 316k words, ``quality.py --extract-r-manuals``),
  every 10th page held out;
* the training: raw text (``mode="pretrain"``, loss on every token, blocks of 512, batch 16),
  LoRA r=16 on every linear layer, no embeddings (the usual recipe, as seed 004 tuned), at each
  run of ``--runs`` ("replay share:epochs:learning rate"; replay from the bundled conversations,
  as notebook 03 does);
* the general set, which is not the replay pool: 60 general questions written for this kit
  (``bench/data/general_questions.txt``) and the base model's own greedy answers to them. Their
  perplexity under the tuned model says how far it drifted from how it answered before; the
  tuned model's own greedy answers give seed 004's symptoms: repeated word 3-grams, glued words
  (over 20 letters), answers that end their turn, and length.

Each figure base vs tuned with a paired bootstrap 95% interval; one table, one JSON line per run
in ``--out/forgetting.jsonl`` (runs already there are not run again).

    python bench/quality.py --extract-r-manuals r_pages.jsonl                 # here (apt-get install r-doc-pdf)
    python bench/forgetting.py --r-text r_pages.jsonl --out /tmp/forget     # GPU
    python bench/forgetting.py --r-text r_pages.jsonl --smoke --out /tmp/f  # tiny CPU check
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from quality import EMBEDDED, _page_pieces, _rel, r_pages_split, replay_figures  # noqa: E402

QUESTIONS = HERE / "data" / "general_questions.txt"
DEFAULT_RUNS = "0:1:1e-3,0:3:1e-3,0:6:1e-3,0.2:6:1e-3,0:6:2e-4"


def questions(n: int | None = None) -> list[str]:
    lines = [x.strip() for x in QUESTIONS.read_text(encoding="utf-8").splitlines()]
    return [x for x in lines if x and not x.startswith("#")][:n]


def general_set(model_name: str, quant: str, qs: list[str], max_new: int, batch: int, max_len: int):
    """The general prompts and the base model's own greedy answers as scored conversations."""
    from helpers.common.generate import generate_answers
    from helpers.common.models import load_model
    from helpers.common.prompts import encode, prompt_text
    model, tok = load_model(model_name, quantization=quant)
    rows = [{"messages": [{"role": "user", "content": q}]} for q in qs]
    prompts = [prompt_text(tok, r) for r in rows]
    answers = generate_answers(model, tok, prompts, max_new_tokens=max_new, batch_size=batch)["answers"]
    del model
    convs = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
             for q, a in zip(qs, answers) if a.strip()]
    seqs = [{k: e[k] for k in ("input_ids", "completion_mask")} for e in (encode(tok, r, "auto", max_len)
                                                                            for r in convs)]
    return prompts, seqs, tok


def one_run(a, share: float, epochs: float, lr: float, data: Path, figures_args: tuple) -> dict:
    from helpers.train import TrainConfig, train
    name = f"share{share:g}_ep{epochs:g}_lr{lr:g}"
    cfg = TrainConfig(model_name=a.model, mode="pretrain", dataset_path=str(data), output_dir=str(Path(a.out) / name),
                      quantization=a.quantization, lora_r=16, lora_alpha=16, lora_dropout=0.0, learning_rate=lr,
                      max_seq_len=a.max_len, num_train_epochs=epochs, max_steps=a.max_steps,
                      per_device_batch_size=a.batch, gradient_accumulation_steps=1, warmup_ratio=0.03,
                      eval_fraction=0.0, eval_steps=0, save_steps=100000, logging_steps=10, report_to="none",
                      resume="never", seed=a.seed, gradient_checkpointing=not a.smoke, replay_share=share)
    t = time.time()
    result = train(cfg, log=lambda *x: None)
    wall = time.time() - t
    m = result.metrics
    res = replay_figures(a.model, str(result.adapter_dir), a.quantization, *figures_args)
    return {"run": name, "replay_share": share, "epochs": epochs, "learning_rate": lr, "steps": m["steps"],
            "train_seconds": m["train_seconds"], "wall_seconds": round(wall, 1), "train_loss": m["train_loss"],
            "replay_blocks": (m["data"].get("replay") or {}).get("replay", 0), "seed": a.seed, **res}


def _fig(r: dict, key: str, f: str) -> str:
    d = r[key]
    ci = d["diff"].get("ci")
    return (f"{format(d['base']['value'], f)} → {format(d['tuned']['value'], f)}"
            + (f" [{format(ci[0], '+' + f)}, {format(ci[1], '+' + f)}]" if ci else ""))


def table(rows: list[dict]) -> str:
    lines = ["| replay share | epochs | lr | steps | train s | R-page ppl | general ppl (base's answers) [diff CI] | "
             "repeated 3-grams | glued words | ended turn | answer words |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['replay_share']:g} | {r['epochs']:g} | {r['learning_rate']:g} | {r['steps']} | "
                     f"{r['train_seconds']} | {_rel(r['r_perplexity'])} | {_fig(r, 'general_perplexity', '.2f')} | "
                     f"{_fig(r, 'rep3', '.3f')} | {_fig(r, 'glued', '.3f')} | {_fig(r, 'ended', '.2f')} | "
                     f"{_fig(r, 'words', '.1f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--r-text", required=True, help="JSONL of R manual pages ({source, page, text})")
    ap.add_argument("--runs", default=DEFAULT_RUNS, help="share:epochs:lr, comma-separated")
    ap.add_argument("--out", default="bench/forgetting_out")
    ap.add_argument("--model", default=EMBEDDED)
    ap.add_argument("--quantization", default="4bit")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--max-new", type=int, default=128)
    ap.add_argument("--ppl-batch", type=int, default=32)
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the script")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    n_q = None
    if a.smoke:
        a.quantization, a.batch, a.max_len, a.max_steps, a.max_new = "none", 2, 96, 2, 12
        a.ppl_batch, a.gen_batch, a.bootstrap, a.runs, n_q = 4, 4, 50, "0:1:1e-3,0.2:1:1e-3", 4
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    _, test = r_pages_split(a, out)
    prompts, general_seqs, tok = general_set(a.model, a.quantization, questions(n_q), a.max_new, a.gen_batch,
                                             a.max_len)
    r_seqs = _page_pieces(tok, test, a.max_len)
    figures_args = (r_seqs, general_seqs, prompts, a.max_new, a.ppl_batch, a.gen_batch, a.bootstrap)
    path = out / "forgetting.jsonl"
    done = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    for spec in [s.strip() for s in a.runs.split(",") if s.strip()]:
        share, epochs, lr = (float(x) for x in spec.split(":"))
        if any((r["replay_share"], r["epochs"], r["learning_rate"]) == (share, epochs, lr) for r in done):
            continue
        row = one_run(a, share, epochs, lr, out / "train.jsonl", figures_args)
        done.append(row)
        with open(path, "a") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
        print("RESULT " + json.dumps({k: v for k, v in row.items() if k != "examples"}, default=str)[:600], flush=True)
    print(table(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
