"""The teacher LLM: instruction / input / output triples written for each chunk of a document.

Two backends answer the same chat messages:

* :class:`HttpTeacher` (:mod:`helpers.dataset.teacher_http`): any OpenAI-compatible endpoint.
  Requests run ``concurrency`` at a time in a thread pool. Only what dooms every request stops
  the build (:class:`TeacherStop`: a refused key, an unknown model, no credit, a ``Retry-After``
  longer than ``max_wait_s``, an endpoint that answers HTML every time), and every answer in
  flight is still stored; any other refusal fails its chunk alone (:class:`ChunkRefused`, named
  with the document and chunk; asked again on a rerun). A chunk refused as too long for the
  teacher's context is split in two at a paragraph or sentence near its middle and the parts
  asked (the split is stored, so a rerun asks only missing parts).
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
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from helpers.common.generate import generate_answers
from helpers.common.models import load_model
from helpers.core.jsonl import JsonlStore
from helpers.dataset.answers import triples_from_answer
from helpers.dataset.teacher_http import (  # noqa: F401 (HttpTeacher and teacher_api_key: re-exported)
    ChunkRefused,
    Completion,
    HttpTeacher,
    TeacherError,
    TeacherStop,
    teacher_api_key,
)

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
MIN_SPLIT_CHARS = 200  # a part shorter than this is not split again
MAX_SPLIT_DEPTH = 3  # a chunk is split at most into 2**3 parts
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
# The local backend
# ----------------------------------------------------------------------------------------------
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


def split_text(text: str) -> list[str]:
    """Two halves of a text too long for the teacher, cut at the paragraph break, else the sentence end,
    else the space nearest its middle (within its middle half)."""
    mid = len(text) // 2
    for pattern in (r"\n\s*\n", r"(?<=[.!?])\s+", r"\s+"):
        cuts = [m for m in re.finditer(pattern, text) if len(text) / 4 <= m.start() <= 3 * len(text) / 4]
        if cuts:
            cut = min(cuts, key=lambda m: abs(m.start() - mid))
            return [text[:cut.start()], text[cut.end():]]
    return [text[:mid], text[mid:]]


def chunk_answers(store: TeacherStore, key: str, text: str, part: str = "") -> list[tuple[dict | None, str, str]]:
    """``(stored answer or None, text asked, part)`` for the chunk asked with ``key``: its answer, or
    those of the parts it was split into (part "1", "2", "2.1", ...), None where not answered yet."""
    rec = store.records.get(key)
    if rec is None or not rec.get("split"):
        return [(rec, text, part)]
    return [leaf for p in rec["split"] for leaf in chunk_answers(store, p["key"], p["text"], p["part"])]


@dataclass
class _Job:
    """One request: a chunk, or a part of it (which keeps its chunk's id, source and index)."""
    chunk: Any
    text: str
    messages: list[dict]
    key: str
    part: str = ""

    @property
    def where(self) -> str:
        return f"{self.chunk.source} chunk {self.chunk.index}" + (f" part {self.part}" if self.part else "")


@dataclass
class _Plan:
    """What a run asks, and how many chunks were already answered (``resumed``) or are asked again."""
    jobs: list[_Job]
    resumed: int
    reasked: int


class _Asker:
    """Renders the messages and resume key of a chunk or part."""

    def __init__(self, teacher, n: int, template: str, system: str):
        self.teacher, self.n, self.template, self.system = teacher, n, template, system

    def job(self, chunk, text: str | None = None, part: str = "") -> _Job:
        text = chunk.text if text is None else text
        msgs = render_messages(text, chunk.source, self.n, self.template, self.system)
        return _Job(chunk, text, msgs, request_key(self.teacher.key_id, msgs), part)


def _plan_jobs(chunks: list, asker: _Asker, store: TeacherStore, reask_rejected: bool) -> _Plan:
    """The chunks (or parts of a split chunk) not yet in ``store`` and, with ``reask_rejected``, those whose
    stored answer gave no usable example, in the chunks' order."""
    jobs, resumed, reasked = [], 0, 0
    for c in chunks:
        leaves = chunk_answers(store, asker.job(c).key, c.text)
        missing = [asker.job(c, text, part) for rec, text, part in leaves if rec is None]
        useless = [asker.job(c, text, part) for rec, text, part in leaves
                   if rec is not None and reask_rejected and not triples_from_answer(rec, text)[0]]
        jobs += missing + useless
        reasked += bool(useless)
        resumed += not missing and not useless
    return _Plan(jobs, resumed, reasked)


class _Progress:
    """Stores each answer the moment it arrives and counts this run's answers and tokens, printing a
    progress line every tenth answer and at the last."""

    def __init__(self, teacher, store: TeacherStore, n_jobs: int, price_input_per_m: float,
                 price_output_per_m: float, verbose: bool):
        self.teacher, self.store, self.n_jobs, self.verbose = teacher, store, n_jobs, verbose
        self.prices = (price_input_per_m, price_output_per_m)
        self.n = self.pt = self.ct = 0
        self.t0 = time.time()

    def base(self, job: _Job) -> dict:
        c = job.chunk
        rec = {"key": job.key, "chunk_id": c.id, "source": c.source, "chunk_index": c.index,
               "teacher": self.teacher.name, "backend": self.teacher.backend}
        if job.part:
            rec["part"] = job.part
        if job.key in self.store:  # asked again: this record replaces the stored one
            rec["reasked"] = int(self.store.records[job.key].get("reasked", 0)) + 1
        return rec

    def record(self, job: _Job, comp: Completion) -> None:
        self.store.add(self.base(job) | {
            "answer": comp.text, "finish_reason": comp.finish_reason, "prompt_tokens": comp.prompt_tokens,
            "completion_tokens": comp.completion_tokens, "seconds": comp.seconds, "attempts": comp.attempts})
        self.n += 1
        self.pt += comp.prompt_tokens
        self.ct += comp.completion_tokens
        if self.verbose and (self.n % 10 == 0 or self.n == self.n_jobs):
            print(f"  {self.n}/{self.n_jobs} answered, {self.pt + self.ct:,} tokens, "
                  f"${cost_usd(self.pt, self.ct, *self.prices):.4f}, "
                  f"{time.time() - self.t0:.0f}s", flush=True)

    def record_split(self, job: _Job, parts: list[_Job], why: str) -> None:
        """A chunk too long for the teacher: the parts it is asked in, stored so a rerun asks only them."""
        self.store.add(self.base(job) | {
            "answer": "", "finish_reason": None, "prompt_tokens": 0, "completion_tokens": 0, "error": why,
            "split": [{"key": p.key, "part": p.part, "text": p.text} for p in parts]})


def _ask_local(teacher: LocalTeacher, jobs: list[_Job], progress: _Progress) -> None:
    """A local model answers the jobs in batches of its ``batch_size``, in order."""
    for s in range(0, len(jobs), teacher.batch_size):
        batch = jobs[s:s + teacher.batch_size]
        for job, comp in zip(batch, teacher.complete_many([j.messages for j in batch])):
            progress.record(job, comp)


class _HttpRun:
    """The endpoint answers the jobs ``concurrency`` at a time, each answer stored as it completes. A
    :class:`TeacherStop` (or an interrupt) sets ``stop``: requests not started are cancelled, those in
    flight are awaited and their answers stored, then it is raised. Any other failure is kept by chunk
    in ``failures``."""

    def __init__(self, teacher, asker: _Asker, progress: _Progress, verbose: bool):
        self.teacher, self.asker, self.progress, self.verbose = teacher, asker, progress, verbose
        self.stop = threading.Event()
        self.fatal: TeacherStop | None = None
        self.failures: list[dict] = []
        self.not_openai = 0  # replies that were not a chat completion

    def _ask(self, job: _Job) -> Completion:
        try:
            return self.teacher.complete(job.messages, self.stop)
        except TeacherStop:
            self.stop.set()  # at once, so that no worker sends another request
            raise

    def run(self, jobs: list[_Job]) -> None:
        with ThreadPoolExecutor(max_workers=self.teacher.concurrency) as pool:
            futs = {pool.submit(self._ask, j): j for j in jobs}
            try:
                while futs:
                    done, _ = wait(futs, return_when=FIRST_COMPLETED)
                    for fut in done:
                        for part in self._settle(futs.pop(fut), fut):
                            futs[pool.submit(self._ask, part)] = part
                    if self.fatal is not None:
                        self.stop.set()
                        for fut in [f for f in futs if f.cancel()]:  # not started: never asked
                            futs.pop(fut)
            except BaseException:  # interrupted (Ctrl-C, the notebook's stop button): keep what is in flight
                self.stop.set()
                for fut, job in futs.items():
                    if not fut.cancel() and fut.exception() is None:
                        self.progress.record(job, fut.result())
                raise
        if self.fatal is not None:
            raise self.fatal

    def _settle(self, job: _Job, fut) -> list[_Job]:
        """Store the answer, or note the failure; returns the parts to ask when the chunk was too long."""
        try:
            comp = fut.result()
        except TeacherStop as exc:
            self.fatal = self.fatal or TeacherStop(f"{exc} (answering {job.where})")
            return []
        except ChunkRefused as exc:
            depth = job.part.count(".") + 1 if job.part else 0
            if exc.kind == "too_long" and len(job.text) >= MIN_SPLIT_CHARS and depth < MAX_SPLIT_DEPTH:
                return self._split(job, str(exc))
            if exc.kind == "protocol":
                self.not_openai += 1
                if self.progress.n == 0 and self.not_openai >= 3:  # a proxy's page every time
                    self.fatal = self.fatal or TeacherStop(f"no reply so far was a chat completion ({self.not_openai} "
                                                           f"of them): {exc}")
            self._fail(job, exc)
            return []
        except TeacherError as exc:
            self._fail(job, exc)
            return []
        self.progress.record(job, comp)
        return []

    def _split(self, job: _Job, why: str) -> list[_Job]:
        parts = [self.asker.job(job.chunk, text, f"{job.part}.{i}" if job.part else str(i))
                 for i, text in enumerate(split_text(job.text), 1)]
        self.progress.record_split(job, parts, why)
        if self.verbose:
            print(f"  SPLIT {job.where}: {why}; asking it in {len(parts)} parts", flush=True)
        return [] if self.stop.is_set() else parts

    def _fail(self, job: _Job, exc: Exception) -> None:
        c = job.chunk
        self.failures.append({"chunk_id": c.id, "source": c.source, "chunk_index": c.index, "part": job.part,
                              "error": str(exc)})
        if self.verbose:
            print(f"  FAILED {job.where}: {exc} (asked again on the next run)", flush=True)


def run_teacher(chunks: Iterable, teacher, store: TeacherStore, n: int = 3, template: str = DEFAULT_PROMPT,
                system: str = DEFAULT_SYSTEM, price_input_per_m: float = 0.0, price_output_per_m: float = 0.0,
                verbose: bool = True, reask_rejected: bool = False) -> dict:
    """Ask the teacher about every chunk not yet in ``store``; store each answer as it arrives.

    ``reask_rejected``: also ask again about chunks whose stored answer gave no usable example
    (empty, unparseable, cut before any example, every example rejected); the new answer replaces
    the old one for the build, and both stay in the store's file.

    Returns a summary: chunks, resumed (already stored), answered now, re-asked, split (chunks asked
    in parts), failed (by chunk, with the teacher's message: asked again on the next run), tokens and
    estimated cost of this run and of everything in the store. Raises :class:`TeacherStop` (after
    storing every answer in flight) when no request can succeed."""
    chunks = list(chunks)
    asker = _Asker(teacher, n, template, system)
    plan = _plan_jobs(chunks, asker, store, reask_rejected)
    jobs, resumed, reasked = plan.jobs, plan.resumed, plan.reasked
    if verbose:
        print(f"Teacher {teacher.name} ({teacher.backend}): {len(chunks)} chunks, {resumed} already answered "
              f"(in {store.path.name}), {len(jobs)} to ask" + (f" ({reasked} re-asked: their answer gave no usable "
                                                              "example)" if reasked else "")
              + (f", {teacher.concurrency} at a time" if jobs else ""), flush=True)
    progress = _Progress(teacher, store, len(jobs), price_input_per_m, price_output_per_m, verbose)
    http = _HttpRun(teacher, asker, progress, verbose)
    if isinstance(teacher, LocalTeacher):
        _ask_local(teacher, jobs, progress)
    else:
        try:
            http.run(jobs)
        except TeacherStop as exc:
            raise TeacherStop(f"Teacher build stopped: {exc}. {progress.n} answer(s) of this run are stored in "
                              f"{store.path} ({len(store)} in all); a rerun asks only for what is missing.") from None
    return _summary(chunks, asker, store, progress, http, resumed, reasked)


def _summary(chunks: list, asker: _Asker, store: TeacherStore, progress: _Progress, http: _HttpRun, resumed: int,
             reasked: int) -> dict:
    """run_teacher's summary (see there), printed in one line when verbose."""
    teacher, prices = asker.teacher, progress.prices
    tops = [asker.job(c).key for c in chunks]
    mine = [rec for k, c in zip(tops, chunks) for rec, _, _ in chunk_answers(store, k, c.text) if rec is not None]
    pt_all = sum(r["prompt_tokens"] for r in mine)
    ct_all = sum(r["completion_tokens"] for r in mine)
    split = sum(1 for k in tops if store.records.get(k, {}).get("split"))
    summary = {"teacher": teacher.name, "backend": teacher.backend, "chunks": len(chunks), "resumed": resumed,
               "answered": progress.n, "reasked": reasked, "split": split, "failed": http.failures,
               "prompt_tokens": progress.pt, "completion_tokens": progress.ct,
               "cost_usd": round(cost_usd(progress.pt, progress.ct, *prices), 8),
               "total_prompt_tokens": pt_all, "total_completion_tokens": ct_all,
               "total_cost_usd": round(cost_usd(pt_all, ct_all, *prices), 8),
               "seconds": round(time.time() - progress.t0, 1)}
    if progress.verbose:
        print(f"Teacher done: {progress.n} answered now, {resumed} resumed, {split} split in parts, "
              f"{len(http.failures)} failed; {pt_all + ct_all:,} tokens in all (${summary['total_cost_usd']:.4f} "
              "estimated)", flush=True)
    return summary
