"""Page furniture: running headers and footers, bare page numbers and table-of-contents lines, found
by what repeats at the pages' edges (see ``remove_page_furniture``)."""
from __future__ import annotations

import collections
import re

PAGE_NUMBER_RE = re.compile(r"^[-–—\s]*(?:page\s+)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:of|/)\s*\d{1,4})?[-–—\s]*$",
                            re.IGNORECASE)
CONTENTS_HEADING_RE = re.compile(r"^(?:table\s+of\s+)?contents$|^inhalt(?:sverzeichnis)?$|^sommaire$", re.IGNORECASE)
TOC_BARE_RE = re.compile(r"^(?:(?:\d{1,2}(?:\.\d{1,2})*|[A-Z](?:\.\d{1,2})*|[IVX]{1,5})\.?\s+)?"
                         r"[^\W\d_].{0,90}?\s(\d{1,4}|[ivxlc]{1,6})$")
TOC_NUMBERED_RE = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2})*|[A-Z](?:\.\d{1,2})+|[IVX]{1,5}\.|appendix)\s", re.IGNORECASE)
TOC_RE = re.compile(r"(?:(?:\.\s?){4,}|\s\.{3,}|(?:\s\.){2,})\s*\d{1,4}(?:\s*[,–-]\s*\d{1,4})*\s*[A-Z]?\s*$")


