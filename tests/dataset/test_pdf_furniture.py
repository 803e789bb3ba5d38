"""helpers.dataset.pdf_furniture: running headers and footers, page numbers and contents lines, on made-up pages
and on the R manual's 113 real pages (tests/material)."""
from pathlib import Path

from helpers.dataset.pdf_extract import extract_pages
from helpers.dataset.pdf_furniture import remove_page_furniture
from helpers.dataset.pdf_unicode import normalise_unicode

R_INTRO = Path(__file__).resolve().parent.parent / "material" / "R-intro.pdf"  # material/NOTICE.md


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
