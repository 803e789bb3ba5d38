"""Base against tuned on one set of prompts: the held-out rows and their references, the prompts fitted
to the context, both models' answers (the adapter switched off and on) and reference perplexities, the
per-example scores, and the paired comparison of the two."""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

from helpers.common.generate import adapter_disabled, generate_answers
from helpers.common.models import ModelLoadError, load_model
from helpers.common.prompts import prompt_text, reference, to_messages
from helpers.common.rows import cut_at_reference
from helpers.core.jsonl import DataError, read_jsonl
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.metrics import EvalError, copy_score, degeneration, is_copy, rouge_scores, words
from helpers.evaluation.perplexity import perplexity, reference_sequences, sequence_nll
from helpers.evaluation.stats import compare_models


def load_references(path: str | os.PathLike, turn: str = "first",
                    max_examples: int = 0) -> tuple[list[dict], list[int]]:
    """Held-out rows cut at their reference, and the indices of rows without one (skipped).

    Raises EvalError when the file has no row with a reference at all."""
    try:
        rows = read_jsonl(path)
    except DataError as exc:
        raise EvalError(str(exc)) from None
    if not rows:
        raise EvalError(f"The test set {str(path)!r} is empty.")
    kept, missing = [], []
    for i, row in enumerate(rows):
        cut = cut_at_reference(row, turn)
        (kept.append(cut) if cut is not None else missing.append(i))
        if max_examples and len(kept) >= max_examples:
            break
    if not kept:
        raise EvalError(
            f"The test set {str(path)!r} has no references to compare against: none of its {len(rows)} rows has a "
            "non-empty 'output' (instruction rows) or an assistant reply after a user turn (conversations). "
            "An evaluation set needs the expected answers; notebook 02 writes them to test.jsonl.")
    if missing:
        print(f"WARNING: {len(missing)} held-out row(s) have no reference and are skipped: rows {missing[:10]}")
    return kept, missing


def prompt_source(row: dict) -> str:
    """The text the model was given (for the copy check): everything before the reference."""
    if "messages" in row:
        return "\n".join(str(m.get("content", "")) for m in row["messages"][:-1] if m.get("role") != "system")
    return "\n".join(x for x in (str(row.get("instruction") or ""), str(row.get("input") or "")) if x.strip())


@dataclass
class Prompts:
    """The held-out rows that are evaluated, their prompts, and how the context limit was applied."""
    rows: list[dict]
    prompts: list[str]
    ctx: int  # tokens the model may see
    room: int  # tokens left for a prompt: ctx - max_new_tokens
    long_idx: list[int]  # rows (before any were skipped) whose prompt was longer than room
    system: str | None = None  # the system prompt put in front of each conversation (SYSTEM_PROMPT)


def load_tuned_model(cfg: EvalConfig, model_name: str):
    """The base model with the adapter attached (switched off for the base answers), and its
    tokenizer; an adapter that does not fit the base is refused with what to set."""
    try:
        model, tok = load_model(model_name, quantization=cfg.quantization, adapter=cfg.adapter_dir)
    except ModelLoadError as exc:
        raise EvalError(str(exc)) from None
    except RuntimeError as exc:
        if "size mismatch" in str(exc):
            raise EvalError(f"The adapter in {cfg.adapter_dir} does not fit {model_name!r} (its weight shapes differ: "
                            "it was trained for another base model). Set MODEL_NAME to the model it was trained "
                            "on.") from None
        raise
    if not hasattr(model, "disable_adapter"):
        raise EvalError(f"{cfg.adapter_dir} did not load as a LoRA adapter; nothing to switch off for the base model.")
    return model, tok


def fit_prompts(cfg: EvalConfig, model, tok, rows: list[dict], style: str, system: str | None, log) -> Prompts:
    """The prompts, with the LONG_PROMPTS policy applied to those that leave no room for an answer
    of MAX_NEW_TOKENS: truncated (keep the end, at generation), skipped, or refused."""
    model_ctx = int(getattr(model.config, "max_position_embeddings", 0) or 0) or 10**9
    ctx = min(cfg.max_context, model_ctx) if cfg.max_context else model_ctx
    room = ctx - cfg.max_new_tokens
    if room < 8:
        raise EvalError(f"MAX_NEW_TOKENS={cfg.max_new_tokens} leaves no room for a prompt in a context of {ctx} "
                        "tokens.")
    prompts = [prompt_text(tok, r, style, system) for r in rows]
    lens = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    long_idx = [i for i, n in enumerate(lens) if n > room]
    if long_idx and cfg.long_prompts == "error":
        raise EvalError(
            f"{len(long_idx)} held-out prompt(s) are longer than the context allows ({room} tokens = context {ctx} - "
            f"MAX_NEW_TOKENS {cfg.max_new_tokens}): rows {long_idx[:10]} with {[lens[i] for i in long_idx[:10]]} "
            "tokens. "
            "Set LONG_PROMPTS='truncate' (keep each prompt's end) or 'skip', or lower MAX_NEW_TOKENS.")
    if long_idx and cfg.long_prompts == "skip":
        keep = [i for i in range(len(rows)) if i not in set(long_idx)]
        if not keep:
            raise EvalError(f"Every held-out prompt is longer than the {room} tokens the context allows; nothing left.")
        rows, prompts = [rows[i] for i in keep], [prompts[i] for i in keep]
    if long_idx:
        log(f"{len(long_idx)} prompt(s) longer than {room} tokens: "
            + ("skipped." if cfg.long_prompts == "skip" else "truncated from the left (their end is kept)."))
    return Prompts(rows=rows, prompts=prompts, ctx=ctx, room=room, long_idx=long_idx, system=system)


