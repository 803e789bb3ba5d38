"""The teacher LLM: instruction / input / output triples written for each chunk of a document.

Two backends answer the same chat messages:

* :class:`HttpTeacher`: any OpenAI-compatible ``/chat/completions`` endpoint (Groq, OpenAI,
  a local vLLM or llama.cpp server), set by ``TEACHER_BASE_URL`` and ``TEACHER_MODEL``; the key
  is ``TEACHER_API_KEY`` from the environment or Colab's secret store, and is never printed.
  Requests run concurrently in a thread pool; 429 waits for ``Retry-After``, 5xx, timeouts and
  dropped connections are retried with exponential backoff; other 4xx stop with the reason.
  Token counts come from the response's ``usage``; the cost from per-million-token prices.
* :class:`LocalTeacher`: a transformers model (the embedded SmolLM2 offline; a real Llama on a
  GPU). Its answer is started with ``{"examples": [{"instruction": "What`` so a small model stays
  in JSON and asks a question instead of copying the passage's first sentence.

The prompt is ours, in the spirit of seed 002's (triples from a paper, with an example), but it
asks for JSON. ``load_prompt(path)`` reads an edited copy; placeholders are ``{text}``,
``{source}`` and ``{n}`` (replaced literally, so JSON braces need no escaping).

Every answer is appended to a :class:`TeacherStore` (JSONL) the moment it arrives, keyed by a hash
of (teacher model, system prompt, prompt with the chunk): a rerun after a crash asks only for
what is missing, never twice for the same chunk. Parsing and validation run on the stored raw
answers (``triples_from_answer``), so improving them never costs a new request. Answers that
cannot be used are returned as rejects with the reason (empty, truncated, unparseable, copied
from the chunk, the prompt's example echoed) — never dropped silently. A rerun with
``reask_rejected`` (``REASK_REJECTED=1`` in notebook 02) asks again about the chunks whose answer
gave no usable example; the new answer is appended to the store and replaces the old one.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from helpers.common.generate import generate_answers
from helpers.common.models import load_model
from helpers.core.jsonl import JsonlStore
from helpers.core.net import Backoff, client, parse_retry_after, transport_errors

DEFAULT_SYSTEM = ("You write training data for an instruction-following assistant. "
                  "You reply with JSON only, with no text before or after it.")

EXAMPLE_INSTRUCTION = "Why does R print [1] in front of a result?"
DEFAULT_PROMPT = """Below is a passage from the document "{source}". Write {n} training examples that teach what the passage says.

Each example is a JSON object with three string fields:
- "instruction": a task or question about the subject of the passage that makes sense without seeing the passage;
- "input": context the task needs, such as a short quote, code or numbers, or "" when the instruction stands on its own;
- "output": a correct and complete answer, based only on the passage and written in your own words.

Mix the kinds of task: explain, answer, summarise, compare, apply. Do not copy sentences of the passage into the output, and do not mention "the passage" or "the text".

Reply with one JSON object of this form:
{"examples": [{"instruction": "Why does R print [1] in front of a result?", "input": "", "output": "R numbers the elements of a printed vector, and [1] says that the line starts with the first element."}]}

Passage:
<<<
{text}
>>>"""
LOCAL_PREFILL = '{"examples": [{"instruction": "What'
FIELD_ALIASES = {"instruction": "instruction", "question": "instruction", "task": "instruction", "prompt": "instruction",
                 "input": "input", "context": "input",
                 "output": "output", "answer": "output", "response": "output"}
JSON_STR = r'"(?:[^"\\]|\\.)*"'
FIELDS_RE = re.compile(r'"instruction"\s*:\s*(?P<instruction>' + JSON_STR + r')\s*,\s*(?:"input"\s*:\s*(?P<input>'
                       + JSON_STR + r')\s*,\s*)?"output"\s*:\s*(?P<output>' + JSON_STR + ')')
PLACEHOLDER_RE = re.compile(r"\[(?:insert|your|placeholder)[^\]]*\]|<(?:insert|your)[^>]*>|\.\.\.\s*$", re.IGNORECASE)
STOPWORDS = {"the", "a", "an", "is", "are", "of", "to", "in", "it", "this", "that", "and", "or", "what", "how", "why",
             "does", "do", "which", "for", "on", "by", "with", "as", "be", "can"}
LIST_KEYS = ("examples", "triples", "data", "items", "pairs", "instructions", "dataset")


class TeacherError(RuntimeError):
    """A teacher that cannot answer (bad settings, rejected key, a request that kept failing)."""


def teacher_api_key() -> str | None:
    """``TEACHER_API_KEY`` from the environment or Colab's secret store (never printed)."""
    key = os.environ.get("TEACHER_API_KEY")
    if key:
        return key
    if "google.colab" in sys.modules:
        try:
            from google.colab import userdata  # type: ignore
            return userdata.get("TEACHER_API_KEY")
        except Exception:
            return None
    return None


