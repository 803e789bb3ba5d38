"""Many small questions to a teacher or a judge, every answer cached: the grades of the triples in
notebook 02 (:mod:`helpers.dataset.grading`) and the judge's verdicts in notebook 05.

Each question is an :class:`Ask` (its messages and a resume key from the model and the messages).
:func:`ask_all` asks those whose key is not yet in the store (a :class:`TeacherStore`, the crash-safe
JSONL store of the teacher's answers), storing each answer the moment it arrives, so a rerun asks
only what is missing. :func:`estimate` says what that costs before anything is asked: requests,
prompt tokens (about four characters a token), at most ``max_new_tokens`` per answer, and dollars
at the configured prices.

Failures follow the teacher's rules (CONTRIBUTING.md, "Bad input"): what dooms every request (a
refused key, an unknown model, no credit, a long Retry-After, HTML every time) stops with
:class:`TeacherStop` after the answers in flight are stored; any other refusal or a request that
kept failing costs that question alone (listed in ``failed``, asked again on the next run).
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from helpers.dataset.teacher import (
    ChunkRefused,
    Completion,
    LocalTeacher,
    TeacherError,
    TeacherStop,
    TeacherStore,
    cost_usd,
    request_key,
)

CHARS_PER_TOKEN = 4  # the estimate's rule of thumb for prompt tokens


@dataclass
class Ask:
    """One question: its messages, its resume key, what is stored with the answer, and its name."""
    messages: list[dict]
    key: str
    meta: dict = field(default_factory=dict)
    where: str = ""


def make_ask(asker, messages: list[dict], meta: dict | None = None, where: str = "") -> Ask:
    """An :class:`Ask` keyed by the asker's model (``key_id``) and the full messages."""
    return Ask(messages, request_key(asker.key_id, messages), dict(meta or {}), where)


