"""Lines → paragraphs: prose lines joined with spaces, words hyphenated across line ends put back
together (or kept hyphenated where the document spells them so), short-line blocks and code blocks
kept with their line breaks."""
from __future__ import annotations

import re

from helpers.dataset.pdf_layout import CODE_MARK

HEADING_RE = re.compile(r"^(?:[IVX]{1,5}\.|\d{1,2}(?:\.\d{1,2})*\.?|appendix\s+[A-Z]|chapter\s+\d+:?)\s+[A-Z]")
SENTENCE_END = (".", "!", "?", ":", ";", "\u201d", '"', ")")


def _vocabulary(lines: list[str]) -> tuple[set[str], set[str]]:
    words, hyphenated = set(), set()
    for ln in lines:
        low = ln.lower()
        words.update(re.findall(r"[^\W\d_]+", low))
        hyphenated.update(re.findall(r"[^\W\d_]+-[^\W\d_]+", low))
    return words, hyphenated


SOFT_HYPHEN_RE = re.compile("([^\\W\\d_]+)\ufffe([^\\W\\d_]+)")


def _resolve_soft_hyphens(line: str, words: set[str], hyphenated: set[str], counts: dict) -> str:
    """``free\ufffedom`` (PDFium's mark for a word it joined across a line-end hyphen) → ``freedom``;
    ``one\ufffedimensional`` keeps its hyphen when the document spells it so elsewhere."""
    def fix(m):
        a, b = m.group(1), m.group(2)
        if f"{a}-{b}".lower() in hyphenated and (a + b).lower() not in words:
            counts["hyphens_kept"] += 1
            return f"{a}-{b}"
        counts["dehyphenated"] += 1
        return a + b
    return SOFT_HYPHEN_RE.sub(fix, line).replace("\ufffe", "-")


def join_paragraphs(lines: list[str]) -> tuple[list[str], dict]:
    """Lines → paragraphs. Full-width lines are prose and are joined with spaces (words broken by a
    hyphen at a line end are rejoined); runs of short lines (headings, formulas) are kept as
    blocks with their line breaks, and lines set in a monospaced font (code, marked by the
    extraction) as code blocks with their line breaks and indentation. A blank line or a short
    line ending a sentence closes a paragraph."""
    counts = {"dehyphenated": 0, "hyphens_kept": 0}
    nonblank = sorted(len(ln.strip().lstrip(CODE_MARK)) for ln in lines if ln.strip().lstrip(CODE_MARK))
    if not nonblank:
        return [], counts
    typical = nonblank[int(len(nonblank) * 0.8)] if len(nonblank) >= 5 else nonblank[-1]
    short_len = 0.6 * typical
    words, hyphenated = _vocabulary(lines)
    paras: list[str] = []
    cur: list[str] = []
    kind = None

    def flush():
        nonlocal cur, kind
        if cur:
            paras.append(_join_prose(cur, words, hyphenated, counts) if kind == "prose" else "\n".join(cur))
        cur, kind = [], None

    for raw in lines:
        if "\ufffe" in raw:
            raw = _resolve_soft_hyphens(raw, words, hyphenated, counts)
        if raw.startswith(CODE_MARK):
            code = raw[len(CODE_MARK):].rstrip()
            if not code.strip():
                continue
            if kind != "code":
                flush()
            cur.append(code)
            kind = "code"
            continue
        s = raw.strip()
        if not s:
            if kind != "code":  # a blank line inside a code block is the code's own
                flush()
            elif cur:
                cur.append("")
            continue
        if kind == "code":
            while cur and not cur[-1]:
                cur.pop()
            flush()
        if len(s) >= short_len:
            if kind == "block":
                flush()
            cur.append(s)
            kind = "prose"
            if s.endswith(SENTENCE_END) and len(s) < 0.85 * typical:
                flush()
        elif kind == "prose" and not cur[-1].endswith(SENTENCE_END) and not looks_like_heading(s):
            cur.append(s)  # the short last line of a paragraph
            flush()
        else:
            if kind == "prose":
                flush()
            cur.append(s)
            kind = "block"
    while kind == "code" and cur and not cur[-1]:
        cur.pop()
    flush()
    return [p for p in paras if p.strip()], counts


def looks_like_heading(s: str) -> bool:
    """``V. DISCUSSION``, ``ACKNOWLEDGMENTS``, ``1.8 R commands``, ``Appendix B Invoking R``."""
    letters = [c for c in s if c.isalpha()]
    return (len(letters) >= 4 and all(c.isupper() for c in letters)) or bool(HEADING_RE.match(s))


def _join_prose(lines: list[str], words: set[str], hyphenated: set[str], counts: dict) -> str:
    text = lines[0]
    for nxt in lines[1:]:
        m = re.search(r"([^\W\d_]+)-$", text)
        n = re.match(r"([^\W\d_]+)", nxt)
        if m and n and nxt[0].islower():
            a, b = m.group(1), n.group(1)
            joined = (a + b).lower()
            if f"{a}-{b}".lower() in hyphenated and joined not in words:
                counts["hyphens_kept"] += 1
                text += nxt  # a real compound: keep the hyphen
            else:
                counts["dehyphenated"] += 1
                text = text[:-1] + nxt
        elif text.endswith("-") and not text.endswith(" -"):
            text += nxt  # "Hopkins-" + "Princeton"
        else:
            text += " " + nxt
    return re.sub(r"[ \t]{2,}", " ", text)