def _edge_key(line: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", line.strip().lower()))


def _edges(lines: list[str], k: int) -> list[int]:
    idx = [i for i, ln in enumerate(lines) if ln.strip()]
    return sorted(set(idx[:k] + idx[-k:]))


def _prefix(line: str) -> str | None:
    """The first two words of an edge line (digits masked), when they have 6 letters or more."""
    words = _edge_key(line).split()[:2]
    return " ".join(words) if len(words) == 2 and sum(c.isalpha() for c in "".join(words)) >= 6 else None


EDGE_NUMBER_RE = re.compile(r"^(\d{1,4})\s+(\S.*)$|^(.*\S)\s+(\d{1,4})$")


def _folio_offset(split: list[list[str]], edge_lines: int) -> int | None:
    """The document's offset between printed page numbers and page indices, when running heads
    carry them (``3 Section title`` / ``Section title 3`` with 3 = page index + offset on many pages)."""
    offsets = collections.Counter()
    for i, lines in enumerate(split):
        seen = set()
        for j in _edges(lines, edge_lines):
            m = EDGE_NUMBER_RE.match(lines[j].strip())
            if m and len(lines[j].split()) <= 14:
                seen.add(int(m.group(1) or m.group(4)) - i)
        offsets.update(seen)
    if not offsets:
        return None
    off, n = offsets.most_common(1)[0]
    return off if n >= max(3, 0.25 * len(split)) else None


def leaderless_contents(lines: list[str], continued: bool = False) -> tuple[set[int], bool]:
    """The indices of a page's contents lines set without dot leaders (``1.2 Section title 17``)
    and its ``Contents`` heading, and whether the contents run on to the next page.

    A contents line here is a title ending in a page number; a block of them counts when it
    follows a ``Contents`` heading on the page (or ``continued`` from the page before), holds at
    least 3 such lines, most of them numbered like sections, with page numbers that never go
    down. Prose lines that happen to end in a number break the block."""
    found, in_block, last_page, block, numbered = set(), continued, 0, [], 0
    heading = None
    for j, line in enumerate(lines):
        s = line.strip()
        if not s:
            continue
        if CONTENTS_HEADING_RE.match(s):
            heading, in_block, last_page, block, numbered = j, True, 0, [], 0
            continue
        m = TOC_BARE_RE.match(s) if in_block and len(s) <= 100 else None
        page = int(m.group(1)) if m and m.group(1).isdigit() else None
        if m and (page is None or page >= last_page):
            block.append(j)
            numbered += bool(TOC_NUMBERED_RE.match(s))
            last_page = page if page is not None else last_page
            continue
        if in_block and len(block) >= 3 and numbered >= 0.6 * len(block):
            found.update(block + ([heading] if heading is not None else []))
        in_block, block, numbered, heading = False, [], 0, None
    ends_in_block = in_block and len(block) >= 3 and numbered >= 0.6 * len(block)
    if ends_in_block:
        found.update(block + ([heading] if heading is not None else []))
    return found, ends_in_block


def remove_page_furniture(pages: list[str], edge_lines: int = 2, drop_toc: bool = True) -> tuple[list[list[str]], dict]:
    """Drop running headers/footers, bare page numbers and table-of-contents lines.

    A header or footer is a line among the first or last ``edge_lines`` lines of a page with 4 or
    more letters (so ``}`` or ``)`` closing code is kept) that either
    * comes back, digits masked, at a page edge on at least 3 pages (2 in documents of fewer than
      6 pages, or 2 pages at most 4 apart: a section title that changes every few pages), or
    * carries the page's own printed number (``2.3 Section title 17`` where 17 - page index is the
      offset most running heads of the document share), whatever its title, or
    * is at most 60 characters long and opens with the same two words as short edge lines on 30 %
      of the pages or more (``Author et al. · <section title>``)."""
    split = [p.splitlines() for p in pages]
    seen = collections.Counter()
    where = collections.defaultdict(list)
    for i, lines in enumerate(split):
        for key in {_edge_key(lines[j]) for j in _edges(lines, edge_lines)}:
            seen[key] += 1
            where[key].append(i)
    min_repeat = 3 if len(pages) >= 6 else 2
    near = {k for k, ps in where.items() if any(b - a <= 4 for a, b in zip(ps, ps[1:]))}
    # "Author et al. · <section>": the same opening words at a page edge on many pages, short lines
    # (the very first or very last line of a page only, counted per side)
    prefixes = collections.Counter()
    for lines in split:
        outer = _edges(lines, 1)
        prefixes.update({(side, _prefix(lines[j])) for side, j in zip(("top", "bottom"), outer[:1] + outer[-1:])
                         if len(lines[j].strip()) <= 60})
    common = {k for k, n in prefixes.items() if n >= max(3, 0.3 * len(pages)) and k[1]}
    folio = _folio_offset(split, edge_lines) if len(pages) >= 3 else None
    counts = {"header_footer_lines": 0, "page_number_lines": 0, "toc_lines": 0, "furniture_chars": 0, "toc_chars": 0}
    out = []
    continued = False
    for i, lines in enumerate(split):
        contents, continued = leaderless_contents(lines, continued) if drop_toc else (set(), False)
        edges = set(_edges(lines, edge_lines)) if len(pages) > 1 else set()
        outer = _edges(lines, 1)
        side_of = {outer[0]: "top", outer[-1]: "bottom"} if outer and len(pages) > 1 else {}
        kept = []
        for j, line in enumerate(lines):
            s = line.strip()
            if j in edges and PAGE_NUMBER_RE.match(s):
                counts["page_number_lines"] += 1
                counts["furniture_chars"] += len(s)
                continue
            key = _edge_key(s)
            if j in edges and sum(c.isalpha() for c in key) >= 4:
                m = EDGE_NUMBER_RE.match(s)
                with_folio = folio is not None and m and int(m.group(1) or m.group(4)) - i == folio \
                    and len(s.split()) <= 14
                if seen[key] >= min_repeat or (seen[key] >= 2 and key in near) or with_folio or \
                        (j in side_of and len(s) <= 60 and (side_of[j], _prefix(s)) in common):
                    counts["header_footer_lines"] += 1
                    counts["furniture_chars"] += len(s)
                    continue
            if drop_toc and (TOC_RE.search(s) or j in contents):
                counts["toc_lines"] += 1
                counts["toc_chars"] += len(s)
                continue
            kept.append(line.rstrip())
        out.append(kept)
    return out, counts
