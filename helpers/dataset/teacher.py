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
answers (``helpers.dataset.answers``), so improving them never costs a new request. Answers that
cannot be used are returned as rejects with the reason (empty, truncated, unparseable, copied
from the chunk, the prompt's example echoed) — never dropped silently. A rerun with
``reask_rejected`` (``REASK_REJECTED=1`` in notebook 02) asks again about the chunks whose answer
gave no usable example; the new answer is appended to the store and replaces the old one.
"""
from __future__ import annotations

import hashlib
import json
import os
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
from helpers.dataset.answers import triples_from_answer

DEFAULT_SYSTEM = ("You write training data for an instruction-following assistant. "
                  "You reply with JSON only, with no text before or after it.")

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
>>>"""  # noqa: E501 (the prompt's text, one line per paragraph)
LOCAL_PREFILL = '{"examples": [{"instruction": "What'


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
        raise TeacherError(f"Prompt file {str(p)!r} does not exist (write one from "
                           "helpers.dataset.teacher.DEFAULT_PROMPT).")
    text = p.read_text(encoding="utf-8")
    if "{text}" not in text:
        raise TeacherError(f"Prompt file {str(p)!r} has no {{text}} placeholder: the chunk would never reach "
                           "the teacher.")
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
            raise TeacherError("TEACHER_MODEL is empty: name the model the endpoint serves, "
                               "e.g. llama-3.3-70b-versatile.")
        self.url = base_url.rstrip("/") + ("" if base_url.rstrip("/").endswith("/chat/completions")
                                           else "/chat/completions")
        self.model = model
        self._key = api_key if api_key is not None else teacher_api_key()
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.max_wait_s = backoff_s, max_wait_s
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
                        err = (f"HTTP 200 but not a chat completion ({type(exc).__name__}: {str(exc)[:100]}; "
                               f"body {r.text[:200]!r})")
                elif r.status_code == 429:
                    retry_after = parse_retry_after(r.headers.get("retry-after"))
                    err = f"rate limited (HTTP 429, Retry-After {r.headers.get('retry-after')!r})"
                elif r.status_code >= 500:
                    err = f"server error (HTTP {r.status_code}: {r.text[:200]!r})"
                elif r.status_code in (401, 403):
                    raise TeacherError(f"{self.url} refused the API key (HTTP {r.status_code}). Set TEACHER_API_KEY in "
                                       "the environment or as a Colab secret (key icon) to a valid key.")
                else:
                    raise TeacherError(f"{self.url} answered HTTP {r.status_code} for model {self.model!r}: "
                                       f"{r.text[:300]}")
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
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.batch_size, self.prefill = batch_size, prefill
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


@dataclass
class _TeacherJobs:
    """What a run asks: the chunks to ask about (each with its messages and resume key), and how many
    chunks were already answered (``resumed``) or are asked again (``reasked``)."""
    jobs: list[tuple]  # (chunk, messages, key)
    resumed: int
    reasked: int


def _plan_jobs(chunks: list, teacher, store: TeacherStore, n: int, template: str, system: str,
               reask_rejected: bool) -> _TeacherJobs:
    """The chunks not yet in ``store`` (and, with ``reask_rejected``, those whose stored answer gave
    no usable example), in the chunks' order."""
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
    return _TeacherJobs(jobs, resumed, reasked)


class _Progress:
    """Stores each answer the moment it arrives and counts this run's answers and tokens, printing a
    progress line every tenth answer and at the last."""

    def __init__(self, teacher, store: TeacherStore, n_jobs: int, price_input_per_m: float,
                 price_output_per_m: float, verbose: bool):
        self.teacher, self.store, self.n_jobs, self.verbose = teacher, store, n_jobs, verbose
        self.prices = (price_input_per_m, price_output_per_m)
        self.n = self.pt = self.ct = 0
        self.t0 = time.time()

    def record(self, c, key: str, comp: Completion) -> None:
        teacher, store = self.teacher, self.store
        rec = {"key": key, "chunk_id": c.id, "source": c.source, "chunk_index": c.index, "teacher": teacher.name,
               "backend": teacher.backend, "answer": comp.text, "finish_reason": comp.finish_reason,
               "prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens,
               "seconds": comp.seconds, "attempts": comp.attempts}
        if key in store:  # a re-asked chunk: this answer replaces the rejected one
            rec["reasked"] = int(store.records[key].get("reasked", 0)) + 1
        store.add(rec)
        self.n += 1
        self.pt += comp.prompt_tokens
        self.ct += comp.completion_tokens
        if self.verbose and (self.n % 10 == 0 or self.n == self.n_jobs):
            print(f"  {self.n}/{self.n_jobs} answered, {self.pt + self.ct:,} tokens, "
                  f"${cost_usd(self.pt, self.ct, *self.prices):.4f}, "
                  f"{time.time() - self.t0:.0f}s", flush=True)


def _ask_local(teacher: LocalTeacher, jobs: list[tuple], progress: _Progress) -> None:
    """A local model answers the jobs in batches of its ``batch_size``, in order."""
    for s in range(0, len(jobs), teacher.batch_size):
        batch = jobs[s:s + teacher.batch_size]
        for (c, _, key), comp in zip(batch, teacher.complete_many([m for _, m, _ in batch])):
            progress.record(c, key, comp)


def _ask_http(teacher, jobs: list[tuple], progress: _Progress, verbose: bool) -> list[dict]:
    """The endpoint answers the jobs ``concurrency`` at a time, stored as they complete. A rejected key
    or another 4xx stops the run (the pending requests are cancelled); any other failure is returned
    by chunk, to be asked again on the next run."""
    failures: list[dict] = []
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
            progress.record(c, key, comp)
    return failures


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
    plan = _plan_jobs(chunks, teacher, store, n, template, system, reask_rejected)
    jobs, resumed, reasked = plan.jobs, plan.resumed, plan.reasked
    if verbose:
        print(f"Teacher {teacher.name} ({teacher.backend}): {len(chunks)} chunks, {resumed} already answered "
              f"(in {store.path.name}), {len(jobs)} to ask" + (f" ({reasked} re-asked: their answer gave no usable "
                                                              "example)" if reasked else "")
              + (f", {teacher.concurrency} at a time" if jobs else ""), flush=True)
    failures: list[dict] = []
    progress = _Progress(teacher, store, len(jobs), price_input_per_m, price_output_per_m, verbose)
    if isinstance(teacher, LocalTeacher):
        _ask_local(teacher, jobs, progress)
    else:
        failures = _ask_http(teacher, jobs, progress, verbose)
    keys = {request_key(teacher.key_id, render_messages(c.text, c.source, n, template, system)) for c in chunks}
    mine = [store.records[k] for k in keys if k in store.records]
    pt_all = sum(r["prompt_tokens"] for r in mine)
    ct_all = sum(r["completion_tokens"] for r in mine)
    summary = {"teacher": teacher.name, "backend": teacher.backend, "chunks": len(chunks), "resumed": resumed,
               "answered": progress.n, "reasked": reasked, "failed": failures, "prompt_tokens": progress.pt,
               "completion_tokens": progress.ct,
               "cost_usd": round(cost_usd(progress.pt, progress.ct, price_input_per_m, price_output_per_m), 8),
               "total_prompt_tokens": pt_all, "total_completion_tokens": ct_all,
               "total_cost_usd": round(cost_usd(pt_all, ct_all, price_input_per_m, price_output_per_m), 8),
               "seconds": round(time.time() - progress.t0, 1)}
    if verbose:
        print(f"Teacher done: {progress.n} answered now, {resumed} resumed, {len(failures)} failed; "
              f"{pt_all + ct_all:,} tokens in all (${summary['total_cost_usd']:.4f} estimated)", flush=True)
    return summary
