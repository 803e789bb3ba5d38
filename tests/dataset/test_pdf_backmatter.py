"""helpers.dataset.pdf_backmatter: the real arXiv paper's unheaded numbered reference list and the R manual's
headed "References" appendix and index are cut; prose is not a citation."""
from pathlib import Path

from helpers.common import resources as fixtures
from helpers.dataset.pdf_backmatter import MAX_SHARE, WARN_SHARE, citation_like, drop_back_matter
from helpers.dataset.pdf_extract import extract_pages
from helpers.dataset.pdf_furniture import remove_page_furniture
from helpers.dataset.pdf_unicode import normalise_unicode

PAPER = fixtures.fixture_pdf()
R_INTRO = Path(__file__).resolve().parent.parent / "material" / "R-intro.pdf"  # material/NOTICE.md


def lines_of(pdf: Path) -> list[str]:
    """The document's lines after the Unicode and page-furniture steps, as the cleaning hands them on."""
    pages, _ = remove_page_furniture([normalise_unicode(p)[0] for p in extract_pages(pdf)[0]])
    return [ln for p in pages for ln in p]


def test_the_papers_numbered_references_are_cut_and_the_acknowledgments_kept():
    lines = lines_of(PAPER)
    out, c = drop_back_matter(lines)
    assert c == {"references_chars": 1418, "index_chars": 0, "warnings": []}
    assert "1 D. C. Johnston, Adv. Phys. 59, 803 (2010)." in lines and not any("Adv. Phys." in ln for ln in out)
    assert any("We would like to thank Predrag Nikolic" in ln for ln in out)
    assert out == lines[:len(out)]  # only the end of the document goes
    assert 1418 < MAX_SHARE["numbered_references"] * sum(map(len, lines))


def test_the_r_manuals_references_appendix_and_index_are_cut():
    lines = lines_of(R_INTRO)
    out, c = drop_back_matter(lines)
    assert c["references_chars"] > 500 and c["index_chars"] > 0 and c["warnings"] == []
    assert any("Nonlinear Regression Analysis" in ln for ln in lines)
    assert not any("Nonlinear Regression Analysis" in ln for ln in out)
    assert c["references_chars"] < WARN_SHARE * sum(map(len, lines))
    assert any("R is an integrated suite of software facilities" in ln for ln in out)


def test_citations_are_told_from_prose():
    assert citation_like("4 H. A. Bethe, Proc. Roy. Soc. London A 150, 552 (1935).")
    assert citation_like("D. M. Bates and D. G. Watts (1988), Nonlinear Regression Analysis and Its Applications.")
    assert not citation_like("2. Grant of Copyright License. Subject to the terms and conditions of this License.")
    assert not citation_like("The Bethe lattice is a tree in which every node has the same number of neighbours.")


def test_a_heading_with_too_few_lines_to_judge_is_kept_without_a_warning():
    """A "Reference" heading over nothing, or over a line or two, is kept and not reported (the
    old "kept a section headed 'reference': only 0 of its 0 lines" was noise); over prose it is."""
    body = [f"Line {i} of a long and plain paragraph about configuration files and settings." for i in range(60)]
    for tail in ([], ["See the notebook for details."]):
        out, c = drop_back_matter(body + ["Reference"] + tail)
        assert out == body + ["Reference"] + tail and c["warnings"] == [] and c["references_chars"] == 0
    prose = [f"Prose line {i} that says how the kit reads a file and what it keeps from it." for i in range(8)]
    out, c = drop_back_matter(body + ["References"] + prose)
    assert c["references_chars"] == 0 and c["warnings"] == [
        "kept a section headed 'References': only 0 of its 8 lines look like citations"]
