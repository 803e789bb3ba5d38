"""An LLM judge on the held-out answers (notebook 05), beside ROUGE: word overlap with one reference is
not correctness.

For each judged prompt the judge (:mod:`helpers.evaluation.judge_config`) is asked four things:

* the base answer and the tuned answer, each graded against the reference and the source chunk
  (``chunks.jsonl`` beside the held-out set, when there is one): ``correct``, ``partly`` or ``wrong``;
* the two answers compared, in both orders (base as A, then tuned as A): ``A``, ``B`` or ``tie``.

Reported, with 95% bootstrap intervals over prompts: each model's correct share and their difference,
the tuned model's win rate (a win 1, a tie 0.5, a loss 0, averaged over the two orders, so an answer
that wins only in one position counts as a tie), the judge's self-consistency (the share of prompts
whose two orders agree), how often it picked the first position, and its agreement with ROUGE-L (the
share of prompts where the answer it prefers has the higher ROUGE-L). A verdict that cannot be read
(prose, a refusal, an unknown label) is named and left out of the figures it would enter; a failed
request is asked again on the next run. Every judgement is cached in ``judgements.jsonl`` in the eval
folder (keyed by judge model and messages): a rerun asks only what is missing, and the estimate of
what it costs is printed first. The prompts are ``GRADE_ANSWER_PROMPT`` and ``PAIRWISE_PROMPT`` or the
files ``JUDGE_PROMPT_FILE`` and ``PAIRWISE_PROMPT_FILE``.
"""
from __future__ import annotations

import collections
from pathlib import Path

from helpers.core.files import DatasetFiles
from helpers.core.jsonl import read_jsonl
from helpers.core.show import announce
from helpers.dataset import (TeacherError, TeacherStop, TeacherStore, ask_all, estimate, estimate_line, fill,
                             load_prompt_file, make_ask, read_json_reply)
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.judge_config import Judge, JudgeConfig, make_judge
from helpers.evaluation.metrics import EvalError
from helpers.evaluation.report import rewrite_report
from helpers.evaluation.stats import paired_bootstrap

JUDGE_SYSTEM = "You are a strict, fair grader of answers. You reply with JSON only, with no text before or after it."
GRADE_ANSWER_PROMPT = """Grade an assistant's answer to a question about a document.

Question:
{question}

Reference answer (correct, written from the source passage):
{reference}

Source passage:
<<<
{passage}
>>>

Answer to grade:
{answer}

"correct": it says what the reference says (in any words) and nothing the passage contradicts; "partly": part of it is right, but it misses or gets wrong something important; "wrong": it is wrong, answers another question, or is empty.
Reply with one JSON object and nothing else:
{"verdict": "correct", "reason": "one short sentence"}"""  # noqa: E501 (the prompt's text, one line per paragraph)
PAIRWISE_PROMPT = """Two assistants answered the same question about a document. Which answer is better: more correct against the reference and the source passage, then more complete? A longer answer is not better for its length. If they are equally good or equally bad, say "tie".

Question:
{question}

Reference answer (correct, written from the source passage):
{reference}

Source passage:
<<<
{passage}
>>>

Answer A:
{answer_a}

Answer B:
{answer_b}

Reply with one JSON object and nothing else, "winner" being "A", "B" or "tie":
{"winner": "tie", "reason": "one short sentence"}"""  # noqa: E501
VERDICTS = {"correct": "correct", "partly": "partly", "partly correct": "partly", "partially correct": "partly",
            "partial": "partly", "wrong": "wrong", "incorrect": "wrong"}
WINNERS = {"a": "A", "b": "B", "tie": "tie"}
NO_PASSAGE = "(not available: no chunks.jsonl beside the held-out set)"


def load_judge_prompts(jcfg: JudgeConfig) -> tuple[str, str]:
    """The grading and pairwise prompts: ours, or the files JUDGE_PROMPT_FILE and PAIRWISE_PROMPT_FILE."""
    return (load_prompt_file(jcfg.judge_prompt_file, GRADE_ANSWER_PROMPT, ("{answer}",), "JUDGE_PROMPT_FILE"),
            load_prompt_file(jcfg.pairwise_prompt_file, PAIRWISE_PROMPT, ("{answer_a}", "{answer_b}"),
                             "PAIRWISE_PROMPT_FILE"))


def parse_verdict(text: str, finish_reason: str | None = None) -> tuple[str | None, str | None]:
    """``correct``, ``partly`` or ``wrong`` from a grading reply, or None and why it cannot be read."""
    obj, problem = read_json_reply(text, finish_reason)
    if obj is None:
        return None, problem
    v = VERDICTS.get(" ".join(str(obj.get("verdict", "")).lower().split()))
    return (v, None) if v else (None, f"unknown verdict {obj.get('verdict')!r}")


