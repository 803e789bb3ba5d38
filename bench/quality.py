"""Fine-tune quality on real data, our training path, the protocol of ../shared/bench/quality_baseline.py.

Two experiments, base vs tuned on held-out data never seen in training, with 95% paired
bootstrap intervals (``helpers.evaluation.report``):

1. chat: SmolLM2-135M-Instruct (embedded) in 4-bit, LoRA via ``helpers.train.loop`` on 3,000
   chitchat-dataset conversations (first 12 turns, first speaker = user), 1 epoch, batch 16,
   max 512 tokens, lr 2e-4, 10 warm-up steps; 300 other conversations held out. Metrics as the
   baseline: perplexity of every held-out assistant reply (reply tokens only, 512 tokens per
   conversation) and ROUGE-L F1 of the greedy first reply (at most 48 new tokens), both the
   baseline's way (lower-cased whitespace words) and rouge-score's (letters and digits).
   The usual recipe's figures (BENCHMARKS.md): ppl 55.46 → 26.67, ROUGE-L 0.060 → 0.069, 125 s.
2. R manuals: continued pretraining (``mode="pretrain"``) on the pages of the R manuals, every
   10th page of each manual held out; perplexity of the held-out pages (every token).
3. Replay (``--replay``, issue 20: forgetting): the R-manual protocol with notebook 03's recipe
   (``TrainConfig.notebook_defaults()["03"]``: r=64, alpha=32, embeddings trained, lr 5e-5) at
   each replay share of ``--replay`` (default 0, 0.1, 0.2, 0.4; the bundled conversations' train
   split, ``REPLAY_SHARE`` of the packed blocks) and each epoch count of ``--replay-epochs``
   (default 1 and 3). For each run, base vs tuned: held-out R-page perplexity; general perplexity
   of the replies of the bundled conversations' test split (100, never trained on nor drawn for
   replay); and degeneration of the greedy first replies to those conversations (at most
   ``--replay-max-new`` tokens): repeated word 3-gram share, answer length in words, the share of
   answers that end their turn, and the share of glued words (over 20 letters: the "missing
   spaces" of seed 004). One table, and one JSON line per run appended to ``replay.jsonl``.
4. Packing (``--experiment packing``, issue 21): packed vs padded training on the same
   conversations at about the same conversations per step (:func:`packing_match`), each seed of
   ``--match-seeds``; the held-out loss per reply token of every run, against the padded runs'
   seed-to-seed spread.

Experiment 1 trains with the kit's defaults, so with ``PACKING`` on (``--packing off`` for the
padded path); ``--epochs 1,2`` runs it once per epoch count.

    python bench/quality.py --experiment chat --out /tmp/q           # GPU
    python bench/quality.py --experiment packing --quantization 16bit --out /tmp/q   # GPU: 2 seeds x packed/padded
    python bench/quality.py --extract-r-manuals r_pages.jsonl        # here: PDFs -> page text
    python bench/quality.py --experiment rdocs --r-text r_pages.jsonl --out /tmp/q   # GPU
    python bench/quality.py --smoke                                  # tiny CPU check of both
    python bench/quality.py --replay --r-text r_pages.jsonl --out /tmp/q          # GPU: 4 shares x 1, 3 epochs
    python bench/quality.py --replay 0,0.2 --replay-epochs 1 --r-text r_pages.jsonl --smoke   # tiny CPU check

The GPU machine has no R manuals: extract the page text here (needs ``apt-get install
r-doc-pdf``; uses helpers.dataset.pdf, else pypdf) and carry the JSONL. Prints a table last and writes
``quality.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EMBEDDED = "embedded/smollm2-135m-instruct"


# ----------------------------------------------------------------------------------------------
# Metrics as the baseline computes them
# ----------------------------------------------------------------------------------------------
def _lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_baseline(pred: str, ref: str) -> float:
    """ROUGE-L F1 over lower-cased whitespace words, exactly as quality_baseline.py."""
    p, r = pred.lower().split(), ref.lower().split()
    if not p or not r:
        return 0.0
    n = _lcs(p, r)
    if n == 0:
        return 0.0
    prec, rec = n / len(p), n / len(r)
    return 2 * prec * rec / (prec + rec)


def base_vs_tuned(adapter_dir: str, quant: str, ppl_seqs: list[dict], gen_rows: list[dict] | None,
                  max_new: int, ppl_batch: int, gen_batch: int, boot: int) -> dict:
    """Perplexity (and ROUGE-L of generated first replies) for the adapter off and on, one load."""
    from helpers.evaluation.perplexity import sequence_nll
    from helpers.evaluation.stats import paired_bootstrap
    from helpers.evaluation.metrics import rouge_scores
    from helpers.common.generate import adapter_disabled, generate_answers
    from helpers.common.models import load_model
    from helpers.common.prompts import prompt_text, reference
    model, tok = load_model(EMBEDDED, quantization=quant, adapter=adapter_dir)
    res: dict = {}
    per: dict = {}
    for which in ("base", "tuned"):
        ctx = adapter_disabled(model) if which == "base" else contextlib.nullcontext()
        with ctx:
            t = time.time()
            nll, cnt, _ = sequence_nll(model, tok, ppl_seqs, batch_size=ppl_batch)
            per[which] = {"ppl": list(zip(nll, cnt)), "ppl_s": time.time() - t}
            if gen_rows:
                prompts = [prompt_text(tok, r) for r in gen_rows]
                g = generate_answers(model, tok, prompts, max_new_tokens=max_new, batch_size=gen_batch)
                refs = [reference(r) for r in gen_rows]
                per[which]["rl_base"] = [rouge_l_baseline(a, r) for a, r in zip(g["answers"], refs)]
                per[which]["rl_rs"] = rouge_scores(g["answers"], refs, "rouge-score")[0]["rougeL"]
                per[which]["examples"] = [{"reference": r, "answer": a} for r, a in list(zip(refs, g["answers"]))[:3]]
                per[which]["gen_tok_s"] = g["tokens_per_second"]
    res["perplexity"] = paired_bootstrap(per["base"]["ppl"], per["tuned"]["ppl"], "ppl", boot)
    res["scored_tokens"] = sum(c for _, c in per["base"]["ppl"])
    if gen_rows:
        res["rougeL_baseline_way"] = paired_bootstrap(per["base"]["rl_base"], per["tuned"]["rl_base"], "mean", boot)
        res["rougeL_rouge_score"] = paired_bootstrap(per["base"]["rl_rs"], per["tuned"]["rl_rs"], "mean", boot)
        res["examples"] = {w: per[w]["examples"] for w in ("base", "tuned")}
        res["generated_tokens_per_second"] = {w: per[w]["gen_tok_s"] for w in ("base", "tuned")}
    del model
    return res


# ----------------------------------------------------------------------------------------------
# Experiment 1: chitchat
# ----------------------------------------------------------------------------------------------
def baseline_split(n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    """The baseline's exact conversations and shuffle (quality_baseline.py ``conversations``): it
    keeps one conversation with an empty turn that helpers.common.data drops (4,018 vs 4,017), which
    shifts the whole shuffle, so this is what makes the held-out set the same 300."""
    import random
    from helpers.common.resources import chitchat_path
    d = json.loads(chitchat_path().read_text())
    out = []
    for k in sorted(d):
        turns = d[k]["messages"]
        if len(turns) < 2:
            continue
        first = turns[0][0]["sender"]
        msgs: list[dict] = []
        for t in turns[:12]:
            role = "user" if t[0]["sender"] == first else "assistant"
            text = "\n".join(m["text"] for m in t).strip()
            if msgs and msgs[-1]["role"] == role:
                msgs[-1]["content"] += "\n" + text
            else:
                msgs.append({"role": role, "content": text})
        if any(m["role"] == "assistant" for m in msgs):
            out.append({"id": k, "messages": msgs})
    random.Random(0).shuffle(out)
    return out[:n_train], out[-n_test:]


def chat_recipe(a, dataset: Path, out: Path, **run):
    """The chat protocol's recipe (the baseline's: LoRA r=16, alpha 16, no dropout, lr 2e-4, one
    micro-batch per step, no validation split, no checkpoints) for the embedded model, with the
    run's own ``run`` settings (packing, epochs, steps, batch, warm-up, seed)."""
    from helpers.train import TrainConfig
    return TrainConfig(model_name=EMBEDDED, dataset_path=str(dataset), output_dir=str(out), quantization=a.quantization,
                       lora_r=16, lora_alpha=16, lora_dropout=0.0, max_seq_len=a.max_len, gradient_accumulation_steps=1,
                       learning_rate=2e-4, eval_fraction=0.0, eval_steps=0, save_steps=100000, logging_steps=10,
                       report_to="none", resume="never", gradient_checkpointing=not a.smoke, **run)


