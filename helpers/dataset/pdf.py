"""PDF → clean text for the dataset builder (notebook 02) and the pretraining corpus (notebook 03).

``read_pdf(path)`` extracts the text layer with PDFium (pypdfium2; chosen by measurement on PDFs
of five makers, see ``bench/RESULTS.md``, "PDF extraction": pypdf loses the spaces of justified
lines), falling back to pypdf for a file PDFium cannot parse, and cleans it:

* extraction: superscripts and subscripts put back on their line; lines set in a monospaced font
  (code) keep their line breaks and their indentation, measured from the column's left edge;
* Unicode: ligatures (``ﬁ`` → ``fi``), spacing accents that TeX fonts put before a letter
  (``Teˇsanovi´c`` → ``Tešanović``), soft hyphens, no-break and zero-width spaces, NFC;
* page furniture: running headers and footers (edge lines that repeat across pages with digits
  masked, that carry the page's own number, or that open like many others: a section title that
  changes every few pages goes too), bare page numbers (``12``, ``iii``, ``Page 3 of 9``),
  table-of-contents lines with dot leaders;
* back matter: the references / bibliography (a heading such as ``References`` followed by
  citation-shaped lines, or an unheaded numbered list of citations that ends the document, as in
  revtex papers) and indexes;
* lines joined into paragraphs, with words hyphenated across line breaks put back together
  (``cau-`` / ``tion`` → ``caution``, while ``one-`` / ``dimensional`` keeps its hyphen when the
  document spells it that way elsewhere).

Nothing is cut on weak evidence, and no cut is unbounded: a step that would remove more than its
cap (``MAX_SHARE``: 25 % of the document for a headed reference list, 15 % for an unheaded one,
20 % for an index, 30 % for contents lines) is not made, and every cut of more than
``WARN_SHARE`` (5 %) or refused is reported in ``stats["warnings"]``, naming the document and the
share, and printed by ``read_pdfs``.

Paragraphs are separated by a blank line in ``PdfText.text``. ``PdfText.stats`` says per document
how many pages and characters there were, what was dropped (counted by kind, and as a share of the
document in ``removed_share``) and the warnings.

Files that cannot give text raise :class:`PdfError` naming the file and the reason: encrypted
with a password (files with only an owner password, RC4 or AES, are opened), corrupt or not a
PDF, no pages, or no text layer (a scan: OCR it first). ``read_pdfs(paths)`` reads a batch,
reports those by name and carries on with the rest.
"""
from __future__ import annotations

import collections
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

MIN_TEXT_CHARS = 20  # fewer non-blank characters than this in the whole file = no text layer

LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st",
             "\ufb06": "st", "\u0132": "IJ", "\u0133": "ij"}
# Spacing accents that TeX's fonts emit as separate glyphs in front of the letter they belong to.
SPACING_ACCENTS = {"\u00b4": "\u0301", "\u02c7": "\u030c", "\u00a8": "\u0308", "\u02dc": "\u0303",
                   "\u02c6": "\u0302", "\u00b8": "\u0327", "\u02da": "\u030a", "\u02d8": "\u0306",
                   "\u02dd": "\u030b"}
ACCENT_RE = re.compile("([" + "".join(SPACING_ACCENTS) + "]) ?([A-Za-z\u0131])")
INVISIBLE_RE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
SPACES_RE = re.compile("[\u00a0\u2000-\u200a\u202f\u205f\u3000]")
PAGE_NUMBER_RE = re.compile(r"^[-–—\s]*(?:page\s+)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:of|/)\s*\d{1,4})?[-–—\s]*$",
                            re.IGNORECASE)
TOC_RE = re.compile(r"(?:(?:\.\s?){4,}|\s\.{3,}|(?:\s\.){2,})\s*\d{1,4}(?:\s*[,–-]\s*\d{1,4})*\s*[A-Z]?\s*$")
REF_HEADING_RE = re.compile(r"^(?:[A-Z]\.?\s+|\d{1,2}\.?\s+|[IVX]{1,5}\.\s*|appendix\s+[A-Z]\s+)?"
                            r"(?:references?(?:\s+and\s+notes)?|bibliography|works\s+cited|literature\s+cited|"
                            r"references\s+cited|reference\s+list)\s*:?\s*$", re.IGNORECASE)
