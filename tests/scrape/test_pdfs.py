"""helpers.scrape.pdfs: a PDF is checked before it is kept (the real shipped PDF, damaged copies, an
HTML page, bodies cut short by the recorded server on 127.0.0.1), checked again against its manifest
row on a rerun, and the half-written files of an interrupted run are removed."""
import hashlib

import pytest
from recorded_arxiv import FIXTURES, PDF_ID, Logs, pdf_cfg

from helpers.scrape.client import ArxivClient
from helpers.scrape.errors import ArxivQueryError
from helpers.scrape.feed import Paper
from helpers.scrape.pdfs import Download, clean_partial_files, complete_pdf, pdf_problem, sha256_file
from helpers.scrape.step import scrape

REAL = (FIXTURES / f"{PDF_ID}.pdf").read_bytes()


def paper(versioned_id):
    aid, version = versioned_id[:-2], versioned_id[-2:]
    return Paper(aid, version, "t", [], "a", [], "", "", "", f"http://arxiv.org/abs/{versioned_id}",
                 f"http://arxiv.org/pdf/{versioned_id}")


@pytest.mark.parametrize("body, problem", [
    (REAL, ""),
    (REAL[: len(REAL) // 2], "truncated PDF: no %%EOF"),
    (b"<!DOCTYPE html>\n<html><body>PDF not yet available</body></html>", "an HTML page where a PDF was expected"),
    (b"\x00\x01 binary junk", "not a PDF where a PDF was expected"),
])
def test_pdf_problem_on_real_and_damaged_files(tmp_path, body, problem):
    path = tmp_path / "x.pdf"
    path.write_bytes(body)
    found = pdf_problem(path, "text/html")
    assert found.startswith(problem) if problem else found == ""
    if problem and "where a PDF" in problem:
        assert "Content-Type text/html" in found


def test_complete_pdf_checks_size_and_sha256(tmp_path):
    path = tmp_path / "pdfs" / f"{PDF_ID}.pdf"
    path.parent.mkdir()
    path.write_bytes(REAL)
    assert sha256_file(path) == hashlib.sha256(REAL).hexdigest()
    row = {"pdf_path": f"pdfs/{PDF_ID}.pdf", "sha256": hashlib.sha256(REAL).hexdigest(), "size": len(REAL)}
    assert complete_pdf(row, tmp_path)
    assert not complete_pdf(dict(row, size=len(REAL) + 1), tmp_path)
    assert not complete_pdf(dict(row, sha256="0" * 64), tmp_path)
    assert not complete_pdf(dict(row, pdf_path=None), tmp_path) and not complete_pdf(None, tmp_path)
    path.write_bytes(REAL[:-1] + b"x")  # same size, other bytes
    assert not complete_pdf(row, tmp_path)


def test_clean_partial_files_removes_only_part_files(tmp_path):
    assert clean_partial_files(tmp_path / "absent") == []
    (tmp_path / "a.pdf.part").write_bytes(b"%PDF-1.5 half")
    (tmp_path / "b.pdf").write_bytes(REAL)
    notes = clean_partial_files(tmp_path)
    assert notes == ["removed half-written a.pdf.part (13 bytes) from an interrupted run"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pdf"]


def test_download_places_a_checked_pdf_and_a_missing_one_leaves_nothing(server, tmp_path):
    with ArxivClient(pdf_cfg(server)) as client:
        dl = client.download_pdf(paper(PDF_ID), tmp_path / "pdfs" / f"{PDF_ID}.pdf")
        assert isinstance(dl, Download) and dl.path.read_bytes() == REAL
        assert (dl.sha256, dl.size) == (hashlib.sha256(REAL).hexdigest(), len(REAL))
        with pytest.raises(ArxivQueryError, match="no PDF at .*/pdf/2404.00001v1: HTTP 404"):
            client.download_pdf(paper("2404.00001v1"), tmp_path / "pdfs" / "2404.00001v1.pdf")
    assert sorted(p.name for p in (tmp_path / "pdfs").iterdir()) == [f"{PDF_ID}.pdf"]


def test_html_instead_of_pdf_is_reported_retried_and_never_kept(server, tmp_path):
    server.inject("html", times=1, on="pdf")
    logs = Logs()
    ok = scrape(pdf_cfg(server), tmp_path, progress=False, log=logs)
    assert ok.downloaded == 1 and "an HTML page where a PDF was expected" in logs.text()
    assert (tmp_path / "pdfs" / "1111.2011v2.pdf").read_bytes()[:5] == b"%PDF-"

    server.inject("html", times=10, on="pdf")
    logs = Logs()
    bad = scrape(pdf_cfg(server), tmp_path / "b", progress=False, log=logs)
    assert bad.downloaded == 0 and bad.rows[0]["status"].startswith("failed: an HTML page")
    assert list((tmp_path / "b" / "pdfs").iterdir()) == []  # neither the page nor a .part
    assert not (tmp_path / "b" / "manifest.jsonl").exists()
    assert "Rerun to retry" in bad.summary()


def test_connection_dropped_mid_download_is_retried(server, tmp_path):
    server.inject("drop", times=1, on="pdf")
    logs = Logs()
    ok = scrape(pdf_cfg(server), tmp_path, progress=False, log=logs)
    assert ok.downloaded == 1 and "connection failed" in logs.text()
    assert (tmp_path / "pdfs" / "1111.2011v2.pdf").read_bytes() == (FIXTURES / "1111.2011v2.pdf").read_bytes()
    assert [r["fault"] for r in server.requests_for("pdf")] == ["drop", None]

    server.inject("truncated", times=10, on="pdf")  # half a PDF with no Content-Length: caught by the %%EOF check
    bad = scrape(pdf_cfg(server), tmp_path / "b", progress=False, log=Logs())
    assert bad.rows[0]["status"].startswith("failed: truncated PDF")
    assert list((tmp_path / "b" / "pdfs").iterdir()) == []