# ----------------------------------------------------------------------------------------------
# Prompt
# ----------------------------------------------------------------------------------------------
def load_prompt(path: str | os.PathLike | None = None) -> str:
    """The prompt template: ``DEFAULT_PROMPT``, or the text of ``path`` (which must hold ``{text}``)."""
    if not path:
        return DEFAULT_PROMPT
    p = Path(path)
    if not p.exists():
        raise TeacherError(f"Prompt file {str(p)!r} does not exist (write one from helpers.dataset.teacher.DEFAULT_PROMPT).")
    text = p.read_text(encoding="utf-8")
    if "{text}" not in text:
        raise TeacherError(f"Prompt file {str(p)!r} has no {{text}} placeholder: the chunk would never reach the teacher.")
    return text


def render_messages(chunk_text: str, source: str = "", n: int = 3, template: str = DEFAULT_PROMPT,
                    system: str = DEFAULT_SYSTEM) -> list[dict]:
    user = template.replace("{source}", source or "a document").replace("{n}", str(n)).replace("{text}", chunk_text)
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}]


def request_key(teacher_name: str, messages: list[dict]) -> str:
    """The resume key: teacher model + the full messages (prompt, system prompt and chunk)."""
    return hashlib.sha256(json.dumps([teacher_name, messages], ensure_ascii=False).encode()).hexdigest()[:24]


# ----------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------
@dataclass
class Completion:
    text: str
    finish_reason: str | None  # "stop", "length" (cut at the token limit), ...
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    attempts: int = 1


