"""helpers.scrape.config: what notebook 01 searches for, arXiv's query syntax, and bad input caught
before any request (checked against the recorded arXiv server on 127.0.0.1)."""
import datetime as dt

import pytest
from recorded_arxiv import FAST

from helpers.core.config import ConfigError
from helpers.scrape.config import ARXIV_API_URL, ScrapeConfig, build_search_query, query_params
from helpers.scrape.step import scrape


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
