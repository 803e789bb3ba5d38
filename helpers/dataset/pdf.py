"""PDF → clean text for the dataset builder (notebook 02) and the pretraining corpus (notebook 03).

``read_pdf(path)`` extracts the text layer with PDFium (pypdfium2; chosen by measurement on PDFs
of fourteen makers, see ``bench/RESULTS.md``, "PDF extraction"), falling back to pypdf for a file
PDFium cannot parse, and cleans it:

* extraction: groff's content streams repaired where PDFium misreads them; word spaces decided
  from the glyphs' positions where PDFium's guess is wrong; superscripts and subscripts put back
  on their line; lines set in a monospaced font (its FixedPitch flag or its name: code) keep
  their line breaks and their indentation, measured from the column's left edge;
* Unicode: ligatures (``ﬁ`` → ``fi``), spacing accents that TeX fonts put before a letter
  (``Teˇsanovi´c`` → ``Tešanović``), soft hyphens, no-break and zero-width spaces, NFC;
* page furniture: running headers and footers (edge lines that repeat across pages with digits
  masked, that carry the page's own number, or that open like many others: a section title that
  changes every few pages goes too), bare page numbers (``12``, ``iii``, ``Page 3 of 9``),
  table-of-contents lines (with dot leaders, or after a ``Contents`` heading without them);
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
share (of the same total as ``removed_share``), and printed by ``read_pdfs``. A document whose
text lost its word spaces (``LONG_TOKEN_WARN`` of it in 30+ letter runs) is warned about by name.

Paragraphs are separated by a blank line in ``PdfText.text``. ``PdfText.stats`` says per document
how many pages and characters there were, what was dropped (counted by kind, and as a share of the
document in ``removed_share``) and the warnings.

Files that cannot give text raise :class:`PdfError` naming the file and the reason: encrypted
with a password (files with only an owner password, RC4 or AES, are opened), corrupt or not a
PDF, no pages, no text layer, or mostly scanned: more than half of its pages are images with
at most a stray line of text (``SCANNED_PAGE_CHARS``), so what text it has (a stamp, a URL, one
page) is not the document; OCR it first. A minority of scanned pages is a warning naming them.
``read_pdfs(paths)`` reads a batch, reports those by name and carries on with the rest.

This module ties the steps together; each lives in its own module: ``pdf_extract`` (files → page
texts), ``pdf_repair`` (streams PDFium misreads), ``pdf_layout`` (a PDFium page's lines),
``pdf_unicode``, ``pdf_furniture`` (headers, footers, page numbers, contents lines),
``pdf_backmatter`` (references, index) and ``pdf_paragraphs`` (lines → paragraphs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from helpers.dataset.pdf_backmatter import MAX_SHARE, WARN_SHARE, drop_back_matter
from helpers.dataset.pdf_extract import MIN_TEXT_CHARS, SCANNED_PAGE_CHARS, PdfError, extract_pages
from helpers.dataset.pdf_furniture import remove_page_furniture
from helpers.dataset.pdf_layout import CODE_MARK
from helpers.dataset.pdf_paragraphs import SENTENCE_END, join_paragraphs
from helpers.dataset.pdf_unicode import normalise_unicode


@dataclass
class PdfText:
    """One PDF's clean text and its statistics (what was extracted, dropped and warned about)."""
    source: str  # file name
    path: str
    text: str  # cleaned text, paragraphs separated by a blank line
    stats: dict = field(default_factory=dict)

    def row(self) -> dict:
        """The ``{"source", "text"}`` row of the PDF corpus (notebook 03 reads these)."""
        return {"source": self.source, "text": self.text}


LONG_TOKEN = 30  # characters without a space: longer runs are glued words (URLs and paths aside)
LONG_TOKEN_WARN = 0.05  # warn when this share of a document's text is in such runs (prose and code: under 0.3 %)


def long_token_share(text: str) -> float:
    """The share of a text's non-space characters that sit in runs of ``LONG_TOKEN`` or more
    letters without a space (at most a tenth of other characters, so code, URLs and paths do not
    count): near 0 for prose, high for a PDF whose text layer lost its spaces
    (``Thefunctionreturnsthevalue``)."""
    tokens = text.split()
    total = sum(map(len, tokens)) or 1
    return sum(len(t) for t in tokens if len(t) >= LONG_TOKEN and sum(map(str.isalpha, t)) >= 0.9 * len(t)) / total


