"""Notebook 01's step: search arXiv, download the PDFs, and write the files notebooks 02 and 03 read.

:func:`scrape` pages through the results of a :class:`ScrapeConfig`, downloads each PDF (checked and
renamed into place by :mod:`helpers.scrape.pdfs`) and appends its row to the manifest (a
:class:`helpers.core.jsonl.JsonlStore`: a line cut short by a crash is reported and skipped). A rerun
skips every paper whose file is there with the recorded size and sha256. It also writes the abstracts
(``{"id", "text"}``: title and abstract), the raw-text corpus of notebook 03; ``abstracts_only=True``
skips the PDFs. :func:`run_for_notebook` adds the offline rules of ``SMOKE=1``.

Files (folder = ``ws.arxiv.folder``): :class:`helpers.core.files.ArxivFiles`' ``manifest``, ``pdfs``
(``<id><version>.pdf``) and ``abstracts``.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from helpers.common.resources import arxiv_fixture_dir
from helpers.core.config import smoke
from helpers.core.files import ArxivFiles
from helpers.core.jsonl import JsonlStore
from helpers.scrape.client import ArxivClient
from helpers.scrape.config import ARXIV_API_URL, ScrapeConfig
from helpers.scrape.errors import ArxivQueryError, ArxivUnavailable
from helpers.scrape.feed import Paper
from helpers.scrape.pdfs import Download, clean_partial_files, complete_pdf, pdf_problem, sha256_file
from helpers.scrape.recorded import FixtureServer


def manifest_row(paper: Paper, folder: Path, dl: Download | None) -> dict:
    """The manifest line of a paper: its metadata, and its PDF's path, sha256 and size when downloaded."""
    return {"id": paper.id, "version": paper.version, "title": paper.title, "authors": paper.authors,
            "abstract": paper.abstract, "categories": paper.categories, "primary_category": paper.primary_category,
            "published": paper.published, "updated": paper.updated, "abs_url": paper.abs_url,
            "pdf_url": paper.pdf_url, "doi": paper.doi,
            "pdf_path": dl.path.relative_to(folder).as_posix() if dl else None,
            "sha256": dl.sha256 if dl else None, "size": dl.size if dl else None,
            "retrieved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


@dataclass
class ScrapeResult:
    """What one run of :func:`scrape` did: a row per paper handled, and what arXiv reported."""
    folder: Path
    rows: list[dict] = field(default_factory=list)  # one per paper: id, title, status, ...
    total_results: int | None = None  # what arXiv reported for the query
    missing_ids: list[str] = field(default_factory=list)  # id_list entries arXiv does not have
    notes: list[str] = field(default_factory=list)  # problems found and fixed (half-written files, ...)
    requests_sent: int = 0
    stopped: str = ""  # the error that stopped the run early, if any

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r["status"] == status)

    @property
    def downloaded(self) -> int:
        return self.count("downloaded")

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"].startswith("failed"))

    def table(self):
        import pandas as pd
        cols = ["id", "title", "first_author", "published", "category", "status", "size_kb"]
        return pd.DataFrame([{c: r.get(c) for c in cols} for r in self.rows], columns=cols)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for r in self.rows:
            key = "failed" if r["status"].startswith("failed") else r["status"]
            counts[key] = counts.get(key, 0) + 1
        parts = [f"{n} {k}" for k, n in counts.items()]
        text = (f"arXiv reported {self.total_results if self.total_results is not None else '?'} result(s); "
                f"{len(self.rows)} paper(s) handled: {', '.join(parts) or 'none'}; "
                f"{self.requests_sent} request(s) sent.")
        if self.missing_ids:
            text += f" Not on arXiv: {', '.join(self.missing_ids)}."
        if self.failed:
            text += " Rerun to retry the failed ones (finished files are kept)."
        if self.stopped:
            text += f" STOPPED EARLY: {self.stopped}"
        return text


def _row(paper: Paper, status: str, size: int | None) -> dict:
    return {"id": paper.versioned_id, "title": paper.title[:90],
            "first_author": paper.authors[0] if paper.authors else "", "published": paper.published[:10],
            "category": paper.primary_category, "status": status,
            "size_kb": round(size / 1024, 1) if size else None}


def set_bar_total(bar, total: int) -> None:
    """Change a tqdm bar's total once arXiv says how many papers there are. A notebook's bar is a
    widget whose maximum is set when it is created; ``bar.total`` alone leaves it at the old
    maximum (a bar "stuck" at 1 of 10), so the widget's maximum follows too."""
    bar.total = total
    container = getattr(bar, "container", None)  # tqdm.notebook: (label, IntProgress, text)
    if container is not None:
        try:
            container.children[1].max = total
        except (AttributeError, IndexError):
            pass
    bar.refresh()


