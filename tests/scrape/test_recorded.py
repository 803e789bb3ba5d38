"""helpers.scrape.recorded: the recorded arXiv server that SMOKE runs and tests use, over real HTTP on
127.0.0.1 with the recordings that ship in helpers/resources/arxiv: a recorded query is answered
byte for byte, an unknown one is refused (never made up), PDFs are served, faults are injected."""
import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
from recorded_arxiv import FIXTURES, PDF_ID, recorded

from helpers.scrape.recorded import FixtureServer, load_recordings


def get(url, headers=None):
    """(status, headers, body) of a GET, errors included."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def test_recordings_are_loaded_from_the_bundled_folder():
    recs = load_recordings(FIXTURES)
    assert len(recs) == len(list((FIXTURES / "api").glob("*.json"))) + len(list(FIXTURES.glob("*.xml")))
    xml = next(r for r in recs if r.source.endswith(".xml"))
    assert xml.status == 200 and xml.params["id_list"] == PDF_ID and xml.params["max_results"] == "10"


def test_a_recorded_query_is_answered_from_the_recording(server):
    rec = recorded("id_1707.08567")
    status, headers, body = get(server.api_url + "?" + urlsplit(rec["url"]).query, {"User-Agent": "kit-test"})
    assert status == rec["status_code"] == 200 and body.decode() == rec["body"]
    assert headers["Content-Type"].startswith("application/atom+xml")
    # arXiv's defaults fill missing parameters, and spaces around ids do not matter
    status, _, body = get(server.api_url + "?id_list=%201707.08567%20&start=0&max_results=100")
    assert status == 200 and body.decode() == rec["body"]
    first = server.requests[0]
    assert (first["on"], first["path"], first["status"], first["user_agent"]) == ("api", "/api/query", 200, "kit-test")
    rejected = recorded("id_abc")  # arXiv's own 400 is replayed as it was
    status, _, body = get(server.api_url + "?" + urlsplit(rejected["url"]).query)
    assert status == 400 and b"incorrect id format for abc" in body


def test_an_unknown_query_is_refused_not_made_up(server):
    status, _, body = get(server.api_url + "?search_query=all:nothing-recorded&start=0&max_results=10")
    assert status == 404
    assert body.decode().startswith("No recorded arXiv response for ?search_query=all:nothing-recorded")
    assert str(FIXTURES) in body.decode() and "q_testing_s0_m10_" in body.decode()
    status, _, body = get(server.origin + "/api/other")
    assert status == 404 and b"the API is /api/query" in body
    assert [r["status"] for r in server.requests] == [404, 404]


def test_pdfs_are_served_and_unknown_ones_refused(server):
    real = (FIXTURES / f"{PDF_ID}.pdf").read_bytes()
    for path in (f"/pdf/{PDF_ID}", f"/pdf/{PDF_ID}.pdf"):
        status, headers, body = get(server.origin + path)
        assert status == 200 and body == real and headers["Content-Type"] == "application/pdf"
        assert int(headers["Content-Length"]) == len(real)
    assert get(server.origin + "/pdf/2404.00001v1")[0] == 404
    assert get(server.origin + "/pdf/../LICENSE")[0] == 404
    assert [r["on"] for r in server.requests] == ["pdf"] * 4


def test_injected_faults_answer_the_next_matching_requests(server):
    server.inject("503", times=2, match="id_list=1707")
    query = "?" + urlsplit(recorded("id_1707.08567")["url"]).query
    assert get(server.api_url + "?id_list=0000.0000&start=0&max_results=100")[0] == 200  # not matched
    assert [get(server.api_url + query)[0] for _ in range(3)] == [503, 503, 200]
    server.inject("429", retry_after=2.5)
    status, headers, _ = get(server.api_url + query)
    assert status == 429 and headers["Retry-After"] == "3"
    server.inject("html", on="pdf")
    status, headers, body = get(server.origin + f"/pdf/{PDF_ID}")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and body.startswith(b"<!DOCTYPE html>")
    server.inject("empty")
    body = get(server.api_url + query)[2].decode()
    assert "<entry>" not in body and "<opensearch:totalResults" in body
    assert [r["fault"] for r in server.requests] == [None, "503", "503", None, "429", "html", "empty"]
    with pytest.raises(ValueError, match="unknown fault 'boom'"):
        server.inject("boom")
    with pytest.raises(ValueError, match="on must be 'api' or 'pdf'"):
        server.inject("503", on="abs")


def test_a_folder_without_recordings_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no recorded arXiv responses"):
        FixtureServer(tmp_path)
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "bad.json").write_text(json.dumps({"url": "x"}))
    with pytest.raises(ValueError, match="bad.json: not a recorded response"):
        load_recordings(tmp_path)
