"""Raw text for domain pretraining (notebook 03): documents from JSONL, text, Markdown and PDF
files, PDFs cleaned as notebook 02 cleans them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from helpers.core.jsonl import read_jsonl
from helpers.dataset.pdf import read_pdf


def read_text_corpus(sources: Iterable[str | os.PathLike], min_chars: int = 200) -> tuple[list[dict], list[str]]:
    """Raw-text documents for domain pretraining from JSONL files (rows with ``text``), .txt/.md
    files, PDF files and folders of these (recursively). Returns ``(rows, problems)``: rows are
    ``{"text", "source"}``; every file that gave nothing is named in ``problems``."""
    rows: list[dict] = []
    problems: list[str] = []
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".jsonl", ".txt", ".md", ".pdf"))
        elif p.exists():
            files.append(p)
        else:
            problems.append(f"{p}: does not exist")
    for f in files:
        suffix = f.suffix.lower()
        try:
            if suffix == ".jsonl":
                got = [{"text": str(r["text"]), "source": str(r.get("source") or r.get("id") or f.name)}
                       for r in read_jsonl(f, strict=False) if str(r.get("text") or "").strip()]
            elif suffix in (".txt", ".md"):
                got = [{"text": f.read_text(encoding="utf-8", errors="replace"), "source": f.name}]
            else:
                doc = read_pdf(f)
                got = [{"text": doc.text, "source": f.name}]
        except Exception as exc:  # one bad file never stops the corpus
            problems.append(f"{f}: {type(exc).__name__}: {exc}")
            continue
        kept = [r for r in got if len(r["text"].strip()) >= min_chars]
        if not kept:
            problems.append(f"{f}: no document of at least {min_chars} characters")
        rows += kept
    return rows, problems
