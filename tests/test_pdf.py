"""helpers.pdf on real PDFs: the shipped arXiv paper, the R-intro manual (tests/material), and broken copies of them."""
import io
from pathlib import Path

import pytest

from helpers import fixtures
from helpers.pdf import (PdfError, join_paragraphs, normalise_unicode, read_pdf, read_pdfs,
                         remove_page_furniture)

PAPER = fixtures.fixture_pdf()
R_INTRO = Path(__file__).parent / "material" / "R-intro.pdf"  # shipped with its notice (material/NOTICE.md)


@pytest.fixture(scope="module")
def paper():
    return read_pdf(PAPER)


def test_paper_is_cleaned(paper):
    text, s = paper.text, paper.stats
    assert s["pages"] == 8 and s["file"] == "1111.2011v2.pdf"
    assert "Quantum Criticality for Extended Nodes on a Bethe Lattice" in text
    # ligatures and TeX accents
    assert "\ufb00" not in text and "\ufb01" not in text and "effective action" in text
    assert "Tešanović" in text and "Teˇsanovi´c" not in text
    assert s["ligatures"] > 50 and s["accents_composed"] >= 1
    # "exercise cau-" / "tion" rejoined; the compound "one-dimensional" keeps its hyphen
    assert "exercise caution" in text and "cau- tion" not in text
    assert "one-dimensional" in text
    assert s["dehyphenated"] > 20
    # page numbers gone (page 2 starts with a bare "2")
    assert s["page_number_lines"] >= 7
    assert not any(p.strip().isdigit() for p in text.split("\n\n"))
    # the unheaded numbered reference list is dropped, the acknowledgments kept
    assert "Adv. Phys. 59, 803" not in text and "Claredon Press" not in text
    assert "We would like to thank Predrag Nikolic" in text
    assert s["references_chars"] > 1000
    assert s["chars_clean"] == len(text) < s["chars_extracted"]


def test_paragraphs_are_joined(paper):
    paras = paper.text.split("\n\n")
    assert "I. INTRODUCTION" in paras
    long = [p for p in paras if len(p) > 400]
    assert len(long) >= 10 and all("\n" not in p for p in long[:5])


def test_r_manual_headers_contents_and_references_removed():
    doc = read_pdf(R_INTRO)
    text, s = doc.text, doc.stats
    assert s["pages"] == 113
    # running headers: "Chapter 1: Introduction and preliminaries 5" on every page of the chapter
    assert "Chapter 1: Introduction and preliminaries" not in text
    assert "1 Introduction and preliminaries" in text  # the real chapter heading stays
    assert s["header_footer_lines"] > 50 and s["page_number_lines"] > 5
    # table of contents with dot leaders, and the index
    assert ". . . . ." not in text and s["toc_lines"] > 200
    # Appendix F References
    assert "Nonlinear Regression Analysis and Its Applications" not in text
    assert s["references_chars"] > 500
    assert "R is an integrated suite of software facilities for data manipulation" in text


def test_unicode_normalisation():
    text, c = normalise_unicode("e\ufb03cient \ufb01le, Erd\u02ddos, D. J\u00b4erome,\u00a0soft\u00adhyphen\ufffd")
    assert text == "efficient file, Erdős, D. Jérome, softhyphen"
    assert c == {"ligatures": 2, "accents_composed": 2, "invisible_chars": 1, "replacement_chars": 1}


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


def test_running_headers_need_repeats():
    pages = [f"My Manual {i}\nBody text of page {i} that is unique {'x' * i}\n{i}" for i in range(1, 8)]
    pages[3] = "A heading seen once\n" + pages[3]
    out, c = remove_page_furniture(pages)
    assert c["header_footer_lines"] == 7 and c["page_number_lines"] == 7
    assert out[3][0] == "A heading seen once"
    assert all(len(p) == (2 if i == 3 else 1) for i, p in enumerate(out))


# --- broken PDFs, made from the real ones -------------------------------------------------------
def _encrypted(src: Path, dst: Path, user: str, owner: str = "owner-pw"):
    import pypdf
    w = pypdf.PdfWriter(clone_from=str(src))
    w.encrypt(user_password=user, owner_password=owner, algorithm="RC4-128")
    w.write(str(dst))
    return dst


def _image_only(dst: Path):
    """A scanned-looking page: text rasterised by matplotlib into a PNG, wrapped in a PDF by Pillow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    fig = plt.figure(figsize=(4, 3), dpi=80)
    fig.text(0.1, 0.5, "This page was scanned:\nit has pixels, no text layer.", fontsize=12)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    Image.open(buf).convert("RGB").save(dst, "PDF")
    return dst


def _zero_pages(dst: Path):
    import pypdf
    pypdf.PdfWriter().write(str(dst))
    return dst


def test_bad_pdfs_are_reported_by_name_and_the_batch_completes(tmp_path):
    raw = PAPER.read_bytes()
    (tmp_path / "truncated.pdf").write_bytes(raw[:3000])
    (tmp_path / "not_a_pdf.pdf").write_bytes(b"<html>404 Not Found</html>")
    batch = [
        PAPER,
        _encrypted(PAPER, tmp_path / "locked.pdf", user="secret"),
        tmp_path / "truncated.pdf",
        tmp_path / "not_a_pdf.pdf",
        _image_only(tmp_path / "scan.pdf"),
        _zero_pages(tmp_path / "empty.pdf"),
        _encrypted(PAPER, tmp_path / "owner_only.pdf", user=""),  # no user password: opens
    ]
    docs, problems = read_pdfs(batch, verbose=False)
    assert [d.source for d in docs] == ["1111.2011v2.pdf", "owner_only.pdf"]
    assert docs[1].stats["encrypted"] and docs[1].text == docs[0].text
    why = {p["file"]: p["reason"] for p in problems}
    assert set(why) == {"locked.pdf", "truncated.pdf", "not_a_pdf.pdf", "scan.pdf", "empty.pdf"}
    assert "password" in why["locked.pdf"]
    assert "corrupt" in why["truncated.pdf"]
    assert "not a PDF" in why["not_a_pdf.pdf"]
    assert "no text layer" in why["scan.pdf"] and "OCR" in why["scan.pdf"]
    assert "no pages" in why["empty.pdf"]
    with pytest.raises(PdfError, match=r"^scan\.pdf: no text layer"):
        read_pdf(tmp_path / "scan.pdf")
