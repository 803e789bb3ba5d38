"""Which PDF library extracts text best and fastest, on PDFs of five different makers? Prints tables.

    apt-get install r-doc-pdf r-doc-info why3-doc-pdf why3-doc-html valgrind libreoffice-writer-nogui
    pip install pymupdf pypdfium2            # pypdf and pypdfium2 are in requirements.txt
    .venv/bin/python bench/pdf_extractors.py
    .venv/bin/python bench/pdf_extractors.py --libs pypdf pypdfium2 --repeat 3

Documents (each with the reference text its maker published beside it, where there is one):

* LaTeX, justified: the Why3 manual (Sphinx → LaTeX → pdfTeX, 184 pages; ``why3-doc-pdf``),
  reference: the same manual as HTML (``why3-doc-html``);
* Texinfo: the R manuals (``r-doc-pdf``; ``refman.pdf`` left out), reference: their Info version
  (``r-doc-info``, same R release);
* DocBook: the Valgrind manual (DocBook XSL → Apache FOP, 397 pages; ``valgrind``), reference:
  its HTML version in the same package;
* a word processor: the GNU GPL-3 text (``/usr/share/common-licenses/GPL-3``) set as justified
  paragraphs in LibreOffice Writer and exported to PDF by ``soffice --headless`` (made here,
  into ``--workdir``), reference: the text itself;
* a two-column arXiv paper (revtex): the fixture paper ``1111.2011v2.pdf``; no reference text.

Extractors: pypdf (``page.extract_text()``), pymupdf (``page.get_text()``), pypdfium2 (PDFium,
``textpage.get_text_range()``), pdfplumber (``page.extract_text()``) when installed, and ``kit``:
``helpers.dataset.pdf.extract_pages`` as notebook 02 runs it (PDFium plus its line geometry: super- and
subscripts put back on their line, code lines indented). Metrics per library and document:

* seconds and ms per page (one process, one thread, best of ``--repeat`` runs);
* word recall / precision against the reference, as bags of lowercase words of 3+ letters;
* glued/10k: per 10k words, runs of 25+ letters (spaces lost wholesale), and ``joined/10k``: words
  of 10+ letters that are not in the reference but split into 2-4 of its words
  (``calledwhyml`` → called + why + ml): missing spaces of any length, the issue's measure;
* bad: U+FFFD replacement characters and ``(cid:N)`` codes (unmapped glyphs).
"""
from __future__ import annotations

import argparse
import collections
import functools
import gzip
import html
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers.common.resources import fixture_pdf  # noqa: E402
from offline import r_manuals  # noqa: E402

INFO_DIR = Path("/usr/share/info")
WHY3_PDF = Path("/usr/share/doc/why3-doc-pdf/manual.pdf")
WHY3_HTML = Path("/usr/share/doc/why3-doc-html/html")
VALGRIND_PDF = Path("/usr/share/doc/valgrind/valgrind_manual.pdf.gz")
VALGRIND_HTML = Path("/usr/share/doc/valgrind/html")
GPL3 = Path("/usr/share/common-licenses/GPL-3")
WORD = re.compile(r"[a-z]{3,}")


def extract_pypdf(path: Path) -> list[str]:
    import pypdf
    return [p.extract_text() or "" for p in pypdf.PdfReader(str(path)).pages]


def extract_pdfplumber(path: Path) -> list[str]:
    import pdfplumber
    with pdfplumber.open(str(path)) as pdf:
        return [p.extract_text() or "" for p in pdf.pages]


def extract_pymupdf(path: Path) -> list[str]:
    import pymupdf
    with pymupdf.open(str(path)) as doc:
        return [p.get_text() for p in doc]


def extract_pypdfium2(path: Path) -> list[str]:
    import pypdfium2 as pdfium
    doc = pdfium.PdfDocument(str(path))
    try:
        out = []
        for i in range(len(doc)):
            tp = doc[i].get_textpage()
            out.append(tp.get_text_range().replace("\r\n", "\n"))
            tp.close()
        return out
    finally:
        doc.close()