INDEX_HEADING_RE = re.compile(r"^(?:appendix\s+[A-Z]\s+)?(?:[A-Za-z]+(?:\s+(?:and|&)\s+[A-Za-z]+)?\s+)?index\s*$",
                              re.IGNORECASE)
RESUME_HEADING_RE = re.compile(r"^(?:appendix(?:\s+[A-Z0-9]+)?\b|supplementary|supplemental)", re.IGNORECASE)
CITATION_START_RE = re.compile(r"^\s*(?:\[(\d{1,3})\]|(\d{1,3})\.?)(?:\s+\S|\s*$)")  # "7" alone: PDFium's line
YEAR_RE = re.compile(r"\b(?:1[89]|20)\d\d[a-z]?\b")
HEADING_RE = re.compile(r"^(?:[IVX]{1,5}\.|\d{1,2}(?:\.\d{1,2})*\.?|appendix\s+[A-Z]|chapter\s+\d+:?)\s+[A-Z]")
SENTENCE_END = (".", "!", "?", ":", ";", "\u201d", '"', ")")


class PdfError(ValueError):
    """A PDF that gives no usable text; the message starts with the file name and says why."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass
class PdfText:
    source: str  # file name
    path: str
    text: str  # cleaned text, paragraphs separated by a blank line
    stats: dict = field(default_factory=dict)

    def row(self) -> dict:
        """The ``{"source", "text"}`` row of the PDF corpus (notebook 03 reads these)."""
        return {"source": self.source, "text": self.text}


# ----------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------
CODE_MARK = "\ue000"  # starts a line set in a monospaced font (code) until join_paragraphs; never in the output
MONO_FONT_RE = re.compile(r"mono|courier|consol|menlo|typewriter|inconsolata|cmtt|lmtt|tt\d*$", re.IGNORECASE)


def _check_file(path: Path) -> None:
    name = path.name
    if not path.exists():
        raise PdfError(name, f"no such file ({path})")
    if path.stat().st_size == 0:
        raise PdfError(name, "empty file (0 bytes)")
    with path.open("rb") as fh:
        head = fh.read(1024)
    if b"%PDF" not in head:
        raise PdfError(name, "not a PDF (no %PDF header)")


def _pdfium_page_text(page) -> str:
    """One page's text from PDFium: its lines, a superscript or subscript put back on its line,
    PDFium's line-end hyphen (U+FFFE) turned back into a hyphen for the de-hyphenation, and
    lines set in a monospaced font (code) marked with ``CODE_MARK`` and indented as far as they
    sit right of their column's left edge."""
    import ctypes

    import pypdfium2.raw as pdfium_c
    tp = page.get_textpage()
    try:
        # Character by character (PDFium's indices), so each line knows its first and last glyph.
        n_chars = tp.count_chars()
        lines: list[tuple[str, int | None, int | None]] = []
        cur: list[str] = []
        first_i = last_i = None
        i = 0
        while i < n_chars:
            u = pdfium_c.FPDFText_GetUnicode(tp, i)
            step = 1
            if 0xD800 <= u < 0xDC00 and i + 1 < n_chars:  # a surrogate pair is one character
                lo = pdfium_c.FPDFText_GetUnicode(tp, i + 1)
                ch = chr(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)) if 0xDC00 <= lo < 0xE000 else ""
                step = 2
            else:
                ch = chr(u) if u and not 0xD800 <= u < 0xE000 else ""
            if ch == "\n":
                lines.append(("".join(cur), first_i, last_i))
                cur, first_i, last_i = [], None, None
            elif ch and ch != "\r":
                cur.append(ch)
                if not ch.isspace():
                    first_i = i if first_i is None else first_i
                    last_i = i
            i += step
        lines.append(("".join(cur), first_i, last_i))
        buf, flags = ctypes.create_string_buffer(128), ctypes.c_int()
        geo = []  # (x0, glyph width, monospaced, x1, bottom, top) of each line with text
        for text, fi, li in lines:
            if fi is None:
                geo.append(None)
                continue
            first, last = tp.get_charbox(fi), tp.get_charbox(li)
            pdfium_c.FPDFText_GetFontInfo(tp, fi, buf, 128, ctypes.byref(flags))
            mono = bool(MONO_FONT_RE.search(buf.value.decode("latin-1").split("+")[-1]))
            n = max(1, len(text.strip()))
            geo.append((first[0], max(0.1, (last[2] - first[0]) / n), mono, last[2],
                        min(first[1], last[1]), max(first[3], last[3])))
        # columns' left edges: where 3 or more lines of prose start (code is indented from them)
        lefts = collections.Counter(round(g[0]) for g in geo if g and not g[2])
        margins = sorted(x for x, k in lefts.items() if k >= 3) or [min((round(g[0]) for g in geo if g), default=0)]
        widths = sorted(g[1] for (text, _, _), g in zip(lines, geo) if g and g[2] and len(text.strip()) >= 8)
        mono_w = widths[len(widths) // 2] if widths else None  # one monospaced glyph's width on this page
        out, prev = [], None
        for (text, _, _), g in zip(lines, geo):
            ln = text.strip()
            if g and prev and out and not g[2] and g[0] >= prev[3] - 1 and \
                    min(g[5], prev[5]) - max(g[4], prev[4]) > 0.3 * min(g[5] - g[4], prev[5] - prev[4]):
                # PDFium breaks a line at a superscript or subscript (a footnote mark, an exponent):
                # the piece sits in the same band, right of the previous piece
                out[-1] += ("" if len(ln) <= 3 or ln[:1] in ",.;:)" else " ") + ln
                prev = (prev[0], prev[1], prev[2], g[3], min(prev[4], g[4]), max(prev[5], g[5]))
                continue
            prev = g if g else prev
            if g and g[2] and margins:
                ref = max((m for m in margins if m <= g[0] + 1), default=margins[0])
                indent = int(round((g[0] - ref) / (mono_w or g[1])))
                ln = CODE_MARK + " " * (indent if 0 < indent <= 40 else 0) + ln
            out.append(ln)
        page_text = "\n".join(out)
    finally:
        tp.close()
    # PDFium's line-end hyphen: at a line end it is a hyphen; inside a word (PDFium already joined
    # the two halves) it stays U+FFFE until join_paragraphs decides, as for any line-end hyphen
    page_text = re.sub("[\ufffe\x02]\n", "-\n", page_text).replace("\x02", "\ufffe")
    return re.sub("[\x00-\x08\x0b-\x1f]", "", page_text)  # PDFium's codes for unmapped math glyphs


def _extract_pdfium(path: Path, facts: dict) -> list[str] | None:
    """Pages via PDFium; None when PDFium cannot parse the file (pypdf then tries)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c
    name = path.name
    try:
        doc = pdfium.PdfDocument(str(path))  # an owner-only password (no user password) opens as is
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD or "password" in str(exc).lower():
            facts["encrypted"] = True
            raise PdfError(name, "encrypted: it needs a password to open (decrypt it first, "
                                 "e.g. `qpdf --decrypt --password=... in.pdf out.pdf`)") from None
        return None
    try:
        facts["encrypted"] = pdfium_c.FPDF_GetSecurityHandlerRevision(doc) != -1
        pages = []
        for i in range(len(doc)):
            try:
                page = doc[i]
                try:
                    pages.append(_pdfium_page_text(page))
                finally:
                    page.close()
            except Exception as exc:  # a damaged page: named in the stats, the rest goes on
                facts["failed_pages"].append({"page": i + 1, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
                pages.append("")
        return pages
    finally:
        doc.close()


def _extract_pypdf(path: Path, facts: dict) -> list[str]:
    import pypdf
    from pypdf.errors import DependencyError, FileNotDecryptedError
    name = path.name
    try:
        reader = pypdf.PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            facts["encrypted"] = True
            try:
                opened = reader.decrypt("")  # many PDFs carry only an owner password and open freely
            except DependencyError as exc:
                raise PdfError(name, f"encrypted with a cipher pypdf cannot open here ({exc}); "
                                     "`pip install cryptography` and retry") from None
            if not opened:
                raise PdfError(name, "encrypted: it needs a password to open (decrypt it first, "
                                     "e.g. `qpdf --decrypt --password=... in.pdf out.pdf`)")
        n_pages = len(reader.pages)
    except PdfError:
        raise
    except FileNotDecryptedError:
        raise PdfError(name, "encrypted: it needs a password to open") from None
    except Exception as exc:  # pypdf raises many types for damaged files
        raise PdfError(name, f"corrupt or unreadable PDF ({type(exc).__name__}: {str(exc)[:200]})") from None
    pages = []
    for i in range(n_pages):
        try:
            pages.append(reader.pages[i].extract_text() or "")
        except Exception as exc:
            facts["failed_pages"].append({"page": i + 1, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
            pages.append("")
    return pages


def extract_pages(path: str | Path, engine: str = "auto") -> tuple[list[str], dict]:
    """The raw text of every page and extraction facts; PdfError for unusable files.

    ``engine``: ``"pdfium"`` (pypdfium2, the default: it loses no spaces on justified lines, see
    ``bench/RESULTS.md``), ``"pypdf"`` (pure Python; needs ``cryptography`` for AES), or
    ``"auto"``: PDFium, and pypdf for a file PDFium cannot parse (pypdf's parser is lenient
    with damaged cross-reference tables)."""
    path = Path(path)
    name = path.name
    _check_file(path)
    if engine not in ("auto", "pdfium", "pypdf"):
        raise ValueError(f"engine={engine!r}: use 'auto', 'pdfium' or 'pypdf'")
    facts = {"encrypted": False, "failed_pages": [], "extractor": engine}
    pages = None
    if engine in ("auto", "pdfium"):
        pages = _extract_pdfium(path, facts)
        facts["extractor"] = "pdfium"
        if pages is None and engine == "pdfium":
            raise PdfError(name, "corrupt or unreadable PDF (PDFium cannot parse it)")
    if pages is None:
        facts["extractor"] = "pypdf"
        pages = _extract_pypdf(path, facts)
    n_pages = len(pages)
    if n_pages == 0:
        raise PdfError(name, "the PDF has no pages")
    if len(facts["failed_pages"]) == n_pages:
        raise PdfError(name, f"corrupt: no page could be read ({facts['failed_pages'][0]['error']})")
    if sum(len(p.strip()) for p in pages) < MIN_TEXT_CHARS:
        raise PdfError(name, f"no text layer on any of its {n_pages} page(s): an image-only or scanned PDF; "
                             "run OCR on it first (e.g. ocrmypdf)")
    return pages, facts


# ----------------------------------------------------------------------------------------------
# Cleaning steps (each returns its result and counts, for the statistics)
# ----------------------------------------------------------------------------------------------
def normalise_unicode(text: str) -> tuple[str, dict]:
    """Ligatures, TeX spacing accents, invisible characters and odd spaces; then NFC."""
    counts = {"ligatures": 0, "accents_composed": 0, "invisible_chars": 0, "replacement_chars": 0}
    for lig, repl in LIGATURES.items():
        n = text.count(lig)
        if n:
            counts["ligatures"] += n
            text = text.replace(lig, repl)
    # Alphabetic presentation forms and full-width letters: compatibility-decompose them.
    text = re.sub("[\ufb00-\ufb4f\uff01-\uff5e]", lambda m: unicodedata.normalize("NFKC", m.group()), text)

    def compose(m):
        counts["accents_composed"] += 1
        return m.group(2) + SPACING_ACCENTS[m.group(1)]
    text = ACCENT_RE.sub(compose, text)
    text, n = INVISIBLE_RE.subn("", text)
    counts["invisible_chars"] = n
    counts["replacement_chars"] = text.count("\ufffd")
    text = text.replace("\ufffd", "")
    text = SPACES_RE.sub(" ", text)
    return unicodedata.normalize("NFC", text), counts


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
    for i, lines in enumerate(split):
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
            if drop_toc and TOC_RE.search(s):
                counts["toc_lines"] += 1
                counts["toc_chars"] += len(s)
                continue
            kept.append(line.rstrip())
        out.append(kept)
    return out, counts


# --- back matter ----------------------------------------------------------------------------------
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
                    or _looks_like_heading(s):
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


def drop_back_matter(lines: list[str]) -> tuple[list[str], dict]:
    """Remove the references/bibliography and index sections (counted in characters).

    Each cut needs strong evidence (see ``_section_end`` and ``_numbered_citations_start``) and is
    bounded: one that would take more than ``MAX_SHARE`` of the document is not made. Every cut of
    more than ``WARN_SHARE``, and every cut refused, is described in ``counts["warnings"]``."""
    counts: dict = {"references_chars": 0, "index_chars": 0, "warnings": []}
    total = sum(len(ln) for ln in lines) or 1
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
            counts["warnings"].append(f"kept a section headed {s!r}: only {evidence} of its {len(body)} lines look "
                                      f"like {'citations' if kind == 'references_chars' else 'index entries'}")
        elif chars > MAX_SHARE[kind] * total:
            counts["warnings"].append(f"kept {chars:,} chars ({chars / total:.0%} of the document) under the heading "
                                      f"{s!r}: more than the {MAX_SHARE[kind]:.0%} a {label} section may take")
        else:
            for j in range(i, end):
                drop[j] = True
            counts[kind] += chars
            if chars > WARN_SHARE * total:
                counts["warnings"].append(f"dropped {chars:,} chars ({chars / total:.0%} of the document) as {label} "
                                          f"(heading {s!r}, {evidence} of {len(body)} lines shaped like it)")
        seen_chars += sum(len(ln) for ln in lines[i:end])
        i = max(end, i + 1)
    out = [ln for ln, d in zip(lines, drop) if not d]
    start = _numbered_citations_start(out)
    if start is not None:
        chars = sum(len(ln) for ln in out[start:])
        if chars > MAX_SHARE["numbered_references"] * total:
            counts["warnings"].append(f"kept {chars:,} chars ({chars / total:.0%} of the document) that end it as a "
                                      f"numbered list of citations: more than the {MAX_SHARE['numbered_references']:.0%} "
                                      "an unheaded reference list may take")
        else:
            counts["references_chars"] += chars
            if chars > WARN_SHARE * total:
                counts["warnings"].append(f"dropped {chars:,} chars ({chars / total:.0%} of the document) as an unheaded "
                                          "numbered reference list at its end")
            out = out[:start]
    return out, counts


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
        elif kind == "prose" and not cur[-1].endswith(SENTENCE_END) and not _looks_like_heading(s):
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


def _looks_like_heading(s: str) -> bool:
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


# ----------------------------------------------------------------------------------------------
# Whole documents
# ----------------------------------------------------------------------------------------------
STEP_LABELS = {"header_footer_lines": "running headers/footers and page numbers", "toc_lines": "contents lines", "references_chars": "references", "index_chars": "index"}


def clean_pages(pages: list[str], name: str = "document") -> tuple[str, dict]:
    """Raw page texts → clean text (paragraphs separated by blank lines) and counts.

    ``counts["removed_share"]`` says which share of the document's characters each removing step
    took; ``counts["warnings"]`` (each starting with ``name``) names every step that took more
    than ``WARN_SHARE`` and every cut refused for taking more than its cap."""
    stats: dict = {}
    norm = []
    for p in pages:
        t, c = normalise_unicode(p)
        norm.append(t)
        for k, v in c.items():
            stats[k] = stats.get(k, 0) + v
    total = sum(len(p) for p in norm) or 1
    warnings: list[str] = []
    page_lines, c = remove_page_furniture(norm)
    if c["toc_chars"] > MAX_SHARE["toc_lines"] * total:
        # that many dot-leader lines are tables of data, not a table of contents: keep them
        warnings.append(f"kept {c['toc_lines']} lines with dot leaders ({c['toc_chars'] / total:.0%} of the document): "
                        f"more than the {MAX_SHARE['toc_lines']:.0%} a table of contents may take")
        page_lines, c = remove_page_furniture(norm, drop_toc=False)
    removed = {k: 0 for k in STEP_LABELS}
    removed["toc_lines"], removed["header_footer_lines"] = c.pop("toc_chars"), c.pop("furniture_chars")
    stats.update(c)
    lines = _unbreak_pages(page_lines)
    lines, c = drop_back_matter(lines)
    warnings += c.pop("warnings")
    stats.update(c)
    removed["references_chars"], removed["index_chars"] = c["references_chars"], c["index_chars"]
    paras, c = join_paragraphs(lines)
    stats.update(c)
    text = "\n\n".join(paras).replace(CODE_MARK, "")
    share = {k: round(v / total, 4) for k, v in removed.items() if v}
    for k in ("header_footer_lines", "toc_lines"):
        if share.get(k, 0) > WARN_SHARE:
            warnings.append(f"dropped {removed[k]:,} chars ({share[k]:.0%} of the document) as {STEP_LABELS[k]}")
    if len(text) < 0.5 * total:
        warnings.append(f"the clean text is {len(text):,} of {total:,} chars ({len(text) / total:.0%}): check it")
    stats["removed_share"] = share
    stats["warnings"] = [f"{name}: {w}" for w in warnings]
    return text, stats


def _unbreak_pages(page_lines: list[list[str]]) -> list[str]:
    """Concatenate the pages' lines; a paragraph that runs over a page break stays one paragraph,
    otherwise the break becomes a blank line."""
    out: list[str] = []
    for lines in page_lines:
        if out and out[-1].strip() and lines and lines[0].strip():
            prev, first = out[-1].strip(), lines[0].strip()
            if prev.endswith(SENTENCE_END) and first[:1].isupper():
                out.append("")
        elif out and out[-1].strip():
            out.append("")
        out.extend(lines)
    return out


def read_pdf(path: str | Path, engine: str = "auto") -> PdfText:
    """Extract and clean one PDF. Raises PdfError (with the file name) when it gives no text."""
    path = Path(path)
    t0 = time.time()
    pages, facts = extract_pages(path, engine)
    raw_chars = sum(len(p) for p in pages)
    text, counts = clean_pages(pages, path.name)
    if len(text.strip()) < MIN_TEXT_CHARS:
        raise PdfError(path.name, "nothing left after cleaning (only headers, page numbers or references)")
    stats = {"file": path.name, "pages": len(pages), "pages_without_text": sum(1 for p in pages if not p.strip()),
             "failed_pages": facts["failed_pages"], "encrypted": facts["encrypted"], "extractor": facts["extractor"],
             "chars_extracted": raw_chars, "chars_clean": len(text), "paragraphs": text.count("\n\n") + 1,
             **counts, "seconds": round(time.time() - t0, 2)}
    return PdfText(source=path.name, path=str(path), text=text, stats=stats)


def find_pdfs(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".pdf" and p.is_file())


def read_pdfs(paths: Iterable[str | Path], verbose: bool = True) -> tuple[list[PdfText], list[dict]]:
    """Read many PDFs. Returns ``(documents, problems)``; a file that fails is reported by name in
    ``problems`` (``{"file", "reason"}``) and the batch goes on."""
    docs, problems = [], []
    for p in paths:
        try:
            doc = read_pdf(p)
        except PdfError as exc:
            problems.append({"file": exc.file, "path": str(p), "reason": exc.reason})
            if verbose:
                print(f"SKIPPED {exc}", flush=True)
            continue
        docs.append(doc)
        if verbose:
            print(f"{doc.source}: {describe_stats(doc.stats)}", flush=True)
            for w in doc.stats.get("warnings", []):
                print(f"WARNING {w}", flush=True)
    return docs, problems


def describe_stats(s: dict) -> str:
    dropped = []
    for key, label in (("header_footer_lines", "header/footer lines"), ("page_number_lines", "page numbers"),
                       ("toc_lines", "contents lines")):
        if s.get(key):
            dropped.append(f"{s[key]} {label}")
    for key, label in (("references_chars", "references"), ("index_chars", "index")):
        if s.get(key):
            share = s.get("removed_share", {}).get(key)
            dropped.append(f"{s[key]:,} chars of {label}" + (f" ({share:.1%})" if share else ""))
    fixes = []
    for key, label in (("dehyphenated", "words de-hyphenated"), ("ligatures", "ligatures"),
                       ("accents_composed", "accents composed")):
        if s.get(key):
            fixes.append(f"{s[key]} {label}")
    msg = f"{s['pages']} pages, {s['chars_extracted']:,} → {s['chars_clean']:,} chars"
    if s.get("pages_without_text"):
        msg += f", {s['pages_without_text']} page(s) without text"
    if s.get("failed_pages"):
        msg += f", {len(s['failed_pages'])} page(s) unreadable"
    if dropped:
        msg += "; dropped " + ", ".join(dropped)
    if fixes:
        msg += "; " + ", ".join(fixes)
    if s.get("warnings"):
        msg += f"; {len(s['warnings'])} warning(s)"
    return msg