def chat_warmup(a) -> float:
    """The chat runs' WARMUP_RATIO: ``--warmup kit`` is the kit's default (a share of the run's
    steps, so it shrinks with the packed run's fewer steps); ``--warmup recipe`` is the usual
    recipe's 10 optimizer steps whatever a step holds (QUALITY.md 1b and 1c). Short runs
    (``--max-steps`` of 20 or fewer) warm up for no step."""
    from helpers.train import TrainConfig
    if 0 < a.max_steps <= 20:
        return 0
    return 10 if a.warmup == "recipe" else TrainConfig.warmup_ratio


def chat(a, work: Path, epochs: float, lr_scaling: str) -> dict:
    from helpers.common.rows import held_out_turns
    from helpers.common.resources import split_chitchat
    from helpers.core.jsonl import write_jsonl
    from helpers.train import train
    if a.split == "baseline":
        train_rows, test_rows = baseline_split(a.n_train, a.n_test)
    else:
        train_rows, test_rows = split_chitchat(a.n_train, a.n_test, seed=0, max_turns=12)
    train_ids = {r["id"] for r in train_rows}
    assert not any(r["id"] in train_ids for r in test_rows), "a held-out conversation is in the training set"
    write_jsonl(work / "chat" / "train.jsonl", train_rows)
    write_jsonl(work / "chat" / "test.jsonl", test_rows)
    packing = a.packing == "on"
    name = f"run_{'packed_' + lr_scaling if packing else 'padded'}_e{epochs:g}"
    cfg = chat_recipe(a, work / "chat" / "train.jsonl", work / "chat" / name,
                      packing=packing, num_train_epochs=epochs, max_steps=a.max_steps, per_device_batch_size=a.batch,
                      warmup_ratio=chat_warmup(a), seed=a.seed, packed_lr_scaling=lr_scaling)
    t = time.time()
    result = train(cfg)
    wall = time.time() - t
    res = base_vs_tuned(str(result.adapter_dir), a.quantization, held_out_sequences(test_rows, a.max_len),
                        held_out_turns(test_rows), a.max_new, a.ppl_batch, a.gen_batch, a.bootstrap)
    pk = result.metrics["data"]["train"].get("packing") or {}
    return {
        "experiment": f"chat ({'packed, lr ' + lr_scaling if packing else 'padded'}, "
                      f"{epochs:g} epoch{'s' if epochs != 1 else ''})",
        "split": a.split,
        "n_train": len(train_rows),
        "n_test": len(test_rows),
        "packing": packing,
        "epochs": epochs,
        "lr_scaling": lr_scaling if packing else None,
        "learning_rate": pk.get("learning_rate", cfg.learning_rate),
        "steps": result.metrics["steps"],
        "warmup_ratio": cfg.warmup_ratio,
        "train_seconds": result.metrics["train_seconds"],
        "train_wall_seconds": round(wall, 1),
        "train_loss": result.metrics["train_loss"],
        "peak_memory_gib": result.metrics["peak_memory_gib"],
        "tokens_per_second": result.metrics["tokens_per_second"],
        **res,
    }


