"""The bundled real paper (helpers/resources/arxiv, 1111.2011v2) cut into chunks by the kit's own PDF
reader and chunker, as notebook 02 writes them to chunks.jsonl, and questions made from them."""
from __future__ import annotations

import json
from pathlib import Path

from helpers.common.resources import fixture_pdf


def paper_chunks(tokenizer, max_tokens: int = 160, overlap: int = 16) -> list[dict]:
    """chunks.jsonl rows of the paper: ``{"chunk_id", "source", "index", "text"}``."""
    from helpers.dataset.chunking import chunk_text
    from helpers.dataset.pdf import read_pdf
    chunks = chunk_text(read_pdf(fixture_pdf()).text, tokenizer, max_tokens, overlap, fixture_pdf().name)
    return [{"chunk_id": c.id, "source": c.source, "index": c.index, "text": c.text} for c in chunks]


def write_chunks(path: Path, chunks: list[dict]) -> Path:
    Path(path).write_text("".join(json.dumps(c) + "\n" for c in chunks))
    return Path(path)


def question(chunk: dict) -> str:
    """A question made from a chunk: a run of its own words from the middle, as a question about it
    repeats its terms."""
    w = chunk["text"].split()
    return "What does the paper say about " + " ".join(w[len(w) // 2: len(w) // 2 + 12]) + "?"