def parse_winner(text: str, finish_reason: str | None = None) -> tuple[str | None, str | None]:
    """``A``, ``B`` or ``tie`` from a pairwise reply, or None and why it cannot be read."""
    obj, problem = read_json_reply(text, finish_reason)
    if obj is None:
        return None, problem
    w = WINNERS.get(str(obj.get("winner", "")).strip().lower())
    return (w, None) if w else (None, f"unknown winner {obj.get('winner')!r}")


def _passages(test_path: str) -> dict[str, str]:
    chunks = DatasetFiles.beside(test_path).chunks
    return {c["chunk_id"]: c["text"] for c in read_jsonl(chunks)} if Path(chunks).is_file() else {}


def _context(a: dict, passages: dict[str, str]) -> dict:
    return {"question": a.get("question") or a["prompt"][-2000:], "reference": a["reference"],
            "passage": passages.get(a.get("chunk_id") or "", NO_PASSAGE)}


def _grade_asks(judge: Judge, answers: list[dict], passages: dict[str, str], prompt: str, way: str = "closed"):
    """Two grading asks per prompt (base, tuned); ``way`` "retrieval" grades the answers given with passages."""
    asks, how = [], " with passages" if way == "retrieval" else ""
    for a in answers:
        for w in ("base", "tuned"):
            msgs = _messages(fill(prompt, {**_context(a, passages), "answer": a[w] or "(empty)"}))
            meta = {"kind": "grade", "index": a["index"], "which": w, **({"way": way} if way != "closed" else {})}
            asks.append(make_ask(judge.grader, msgs, meta, f"grade of the {w} answer{how} to prompt {a['index'] + 1}"))
    return asks


def _asks(judge: Judge, answers: list[dict], passages: dict[str, str], prompts: tuple[str, str]):
    """The grading asks (two per prompt: base, tuned) and the pairwise ones (two orders per prompt)."""
    grades, pairs = _grade_asks(judge, answers, passages, prompts[0]), []
    for a in answers:
        for first, second in (("base", "tuned"), ("tuned", "base")):
            msgs = _messages(fill(prompts[1], {**_context(a, passages), "answer_a": a[first] or "(empty)",
                                               "answer_b": a[second] or "(empty)"}))
            pairs.append(make_ask(judge.comparer, msgs, {"kind": "pair", "index": a["index"], "first": first},
                                  f"{first} vs {second} on prompt {a['index'] + 1}"))
    return grades, pairs


def _way_figures(closed: list, rag: list, n_boot: int, seed: int) -> dict:
    """The judge's correct share of each of the four ways (notebook 05's retrieval baseline), each over the
    prompts it graded: the same measure beside the four ROUGE-L figures."""
    out = {}
    for way, verdicts, which in (("base", closed, 0), ("tuned", closed, 1), ("base_rag", rag, 0),
                                 ("tuned_rag", rag, 1)):
        out[way] = mean_interval([float(v == "correct") for v in verdicts[which::2] if v], n_boot, seed)
    return out


def _messages(user: str) -> list[dict]:
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def mean_interval(values: list[float], n_boot: int, seed: int) -> dict:
    """A mean and its 95% percentile bootstrap interval (none with ``n_boot`` 0 or no values)."""
    import numpy as np
    if not values:
        return {"value": None, "n": 0}
    v = np.asarray(values, dtype=float)
    out = {"value": float(v.mean()), "n": len(values)}
    if n_boot:
        means = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(1)
        out["ci"] = [float(x) for x in np.quantile(means, [0.025, 0.975])]
    return out


def _read(store: TeacherStore, asks, parse, unreadable: collections.Counter) -> list:
    """The parsed verdict of each ask (None where unanswered or unreadable; why counted in ``unreadable``)."""
    out = []
    for a in asks:
        rec = store.records.get(a.key)
        v, problem = parse(rec["answer"], rec.get("finish_reason")) if rec else (None, None)
        if problem:
            unreadable[problem.split(":")[0]] += 1
        out.append(v)
    return out


def _grade_figures(answers: list[dict], verdicts: list, n_boot: int, seed: int) -> dict:
    """Each model's verdict counts, correct share with intervals (prompts with both verdicts), and ROUGE-L
    on the same prompts."""
    by = {w: verdicts[i::2] for i, w in enumerate(("base", "tuned"))}
    both = [i for i in range(len(answers)) if by["base"][i] and by["tuned"][i]]
    out = {"verdicts": {w: dict(collections.Counter(v for v in by[w] if v)) for w in by}, "n_graded": len(both)}
    if both:
        out["correct"] = paired_bootstrap([by["base"][i] == "correct" for i in both],
                                          [by["tuned"][i] == "correct" for i in both], "mean", n_boot, seed)
        out["rougeL"] = paired_bootstrap([answers[i]["base_rougeL"] for i in both],
                                         [answers[i]["tuned_rougeL"] for i in both], "mean", n_boot, seed)
    return out


