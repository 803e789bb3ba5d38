"""Chunking: cut clean document text into pieces of at most N tokens of the target model.

``chunk_text(text, tokenizer, max_tokens=512, overlap_tokens=64)`` counts tokens with the
tokenizer of the model we will fine-tune (Llama 3's, or SmolLM2's offline), so a chunk plus the
teacher's prompt fits where it must. Cuts fall on paragraph boundaries when one lies in the
second half of the chunk, else on sentence boundaries; only a single sentence longer than the
limit is cut between words. A block of lines (code, a table) longer than a chunk is cut between
its lines and keeps its line breaks and indentation. Consecutive chunks share about ``overlap_tokens`` tokens of whole
sentences, so a fact that straddles a cut is seen whole in one of them.

Every chunk carries its source, its index in the document, its token count and an ``id`` (a hash
of source and text) that the teacher's resume store and the dataset use.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass

ABBREVIATIONS = {"e.g", "i.e", "etc", "et al", "cf", "vs", "fig", "figs", "eq", "eqs", "ref", "refs", "sec",
                 "no", "dr", "mr", "mrs", "ms", "prof", "approx", "resp", "vol", "pp", "ch", "al", "st", "jr"}
SENTENCE_RE = re.compile(r"(?<=[.!?])[\"'\u201d)\]]*\s+(?=[\"'\u201c(\[]?[A-Z0-9])")


class ChunkError(ValueError):
    """Chunking settings that cannot work; the message says which and why."""


@dataclass
class Chunk:
    id: str  # hash of source and text
    source: str  # document the chunk comes from
    index: int  # position in that document
    text: str
    tokens: int  # tokens of the target model's tokenizer

    def to_dict(self) -> dict:
        return asdict(self)


def chunk_id(source: str, text: str) -> str:
    return hashlib.sha256(f"{source}\0{text}".encode()).hexdigest()[:16]


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph; does not cut after abbreviations (e.g., Fig., et al.) or initials."""
    out, start = [], 0
    for m in SENTENCE_RE.finditer(paragraph):
        before = paragraph[start:m.start()].rstrip("\"'\u201d)]")
        last = re.search(r"(\S+)\.$", before)
        if last:
            word = last.group(1).lower().lstrip("(\"'\u201c")
            if word in ABBREVIATIONS or re.fullmatch(r"[a-z]", word) or \
                    word.endswith(tuple("." + a for a in ABBREVIATIONS)):
                continue
        out.append(paragraph[start:m.end()].strip())
        start = m.end()
    tail = paragraph[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _split_long(tokenizer, sentence: str, max_tokens: int) -> list[str]:
    """A sentence longer than the limit, cut between words into pieces that fit."""
    words = sentence.split(" ")
    pieces, cur = [], []
    for w in words:
        cand = " ".join(cur + [w])
        if cur and _count(tokenizer, cand) > max_tokens:
            pieces.append(" ".join(cur))
            cur = [w]
        else:
            cur.append(w)
    if cur:
        pieces.append(" ".join(cur))
    out = []
    for p in pieces:  # a single "word" longer than the limit (a URL, base64): cut by tokens
        if _count(tokenizer, p) > max_tokens:
            ids = tokenizer(p, add_special_tokens=False)["input_ids"]
            out += [tokenizer.decode(ids[i:i + max_tokens]) for i in range(0, len(ids), max_tokens)]
        else:
            out.append(p)
    return out


def _units(tokenizer, text: str, max_tokens: int) -> list[tuple[str, int, str]]:
    """(piece, tokens, what follows it) for the whole text: ``"para"`` (a blank line), ``"line"``
    (a line break inside a block: code keeps its lines and indentation even when the block is cut
    over several chunks) or ``"space"``."""
    units = []
    for para in re.split(r"\n[ \t]*\n", text):
        para = para.rstrip()
        if not para.strip():
            continue
        block = "\n" in para.strip("\n")
        para = para.strip("\n") if block else para.strip()
        sents = split_sentences(para) if not block else [para]
        sep = "space"
        if block and _count(tokenizer, para) > max_tokens:  # a long block: cut at its lines
            sents, sep = [ln for ln in para.split("\n") if ln.strip()], "line"
        for k, s in enumerate(sents):
            n = _count(tokenizer, s)
            pieces = [(s, n)] if n <= max_tokens else \
                [(p, _count(tokenizer, p)) for p in _split_long(tokenizer, s, max_tokens)]
            for j, (p, pn) in enumerate(pieces):
                last = k == len(sents) - 1 and j == len(pieces) - 1
                units.append((p, pn, "para" if last else (sep if j == len(pieces) - 1 else "space")))
    return units


def _join(units) -> str:
    out = ""
    for i, (t, _, after) in enumerate(units):
        out += t
        if i < len(units) - 1:
            out += {"para": "\n\n", "line": "\n"}.get(after, " ")
    return out


def chunk_text(text: str, tokenizer, max_tokens: int = 512, overlap_tokens: int = 64, source: str = "") -> list[Chunk]:
    """Chunks of at most ``max_tokens`` tokens (see the module docstring)."""
    if max_tokens < 16:
        raise ChunkError(f"max_tokens={max_tokens}: too small for a sentence (use 128 or more).")
    if not 0 <= overlap_tokens < max_tokens // 2:
        raise ChunkError(f"overlap_tokens={overlap_tokens} must be at least 0 and under half of "
                         f"max_tokens={max_tokens}.")
    units = _units(tokenizer, text, max_tokens)
    chunks: list[Chunk] = []
    start = 0
    while start < len(units):
        end, total = start, 0
        while end < len(units) and total + units[end][1] + (1 if end > start else 0) <= max_tokens:
            total += units[end][1] + (1 if end > start else 0)
            end += 1
        end = max(end, start + 1)
        if end < len(units):  # prefer a paragraph boundary in the second half
            cum, best = 0, None
            for k in range(start, end):
                cum += units[k][1]
                if units[k][2] == "para" and cum >= max_tokens / 2 and k + 1 < end:
                    best = k + 1
            if best:
                end = best
        body = _join(units[start:end])
        while end - start > 1 and _count(tokenizer, body) > max_tokens:  # joins can merge tokens differently
            end -= 1
            body = _join(units[start:end])
        chunks.append(Chunk(chunk_id(source, body), source, len(chunks), body, _count(tokenizer, body)))
        if end >= len(units):
            break
        new_start, ov = end, 0
        while new_start - 1 > start and ov + units[new_start - 1][1] <= overlap_tokens:
            new_start -= 1
            ov += units[new_start][1]
        start = new_start
    return chunks


def chunk_documents(docs, tokenizer, max_tokens: int = 512, overlap_tokens: int = 64,
                    max_chunks: int = 0) -> list[Chunk]:
    """Chunks of many documents (objects with ``source`` and ``text``, or dicts), in order;
    ``max_chunks`` > 0 keeps the first ones of each document, spread evenly over the documents."""
    per_doc = []
    for d in docs:
        source, text = (d["source"], d["text"]) if isinstance(d, dict) else (d.source, d.text)
        per_doc.append(chunk_text(text, tokenizer, max_tokens, overlap_tokens, source))
    if max_chunks and max_chunks > 0:
        picked: list[tuple[int, Chunk]] = []
        i = 0
        while len(picked) < max_chunks and any(i < len(c) for c in per_doc):
            for d, cs in enumerate(per_doc):
                if i < len(cs) and len(picked) < max_chunks:
                    picked.append((d, cs[i]))
            i += 1
        return [c for _, c in sorted(picked, key=lambda dc: (dc[0], dc[1].index))]
    return [c for cs in per_doc for c in cs]
