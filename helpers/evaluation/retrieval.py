"""Retrieval over the user's own documents: a BM25 index (``bm25s``) of notebook 02's source chunks
(``chunks.jsonl``), the top-k passages of a question fitted into a token budget, and the question
rewritten to carry them. Notebook 05 uses it for the retrieval baseline (``helpers.evaluation.fourway``)
and notebook 06 for its "documents" chat preset.

Words are lower-cased with English stop words removed and no stemming, so that an index gives the same
passages on every machine; a passage sharing no word with the question is never returned.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from helpers.core.jsonl import DataError, read_jsonl

PASSAGES_HEADER = "Passages from your documents (most relevant first):"
QUESTION_RULE = "Using the passages above where they help, answer:"
CUT_MARK = "[... passage cut here to fit the context]"


class RetrievalError(ValueError):
    """Chunks that cannot be indexed or a search that cannot run; the message says what to do."""


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk: its id, document, position in the document, text and BM25 score."""
    chunk_id: str
    source: str
    index: int
    text: str
    score: float

    @property
    def label(self) -> str:
        return f"{self.source} #{self.index}"


def read_chunks(path: str | os.PathLike) -> list[dict]:
    """The chunks of ``chunks.jsonl`` (``{"chunk_id", "source", "index", "text"}``), refused with what to
    do when the file is missing, empty, or a row has no text."""
    path = Path(path)
    if not path.is_file():
        raise RetrievalError(f"No chunks to retrieve from: {path} is not there. Notebook 02 writes chunks.jsonl (the "
                             "source chunks of your documents) beside train.jsonl; run it, or set CHUNKS_PATH.")
    try:
        rows = read_jsonl(path)
    except DataError as exc:
        raise RetrievalError(str(exc)) from None
    if not rows:
        raise RetrievalError(f"No chunks to retrieve from: {path} is empty (notebook 02 found no text to chunk).")
    for i, r in enumerate(rows, 1):
        if not isinstance(r.get("text"), str) or not r["text"].strip():
            raise RetrievalError(f"{path}, row {i}: a chunk needs a non-empty 'text' string.")
    return rows


def _tokens(texts: list[str]) -> list[list[str]]:
    import bm25s
    return bm25s.tokenize(texts, stopwords="en", show_progress=False, return_ids=False)


class ChunkIndex:
    """A BM25 index of chunks; ``search(question, k)`` gives the best ``k`` passages."""

    def __init__(self, chunks: list[dict], name: str = "chunks"):
        import bm25s
        logging.getLogger("bm25s").setLevel(logging.WARNING)  # no "Building index" lines in a notebook
        if not chunks:
            raise RetrievalError(f"No chunks to retrieve from: {name} holds none. Notebook 02 writes them.")
        self.name = name
        self.chunks = [{"chunk_id": str(c.get("chunk_id") or i), "source": str(c.get("source") or ""),
                        "index": int(c.get("index") or 0), "text": c["text"]} for i, c in enumerate(chunks)]
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize([c["text"] for c in self.chunks], stopwords="en", show_progress=False),
                         show_progress=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ChunkIndex:
        """The index of a ``chunks.jsonl`` (see :func:`read_chunks` for what is refused)."""
        return cls(read_chunks(path), name=str(path))

    def __len__(self) -> int:
        return len(self.chunks)

    def describe(self) -> str:
        docs = len({c["source"] for c in self.chunks})
        return f"BM25 index of {len(self)} chunks from {docs} document{'s' if docs != 1 else ''} ({self.name})"

    def search(self, question: str, k: int = 3) -> list[Passage]:
        """The (at most) ``k`` chunks that score best for ``question``, best first; chunks sharing no
        word with it are left out, so a question of stop words alone finds nothing."""
        if k < 1:
            raise RetrievalError(f"k={k}: retrieve at least 1 passage.")
        return self.search_many([question], k)[0]

    def search_many(self, questions: list[str], k: int = 3) -> list[list[Passage]]:
        """:meth:`search` for each question, in one call."""
        if not questions:
            return []
        found, scores = self._bm25.retrieve(_tokens(questions), k=min(k, len(self)), show_progress=False)
        out = []
        for ids, sc in zip(found, scores):
            out.append([Passage(score=round(float(s), 4), **self.chunks[int(i)]) for i, s in zip(ids, sc) if s > 0])
        return out


def passages_block(passages: list[Passage], tokenizer, budget_tokens: int) -> tuple[str, list[Passage]]:
    """The passages as one numbered text of at most ``budget_tokens`` tokens, and those it holds.

    Passages go in rank order; the first that does not fit whole is cut at a word and ends with
    ``CUT_MARK`` (when at least 16 tokens are left for it), the rest are left out."""
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    parts, used = [PASSAGES_HEADER], []
    for n, p in enumerate(passages, 1):
        piece = f"[{n}] {p.label}\n{p.text.strip()}"
        if count("\n\n".join(parts + [piece])) <= budget_tokens:
            parts.append(piece)
            used.append(p)
            continue
        words = piece.split(" ")
        lo, hi = 0, len(words)  # the most words that fit with the cut mark
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count("\n\n".join(parts + [" ".join(words[:mid]) + " " + CUT_MARK])) <= budget_tokens:
                lo = mid
            else:
                hi = mid - 1
        if lo and budget_tokens - count("\n\n".join(parts)) >= 16:
            parts.append(" ".join(words[:lo]) + " " + CUT_MARK)
            used.append(p)
        break
    return ("\n\n".join(parts), used) if used else ("", [])


def ask_with_passages(question: str, block: str) -> str:
    """The question with the passages in front of it and a rule between them ("" block: the question)."""
    return f"{block}\n\n{QUESTION_RULE}\n{question}" if block else question


def with_passages(row: dict, block: str) -> dict:
    """A held-out row whose question (the instruction, or the last user turn) carries the passages."""
    if "messages" not in row:
        return {**row, "instruction": ask_with_passages(str(row.get("instruction") or ""), block)}
    msgs = [dict(m) for m in row["messages"]]
    last = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=None)
    if last is not None:
        msgs[last]["content"] = ask_with_passages(str(msgs[last].get("content") or ""), block)
    return {**row, "messages": msgs}


def question_of(row: dict) -> str:
    """What is searched for a held-out row: its instruction and input, or its last user turn."""
    if "messages" not in row:
        return " ".join(str(row.get(k) or "") for k in ("instruction", "input")).strip()
    users = [str(m.get("content") or "") for m in row["messages"] if m.get("role") == "user"]
    return users[-1] if users else ""
