"""helpers.dataset.pdf_layout on real PDFium pages: the arXiv paper's superscript affiliations put back on the
author line, and the R manual's example commands (a monospaced font) marked as code with their indentation."""
from pathlib import Path

import pypdfium2 as pdfium

from helpers.common import resources as fixtures
from helpers.dataset.pdf_layout import CODE_MARK, pdfium_page_text

PAPER = fixtures.fixture_pdf()
R_INTRO = Path(__file__).resolve().parent.parent / "material" / "R-intro.pdf"  # material/NOTICE.md


def page_text(pdf: Path, index: int) -> str:
    doc = pdfium.PdfDocument(str(pdf))
    try:
        page = doc[index]
        try:
            return pdfium_page_text(page)
        finally:
            page.close()
    finally:
        doc.close()


def test_superscripts_stay_on_their_line_and_prose_is_not_code():
    lines = page_text(PAPER, 0).splitlines()
    assert lines[0] == "Quantum Criticality for Extended Nodes on a Bethe Lattice in the Large"
    assert "James M. Murray,1 Adrian Del Maestro,1, 2 and Zlatko Teˇsanovi´c1" in lines  # affiliations' marks
    assert not any(ln.strip() in ("1", "2", "1, 2") for ln in lines)
    assert CODE_MARK not in "\n".join(lines)


def test_monospaced_lines_are_marked_and_indented_from_the_column_edge():
    lines = page_text(R_INTRO, 8).splitlines()
    code = [ln[len(CODE_MARK):] for ln in lines if ln.startswith(CODE_MARK)]
    assert ["      $ mkdir work", "      $ cd work", "      $ R", "      > q()"] == code[-4:]
    prose = [ln for ln in lines if not ln.startswith(CODE_MARK) and len(ln) > 60]
    assert len(prose) > 10 and not any(ln.startswith(" ") for ln in prose)  # prose keeps no indentation
    assert "\x02" not in "\n".join(lines) and "\ufffe\n" not in "\n".join(lines)
