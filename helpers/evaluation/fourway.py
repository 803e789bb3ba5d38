"""The retrieval baseline of notebook 05: does fine-tuning beat simply retrieving the passage?

Each held-out question is answered four ways: the base and the tuned model closed book (the in-domain
comparison of ``helpers.evaluation.scoring``), and both again with the top ``RETRIEVAL_K`` chunks of
the user's documents (``helpers.evaluation.retrieval``) in the prompt, cut to the context. All four are
scored with ROUGE, compared pairwise with paired bootstrap intervals over the same questions, and
:func:`four_way_verdict` turns the intervals into one line a person can act on. Retrieval's hit rate
is how often a question's own source chunk (its ``chunk_id``, from notebook 02) is among the top k.
"""
from __future__ import annotations

from pathlib import Path

from helpers.common.prompts import prompt_text
from helpers.core.files import DatasetFiles
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.retrieval import (PASSAGES_HEADER, ChunkIndex, Passage, RetrievalError, passages_block,
                                          question_of, with_passages)
from helpers.evaluation.scoring import Comparison, compare_on
from helpers.evaluation.stats import METRICS, paired_bootstrap

WAYS = {"base": "base, closed book", "tuned": "tuned, closed book",
        "base_rag": "base + retrieved passages", "tuned_rag": "tuned + retrieved passages"}
# (first way, second way): second - first, for the table and the verdict
PAIRS = (("base", "tuned"), ("base", "base_rag"), ("base", "tuned_rag"), ("tuned", "base_rag"),
         ("tuned", "tuned_rag"), ("base_rag", "tuned_rag"))
RAG_TABLE = {k: METRICS[k] for k in ("rouge1", "rouge2", "rougeL", "perplexity", "answer_words")}


def chunks_path(cfg: EvalConfig, test_path: str | Path) -> Path:
    """CHUNKS_PATH, else the chunks.jsonl notebook 02 wrote beside the held-out set."""
    return Path(cfg.chunks_path) if cfg.chunks_path else DatasetFiles.beside(test_path).chunks


def hit_rate(rows: list[dict], found: list[list[Passage]], n_boot: int = 1000, seed: int = 0) -> dict:
    """The share of questions whose own source chunk is among their retrieved passages, with a 95%
    bootstrap interval, over the rows that name their chunk (``chunk_id``)."""
    hits = [1.0 if any(p.chunk_id == r["chunk_id"] for p in ps) else 0.0
            for r, ps in zip(rows, found) if r.get("chunk_id")]
    if not hits:
        return {"skipped": "not measured: the held-out rows carry no chunk_id (notebook 02's rows do; "
                           "imported rows do not say which chunk they come from)"}
    bs = paired_bootstrap(hits, hits, "mean", n_boot, seed)["base"]
    return {"value": bs["value"], **({"ci": bs["ci"]} if "ci" in bs else {}), "n": len(hits),
            "hits": int(sum(hits))}


def _clear(diff: dict, up: bool = True) -> bool:
    """Whether a difference's interval lies wholly above 0 (``up``) or below it."""
    ci = diff.get("ci")
    return bool(ci) and (ci[0] > 0 if up else ci[1] < 0)


def four_way_verdict(scores: dict[str, list[float]], n_boot: int = 1000, seed: int = 0,
                     metric: str = "ROUGE-L") -> dict:
    """Paired differences between the four ways (``scores[way]``: per-question values, higher is
    better) and the verdict they support, the first of: both together are best (tuned + passages beats
    both alone), retrieval alone does as well (better than tuning), fine-tuning helped (and beats
    retrieval, or retrieval does as well), retrieval helped, no clear difference."""
    v = {w: sum(s) / len(s) for w, s in scores.items()}
    diffs = {f"{b}-{a}": paired_bootstrap(scores[a], scores[b], "mean", n_boot, seed)["diff"] for a, b in PAIRS}
    f = {w: f"{v[w]:.3f}" for w in v}
    d = {k: _clear(x) for k, x in diffs.items()}
    d.update({"tuned-base_rag": _clear(diffs["base_rag-tuned"], up=False)})
    if not n_boot:
        outcome, line = "no interval", "No verdict: BOOTSTRAP=0 gives no intervals to decide on."
    elif d["tuned_rag-tuned"] and d["tuned_rag-base_rag"]:
        outcome = "both together are best"
        line = (f"Both together are best: the tuned model with retrieved passages ({metric} {f['tuned_rag']}) beats "
                f"fine-tuning alone ({f['tuned']}) and retrieval alone ({f['base_rag']}).")
    elif d["base_rag-tuned"]:
        outcome = "retrieval alone does as well"
        line = (f"Retrieval alone does as well: the base model with retrieved passages ({metric} {f['base_rag']}) "
                f"beats the tuned model ({f['tuned']}); retrieval is the cheaper choice (notebook 06's "
                "'documents' preset).")
    elif d["tuned-base"] and d["tuned-base_rag"]:
        outcome = "fine-tuning helped"
        line = (f"Fine-tuning helped: the tuned model ({metric} {f['tuned']}) beats the base ({f['base']}) and "
                f"retrieval alone ({f['base_rag']}).")
    elif d["tuned-base"]:
        outcome = "fine-tuning helped, retrieval alone does as well"
        line = (f"Fine-tuning helped (tuned {f['tuned']} vs base {f['base']}, {metric}), but retrieval alone does as "
                f"well ({f['base_rag']}, no clear difference) and is cheaper to keep up to date.")
    elif d["base_rag-base"]:
        outcome = "retrieval alone does as well"
        line = (f"Retrieval alone does as well: passages help the base model ({metric} {f['base_rag']} vs "
                f"{f['base']}); fine-tuning shows no clear gain ({f['tuned']}).")
    else:
        n = len(next(iter(scores.values())))
        outcome = "no clear difference"
        line = (f"No clear difference between the four ways on {n} questions ({metric}): this test set cannot tell "
                "them apart; more held-out questions (or a judge's grades) would.")
    return {"outcome": outcome, "line": line, "values": v, "diffs": diffs}


