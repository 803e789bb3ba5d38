"""The errors of talking to arXiv: a rejected query, a service that keeps failing, and the
internal signal that a response is worth retrying."""
from __future__ import annotations


class ArxivError(RuntimeError):
    """Something went wrong talking to arXiv; the message names the URL."""


class ArxivQueryError(ArxivError):
    """arXiv rejected the query (HTTP 4xx or an error entry in the feed): retrying will not help."""


class ArxivUnavailable(ArxivError):
    """Repeated failures (5xx, 429, timeouts, broken bodies): the run stopped instead of hammering."""

    def __init__(self, message: str, url: str = "", last: str = ""):
        super().__init__(message)
        self.url, self.last = url, last


class Retry(Exception):
    """A response worth retrying (after ``retry_after`` seconds when the server said so)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after