class HttpTeacher:
    """An OpenAI-compatible chat-completions endpoint (see the module docstring)."""

    backend = "http"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_new_tokens: int = 1024,
                 temperature: float = 0.2, timeout_s: float = 120.0, max_retries: int = 5, backoff_s: float = 2.0,
                 max_wait_s: float = 120.0, json_mode: bool = True, concurrency: int = 4):
        if not base_url:
            raise TeacherError("TEACHER_BASE_URL is empty: set it to an OpenAI-compatible endpoint, e.g. "
                               "https://api.groq.com/openai/v1, https://api.openai.com/v1 or http://localhost:8000/v1.")
        if not model:
            raise TeacherError("TEACHER_MODEL is empty: name the model the endpoint serves, e.g. llama-3.3-70b-versatile.")
        self.url = base_url.rstrip("/") + ("" if base_url.rstrip("/").endswith("/chat/completions") else "/chat/completions")
        self.model = model
        self._key = api_key if api_key is not None else teacher_api_key()
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.timeout_s, self.max_retries, self.backoff_s, self.max_wait_s = timeout_s, max_retries, backoff_s, max_wait_s
        self.json_mode, self.concurrency = json_mode, max(1, concurrency)
        self._local = threading.local()

    @property
    def name(self) -> str:
        return self.model

    @property
    def backoff(self) -> Backoff:
        """``backoff_s`` doubled per retry, plus up to 25 % at random; a 429's Retry-After is the wait
        instead; never more than ``max_wait_s``."""
        return Backoff(self.backoff_s, jitter=0.25, cap=self.max_wait_s, retry_after="replaces")

    @property
    def key_id(self) -> str:
        return self.model

    def __repr__(self) -> str:  # never the key
        return f"HttpTeacher(url={self.url!r}, model={self.model!r}, key={'set' if self._key else 'not set'})"

    def _client(self):
        if getattr(self._local, "client", None) is None:  # one pooled client per worker thread
            self._local.client = client(self.timeout_s)
        return self._local.client

    def complete(self, messages: list[dict]) -> Completion:
        timeout_error, broken = transport_errors()
        payload = {"model": self.model, "messages": messages, "max_tokens": self.max_new_tokens,
                   "temperature": self.temperature}
        if self.json_mode:
            payload["response_format"] = {"type": "json_object"}
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        t0 = time.time()
        err = ""
        for attempt in range(1, self.max_retries + 2):
            retry_after = None
            try:
                r = self._client().post(self.url, json=payload, headers=headers)
            except timeout_error:
                err = f"no answer within {self.timeout_s:g}s (timeout)"
            except broken as exc:
                err = f"connection failed ({type(exc).__name__}: {str(exc)[:200]})"
            else:
                if r.status_code == 200:
                    try:
                        body = r.json()
                        choice = body["choices"][0]
                        text = choice["message"].get("content") or ""
                        usage = body.get("usage") or {}
                        return Completion(text, choice.get("finish_reason"), int(usage.get("prompt_tokens") or 0),
                                          int(usage.get("completion_tokens") or 0), round(time.time() - t0, 3), attempt)
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                        err = f"HTTP 200 but not a chat completion ({type(exc).__name__}: {str(exc)[:100]}; body {r.text[:200]!r})"
                elif r.status_code == 429:
                    retry_after = parse_retry_after(r.headers.get("retry-after"))
                    err = f"rate limited (HTTP 429, Retry-After {r.headers.get('retry-after')!r})"
                elif r.status_code >= 500:
                    err = f"server error (HTTP {r.status_code}: {r.text[:200]!r})"
                elif r.status_code in (401, 403):
                    raise TeacherError(f"{self.url} refused the API key (HTTP {r.status_code}). Set TEACHER_API_KEY in "
                                       "the environment or as a Colab secret (key icon) to a valid key.")
                else:
                    raise TeacherError(f"{self.url} answered HTTP {r.status_code} for model {self.model!r}: {r.text[:300]}")
            if attempt > self.max_retries:
                break
            time.sleep(self.backoff.delay(attempt - 1, retry_after))
        raise TeacherError(f"gave up after {self.max_retries + 1} tries: {err}")


class LocalTeacher:
    """A transformers model as the teacher (the embedded model offline)."""

    backend = "local"

    def __init__(self, model_name: str, quantization: str = "auto", max_new_tokens: int = 512,
                 temperature: float = 0.0, batch_size: int = 4, prefill: str = LOCAL_PREFILL):
        self.model_name, self.quantization = model_name, quantization
        self.max_new_tokens, self.temperature, self.batch_size, self.prefill = max_new_tokens, temperature, batch_size, prefill
        self.concurrency = 1
        self._model = self._tok = None

    @property
    def name(self) -> str:
        return self.model_name

    @property
    def key_id(self) -> str:
        """What the resume key depends on besides the messages: the model and the answer's start."""
        return f"{self.model_name}|prefill={self.prefill}"

    def _load(self):
        if self._model is None:
            self._model, self._tok = load_model(self.model_name, quantization=self.quantization)
        return self._model, self._tok

    def complete_many(self, batch: list[list[dict]]) -> list[Completion]:
        model, tok = self._load()
        prompts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) + self.prefill for m in batch]
        t0 = time.time()
        res = generate_answers(model, tok, prompts, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                               do_sample=self.temperature > 0, temperature=self.temperature or 1.0)
        secs = round((time.time() - t0) / max(1, len(batch)), 3)
        out = []
        for p, ans, n in zip(prompts, res["answers"], res["new_tokens"]):
            n_prompt = len(tok(p, add_special_tokens=False)["input_ids"])
            # generate_answers strips the answer: put back the space between "What" and "is"
            glue = " " if self.prefill[-1:].isalnum() and ans[:1].isalnum() else ""
            out.append(Completion(self.prefill + glue + ans, "length" if n >= self.max_new_tokens else "stop",
                                  n_prompt, n, secs))
        return out

    def complete(self, messages: list[dict]) -> Completion:
        return self.complete_many([messages])[0]


