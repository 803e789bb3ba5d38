"""A teacher's answers → instruction / input / output triples: the raw answer parsed forgivingly (code fences,
prose around the JSON, trailing commas, an object cut at the token limit), each item validated, and
every answer or item that cannot be used returned as a reject with its reason (empty, truncated,
unparseable, copied from the chunk, the prompt's example echoed), never dropped silently. It runs
on the stored answers (``helpers.dataset.teacher.TeacherStore``), so improving it never costs a
new request."""
from __future__ import annotations

import json
import re

# the question of the example in helpers.dataset.teacher.DEFAULT_PROMPT: an answer that copies it is rejected
EXAMPLE_INSTRUCTION = "Why does R print [1] in front of a result?"
FIELD_ALIASES = {"instruction": "instruction", "question": "instruction", "task": "instruction",
                 "prompt": "instruction",
                 "input": "input", "context": "input",
                 "output": "output", "answer": "output", "response": "output"}
JSON_STR = r'"(?:[^"\\]|\\.)*"'
FIELDS_RE = re.compile(r'"instruction"\s*:\s*(?P<instruction>' + JSON_STR + r')\s*,\s*(?:"input"\s*:\s*(?P<input>'
                       + JSON_STR + r')\s*,\s*)?"output"\s*:\s*(?P<output>' + JSON_STR + ')')
PLACEHOLDER_RE = re.compile(r"\[(?:insert|your|placeholder)[^\]]*\]|<(?:insert|your)[^>]*>|\.\.\.\s*$", re.IGNORECASE)
STOPWORDS = {"the", "a", "an", "is", "are", "of", "to", "in", "it", "this", "that", "and", "or", "what", "how", "why",
             "does", "do", "which", "for", "on", "by", "with", "as", "be", "can"}
LIST_KEYS = ("examples", "triples", "data", "items", "pairs", "instructions", "dataset")


