"""Answers kept between runs of notebook 05, so a rerun regenerates nothing already answered.

Each generated answer is stored (crash-safe, one line each: ``helpers.core.jsonl.JsonlStore``) under a
key of the base model, the adapter's files (for the tuned model; the base's answers survive a new
adapter), the prompt and every generation setting; ``AnswerCache.generate`` asks the model only for the
prompts it has no answer to, and returns ``generate_answers``' dict in the order of the prompts.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from helpers.common.generate import generate_answers
from helpers.core.jsonl import JsonlStore


def adapter_fingerprint(adapter_dir: str | os.PathLike) -> str:
    """A hash of the adapter's weights and config files (a retrained adapter gets a new one)."""
    h = hashlib.sha256()
    for p in sorted(Path(adapter_dir).glob("adapter_*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


class AnswerCache:
    """Stored answers of one base model and adapter, in ``path`` (JSONL)."""

    def __init__(self, path: str | os.PathLike, model_name: str, adapter_dir: str | os.PathLike):
        self.store = JsonlStore(path, key=lambda r: r["key"], torn_tail="truncate")
        self.model_name = model_name
        self.adapter = adapter_fingerprint(adapter_dir)
        self.reused = 0  # answers taken from the store this session
        self.generated = 0

    def key(self, which: str, prompt: str, settings: dict) -> str:
        """The key of one answer: model, adapter (tuned only), prompt and generation settings."""
        ident = {"model": self.model_name, "adapter": self.adapter if which == "tuned" else "", "prompt": prompt,
                 **settings}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    def generate(self, which: str, model, tokenizer, prompts: list[str], **settings) -> dict:
        """``generate_answers(model, tokenizer, prompts, **settings)`` for the prompts not answered yet
        (``which`` is "base" or "tuned": the model's state is the caller's), each stored as it comes."""
        keys = [self.key(which, p, settings) for p in prompts]
        todo, seen = [], set()
        for i, k in enumerate(keys):
            if k not in self.store and k not in seen:
                todo.append(i)
                seen.add(k)
        fresh = generate_answers(model, tokenizer, [prompts[i] for i in todo], **settings) if todo else None
        if fresh:
            for n, i in enumerate(todo):
                self.store.add({"key": keys[i], "which": which, "answer": fresh["answers"][n],
                                "new_tokens": fresh["new_tokens"][n], "stopped": fresh["stopped"][n],
                                "prompt_tokens": fresh["prompt_tokens"][n],
                                "tokens_per_second": fresh["tokens_per_second"]})
        self.generated += len(todo)
        self.reused += len(prompts) - len(todo)
        rows = [self.store.get(k) for k in keys]
        speeds = [r["tokens_per_second"] for r in rows if r.get("tokens_per_second")]
        return {"answers": [r["answer"] for r in rows], "new_tokens": [r["new_tokens"] for r in rows],
                "stopped": [r["stopped"] for r in rows], "prompt_tokens": [r["prompt_tokens"] for r in rows],
                "truncated": fresh["truncated"] if fresh else 0,
                "seconds": fresh["seconds"] if fresh else 0.0,
                "tokens_per_second": fresh["tokens_per_second"] if fresh else
                (round(sum(speeds) / len(speeds), 1) if speeds else None),
                "cached": len(prompts) - len(todo)}

    def line(self) -> str:
        """What the store saved this session, for the notebook."""
        return (f"Answers: {self.generated} generated, {self.reused} reused from {self.store.path.name} "
                "(a rerun regenerates nothing already answered)")