# ----------------------------------------------------------------------------------------------
# Resume store
# ----------------------------------------------------------------------------------------------
class TeacherStore(JsonlStore):
    """Answers on disk, one JSON line per chunk, written and fsynced as each arrives (a
    :class:`helpers.core.jsonl.JsonlStore` keyed by ``"key"``).

    A line cut short by a crash is cut off on open (it was never a complete answer); any other
    unreadable line stops with :class:`TeacherError` naming the file and line (the store is
    damaged); a key that appears twice is counted in ``duplicates`` and the first answer kept."""

    def __init__(self, path: str | os.PathLike):
        self.duplicates = 0
        self.superseded: list[dict] = []  # answers replaced by a re-asked one (still in the file)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, key=lambda rec: rec["key"], torn_tail="truncate", bad_line="raise", error=TeacherError)

    @property
    def records(self) -> dict[str, dict]:
        return self.rows

    def accept(self, key: str, record: dict) -> bool:
        """A key already stored is a duplicate and ignored, unless the record is a re-asked one
        (``"reasked": n``), which replaces the earlier answer (both stay in the file)."""
        if key in self.rows and not record.get("reasked"):
            self.duplicates += 1
            return False
        if key in self.rows:
            self.superseded.append(self.rows[key])
        return True


# ----------------------------------------------------------------------------------------------
# Running the teacher over chunks
# ----------------------------------------------------------------------------------------------
def cost_usd(prompt_tokens: int, completion_tokens: int, price_input_per_m: float, price_output_per_m: float) -> float:
    return prompt_tokens / 1e6 * price_input_per_m + completion_tokens / 1e6 * price_output_per_m


