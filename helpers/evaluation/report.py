"""Notebook 05's evaluation: an honest base-vs-tuned report on the held-out split.

``evaluate_adapter`` loads the base model once with the adapter attached and compares the base
(adapter off) with the tuned model (adapter on) on the held-out prompts: ROUGE, perplexity of the
references on the reply tokens, answer length, stops and copies, each with a paired 95% bootstrap
interval so that a small test set does not oversell a difference. Beside them it measures what tuning
cost on general prompts (forgetting), how much of the test set the training set already holds
(leakage) and the retrieval baseline (``fourway``: both models with retrieved passages), and writes
report.json, report.md (which explains each section), answers.jsonl and plots. Answers are kept in
answer_cache.jsonl, so a rerun regenerates none already given.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.common.prompts import resolve_style
from helpers.common.run import RunDir
from helpers.core.files import DatasetFiles
from helpers.core.jsonl import DataError, read_jsonl, write_jsonl
from helpers.dataset import LeakageError, measure_leakage, training_passages
from helpers.evaluation.answer_cache import AnswerCache
from helpers.evaluation.config import EvalConfig, EvalInputs, resolve_inputs
from helpers.evaluation.fourway import retrieval_section
from helpers.evaluation.general import general_report
from helpers.evaluation.markdown import report_markdown
from helpers.evaluation.metrics import EvalError, words
from helpers.evaluation.plots import plot_report
from helpers.evaluation.scoring import Comparison, compare_on, load_references, load_tuned_model


@dataclass
class Findings:
    """What one evaluation found, for report.json and report.md: the prompt format used, the held-out
    rows without a reference, base vs tuned on the held-out set, the general section with its answers
    rows, and the leakage summary."""
    style: str
    missing: list[int]
    held_out: Comparison
    general: dict
    general_answers: list[dict]
    leakage: dict
    retrieval: dict = field(default_factory=dict)  # the retrieval baseline (helpers.evaluation.fourway)
    retrieval_answers: list[dict] = field(default_factory=list)


def _leakage_check(cfg: EvalConfig, test_path: Path, rows: list[dict], log) -> tuple[list[dict], dict]:
    """The held-out rows' word 8-gram containment in the adapter's training set and its source
    chunks (``helpers.dataset.leakage``), and the rows kept (all of them unless DROP_LEAKED)."""
    train_path = RunDir.of(cfg.adapter_dir).dataset_path
    if not train_path or not Path(train_path).is_file():
        why = f"the training set {train_path} is not there" if train_path else "the run does not say its training set"
        log(f"Leakage: not measured ({why})")
        return rows, {"skipped": f"not measured: {why}"}
    train_path = Path(train_path)
    try:
        train_rows = read_jsonl(train_path)
        files = DatasetFiles.beside(train_path)
        passages, desc = training_passages(train_rows, files.chunks, files.corpus.pdf_text, rows)
    except (DataError, LeakageError) as exc:
        raise EvalError(f"Leakage check: {exc}") from None
    res = measure_leakage(rows, train_rows, passages, cfg.leakage_threshold, desc)
    summary = res.summary() | {"line": res.line(), "train_path": str(train_path), "dropped": 0,
                               "same_file": train_path.resolve() == Path(test_path).resolve()}
    log("Leakage: " + res.line())
    if cfg.drop_leaked and res.flagged:
        flagged = set(res.flagged)
        rows = [r for i, r in enumerate(rows) if i not in flagged]
        if not rows:
            raise EvalError(f"DROP_LEAKED: every one of the {len(flagged)} held-out rows is leaked "
                            f"(containment >= {cfg.leakage_threshold} in {train_path}); nothing left to evaluate.")
        summary["dropped"] = len(flagged)
        log(f"DROP_LEAKED: {len(flagged)} leaked row(s) left out of the scores")
    return rows, summary


def _build_report(cfg: EvalConfig, inputs: EvalInputs, found: Findings, t_start: float) -> dict:
    """The report dict (report.json without its "plots" and "files", which come when written)."""
    import torch
    held = found.held_out
    return {
        "model_name": inputs.model_name, "adapter_dir": str(cfg.adapter_dir), "test_path": str(inputs.test_path),
        "quantization": cfg.quantization, "template": found.style, "system_prompt": inputs.system,
        "n_examples": len(held.fit.rows), "reference_turn": cfg.reference_turn,
        "rows_without_reference": found.missing,
        "reference_words": sum(len(words(x)) for x in held.refs) / len(held.refs),
        "reference_tokens_scored": sum(held.results["base"]["count"]),
        "long_prompts": {"policy": cfg.long_prompts, "count": len(held.fit.long_idx), "context": held.fit.ctx,
                         "max_prompt_tokens": held.fit.room,
                         "what": {"truncate": "prompts longer than the context allows keep their last tokens",
                                  "skip": "prompts longer than the context allows are left out of every metric",
                                  "error": "no prompt was longer than the context allows"}[cfg.long_prompts]},
        "generation": {"max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size,
                       "decoding": f"sampling (temperature {cfg.temperature}, top-p {cfg.top_p}, seed {cfg.seed})"
                       if cfg.do_sample else "greedy",
                       **{f"{w}_tokens_per_second": held.results[w]["gen"]["tokens_per_second"]
                          for w in ("base", "tuned")},
                       **{f"{w}_seconds": held.results[w]["gen"]["seconds"] for w in ("base", "tuned")}},
        "rouge_backend": held.backend + " (F1; lower-cased letters and digits, no stemming)",
        "copy_check": f"an answer of at least {cfg.copy_min_words} words copies the prompt when one run of words "
                      f"taken verbatim from it covers at least {cfg.copy_threshold:.0%} of the answer",
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "interval": "95% percentile, paired"},
        "metrics": held.metrics,
        "examples": held.answers[: cfg.n_show],
        "leakage": found.leakage,
        "general": found.general,
        "retrieval": found.retrieval,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "seconds": round(time.time() - t_start, 1),
    }


def _write_report(report: dict, found: Findings, inputs: EvalInputs, plot_prefix: str) -> None:
    """answers.jsonl (and general_answers.jsonl), the plots, report.json and report.md in the
    output folder; adds the "plots" and "files" entries to ``report``."""
    out_dir = inputs.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "answers.jsonl", [{**a, "way": "closed"} for a in found.held_out.answers]
                + found.retrieval_answers)
    write_jsonl(out_dir / "general_answers.jsonl", found.general_answers or [])
    report["plots"] = [str(p) for p in plot_report(report, found.held_out.per, found.held_out.refs, inputs.plots_dir,
                                                   plot_prefix) if p]
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out_dir / "report.md").write_text(report_markdown(report, out_dir))
    report["files"] = {"json": str(out_dir / "report.json"), "markdown": str(out_dir / "report.md"),
                       "answers": str(out_dir / "answers.jsonl"),
                       "general_answers": str(out_dir / "general_answers.jsonl"),
                       "answer_cache": str(out_dir / "answer_cache.jsonl")}


def rewrite_report(report: dict) -> dict:
    """report.json and report.md written again, after a later section (the judge's) was added to ``report``."""
    out_dir = Path(report["files"]["markdown"]).parent
    (out_dir / "report.json").write_text(json.dumps({k: v for k, v in report.items() if k != "files"}, indent=2,
                                                    ensure_ascii=False) + "\n")
    (out_dir / "report.md").write_text(report_markdown(report, out_dir))
    return report


def evaluate_adapter(cfg: EvalConfig, plots_dir: str | os.PathLike | None = None, plot_prefix: str = "eval_",
                     log=print) -> dict:
    """Base vs tuned on the held-out set, the general (forgetting) section and the leakage check.
    Returns the report dict (also written to ``output_dir/report.json`` and ``report.md``)."""
    t_start = time.time()
    inputs = resolve_inputs(cfg, plots_dir)
    rows, missing = load_references(inputs.test_path, cfg.reference_turn, cfg.max_examples)
    log(f"Held-out set {inputs.test_path}: {len(rows)} rows with a reference" +
        (f", {len(missing)} without one skipped" if missing else ""))
    rows, leakage = _leakage_check(cfg, inputs.test_path, rows, log)

    model, tok = load_tuned_model(cfg, inputs.model_name)
    style = resolve_style(tok, inputs.template)
    inputs.out_dir.mkdir(parents=True, exist_ok=True)
    cache = AnswerCache(inputs.out_dir / "answer_cache.jsonl", inputs.model_name, cfg.adapter_dir)
    held_out = compare_on(cfg, model, tok, rows, style, inputs.system, log, cache=cache)
    retrieval, retrieval_answers = retrieval_section(cfg, model, tok, held_out, style, inputs.system,
                                                     inputs.test_path, log, cache)
    general, general_answers = general_report(cfg, model, tok, style, inputs, log, cache)
    log(cache.line())
    found = Findings(style=style, missing=missing, held_out=held_out, general=general,
                     general_answers=general_answers, leakage=leakage, retrieval=retrieval,
                     retrieval_answers=retrieval_answers)
    report = _build_report(cfg, inputs, found, t_start)
    del model
    _write_report(report, found, inputs, plot_prefix)
    log(f"Report in {inputs.out_dir} ({report['seconds']}s)")
    return report
