"""helpers.dataset.pdf_extract: the page texts of the real arXiv paper with both engines, files that are not
PDFs, and encrypted copies of the paper (owner password only: they open; a user password: named)."""
import pytest

from helpers.common import resources as fixtures
from helpers.dataset.pdf import read_pdf
from helpers.dataset.pdf_extract import PdfError, extract_pages

PAPER = fixtures.fixture_pdf()


def test_both_engines_give_every_page_of_the_paper():
    pages, facts = extract_pages(PAPER)
    assert len(pages) == 8
    assert facts == {"encrypted": False, "failed_pages": [], "extractor": "pdfium", "image_pages": [],
                     "repaired": False}
    assert pages[0].startswith("Quantum Criticality for Extended Nodes on a Bethe Lattice")
    pages2, facts2 = extract_pages(PAPER, engine="pypdf")
    assert facts2["extractor"] == "pypdf" and len(pages2) == 8 and "Bethe" in pages2[0]
    assert facts2["image_pages"] is None  # pypdf does not measure images: a page short of text counts as a scan
    with pytest.raises(ValueError, match="engine='ocr'"):
        extract_pages(PAPER, engine="ocr")


def test_files_that_are_not_pdfs_are_named_with_the_reason(tmp_path):
    with pytest.raises(PdfError, match=r"^gone\.pdf: no such file"):
        extract_pages(tmp_path / "gone.pdf")
    (tmp_path / "empty.pdf").write_bytes(b"")
    with pytest.raises(PdfError, match=r"^empty\.pdf: empty file \(0 bytes\)"):
        extract_pages(tmp_path / "empty.pdf")
    (tmp_path / "page.pdf").write_text("<html>not found</html>")
    with pytest.raises(PdfError) as exc:
        extract_pages(tmp_path / "page.pdf")
    assert exc.value.file == "page.pdf" and exc.value.reason == "not a PDF (no %PDF header)"
    (tmp_path / "cut.pdf").write_bytes(PAPER.read_bytes()[:3000])
    with pytest.raises(PdfError, match=r"^cut\.pdf: corrupt or unreadable PDF \(PDFium cannot parse it\)"):
        extract_pages(tmp_path / "cut.pdf", engine="pdfium")


def test_encrypted_pdfs_aes_owner_only_opens_and_a_password_is_named(tmp_path):
    import pypdf
    plain = read_pdf(PAPER)
    for algo in ("AES-128", "AES-256"):
        w = pypdf.PdfWriter(clone_from=str(PAPER))
        w.encrypt(user_password="", owner_password="owner-secret", algorithm=algo)
        w.write(str(tmp_path / f"owner_{algo}.pdf"))
        w = pypdf.PdfWriter(clone_from=str(PAPER))
        w.encrypt(user_password="user-secret", owner_password="owner-secret", algorithm=algo)
        w.write(str(tmp_path / f"locked_{algo}.pdf"))
        for engine in ("pdfium", "pypdf"):
            doc = read_pdf(tmp_path / f"owner_{algo}.pdf", engine=engine)
            assert doc.stats["encrypted"] and doc.stats["extractor"] == engine
            assert "Bethe lattice" in doc.text
            if engine == "pdfium":
                assert doc.text == plain.text
            with pytest.raises(PdfError, match=rf"^locked_{algo}\.pdf: encrypted: it needs a password"):
                extract_pages(tmp_path / f"locked_{algo}.pdf", engine=engine)