def run_teacher(chunks: Iterable, teacher, store: TeacherStore, n: int = 3, template: str = DEFAULT_PROMPT,
                system: str = DEFAULT_SYSTEM, price_input_per_m: float = 0.0, price_output_per_m: float = 0.0,
                verbose: bool = True, reask_rejected: bool = False) -> dict:
    """Ask the teacher about every chunk not yet in ``store``; store each answer as it arrives.

    ``reask_rejected``: also ask again about chunks whose stored answer gave no usable example
    (empty, unparseable, cut before any example, every example rejected); the new answer replaces
    the old one for the build, and both stay in the store's file.

    Returns a summary: chunks, resumed (already stored), answered now, re-asked, failed (with
    reasons: those chunks are asked again on the next run), tokens and estimated cost of this run
    and of everything in the store."""
    chunks = list(chunks)
    jobs, resumed, reasked = [], 0, 0
    for c in chunks:
        msgs = render_messages(c.text, c.source, n, template, system)
        key = request_key(teacher.key_id, msgs)
        if key in store and reask_rejected and not triples_from_answer(store.records[key], c.text)[0]:
            jobs.append((c, msgs, key))
            reasked += 1
        elif key in store:
            resumed += 1
        else:
            jobs.append((c, msgs, key))
    if verbose:
        print(f"Teacher {teacher.name} ({teacher.backend}): {len(chunks)} chunks, {resumed} already answered "
              f"(in {store.path.name}), {len(jobs)} to ask" + (f" ({reasked} re-asked: their answer gave no usable "
                                                              "example)" if reasked else "")
              + (f", {teacher.concurrency} at a time" if jobs else ""), flush=True)
    failures: list[dict] = []
    done = {"n": 0, "pt": 0, "ct": 0}
    t0 = time.time()

    def record(c, key, comp: Completion):
        rec = {"key": key, "chunk_id": c.id, "source": c.source, "chunk_index": c.index, "teacher": teacher.name,
               "backend": teacher.backend, "answer": comp.text, "finish_reason": comp.finish_reason,
               "prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens,
               "seconds": comp.seconds, "attempts": comp.attempts}
        if key in store:  # a re-asked chunk: this answer replaces the rejected one
            rec["reasked"] = int(store.records[key].get("reasked", 0)) + 1
        store.add(rec)
        done["n"] += 1
        done["pt"] += comp.prompt_tokens
        done["ct"] += comp.completion_tokens
        if verbose and (done["n"] % 10 == 0 or done["n"] == len(jobs)):
            print(f"  {done['n']}/{len(jobs)} answered, {done['pt'] + done['ct']:,} tokens, "
                  f"${cost_usd(done['pt'], done['ct'], price_input_per_m, price_output_per_m):.4f}, "
                  f"{time.time() - t0:.0f}s", flush=True)

    if isinstance(teacher, LocalTeacher):
        for s in range(0, len(jobs), teacher.batch_size):
            batch = jobs[s:s + teacher.batch_size]
            for (c, _, key), comp in zip(batch, teacher.complete_many([m for _, m, _ in batch])):
                record(c, key, comp)
    else:
        with ThreadPoolExecutor(max_workers=teacher.concurrency) as pool:
            futs = {pool.submit(teacher.complete, m): (c, key) for c, m, key in jobs}
            for fut in as_completed(futs):
                c, key = futs[fut]
                try:
                    comp = fut.result()
                except TeacherError as exc:
                    if "refused the API key" in str(exc) or "answered HTTP 4" in str(exc):
                        for f in futs:
                            f.cancel()
                        raise
                    failures.append({"chunk_id": c.id, "source": c.source, "chunk_index": c.index, "error": str(exc)})
                    if verbose:
                        print(f"  FAILED {c.source} chunk {c.index}: {exc} (asked again on the next run)", flush=True)
                    continue
                record(c, key, comp)
    keys = {request_key(teacher.key_id, render_messages(c.text, c.source, n, template, system)) for c in chunks}
    mine = [store.records[k] for k in keys if k in store.records]
    pt_all = sum(r["prompt_tokens"] for r in mine)
    ct_all = sum(r["completion_tokens"] for r in mine)
    summary = {"teacher": teacher.name, "backend": teacher.backend, "chunks": len(chunks), "resumed": resumed,
               "answered": done["n"], "reasked": reasked, "failed": failures, "prompt_tokens": done["pt"], "completion_tokens": done["ct"],
               "cost_usd": round(cost_usd(done["pt"], done["ct"], price_input_per_m, price_output_per_m), 8),
               "total_prompt_tokens": pt_all, "total_completion_tokens": ct_all,
               "total_cost_usd": round(cost_usd(pt_all, ct_all, price_input_per_m, price_output_per_m), 8),
               "seconds": round(time.time() - t0, 1)}
    if verbose:
        print(f"Teacher done: {done['n']} answered now, {resumed} resumed, {len(failures)} failed; "
              f"{pt_all + ct_all:,} tokens in all (${summary['total_cost_usd']:.4f} estimated)", flush=True)
    return summary


# ----------------------------------------------------------------------------------------------
# Parsing and validation
# ----------------------------------------------------------------------------------------------
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
        if got and got is not None and any(isinstance(x, dict) and set(map(str.lower, x)) & set(FIELD_ALIASES) for x in got):
            items.extend(got)
            pos = last_end = end
        else:
            pos = i + 1
    cut_short = "{" in t[last_end:] and not t.rstrip().endswith(("}", "]"))
    if not items:  # an object left open (a nested list, the token limit): its complete fields still count
        for m in FIELDS_RE.finditer(t):
            try:
                items.append({k: json.loads(m.group(k)) if m.group(k) else "" for k in ("instruction", "input", "output")})
            except ValueError:
                continue
        cut_short = cut_short or bool(items)
    if items:
        return items, None, cut_short
    return [], f"unparseable JSON ({first_err or 'no JSON object found'})", cut_short or not t.rstrip().endswith(("}", "]"))


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
    items, error, cut_short = parse_answer(record["answer"])
    truncated = record.get("finish_reason") == "length"
    if error:
        reason = "truncated: cut at the token limit before any complete example" if (truncated and error != "empty answer") \
            else error
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

