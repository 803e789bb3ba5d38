"""helpers.scrape.client against a real HTTP server on 127.0.0.1 serving recorded arXiv responses:
paging, retries and backoff on injected faults, where PDFs come from, and the rate limit."""
import datetime as dt
import json

import pytest
from recorded_arxiv import PDF_ID, Logs, cfg_for, pdf_cfg, recorded_ids

from helpers.core.net import parse_retry_after
from helpers.scrape.client import ArxivClient, RateLimiter
from helpers.scrape.config import ScrapeConfig
from helpers.scrape.errors import ArxivQueryError, ArxivUnavailable
from helpers.scrape.feed import Paper
from helpers.scrape.step import scrape


def test_pagination_across_pages(server, tmp_path):
    cfg = cfg_for(server, query="testing", max_results=30, page_size=10, abstracts_only=True)
    result = scrape(cfg, tmp_path, progress=False)
    expected = recorded_ids("q_testing_s0_m10") + recorded_ids("q_testing_s10_m10") + recorded_ids("q_testing_s20_m10")
    assert [r["id"] for r in result.rows] == expected and len(set(expected)) == 30
    assert result.total_results == 214881
    starts = [dict(p.split("=", 1) for p in r["query"].split("&"))["start"] for r in server.requests]
    assert starts == ["0", "10", "20"]
    abstracts = [json.loads(line) for line in (tmp_path / "abstracts.jsonl").read_text().splitlines()]
    assert len(abstracts) == 30 and set(abstracts[0]) == {"id", "text"}
    assert abstracts[0]["text"].startswith("Testing Deep Learning Models: A First Comparative Study")
    manifest = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 30 and manifest[0]["pdf_path"] is None and manifest[0]["authors"][0] == "Mohit Kumar Ahuja"
    assert not (tmp_path / "pdfs").exists()


def test_invalid_id_is_rejected_by_arxiv_with_its_message(server):
    # The config refuses "abc" itself; here the raw client sends it to see arXiv's own answer (HTTP 400).
    client = ArxivClient(cfg_for(server, id_list=["1707.08567"]))
    with pytest.raises(ArxivQueryError, match="incorrect id format for abc"):
        client.query({"search_query": "", "id_list": "abc", "sortBy": "relevance", "sortOrder": "descending",
                      "start": "0", "max_results": "100"})
    assert len(server.requests) == 1  # a 400 is not retried


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


def test_pdf_url_choice(server):
    paper = Paper("1111.2011", "v2", "t", [], "a", [], "", "", "", "http://arxiv.org/abs/1111.2011v2",
                  "http://arxiv.org/pdf/1111.2011v2")
    assert ArxivClient(ScrapeConfig()).pdf_url(paper) == "http://arxiv.org/pdf/1111.2011v2"
    assert ArxivClient(cfg_for(server, id_list=[PDF_ID])).pdf_url(paper) == server.origin + "/pdf/1111.2011v2"
    mirror = cfg_for(server, id_list=[PDF_ID], pdf_base_url="https://mirror.example/")
    assert ArxivClient(mirror).pdf_url(paper) == "https://mirror.example/pdf/1111.2011v2"


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
