"""helpers.dataset.pdf_furniture: running headers and footers, page numbers and contents lines (with dot leaders
or without), on made-up pages, the R manual's 113 real pages and the kit's own LaTeX manual (tests/material)."""
from pathlib import Path

from helpers.dataset.pdf_extract import extract_pages
from helpers.dataset.pdf_furniture import leaderless_contents, remove_page_furniture
from helpers.dataset.pdf_unicode import normalise_unicode

MATERIAL = Path(__file__).resolve().parent.parent / "material"  # each file's licence: material/NOTICE.md
R_INTRO = MATERIAL / "R-intro.pdf"


def test_running_headers_need_repeats():
    pages = [f"My Manual {i}\nBody text of page {i} that is unique {'x' * i}\n{i}" for i in range(1, 8)]
    pages[3] = "A heading seen once\n" + pages[3]
    out, c = remove_page_furniture(pages)
    assert c["header_footer_lines"] == 7 and c["page_number_lines"] == 7
    assert out[3][0] == "A heading seen once"
    assert all(len(p) == (2 if i == 3 else 1) for i, p in enumerate(out))


def test_the_r_manuals_running_heads_page_numbers_and_contents_go():
    pages = [normalise_unicode(p)[0] for p in extract_pages(R_INTRO)[0]]
    out, c = remove_page_furniture(pages)
    kept = [ln for p in out for ln in p]
    assert c["header_footer_lines"] > 50 and c["page_number_lines"] > 5 and c["toc_lines"] > 200
    assert c["furniture_chars"] > 0 and c["toc_chars"] > 10 * c["toc_lines"]
    assert not any(ln.startswith("Chapter 1: Introduction and preliminaries") for ln in kept)
    assert not any(". . . . ." in ln for ln in kept)
    assert "1 Introduction and preliminaries" in kept  # the chapter's real heading stays
    # drop_toc=False keeps the dot-leader lines and removes the same headers and footers
    out2, c2 = remove_page_furniture(pages, drop_toc=False)
    assert c2["toc_lines"] == 0 and c2["header_footer_lines"] == c["header_footer_lines"]
    assert sum(map(len, out2)) == sum(map(len, out)) + c["toc_lines"]


def test_contents_without_dot_leaders_go_after_a_contents_heading():
    """pdfLaTeX's article contents (``1 Layout 1``), from the kit's own manual through dvips and
    Ghostscript (material/kit-dvips.pdf), go; numbered lines elsewhere stay."""
    pages = [normalise_unicode(p)[0] for p in extract_pages(MATERIAL / "kit-dvips.pdf")[0]]
    out, c = remove_page_furniture(pages)
    kept = [ln.strip() for p in out for ln in p]
    assert c["toc_lines"] == 4 and "Contents" not in kept  # the heading and its three entries
    assert not any(ln in ("1 Layout 1", "2 Imports 2", "3 Files between notebooks 3") for ln in kept), kept[:12]
    assert "1 Layout" in kept and "2 Imports" in kept  # the sections' own headings stay
    # a numbered list that ends in numbers, without a Contents heading, is text
    prose = ["Steps to follow", "1 Install the kit with pip 3", "2 Open the notebook number 2",
             "3 Set the teacher model to gpt 4", "Then run it."]
    lines, found = prose, leaderless_contents(prose)[0]
    assert found == set() and remove_page_furniture(["\n".join(lines)])[1]["toc_lines"] == 0
    # one that runs on to the next page is followed there
    first = ["Contents", "1 Introduction 1", "2 Method 3", "3 Results 7"]
    found, continued = leaderless_contents(first)
    assert found == {0, 1, 2, 3} and continued
    assert leaderless_contents(["4 Discussion 9", "5 Conclusion 12", "A Proofs 14", "Text begins."],
                               continued)[0] == {0, 1, 2}