def retrieval_rows(cfg: EvalConfig, tok, rows: list[dict], found: list[list[Passage]], style: str,
                   system: str | None, room: int) -> tuple[list[dict], list[list[Passage]], int]:
    """Each row with its passages in the question, cut so the prompt fits ``room`` tokens; the
    passages each prompt holds, and how many prompts had a passage cut or left out."""
    out, used_all, cut = [], [], 0
    for r, ps in zip(rows, found):
        bare = len(tok(prompt_text(tok, with_passages(r, PASSAGES_HEADER), style, system),
                       add_special_tokens=False)["input_ids"])
        block, used = passages_block(ps, tok, room - bare - 8)
        cut += len(used) < len(ps) or "passage cut here" in block
        out.append(with_passages(r, block))
        used_all.append(used)
    return out, used_all, cut


def retrieval_section(cfg: EvalConfig, model, tok, closed: Comparison, style: str, system: str | None,
                      test_path: str | Path, log, cache=None) -> tuple[dict, list[dict]]:
    """The retrieval baseline's report section and its answers rows (``way`` "retrieval"), or a
    section that says why it was not measured (RETRIEVAL_K=0, no chunks)."""
    if not cfg.retrieval_k:
        return {"skipped": "RETRIEVAL_K=0: no retrieval baseline"}, []
    path = chunks_path(cfg, test_path)
    try:
        index = ChunkIndex.from_file(path)
    except RetrievalError as exc:
        log(f"Retrieval: not measured ({exc})")
        return {"skipped": f"not measured: {exc}"}, []
    rows = closed.fit.rows
    found = index.search_many([question_of(r) for r in rows], cfg.retrieval_k)
    rag_rows, used, cut = retrieval_rows(cfg, tok, rows, found, style, system, closed.fit.room)
    log(f"Retrieval: {index.describe()}; top {cfg.retrieval_k} passages per question"
        + (f", cut to the context in {cut} prompt(s)" if cut else ""))
    rag = compare_on(cfg, model, tok, rag_rows, style, system, log, table=RAG_TABLE, cache=cache)
    scores = {"base": closed.per["base"]["rougeL"], "tuned": closed.per["tuned"]["rougeL"],
              "base_rag": rag.per["base"]["rougeL"], "tuned_rag": rag.per["tuned"]["rougeL"]}
    verdict = four_way_verdict(scores, cfg.bootstrap, cfg.seed)
    hits = hit_rate(rows, found, cfg.bootstrap, cfg.seed)
    log("Retrieval: " + verdict["line"])
    answers = [{**a, "way": "retrieval", "passages": [p.chunk_id for p in u],
                "hit": any(p.chunk_id == r["chunk_id"] for p in ps) if r.get("chunk_id") else None}
               for a, u, r, ps in zip(rag.answers, used, rows, found)]
    section = {"k": cfg.retrieval_k, "chunks_path": str(path), "index": index.describe(), "prompts_cut": cut,
               "ways": {w: {"label": lab, "rougeL": _interval(scores[w], cfg)} for w, lab in WAYS.items()},
               "rag_metrics": rag.metrics, "hit_rate": hits, "verdict": verdict,
               "examples": [{**answers[i], "closed_base": closed.answers[i]["base"],
                             "closed_tuned": closed.answers[i]["tuned"]} for i in range(min(cfg.n_show, len(answers)))]}
    return section, answers


def _interval(values: list[float], cfg: EvalConfig) -> dict:
    """A mean with its 95% bootstrap interval."""
    return paired_bootstrap(values, values, "mean", cfg.bootstrap, cfg.seed)["base"]
