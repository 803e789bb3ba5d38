"""Back matter: the references / bibliography and the index, cut only on strong evidence and never
beyond a cap (``MAX_SHARE``); large and refused cuts are reported as warnings."""
from __future__ import annotations

import re

from helpers.dataset.pdf_paragraphs import looks_like_heading

REF_HEADING_RE = re.compile(r"^(?:[A-Z]\.?\s+|\d{1,2}\.?\s+|[IVX]{1,5}\.\s*|appendix\s+[A-Z]\s+)?"
                            r"(?:references?(?:\s+and\s+notes)?|bibliography|works\s+cited|literature\s+cited|"
                            r"references\s+cited|reference\s+list)\s*:?\s*$", re.IGNORECASE)
INDEX_HEADING_RE = re.compile(r"^(?:appendix\s+[A-Z]\s+)?(?:[A-Za-z]+(?:\s+(?:and|&)\s+[A-Za-z]+)?\s+)?index\s*$",
                              re.IGNORECASE)
RESUME_HEADING_RE = re.compile(r"^(?:appendix(?:\s+[A-Z0-9]+)?\b|supplementary|supplemental)", re.IGNORECASE)
CITATION_START_RE = re.compile(r"^\s*(?:\[(\d{1,3})\]|(\d{1,3})\.?)(?:\s+\S|\s*$)")  # "7" alone: PDFium's line
YEAR_RE = re.compile(r"\b(?:1[89]|20)\d\d[a-z]?\b")

# A cut that removes more than WARN_SHARE of a document is reported as a warning naming it; one
# that would remove more than its cap is not made at all (the text is kept, and the warning says so).
WARN_SHARE = 0.05
MAX_SHARE = {"references_chars": 0.25, "index_chars": 0.20, "numbered_references": 0.15, "toc_lines": 0.30}
AUTHOR_RE = re.compile(r"\b[A-Z]\.(?:\s?-?[A-Z]\.)*\s?[A-Z][\w'’\-]+|\b[A-Z][\w'’\-]+,\s+[A-Z]\.|\bet\s+al\b")
VENUE_RE = re.compile(r"\b\d{1,4}\s*,\s*[A-Z]?\d{1,6}\b|\bpp?\.\s*\d|\b(?:vol|no)\.\s*\d|Press\b|Journal|Proc\.|"
                      r"Rev\.|Trans\.|Conf|arXiv|doi|ISBN|https?://|Univ|Springer|Wiley|Elsevier|edition|"
                      r"Verlag|unpublished|in press|Lett\.|Phys\.", re.IGNORECASE)
INDEX_LINE_RE = re.compile(r"(?:[,\s]\d{1,4}(?:\s*[-–]\s*\d{1,4})?\s*$)|\bsee(?:\s+also)?\b", re.IGNORECASE)
URL_RE = re.compile(r"https?://|ftp://|\bdoi:|\bwww\.")
ENTRY_MAX_LINES = 6  # a reference entry wraps over a few lines at most
ENTRY_MAX_CHARS = 600
MIN_JUDGED_LINES = 5  # a kept section shorter than this is not worth a warning


def citation_like(entry: str) -> bool:
    """An entry shaped like a citation: two of a year, author names with initials, a venue
    (journal, publisher, volume and page, DOI, URL)."""
    return bool(YEAR_RE.search(entry)) + bool(AUTHOR_RE.search(entry)) + bool(VENUE_RE.search(entry)) >= 2


def _numbered_citations_start(lines: list[str], min_entries: int = 3) -> int | None:
    """Where an unheaded numbered reference list (``1 A. Author, Journal 12, 3 (1999).``) begins.

    Strong evidence only: entries numbered 1, 2, 3, ... without a gap, each a few lines long
    (``ENTRY_MAX_LINES``), at least 70 % of them shaped like citations, running to the very end of
    the document and starting in its last 40 %. A numbered list of prose, or lines that merely
    begin with digits, fail one of these."""
    lo = int(len(lines) * 0.6)
    for i in range(lo, len(lines)):
        m = CITATION_START_RE.match(lines[i])
        if not m or int(m.group(1) or m.group(2)) != 1:
            continue
        entries, cur, n_lines = [], [lines[i]], 1
        expect, ok = 2, True
        for j in range(i + 1, len(lines)):
            s = lines[j].strip()
            if not s:
                continue
            m2 = CITATION_START_RE.match(lines[j])
            if m2 and int(m2.group(1) or m2.group(2)) == expect:
                entries.append(" ".join(cur))
                cur, n_lines, expect = [lines[j]], 1, expect + 1
                continue
            n_lines += 1
            cur.append(s)
            if n_lines > ENTRY_MAX_LINES or sum(map(len, cur)) > ENTRY_MAX_CHARS or RESUME_HEADING_RE.match(s) \
                    or looks_like_heading(s):
                ok = False  # prose, an appendix or a heading follows: not a trailing list of references
                break
        if not ok:
            continue
        entries.append(" ".join(cur))
        if len(entries) >= min_entries and sum(map(citation_like, entries)) >= 0.7 * len(entries):
            return i
    return None