def estimate(asks: list[Ask], store: TeacherStore, max_new_tokens: int, price_input_per_m: float = 0.0,
             price_output_per_m: float = 0.0) -> dict:
    """What asking the questions not yet in ``store`` costs: requests, prompt tokens (estimated from the
    characters), completion tokens at most, and dollars at most (0 without prices)."""
    missing = [a for a in asks if a.key not in store]
    pt = sum(len(json.dumps(a.messages, ensure_ascii=False)) // CHARS_PER_TOKEN for a in missing)
    ct = len(missing) * max_new_tokens
    return {"questions": len(asks), "cached": len(asks) - len(missing), "requests": len(missing),
            "prompt_tokens": pt, "max_completion_tokens": ct,
            "max_cost_usd": round(cost_usd(pt, ct, price_input_per_m, price_output_per_m), 6),
            "priced": bool(price_input_per_m or price_output_per_m)}


def estimate_line(what: str, est: dict) -> str:
    """The estimate in one line, printed before anything is asked."""
    if not est["requests"]:
        return f"{what}: all {est['questions']} already in the cache, nothing to ask"
    cost = (f", at most ${est['max_cost_usd']:.4f}" if est["priced"] else
            " (set the PRICE_* parameters for a price)")
    return (f"{what}: {est['requests']} request(s) to send ({est['cached']} of {est['questions']} cached), about "
            f"{est['prompt_tokens']:,} prompt + at most {est['max_completion_tokens']:,} completion tokens{cost}")


class _Run:
    """Stores each answer as it arrives and counts this run's answers, tokens and failures."""

    def __init__(self, asker, store: TeacherStore, n: int, label: str, verbose: bool):
        self.asker, self.store, self.n_jobs, self.label, self.verbose = asker, store, n, label, verbose
        self.n = self.pt = self.ct = self.not_openai = 0
        self.failed: list[dict] = []
        self.fatal: TeacherStop | None = None
        self.stop = threading.Event()
        self.t0 = time.time()

    def record(self, ask: Ask, comp: Completion) -> None:
        self.store.add({"key": ask.key, **ask.meta, "model": self.asker.name, "backend": self.asker.backend,
                        "answer": comp.text, "finish_reason": comp.finish_reason,
                        "prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens,
                        "seconds": comp.seconds, "attempts": comp.attempts})
        self.n, self.pt, self.ct = self.n + 1, self.pt + comp.prompt_tokens, self.ct + comp.completion_tokens
        if self.verbose and (self.n % 10 == 0 or self.n == self.n_jobs):
            print(f"  {self.label}: {self.n}/{self.n_jobs} answered, {self.pt + self.ct:,} tokens, "
                  f"{time.time() - self.t0:.0f}s", flush=True)

    def fail(self, ask: Ask, exc: Exception) -> None:
        if isinstance(exc, ChunkRefused) and exc.kind == "protocol":
            self.not_openai += 1
            if self.n == 0 and self.not_openai >= 3:
                self.fatal = self.fatal or TeacherStop(f"no reply so far was a chat completion: {exc}")
        self.failed.append({"where": ask.where, "key": ask.key, "error": str(exc)})
        if self.verbose:
            print(f"  FAILED {ask.where}: {exc} (asked again on the next run)", flush=True)

    def settle(self, ask: Ask, fut) -> None:
        try:
            comp = fut.result()
        except TeacherStop as exc:
            self.fatal = self.fatal or TeacherStop(f"{exc} (asking {ask.where})")
        except TeacherError as exc:
            self.fail(ask, exc)
        else:
            self.record(ask, comp)


def _ask_http(run: _Run, asks: list[Ask]) -> None:
    """The endpoint answers ``concurrency`` at a time; on a stop or an interrupt the requests not yet
    sent are cancelled and those in flight stored."""
    def one(ask: Ask) -> Completion:
        try:
            return run.asker.complete(ask.messages, run.stop)
        except TeacherStop:
            run.stop.set()
            raise

    with ThreadPoolExecutor(max_workers=run.asker.concurrency) as pool:
        futs = {pool.submit(one, a): a for a in asks}
        try:
            while futs:
                done, _ = wait(futs, return_when=FIRST_COMPLETED)
                for fut in done:
                    run.settle(futs.pop(fut), fut)
                if run.fatal is not None:
                    run.stop.set()
                    for fut in [f for f in futs if f.cancel()]:
                        futs.pop(fut)
        except BaseException:  # interrupted: keep what is in flight
            run.stop.set()
            for fut, ask in futs.items():
                if not fut.cancel() and fut.exception() is None:
                    run.record(ask, fut.result())
            raise


def ask_all(asker, asks: list[Ask], store: TeacherStore, label: str = "questions", verbose: bool = True,
            price_input_per_m: float = 0.0, price_output_per_m: float = 0.0) -> dict:
    """Ask every question not yet in ``store`` (see the module docstring). Returns what this run did:
    ``asked``, ``cached``, ``failed`` (``{"where", "key", "error"}``), tokens and cost; raises
    :class:`TeacherStop` (every answer in flight stored) when no request can succeed."""
    todo = [a for a in asks if a.key not in store]
    cached = len(asks) - len(todo)
    seen: set[str] = set()
    todo = [a for a in todo if not (a.key in seen or seen.add(a.key))]  # the same question once
    run = _Run(asker, store, len(todo), label, verbose)
    if isinstance(asker, LocalTeacher):
        for s in range(0, len(todo), asker.batch_size):
            batch = todo[s:s + asker.batch_size]
            for ask, comp in zip(batch, asker.complete_many([a.messages for a in batch])):
                run.record(ask, comp)
    elif todo:
        _ask_http(run, todo)
    if run.fatal is not None:
        raise TeacherStop(f"{label} stopped: {run.fatal}. {run.n} answer(s) of this run are stored in {store.path} "
                          f"({len(store)} in all); a rerun asks only what is missing.")
    return {"asked": run.n, "cached": cached, "failed": run.failed, "prompt_tokens": run.pt,
            "completion_tokens": run.ct, "cost_usd": round(cost_usd(run.pt, run.ct, price_input_per_m,
                                                                    price_output_per_m), 8),
            "seconds": round(time.time() - run.t0, 1)}
