"""helpers.scrape.feed: arXiv's Atom feed parsed from the bundled recordings (real arXiv answers),
arXiv's error entries, and bodies that are not a feed."""
import pytest
from recorded_arxiv import FIXTURES, Logs, pdf_cfg, recorded, recorded_ids

from helpers.scrape.errors import ArxivQueryError, ArxivUnavailable, Retry
from helpers.scrape.feed import Feed, Paper, parse_feed, split_id
from helpers.scrape.step import scrape


def test_recorded_page_is_parsed_into_papers():
    feed = parse_feed(recorded("q_testing_s10_m10")["body"].encode())
    assert isinstance(feed, Feed) and feed.total == 214881 and feed.start == 10
    assert [p.versioned_id for p in feed.papers] == recorded_ids("q_testing_s10_m10")
    assert all(isinstance(p, Paper) and p.title and p.abstract and p.authors for p in feed.papers)
    assert all("  " not in p.abstract and "\n" not in p.title for p in feed.papers)  # whitespace folded


def test_entry_fields_of_the_shipped_paper():
    feed = parse_feed((FIXTURES / "id_list_1111.2011v2.xml").read_bytes())
    (paper,) = feed.papers
    assert (paper.id, paper.version, paper.versioned_id) == ("1111.2011", "v2", "1111.2011v2")
    assert paper.authors == ["James M. Murray", "Adrian Del Maestro", "Zlatko Tesanovic"]
    assert paper.categories == ["cond-mat.str-el", "cond-mat.stat-mech"]
    assert paper.primary_category == "cond-mat.str-el" and paper.published.startswith("2011-11-08")
    assert paper.pdf_url.endswith("/pdf/1111.2011v2") and paper.abs_url.endswith("/abs/1111.2011v2")
    assert paper.filename == "1111.2011v2.pdf"
    assert paper.text() == f"{paper.title}\n\n{paper.abstract}"


def test_old_style_ids_and_their_file_names():
    assert split_id("http://arxiv.org/abs/1111.2011v2") == ("1111.2011", "v2")
    assert split_id("http://arxiv.org/abs/1707.08567") == ("1707.08567", "")
    (paper,) = parse_feed(recorded("id_quant-ph_0201082v1")["body"]).papers
    assert (paper.id, paper.version) == ("quant-ph/0201082", "v1")
    assert paper.filename == "quant-ph_0201082v1.pdf"  # no folder inside pdfs/


def test_error_entry_is_a_rejected_query_and_an_empty_answer_is_no_papers():
    with pytest.raises(ArxivQueryError, match="incorrect id format for abc"):
        parse_feed(recorded("id_abc")["body"], "http://example/api/query?id_list=abc")
    empty = parse_feed(recorded("id_0000.0000")["body"])
    assert empty.total == 0 and empty.papers == []


@pytest.mark.parametrize("body, reason", [
    (b"", "empty body"),
    (b"  \n", "empty body"),
    (b"<feed xmlns='http://www.w3.org/2005/Atom'><entry>", "malformed XML"),
    (b"<!DOCTYPE html><html><body>busy</body></html>", "not an Atom feed"),
    (b"<html><body>busy</body></html>", "not an Atom feed"),
])
def test_a_body_that_is_not_a_feed_is_worth_retrying(body, reason):
    with pytest.raises(Retry, match=reason) as err:
        parse_feed(body)
    assert err.value.retry_after is None


def test_malformed_xml_is_retried_then_stops(server, tmp_path):
    server.inject("malformed", times=1)
    logs = Logs()
    assert len(scrape(pdf_cfg(server, abstracts_only=True), tmp_path, progress=False, log=logs).rows) == 1
    assert "malformed XML" in logs.text()
    server.inject("malformed", times=5)
    with pytest.raises(ArxivUnavailable, match="malformed XML"):
        scrape(pdf_cfg(server, abstracts_only=True), tmp_path / "b", progress=False, log=Logs())
