"""Where each file lives: the named paths that one notebook hands to the next, and the kit's cache.

Every notebook and every step finds another step's files here, never by spelling out a name:
``ws.dataset.train``, ``ws.arxiv.manifest``, ``DatasetFiles.beside(train_path).chunks``. The
folders come from the ``Workspace`` (``ws.arxiv``, ``ws.dataset``, ``ws.corpus``, ``ws.sweep``,
``ws.run(name)``); a run folder's own files are ``RunDir``'s (``helpers.common.run``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PRETRAIN_RUN = "pretrain"  # notebook 03's run folder under the outputs folder
SFT_RUN = "sft"  # notebook 04's run folder: notebooks 05 and 06 read its adapter
SWEEP_RUN = "sweep"  # notebook 07's folder


def cache_dir() -> Path:
    """Where converted embedded models live: ``$LLAMA_KIT_CACHE`` or ``~/.cache/llama-kit``."""
    return Path(os.environ.get("LLAMA_KIT_CACHE", Path.home() / ".cache" / "llama-kit"))


@dataclass(frozen=True)
class ArxivFiles:
    """Notebook 01's folder: the manifest of downloads, the PDFs, and the abstracts (notebook 03's text)."""
    folder: Path

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.jsonl"

    @property
    def pdfs(self) -> Path:
        return self.folder / "pdfs"

    @property
    def abstracts(self) -> Path:
        return self.folder / "abstracts.jsonl"


@dataclass(frozen=True)
class CorpusFiles:
    """Raw text for pretraining: notebook 02's PDF text and the corpus notebook 03 gathers from it."""
    folder: Path

    @property
    def pdf_text(self) -> Path:
        return self.folder / "pdf_text.jsonl"

    @property
    def pretrain(self) -> Path:
        return self.folder / "pretrain.jsonl"


@dataclass(frozen=True)
class DatasetFiles:
    """Notebook 02's splits and records; notebooks 04, 05 and 07 read them."""
    folder: Path

    @classmethod
    def beside(cls, train_path: str | os.PathLike) -> DatasetFiles:
        """The files that sit beside a training file (its test split, its source chunks)."""
        return cls(Path(train_path).parent)

    @property
    def train(self) -> Path:
        return self.folder / "train.jsonl"

    @property
    def test(self) -> Path:
        return self.folder / "test.jsonl"

    @property
    def card(self) -> Path:
        return self.folder / "card.md"

    @property
    def rejects(self) -> Path:
        return self.folder / "rejects.jsonl"

    @property
    def chunks(self) -> Path:
        return self.folder / "chunks.jsonl"

    @property
    def test_leaked(self) -> Path:
        return self.folder / "test_leaked.jsonl"

    @property
    def grades(self) -> Path:
        """The teacher's grade of each triple (notebook 02's curation), a resume store."""
        return self.folder / "teacher_grades.jsonl"

    @property
    def summary(self) -> Path:
        """build_summary.json: what the build did, with the teacher's endpoint and model (notebook 05's judge)."""
        return self.folder / "build_summary.json"

    @property
    def corpus(self) -> CorpusFiles:
        """The corpus folder beside the dataset folder (both under the data folder)."""
        return CorpusFiles(self.folder.parent / "corpus")


@dataclass(frozen=True)
class SweepFiles:
    """Notebook 07's folder: one run folder per configuration, the results and the best settings."""
    folder: Path

    @property
    def results(self) -> Path:
        return self.folder / "results.jsonl"

    @property
    def best(self) -> Path:
        return self.folder / "best_config.json"

    @property
    def journal(self) -> Path:
        """The sweep's Optuna study (a JournalStorage file): every trial, value and pruning decision."""
        return self.folder / "study.journal"

    @property
    def workers(self) -> Path:
        """One heartbeat file per worker, and each worker process's own log."""
        return self.folder / "workers"
