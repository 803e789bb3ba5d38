"""PDF → clean text for the dataset builder (notebook 02) and the pretraining corpus (notebook 03).

``read_pdf(path)`` extracts the text layer with pypdf (chosen by measurement: see
``bench/RESULTS.md``, "PDF extraction") and cleans it:

* Unicode: ligatures (``ﬁ`` → ``fi``), spacing accents that TeX fonts put before a letter
  (``Teˇsanovi´c`` → ``Tešanović``), soft hyphens, no-break and zero-width spaces, NFC;
* page furniture: running headers and footers (edge lines that repeat across pages, page
  numbers masked), bare page numbers (``12``, ``iii``, ``Page 3 of 9``), table-of-contents lines
  with dot leaders;
* back matter: the references / bibliography (a heading such as ``References``, or a numbered
  list of citations at the end with no heading, as in revtex papers) and indexes;
* lines joined into paragraphs, with words hyphenated across line breaks put back together
  (``cau-`` / ``tion`` → ``caution``, while ``one-`` / ``dimensional`` keeps its hyphen when the
  document spells it that way elsewhere).

Paragraphs are separated by a blank line in ``PdfText.text``. ``PdfText.stats`` says per document
how many pages and characters there were and what was dropped, counted by kind.

Files that cannot give text raise :class:`PdfError` naming the file and the reason: encrypted
with a password, corrupt or not a PDF, no pages, or no text layer (a scan: OCR it first).
``read_pdfs(paths)`` reads a batch, reports those by name and carries on with the rest.
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
CITATION_START_RE = re.compile(r"^\s*(?:\[(\d{1,3})\]|(\d{1,3})\.?)\s+\S")
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
def extract_pages(path: str | Path) -> tuple[list[str], dict]:
    """The raw text of every page (pypdf) and extraction facts; PdfError for unusable files."""
    import pypdf
    from pypdf.errors import DependencyError, FileNotDecryptedError

    path = Path(path)
    name = path.name
    if not path.exists():
        raise PdfError(name, f"no such file ({path})")
    if path.stat().st_size == 0:
        raise PdfError(name, "empty file (0 bytes)")
    with path.open("rb") as fh:
        head = fh.read(1024)
    if b"%PDF" not in head:
        raise PdfError(name, "not a PDF (no %PDF header)")
    facts = {"encrypted": False, "failed_pages": []}
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
    if n_pages == 0:
        raise PdfError(name, "the PDF has no pages")
    pages = []
    for i in range(n_pages):
        try:
            pages.append(reader.pages[i].extract_text() or "")
        except Exception as exc:
            facts["failed_pages"].append({"page": i + 1, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
            pages.append("")
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


def remove_page_furniture(pages: list[str], edge_lines: int = 2) -> tuple[list[list[str]], dict]:
    """Drop running headers/footers, bare page numbers and table-of-contents lines.

    A header or footer is a line among the first or last ``edge_lines`` lines of a page whose
    text, with digits masked, comes back at a page edge on at least 3 pages (2 in documents of
    fewer than 6 pages) and has 4 or more letters (so ``}`` or ``)`` closing code is kept)."""
    split = [p.splitlines() for p in pages]
    seen = collections.Counter()
    for lines in split:
        seen.update({_edge_key(lines[i]) for i in _edges(lines, edge_lines)})
    min_repeat = 3 if len(pages) >= 6 else 2
    counts = {"header_footer_lines": 0, "page_number_lines": 0, "toc_lines": 0}
    out = []
    for lines in split:
        edges = set(_edges(lines, edge_lines)) if len(pages) > 1 else set()
        kept = []
        for i, line in enumerate(lines):
            s = line.strip()
            if i in edges and PAGE_NUMBER_RE.match(s):
                counts["page_number_lines"] += 1
                continue
            key = _edge_key(s)
            if i in edges and seen[key] >= min_repeat and sum(c.isalpha() for c in key) >= 4:
                counts["header_footer_lines"] += 1
                continue
            if TOC_RE.search(s):
                counts["toc_lines"] += 1
                continue
            kept.append(line.rstrip())
        out.append(kept)
    return out, counts


def _numbered_citations_start(lines: list[str], min_entries: int = 3) -> int | None:
    """Where an unheaded numbered reference list (``1 A. Author, Journal 12, 3 (1999).``) begins,
    if one runs to the end of the document in its last 40 %."""
    lo = int(len(lines) * 0.6)
    for i in range(lo, len(lines)):
        m = CITATION_START_RE.match(lines[i])
        if not m or int(m.group(1) or m.group(2)) != 1:
            continue
        expect, entries, with_year = 2, 1, int(bool(YEAR_RE.search(lines[i])))
        entry_text = lines[i]
        ok = True
        for j in range(i + 1, len(lines)):
            m2 = CITATION_START_RE.match(lines[j])
            if m2 and int(m2.group(1) or m2.group(2)) == expect:
                with_year += int(bool(YEAR_RE.search(entry_text)))
                entries, expect, entry_text = entries + 1, expect + 1, lines[j]
            elif RESUME_HEADING_RE.match(lines[j].strip()):
                ok = False  # an appendix follows: not a trailing list
                break
            else:
                entry_text += " " + lines[j]
        with_year += int(bool(YEAR_RE.search(entry_text))) if entries > 1 else 0
        if ok and entries >= min_entries and with_year >= entries * 0.6:
            return i
    return None


def _is_heading(line: str) -> bool:
    s = line.strip()
    return 0 < len(s) <= 60 and not s.endswith((".", ",", ";"))


def drop_back_matter(lines: list[str]) -> tuple[list[str], dict]:
    """Remove the references/bibliography and index sections (counted in characters)."""
    counts = {"references_chars": 0, "index_chars": 0}
    total = sum(len(ln) for ln in lines) or 1
    out, dropping, seen_chars = [], None, 0
    for line in lines:
        s = re.sub(r"^(appendix\s+[A-Z]):", r"\1", re.sub(r"\s+\d{1,4}$", "", line.strip()), flags=re.IGNORECASE)
        far_enough = seen_chars >= 0.3 * total  # "References" in a table of contents is not the section
        seen_chars += len(line)
        if _is_heading(s) and far_enough and REF_HEADING_RE.match(s):
            dropping = "references_chars"
        elif _is_heading(s) and far_enough and INDEX_HEADING_RE.match(s):
            dropping = "index_chars"
        elif dropping and _is_heading(s) and RESUME_HEADING_RE.match(s):
            dropping = None
        if dropping:
            counts[dropping] += len(line)
        else:
            out.append(line)
    start = _numbered_citations_start(out)
    if start is not None:
        counts["references_chars"] += sum(len(ln) for ln in out[start:])
        out = out[:start]
    return out, counts


def _vocabulary(lines: list[str]) -> tuple[set[str], set[str]]:
    words, hyphenated = set(), set()
    for ln in lines:
        low = ln.lower()
        words.update(re.findall(r"[^\W\d_]+", low))
        hyphenated.update(re.findall(r"[^\W\d_]+-[^\W\d_]+", low))
    return words, hyphenated


def join_paragraphs(lines: list[str]) -> tuple[list[str], dict]:
    """Lines → paragraphs. Full-width lines are prose and are joined with spaces (words broken by a
    hyphen at a line end are rejoined); runs of short lines (headings, code, formulas) are kept
    as blocks with their line breaks. A blank line or a short line ending a sentence closes a
    paragraph."""
    counts = {"dehyphenated": 0, "hyphens_kept": 0}
    nonblank = sorted(len(ln.strip()) for ln in lines if ln.strip())
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
        s = raw.strip()
        if not s:
            flush()
            continue
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
def clean_pages(pages: list[str]) -> tuple[str, dict]:
    """Raw page texts → clean text (paragraphs separated by blank lines) and counts."""
    stats: dict = {}
    norm = []
    for p in pages:
        t, c = normalise_unicode(p)
        norm.append(t)
        for k, v in c.items():
            stats[k] = stats.get(k, 0) + v
    page_lines, c = remove_page_furniture(norm)
    stats.update(c)
    lines = _unbreak_pages(page_lines)
    lines, c = drop_back_matter(lines)
    stats.update(c)
    paras, c = join_paragraphs(lines)
    stats.update(c)
    text = "\n\n".join(paras)
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


def read_pdf(path: str | Path) -> PdfText:
    """Extract and clean one PDF. Raises PdfError (with the file name) when it gives no text."""
    path = Path(path)
    t0 = time.time()
    pages, facts = extract_pages(path)
    raw_chars = sum(len(p) for p in pages)
    text, counts = clean_pages(pages)
    if len(text.strip()) < MIN_TEXT_CHARS:
        raise PdfError(path.name, "nothing left after cleaning (only headers, page numbers or references)")
    stats = {"file": path.name, "pages": len(pages), "pages_without_text": sum(1 for p in pages if not p.strip()),
             "failed_pages": facts["failed_pages"], "encrypted": facts["encrypted"],
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
    return docs, problems


def describe_stats(s: dict) -> str:
    dropped = []
    for key, label in (("header_footer_lines", "header/footer lines"), ("page_number_lines", "page numbers"),
                       ("toc_lines", "contents lines")):
        if s.get(key):
            dropped.append(f"{s[key]} {label}")
    for key, label in (("references_chars", "references"), ("index_chars", "index")):
        if s.get(key):
            dropped.append(f"{s[key]:,} chars of {label}")
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
    return msg
