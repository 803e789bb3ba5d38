"""Extraction: a PDF file → the raw text of each page, with PDFium (pypdfium2) or pypdf, and the
reason a file gives no text (:class:`PdfError`: missing, not a PDF, encrypted, corrupt, no pages,
no text layer)."""
from __future__ import annotations

from pathlib import Path

from helpers.dataset.pdf_layout import pdfium_page_text
from helpers.dataset.pdf_repair import repaired_pdf

MIN_TEXT_CHARS = 20  # fewer non-blank characters than this in the whole file = no text layer
SCANNED_PAGE_CHARS = 200  # a page with fewer characters than this (a stamp, a URL) over an image is a scan
IMAGE_PAGE_SHARE = 0.5  # ... when images cover at least this share of it


class PdfError(ValueError):
    """A PDF that gives no usable text; the message starts with the file name and says why."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


def _check_file(path: Path) -> None:
    name = path.name
    if not path.exists():
        raise PdfError(name, f"no such file ({path})")
    if path.stat().st_size == 0:
        raise PdfError(name, "empty file (0 bytes)")
    with path.open("rb") as fh:
        head = fh.read(1024)
    if b"%PDF" not in head:
        raise PdfError(name, "not a PDF (no %PDF header)")


def _extract_pdfium(path: Path, facts: dict) -> list[str] | None:
    """Pages via PDFium; None when PDFium cannot parse the file (pypdf then tries)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c
    name = path.name
    repaired = repaired_pdf(path)  # groff's streams, which PDFium misreads (see pdf_repair)
    facts["repaired"] = repaired is not None
    try:
        doc = pdfium.PdfDocument(repaired or str(path))  # an owner-only password (no user password) opens as is
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD or "password" in str(exc).lower():
            facts["encrypted"] = True
            raise PdfError(name, "encrypted: it needs a password to open (decrypt it first, "
                                 "e.g. `qpdf --decrypt --password=... in.pdf out.pdf`)") from None
        return None
    try:
        facts["encrypted"] = pdfium_c.FPDF_GetSecurityHandlerRevision(doc) != -1
        pages = []
        for i in range(len(doc)):
            try:
                page = doc[i]
                try:
                    pages.append(pdfium_page_text(page))
                    if _image_share(page) >= IMAGE_PAGE_SHARE:
                        facts["image_pages"].append(i + 1)
                finally:
                    page.close()
            except Exception as exc:  # a damaged page: named in the stats, the rest goes on
                facts["failed_pages"].append({"page": i + 1, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
                pages.append("")
        return pages
    finally:
        doc.close()


def _image_share(page) -> float:
    """The share of a PDFium page that its images cover (overlaps counted twice, capped at 1)."""
    import pypdfium2.raw as pdfium_c
    width, height = page.get_size()
    area = 0.0
    for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
        left, bottom, right, top = obj.get_bounds()
        area += max(0.0, min(right, width) - max(left, 0.0)) * max(0.0, min(top, height) - max(bottom, 0.0))
    return min(1.0, area / (width * height)) if width * height > 0 else 0.0


def _extract_pypdf(path: Path, facts: dict) -> list[str]:
    import pypdf
    from pypdf.errors import DependencyError, FileNotDecryptedError
    name = path.name
    try:
        reader = pypdf.PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            facts["encrypted"] = True
            try:
                opened = reader.decrypt("")  # many PDFs carry only an owner password and open freely
            except DependencyError as exc:
                raise PdfError(name, f"encrypted with a cipher pypdf cannot open here ({exc}); "
                                     "`pip install cryptography` and retry") from None
            if not opened:
                raise PdfError(name, "encrypted: it needs a password to open (decrypt it first, "
                                     "e.g. `qpdf --decrypt --password=... in.pdf out.pdf`)")
        n_pages = len(reader.pages)
    except PdfError:
        raise
    except FileNotDecryptedError:
        raise PdfError(name, "encrypted: it needs a password to open") from None
    except Exception as exc:  # pypdf raises many types for damaged files
        raise PdfError(name, f"corrupt or unreadable PDF ({type(exc).__name__}: {str(exc)[:200]})") from None
    pages = []
    for i in range(n_pages):
        try:
            pages.append(reader.pages[i].extract_text() or "")
        except Exception as exc:
            facts["failed_pages"].append({"page": i + 1, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
            pages.append("")
    return pages


def extract_pages(path: str | Path, engine: str = "auto") -> tuple[list[str], dict]:
    """The raw text of every page and extraction facts (``image_pages``: the pages, from 1, that
    images cover at least half of; None when pypdf read the file); PdfError for unusable files.

    ``engine``: ``"pdfium"`` (pypdfium2, the default: it loses no spaces on justified lines, see
    ``bench/RESULTS.md``), ``"pypdf"`` (pure Python; needs ``cryptography`` for AES), or
    ``"auto"``: PDFium, and pypdf for a file PDFium cannot parse (pypdf's parser is lenient
    with damaged cross-reference tables)."""
    path = Path(path)
    name = path.name
    _check_file(path)
    if engine not in ("auto", "pdfium", "pypdf"):
        raise ValueError(f"engine={engine!r}: use 'auto', 'pdfium' or 'pypdf'")
    facts = {"encrypted": False, "failed_pages": [], "extractor": engine, "image_pages": [], "repaired": False}
    pages = None
    if engine in ("auto", "pdfium"):
        pages = _extract_pdfium(path, facts)
        facts["extractor"] = "pdfium"
        if pages is None and engine == "pdfium":
            raise PdfError(name, "corrupt or unreadable PDF (PDFium cannot parse it)")
    if pages is None:
        facts["extractor"] = "pypdf"
        facts["image_pages"] = None  # not measured: a page short of text counts as a scan
        pages = _extract_pypdf(path, facts)
    n_pages = len(pages)
    if n_pages == 0:
        raise PdfError(name, "the PDF has no pages")
    if len(facts["failed_pages"]) == n_pages:
        raise PdfError(name, f"corrupt: no page could be read ({facts['failed_pages'][0]['error']})")
    if sum(len(p.strip()) for p in pages) < MIN_TEXT_CHARS:
        raise PdfError(name, f"no text layer on any of its {n_pages} page(s): an image-only or scanned PDF; "
                             "run OCR on it first (e.g. ocrmypdf)")
    return pages, facts
