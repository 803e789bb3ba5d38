"""Notebook 01: find papers through the arXiv export API and download their PDFs, politely and resumably.

* :class:`ScrapeConfig`: what to search (category, submitted-date range, keywords in title or
  abstract, authors, explicit ids, or a raw ``search_query``), how to sort, how many, and how
  politely (``delay_seconds`` between requests, 3 s by default as arXiv's terms of use ask).
* :func:`build_search_query` turns it into arXiv's ``search_query`` syntax, e.g.
  ``cat:cs.CL AND submittedDate:[202404180000 TO 202612312359] AND (ti:"llama" OR abs:"llama")``.
* :class:`ArxivClient` sends the requests (httpx, through :mod:`helpers.core.net`): one at a time, at
  least ``delay_seconds`` apart (monotonic clock), with a descriptive User-Agent, following
  redirects; 5xx, 429 (``Retry-After`` honoured), timeouts, dropped connections, malformed XML and
  arXiv's occasional empty page are retried with exponential backoff, and after ``max_retries``
  it stops with :class:`ArxivUnavailable` naming the URL and the last status. Atom is parsed with ``xml.etree``.
* :func:`scrape` pages through the results, downloads each PDF to a ``.part`` file, checks it
  (status 200, ``%PDF-`` at the start, ``%%EOF`` at the end, ``Content-Length`` when given),
  records its sha256 and size, renames it into place and appends a line to ``manifest.jsonl``
  (a :class:`helpers.core.jsonl.JsonlStore`: a line cut short by a crash is reported and skipped).
  A rerun skips every paper whose file is there with the recorded size and sha256. It also writes
  ``abstracts.jsonl`` (``{"id", "text"}``: title and abstract), the raw-text corpus of notebook 03;
  ``abstracts_only=True`` skips the PDFs.

Where the PDFs come from: ``pdf_base_url=""`` (auto) uses the PDF link of each entry when the API
is arXiv itself; when ``arxiv_api_url`` points elsewhere (a mirror, or the local fixture server
of :mod:`helpers.scrape.recorded`), the PDFs are fetched from that server's ``/pdf/<id>``, so
a test or a smoke run never reaches arxiv.org. An explicit ``pdf_base_url`` always wins.

Files (folder = ``ws.data("arxiv")``): ``manifest.jsonl``, ``pdfs/<id><version>.pdf``,
``abstracts.jsonl``.
"""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from helpers.common.resources import arxiv_fixture_dir
from helpers.core.config import ConfigError, StepConfig, smoke
from helpers.core.jsonl import JsonlStore
from helpers.core.net import Backoff, client, parse_retry_after, transport_errors
from helpers.scrape.recorded import FixtureServer

ARXIV_API_URL = "http://export.arxiv.org/api/query"
DEFAULT_USER_AGENT = ("llama-notebook-kit/0.1 (+https://github.com/llama-kit/llama-notebook-kit; "
                      "fine-tuning notebooks; at most 1 request every 3 s)")
ARXIV_MIN_DELAY = 3.0  # seconds between requests that arXiv's terms of use ask for
ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
ARXIV_NS = "{http://arxiv.org/schemas/atom}"
SORT_BY = ("submittedDate", "relevance", "lastUpdatedDate")
SORT_ORDER = ("descending", "ascending")
MAX_PAGE = 2000  # arXiv's largest page
MAX_TOTAL = 30000  # arXiv's API serves at most this many results of one query
NEW_ID = re.compile(r"^\d{4}\.\d{4,5}(v\d+)?$")
OLD_ID = re.compile(r"^[a-z]+(-[a-z]+)?(\.[A-Z]{2})?/\d{7}(v\d+)?$")

