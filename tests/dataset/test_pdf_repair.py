"""helpers.dataset.pdf_repair: groff's ``[(word) -325.3 ()] TJ`` tails, which PDFium misreads, on a page
written in that shape and on a real groff PDF (part of Debian's bash(1), see material/NOTICE.md): PDFium
alone splits and glues words there, the repaired file reads as the man page's own text."""
from pathlib import Path

import pypdfium2 as pdfium
from pdf_material import font, split_and_glued_per_10k, write_pdf

from helpers.common import resources as fixtures
from helpers.dataset.pdf_extract import extract_pages
from helpers.dataset.pdf_repair import repaired_pdf

MATERIAL = Path(__file__).resolve().parent.parent / "material"
BASH = MATERIAL / "bash-options.pdf"  # groff -Tpdf of bash(1)'s first sections; GPL-3+, see NOTICE.md
BASH_TEXT = MATERIAL / "bash-options.txt"  # the same source through groff -Tutf8: the words that were set


def _text(pdf) -> str:
    doc = pdfium.PdfDocument(pdf)
    try:
        return "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    finally:
        doc.close()


def test_a_word_space_before_an_empty_string_is_kept(tmp_path):
    # groff's shape: a word space, an empty string, then the next word in another font, no new position
    content = (b"BT /F1 10 Tf 1 0 0 1 72 700 Tm 0 Tw [(call) -325.3 (the) -325.3 ()] TJ "
               b"/F2 10 Tf [(function) -325.3 ] TJ /F1 10 Tf (now) Tj ET")
    pdf = write_pdf(tmp_path / "groff-shape.pdf", content, {"F1": font("Times-Roman"), "F2": font("Times-Italic")})
    assert "thefunction" in _text(str(pdf))  # PDFium alone drops the displacement
    fixed = repaired_pdf(pdf)
    assert fixed is not None and "call the function now" in _text(fixed)
    pages, facts = extract_pages(pdf)
    assert facts["repaired"] and pages[0].split() == ["call", "the", "function", "now"]


def test_groff_man_page_reads_as_its_source_after_repair():
    source = BASH_TEXT.read_text(encoding="utf-8")
    raw_split, raw_glued = split_and_glued_per_10k(_text(str(BASH)), source)
    assert raw_split > 20 and raw_glued > 5  # the material shows the damage: "v alue", "ifshopt"
    pages, facts = extract_pages(BASH)
    split, glued = split_and_glued_per_10k("\n".join(pages), source)
    assert facts["repaired"] and split <= 1.0 and glued <= 1.0  # pdftotext: 0.0 and 0.0 on this file
    assert "sets the value of that option" in " ".join(" ".join(pages).split())


def test_files_without_that_shape_are_read_as_they_are(tmp_path):
    assert repaired_pdf(fixtures.fixture_pdf()) is None  # pdfTeX
    assert repaired_pdf(MATERIAL / "kit-dvips.pdf") is None  # dvips + Ghostscript
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n garbage")
    assert repaired_pdf(tmp_path / "broken.pdf") is None
