"""HTTP plumbing shared by the kit's two remote services, arXiv (:mod:`helpers.scrape.client`) and the
teacher LLM (:mod:`helpers.dataset.teacher`): one client library (httpx, pinned in requirements.txt),
one ``Retry-After`` parser and one backoff policy.

* :func:`client` makes an ``httpx.Client`` with a timeout (connect, between bytes read, write and
  pool wait alike), an optional User-Agent and a redirect policy. A client pools connections:
  keep one per thread and close it when done.
* :func:`parse_retry_after` reads a ``Retry-After`` header: delay-seconds (``"7"``) or an HTTP
  date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, a date in the past meaning "now"); anything else is
  None, so the caller falls back on its own backoff.
* :class:`Backoff`: how long to wait before retry ``k`` (0 for the first): ``base * factor**k``,
  plus up to ``jitter`` of that at random, never more than ``cap``; a ``Retry-After`` either sets a
  floor (``retry_after="at_least"``: the longer wait wins) or replaces the backoff
  (``retry_after="replaces"``).
* :func:`transport_errors` gives the httpx exception classes worth retrying: timeouts, and broken
  connections or bodies (refused, reset, cut short, undecodable).
* :func:`request_within` sends one request and reads its whole body within a deadline: httpx's
  timeouts apply to each read, so a server that trickles a byte every second would hold a
  request for ever. The body is streamed and the clock checked after every piece, and a watchdog
  shuts the socket at the deadline (the socket of a new connection from the start; of a reused
  one once the headers are in). Past the deadline it raises httpx's timeout exception.

httpx is imported inside the functions, so ``import helpers.core.net`` stays fast. (Not named ``http``: with
helpers/ itself on ``sys.path`` it would hide the standard library's ``http``.)
"""
from __future__ import annotations

import datetime as dt
import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable

DELAY_SECONDS = re.compile(r"\d+(\.\d+)?")  # RFC 9110 delay-seconds (digits; a fraction tolerated)


def client(timeout: float, user_agent: str | None = None, follow_redirects: bool = False):
    """An ``httpx.Client`` with ``timeout`` seconds for every phase (connect, each read, write, pool),
    ``user_agent`` when given (else httpx's own), and redirects followed when ``follow_redirects``."""
    import httpx
    headers = {"User-Agent": user_agent} if user_agent else None
    return httpx.Client(timeout=timeout, headers=headers, follow_redirects=follow_redirects)


def transport_errors() -> tuple[type[Exception], tuple[type[Exception], ...]]:
    """``(timeout, broken)``: httpx's timeout exception class, and the classes of a connection that
    failed or a body that could not be read to its end (refused, reset, closed mid-body, bad encoding)."""
    import httpx
    return httpx.TimeoutException, (httpx.TransportError, httpx.DecodingError)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or an HTTP date); None if absent or unreadable.

    A date in the past is 0; a date without a zone is read as UTC (HTTP dates are GMT)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class Backoff:
    """Waits between retries: exponential, with optional jitter and cap (see the module docstring)."""

    base: float  # seconds before the first retry
    factor: float = 2.0  # each retry waits this many times longer than the one before
    jitter: float = 0.0  # up to this fraction of the wait is added at random (0.25: up to +25 %)
    cap: float | None = None  # never wait longer than this (None: no cap)
    retry_after: str = "at_least"  # "at_least": a longer Retry-After wins; "replaces": Retry-After is the wait

    def __post_init__(self):
        if self.retry_after not in ("at_least", "replaces"):
            raise ValueError(f"Backoff(retry_after={self.retry_after!r}): expected 'at_least' or 'replaces'")

    def delay(self, retry: int, retry_after: float | None = None,
              rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), given the server's Retry-After."""
        wait = self.base * self.factor ** retry
        if self.jitter:
            wait *= 1 + self.jitter * rand()
        if retry_after is not None:
            wait = retry_after if self.retry_after == "replaces" else max(retry_after, wait)
        return wait if self.cap is None else min(wait, self.cap)


@dataclass
class Reply:
    """A response read to its end by :func:`request_within`: status, headers and the body's bytes."""

    status_code: int
    headers: Any  # httpx.Headers: case-insensitive
    content: bytes
    encoding: str | None = None

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding or "utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _shut(holder: dict) -> None:
    """The watchdog: shut the request's socket (a blocked read then returns at once)."""
    holder["fired"] = True
    stream = holder.get("stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def request_within(session, method: str, url: str, deadline_s: float, **kw) -> Reply:
    """``session.request(method, url, **kw)`` read to its end within ``deadline_s`` seconds in all
    (see the module docstring); raises httpx's timeout exception when the deadline passes."""
    import httpx
    t0 = time.monotonic()
    holder: dict = {}

    def trace(event: str, info: dict) -> None:  # a new connection: its stream, for the watchdog
        if event == "connection.connect_tcp.complete":
            holder["stream"] = info.get("return_value")

    watchdog = threading.Timer(deadline_s, _shut, (holder,))
    watchdog.daemon = True
    watchdog.start()
    pieces: list[bytes] = []
    ended = None  # when the body was read to its end
    try:
        with session.stream(method, url, timeout=deadline_s, extensions={"trace": trace}, **kw) as r:
            holder.setdefault("stream", r.extensions.get("network_stream"))
            if holder.get("fired"):
                _shut(holder)
            for piece in r.iter_bytes():
                pieces.append(piece)
                if time.monotonic() - t0 > deadline_s:
                    break
            else:
                ended = time.monotonic()
    except (httpx.TransportError, httpx.DecodingError):
        if not holder.get("fired"):
            raise
    finally:
        watchdog.cancel()
    if ended is None or ended - t0 > deadline_s:  # cut by the watchdog or the clock (even if it looks whole)
        raise httpx.ReadTimeout(f"no complete answer within {deadline_s:g}s (a deadline for the whole request)")
    return Reply(r.status_code, r.headers, b"".join(pieces), r.charset_encoding)