# arXiv's category taxonomy (https://arxiv.org/category_taxonomy).
_ARCHIVES = {
    "astro-ph": "CO EP GA HE IM SR",
    "cond-mat": "dis-nn mes-hall mtrl-sci other quant-gas soft stat-mech str-el supr-con",
    "cs": "AI AR CC CE CG CL CR CV CY DB DC DL DM DS ET FL GL GR GT HC IR IT LG LO MA MM MS NA NE NI OH OS PF "
          "PL RO SC SD SE SI SY",
    "econ": "EM GN TH",
    "eess": "AS IV SP SY",
    "math": "AC AG AP AT CA CO CT CV DG DS FA GM GN GR GT HO IT KT LO MG MP NA NT OA OC PR QA RA RT SG SP ST",
    "nlin": "AO CD CG PS SI",
    "physics": "acc-ph ao-ph app-ph atm-clus atom-ph bio-ph chem-ph class-ph comp-ph data-an ed-ph flu-dyn gen-ph "
               "geo-ph hist-ph ins-det med-ph optics plasm-ph pop-ph soc-ph space-ph",
    "q-bio": "BM CB GN MN NC OT PE QM SC TO",
    "q-fin": "CP EC GN MF PM PR RM ST TR",
    "stat": "AP CO ME ML OT TH",
}
CATEGORIES = frozenset({f"{a}.{s}" for a, subs in _ARCHIVES.items() for s in subs.split()}
                       | {"astro-ph", "cond-mat", "gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th", "math-ph",
                          "nucl-ex", "nucl-th", "quant-ph"})


class ArxivError(RuntimeError):
    """Something went wrong talking to arXiv; the message names the URL."""


class ArxivQueryError(ArxivError):
    """arXiv rejected the query (HTTP 4xx or an error entry in the feed): retrying will not help."""


class ArxivUnavailable(ArxivError):
    """Repeated failures (5xx, 429, timeouts, broken bodies): the run stopped instead of hammering."""

    def __init__(self, message: str, url: str = "", last: str = ""):
        super().__init__(message)
        self.url, self.last = url, last