def run_both_models(cfg: EvalConfig, model, tok, fit: Prompts, seqs: list[dict], log, cache=None) -> dict[str, dict]:
    """For the base (adapter off) and the tuned model: the generated answers and the NLL of the
    references. ``{"base"|"tuned": {"gen": generate_answers' dict, "nll": [...], "count": [...]}}``.
    With ``cache`` (an ``AnswerCache``) only prompts not answered before are generated."""
    gen_kw = dict(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, do_sample=cfg.do_sample,
                  temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, max_prompt_tokens=fit.room)
    results: dict[str, dict] = {}
    for which in ("base", "tuned"):
        ctxm = adapter_disabled(model) if which == "base" else contextlib.nullcontext()
        with ctxm:
            gen = (cache.generate(which, model, tok, fit.prompts, **gen_kw) if cache is not None
                   else generate_answers(model, tok, fit.prompts, **gen_kw))
            nll, cnt, _ = sequence_nll(model, tok, seqs, cfg.ppl_batch_size, max_len=fit.ctx)
        results[which] = {"gen": gen, "nll": nll, "count": cnt}
        log(f"{which}: {sum(gen['new_tokens'])} tokens generated in {gen['seconds']:.1f}s "
            f"({gen['tokens_per_second']} tok/s); reference perplexity {perplexity(nll, cnt):.2f} "
            f"over {sum(cnt)} tokens")
    return results


def score_answers(cfg: EvalConfig, results: dict[str, dict], rows: list[dict],
                   refs: list[str]) -> tuple[dict[str, dict[str, list]], str]:
    """Per-example values of each model: ROUGE, answer length, stopped, copy score and copy flag,
    the degeneration figures, and (nll, tokens) pairs for perplexity. Returns them and the ROUGE
    library used."""
    backend_used = ""
    per: dict[str, dict[str, list]] = {}
    for which in ("base", "tuned"):
        ans = results[which]["gen"]["answers"]
        rs, backend_used = rouge_scores(ans, refs, cfg.rouge_backend)
        per[which] = {**rs,
                      "answer_words": [len(words(a)) for a in ans],
                      "stop_rate": [1.0 if s else 0.0 for s in results[which]["gen"]["stopped"]],
                      "copy_score": [copy_score(a, prompt_source(r)) for a, r in zip(ans, rows)],
                      "copy_rate": [1.0 if is_copy(a, prompt_source(r), cfg.copy_threshold, cfg.copy_min_words) else 0.0
                                    for a, r in zip(ans, rows)],
                      "ppl_pairs": list(zip(results[which]["nll"], results[which]["count"]))}
        degen = [degeneration(a) for a in ans]
        per[which].update({k: [d[k] for d in degen] for k in ("repeated_3grams", "repeated_words", "glued_words")})
    return per, backend_used


def answer_rows(fit: Prompts, refs: list[str], results: dict[str, dict], per: dict[str, dict[str, list]]) -> list[dict]:
    """One answers.jsonl row per prompt: prompt, its conversation turns (``turns``: what a person reads
    instead of the template text), reference, both answers and their scores."""
    answers = []
    for i, (r, p, ref) in enumerate(zip(fit.rows, fit.prompts, refs)):
        answers.append({"index": i, "id": r.get("id"), "prompt": p, "turns": to_messages(r, fit.system)[:-1],
                        "reference": ref, "question": prompt_source(r),
                        "chunk_id": r.get("chunk_id"),
                        **{w: results[w]["gen"]["answers"][i] for w in ("base", "tuned")},
                        **{f"{w}_{k}": round(float(per[w][k][i]), 4) for w in ("base", "tuned")
                           for k in ("rouge1", "rouge2", "rougeL", "copy_score", "repeated_3grams", "repeated_words",
                                     "glued_words", "stop_rate")},
                        **{f"{w}_ppl": round(math.exp(per[w]["ppl_pairs"][i][0] / max(1, per[w]["ppl_pairs"][i][1])), 3)
                           for w in ("base", "tuned")}})
    return answers


@dataclass
class Comparison:
    """Base and tuned on one set of prompts: the prompts, references, both models' outputs, the
    per-example scores, the ROUGE library used, the compared metrics and the answers.jsonl rows."""
    fit: Prompts
    refs: list[str]
    results: dict[str, dict]
    per: dict[str, dict[str, list]]
    backend: str
    metrics: dict[str, dict]
    answers: list[dict]


def compare_on(cfg: EvalConfig, model, tok, rows: list[dict], style: str, system: str | None, log,
               table: dict | None = None, cache=None) -> Comparison:
    """Fit the prompts, run both models on them, score the answers and compare the metrics of
    ``table`` (``stats.METRICS`` by default) with paired intervals; ``cache``: see ``run_both_models``."""
    fit = fit_prompts(cfg, model, tok, rows, style, system, log)
    refs = [reference(r) for r in fit.rows]
    seqs = reference_sequences(tok, fit.rows, style, system)
    results = run_both_models(cfg, model, tok, fit, seqs, log, cache)
    per, backend = score_answers(cfg, results, fit.rows, refs)
    metrics = compare_models(cfg, per, table)
    answers = answer_rows(fit, refs, results, per)
    return Comparison(fit=fit, refs=refs, results=results, per=per, backend=backend, metrics=metrics,
                      answers=answers)
