"""One PDFium page → its text lines, laid out: word spaces decided from the glyphs' positions where
PDFium guesses wrong, a superscript or subscript put back on its line, and lines set in a monospaced
font (by its FixedPitch flag or its name: code) marked with ``CODE_MARK``, laid out on their glyphs'
columns and indented from their column's left edge (the columns' left edges are where several lines
of prose start). Measured on fifteen makers in ``bench/RESULTS.md``, "PDF extraction"."""
from __future__ import annotations

import collections
import re

CODE_MARK = "\ue000"  # starts a line set in a monospaced font (code) until join_paragraphs; never in the output
# a font is monospaced by its FixedPitch flag, or by its name: TeX's own fonts (CMTT10) carry no flag
FIXED_PITCH = 1  # bit 1 of a PDF font descriptor's /Flags
MONO_FONT_RE = re.compile(r"mono|cour|consol|menlo|typewriter|inconsolata|fixed|sourcecode|cmtt|lmtt|pcrr|txtt|"
                          r"nimbusmon|lucidaconsole|tt\d*$|-tt$", re.IGNORECASE)


def _monospaced(tp, indices: list[int], buf, flags) -> bool:
    """Whether a line is set in a monospaced font: two of its first, middle and last glyphs are
    (a code word inside a line of prose does not make it code, a callout mark after a line of
    code does not make it prose: dblatex's listings), by the font's FixedPitch flag
    (Ghostscript's ``NimbusMonL-Regu``, any Courier) or its name (TeX's ``CMTT10`` has no flag)."""
    import ctypes

    import pypdfium2.raw as pdfium_c
    samples = [indices[0], indices[len(indices) // 2], indices[-1]]
    mono = 0
    for i in samples:
        pdfium_c.FPDFText_GetFontInfo(tp, i, buf, len(buf), ctypes.byref(flags))
        mono += bool(flags.value > 0 and flags.value & FIXED_PITCH
                     or MONO_FONT_RE.search(buf.value.decode("latin-1").split("+")[-1]))
    return mono >= 2

WORD_GAP = 0.15  # a gap between two glyphs wider than this share of the font size is a word space ...
NO_GAP = 0.03  # ... and a space whose glyphs sit closer than this is none (see _page_lines)


def _page_lines(tp) -> list[tuple[str, list[int], list[float]]]:
    """A PDFium text page's lines, character by character: each line's text, its visible glyphs'
    indices and their left edges. Word spaces are decided from the glyphs' positions where PDFium's own guess
    is wrong: a gap wider than ``WORD_GAP`` of the font size without a space gets one
    (Ghostscript's PDFs of groff: ``twocores``), and a single space between glyphs that touch
    (``ev ery``, a space the maker drew and then set the word over) is dropped."""
    import pypdfium2.raw as pdfium_c
    n_chars = tp.count_chars()
    lines: list[tuple[str, list[int], list[float]]] = []
    cur: list[str] = []
    seen: list[int] = []
    xs: list[float] = []
    rect = pdfium_c.FS_RECTF()
    prev = None  # (right edge, font size) of the last glyph when no space has followed it yet
    pending = False  # one space seen after that glyph, kept or dropped at the next glyph
    i = 0
    while i < n_chars:
        u = pdfium_c.FPDFText_GetUnicode(tp, i)
        step = 1
        if 0xD800 <= u < 0xDC00 and i + 1 < n_chars:  # a surrogate pair is one character
            lo = pdfium_c.FPDFText_GetUnicode(tp, i + 1)
            ch = chr(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)) if 0xDC00 <= lo < 0xE000 else ""
            step = 2
        else:
            ch = chr(u) if u and not 0xD800 <= u < 0xE000 else ""
        if ch == " " and prev is not None and not pending:
            pending = True
        elif ch == "\n":
            lines.append(("".join(cur), seen, xs))
            cur, seen, xs, prev, pending = [], [], [], None, False
        elif not ch or ch == "\r" or ch.isspace() or not ch.isprintable():
            cur.append((" " if pending else "") + (ch if ch != "\r" else ""))
            prev, pending = None, False
        else:
            pdfium_c.FPDFText_GetLooseCharBox(tp, i, rect)
            size = pdfium_c.FPDFText_GetFontSize(tp, i)
            if prev is not None:
                gap = (rect.left - prev[0]) / max(size, prev[1], 1.0)
                if (pending and (gap > NO_GAP or gap < -1)) or (not pending and gap > WORD_GAP):
                    cur.append(" ")
            cur.append(ch)
            seen.append(i)
            xs.append(rect.left)
            prev, pending = (rect.right, size), False
        i += step
    lines.append(("".join(cur), seen, xs))
    return lines


def _pitch(xs: list[float]) -> float | None:
    """The most common step between a line's glyphs (a monospaced font's pitch), None for a short line."""
    steps = sorted(b - a for a, b in zip(xs, xs[1:]) if b - a > 0.1)
    return steps[len(steps) // 2] if len(steps) >= 3 else None


def _columns(text: str, xs: list[float], width: float) -> str:
    """A monospaced line laid out on its glyphs' columns (the pitch of its glyphs, or ``width``
    for a line too short to tell, from its first glyph), as ``pdftotext -layout`` does: code whose
    spaces are gaps (Doxygen's listings after their line numbers) keeps its inner indentation.
    Spaces are widened only where there was one, so a justified line never splits a word."""
    width = _pitch(xs) or width
    out, k, space = "", 0, False
    for ch in text.strip():
        if ch.isspace():
            space = True
            continue
        if ch.isprintable() and k < len(xs):
            col = int(round((xs[k] - xs[0]) / width))
            k += 1
            if space and out:  # only where a space was: inside a word the columns never part glyphs
                out += " " * max(1, col - len(out))
        out += ch
        space = False
    return out


def pdfium_page_text(page) -> str:
    """One page's text from PDFium: its lines, a superscript or subscript put back on its line,
    PDFium's line-end hyphen (U+FFFE) turned back into a hyphen for the de-hyphenation, and
    lines set in a monospaced font (code) marked with ``CODE_MARK`` and indented as far as they
    sit right of their column's left edge."""
    import ctypes

    tp = page.get_textpage()
    try:
        lines = _page_lines(tp)
        buf, flags = ctypes.create_string_buffer(128), ctypes.c_int()
        geo = []  # (x0, glyph width, monospaced, x1, bottom, top) of each line with text
        for text, seen, _ in lines:
            if not seen:
                geo.append(None)
                continue
            first, last = tp.get_charbox(seen[0]), tp.get_charbox(seen[-1])
            mono = _monospaced(tp, seen, buf, flags)
            n = max(1, len(text.strip()))
            geo.append((first[0], max(0.1, (last[2] - first[0]) / n), mono, last[2],
                        min(first[1], last[1]), max(first[3], last[3])))
        # columns' left edges: where 3 or more lines of prose start (code is indented from them)
        lefts = collections.Counter(round(g[0]) for g in geo if g and not g[2])
        # (a paragraph's indented first lines, a few points right of a busier edge, are no edge)
        margins = sorted(x for x, k in lefts.items() if k >= 3 and not any(
            x - 40 <= y < x and n > k for y, n in lefts.items())) or [min((round(g[0]) for g in geo if g), default=0)]
        widths = sorted(w for (_, _, xs), g in zip(lines, geo) if g and g[2] and (w := _pitch(xs)))
        mono_w = widths[len(widths) // 2] if widths else None  # one monospaced glyph's width on this page
        out, prev = [], None
        for (text, _, xs), g in zip(lines, geo):
            ln = text.strip()
            if g and prev and out and not g[2] and g[0] >= prev[3] - 1 and \
                    min(g[5], prev[5]) - max(g[4], prev[4]) > 0.3 * min(g[5] - g[4], prev[5] - prev[4]):
                # PDFium breaks a line at a superscript or subscript (a footnote mark, an exponent):
                # the piece sits in the same band, right of the previous piece
                # (a mark set against the word; a page number far to the right of a title is a word of its own)
                close = g[0] - prev[3] < 0.5 * (prev[5] - prev[4])
                out[-1] += ("" if close and (len(ln) <= 3 or ln[:1] in ",.;:)") else " ") + ln
                prev = (prev[0], prev[1], prev[2], g[3], min(prev[4], g[4]), max(prev[5], g[5]))
                continue
            prev = g if g else prev
            if g and g[2] and margins:
                ref = max((m for m in margins if m <= g[0] + 1), default=margins[0])
                indent = int(round((g[0] - ref) / (mono_w or g[1])))
                ln = _columns(text, xs, mono_w or g[1])
                ln = CODE_MARK + " " * (indent if 0 < indent <= 40 else 0) + ln
            out.append(ln)
        page_text = "\n".join(out)
    finally:
        tp.close()
    # PDFium's line-end hyphen: at a line end it is a hyphen; inside a word (PDFium already joined
    # the two halves) it stays U+FFFE until join_paragraphs decides, as for any line-end hyphen
    page_text = re.sub("[\ufffe\x02]\n", "-\n", page_text).replace("\x02", "\ufffe")
    return re.sub("[\x00-\x08\x0b-\x1f]", "", page_text)  # PDFium's codes for unmapped math glyphs
