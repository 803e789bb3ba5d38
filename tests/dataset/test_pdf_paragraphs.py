"""helpers.dataset.pdf_paragraphs: lines into paragraphs, de-hyphenation by the document's own spelling, and a
real page of the R manual whose example commands are set in a monospaced font (a code block)."""
from pathlib import Path

import pypdfium2 as pdfium

from helpers.dataset.pdf_layout import pdfium_page_text
from helpers.dataset.pdf_paragraphs import join_paragraphs, looks_like_heading

R_INTRO = Path(__file__).resolve().parent.parent / "material" / "R-intro.pdf"  # material/NOTICE.md


def test_dehyphenation_uses_the_documents_own_spelling():
    lines = ["Prose about the one-dimensional chain, set in a column of one width so",
             "that every line is about as long as the others; we also consider a one-",
             "dimensional model with a parameter for the coupling whose parame-",
             "ter is not written with a hyphen anywhere else, so this one joins.",
             ""]
    paras, c = join_paragraphs(lines)
    assert paras == ["Prose about the one-dimensional chain, set in a column of one width so that every line "
                     "is about as long as the others; we also consider a one-dimensional model with a parameter "
                     "for the coupling whose parameter is not written with a hyphen anywhere else, so this one joins."]
    assert c == {"dehyphenated": 1, "hyphens_kept": 1}


def test_code_lines_stay_a_block_with_their_indentation():
    doc = pdfium.PdfDocument(str(R_INTRO))
    try:
        page = doc[8]  # 1.7 "Using R interactively": $ mkdir work, $ cd work, $ R, > q()
        text = pdfium_page_text(page)
        page.close()
    finally:
        doc.close()
    paras, _ = join_paragraphs(text.splitlines())
    # each run of code lines is one block, its lines and indentation kept; the numbered steps between
    # them are not glued to the code
    pad = " " * 9  # the examples' indentation from the text's left edge
    assert f"{pad}$ mkdir work\n{pad}$ cd work" in paras and f"{pad}$ R" in paras and f"{pad}> q()" in paras
    assert not any("$ cd work" in p and "Start the R program" in p for p in paras)
    prose = [p for p in paras if "$ " not in p and "q()" not in p]
    assert any(len(p) > 200 and "\n" not in p for p in prose)  # the text around it is joined into paragraphs


def test_headings_are_recognised():
    for s in ("V. DISCUSSION", "ACKNOWLEDGMENTS", "1.8 R commands", "II. SELF-CONSISTENT ACTION", "3 Objects"):
        assert looks_like_heading(s), s
    for s in ("the end of a sentence.", "R is an integrated suite", "12", "x <- c(1, 2)"):
        assert not looks_like_heading(s), s
