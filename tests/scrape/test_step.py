"""helpers.scrape.step: notebook 01's step against the recorded arXiv server on 127.0.0.1: id lists,
resumable downloads, recovery after a crash, the stop after repeated failures, the SMOKE rules, and
the notebook's progress bar."""
import hashlib
import json

import pytest
from recorded_arxiv import FIXTURES, PDF_ID, Logs, cfg_for, pdf_cfg

from helpers.core.files import ArxivFiles
from helpers.scrape.config import ARXIV_API_URL, DEFAULT_USER_AGENT, ScrapeConfig
from helpers.scrape.errors import ArxivUnavailable
from helpers.scrape.feed import parse_feed
from helpers.scrape.pdfs import Download
from helpers.scrape.recorded import FixtureServer
from helpers.scrape.step import manifest_row, run_for_notebook, scrape, set_bar_total


def test_id_lists_and_missing_id(server, tmp_path):
    cfg = cfg_for(server, id_list=["0808.05394", "1707.08567"], max_results=100, page_size=100, abstracts_only=True)
    result = scrape(cfg, tmp_path, progress=False)
    assert [r["id"] for r in result.rows] == ["1707.08567v1"]
    assert result.missing_ids == ["0808.05394"] and "Not on arXiv: 0808.05394" in result.summary()
    old = scrape(cfg_for(server, id_list=["quant-ph/0201082v1"], max_results=100, page_size=100, abstracts_only=True),
                 tmp_path / "old", progress=False)
    assert old.rows[0]["id"] == "quant-ph/0201082v1" and old.missing_ids == []
    none = scrape(cfg_for(server, id_list=["0000.0000"], max_results=100, page_size=100), tmp_path / "none",
                  progress=False)
    assert none.rows == [] and none.total_results == 0 and none.missing_ids == ["0000.0000"]


def test_download_and_rerun_downloads_nothing_new(server, tmp_path):
    first = scrape(pdf_cfg(server), tmp_path, progress=False, log=Logs())
    assert first.downloaded == 1 and first.rows[0]["status"] == "downloaded"
    pdf = tmp_path / "pdfs" / "1111.2011v2.pdf"
    real = (FIXTURES / "1111.2011v2.pdf").read_bytes()
    assert pdf.read_bytes() == real
    row = json.loads((tmp_path / "manifest.jsonl").read_text())
    assert row["id"] == "1111.2011" and row["version"] == "v2" and row["pdf_path"] == "pdfs/1111.2011v2.pdf"
    assert row["sha256"] == hashlib.sha256(real).hexdigest() and row["size"] == len(real)
    assert row["authors"] == ["James M. Murray", "Adrian Del Maestro", "Zlatko Tesanovic"]
    assert row["categories"] == ["cond-mat.str-el", "cond-mat.stat-mech"] and row["published"].startswith("2011-11-08")
    assert all(r["user_agent"] == DEFAULT_USER_AGENT for r in server.requests)  # the kit says who it is
    n = len(server.requests)
    second = scrape(pdf_cfg(server), tmp_path, progress=False, log=Logs())
    assert second.downloaded == 0 and second.rows[0]["status"] == "already complete"
    assert [r["on"] for r in server.requests[n:]] == ["api"]  # no PDF request
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 1
    assert len((tmp_path / "abstracts.jsonl").read_text().splitlines()) == 1


def test_changed_file_is_downloaded_again_and_leftovers_are_cleaned(server, tmp_path):
    scrape(pdf_cfg(server), tmp_path, progress=False, log=Logs())
    pdf = tmp_path / "pdfs" / "1111.2011v2.pdf"
    pdf.write_bytes(pdf.read_bytes()[:-100])  # damaged after the fact
    (tmp_path / "pdfs" / "2404.00001v1.pdf.part").write_bytes(b"%PDF-1.5 half")
    logs = Logs()
    again = scrape(pdf_cfg(server), tmp_path, progress=False, log=logs)
    assert again.rows[0]["status"] == "downloaded" and pdf.read_bytes() == (FIXTURES / "1111.2011v2.pdf").read_bytes()
    assert "does not match the manifest" in logs.text() and "removed half-written 2404.00001v1.pdf.part" in logs.text()
    assert not list((tmp_path / "pdfs").glob("*.part"))


