"""The polite HTTP client of the arXiv export API and its PDFs.

:class:`ArxivClient` sends the requests (httpx, through :mod:`helpers.core.net`): one at a time, at
least ``delay_seconds`` apart (:class:`RateLimiter`, monotonic clock), with a descriptive User-Agent,
following redirects; 5xx, 429 (``Retry-After`` honoured), timeouts, dropped connections, malformed XML
and arXiv's occasional empty page are retried with exponential backoff, and after ``max_retries`` it
stops with :class:`ArxivUnavailable` naming the URL and the last status. :meth:`ArxivClient.search`
pages through the results.

Where the PDFs come from: ``pdf_base_url=""`` (auto) uses the PDF link of each entry when the API
is arXiv itself; when ``arxiv_api_url`` points elsewhere (a mirror, or the local fixture server
of :mod:`helpers.scrape.recorded`), the PDFs are fetched from that server's ``/pdf/<id>``, so
a test or a smoke run never reaches arxiv.org. An explicit ``pdf_base_url`` always wins.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

from helpers.core.net import Backoff, client, parse_retry_after, transport_errors
from helpers.scrape.config import DEFAULT_USER_AGENT, ScrapeConfig, is_arxiv_host, query_params
from helpers.scrape.errors import ArxivQueryError, ArxivUnavailable, Retry
from helpers.scrape.feed import Feed, Paper, parse_feed
from helpers.scrape.pdfs import Download, save_pdf


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


class ArxivClient:
    """Polite HTTP to the arXiv API and PDFs: rate limit, User-Agent, retries, clear stop."""

    def __init__(self, cfg: ScrapeConfig, log: Callable[[str], None] = print):
        cfg.validate()
        self.cfg, self.log = cfg, log
        self.limiter = RateLimiter(cfg.delay_seconds)
        # backoff_seconds doubled per retry, no jitter (the rate limiter spaces requests); a longer Retry-After wins
        self.backoff = Backoff(cfg.backoff_seconds, retry_after="at_least")
        self.session = client(cfg.timeout, user_agent=cfg.user_agent or DEFAULT_USER_AGENT, follow_redirects=True)
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
                        raise Retry(f"HTTP {resp.status_code} {resp.reason_phrase or ''}".strip(),
                                     parse_retry_after(resp.headers.get("Retry-After")))
                    return handle(resp)
                finally:
                    resp.close()
                    self.limiter.done()
            except Retry as exc:
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
                except Retry:
                    pass
                raise ArxivQueryError(f"arXiv rejected the query {url}: HTTP {resp.status_code} "
                                      f"{_short(resp.text, 200)}")
            if resp.status_code != 200:
                raise ArxivQueryError(f"unexpected HTTP {resp.status_code} from {url}")
            feed = parse_feed(resp.content, url)
            if not feed.papers and start < feed.total:
                raise Retry(f"empty page at start={start} although arXiv reported {feed.total} results")
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
        return self._call(url, None, lambda resp: save_pdf(resp, part, dest), stream=True,
                          what=f"PDF {paper.versioned_id}")


def _short(obj, n: int = 160) -> str:
    text = re.sub(r"\s+", " ", str(obj)).strip()
    return text if len(text) <= n else text[: n - 3] + "..."
