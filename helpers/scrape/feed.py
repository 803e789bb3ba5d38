"""arXiv's Atom feed, parsed with ``xml.etree``: one :class:`Paper` per entry, in a :class:`Feed`
with the total that arXiv reported. A body that is not a feed is worth retrying (:class:`Retry`);
arXiv's error entries are a rejected query (:class:`ArxivQueryError`)."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from helpers.scrape.errors import ArxivQueryError, Retry

ATOM = "{http://www.w3.org/2005/Atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
ARXIV_NS = "{http://arxiv.org/schemas/atom}"


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
    """One page of results: arXiv's total for the query, where the page starts, and its papers."""
    total: int
    start: int
    papers: list[Paper]


def _clean(text: str | None) -> str:
    """The text with its runs of whitespace (line breaks of the feed) made single spaces."""
    return re.sub(r"\s+", " ", text or "").strip()


def split_id(entry_id: str) -> tuple[str, str]:
    """``http://arxiv.org/abs/1111.2011v2`` -> ("1111.2011", "v2")."""
    tail = entry_id.split("/abs/", 1)[-1].strip()
    m = re.match(r"^(.*?)(v\d+)?$", tail)
    return (m.group(1), m.group(2) or "") if m else (tail, "")


def parse_feed(body: bytes | str, url: str = "") -> Feed:
    """Parse an arXiv Atom feed. Raises ``Retry`` for a body that is not a feed (retryable) and
    :class:`ArxivQueryError` for arXiv's error entries (e.g. "incorrect id format for abc")."""
    if not body or not (body.strip() if isinstance(body, str) else body.strip()):
        raise Retry("empty body where an Atom feed was expected")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise Retry(f"malformed XML ({exc})") from None
    if root.tag != f"{ATOM}feed":
        raise Retry(f"not an Atom feed (root element {root.tag!r})")
    total_el = root.find(f"{OPENSEARCH}totalResults")
    start_el = root.find(f"{OPENSEARCH}startIndex")
    try:
        total = int(total_el.text) if total_el is not None and total_el.text else 0
        start = int(start_el.text) if start_el is not None and start_el.text else 0
    except ValueError as exc:
        raise Retry(f"unreadable opensearch counts ({exc})") from None
    papers = []
    for entry in root.findall(f"{ATOM}entry"):
        entry_id = (entry.findtext(f"{ATOM}id") or "").strip()
        if "/api/errors" in entry_id:
            raise ArxivQueryError(f"arXiv rejected the query {url}: {_clean(entry.findtext(f'{ATOM}summary'))}")
        aid, version = split_id(entry_id)
        links = entry.findall(f"{ATOM}link")
        pdf = next((link.get("href", "") for link in links if link.get("title") == "pdf"), "")
        abs_url = next((link.get("href", "") for link in links if link.get("rel") == "alternate"), entry_id)
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
