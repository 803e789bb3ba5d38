"""helpers.scrape.errors: what a notebook catches when arXiv fails, raised by the real client against
the recorded server on 127.0.0.1: a stop names the URL and the last failure, a rejected query is
not retried, and both are ArxivError."""
import pytest
from recorded_arxiv import Logs, cfg_for, pdf_cfg

from helpers.scrape.client import ArxivClient
from helpers.scrape.errors import ArxivError, ArxivQueryError, ArxivUnavailable, Retry
from helpers.scrape.feed import parse_feed
from helpers.scrape.step import scrape

PARAMS = {"search_query": "", "id_list": "1707.08567", "sortBy": "relevance", "sortOrder": "descending",
          "start": "0", "max_results": "100"}


def test_unavailable_names_the_url_and_the_last_failure(server):
    server.inject("503", times=10)
    with ArxivClient(cfg_for(server, id_list=["1707.08567"]), log=Logs()) as client:
        with pytest.raises(ArxivError) as err:
            client.query(PARAMS)
    exc = err.value
    assert isinstance(exc, ArxivUnavailable) and isinstance(exc, RuntimeError)
    assert exc.url.startswith(server.api_url + "?") and "id_list=1707.08567" in exc.url
    assert exc.last == "HTTP 503 Service Unavailable" and exc.url in str(exc)
    assert client.requests_sent == 3 == len(server.requests)


def test_a_rejected_query_is_an_arxiv_error_and_not_retried(server):
    with ArxivClient(cfg_for(server, id_list=["1707.08567"])) as client:
        with pytest.raises(ArxivError) as err:
            client.query(dict(PARAMS, id_list="abc"))
    assert isinstance(err.value, ArxivQueryError) and not isinstance(err.value, ArxivUnavailable)
    assert client.requests_sent == 1


def test_a_stopped_scrape_raises_unavailable_with_the_last_failure(server, tmp_path):
    server.inject("503", times=10)
    with pytest.raises(ArxivUnavailable) as err:
        scrape(pdf_cfg(server), tmp_path, progress=False, log=Logs())
    assert err.value.last == "HTTP 503 Service Unavailable"


def test_retry_carries_its_reason():
    with pytest.raises(Retry) as err:
        parse_feed(b"")
    assert err.value.reason == str(err.value) == "empty body where an Atom feed was expected"
    assert err.value.retry_after is None
    assert Retry("HTTP 429", 7.0).retry_after == 7.0