class _Retry(Exception):
    """A response worth retrying (after ``retry_after`` seconds when the server said so)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass
class ScrapeConfig(StepConfig, notebooks=("01",)):
    """What notebook 01 searches for and how it talks to arXiv."""

    arxiv_api_url: str = ARXIV_API_URL  # the arXiv export API; or a mirror, or a local test server
    pdf_base_url: str = ""  # "" = arXiv's own PDF links (another API server: its /pdf/ID); else where PDFs are fetched from
    query: str = ""  # raw arXiv search_query, ANDed with the other filters, e.g. 'abs:"instruction tuning"' or 'all:testing'
    category: str = "cs.CL"  # arXiv category, e.g. "cs.CL"; several comma-separated are ORed; "" = any
    date_from: str = "2024-04-18"  # submitted on or after (YYYY-MM-DD; Llama 3 came out 2024-04-18); "" = any
    date_to: str = ""  # submitted on or before (YYYY-MM-DD); "" = today
    keywords: list[str] = field(default_factory=lambda: ["llama", "large language model"])  # any of them in the title or abstract; [] = no filter
    authors: list[str] = field(default_factory=list)  # any of these authors (arXiv au: syntax), e.g. ["Touvron"]; [] = any
    id_list: list[str] = field(default_factory=list)  # arXiv ids instead of (or within) a search, e.g. ["2407.21783"]; also 2404.12345v2, hep-th/9901001
    sort_by: str = "submittedDate"  # "submittedDate", "relevance" or "lastUpdatedDate"
    sort_order: str = "descending"  # "descending" (newest first) or "ascending" (oldest first)
    max_results: int = 50  # papers to fetch in all (arXiv serves at most 30000 per query)
    page_size: int = 50  # papers per API request (at most 2000)
    delay_seconds: float = ARXIV_MIN_DELAY  # seconds between requests, at least (arXiv's terms of use ask for 3)
    max_retries: int = 4  # retries of one request when arXiv is busy (429, 5xx) or the connection breaks (timeout, cut body)
    backoff_seconds: float = 5.0  # wait before the first retry, doubled each time (a longer Retry-After wins)
    max_retry_after: float = 300.0  # stop rather than wait when the server asks for longer than this
    max_consecutive_failures: int = 3  # stop after this many PDFs in a row could not be downloaded
    timeout: float = 60.0  # seconds to wait for arXiv (to connect, and between bytes read) before retrying
    abstracts_only: bool = False  # True: skip the PDFs, keep only manifest.jsonl and abstracts.jsonl (a corpus for notebook 03)
    user_agent: str = DEFAULT_USER_AGENT  # who is asking (arXiv wants a descriptive User-Agent)

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        # The one paper whose recorded feed and PDF ship in helpers/resources/arxiv. The delay stays
        # at arXiv's 3 s: the preset must be polite whatever server it ends up talking to.
        return {"query": "", "category": "", "date_from": "", "date_to": "", "keywords": [], "authors": [],
                "id_list": ["1111.2011v2"], "max_results": 10, "page_size": 10,
                "max_retries": 2, "backoff_seconds": 1.0, "timeout": 10.0}

    def validate(self) -> None:
        for name in ("arxiv_api_url",) + (("pdf_base_url",) if self.pdf_base_url else ()):
            url = getattr(self, name)
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"{name}={url!r}: expected an http(s) URL such as {ARXIV_API_URL}")
        for cat in _split(self.category):
            if cat not in CATEGORIES:
                close = difflib.get_close_matches(cat, sorted(CATEGORIES), n=3)
                raise ConfigError(f"category={cat!r} is not an arXiv category"
                                  + (f"; did you mean {', '.join(close)}?" if close else
                                     " (see https://arxiv.org/category_taxonomy; e.g. cs.CL, cs.LG, astro-ph.GA)"))
        start = _parse_date(self.date_from, "date_from")
        end = _parse_date(self.date_to, "date_to")
        if start and not end and start > dt.datetime.now(dt.timezone.utc).date():
            raise ConfigError(f"date_from={self.date_from!r} is in the future: nothing has been submitted yet")
        if start and end and end < start:
            raise ConfigError(f"date_to={self.date_to!r} is before date_from={self.date_from!r}: the range is empty")
        for name in ("keywords", "authors"):
            for item in getattr(self, name):
                if not str(item).strip():
                    raise ConfigError(f"{name} has an empty entry: {getattr(self, name)!r}")
                if '"' in str(item):
                    raise ConfigError(f"{name} entry {item!r} contains a double quote; give the words without quotes")
        for aid in self.id_list:
            if not (NEW_ID.match(aid.strip()) or OLD_ID.match(aid.strip())):
                raise ConfigError(f"id_list entry {aid!r} is not an arXiv id (like 2404.12345, 2404.12345v2 "
                                  "or hep-th/9901001v1)")
        if not (self.query.strip() or _split(self.category) or self.keywords or self.authors or self.id_list):
            raise ConfigError("empty query: give a category, keywords, authors, id_list or a raw query"
                              + (" (a date range alone would match all of arXiv)" if start or end else ""))
        if self.sort_by not in SORT_BY:
            raise ConfigError(f"sort_by={self.sort_by!r}: expected one of {', '.join(SORT_BY)}")
        if self.sort_order not in SORT_ORDER:
            raise ConfigError(f"sort_order={self.sort_order!r}: expected one of {', '.join(SORT_ORDER)}")
        if self.max_results <= 0:
            raise ConfigError(f"max_results={self.max_results}: must be at least 1")
        if self.max_results > MAX_TOTAL:
            raise ConfigError(f"max_results={self.max_results}: arXiv's API serves at most {MAX_TOTAL} results "
                              "of one query; split it by date range")
        if not 1 <= self.page_size <= MAX_PAGE:
            raise ConfigError(f"page_size={self.page_size}: must be between 1 and {MAX_PAGE}")
        if self.delay_seconds < 0:
            raise ConfigError(f"delay_seconds={self.delay_seconds}: must be >= 0")
        if is_arxiv_host(self.arxiv_api_url) and self.delay_seconds < ARXIV_MIN_DELAY:
            raise ConfigError(f"delay_seconds={self.delay_seconds} against {self.arxiv_api_url}: arXiv's terms of "
                              f"use ask for at most one request every {ARXIV_MIN_DELAY:g} s")
        if self.max_retries < 0 or self.backoff_seconds < 0 or self.max_consecutive_failures < 1:
            raise ConfigError("max_retries and backoff_seconds must be >= 0, max_consecutive_failures >= 1")
        if self.timeout <= 0:
            raise ConfigError(f"timeout={self.timeout}: must be > 0 seconds")
        if not self.user_agent.strip():
            raise ConfigError("user_agent is empty: arXiv asks every client to say who it is")


def _split(text: str) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def _parse_date(text: str, name: str) -> dt.date | None:
    if not text or not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a date like 2024-04-18") from None


def is_arxiv_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "arxiv.org" or host.endswith(".arxiv.org")


def build_search_query(cfg: ScrapeConfig, today: dt.date | None = None) -> str:
    """arXiv ``search_query`` for the config's filters (ANDed); "" for a pure id-list look-up."""
    parts: list[str] = []
    if cfg.query.strip():
        parts.append(cfg.query.strip())
    cats = _split(cfg.category)
    if cats:
        parts.append(_any([f"cat:{c}" for c in cats]))
    start, end = _parse_date(cfg.date_from, "date_from"), _parse_date(cfg.date_to, "date_to")
    if start or end:
        lo = start.strftime("%Y%m%d0000") if start else "199101010000"
        hi = (end or today or dt.datetime.now(dt.timezone.utc).date()).strftime("%Y%m%d2359")
        parts.append(f"submittedDate:[{lo} TO {hi}]")
    if cfg.keywords:
        parts.append(_any([f'{f}:"{k.strip()}"' for k in cfg.keywords for f in ("ti", "abs")]))
    if cfg.authors:
        parts.append(_any([f'au:"{a.strip()}"' for a in cfg.authors]))
    if len(parts) > 1 and cfg.query.strip() and " " in parts[0] and not parts[0].startswith("("):
        parts[0] = f"({parts[0]})"
    return " AND ".join(parts)