STEP_LABELS = {"header_footer_lines": "running headers/footers and page numbers", "toc_lines": "contents lines",
               "references_chars": "references", "index_chars": "index"}


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
    lines, c = drop_back_matter(lines, total)
    warnings += c.pop("warnings")
    stats.update(c)
    removed["references_chars"], removed["index_chars"] = c["references_chars"], c["index_chars"]
    paras, c = join_paragraphs(lines)
    stats.update(c)
    text = "\n\n".join(paras).replace(CODE_MARK, "")
    share = {k: round(v / total, 4) for k, v in removed.items() if v}
    for k in ("header_footer_lines", "toc_lines"):
        if share.get(k, 0) > WARN_SHARE:
            warnings.append(f"dropped {removed[k]:,} chars ({share[k]:.1%} of the document) as {STEP_LABELS[k]}")
    glued = long_token_share(text)
    stats["long_token_share"] = round(glued, 4)
    if glued > LONG_TOKEN_WARN:
        warnings.append(f"{glued:.0%} of its text is in runs of {LONG_TOKEN}+ characters without a space: its text "
                        "layer lost the spaces between words, and the teacher would read glued words; check "
                        "`pdftotext` on it, or export the PDF again from its source")
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
    scanned = scanned_pages(pages, facts["image_pages"])
    if len(scanned) > len(pages) / 2:
        raise PdfError(path.name, f"mostly scanned: {len(scanned)} of its {len(pages)} pages are images without a "
                                  f"text layer, and the {raw_chars:,} characters of text it has (stray lines, URLs, "
                                  "a few pages) are not the document; run OCR on it first (e.g. ocrmypdf)")
    text, counts = clean_pages(pages, path.name)
    if scanned:
        counts["warnings"].append(f"{path.name}: {len(scanned)} of {len(pages)} pages are scanned images without "
                                  f"text (page(s) {_page_list(scanned)}): their content is missing; OCR them to use it")
    if len(text.strip()) < MIN_TEXT_CHARS:
        raise PdfError(path.name, "nothing left after cleaning (only headers, page numbers or references)")
    stats = {"file": path.name, "pages": len(pages), "pages_without_text": sum(1 for p in pages if not p.strip()),
             "scanned_pages": scanned, "failed_pages": facts["failed_pages"], "encrypted": facts["encrypted"],
             "extractor": facts["extractor"],
             "chars_extracted": raw_chars, "chars_clean": len(text), "paragraphs": text.count("\n\n") + 1,
             **counts, "seconds": round(time.time() - t0, 2)}
    return PdfText(source=path.name, path=str(path), text=text, stats=stats)


def scanned_pages(pages: list[str], image_pages: list[int] | None) -> list[int]:
    """The pages (from 1) that look scanned: fewer than ``SCANNED_PAGE_CHARS`` characters of text on a
    page that images cover (``image_pages``; every page short of text when that is None)."""
    return [i for i, p in enumerate(pages, 1) if len(p.strip()) < SCANNED_PAGE_CHARS
            and (image_pages is None or i in image_pages)]


def _page_list(pages: list[int]) -> str:
    return ", ".join(map(str, pages[:10])) + (f" and {len(pages) - 10} more" if len(pages) > 10 else "")


def find_pdfs(folder: str | Path) -> list[Path]:
    """The ``.pdf`` files under ``folder`` (recursively, any case of the suffix), sorted; none when it is no folder."""
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
    """One line about a document's cleaning (pages, characters, what was dropped and fixed), for the
    batch's printout and the dataset card."""
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
    if s.get("scanned_pages"):
        msg += f", {len(s['scanned_pages'])} scanned page(s) (OCR them)"
    if s.get("failed_pages"):
        msg += f", {len(s['failed_pages'])} page(s) unreadable"
    if dropped:
        msg += "; dropped " + ", ".join(dropped)
    if fixes:
        msg += "; " + ", ".join(fixes)
    if s.get("warnings"):
        msg += f"; {len(s['warnings'])} warning(s)"
    return msg
