"""Repairs to a PDF's content streams before PDFium reads them, for makers whose streams PDFium is
known to misread (measured in ``bench/RESULTS.md``, "PDF extraction").

groff's PDF writer (``groff -Tpdf``, ``man -Tpdf``) ends a text-showing array with a word space
and an empty string, ``[(the) -325.3 ()] TJ``, then shows the next word in another font with no
new position. PDFium drops a displacement that is followed by an empty string, so the next word
is set against this one (``thefunction``) and every later word of the line sits one space to the
left, until the next explicit position splits a word in two (``v alue``). The displacement means
the same with or without the empty string, so ``repaired_pdf`` removes the empty string where a
word is shown next without a new position; poppler and MuPDF read such files as they are."""
from __future__ import annotations

import io
import re
from pathlib import Path

EMPTY_TAIL_RE = re.compile(rb"(-?\d*\.?\d+)\s*\(\)\s*\]\s*TJ")  # a displacement, then an empty string, ends a TJ
NEXT_OP_RE = re.compile(rb"(?<![\w\\])(TJ|Tj|Td|TD|Tm|T\*|ET)(?![\w])|(?<=[\s)\]])['\"](?=\s)")
SHOWS = (b"TJ", b"Tj", b"'", b'"')


def _misread(data: bytes) -> bool:
    """Whether a content stream has a TJ that ends ``n ()]`` and is followed by more text shown
    without a new position (where PDFium loses the displacement)."""
    for m in EMPTY_TAIL_RE.finditer(data):
        nxt = NEXT_OP_RE.search(data, m.end(), m.end() + 400)
        if nxt and nxt.group(0) in SHOWS:
            return True
    return False


def repaired_pdf(path: str | Path) -> bytes | None:
    """The PDF's bytes with the streams PDFium misreads repaired (see the module's docstring), or
    None when it has none (or pypdf cannot parse it: PDFium then reads the file as it is)."""
    import pypdf
    from pypdf.generic import DecodedStreamObject
    try:
        reader = pypdf.PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            return None
        bad = []
        for i, page in enumerate(reader.pages):
            contents = page.get_contents()
            if contents is not None and b"()" in (data := contents.get_data()) and _misread(data):
                bad.append(i)
        if not bad:
            return None
        writer = pypdf.PdfWriter(str(path), incremental=True)
        for i in bad:
            page = writer.pages[i]
            stream = DecodedStreamObject()
            stream.set_data(EMPTY_TAIL_RE.sub(rb"\1] TJ", page.get_contents().get_data()))
            page.replace_contents(stream)
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()
    except Exception:  # a file pypdf cannot parse or write: PDFium reads it unrepaired
        return None
