"""PDF test helpers: a one-page PDF written byte by byte, for tests that need a content stream of a given
shape (groff's ``[(the) -325.3 ()] TJ``) or a font with given flags and widths, as makers write them
without their tools; and the split/glued-word counts of ``bench/pdf_extractors.py``."""
from __future__ import annotations

import re
from pathlib import Path


def font(base: str, flags: int | None = None, monospaced: bool = True) -> bytes:
    """A simple Type1 font dictionary; with ``flags``, a descriptor carrying them, and glyphs all
    600 units wide (``monospaced``) or of three widths."""
    if flags is None:
        return f"<< /Type /Font /Subtype /Type1 /BaseFont /{base} /Encoding /WinAnsiEncoding >>".encode()
    widths = " ".join(str(600 if monospaced else (500, 278, 444)[k % 3]) for k in range(224))
    return (f"<< /Type /Font /Subtype /Type1 /BaseFont /{base} /Encoding /WinAnsiEncoding /FirstChar 32 "
            f"/LastChar 255 /Widths [{widths}] /FontDescriptor << /Type /FontDescriptor /FontName /{base} "
            f"/Flags {flags} /FontBBox [0 -200 600 800] /ItalicAngle 0 /Ascent 800 /Descent -200 "
            "/CapHeight 700 /StemV 80 >> >>").encode()


def write_pdf(path: Path, content: bytes, fonts: dict[str, bytes], size=(612, 792)) -> Path:
    """One page with ``content`` as its content stream and ``fonts`` (``{"F1": font(...)}``) as its fonts."""
    font_refs = " ".join(f"/{name} {5 + k} 0 R" for k, name in enumerate(fonts))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]} {size[1]}] /Contents 4 0 R "
               f"/Resources << /Font << {font_refs} >> >> >>".encode(),
               b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
               *fonts.values()]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def _words(text: str) -> list[str]:
    text = re.sub(r"([A-Za-z])[-\u2010\u00ad\ufffe\x02]\s*\n\s*([A-Za-z])", r"\1\2", text)
    return [w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"[\ufffe\x02]", "", text))]


def split_and_glued_per_10k(text: str, source: str) -> tuple[float, float]:
    """Adjacent words whose join is a word of the source that never has them apart (``v alue``),
    and words absent from the source made of two of its words (``thefunction``), per 10k words."""
    ref = _words(source)
    vocab, pairs = set(ref), set(zip(ref, ref[1:]))
    got = _words(text)
    split = sum(1 for a, b in zip(got, got[1:]) if len(a + b) >= 4 and a + b in vocab and (a, b) not in pairs)
    glued = sum(1 for w in got if len(w) >= 6 and w not in vocab
                and any(w[:k] in vocab and w[k:] in vocab for k in range(2, len(w) - 1)))
    return 1e4 * split / len(got), 1e4 * glued / len(got)
