"""Train/test leakage: how much of each test row was already seen, word for word, in training.

A teacher writes several examples from each chunk, and consecutive chunks of a document share
their overlap, so an answer held out for testing can repeat sentences that a training example (or
the training chunk it was written from) already holds. A test row like that measures recall of
training text, not generalisation. Notebook 02 (``helpers.dataset.build``) measures this when it
builds the split and can drop such rows from ``test.jsonl``; notebook 05
(``helpers.evaluation.report``) reports it next to the scores.

The measure is **word 8-gram containment**: the share of a test row's distinct word 8-grams
(lower-cased runs of letters and digits, as ``helpers.dataset.build`` normalises for duplicates) that
occur anywhere in the training text: the training rows, and the source chunks the training rows
were written from. Why this one:

* containment, not Jaccard: a test answer is short and a training chunk long, so the Jaccard
  similarity of the two n-gram sets stays small even when the answer is copied whole from the
  chunk; containment asks how much of the *test row* is already in training, which is the
  question;
* the union of all training text, not one row at a time: a test row stitched from two training
  rows is as leaked as one copied from one;
* 8 words: long enough that independent text on the same topic rarely shares a span (5-grams
  let short common phrases dominate), short enough that a near copy with a word changed here and
  there keeps most of its 8-grams (one changed word every 16 words leaves about half). 8-gram
  overlap is also what contamination studies of large language models commonly use
  (measurements: bench/QUALITY.md, "Notes behind the evaluation's checks").

A row is flagged when its containment is at least ``threshold`` (default 0.5: more than half of
its 8-word spans appear verbatim in training; independent real text stays well below it). Rows with
fewer than 8 words have no 8-gram and are not measured (reported as such, never flagged).
A paraphrase that rewords every phrase shares no 8-gram and is not caught: no n-gram measure
catches it.
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from pathlib import Path

from helpers.core.jsonl import DataError, read_jsonl

NGRAM = 8
DEFAULT_THRESHOLD = 0.5
_WORD = re.compile(r"[a-z0-9]+")


class LeakageError(ValueError):
    """Leakage input that cannot be used; the message names the file and row."""


def row_text(row: dict) -> str:
    """All the text of a dataset row: instruction, input and output; every message's content; or
    ``text`` (a raw-text row)."""
    if "messages" in row and isinstance(row["messages"], list):
        return "\n".join(str(m.get("content") or "") for m in row["messages"] if isinstance(m, dict))
    if "text" in row and "output" not in row:
        return str(row.get("text") or "")
    return "\n".join(str(row.get(k) or "") for k in ("instruction", "input", "output"))


def ngram_hashes(text: str, n: int = NGRAM) -> set[int]:
    """Hashes of the distinct word n-grams of ``text`` (lower-cased letters and digits)."""
    w = _WORD.findall((text or "").lower())
    return {hash(" ".join(w[i:i + n])) for i in range(len(w) - n + 1)}


class NgramIndex:
    """The word n-grams of a set of training texts, each remembering the first text it came from."""

    def __init__(self, texts: list[tuple[str, str]], n: int = NGRAM):
        """``texts``: (label, text) pairs, e.g. ("train row 12", "...") or ("chunk 3f2a...", "...")."""
        self.n = n
        self.labels = [label for label, _ in texts]
        self.owner: dict[int, int] = {}
        for i, (_, text) in enumerate(texts):
            for g in ngram_hashes(text, n):
                self.owner.setdefault(g, i)

    def __len__(self) -> int:
        return len(self.owner)

    def containment(self, text: str) -> tuple[float | None, str | None]:
        """Share of ``text``'s distinct n-grams found in the index (None when it has none: too
        short), and the label of the training text that holds most of them (None when none)."""
        grams = ngram_hashes(text, self.n)
        if not grams:
            return None, None
        hits = [self.owner[g] for g in grams if g in self.owner]
        if not hits:
            return 0.0, None
        best = collections.Counter(hits).most_common(1)[0][0]
        return len(hits) / len(grams), self.labels[best]


@dataclass
class LeakageResult:
    """Containment of each test row in the training rows and in the training passages."""
    threshold: float
    scores: list[float | None]  # per test row: the larger of the two containments (None: too short)
    against_rows: list[float | None]
    against_passages: list[float | None]
    witnesses: list[str | None]  # the training row or passage that holds most of a row's n-grams
    passages: str  # what the training passages were (or why there were none)
    n_train_rows: int
    flagged: list[int] = field(default_factory=list)

    @property
    def measured(self) -> int:
        return sum(s is not None for s in self.scores)

    @property
    def share(self) -> float:
        """Share of the test rows flagged (0 when none was measured)."""
        return len(self.flagged) / len(self.scores) if self.scores else 0.0

    def summary(self) -> dict:
        """The figures for a report or a card (JSON-ready)."""
        measured = [s for s in self.scores if s is not None]
        return {"measure": f"word {NGRAM}-gram containment of each test row in the training text (rows and "
                           "their source passages)",
                "threshold": self.threshold, "test_rows": len(self.scores), "measured": self.measured,
                "too_short": len(self.scores) - self.measured, "train_rows": self.n_train_rows,
                "passages": self.passages, "flagged": len(self.flagged), "share_flagged": round(self.share, 4),
                "max_containment": round(max(measured), 4) if measured else None,
                "mean_containment": round(sum(measured) / len(measured), 4) if measured else None,
                "flagged_rows": [{"row": i, "containment": round(self.scores[i], 3), "witness": self.witnesses[i]}
                                 for i in self.flagged[:20]]}

    def line(self) -> str:
        """One line: "2 of 14 test rows (14%) share >= 50% of their word 8-grams with training text"."""
        s = self.summary()
        if not self.scores:
            return "no test rows to check for leakage"
        text = (f"{s['flagged']} of {s['test_rows']} test rows ({s['share_flagged']:.0%}) have at least "
                f"{self.threshold:.0%} of their word {NGRAM}-grams in the training text")
        if s["max_containment"] is not None:
            text += f" (largest containment {s['max_containment']:.2f}, mean {s['mean_containment']:.3f})"
        if s["too_short"]:
            text += f"; {s['too_short']} row(s) under {NGRAM} words not measured"
        return text


def measure_leakage(test_rows: list[dict], train_rows: list[dict], passages: list[tuple[str, str]] | None = None,
                    threshold: float = DEFAULT_THRESHOLD, passages_desc: str = "") -> LeakageResult:
    """Containment of every test row in the training rows and in ``passages`` ((label, text) pairs:
    the source chunks the training rows were written from); rows at or above ``threshold`` in
    either are flagged."""
    if not 0 < threshold <= 1:
        raise LeakageError(f"leakage threshold {threshold}: must be in (0, 1].")
    rows_index = NgramIndex([(f"train row {i}", row_text(r)) for i, r in enumerate(train_rows)])
    pass_index = NgramIndex(list(passages or []))
    by_rows, by_pass, scores, witnesses, flagged = [], [], [], [], []
    for i, r in enumerate(test_rows):
        text = row_text(r)
        a, wa = rows_index.containment(text)
        b, wb = pass_index.containment(text) if len(pass_index) else (None, None)
        by_rows.append(a)
        by_pass.append(b)
        best = max((x for x in (a, b) if x is not None), default=None)
        scores.append(best)
        witnesses.append(wa if (a is not None and a == best) else wb)
        if best is not None and best >= threshold:
            flagged.append(i)
    return LeakageResult(threshold=threshold, scores=scores, against_rows=by_rows, against_passages=by_pass,
                         witnesses=witnesses, passages=passages_desc or (f"{len(passages)} passages" if passages
                                                                         else "none"),
                         n_train_rows=len(train_rows), flagged=flagged)


def training_passages(train_rows: list[dict], chunks_path: str | Path | None = None,
                      corpus_path: str | Path | None = None, test_rows: list[dict] | None = None
                      ) -> tuple[list[tuple[str, str]], str]:
    """The source text the training rows were written from, as (label, text) pairs, and a line
    saying what it is.

    * ``chunks_path`` (notebook 02's ``dataset/chunks.jsonl``: ``{"chunk_id", "source", "index",
      "text"}``): the chunks whose ``chunk_id`` a training row names;
    * else ``corpus_path`` (``corpus/pdf_text.jsonl``: ``{"source", "text"}``): the whole text of
      each document that has training rows and no test row (a document on both sides of a split by
      position would contain the test rows' own passages, so it cannot be used whole);
    * else none (the training rows alone are compared)."""
    train_chunks = {r.get("chunk_id") for r in train_rows if r.get("chunk_id")}
    if chunks_path and Path(chunks_path).exists() and train_chunks:
        try:
            chunks = read_jsonl(chunks_path)
        except DataError as exc:
            raise LeakageError(str(exc)) from None
        out = [(f"chunk {c['chunk_id']} ({c.get('source', '?')} #{c.get('index', '?')})", str(c.get("text") or ""))
               for c in chunks if c.get("chunk_id") in train_chunks]
        return out, f"{len(out)} source chunks of the training rows ({Path(chunks_path).name})"
    train_src = {r.get("source") for r in train_rows if r.get("source")}
    test_src = {r.get("source") for r in (test_rows or []) if r.get("source")}
    if corpus_path and Path(corpus_path).exists() and train_src - test_src:
        try:
            docs = read_jsonl(corpus_path)
        except DataError as exc:
            raise LeakageError(str(exc)) from None
        out = [(f"document {d.get('source')}", str(d.get("text") or "")) for d in docs
               if d.get("source") in train_src - test_src]
        return out, (f"the whole text of {len(out)} training-only document(s) ({Path(corpus_path).name}); documents "
                     "with test rows are compared through their training rows only")
    return [], "no source passages (no chunks file beside the training set): training rows only"