def extract_kit(path: Path) -> list[str]:
    from helpers.dataset.pdf_extract import extract_pages
    from helpers.dataset.pdf_layout import CODE_MARK
    pages, _ = extract_pages(path, engine="pdfium")
    return [p.replace(CODE_MARK, "").replace("\ufffe", "-") for p in pages]  # the cleaner decides each line-end hyphen


EXTRACTORS = {"pypdf": extract_pypdf, "pymupdf": extract_pymupdf, "pypdfium2": extract_pypdfium2,
              "kit": extract_kit, "pdfplumber": extract_pdfplumber}
MODULE = {"pypdf": "pypdf", "pymupdf": "pymupdf", "pypdfium2": "pypdfium2", "kit": "pypdfium2",
          "pdfplumber": "pdfplumber"}


def _html_text(folder: Path) -> str:
    parts = []
    for f in sorted(folder.glob("*.html")):
        t = f.read_text(encoding="utf-8", errors="replace")
        t = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", t)
        parts.append(html.unescape(re.sub(r"<[^>]+>", " ", t)))
    return "\n".join(parts)


def word_processor_pdf(workdir: Path) -> Path | None:
    """GPL-3 as justified paragraphs, exported to PDF by LibreOffice Writer (headless)."""
    soffice = shutil.which("soffice")
    if soffice is None or not GPL3.exists():
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", GPL3.read_text()) if p.strip()]
    src = workdir / "GPL-3.html"
    src.write_text(
        "<html><head><meta charset='utf-8'></head><body style='font-family: Liberation Serif; "
        "font-size: 11pt'>"
        + "\n".join(f'<p style="text-align: justify">{html.escape(p)}</p>' for p in paras)
        + "</body></html>",
        encoding="utf-8",
    )
    subprocess.run([soffice, "--headless", "--convert-to", "pdf:writer_pdf_Export", "--outdir", str(workdir), str(src)],
                   check=True, capture_output=True, timeout=300)
    return workdir / "GPL-3.pdf"


def documents(workdir: Path) -> list[tuple[str, Path, str | None]]:
    """(maker, pdf, reference text) for every document found on this machine."""
    docs = []
    if WHY3_PDF.exists():
        docs.append(("LaTeX (Sphinx), justified", WHY3_PDF, _html_text(WHY3_HTML) if WHY3_HTML.is_dir() else None))
    for p in r_manuals():
        parts = sorted(INFO_DIR.glob(p.stem + ".info*.gz"))
        ref = "\n".join(gzip.open(f, "rt", encoding="utf-8", errors="replace").read() for f in parts) if parts else None
        docs.append(("Texinfo", p, ref))
    if VALGRIND_PDF.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        vg = workdir / "valgrind_manual.pdf"
        vg.write_bytes(gzip.decompress(VALGRIND_PDF.read_bytes()))
        docs.append(("DocBook (XSL + FOP)", vg, _html_text(VALGRIND_HTML) if VALGRIND_HTML.is_dir() else None))
    wp = word_processor_pdf(workdir)
    if wp is not None:
        docs.append(("word processor (LibreOffice)", wp, GPL3.read_text()))
    if fixture_pdf():
        docs.append(("LaTeX two-column (revtex, arXiv)", fixture_pdf(), None))
    return docs


def _splits(word: str, vocab: frozenset, max_parts: int = 4) -> bool:
    """Can ``word`` be cut into 2..max_parts words of ``vocab``?"""
    @functools.lru_cache(maxsize=None)
    def parts(i: int) -> int:  # fewest vocabulary words that make word[i:], 99 if none
        if i == len(word):
            return 0
        best = 99
        for j in range(len(word), i + 1, -1):
            if word[i:j] in vocab:
                best = min(best, 1 + parts(j))
        return best
    return 2 <= parts(0) <= max_parts


