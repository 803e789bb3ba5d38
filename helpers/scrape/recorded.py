"""A local stand-in for the arXiv export API that serves recorded responses (tests and SMOKE=1).

It is a real ``http.server`` on 127.0.0.1 (an ephemeral port, in a daemon thread) that speaks
the same protocol as ``export.arxiv.org``:

* ``GET /api/query?...`` answers with the response recorded for the same query parameters
  (``search_query``, ``id_list``, ``start``, ``max_results`` and, where the recording has them,
  ``sortBy``/``sortOrder``; a missing parameter takes arXiv's default). The recordings are the
  ``api/*.json`` files of ``helpers/resources/arxiv`` (``{"url", "status_code", "body"}``) plus any
  ``*.xml`` Atom feed there, keyed by the query in its ``rel="self"`` link. A query with no
  recording gets a 404 that says so: the server never makes up results.
* ``GET /pdf/<id>`` (or ``/pdf/<id>.pdf``) serves ``<id>.pdf`` from the same folder (``/`` in old
  ids such as ``quant-ph/0201082v1`` is ``_`` in the file name); other ids get a 404.

Faults for tests are queued with :meth:`FixtureServer.inject` and used by the next matching
requests: ``"503"``, ``"429"`` (with ``Retry-After``), ``"malformed"`` (the recorded XML cut in
half), ``"empty"`` (the recorded feed with its entries removed), ``"html"`` (an HTML error page
with status 200 where a PDF should be), ``"drop"`` (the PDF's full ``Content-Length`` announced,
half the bytes sent, connection closed), ``"truncated"`` (half the PDF, no ``Content-Length``) and
``"slow"`` (no answer for ``delay`` seconds). Every request is logged in :attr:`requests`.

    with FixtureServer() as srv:
        cfg = ScrapeConfig(arxiv_api_url=srv.api_url, ...)
"""
from __future__ import annotations

import json
import math
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from helpers.common.resources import arxiv_fixture_dir

ATOM = "{http://www.w3.org/2005/Atom}"
DEFAULTS = {"search_query": "", "id_list": "", "start": "0", "max_results": "10",
            "sortBy": "relevance", "sortOrder": "descending"}
ALWAYS_MATCHED = ("search_query", "id_list", "start", "max_results")
FAULTS = ("503", "429", "malformed", "empty", "html", "drop", "truncated", "slow")


@dataclass
class Recording:
    params: dict[str, str]  # the recorded query parameters that a request must match
    status: int
    body: str
    source: str  # file it came from


@dataclass
class Fault:
    kind: str
    on: str  # "api" or "pdf"
    remaining: int
    retry_after: float | None = None
    delay: float = 0.0
    match: str = ""  # only requests whose path?query contains this


def _params(query: str) -> dict[str, str]:
    """Query parameters, a missing one taking arXiv's default; ids compared without spaces."""
    raw = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    out = dict(DEFAULTS, **raw)
    out["id_list"] = ",".join(i.strip() for i in out["id_list"].split(",") if i.strip())
    return out


