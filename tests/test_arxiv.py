"""Notebook 01's arXiv client against a real HTTP server on 127.0.0.1 serving recorded arXiv responses.

Nothing here reaches arXiv: the fixture server answers with the responses recorded from the export
API (helpers/resources/arxiv) and the real PDF, plus injected faults.
"""
import datetime as dt
import hashlib
import json
import xml.etree.ElementTree as ET

import pytest

from helpers.scrape.arxiv import (ARXIV_API_URL, ArxivClient, ArxivQueryError, ArxivUnavailable, Paper, RateLimiter,
                           ScrapeConfig, build_search_query, query_params, run_for_notebook, scrape)
from helpers.scrape.recorded import FixtureServer
from helpers.core.config import ConfigError
from helpers.common.resources import arxiv_fixture_dir
from helpers.core.net import parse_retry_after

FIXTURES = arxiv_fixture_dir()
PDF_ID = "1111.2011v2"
FAST = dict(delay_seconds=0.05, backoff_seconds=0.05, max_retries=2, timeout=5.0)


@pytest.fixture
def server():
    with FixtureServer(FIXTURES) as srv:
        yield srv


def cfg_for(srv, **kw):
    """A config for the fixture server: no default filters, fast politeness."""
    base = dict(arxiv_api_url=srv.api_url, category="", date_from="", keywords=[], sort_by="relevance", **FAST)
    base.update(kw)
    return ScrapeConfig(**base)


def pdf_cfg(srv, **kw):
    return cfg_for(srv, id_list=[PDF_ID], max_results=10, page_size=10, **kw)


def recorded_ids(name_prefix):
    """Entry ids of a recorded response, read straight from the file (independent of our parser)."""
    path = next((FIXTURES / "api").glob(name_prefix + "_*.json"))
    root = ET.fromstring(json.loads(path.read_text())["body"])
    ns = "{http://www.w3.org/2005/Atom}"
    return [e.findtext(f"{ns}id").rsplit("/abs/", 1)[1] for e in root.findall(f"{ns}entry")]


class Logs(list):
    def __call__(self, msg):
        self.append(msg)

    def text(self):
        return "\n".join(self)


# --- query building and bad input --------------------------------------------------------------
def test_search_query_syntax():
    cfg = ScrapeConfig(category="cs.CL", date_from="2024-04-18", date_to="2026-12-31",
                       keywords=["llama", "large language model"], authors=["Del Maestro"])
    assert build_search_query(cfg) == (
        'cat:cs.CL AND submittedDate:[202404180000 TO 202612312359] AND '
        '(ti:"llama" OR abs:"llama" OR ti:"large language model" OR abs:"large language model") AND au:"Del Maestro"')
    two = ScrapeConfig(category="cs.CL,cs.LG", date_from="", keywords=[], query="all:testing")
    assert build_search_query(two) == "all:testing AND (cat:cs.CL OR cat:cs.LG)"
    open_end = ScrapeConfig(date_from="2024-04-18", keywords=[])
    assert build_search_query(open_end, today=dt.date(2026, 4, 1)) == \
        "cat:cs.CL AND submittedDate:[202404180000 TO 202604012359]"
    ids = ScrapeConfig(category="", date_from="", keywords=[], id_list=["2104.12255v1", "quant-ph/0201082v1"])
    p = query_params(ids, 0, 100)
    assert p["search_query"] == "" and p["id_list"] == "2104.12255v1,quant-ph/0201082v1" and p["max_results"] == "100"


@pytest.mark.parametrize("bad, message", [
    (dict(category="cs.CLL"), "did you mean cs.CL"),
    (dict(category="", keywords=[]), "empty query"),
    (dict(category="", keywords=[], date_from="2024-01-01"), "date range alone"),
    (dict(date_from="2025-01-01", date_to="2024-12-31"), "before date_from"),
    (dict(date_from="18/04/2024"), "expected a date"),
    (dict(date_from="2999-01-01"), "in the future"),
    (dict(max_results=0), "max_results=0"),
    (dict(max_results=-5), "max_results=-5"),
    (dict(id_list=["abc"]), "'abc' is not an arXiv id"),
    (dict(keywords=[""]), "empty entry"),
])
def test_bad_input_fails_before_any_request(server, tmp_path, bad, message):
    cfg = ScrapeConfig(**dict(dict(arxiv_api_url=server.api_url, **FAST), **bad))
    with pytest.raises(ConfigError, match=message):
        scrape(cfg, tmp_path, progress=False)
    assert server.requests == []
    assert not (tmp_path / "manifest.jsonl").exists()