def _items_of(value) -> list | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        low = {str(k).lower(): v for k, v in value.items()}
        for k in LIST_KEYS:
            if isinstance(low.get(k), list):
                return low[k]
        if any(k in FIELD_ALIASES for k in low):
            return [value]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def parse_answer(text: str) -> tuple[list, str | None, bool]:
    """JSON items in a teacher's answer, forgivingly: code fences, prose around the JSON,
    trailing commas, a bare object or list. Returns ``(items, error, cut_short)``: ``error`` says
    why nothing could be read; ``cut_short`` is True when an object was left unfinished."""
    t = (text or "").strip()
    fence = re.search(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", t, re.S)
    if fence and fence.group(1).strip():
        t = fence.group(1).strip()
    if not t:
        return [], "empty answer", False
    for cand in (t, re.sub(r",\s*([}\]])", r"\1", t)):
        try:
            items = _items_of(json.loads(cand))
            if items is not None:
                return items, None, False
        except ValueError:
            pass
    dec = json.JSONDecoder()
    items, pos, last_end, first_err = [], 0, 0, None
    while True:
        i = t.find("{", pos)
        if i < 0:
            break
        try:
            val, end = dec.raw_decode(t, i)
        except ValueError as exc:
            first_err = first_err or str(exc)
            pos = i + 1
            continue
        got = _items_of(val)
        if got and got is not None and any(isinstance(x, dict) and set(map(str.lower, x)) & set(FIELD_ALIASES)
                                           for x in got):
            items.extend(got)
            pos = last_end = end
        else:
            pos = i + 1
    cut_short = "{" in t[last_end:] and not t.rstrip().endswith(("}", "]"))
    if not items:  # an object left open (a nested list, the token limit): its complete fields still count
        for m in FIELDS_RE.finditer(t):
            try:
                items.append({k: json.loads(m.group(k)) if m.group(k) else ""
                              for k in ("instruction", "input", "output")})
            except ValueError:
                continue
        cut_short = cut_short or bool(items)
    if items:
        return items, None, cut_short
    return [], f"unparseable JSON ({first_err or 'no JSON object found'})", \
        cut_short or not t.rstrip().endswith(("}", "]"))


def _norm_words(s: str) -> list[str]:
    return re.findall(r"\w+", s.lower())


def _copied(candidate: str, source_words: list[str], source_grams: set, n: int = 8) -> bool:
    w = _norm_words(candidate)
    if len(w) >= n:
        grams = {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}
        return len(grams & source_grams) / len(grams) >= 0.6
    if len(w) >= 5:
        return " ".join(w) in " ".join(source_words)
    return False


def validate_item(item, chunk_text: str, _cache: dict | None = None) -> tuple[dict | None, str | None]:
    """A clean ``{"instruction", "input", "output"}`` triple, or None and the reason it is rejected."""
    if not isinstance(item, dict):
        return None, f"not a JSON object ({type(item).__name__})"
    fields: dict[str, str] = {}
    for k, v in item.items():
        name = FIELD_ALIASES.get(str(k).strip().lower())
        if name is None or name in fields:
            continue
        if v is None:
            v = ""
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str):
            return None, f"field {name!r} is not a string ({type(v).__name__})"
        fields[name] = v.strip()
    for name in ("instruction", "output"):
        if name not in fields:
            return None, f"missing field {name!r}"
        if not fields[name]:
            return None, f"empty {name}"
    fields.setdefault("input", "")
    if fields["instruction"].strip().lower() == EXAMPLE_INSTRUCTION.lower():
        return None, "copies the prompt's example"
    if _norm_words(fields["output"]) == _norm_words(fields["instruction"]):
        return None, "output repeats the instruction"
    out_w, ins_w = _norm_words(fields["output"]), set(_norm_words(fields["instruction"])) | STOPWORDS
    if len(out_w) >= 3 and set(out_w) <= ins_w:
        return None, "output only restates the instruction"
    if fields["input"] and _norm_words(fields["output"]) == _norm_words(fields["input"]):
        return None, "output repeats the input"
    if any(PLACEHOLDER_RE.search(fields[k]) for k in ("instruction", "output")):
        return None, "placeholder text instead of content"
    cache = _cache if _cache is not None else {}
    if "grams" not in cache:
        sw = _norm_words(chunk_text)
        cache["words"], cache["grams"] = sw, {tuple(sw[i:i + 8]) for i in range(len(sw) - 7)}
    if _copied(fields["output"], cache["words"], cache["grams"]):
        return None, "output copied from the chunk"
    if len(_norm_words(fields["instruction"])) >= 12 and _copied(fields["instruction"], cache["words"], cache["grams"]):
        return None, "instruction copied from the chunk"
    return {"instruction": fields["instruction"], "input": fields["input"], "output": fields["output"]}, None


def triples_from_answer(record: dict, chunk_text: str) -> tuple[list[dict], list[dict]]:
    """Valid triples of one stored answer, and rejects (each with ``reason`` and what was rejected)."""
    base = {"source": record["source"], "chunk_id": record["chunk_id"], "chunk_index": record["chunk_index"],
            "teacher": record["teacher"]}
    if record.get("part"):  # an answer about a part of a chunk too long for the teacher
        base["part"] = record["part"]
    items, error, cut_short = parse_answer(record["answer"])
    truncated = record.get("finish_reason") == "length"
    if error:
        reason = "truncated: cut at the token limit before any complete example" \
            if (truncated and error != "empty answer") else error
        return [], [{**base, "reason": reason, "answer": record["answer"]}]
    triples, rejects, cache, seen = [], [], {}, set()
    for i, item in enumerate(items):
        triple, why = validate_item(item, chunk_text, cache)
        if triple is None:
            rejects.append({**base, "reason": why, "item": item})
            continue
        key = (triple["instruction"].lower(), triple["output"].lower())
        if key in seen:
            rejects.append({**base, "reason": "repeated within the answer", "item": item})
            continue
        seen.add(key)
        triples.append({**triple, **base, "item": i})
    if cut_short or (truncated and not record["answer"].rstrip().endswith(("}", "]"))):
        rejects.append({**base, "reason": "truncated: the last example was cut at the token limit",
                        "answer_tail": record["answer"][-300:]})
    return triples, rejects
