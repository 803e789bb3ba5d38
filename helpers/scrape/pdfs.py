"""PDF download and verification: a response is written to a ``.part`` file and checked (status
200, ``%PDF-`` at the start, ``%%EOF`` at the end, ``Content-Length`` when given) before it is renamed
into place with its sha256 and size; a file already on disk is checked against its manifest row, and
the ``.part`` files of an interrupted run are removed."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from helpers.scrape.errors import ArxivQueryError, Retry


@dataclass
class Download:
    """A PDF placed on disk, with what the manifest records of it."""
    path: Path
    sha256: str
    size: int


def save_pdf(resp, part: Path, dest: Path) -> Download:
    """Write a streamed PDF response to ``part``, check it and rename it to ``dest``; the ``.part``
    file never outlives a failure. A broken body raises :class:`Retry`, a missing PDF
    :class:`ArxivQueryError`."""
    if resp.status_code != 200:
        raise ArxivQueryError(f"no PDF at {resp.url}: HTTP {resp.status_code}")
    digest, size = hashlib.sha256(), 0
    try:
        with open(part, "wb") as fh:
            for chunk in resp.iter_bytes(1 << 16):
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        expected = resp.headers.get("Content-Length")
        if expected and expected.isdigit() and int(expected) != size:
            raise Retry(f"truncated body: {size} of {expected} bytes")
        problem = pdf_problem(part, resp.headers.get("Content-Type", ""))
        if problem:
            raise Retry(problem)
        os.replace(part, dest)
        return Download(dest, digest.hexdigest(), size)
    finally:
        if part.exists():
            part.unlink()


def pdf_problem(path: Path, content_type: str = "") -> str:
    """Why ``path`` is not a complete PDF, or "" if it looks like one (magic and ``%%EOF``)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
        fh.seek(max(0, size - 2048))
        tail = fh.read()
    if not head.startswith(b"%PDF-"):
        kind = "an HTML page" if b"<html" in head.lower() or b"<!doctype" in head.lower() else "not a PDF"
        return (f"{kind} where a PDF was expected (Content-Type {content_type or 'missing'}, "
                f"starts with {head[:40]!r})")
    if b"%%EOF" not in tail:
        return f"truncated PDF: no %%EOF in its last bytes ({size} bytes)"
    return ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def complete_pdf(row: dict | None, folder: Path) -> bool:
    """Whether a manifest row's PDF is on disk with the recorded size and sha256."""
    if not row or not row.get("pdf_path") or not row.get("sha256"):
        return False
    path = folder / row["pdf_path"]
    return path.is_file() and path.stat().st_size == row.get("size") and sha256_file(path) == row["sha256"]


def clean_partial_files(pdf_dir: Path) -> list[str]:
    """Remove ``.part`` files left by an interrupted run; returns a note for each."""
    notes = []
    if pdf_dir.is_dir():
        for part in sorted(pdf_dir.glob("*.part")):
            notes.append(f"removed half-written {part.name} ({part.stat().st_size} bytes) from an interrupted run")
            part.unlink()
    return notes
