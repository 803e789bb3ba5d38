"""Raw text for domain pretraining (notebook 03): documents from JSONL, text, Markdown and PDF
files, PDFs cleaned as notebook 02 cleans them. Files are UTF-8 (with or without a BOM) or UTF-16;
a text file with a byte that is not UTF-8 is reported by name, line and byte and left out (never
kept with U+FFFD in it), a JSONL row with one costs that row alone."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from helpers.core.jsonl import BadRow, read_rows, read_text_file
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
                got = _jsonl_documents(f, problems)
            elif suffix in (".txt", ".md"):
                got = [{"text": read_text_file(f), "source": f.name}]
            else:
                doc = read_pdf(f)
                got = [{"text": doc.text, "source": f.name}]
        except Exception as exc:  # one bad file never stops the corpus
            problems.append(f"{exc}" if str(exc).startswith(str(f)) else f"{f}: {type(exc).__name__}: {exc}")
            continue
        kept = [r for r in got if len(r["text"].strip()) >= min_chars]
        if not kept:
            problems.append(f"{f}: no document of at least {min_chars} characters")
        rows += kept
    return rows, problems


def _jsonl_documents(f: Path, problems: list[str]) -> list[dict]:
    """The ``{"text", "source"}`` rows of a JSONL file with text; each unreadable row goes to ``problems``."""
    got = []
    for n, r in read_rows(f, jsonl=True):
        if isinstance(r, BadRow) or not isinstance(r, dict):
            problems.append(f"{f}:{n}: " + (str(r) if isinstance(r, BadRow) else "not a JSON object") + "; row skipped")
        elif isinstance(r.get("text"), (list, dict)):
            problems.append(f"{f}:{n}: 'text' is a {type(r['text']).__name__}, not text; row skipped")
        elif str(r.get("text") or "").strip():
            got.append({"text": str(r["text"]), "source": str(r.get("source") or r.get("id") or f.name)})
    return got