def _any(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def query_params(cfg: ScrapeConfig, start: int, count: int) -> dict[str, str]:
    """The GET parameters of one page, in the order arXiv documents them."""
    return {"search_query": build_search_query(cfg), "id_list": ",".join(i.strip() for i in cfg.id_list),
            "sortBy": cfg.sort_by, "sortOrder": cfg.sort_order, "start": str(start), "max_results": str(count)}


# --------------------------------------------------------------------------------------------
# Politeness
# --------------------------------------------------------------------------------------------
class RateLimiter:
    """At most one request per ``interval`` seconds, on a monotonic clock, counted from both the start
    and the end of the previous exchange; ``defer`` pushes the next one back (Retry-After, backoff)."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval, self.clock, self.sleep = float(interval), clock, sleep
        self.next_allowed: float | None = None
        self.waited = 0.0  # seconds spent waiting, in all

    def wait(self) -> None:
        if self.next_allowed is not None:
            pause = self.next_allowed - self.clock()
            if pause > 0:
                self.sleep(pause)
                self.waited += pause
        self.next_allowed = self.clock() + self.interval

    def done(self) -> None:
        """Call when a response has been read: the interval also counts from the end of the last
        exchange, so the server never sees two requests closer than ``interval``."""
        until = self.clock() + self.interval
        self.next_allowed = until if self.next_allowed is None else max(self.next_allowed, until)

    def defer(self, seconds: float) -> None:
        """The next request goes no earlier than ``seconds`` from now (Retry-After, backoff)."""
        until = self.clock() + seconds
        self.next_allowed = until if self.next_allowed is None else max(self.next_allowed, until)


# --------------------------------------------------------------------------------------------
# Atom
# --------------------------------------------------------------------------------------------
@dataclass
class Paper:
    """One arXiv entry."""
    id: str  # without version: 1111.2011, quant-ph/0201082
    version: str  # "v2"; "" when the feed gave none
    title: str
    authors: list[str]
    abstract: str
    categories: list[str]
    primary_category: str
    published: str
    updated: str
    abs_url: str
    pdf_url: str
    doi: str = ""
    journal_ref: str = ""
    comment: str = ""

    @property
    def versioned_id(self) -> str:
        return self.id + self.version

    @property
    def filename(self) -> str:
        return self.versioned_id.replace("/", "_") + ".pdf"

    def text(self) -> str:
        """Title and abstract: one row of the raw-text corpus."""
        return f"{self.title}\n\n{self.abstract}"


@dataclass
class Feed:
    total: int
    start: int
    papers: list[Paper]


def _clean(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def split_id(entry_id: str) -> tuple[str, str]:
    """``http://arxiv.org/abs/1111.2011v2`` -> ("1111.2011", "v2")."""
    tail = entry_id.split("/abs/", 1)[-1].strip()
    m = re.match(r"^(.*?)(v\d+)?$", tail)
    return (m.group(1), m.group(2) or "") if m else (tail, "")


def parse_feed(body: bytes | str, url: str = "") -> Feed:
    """Parse an arXiv Atom feed. Raises ``_Retry`` for a body that is not a feed (retryable) and
    :class:`ArxivQueryError` for arXiv's error entries (e.g. "incorrect id format for abc")."""
    if not body or not (body.strip() if isinstance(body, str) else body.strip()):
        raise _Retry("empty body where an Atom feed was expected")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise _Retry(f"malformed XML ({exc})") from None
    if root.tag != f"{ATOM}feed":
        raise _Retry(f"not an Atom feed (root element {root.tag!r})")
    total_el = root.find(f"{OPENSEARCH}totalResults")
    start_el = root.find(f"{OPENSEARCH}startIndex")
    try:
        total = int(total_el.text) if total_el is not None and total_el.text else 0
        start = int(start_el.text) if start_el is not None and start_el.text else 0
    except ValueError as exc:
        raise _Retry(f"unreadable opensearch counts ({exc})") from None
    papers = []
    for entry in root.findall(f"{ATOM}entry"):
        entry_id = (entry.findtext(f"{ATOM}id") or "").strip()
        if "/api/errors" in entry_id:
            raise ArxivQueryError(f"arXiv rejected the query {url}: {_clean(entry.findtext(f'{ATOM}summary'))}")
        aid, version = split_id(entry_id)
        links = entry.findall(f"{ATOM}link")
        pdf = next((l.get("href", "") for l in links if l.get("title") == "pdf"), "")
        abs_url = next((l.get("href", "") for l in links if l.get("rel") == "alternate"), entry_id)
        if not pdf:
            pdf = abs_url.replace("/abs/", "/pdf/")
        prim = entry.find(f"{ARXIV_NS}primary_category")
        cats = [c.get("term", "") for c in entry.findall(f"{ATOM}category") if c.get("term")]
        papers.append(Paper(
            id=aid, version=version, title=_clean(entry.findtext(f"{ATOM}title")),
            authors=[_clean(a.findtext(f"{ATOM}name")) for a in entry.findall(f"{ATOM}author")],
            abstract=_clean(entry.findtext(f"{ATOM}summary")), categories=cats,
            primary_category=prim.get("term", "") if prim is not None else (cats[0] if cats else ""),
            published=(entry.findtext(f"{ATOM}published") or "").strip(),
            updated=(entry.findtext(f"{ATOM}updated") or "").strip(),
            abs_url=abs_url, pdf_url=pdf, doi=_clean(entry.findtext(f"{ARXIV_NS}doi")),
            journal_ref=_clean(entry.findtext(f"{ARXIV_NS}journal_ref")),
            comment=_clean(entry.findtext(f"{ARXIV_NS}comment"))))
    return Feed(total, start, papers)


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------
@dataclass
class Download:
    path: Path
    sha256: str
    size: int


class ArxivClient:
    """Polite HTTP to the arXiv API and PDFs: rate limit, User-Agent, retries, clear stop."""

    def __init__(self, cfg: ScrapeConfig, log: Callable[[str], None] = print):
        cfg.validate()
        self.cfg, self.log = cfg, log
        self.limiter = RateLimiter(cfg.delay_seconds)
        # backoff_seconds doubled per retry, no jitter (the rate limiter spaces requests); a longer Retry-After wins
        self.backoff = Backoff(cfg.backoff_seconds, retry_after="at_least")
        self.session = client(cfg.timeout, user_agent=cfg.user_agent, follow_redirects=True)
        self.requests_sent = 0
        self.total_results: int | None = None

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "ArxivClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, url: str, params: dict | None):
        return self.session.build_request("GET", url, params=params)

    def _call(self, url: str, params: dict | None, handle: Callable, stream: bool = False, what: str = "request"):
        """GET ``url`` until ``handle(response)`` returns, retrying what is worth retrying."""
        timeout_error, broken = transport_errors()
        full = str(self._request(url, params).url)
        attempts = self.cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            self.limiter.wait()
            self.requests_sent += 1
            retry_after = None
            try:
                resp = self.session.send(self._request(url, params), stream=stream)
                try:
                    if resp.status_code == 429 or resp.status_code >= 500:
                        raise _Retry(f"HTTP {resp.status_code} {resp.reason_phrase or ''}".strip(),
                                     parse_retry_after(resp.headers.get("Retry-After")))
                    return handle(resp)
                finally:
                    resp.close()
                    self.limiter.done()
            except _Retry as exc:
                last, retry_after = exc.reason, exc.retry_after
            except timeout_error as exc:
                last = f"timed out after {self.cfg.timeout:g} s ({type(exc).__name__})"
            except broken as exc:
                last = f"connection failed: {type(exc).__name__}: {_short(exc)}"
            if retry_after is not None and retry_after > self.cfg.max_retry_after:
                raise ArxivUnavailable(f"Stopped: {full} answered {last} and asked us to wait {retry_after:g} s "
                                       f"(more than max_retry_after={self.cfg.max_retry_after:g} s). Try later.",
                                       full, last)
            if attempt + 1 < attempts:
                wait = self.backoff.delay(attempt, retry_after)
                self.log(f"{what}: {last} from {full}; retry {attempt + 1}/{self.cfg.max_retries} in {wait:.1f} s"
                         + (" (Retry-After)" if retry_after is not None and retry_after >= wait else ""))
                self.limiter.defer(wait)
        raise ArxivUnavailable(f"Stopped after {attempts} attempts at {full}: last failure was {last}. "
                               "arXiv may be down or rate-limiting; rerun later (finished work is kept).", full, last)

    # --- the API -------------------------------------------------------------------------
    def query(self, params: dict[str, str]) -> Feed:
        """One page of results for raw API parameters (``search_query``, ``id_list``, ``start``, ...)."""
        start = int(params.get("start", 0))

        def handle(resp):
            url = str(resp.url)
            if 400 <= resp.status_code < 500:
                try:
                    parse_feed(resp.content, url)  # raises ArxivQueryError with arXiv's own message
                except _Retry:
                    pass
                raise ArxivQueryError(f"arXiv rejected the query {url}: HTTP {resp.status_code} "
                                      f"{_short(resp.text, 200)}")
            if resp.status_code != 200:
                raise ArxivQueryError(f"unexpected HTTP {resp.status_code} from {url}")
            feed = parse_feed(resp.content, url)
            if not feed.papers and start < feed.total:
                raise _Retry(f"empty page at start={start} although arXiv reported {feed.total} results")
            return feed

        return self._call(self.cfg.arxiv_api_url, params, handle, what="arXiv API")

    def search(self) -> Iterator[Paper]:
        """Every paper of the configured search, page by page, up to ``max_results``."""
        cfg, fetched, start = self.cfg, 0, 0
        while fetched < cfg.max_results:
            count = min(cfg.page_size, cfg.max_results - fetched)
            feed = self.query(query_params(cfg, start, count))
            if self.total_results is None:
                self.total_results = feed.total
            if not feed.papers:
                return
            for paper in feed.papers:
                if fetched >= cfg.max_results:
                    return
                fetched += 1
                yield paper
            start += len(feed.papers)
            if start >= feed.total:
                return

    # --- PDFs ----------------------------------------------------------------------------
    def pdf_url(self, paper: Paper) -> str:
        """Where to fetch the PDF: see the module docstring (``pdf_base_url``)."""
        base = self.cfg.pdf_base_url
        if not base and not is_arxiv_host(self.cfg.arxiv_api_url):
            p = urlsplit(self.cfg.arxiv_api_url)
            base = f"{p.scheme}://{p.netloc}"
        if not base:
            return paper.pdf_url
        path = urlsplit(paper.pdf_url).path or f"/pdf/{paper.versioned_id}"
        return base.rstrip("/") + path

    def download_pdf(self, paper: Paper, dest: Path) -> Download:
        """Download, check and atomically place one PDF; raises ArxivError if it cannot."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        url = self.pdf_url(paper)

        def handle(resp):
            if resp.status_code != 200:
                raise ArxivQueryError(f"no PDF at {resp.url}: HTTP {resp.status_code}")
            digest, size = hashlib.sha256(), 0
            try:
                with open(part, "wb") as fh:
                    for chunk in resp.iter_bytes(1 << 16):
                        fh.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
                expected = resp.headers.get("Content-Length")
                if expected and expected.isdigit() and int(expected) != size:
                    raise _Retry(f"truncated body: {size} of {expected} bytes")
                problem = pdf_problem(part, resp.headers.get("Content-Type", ""))
                if problem:
                    raise _Retry(problem)
                os.replace(part, dest)
                return Download(dest, digest.hexdigest(), size)
            finally:
                if part.exists():
                    part.unlink()

        return self._call(url, None, handle, stream=True, what=f"PDF {paper.versioned_id}")


def _short(obj, n: int = 160) -> str:
    text = re.sub(r"\s+", " ", str(obj)).strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def pdf_problem(path: Path, content_type: str = "") -> str:
    """Why ``path`` is not a complete PDF, or "" if it looks like one (magic and ``%%EOF``)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
        fh.seek(max(0, size - 2048))
        tail = fh.read()
    if not head.startswith(b"%PDF-"):
        kind = "an HTML page" if b"<html" in head.lower() or b"<!doctype" in head.lower() else "not a PDF"
        return (f"{kind} where a PDF was expected (Content-Type {content_type or 'missing'}, "
                f"starts with {head[:40]!r})")
    if b"%%EOF" not in tail:
        return f"truncated PDF: no %%EOF in its last bytes ({size} bytes)"
    return ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Manifest and abstracts
# --------------------------------------------------------------------------------------------
def manifest_row(paper: Paper, folder: Path, dl: Download | None) -> dict:
    return {"id": paper.id, "version": paper.version, "title": paper.title, "authors": paper.authors,
            "abstract": paper.abstract, "categories": paper.categories, "primary_category": paper.primary_category,
            "published": paper.published, "updated": paper.updated, "abs_url": paper.abs_url,
            "pdf_url": paper.pdf_url, "doi": paper.doi,
            "pdf_path": dl.path.relative_to(folder).as_posix() if dl else None,
            "sha256": dl.sha256 if dl else None, "size": dl.size if dl else None,
            "retrieved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def complete_pdf(row: dict | None, folder: Path) -> bool:
    """Whether a manifest row's PDF is on disk with the recorded size and sha256."""
    if not row or not row.get("pdf_path") or not row.get("sha256"):
        return False
    path = folder / row["pdf_path"]
    return path.is_file() and path.stat().st_size == row.get("size") and sha256_file(path) == row["sha256"]


# --------------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------------
@dataclass
class ScrapeResult:
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
            "first_author": paper.authors[0] if paper.authors else "", "published": paper.published[:10], "category": paper.primary_category, "status": status,
            "size_kb": round(size / 1024, 1) if size else None}


def clean_partial_files(pdf_dir: Path) -> list[str]:
    """Remove ``.part`` files left by an interrupted run; returns a note for each."""
    notes = []
    if pdf_dir.is_dir():
        for part in sorted(pdf_dir.glob("*.part")):
            notes.append(f"removed half-written {part.name} ({part.stat().st_size} bytes) from an interrupted run")
            part.unlink()
    return notes


def _set_total(bar, total: int) -> None:
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
    pdf_dir = folder / "pdfs"
    folder.mkdir(parents=True, exist_ok=True)
    result = ScrapeResult(folder)
    result.notes += clean_partial_files(pdf_dir)
    manifest = JsonlStore(folder / "manifest.jsonl", key=lambda r: r["id"] + (r.get("version") or ""))
    abstracts = JsonlStore(folder / "abstracts.jsonl", key=lambda r: r["id"])
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
                _set_total(bar, expected)
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
    key = paper.versioned_id
    row = manifest.rows.get(key)
    if cfg.abstracts_only:
        if row is None:
            manifest.add(manifest_row(paper, folder, None))
        return "abstract only", None
    if complete_pdf(row, folder):
        return "already complete", row["size"]
    dest = folder / "pdfs" / paper.filename
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