def score(text: str, ref_text: str | None) -> dict:
    words = WORD.findall(text.lower())
    got = collections.Counter(words)
    runs = re.findall(r"[A-Za-z]+", text)
    out = {"chars": len(text), "words": len(words),
           "glued_per_10k": 1e4 * sum(1 for w in runs if len(w) >= 25) / max(1, len(runs)),
           "bad": text.count("\ufffd") + len(re.findall(r"\(cid:\d+\)", text))}
    if ref_text is not None:
        ref = collections.Counter(WORD.findall(ref_text.lower()))
        matched = sum((got & ref).values())
        out["recall"] = matched / max(1, sum(ref.values()))
        out["precision"] = matched / max(1, sum(got.values()))
        vocab = frozenset(w for w in re.findall(r"[a-z]+", ref_text.lower()) if len(w) >= 2 or w in ("a", "i"))
        joined = sum(n for w, n in got.items() if len(w) >= 10 and w not in ref and _splits(w, vocab))
        out["joined_per_10k"] = 1e4 * joined / max(1, len(words))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--libs", nargs="*", default=None, choices=list(EXTRACTORS))
    ap.add_argument("--repeat", type=int, default=1, help="timing runs per library and file (best is kept)")
    ap.add_argument("--workdir", default="/tmp/pdf-bench", help="where the DocBook and word-processor PDFs are put")
    a = ap.parse_args(argv)
    import importlib.util
    libs = a.libs or [lib for lib in EXTRACTORS if importlib.util.find_spec(MODULE[lib]) is not None]
    docs = documents(Path(a.workdir))
    if not docs:
        print("No PDFs: see the apt-get line in this script's docstring.")
        return 2
    for lib in libs:  # import time is not extraction time
        __import__(MODULE[lib])
    rows = []
    totals = {lib: collections.defaultdict(lambda: collections.Counter()) for lib in libs}
    for maker, pdf, ref in docs:
        for lib in libs:
            best = None
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                pages = EXTRACTORS[lib](pdf)
                secs = time.perf_counter() - t0
                best = secs if best is None else min(best, secs)
            s = score("\n".join(pages), ref)
            rows.append((maker, pdf.name, lib, len(pages), best, s))
            t = totals[lib][maker]
            t["pages"] += len(pages)
            t["secs"] += best
            t["words"] += s["words"]
            t["glued"] += s["glued_per_10k"] * s["words"] / 1e4
            t["joined"] += s.get("joined_per_10k", 0) * s["words"] / 1e4
            t["rec"] += s.get("recall", 0)
            t["n_ref"] += "recall" in s
            t["docs"] += 1
            print(f"  {pdf.name:<24} {lib:<10} {len(pages):>4} pages {best:7.2f}s", file=sys.stderr, flush=True)
    print("| maker | document | library | pages | seconds | ms/page | word recall | word precision | glued/10k | "
          "joined/10k | bad glyphs |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for maker, name, lib, n, secs, s in rows:
        rec = f"{s['recall']:.3f}" if "recall" in s else "-"
        prec = f"{s['precision']:.3f}" if "precision" in s else "-"
        joined = f"{s['joined_per_10k']:.1f}" if "joined_per_10k" in s else "-"
        print(f"| {maker} | {name} | {lib} | {n} | {secs:.2f} | {1000 * secs / max(1, n):.0f} | {rec} | {prec} | "
              f"{s['glued_per_10k']:.1f} | {joined} | {s['bad']} |")
    print()
    makers = list(dict.fromkeys(m for m, *_ in rows))
    print("| library | " + " | ".join(f"{m}: joined/10k, recall" for m in makers) + " | ms/page (all) |")
    print("|---|" + "---:|" * (len(makers) + 1))
    for lib in libs:
        cells = []
        for m in makers:
            t = totals[lib][m]
            joined = 1e4 * t["joined"] / max(1, t["words"])
            rec = f"{t['rec'] / t['n_ref']:.3f}" if t["n_ref"] else "-"
            cells.append(f"{joined:.1f}, {rec}" if t["n_ref"] else f"glued {1e4 * t['glued'] / max(1, t['words']):.1f}")
        pages = sum(totals[lib][m]["pages"] for m in makers)
        secs = sum(totals[lib][m]["secs"] for m in makers)
        print(f"| {lib} | " + " | ".join(cells) + f" | {1000 * secs / max(1, pages):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