def _pair_figures(answers: list[dict], winners: list, n_boot: int, seed: int) -> dict:
    """Win rate of tuned over base, self-consistency under the swap, first-position share, agreement with
    ROUGE-L."""
    def side(w, first):  # the winning model of one order
        return {"A": first, "B": "tuned" if first == "base" else "base", "tie": "tie"}[w]
    score = {"tuned": 1.0, "tie": 0.5, "base": 0.0}
    rates, same, agree, counts = [], [], [], collections.Counter()
    for i, a in enumerate(answers):
        w1, w2 = winners[2 * i], winners[2 * i + 1]
        if not (w1 and w2):
            continue
        s1, s2 = side(w1, "base"), side(w2, "tuned")
        same.append(float(s1 == s2))
        r = (score[s1] + score[s2]) / 2
        rates.append(r)
        counts["tuned wins" if r > 0.5 else "base wins" if r < 0.5 else "tie"] += 1
        if r != 0.5 and a["base_rougeL"] != a["tuned_rougeL"]:
            agree.append(float((r > 0.5) == (a["tuned_rougeL"] > a["base_rougeL"])))
    said = [w for w in winners if w in ("A", "B")]
    return {"win_rate": mean_interval(rates, n_boot, seed), "outcomes": dict(counts),
            "consistency": {"value": sum(same) / len(same) if same else None, "n": len(same)},
            "first_position": {"value": said.count("A") / len(said) if said else None, "n": len(said)},
            "rouge_agreement": {"value": sum(agree) / len(agree) if agree else None, "n": len(agree)}}


def _run(judge: Judge, jcfg: JudgeConfig, grades, pairs, store: TeacherStore, log) -> dict:
    """Ask what is missing (estimate first). Returns tokens, cost and failures; ``stopped`` says why the
    judge stopped, when it did (what arrived is stored and used)."""
    prices = (jcfg.judge_price_input_per_m, jcfg.judge_price_output_per_m)
    log(estimate_line(f"Judge {judge.name}", estimate(grades + pairs, store, jcfg.judge_max_new_tokens, *prices)))
    runs, stopped = [], ""
    try:
        runs.append(ask_all(judge.grader, grades, store, "judge: grading", True, *prices))
        if getattr(judge.grader, "_model", None) is not None and hasattr(judge.comparer, "_model"):
            judge.comparer._model, judge.comparer._tok = judge.grader._model, judge.grader._tok  # loaded once
        runs.append(ask_all(judge.comparer, pairs, store, "judge: pairs", True, *prices))
    except TeacherStop as exc:
        stopped = str(exc)
        announce("The judge stopped: the report shows what it had judged", [stopped])
    return {"asked": sum(r["asked"] for r in runs), "failed": [f for r in runs for f in r["failed"]],
            "tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in runs),
            "cost_usd": round(sum(r["cost_usd"] for r in runs), 6), "stopped": stopped}


def judge_answers(jcfg: JudgeConfig, cfg: EvalConfig, report: dict, log=print) -> dict:
    """The judge's section of ``report`` (``report["judge"]``), computed from the answers the report wrote,
    and report.json / report.md written again with it. Without a judge the section says how to add one."""
    judge, why = make_judge(jcfg, report["test_path"])
    if judge is None:
        report["judge"] = {"skipped": why}
        log(f"Judge: none ({why})")
        return rewrite_report(report)
    try:
        prompts = load_judge_prompts(jcfg)
    except TeacherError as exc:
        raise EvalError(str(exc)) from None
    rows = read_jsonl(report["files"]["answers"])
    answers = [a for a in rows if a.get("way", "closed") == "closed"][: jcfg.judge_max_examples or None]
    judged = {a["index"] for a in answers}  # the answers with passages are graded for the same prompts
    rag = [a for a in rows if a.get("way") == "retrieval" and a["index"] in judged]
    store = TeacherStore(Path(report["files"]["answers"]).parent / "judgements.jsonl")
    passages = _passages(report["test_path"])
    grades, pairs = _asks(judge, answers, passages, prompts)
    rag_grades = _grade_asks(judge, rag, passages, prompts[0], "retrieval")
    run = _run(judge, jcfg, grades + rag_grades, pairs, store, log)
    unreadable = collections.Counter()
    verdicts = _read(store, grades, parse_verdict, unreadable)
    section = {"judge": judge.how, "model": judge.name, "n": len(answers), "file": str(store.path),
               **_grade_figures(answers, verdicts, cfg.bootstrap, cfg.seed),
               **_pair_figures(answers, _read(store, pairs, parse_winner, unreadable), cfg.bootstrap, cfg.seed)}
    if rag:
        section["ways"] = _way_figures(verdicts, _read(store, rag_grades, parse_verdict, unreadable), cfg.bootstrap,
                                       cfg.seed)
    section.update({"unreadable": dict(unreadable), **run, "failed": len(run["failed"])})
    report["judge"] = section
    log(f"Judge: {len(answers)} prompts, {run['asked']} asked now, {sum(unreadable.values())} unreadable "
        f"verdict(s), {section['failed']} failed; judgements in {store.path}")
    return rewrite_report(report)
