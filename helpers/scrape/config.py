"""What notebook 01 searches for and how politely: :class:`ScrapeConfig`, its validation, and
:func:`build_search_query`, which turns it into arXiv's ``search_query`` syntax, e.g.
``cat:cs.CL AND submittedDate:[202404180000 TO 202612312359] AND (ti:"llama" OR abs:"llama")``.

``delay_seconds`` between requests is 3 s by default, as arXiv's terms of use ask.
"""
from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from helpers import __version__
from helpers.core.config import ConfigError, StepConfig

ARXIV_API_URL = "http://export.arxiv.org/api/query"
DEFAULT_USER_AGENT = (f"llama-notebook-kit/{__version__} (+https://github.com/llama-kit/llama-notebook-kit; "
                      "fine-tuning notebooks; at most 1 request every 3 s)")
KEYWORDS = ("llama", "large language model")  # notebook 01's default filter
ARXIV_MIN_DELAY = 3.0  # seconds between requests that arXiv's terms of use ask for
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


@dataclass
class ScrapeConfig(StepConfig, notebooks=("01",)):
    """What notebook 01 searches for and how it talks to arXiv."""

    arxiv_api_url: str = ARXIV_API_URL  # the arXiv export API; or a mirror, or a local test server
    pdf_base_url: str = ""  # "" = arXiv's own PDF links (another API server: its /pdf/ID); else where PDFs are fetched
                            # from
    query: str = ""  # raw arXiv search_query, ANDed with the other filters, e.g. 'abs:"instruction tuning"' or
                     # 'all:testing'
    category: str = "cs.CL"  # arXiv category, e.g. "cs.CL"; several comma-separated are ORed; "" = any
    date_from: str = "2024-04-18"  # submitted on or after (YYYY-MM-DD; Llama 3 came out 2024-04-18); "" = any
    date_to: str = ""  # submitted on or before (YYYY-MM-DD); "" = today
    keywords: list[str] = field(default_factory=lambda: list(KEYWORDS))  # any of them in the title or abstract;
    #                                                                      [] = no filter
    authors: list[str] = field(default_factory=list)  # any of these authors (arXiv au: syntax), e.g. ["Touvron"]; [] =
                                                      # any
    id_list: list[str] = field(default_factory=list)  # arXiv ids instead of (or within) a search, e.g. ["2407.21783"];
                                                      # also 2404.12345v2, hep-th/9901001
    sort_by: str = "submittedDate"  # "submittedDate", "relevance" or "lastUpdatedDate"
    sort_order: str = "descending"  # "descending" (newest first) or "ascending" (oldest first)
    max_results: int = 50  # papers to fetch in all (arXiv serves at most 30000 per query)
    page_size: int = 50  # papers per API request (at most 2000)
    delay_seconds: float = ARXIV_MIN_DELAY  # seconds between requests, at least (arXiv's terms of use ask for 3)
    max_retries: int = 4  # retries of one request when arXiv is busy (429, 5xx) or the connection breaks (timeout, cut
                          # body)
    backoff_seconds: float = 5.0  # wait before the first retry, doubled each time (a longer Retry-After wins)
    max_retry_after: float = 300.0  # stop rather than wait when the server asks for longer than this
    max_consecutive_failures: int = 3  # stop after this many PDFs in a row could not be downloaded
    timeout: float = 60.0  # seconds to wait for arXiv (to connect, and between bytes read) before retrying
    abstracts_only: bool = False  # True: skip the PDFs, keep only manifest.jsonl and abstracts.jsonl (a corpus for
                                  # notebook 03)
    user_agent: str = ""  # who is asking (arXiv wants a descriptive User-Agent); "" = the kit's, with its version

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        # The one paper whose recorded feed and PDF ship in helpers/resources/arxiv. The delay stays
        # at arXiv's 3 s: the preset must be polite whatever server it ends up talking to.
        return {"query": "", "category": "", "date_from": "", "date_to": "", "keywords": [], "authors": [],
                "id_list": ["1111.2011v2"], "max_results": 10, "page_size": 10,
                "max_retries": 2, "backoff_seconds": 1.0, "timeout": 10.0}

    def validate(self) -> None:
        """Raise ConfigError naming the parameter for any bad input, before a request is sent."""
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
        if self.user_agent and not self.user_agent.strip():
            raise ConfigError("user_agent is blank: arXiv asks every client to say who it is ('' = the kit's own)")


def _split(text: str) -> list[str]:
    """The entries of a comma-separated list, blanks dropped."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def _parse_date(text: str, name: str) -> dt.date | None:
    if not text or not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a date like 2024-04-18") from None


def is_arxiv_host(url: str) -> bool:
    """Whether ``url`` is arXiv itself (whose terms of use the politeness checks enforce)."""
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