def _is_heading(line: str) -> bool:
    s = line.strip()
    return 0 < len(s) <= 60 and not s.endswith((".", ",", ";"))


def _section_end(lines: list[str], start: int, kind: str) -> tuple[int, int]:
    """Where a references or index section that starts at ``start`` (its heading) ends, and how
    many of its lines carry evidence (citation-shaped or index-shaped). It ends at an appendix /
    supplementary heading, or before a stretch of 12 non-blank lines with no evidence (the text
    went back to prose: a chapter's references are not the rest of the book)."""
    evidence, since, last_ev = 0, 0, start
    for j in range(start + 1, len(lines)):
        s = lines[j].strip()
        if not s:
            continue
        if _is_heading(s) and RESUME_HEADING_RE.match(s):
            return j, evidence
        ok = (YEAR_RE.search(s) or AUTHOR_RE.search(s) or CITATION_START_RE.match(s) or URL_RE.search(s)) \
            if kind == "references_chars" \
            else INDEX_LINE_RE.search(s) or len(s) <= 25
        if ok:
            evidence += 1
            since, last_ev = 0, j
        else:
            since += 1
            if since >= 12:
                end = last_ev + 1
                while end < j and lines[end].strip() and not _is_heading(lines[end]) and end - last_ev <= 2:
                    end += 1  # the last entry's continuation lines
                return end, evidence
    return len(lines), evidence


def drop_back_matter(lines: list[str], total: int | None = None) -> tuple[list[str], dict]:
    """Remove the references/bibliography and index sections (counted in characters).

    Each cut needs strong evidence (see ``_section_end`` and ``_numbered_citations_start``) and is
    bounded: one that would take more than ``MAX_SHARE`` of the document is not made. Every cut of
    more than ``WARN_SHARE``, and every cut refused, is described in ``counts["warnings"]``;
    shares are of ``total`` characters (the whole document's, as its stats count them; by default
    those of ``lines``). A heading with too few lines after it to judge is kept without a word."""
    counts: dict = {"references_chars": 0, "index_chars": 0, "warnings": []}
    total = total or sum(len(ln) for ln in lines) or 1
    drop = [False] * len(lines)
    seen_chars, i = 0, 0
    while i < len(lines):
        line = lines[i]
        s = re.sub(r"^(appendix\s+[A-Z]):", r"\1", re.sub(r"\s+\d{1,4}$", "", line.strip()), flags=re.IGNORECASE)
        far_enough = seen_chars >= 0.3 * total  # "References" in a table of contents is not the section
        kind = None
        if _is_heading(s) and far_enough and REF_HEADING_RE.match(s):
            kind = "references_chars"
        elif _is_heading(s) and far_enough and INDEX_HEADING_RE.match(s):
            kind = "index_chars"
        if kind is None:
            seen_chars += len(line)
            i += 1
            continue
        end, evidence = _section_end(lines, i, kind)
        body = [ln for ln in lines[i + 1:end] if ln.strip()]
        chars = sum(len(ln) for ln in lines[i:end])
        label = "references" if kind == "references_chars" else "index"
        if not body or evidence < max(1.0, 0.3 * len(body)):
            if len(body) >= MIN_JUDGED_LINES:  # a heading alone, or over a few lines, is no news
                counts["warnings"].append(f"kept a section headed {s!r}: only {evidence} of its {len(body)} lines "
                                          f"look like {'citations' if kind == 'references_chars' else 'index entries'}")
        elif chars > MAX_SHARE[kind] * total:
            counts["warnings"].append(f"kept {chars:,} chars ({chars / total:.1%} of the document) under the heading "
                                      f"{s!r}: more than the {MAX_SHARE[kind]:.0%} a {label} section may take")
        else:
            for j in range(i, end):
                drop[j] = True
            counts[kind] += chars
            if chars > WARN_SHARE * total:
                counts["warnings"].append(f"dropped {chars:,} chars ({chars / total:.1%} of the document) as {label} "
                                          f"(heading {s!r}, {evidence} of {len(body)} lines shaped like it)")
        seen_chars += sum(len(ln) for ln in lines[i:end])
        i = max(end, i + 1)
    out = [ln for ln, d in zip(lines, drop) if not d]
    start = _numbered_citations_start(out)
    if start is not None:
        chars = sum(len(ln) for ln in out[start:])
        if chars > MAX_SHARE["numbered_references"] * total:
            counts["warnings"].append(f"kept {chars:,} chars ({chars / total:.1%} of the document) that end it as a "
                                      "numbered list of citations: more than the "
                                      f"{MAX_SHARE['numbered_references']:.0%} an unheaded reference list may take")
        else:
            counts["references_chars"] += chars
            if chars > WARN_SHARE * total:
                counts["warnings"].append(f"dropped {chars:,} chars ({chars / total:.1%} of the document) as an "
                                          "unheaded numbered reference list at its end")
            out = out[:start]
    return out, counts
