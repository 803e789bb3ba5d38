"""Curated teacher data: the teacher grades each triple it wrote against its source chunk, and triples
graded below ``CURATE_MIN_GRADE`` are dropped (synthetic-data-kit's curation, on three named criteria).

Each triple gets three grades from 1 to 5, read strictly as one JSON object: ``faithful`` (the output
is supported by the chunk), ``self_contained`` (the instruction makes sense without the chunk: a
closed-book question that says "the proposed method" cannot be answered) and ``useful``, with a short
``reason``. A triple is kept when its lowest grade is at least ``min_grade`` (0: nothing is graded,
every triple kept). The grades are cached in ``teacher_grades.jsonl`` (the same crash-safe store as
the answers, keyed by grader model and messages): a rerun asks only the missing ones, and the cost
estimate is printed before anything is asked.

A grade that cannot be read (an empty reply, prose or a refusal instead of JSON, a grade outside 1-5,
a reply cut at the token limit) or a request that failed leaves its triple **kept**, counted on the
card as ungraded with why: the grader failing says nothing against the triple, and the build is never
lost to it. The prompt is ``DEFAULT_GRADE_PROMPT`` or the file ``GRADE_PROMPT_FILE`` (placeholders
``{text}``, ``{source}``, ``{instruction}``, ``{input}``, ``{output}``, replaced literally).
"""
from __future__ import annotations

import collections
import copy
import json
import os
import re
from pathlib import Path

from helpers.core.show import announce
from helpers.dataset.grading_ask import ask_all, estimate, estimate_line, make_ask
from helpers.dataset.teacher import LocalTeacher, TeacherError, TeacherStop, TeacherStore

GRADE_SYSTEM = "You grade training data for an assistant. You reply with JSON only, with no text before or after it."
DEFAULT_GRADE_PROMPT = """Below is a passage from the document "{source}" and a training example written from it. Grade the example from 1 (bad) to 5 (good) on three criteria:
- "faithful": the output is supported by the passage (5: everything it says is in the passage; 1: it contradicts the passage or makes things up);
- "self_contained": the instruction makes sense to someone who has never seen the passage (1: it says "the passage", "the text", "the proposed method" or "this section", or cannot be answered without the passage);
- "useful": a reader of the document would want to ask this, and the output answers it completely.

Reply with one JSON object and nothing else, with a short reason for the lowest grade:
{"faithful": 4, "self_contained": 5, "useful": 3, "reason": "..."}

Passage:
<<<
{text}
>>>

Example:
INSTRUCTION: {instruction}
INPUT: {input}
OUTPUT: {output}"""  # noqa: E501 (the prompt's text, one line per paragraph)
CRITERIA = ("faithful", "self_contained", "useful")
LOCAL_GRADE_PREFILL = '{"faithful": '  # a small local grader starts inside the JSON object
GRADE_MAX_NEW_TOKENS = 160
REFUSAL_RE = re.compile(r"\b(I can(?:no|')t|I cannot|I'm sorry|I am sorry|as an AI|I won't|I am unable|I'm unable)\b",
                        re.I)
FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)\s*```", re.S)


def load_prompt_file(path: str | os.PathLike | None, default: str, required: tuple[str, ...], setting: str) -> str:
    """A prompt template: ``default``, or the text of ``path``, which must hold each ``required``
    placeholder (else the file is named with what is missing)."""
    if not path:
        return default
    p = Path(path)
    if not p.is_file():
        raise TeacherError(f"{setting}: prompt file {str(p)!r} does not exist (write one from the prompt the notebook "
                           "prints).")
    text = p.read_text(encoding="utf-8-sig")
    missing = [r for r in required if r not in text]
    if missing:
        raise TeacherError(f"{setting}: prompt file {str(p)!r} has no {', '.join(missing)} placeholder: what it "
                           "stands for would never reach the model.")
    return text


def load_grade_prompt(path: str | os.PathLike | None = None) -> str:
    """The grading prompt: ``DEFAULT_GRADE_PROMPT``, or the file ``path`` (with ``{text}`` and ``{output}``)."""
    return load_prompt_file(path, DEFAULT_GRADE_PROMPT, ("{text}", "{output}"), "GRADE_PROMPT_FILE")


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced literally, in one pass (JSON braces need no
    escaping, and a placeholder inside a passage or an answer is never filled in)."""
    pattern = re.compile("|".join(re.escape("{" + k + "}") for k in values))
    return pattern.sub(lambda m: values[m.group()[1:-1]], template) if values else template


def grade_messages(triple: dict, chunk_text: str, template: str = DEFAULT_GRADE_PROMPT) -> list[dict]:
    """The grader's chat messages for one triple and its source chunk."""
    user = fill(template, {"source": triple.get("source") or "a document", "instruction": triple["instruction"],
                           "input": triple.get("input") or "(none)", "output": triple["output"], "text": chunk_text})
    return [{"role": "system", "content": GRADE_SYSTEM}, {"role": "user", "content": user}]


def read_json_reply(text: str, finish_reason: str | None = None) -> tuple[dict | None, str | None]:
    """A reply that must be one JSON object (a code fence around it is allowed): the object, or None and
    what the reply is instead: empty, cut at the token limit, a refusal, prose, not an object."""
    t = (text or "").strip()
    if not t:
        return None, "empty reply"
    fence = FENCE_RE.fullmatch(t)
    try:
        obj = json.loads(fence.group(1) if fence else t)
    except ValueError:
        if finish_reason == "length":
            return None, "cut at the token limit"
        if REFUSAL_RE.search(t[:300]):
            return None, f"refused: {' '.join(t.split())[:80]!r}"
        return None, f"not JSON: {' '.join(t.split())[:80]!r}"
    if not isinstance(obj, dict):
        return None, f"not a JSON object ({type(obj).__name__})"
    return obj, None


def parse_grade(text: str, finish_reason: str | None = None) -> tuple[dict | None, str | None]:
    """The grades in a grader's reply, read strictly: ``{"faithful", "self_contained", "useful"}`` whole
    numbers from 1 to 5, ``"lowest"`` and ``"reason"``; or None and why it cannot be read."""
    obj, problem = read_json_reply(text, finish_reason)
    if obj is None:
        return None, problem
    grade = {}
    for c in CRITERIA:
        v = obj.get(c)
        if v is None:
            return None, f"no {c!r} grade"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not 1 <= v <= 5:
            return None, f"{c!r} is {v!r}, not a whole number from 1 to 5"
        grade[c] = int(v)
    reason = obj.get("reason")
    grade["lowest"] = min(grade[c] for c in CRITERIA)
    grade["reason"] = " ".join(reason.split())[:300] if isinstance(reason, str) else ""
    return grade, None


def grader_for(teacher):
    """The teacher as a grader: short answers (at most GRADE_MAX_NEW_TOKENS, nor more than the teacher's) at
    temperature 0; a local model starts inside the object."""
    tokens = min(GRADE_MAX_NEW_TOKENS, getattr(teacher, "max_new_tokens", GRADE_MAX_NEW_TOKENS))
    if isinstance(teacher, LocalTeacher):
        g = LocalTeacher(teacher.model_name, teacher.quantization, max_new_tokens=tokens,
                         temperature=0.0, batch_size=teacher.batch_size, prefill=LOCAL_GRADE_PREFILL)
        g._model, g._tok = teacher._model, teacher._tok  # the model already loaded, if it is
        return g
    g = copy.copy(teacher)
    g.max_new_tokens, g.temperature = tokens, 0.0
    return g


def _where(t: dict) -> str:
    return f"{t['source']} chunk {t.get('chunk_index', '?')}" + (f" part {t['part']}" if t.get("part") else "") + \
        f" example {t.get('item', 0) + 1}"


def _ask_grades(grader, asks: list, store: TeacherStore, prices: tuple[float, float], verbose: bool) -> dict:
    """Ask the missing grades; a stop (no request can succeed) is reported and the build goes on."""
    try:
        return ask_all(grader, asks, store, "grading", verbose, *prices) | {"stopped": ""}
    except TeacherStop as exc:
        announce("Grading stopped: the examples without a grade are kept", [str(exc)])
        return {"asked": 0, "cached": 0, "failed": [], "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
                "stopped": str(exc)}


def curate(triples: list[dict], chunk_texts: dict[str, str], teacher, store: TeacherStore, min_grade: int,
           template: str = DEFAULT_GRADE_PROMPT, prices: tuple[float, float] = (0.0, 0.0),
           verbose: bool = True) -> tuple[list[dict], list[dict], dict]:
    """Grade ``triples`` against their chunks (``chunk_texts`` by ``chunk_id``) and keep those whose
    lowest grade is at least ``min_grade``. Returns the kept triples (each with its ``grade``), the
    dropped ones as rejects (``reason`` "graded below CURATE_MIN_GRADE", the grades and the grader's
    reason) and the curation summary for the card (see :func:`curation_lines`)."""
    if min_grade <= 0 or not triples:
        return list(triples), [], {"min_grade": min_grade, "off": True}
    grader = grader_for(teacher)
    asks = [make_ask(grader, grade_messages(t, chunk_texts.get(t["chunk_id"], ""), template),
                     {"chunk_id": t["chunk_id"], "source": t["source"], "item": t.get("item", 0),
                      "instruction": t["instruction"][:200]}, _where(t)) for t in triples]
    est = estimate(asks, store, grader.max_new_tokens, *prices)
    if verbose:
        print(estimate_line(f"Grading {len(triples)} examples with {grader.name}", est), flush=True)
    run = _ask_grades(grader, asks, store, prices, verbose)
    failed = {f["key"]: f["error"] for f in run["failed"]}
    kept, dropped, ungraded, dist = [], [], collections.Counter(), {c: collections.Counter() for c in
                                                                   (*CRITERIA, "lowest")}
    for t, a in zip(triples, asks):
        rec = store.records.get(a.key)
        grade, problem = parse_grade(rec["answer"], rec.get("finish_reason")) if rec else \
            (None, "request failed: " + failed.get(a.key, run["stopped"] or "not asked") + " (asked again on a rerun)")
        if grade is None:
            ungraded[re.sub(r":.*", "", problem)] += 1
            kept.append({**t, "grade": {"ungraded": problem}})
            continue
        for c in dist:
            dist[c][grade[c]] += 1
        if grade["lowest"] < min_grade:
            dropped.append({**t, "reason": f"graded below CURATE_MIN_GRADE={min_grade}", "grade": grade})
        else:
            kept.append({**t, "grade": grade})
    summary = {"min_grade": min_grade, "off": False, "grader": grader.name, "estimate": est,
               "graded": sum(dist["lowest"].values()), "ungraded": dict(ungraded.most_common()),
               "distribution": {c: {g: dist[c][g] for g in range(1, 6)} for c in dist}, "dropped": len(dropped),
               "dropped_examples": [{k: d[k] for k in ("source", "instruction", "output", "grade")}
                                    for d in dropped[:3]]} | {k: run[k] for k in run}
    if verbose:
        print(f"Curation: {summary['graded']} graded, {sum(ungraded.values())} without a readable grade (kept), "
              f"{len(dropped)} dropped below {min_grade}; {len(kept)} kept", flush=True)
    return kept, dropped, summary


def curation_lines(c: dict | None) -> list[str]:
    """The card's curation section: the threshold, the grade distribution, what could not be graded, and a
    few dropped examples with the grader's reason."""
    if not c:
        return []
    if c.get("off"):
        return ["## Curation", "", "Not graded (CURATE_MIN_GRADE=0): every valid example is kept.", ""]
    lines = ["## Curation (the teacher's grades)", "",
             f"Grader `{c['grader']}`; an example is kept when its lowest grade (1-5) is at least "
             f"CURATE_MIN_GRADE={c['min_grade']}: {c['graded']} graded, {c['dropped']} dropped; "
             f"{sum(c['ungraded'].values())} without a readable grade, kept. This run asked {c['asked']} grade(s) "
             f"({c['cached']} cached), {c['prompt_tokens'] + c['completion_tokens']:,} tokens, "
             f"${c['cost_usd']:.4f}.", "",
             "| grade | " + " | ".join(CRITERIA) + " | lowest |", "|---:|" + "---:|" * (len(CRITERIA) + 1)]
    lines += [f"| {g} | " + " | ".join(str(c["distribution"][k][g]) for k in (*CRITERIA, "lowest")) + " |"
              for g in range(1, 6)]
    if c["ungraded"]:
        lines += ["", "Without a readable grade (kept): " + "; ".join(f"{k}: {v}" for k, v in c["ungraded"].items())
                  + "."]
    if c.get("stopped"):
        lines += ["", f"Grading stopped: {c['stopped']}"]
    if c["dropped_examples"]:
        lines += ["", "Dropped, for example:", ""]
        for d in c["dropped_examples"]:
            g = d["grade"]
            lines.append(f"- *{' '.join(d['instruction'].split())[:160]}* ({d['source']}): faithful {g['faithful']}, "
                         f"self-contained {g['self_contained']}, useful {g['useful']}; "
                         f"\"{g['reason'] or 'no reason given'}\"")
    return lines + [""]