def held_out_sequences(test_rows: list[dict], max_len: int) -> list[dict]:
    """The held-out conversations encoded as in training (loss mask on the replies), for perplexity."""
    from helpers.common.models import load_tokenizer
    from helpers.common.prompts import encode
    tok = load_tokenizer(EMBEDDED)
    return [{"input_ids": e["input_ids"], "completion_mask": e["completion_mask"]}
            for e in (encode(tok, r, "auto", max_len) for r in test_rows)]


def packing_match(a, work: Path) -> list[dict]:
    """Packed vs padded training on the same conversations (experiment "packing"): one epoch over the
    first ``--match-examples`` training conversations of the chat protocol, padded at ``--match-batch``
    conversations per step (``--match-examples / --match-batch`` steps: 300 by default) and packed
    at ``--match-batch / 2`` rows of MAX_SEQ_LEN per step (about as many conversations per step:
    a 512-token row holds 2.3 of them on average), with the same learning-rate schedule
    (PACKED_LR_SCALING="none"), for each seed of ``--match-seeds``; the held-out loss per reply token
    (the log of the perplexity) of every run. The
    spread between seeds of the padded runs is the noise the packed run's difference is read against."""
    from helpers.core.jsonl import write_jsonl
    from helpers.evaluation.perplexity import perplexity, sequence_nll
    from helpers.common.models import load_model
    from helpers.train import train
    train_rows, test_rows = baseline_split(a.n_train, a.n_test)
    rows = train_rows[:a.match_examples]
    write_jsonl(work / "match" / "train.jsonl", rows)
    seqs = held_out_sequences(test_rows, a.max_len)
    out = []
    for seed in [int(x) for x in a.match_seeds.split(",") if x.strip()]:
        for packing in (False, True):
            name = f"{'packed' if packing else 'padded'}_s{seed}"
            cfg = chat_recipe(a, work / "match" / "train.jsonl", work / "match" / name, packing=packing,
                              num_train_epochs=1.0, max_steps=-1, warmup_ratio=10, seed=seed,
                              per_device_batch_size=max(1, a.match_batch // 2) if packing else a.match_batch,
                              packed_lr_scaling="none")  # about as many conversations per step either way
            result = train(cfg)
            model, tok = load_model(EMBEDDED, quantization=a.quantization, adapter=str(result.adapter_dir))
            nll, cnt, _ = sequence_nll(model, tok, seqs, batch_size=a.ppl_batch)
            del model
            ppl = perplexity(nll, cnt)
            m = result.metrics
            out.append({"experiment": "packing", "packing": packing, "seed": seed, "examples": len(rows),
                        "steps": m["steps"], "train_seconds": m["train_seconds"], "train_loss": m["train_loss"],
                        "tokens_per_second": m["tokens_per_second"], "held_out_tokens": sum(cnt),
                        "held_out_loss": round(math.log(ppl), 4), "held_out_ppl": round(ppl, 3),
                        "packed_rows": (m.get("data", {}).get("train", {}).get("packing") or {}).get("rows")})
            print(
                f"packing match: {name}: {m['steps']} steps, {m['train_seconds']} s, held-out loss {math.log(ppl):.4f} "
                f"(ppl {ppl:.2f})",
                flush=True,
            )
    return out


def packing_table(results: list[dict]) -> str:
    lines = [
        "| run | seed | steps | train s | held-out loss per reply token | perplexity |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {'packed' if r['packing'] else 'padded'} | {r['seed']} | {r['steps']} | {r['train_seconds']} | "
            f"{r['held_out_loss']:.4f} | {r['held_out_ppl']:.2f} |"
        )
    pad = [r["held_out_loss"] for r in results if not r["packing"]]
    pk = [r["held_out_loss"] for r in results if r["packing"]]
    if pad and pk:
        lines.append(f"\npacked − padded, mean over seeds: {sum(pk) / len(pk) - sum(pad) / len(pad):+.4f}"
                     + (f"; padded seed-to-seed spread: {max(pad) - min(pad):.4f}" if len(pad) > 1 else ""))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Experiment 2: R manuals, continued pretraining
# ----------------------------------------------------------------------------------------------
def extract_r_manuals(out: str, folder: str = "/usr/share/R/doc/manual") -> int:
    """Page text of the R manuals (refman.pdf and fullrefman.pdf left out) as {source, page, text} rows."""
    from helpers.core.jsonl import write_jsonl
    pdfs = sorted(p for p in Path(folder).glob("*.pdf") if p.name not in ("refman.pdf", "fullrefman.pdf"))
    if not pdfs:
        raise SystemExit(f"No R manuals in {folder}: `apt-get install r-doc-pdf`, or pass --r-text with page text.")
    rows = []
    for p in pdfs:
        try:
            from helpers.dataset.pdf_extract import extract_pages
            pages, _ = extract_pages(p)
        except ImportError:
            import pypdf
            pages = [pg.extract_text() or "" for pg in pypdf.PdfReader(str(p)).pages]
        rows += [
            {"source": p.name, "page": i + 1, "text": t.strip()} for i, t in enumerate(pages) if len(t.split()) >= 20
        ]
    write_jsonl(out, rows)
    print(f"{len(rows)} pages of {len(pdfs)} manuals -> {out}")
    return len(rows)


def r_pages_split(a, folder: Path) -> tuple[list[dict], list[dict]]:
    """(training pages, held-out pages) of --r-text: every 10th page of each manual is held out and
    never trained on; the training pages are written to ``folder/train.jsonl`` as {"text"} rows."""
    from helpers.core.jsonl import read_jsonl, write_jsonl
    pages = read_jsonl(a.r_text)
    if a.smoke:
        pages = pages[:40]
    test = [p for p in pages if p["page"] % 10 == 0]
    train_pages = [p for p in pages if p["page"] % 10 != 0]
    write_jsonl(folder / "train.jsonl", [{"text": p["text"]} for p in train_pages])
    return train_pages, test


def rdocs(a, work: Path) -> dict:
    from helpers.common.models import load_tokenizer
    from helpers.train import TrainConfig, train
    if not a.r_text:
        raise SystemExit("--experiment rdocs needs --r-text (page text from --extract-r-manuals).")
    train_pages, test = r_pages_split(a, work / "rdocs")
    cfg = TrainConfig(model_name=EMBEDDED, mode="pretrain", dataset_path=str(work / "rdocs" / "train.jsonl"),
                      output_dir=str(work / "rdocs" / "run"), quantization=a.quantization, lora_r=16, lora_alpha=16,
                      max_seq_len=a.max_len, num_train_epochs=a.r_epochs, max_steps=a.max_steps,
                      per_device_batch_size=a.batch, gradient_accumulation_steps=1, learning_rate=2e-4,
                      warmup_ratio=0.03, eval_fraction=0.0, eval_steps=0, save_steps=100000, logging_steps=10,
                      report_to="none", resume="never", seed=a.seed, gradient_checkpointing=not a.smoke)
    t = time.time()
    result = train(cfg)
    wall = time.time() - t
    tok = load_tokenizer(EMBEDDED)
    seqs = []
    for p in test:  # each held-out page on its own, every token scored (cut into max_len pieces)
        ids = tok(p["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        for s in range(0, len(ids), a.max_len):
            piece = ids[s:s + a.max_len]
            if len(piece) >= 16:
                seqs.append({"input_ids": piece, "completion_mask": [1] * len(piece)})
    res = base_vs_tuned(str(result.adapter_dir), a.quantization, seqs, None, 0, a.ppl_batch, a.gen_batch, a.bootstrap)
    return {"experiment": "rdocs", "train_pages": len(train_pages), "test_pages": len(test),
            "manuals": sorted({p["source"] for p in train_pages + test}), "steps": result.metrics["steps"],
            "train_seconds": result.metrics["train_seconds"], "train_wall_seconds": round(wall, 1),
            "train_loss": result.metrics["train_loss"], "peak_memory_gib": result.metrics["peak_memory_gib"], **res}


# ----------------------------------------------------------------------------------------------
# Experiment 3: replay against forgetting (R manuals + general conversations)
# ----------------------------------------------------------------------------------------------
GLUED = 20  # letters: a "word" this long is words whose spaces went missing


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """Share of an answer's word n-grams that repeat an earlier n-gram of the same answer."""
    w = text.lower().split()
    grams = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    if not grams:
        return 0.0
    seen: set = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


def degeneration(answers: list[str], stopped: list[bool]) -> dict:
    """Per-answer figures (for the bootstrap) of greedy answers: repeated 3-grams, length in words,
    whether the answer ended its turn, share of glued words."""
    words = [a.split() for a in answers]
    return {"rep3": [repeated_ngram_share(a) for a in answers], "words": [float(len(w)) for w in words],
            "ended": [1.0 if s else 0.0 for s in stopped],
            "glued": [sum(len(x) > GLUED and x.isalpha() for x in w) / max(1, len(w)) for w in words]}


def replay_figures(model_name: str, adapter_dir: str, quant: str, r_seqs: list[dict], general_seqs: list[dict],
                   prompts: list[str], max_new: int, ppl_batch: int, gen_batch: int, boot: int) -> dict:
    """R-page and general perplexity, and degeneration of greedy general answers, adapter off and on."""
    from helpers.evaluation.perplexity import sequence_nll
    from helpers.evaluation.stats import paired_bootstrap
    from helpers.common.generate import adapter_disabled, generate_answers
    from helpers.common.models import load_model
    model, tok = load_model(model_name, quantization=quant, adapter=adapter_dir)
    per: dict = {}
    for which in ("base", "tuned"):
        with adapter_disabled(model) if which == "base" else contextlib.nullcontext():
            r_nll, r_cnt, _ = sequence_nll(model, tok, r_seqs, batch_size=ppl_batch)
            g_nll, g_cnt, _ = sequence_nll(model, tok, general_seqs, batch_size=ppl_batch)
            g = generate_answers(model, tok, prompts, max_new_tokens=max_new, batch_size=gen_batch)
        per[which] = {"r": list(zip(r_nll, r_cnt)), "general": list(zip(g_nll, g_cnt)),
                      **degeneration(g["answers"], g["stopped"]), "examples": g["answers"][:3]}
    del model
    out = {"r_perplexity": paired_bootstrap(per["base"]["r"], per["tuned"]["r"], "ppl", boot),
           "general_perplexity": paired_bootstrap(per["base"]["general"], per["tuned"]["general"], "ppl", boot),
           "r_tokens": sum(c for _, c in per["base"]["r"]), "general_tokens": sum(c for _, c in per["base"]["general"]),
           "examples": {w: per[w]["examples"] for w in ("base", "tuned")}}
    for key in ("rep3", "words", "ended", "glued"):
        out[key] = paired_bootstrap(per["base"][key], per["tuned"][key], "mean", boot)
    return out


def _page_pieces(tok, pages: list[dict], max_len: int) -> list[dict]:
    """Each page on its own, every token scored, cut into max_len pieces."""
    seqs = []
    for p in pages:
        ids = tok(p["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        for s in range(0, len(ids), max_len):
            piece = ids[s:s + max_len]
            if len(piece) >= 16:
                seqs.append({"input_ids": piece, "completion_mask": [1] * len(piece)})
    return seqs


def replay(a, work: Path) -> list[dict]:
    from helpers.core.config import notebook_defaults_for
    from helpers.common.rows import held_out_turns
    from helpers.core.jsonl import read_jsonl
    from helpers.common.resources import chitchat
    from helpers.common.models import load_tokenizer
    from helpers.common.prompts import encode, prompt_text
    from helpers.train import TrainConfig, train
    if not a.r_text:
        raise SystemExit("--replay needs --r-text (page text from --extract-r-manuals).")
    shares = [float(x) for x in a.replay.split(",") if x.strip()]
    epochs = [float(x) for x in a.replay_epochs.split(",") if x.strip()]
    train_pages, test = r_pages_split(a, work / "replay")
    general = read_jsonl(chitchat("test"))[: 8 if a.smoke else None]
    tok = load_tokenizer(a.model)
    r_seqs = _page_pieces(tok, test, a.max_len)
    general_seqs = [{k: e[k] for k in ("input_ids", "completion_mask")}
                    for e in (encode(tok, r, "auto", a.max_len) for r in general)]
    prompts = [prompt_text(tok, r) for r in held_out_turns(general)]
    recipe = {k: v for k, v in notebook_defaults_for(TrainConfig, "03").items()
              if k in ("lora_r", "lora_alpha", "train_embeddings", "embedding_lr_ratio", "learning_rate")}
    results = []
    for ep in epochs:
        for share in shares:
            name = f"replay{share:g}_ep{ep:g}"
            cfg = TrainConfig(model_name=a.model, mode="pretrain", dataset_path=str(work / "replay" / "train.jsonl"),
                              output_dir=str(work / "replay" / name), quantization=a.quantization, **recipe,
                              max_seq_len=a.max_len, num_train_epochs=ep, max_steps=a.max_steps,
                              per_device_batch_size=a.batch, gradient_accumulation_steps=1, warmup_ratio=0.03,
                              eval_fraction=0.0, eval_steps=0, save_steps=100000, logging_steps=10, report_to="none",
                              resume="never", seed=a.seed, gradient_checkpointing=not a.smoke, replay_share=share)
            t = time.time()
            result = train(cfg)
            wall = time.time() - t
            res = replay_figures(a.model, str(result.adapter_dir), a.quantization, r_seqs, general_seqs, prompts,
                                 a.replay_max_new, a.ppl_batch, a.gen_batch, a.bootstrap)
            m = result.metrics
            rep = m["data"].get("replay") or {}
            row = {"experiment": "replay", "model": a.model, "replay_share": share, "epochs": ep,
                   "train_pages": len(train_pages), "test_pages": len(test), "general_conversations": len(general),
                   "domain_blocks": m["data"]["train"]["blocks"], "replay_blocks": rep.get("replay", 0),
                   "replay_passes": rep.get("passes", 0), "steps": m["steps"], "train_seconds": m["train_seconds"],
                   "train_wall_seconds": round(wall, 1), "train_loss": m["train_loss"],
                   "peak_memory_gib": m["peak_memory_gib"], "recipe": recipe, "max_len": a.max_len,
                   "batch": a.batch, "quantization": a.quantization, "seed": a.seed, "device": _device(),
                   "command": " ".join(sys.argv), **res}
            with open(work / "replay.jsonl", "a") as fh:
                fh.write(json.dumps(row, default=str) + "\n")
            results.append(row)
            print(
                f"{name}: R-page ppl {res['r_perplexity']['base']['value']:.2f} -> "
                f"{res['r_perplexity']['tuned']['value']:.2f}, "
                f"general ppl {res['general_perplexity']['base']['value']:.2f}"
                f" -> {res['general_perplexity']['tuned']['value']:.2f}",
                flush=True,
            )
    return results


def _device() -> str:
    import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _rel(d: dict) -> str:
    b, t = d["base"]["value"], d["tuned"]["value"]
    return f"{b:.2f} → {t:.2f} ({100 * (t - b) / b:+.1f}%)" if b else f"{b:.2f} → {t:.2f}"


def replay_table(results: list[dict]) -> str:
    lines = [
        "| replay share | epochs | steps (replay blocks) | train s | R-page ppl base → tuned "
        "| general ppl base → tuned | repeated 3-grams | answer words | ended turn | glued words |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fig = lambda k, f: f"{format(r[k]['base']['value'], f)} → {format(r[k]['tuned']['value'], f)}"  # noqa: E731
        lines.append(f"| {r['replay_share']:g} | {r['epochs']:g} | {r['steps']} ({r['replay_blocks']}) | "
                     f"{r['train_seconds']} | {_rel(r['r_perplexity'])} | {_rel(r['general_perplexity'])} | "
                     f"{fig('rep3', '.3f')} | {fig('words', '.1f')} | {fig('ended', '.2f')} | {fig('glued', '.3f')} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
def _ci(d: dict, f: str) -> str:
    s = format(d["value"], f)
    return s + (f" [{format(d['ci'][0], f)}, {format(d['ci'][1], f)}]" if "ci" in d else "")


def table(results: list[dict]) -> str:
    lines = ["| experiment | metric | base | tuned | tuned − base | train s (steps) |", "|---|---|---|---|---|---|"]
    for r in results:
        tr = f"{r['train_seconds']} ({r['steps']})"
        lines.append(f"| {r['experiment']} | held-out perplexity ({r['scored_tokens']:,} tokens) | "
                     f"{_ci(r['perplexity']['base'], '.2f')} | {_ci(r['perplexity']['tuned'], '.2f')} | "
                     f"{_ci(r['perplexity']['diff'], '+.2f')} | {tr} |")
        for key, label in (
            ("rougeL_baseline_way", "ROUGE-L, baseline's words"),
            ("rougeL_rouge_score", "ROUGE-L, rouge-score"),
        ):
            if key in r:
                lines.append(
                    f"| {r['experiment']} | {label} | {_ci(r[key]['base'], '.4f')} | {_ci(r[key]['tuned'], '.4f')} | "
                    f"{_ci(r[key]['diff'], '+.4f')} | |"
                )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="all", choices=["all", "chat", "rdocs", "packing"])
    ap.add_argument("--out", default="bench/quality_out", help="work folder; quality.json goes here")
    ap.add_argument("--quantization", default="4bit")
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument(
        "--split",
        default="baseline",
        choices=["baseline", "kit"],
        help="baseline: the baseline's exact 3,000/300 conversations; kit: helpers.common.resources.split_chitchat",
    )
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--max-steps", "--steps", type=int, default=-1, help="-1 = the epochs (one; --replay-epochs)")
    ap.add_argument("--max-new", type=int, default=48)
    ap.add_argument("--packing", default="on", choices=["on", "off"], help="chat: PACKING (the kit's default: on)")
    ap.add_argument("--epochs", default="1", help="chat: comma-separated epoch counts, one run each")
    ap.add_argument("--warmup", default="kit", choices=["kit", "recipe"],
                    help="chat: the kit's WARMUP_RATIO (a share of the steps) or the usual recipe's 10 steps")
    ap.add_argument(
        "--lr-scaling",
        default="linear",
        help="chat, packed: comma-separated PACKED_LR_SCALING values (the kit's default: linear), one run each",
    )
    ap.add_argument("--match-examples", type=int, default=1200, help="packing: conversations of the packed/padded runs")
    ap.add_argument("--match-batch", type=int, default=4, help="packing: conversations per padded step")
    ap.add_argument("--match-seeds", default="42,43", help="packing: comma-separated seeds")
    ap.add_argument("--ppl-batch", type=int, default=32)
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--r-text", default="", help="JSONL of R manual pages ({source, page, text})")
    ap.add_argument("--r-epochs", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--extract-r-manuals", default="", help="write the R manuals' page text to this JSONL and exit")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the script")
    ap.add_argument("--model", default=EMBEDDED, help="base model of the replay runs (Hub id, folder or embedded name)")
    ap.add_argument(
        "--replay",
        nargs="?",
        const="0,0.1,0.2,0.4",
        default="",
        help="run the replay grid (experiment 3) at these comma-separated shares instead of experiments 1-2",
    )
    ap.add_argument("--replay-epochs", default="1,3", help="comma-separated epoch counts of the replay grid")
    ap.add_argument("--replay-max-new", type=int, default=128, help="new tokens of the greedy general answers")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.extract_r_manuals:
        extract_r_manuals(a.extract_r_manuals)
        return 0
    if a.smoke:
        import torch
        torch.set_num_threads(1)
        a.quantization, a.n_train, a.n_test, a.batch, a.max_len, a.max_steps = "none", 8, 4, 2, 96, 2
        a.match_examples = 8
        a.max_new, a.ppl_batch, a.gen_batch, a.bootstrap, a.replay_max_new = 8, 4, 4, 100, 16
    work = Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    if a.replay:
        results = replay(a, work)
        print(replay_table(results), flush=True)
        print(f"JSON lines appended to {work / 'replay.jsonl'}")
        return 0
    results = []
    if a.experiment == "packing":
        results = packing_match(a, work)
        (work / "packing.json").write_text(json.dumps(results, indent=2) + "\n")
        print(packing_table(results), flush=True)
        return 0
    import torch
    meta = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "seed": a.seed,
    }

    def done(result: dict) -> None:
        """Each run's figures as soon as it ends (quality.json rewritten, a RESULT line), so a run cut
        short keeps the ones before it."""
        results.append(result)
        (work / "quality.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str) + "\n")
        print("RESULT " + json.dumps({k: v for k, v in result.items() if k != "examples"}, default=str), flush=True)

    if a.experiment in ("all", "chat"):
        for ep in [float(x) for x in a.epochs.split(",") if x.strip()]:
            for scaling in [x.strip() for x in a.lr_scaling.split(",") if x.strip()]:
                done(chat(a, work, ep, scaling))
    if a.experiment in ("all", "rdocs") and (a.r_text or a.experiment == "rdocs"):
        done(rdocs(a, work))
    print(table(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
