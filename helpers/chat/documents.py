"""Notebook 06's "documents" preset: chat that answers from the user's own documents.

Each user message is searched in a BM25 index of notebook 02's chunks (``helpers.evaluation``'s
``ChunkIndex``); the top ``retrieval_k`` passages go in front of the message the model sees (cut to
half the room the context leaves, with a visible mark), while the history keeps the message as typed,
so old passages never crowd out the conversation. The passages used are the reply's sources, shown
under it. Notebook 05's retrieval baseline measures the same prompt.
"""
from __future__ import annotations

import os
from pathlib import Path

from helpers.common.run import RunDir
from helpers.core.files import DatasetFiles
from helpers.evaluation import ChunkIndex, Passage, RetrievalError, ask_with_passages, passages_block

DOCUMENT_PRESETS = {
    "documents": (
        "You answer questions about the user's documents. Passages from them, numbered [1], [2], ..., come before "
        "each question: answer from those passages, say which one you used, and say so plainly when they do not "
        "contain the answer."),
}


def chunks_for_chat(chunks_path: str, adapter_dir: str | os.PathLike, fallback: str | os.PathLike) -> Path:
    """CHUNKS_PATH, else the chunks.jsonl beside the dataset the adapter was trained on (its run's
    manifest) when it is there, else ``fallback`` (the workspace's, ``ws.dataset.chunks``: notebook
    02's, when the adapter was trained on another dataset)."""
    if chunks_path:
        return Path(chunks_path)
    trained_on = RunDir.of(adapter_dir).dataset_path if adapter_dir else None
    beside = DatasetFiles.beside(trained_on).chunks if trained_on else None
    return beside if beside is not None and beside.is_file() else Path(fallback)


def load_chat_index(path: str | os.PathLike, log=print) -> ChunkIndex | None:
    """The index of the chunks at ``path``, or None (said in one line) when there are none: the
    "documents" preset is then not offered."""
    try:
        index = ChunkIndex.from_file(path)
    except RetrievalError as exc:
        log(f"Documents preset: not available ({exc})")
        return None
    log(f"Documents preset: {index.describe()}")
    return index


def message_with_sources(index: ChunkIndex, k: int, text: str, tokenizer, budget_tokens: int
                         ) -> tuple[str, list[Passage]]:
    """The message the model sees (the top ``k`` passages before ``text``, within ``budget_tokens``)
    and the passages it holds."""
    block, used = passages_block(index.search(text, k), tokenizer, budget_tokens)
    return ask_with_passages(text, block), used


def sources_line(sources: list[Passage]) -> str:
    """The sources of a reply in one line: "sources: [1] paper.pdf #3, [2] ..."."""
    if not sources:
        return "sources: no passage of your documents matches this message"
    return "sources: " + ", ".join(f"[{n}] {p.label}" for n, p in enumerate(sources, 1))
