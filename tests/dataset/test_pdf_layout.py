"""helpers.dataset.pdf_layout on real PDFium pages: the arXiv paper's superscript affiliations put back on the
author line, and the R manual's example commands (a monospaced font) marked as code with their indentation."""
from pathlib import Path

import pypdfium2 as pdfium
import pdf_material

from helpers.common import resources as fixtures
from helpers.dataset.pdf import read_pdf
from helpers.dataset.pdf_layout import CODE_MARK, pdfium_page_text

PAPER = fixtures.fixture_pdf()
MATERIAL = Path(__file__).resolve().parent.parent / "material"  # each file's licence: material/NOTICE.md
R_INTRO = MATERIAL / "R-intro.pdf"


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
    # from the text's left edge (x=90), not from the indented lines at 96 and 105 beside it
    assert ["         $ mkdir work", "         $ cd work", "         $ R", "         > q()"] == code[-4:]
    prose = [ln for ln in lines if not ln.startswith(CODE_MARK) and len(ln) > 60]
    assert len(prose) > 10 and not any(ln.startswith(" ") for ln in prose)  # prose keeps no indentation
    assert "\x02" not in "\n".join(lines) and "\ufffe\n" not in "\n".join(lines)


def _listing_lines(source: Path, start: str, end: str) -> list[str]:
    """The code lines a maker was given: between ``start`` and ``end`` lines of its source."""
    out, inside = [], False
    for ln in source.read_text(encoding="utf-8").splitlines():
        if ln.strip().endswith(end):
            inside = False
        elif inside and ln.strip():
            out.append(ln.replace("\\e", "\\").replace("\\&", ""))
        elif ln.strip().startswith(start):
            inside = True
    return out


def _code_blocks(text: str) -> list[str]:
    return [ln.rstrip() for ln in text.splitlines()]


def test_a_font_is_monospaced_by_its_fixed_pitch_flag_whatever_its_name(tmp_path):
    prose = [b"Prose set in a proportional font, line one of several.", b"Line two of the prose.",
             b"Line three of the prose.", b"Line four of the prose."]
    code = [b"def f(x):", b"    return x + 1"]
    ops = [b"BT /F1 10 Tf"]
    for k, ln in enumerate(prose):
        ops.append(b"1 0 0 1 72 %d Tm (%s) Tj" % (700 - 14 * k, ln))
    for k, ln in enumerate(code):  # indented by its leading spaces' width: 6 pt a glyph at 10 pt
        indent = len(ln) - len(ln.lstrip())
        ops.append(b"/F2 10 Tf 1 0 0 1 %d %d Tm (%s) Tj" % (72 + 6 * indent, 630 - 14 * k, ln.strip()))
    ops.append(b"ET")
    for flags, is_code in ((33, True), (32, False)):  # FixedPitch + Nonsymbolic; Nonsymbolic, glyphs of 3 widths
        fonts = {"F1": pdf_material.font("Times-Roman"), "F2": pdf_material.font("KitLetters", flags, is_code)}
        pdf = pdf_material.write_pdf(tmp_path / f"flags{flags}.pdf", b"\n".join(ops), fonts)
        lines = page_text(pdf, 0).splitlines()
        marked = [ln[len(CODE_MARK):] for ln in lines if ln.startswith(CODE_MARK)]
        assert marked == (["def f(x):", "    return x + 1"] if is_code else []), lines


def test_ghostscript_courier_code_keeps_its_lines_and_indentation():
    """LaTeX with the courier package through dvips and Ghostscript: listings in NimbusMonL-Regu."""
    want = _listing_lines(MATERIAL / "kit-dvips.tex", "\\begin{verbatim}", "\\end{verbatim}")
    text = read_pdf(MATERIAL / "kit-dvips.pdf").text
    lines = _code_blocks(text)
    assert len(want) >= 20 and all(ln in lines for ln in want), [ln for ln in want if ln not in lines]
    assert any(ln.startswith("        ") for ln in want)  # indentation is part of what is checked


def test_groff_through_ghostscript_keeps_word_spaces_and_code_lines():
    """groff -Tps through ps2pdf: word spaces are gaps between glyphs, which PDFium alone misses
    ("sevennumbered"); the listings (.EX, Ghostscript's Courier) keep their lines."""
    source = (MATERIAL / "kit-groff.7").read_text(encoding="utf-8")
    raw = pdfium.PdfDocument(str(MATERIAL / "kit-gs.pdf"))
    raw_text = "\n".join(raw[i].get_textpage().get_text_range() for i in range(len(raw)))
    raw.close()
    assert pdf_material.split_and_glued_per_10k(raw_text, source)[1] > 50  # PDFium alone
    text = read_pdf(MATERIAL / "kit-gs.pdf").text
    split, glued = pdf_material.split_and_glued_per_10k(text, source)
    assert split <= 2 and glued <= 12  # pdftotext: 0.0 and 8.7 ("within" is set as "with\fBin\fR")
    want = _listing_lines(MATERIAL / "kit-groff.7", ".EX", ".EE")
    lines = _code_blocks(text)
    assert len(want) >= 15 and all(ln in lines for ln in want), [ln for ln in want if ln not in lines]


def test_dblatex_listings_with_callout_marks_keep_their_lines():
    """DocBook through dblatex, a callout mark (another font) after every third code line: the
    marked lines stay code lines (they were glued to the prose or to the next line)."""
    import html
    import re
    source = (MATERIAL / "kit-dblatex.xml").read_text(encoding="utf-8")
    want = [html.unescape(re.sub(r"<co [^>]*/>", "", ln)) for block in re.findall(
        r"<programlisting>(.*?)</programlisting>", source, re.S) for ln in block.splitlines() if ln.strip()]
    text = read_pdf(MATERIAL / "kit-dblatex.pdf").text
    lines = [re.sub(r"\s+\d+\u2708$", "", ln.rstrip()) for ln in text.splitlines()]  # the marks print as "1✈"
    assert len(want) >= 15 and all(ln in lines for ln in want), [ln for ln in want if ln not in lines]
    assert sum(1 for ln in text.splitlines() if re.search(r"\S \d+\u2708$", ln)) >= 5  # marks stay on their line