def test_bad_input_from_environment_and_polite_minimum(monkeypatch):
    monkeypatch.setenv("CATEGORY", "cs.XX")
    with pytest.raises(ConfigError, match="cs.XX"):
        ScrapeConfig.from_params({})
    monkeypatch.delenv("CATEGORY")
    with pytest.raises(ConfigError, match="terms of use"):
        ScrapeConfig(arxiv_api_url=ARXIV_API_URL, delay_seconds=1.0).validate()
    monkeypatch.setenv("ARXIV_API_URL", "http://127.0.0.1:9/api/query")
    monkeypatch.setenv("DELAY_SECONDS", "0.5")
    cfg = ScrapeConfig.from_params({"ARXIV_API_URL": ARXIV_API_URL})
    assert cfg.arxiv_api_url == "http://127.0.0.1:9/api/query" and cfg.delay_seconds == 0.5


# --- searching --------------------------------------------------------------------------------
def test_pagination_across_pages(server, tmp_path):
    cfg = cfg_for(server, query="testing", max_results=30, page_size=10, abstracts_only=True)
    result = scrape(cfg, tmp_path, progress=False)
    expected = recorded_ids("q_testing_s0_m10") + recorded_ids("q_testing_s10_m10") + recorded_ids("q_testing_s20_m10")
    assert [r["id"] for r in result.rows] == expected and len(set(expected)) == 30
    assert result.total_results == 214881
    starts = [dict(p.split("=", 1) for p in r["query"].split("&"))["start"] for r in server.requests]
    assert starts == ["0", "10", "20"]
    abstracts = [json.loads(l) for l in (tmp_path / "abstracts.jsonl").read_text().splitlines()]
    assert len(abstracts) == 30 and set(abstracts[0]) == {"id", "text"}
    assert abstracts[0]["text"].startswith("Testing Deep Learning Models: A First Comparative Study")
    manifest = [json.loads(l) for l in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 30 and manifest[0]["pdf_path"] is None and manifest[0]["authors"][0] == "Mohit Kumar Ahuja"
    assert not (tmp_path / "pdfs").exists()


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


def test_invalid_id_is_rejected_by_arxiv_with_its_message(server):
    # The config refuses "abc" itself; here the raw client sends it to see arXiv's own answer (HTTP 400).
    client = ArxivClient(cfg_for(server, id_list=["1707.08567"]))
    with pytest.raises(ArxivQueryError, match="incorrect id format for abc"):
        client.query({"search_query": "", "id_list": "abc", "sortBy": "relevance", "sortOrder": "descending",
                      "start": "0", "max_results": "100"})
    assert len(server.requests) == 1  # a 400 is not retried


# --- faults on the API --------------------------------------------------------------------------
def test_503_then_success(server, tmp_path):
    server.inject("503", times=1)
    logs = Logs()
    result = scrape(pdf_cfg(server), tmp_path, progress=False, log=logs)
    assert result.downloaded == 1
    api = server.requests_for("api")
    assert [r["fault"] for r in api] == ["503", None]
    assert "HTTP 503" in logs.text() and "retry 1/2" in logs.text()


def test_429_retry_after_is_honoured(server, tmp_path):
    server.inject("429", times=1, retry_after=1)
    result = scrape(pdf_cfg(server, abstracts_only=True), tmp_path, progress=False, log=Logs())
    assert len(result.rows) == 1
    first, second = server.requests_for("api")[:2]
    assert first["fault"] == "429"
    assert second["time"] - first["time"] >= 1.0


def test_retry_after_longer_than_allowed_stops_at_once(server, tmp_path):
    server.inject("429", times=1, retry_after=120)
    with pytest.raises(ArxivUnavailable, match="asked us to wait 120 s"):
        scrape(pdf_cfg(server, max_retry_after=30.0), tmp_path, progress=False, log=Logs())
    assert len(server.requests) == 1


def test_repeated_failures_stop_clearly(server, tmp_path):
    server.inject("503", times=10)
    with pytest.raises(ArxivUnavailable) as err:
        scrape(pdf_cfg(server), tmp_path, progress=False, log=Logs())
    msg = str(err.value)
    assert "after 3 attempts" in msg and server.api_url in msg and "id_list=1111.2011v2" in msg and "HTTP 503" in msg
    assert len(server.requests) == 3


def test_timeout_is_retried(server, tmp_path):
    server.inject("slow", times=1, delay=1.5)
    logs = Logs()
    result = scrape(pdf_cfg(server, timeout=0.5, abstracts_only=True), tmp_path, progress=False, log=logs)
    assert len(result.rows) == 1 and "timed out" in logs.text()


def test_malformed_xml_is_retried_then_stops(server, tmp_path):
    server.inject("malformed", times=1)
    logs = Logs()
    assert len(scrape(pdf_cfg(server, abstracts_only=True), tmp_path, progress=False, log=logs).rows) == 1
    assert "malformed XML" in logs.text()
    server.inject("malformed", times=5)
    with pytest.raises(ArxivUnavailable, match="malformed XML"):
        scrape(pdf_cfg(server, abstracts_only=True), tmp_path / "b", progress=False, log=Logs())


def test_empty_feed_mid_pagination_is_retried(server, tmp_path):
    cfg = cfg_for(server, query="testing", max_results=30, page_size=10, abstracts_only=True)
    # The second page comes back with no entries, though arXiv reports 214881 results.
    server.inject("empty", times=1, match="start=10&")
    logs = Logs()
    result = scrape(cfg, tmp_path, progress=False, log=logs)
    expected = recorded_ids("q_testing_s0_m10") + recorded_ids("q_testing_s10_m10") + recorded_ids("q_testing_s20_m10")
    assert [r["id"] for r in result.rows] == expected
    assert [r["fault"] for r in server.requests] == [None, "empty", None, None]
    assert "empty page at start=10 although arXiv reported 214881 results" in logs.text()
    server.inject("empty", times=5)
    with pytest.raises(ArxivUnavailable, match="empty page"):
        scrape(cfg, tmp_path / "b", progress=False, log=Logs())


# --- PDFs --------------------------------------------------------------------------------------
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
    assert all(r["user_agent"] == ScrapeConfig().user_agent for r in server.requests)
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


def test_repeated_pdf_failures_stop_the_run(server, tmp_path):
    cfg = cfg_for(server, query="testing", max_results=10, page_size=10, max_retries=0, max_consecutive_failures=2)
    logs = Logs()
    with pytest.raises(ArxivUnavailable, match="2 PDFs in a row"):
        scrape(cfg, tmp_path, progress=False, log=logs)  # the fixture server has none of these PDFs: 404
    assert len(server.requests_for("pdf")) == 2 and "HTTP 404" in logs.text()
    assert len((tmp_path / "abstracts.jsonl").read_text().splitlines()) == 2  # finished work is kept


def test_pdf_url_choice(server):
    paper = Paper("1111.2011", "v2", "t", [], "a", [], "", "", "", "http://arxiv.org/abs/1111.2011v2",
                  "http://arxiv.org/pdf/1111.2011v2")
    assert ArxivClient(ScrapeConfig()).pdf_url(paper) == "http://arxiv.org/pdf/1111.2011v2"
    assert ArxivClient(cfg_for(server, id_list=[PDF_ID])).pdf_url(paper) == server.origin + "/pdf/1111.2011v2"
    mirror = cfg_for(server, id_list=[PDF_ID], pdf_base_url="https://mirror.example/")
    assert ArxivClient(mirror).pdf_url(paper) == "https://mirror.example/pdf/1111.2011v2"


# --- politeness --------------------------------------------------------------------------------
def test_requests_are_spaced_by_the_delay(server, tmp_path):
    scrape(cfg_for(server, query="testing", max_results=30, page_size=10, abstracts_only=True, delay_seconds=0.3),
           tmp_path, progress=False)
    times = [r["time"] for r in server.requests]
    assert len(times) == 3 and min(b - a for a, b in zip(times, times[1:])) >= 0.3


def test_rate_limiter_on_a_given_clock():
    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s
    lim = RateLimiter(3.0, clock=lambda: now[0], sleep=sleep)
    lim.wait()
    now[0] += 1.0
    lim.wait()
    assert slept == [2.0]
    lim.defer(10.0)
    lim.wait()
    assert slept[-1] == 10.0
    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = dt.datetime(2026, 4, 1, 12, 0, 30, tzinfo=dt.timezone.utc)
    assert parse_retry_after("Wed, 01 Apr 2026 12:00:30 GMT", now=when - dt.timedelta(seconds=30)) == 30.0


# --- the notebook's offline rules ------------------------------------------------------------
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