def test_file_renamed_but_not_recorded_is_recovered(server, tmp_path):
    scrape(pdf_cfg(server), tmp_path, progress=False, log=Logs())
    (tmp_path / "manifest.jsonl").write_text('{"id": "1111.2011", "version": "v2", "tit')  # cut short by a crash
    logs = Logs()
    again = scrape(pdf_cfg(server), tmp_path, progress=False, log=logs)
    assert again.rows[0]["status"] == "recovered" and "manifest.jsonl:1: unreadable line" in logs.text()
    assert not server.requests_for("pdf")[1:]  # only the first run's download
    rows = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["sha256"] == hashlib.sha256((FIXTURES / "1111.2011v2.pdf").read_bytes()).hexdigest()


def test_repeated_pdf_failures_stop_the_run(server, tmp_path):
    cfg = cfg_for(server, query="testing", max_results=10, page_size=10, max_retries=0, max_consecutive_failures=2)
    logs = Logs()
    with pytest.raises(ArxivUnavailable, match="2 PDFs in a row"):
        scrape(cfg, tmp_path, progress=False, log=logs)  # the fixture server has none of these PDFs: 404
    assert len(server.requests_for("pdf")) == 2 and "HTTP 404" in logs.text()
    assert len((tmp_path / "abstracts.jsonl").read_text().splitlines()) == 2  # finished work is kept


def test_smoke_uses_the_shipped_recordings_on_a_local_server(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMOKE", "1")
    monkeypatch.delenv("ARXIV_API_URL", raising=False)
    cfg = ScrapeConfig.from_params({}, environ={"SMOKE": "1"})
    assert cfg.arxiv_api_url == ARXIV_API_URL and cfg.id_list == [PDF_ID]
    result = run_for_notebook(cfg, tmp_path, progress=False)
    out = capsys.readouterr().out
    assert f"SMOKE: serving recorded arXiv responses from {FIXTURES} on 127.0.0.1:" in out
    assert result.downloaded == 1

    with FixtureServer(FIXTURES) as srv:  # ARXIV_API_URL given: that server is asked, nothing is started
        again = run_for_notebook(cfg.replace(arxiv_api_url=srv.api_url, delay_seconds=0.05), tmp_path, progress=False)
    assert f"SMOKE: asking the arXiv API at {srv.api_url}" in capsys.readouterr().out
    assert again.rows[0]["status"] == "already complete" and [r["on"] for r in srv.requests] == ["api"]


def test_notebook_progress_bar_total_follows_what_arxiv_reported():
    """Notebook 01's bar is a widget: its maximum must follow the total arXiv reports (1 paper
    of an asked-for 10), or the executed notebook shows a bar stuck at 1 of 10."""
    from tqdm.notebook import tqdm
    bar = tqdm(total=10, desc="arXiv papers")
    set_bar_total(bar, 1)
    bar.update(1)
    bar.close()
    progress = bar.container.children[1]
    assert (progress.max, progress.value, bar.total) == (1, 1, 1)


def test_files_are_where_the_next_notebooks_look(server, tmp_path):
    result = scrape(pdf_cfg(server), tmp_path, progress=False, log=Logs())
    files = ArxivFiles(tmp_path)
    assert result.folder == tmp_path and (files.pdfs / f"{PDF_ID}.pdf").is_file()
    (row,) = [json.loads(line) for line in files.manifest.read_text().splitlines()]
    (abstract,) = [json.loads(line) for line in files.abstracts.read_text().splitlines()]
    assert abstract["id"] == row["id"] == "1111.2011" and abstract["text"].startswith(row["title"])
    assert "1 downloaded" in result.summary() and list(result.table()["status"]) == ["downloaded"]


def test_manifest_row_records_the_download_relative_to_the_folder(tmp_path):
    (paper,) = parse_feed((FIXTURES / "id_list_1111.2011v2.xml").read_bytes()).papers
    dl = Download(tmp_path / "pdfs" / paper.filename, "ab" * 32, 123)
    row = manifest_row(paper, tmp_path, dl)
    assert (row["id"], row["version"], row["pdf_path"], row["sha256"], row["size"]) == \
        ("1111.2011", "v2", "pdfs/1111.2011v2.pdf", "ab" * 32, 123)
    assert row["authors"] == paper.authors and row["retrieved_at"].endswith("+00:00")
    bare = manifest_row(paper, tmp_path, None)
    assert bare["pdf_path"] is None and bare["sha256"] is None and bare["size"] is None