def scrape(cfg: ScrapeConfig, folder: str | os.PathLike, progress: bool = True,
           log: Callable[[str], None] = print) -> ScrapeResult:
    """Search arXiv, download the PDFs (unless ``abstracts_only``) and write the manifest and abstracts.

    Resumable: papers whose PDF is already complete are skipped. A stop after repeated failures
    (:class:`ArxivUnavailable`) is raised after the finished work has been saved.
    """
    cfg.validate()  # bad input fails here, before any request
    folder = Path(folder)
    files = ArxivFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result = ScrapeResult(folder)
    result.notes += clean_partial_files(files.pdfs)
    manifest = JsonlStore(files.manifest, key=lambda r: r["id"] + (r.get("version") or ""))
    abstracts = JsonlStore(files.abstracts, key=lambda r: r["id"])
    result.notes += manifest.problems + abstracts.problems
    for note in result.notes:
        log(note)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.max_results, desc="arXiv papers", unit="paper")
    seen: list[Paper] = []
    consecutive_failures = 0
    client = ArxivClient(cfg, log=log)
    try:
        for paper in client.search():
            expected = min(cfg.max_results, client.total_results or cfg.max_results)
            if cfg.id_list:
                expected = min(expected, len(cfg.id_list))
            if bar is not None and bar.total != expected:
                set_bar_total(bar, expected)
            seen.append(paper)
            if paper.id not in abstracts.rows:
                abstracts.add({"id": paper.id, "text": paper.text()})
            status, size = _handle_paper(client, cfg, paper, folder, manifest, log)
            consecutive_failures = consecutive_failures + 1 if status.startswith("failed") else 0
            result.rows.append(_row(paper, status, size))
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{paper.versioned_id}: {status[:30]}")
            if consecutive_failures >= cfg.max_consecutive_failures:
                raise ArxivUnavailable(f"Stopped: {consecutive_failures} PDFs in a row could not be downloaded; "
                                       f"the last one: {status}")
    except ArxivUnavailable as exc:
        result.stopped = str(exc)
        raise
    finally:
        if bar is not None:
            bar.close()
        client.close()
        result.requests_sent = client.requests_sent
        result.total_results = client.total_results
        if cfg.id_list:
            got = {p.id for p in seen} | {p.versioned_id for p in seen}
            result.missing_ids = [i.strip() for i in cfg.id_list if i.strip() not in got]
    return result


def _handle_paper(client: ArxivClient, cfg: ScrapeConfig, paper: Paper, folder: Path, manifest: JsonlStore,
                  log: Callable[[str], None]) -> tuple[str, int | None]:
    """Bring one paper's PDF up to date (skip, recover, or download it) and record it in the
    manifest; returns its status and size. A failed download is a status, not an exception."""
    key = paper.versioned_id
    row = manifest.rows.get(key)
    if cfg.abstracts_only:
        if row is None:
            manifest.add(manifest_row(paper, folder, None))
        return "abstract only", None
    if complete_pdf(row, folder):
        return "already complete", row["size"]
    dest = ArxivFiles(folder).pdfs / paper.filename
    if dest.exists():
        problem = pdf_problem(dest)
        if row and row.get("sha256"):
            log(f"{dest.name}: does not match the manifest (size or sha256 changed); downloading it again")
        elif not problem:
            # Renamed into place but the manifest line was never written (interrupted): keep it.
            dl = Download(dest, sha256_file(dest), dest.stat().st_size)
            manifest.add(manifest_row(paper, folder, dl))
            return "recovered", dl.size
        else:
            log(f"{dest.name}: {problem}; downloading it again")
        dest.unlink()
    try:
        dl = client.download_pdf(paper, dest)
    except ArxivQueryError as exc:
        log(f"PDF {key}: {exc}")
        return f"failed: {exc}", None
    except ArxivUnavailable as exc:
        log(f"PDF {key}: not kept: {exc.last}")
        return f"failed: {exc.last}", None
    manifest.add(manifest_row(paper, folder, dl))
    return "downloaded", dl.size


def run_for_notebook(cfg: ScrapeConfig, folder: str | os.PathLike, progress: bool = True) -> ScrapeResult:
    """Notebook 01's step, with the offline rules of ``SMOKE=1``:

    * not a smoke run, or ``ARXIV_API_URL`` set: ask ``cfg.arxiv_api_url``;
    * ``SMOKE=1``: start the local fixture server with the recorded responses that ship with the
      kit (``helpers/resources/arxiv``) and ask it, saying so. Nothing is ever made up.
    """
    if not smoke() or cfg.arxiv_api_url != ARXIV_API_URL:
        if smoke():
            print(f"SMOKE: asking the arXiv API at {cfg.arxiv_api_url} (ARXIV_API_URL)")
        return scrape(cfg, folder, progress=progress)
    fixture_dir = arxiv_fixture_dir()
    with FixtureServer(fixture_dir) as srv:
        host, port = urlsplit(srv.origin).hostname, urlsplit(srv.origin).port
        print(f"SMOKE: serving recorded arXiv responses from {fixture_dir} on {host}:{port}")
        return scrape(cfg.replace(arxiv_api_url=srv.api_url), folder, progress=progress)