def load_recordings(fixture_dir: str | Path) -> list[Recording]:
    """Every recorded API response in ``fixture_dir`` (``api/*.json`` and ``*.xml`` feeds)."""
    fixture_dir = Path(fixture_dir)
    recs: list[Recording] = []
    for f in sorted((fixture_dir / "api").glob("*.json")):
        try:
            data = json.loads(f.read_text())
            url, status, body = data["url"], int(data["status_code"]), data["body"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{f}: not a recorded response {{url, status_code, body}} ({exc})") from None
        query = urlsplit(url).query
        keys = set(parse_qs(query, keep_blank_values=True)) | set(ALWAYS_MATCHED)
        params = _params(query)
        recs.append(Recording({k: params[k] for k in keys}, status, body, f.name))
    for f in sorted(fixture_dir.glob("*.xml")):
        body = f.read_text()
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise ValueError(f"{f}: not an Atom feed ({exc})") from None
        self_link = next((link.get("href", "") for link in root.findall(f"{ATOM}link")
                          if link.get("rel") == "self"), "")
        if "?" not in self_link:
            continue
        query = unquote(self_link.split("?", 1)[1])
        keys = set(parse_qs(query, keep_blank_values=True)) | set(ALWAYS_MATCHED)
        params = _params(query)
        recs.append(Recording({k: params[k] for k in keys}, 200, body, f.name))
    return recs


def _strip_entries(body: str) -> str:
    """The feed with its ``<entry>`` elements removed (arXiv's occasional empty page)."""
    return re.sub(r"\s*<entry>.*?</entry>", "", body, flags=re.S)


class FixtureServer:
    """Serve recorded arXiv responses and PDFs on 127.0.0.1; see the module docstring."""

    def __init__(self, fixture_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 0):
        if fixture_dir is None:
            fixture_dir = arxiv_fixture_dir()
        self.fixture_dir = Path(fixture_dir)
        self.recordings = load_recordings(self.fixture_dir)
        if not self.recordings:
            raise FileNotFoundError(f"{self.fixture_dir}: no recorded arXiv responses (api/*.json, *.xml)")
        self.requests: list[dict] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), partial(RecordedHandler, fixture=self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.origin + "/api/query"

    def start(self) -> "FixtureServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="arxiv-fixture-server",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "FixtureServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- faults and the request log ------------------------------------------------------
    def inject(self, kind: str, times: int = 1, on: str = "api", retry_after: float | None = None,
               delay: float = 0.0, match: str = "") -> None:
        """Answer the next ``times`` requests for ``on`` ("api" or "pdf") with fault ``kind``
        (only those whose ``path?query`` contains ``match``, when given)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        if on not in ("api", "pdf"):
            raise ValueError(f"on must be 'api' or 'pdf', not {on!r}")
        with self._lock:
            self._faults.append(Fault(kind, on, times, retry_after, delay, match))

    def _take_fault(self, on: str, target: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.on == on and f.remaining > 0 and f.match in target:
                    f.remaining -= 1
                    return f
        return None

    def requests_for(self, on: str) -> list[dict]:
        return [r for r in self.requests if r["on"] == on]

    def find(self, query: str) -> Recording | None:
        """The recording that answers a query string, or None."""
        params = _params(query)
        for rec in self.recordings:
            if all(params.get(k, DEFAULTS.get(k, "")) == v for k, v in rec.params.items()):
                return rec
        return None

    def pdf_file(self, arxiv_id: str) -> Path | None:
        arxiv_id = arxiv_id[:-4] if arxiv_id.endswith(".pdf") else arxiv_id
        if not arxiv_id or ".." in arxiv_id:
            return None
        p = self.fixture_dir / (arxiv_id.replace("/", "_") + ".pdf")
        return p if p.is_file() else None


class RecordedHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests from a :class:`FixtureServer`'s recordings and faults, and
    logs each in its ``requests``. Made by the server with ``partial(RecordedHandler, fixture=...)``."""

    protocol_version = "HTTP/1.1"
    server_version = "arxiv-fixture-server/1"

    def __init__(self, *args, fixture: FixtureServer, **kwargs):
        self.fixture = fixture  # before the base class's __init__, which handles the request
        super().__init__(*args, **kwargs)

    def log_message(self, *args):  # quiet: the request log is the fixture server's requests
        pass

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        on = "pdf" if parts.path.startswith("/pdf/") else "api"
        entry = {"on": on, "path": parts.path, "query": parts.query, "time": time.monotonic(),
                 "user_agent": self.headers.get("User-Agent", ""), "fault": None}
        with self.fixture._lock:
            self.fixture.requests.append(entry)
        fault = self.fixture._take_fault(on, self.path)
        if fault:
            entry["fault"] = fault.kind
            if self._fault(fault, on, parts):
                return
        if on == "api":
            self._api(parts, entry)
        else:
            self._pdf(parts, entry)

    def _fault(self, fault: Fault, on: str, parts) -> bool:
        """Answer with the fault; False when the normal answer should follow (slow)."""
        k = fault.kind
        if k == "slow":
            time.sleep(fault.delay)
            return False
        if k == "503":
            self._send(503, b"Service Unavailable (injected fault)\n", "text/plain")
        elif k == "429":
            # Retry-After is whole seconds (RFC 9110 delay-seconds)
            hdr = {"Retry-After": str(math.ceil(fault.retry_after if fault.retry_after is not None else 1))}
            self._send(429, b"Too Many Requests (injected fault)\n", "text/plain", hdr)
        elif k in ("malformed", "empty") and on == "api":
            rec = self.fixture.find(parts.query)
            body = rec.body if rec else "<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'></feed>"
            body = body[: len(body) // 2] if k == "malformed" else _strip_entries(body)
            self._send(200, body.encode(), "application/atom+xml; charset=utf-8")
        elif k == "html":
            page = (b"<!DOCTYPE html>\n<html><head><title>arXiv: PDF unavailable</title></head>"
                    b"<body><h1>PDF not yet available</h1><p>Please try again later.</p></body></html>\n")
            self._send(200, page, "text/html; charset=utf-8")
        elif k in ("drop", "truncated") and on == "pdf":
            f = self.fixture.pdf_file(parts.path[len("/pdf/"):])
            data = f.read_bytes() if f else b"%PDF-1.5\n" + b"0" * 4096
            self.send_response(200)
            self.send_header("Content-Type", "application/pdf")
            if k == "drop":
                self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            raise ValueError(f"fault {k!r} does not apply to {on} requests")
        return True

    def _api(self, parts, entry):
        if parts.path.rstrip("/") != "/api/query":
            entry["status"] = 404
            return self._send(404, f"No such path {parts.path}; the API is /api/query\n".encode(), "text/plain")
        rec = self.fixture.find(parts.query)
        if rec is None:
            entry["status"] = 404
            msg = (f"No recorded arXiv response for ?{parts.query} in {self.fixture.fixture_dir}; "
                   f"recorded queries: {sorted(r.source for r in self.fixture.recordings)}\n")
            return self._send(404, msg.encode(), "text/plain")
        entry["status"] = rec.status
        self._send(rec.status, rec.body.encode(), "application/atom+xml; charset=utf-8")

    def _pdf(self, parts, entry):
        f = self.fixture.pdf_file(parts.path[len("/pdf/"):])
        if f is None:
            entry["status"] = 404
            return self._send(404, f"No recorded PDF for {parts.path} in {self.fixture.fixture_dir}\n".encode(),
                              "text/plain")
        entry["status"] = 200
        self._send(200, f.read_bytes(), "application/pdf")
