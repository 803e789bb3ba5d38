"""Which PDF library extracts text best and fastest on our real PDFs? Prints a table.

    .venv/bin/python bench/pdf_extractors.py            # R manuals + the fixture arXiv paper
    .venv/bin/python bench/pdf_extractors.py --libs pypdf pymupdf

Extractors: pypdf (``page.extract_text()``), pdfplumber (``page.extract_text()``, pdfminer.six
underneath) and pymupdf (``page.get_text()``). Metrics per library and document:

* seconds and ms per page (one process, one thread, best of ``--repeat`` runs);
* word recall / precision against a reference text: the R manuals' Info version from Debian's
  ``r-doc-info`` (same R release as ``r-doc-pdf``; ``apt-get install r-doc-info``), compared as
  bags of lowercase words of 3+ letters. Recall says how much of the prose came out; precision
  says how much of what came out is real words of the manual (glued or split words, ligature
  debris and page furniture lower it). The arXiv paper has no reference text: ``-``.
* glued: words of 25+ letters per 10k words (missing spaces);
* bad: U+FFFD replacement characters and ``(cid:N)`` codes (unmapped glyphs).
"""
from __future__ import annotations

import argparse
import collections
import gzip
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.fixtures import fixture_pdf, r_manuals  # noqa: E402

INFO_DIR = Path("/usr/share/info")
WORD = re.compile(r"[a-z]{3,}")


def extract_pypdf(path: Path) -> tuple[list[str], int]:
    import pypdf
    reader = pypdf.PdfReader(str(path))
    pages = [p.extract_text() or "" for p in reader.pages]
    return pages, len(pages)


def extract_pdfplumber(path: Path) -> tuple[list[str], int]:
    import pdfplumber
    with pdfplumber.open(str(path)) as pdf:
        pages = [p.extract_text() or "" for p in pdf.pages]
    return pages, len(pages)


def extract_pymupdf(path: Path) -> tuple[list[str], int]:
    import pymupdf
    with pymupdf.open(str(path)) as doc:
        pages = [p.get_text() for p in doc]
    return pages, len(pages)


EXTRACTORS = {"pypdf": extract_pypdf, "pdfplumber": extract_pdfplumber, "pymupdf": extract_pymupdf}


def reference_words(pdf: Path) -> collections.Counter | None:
    """Words of the Info manual with the same name (all its split parts), or None."""
    parts = sorted(INFO_DIR.glob(pdf.stem + ".info*.gz"))
    if not parts:
        return None
    text = "\n".join(gzip.open(p, "rt", encoding="utf-8", errors="replace").read() for p in parts)
    return collections.Counter(WORD.findall(text.lower()))


def score(text: str, ref: collections.Counter | None) -> dict:
    words = WORD.findall(text.lower())
    got = collections.Counter(words)
    letters_runs = re.findall(r"[A-Za-z]+", text)
    glued = sum(1 for w in letters_runs if len(w) >= 25)
    out = {"chars": len(text), "words": len(words),
           "glued_per_10k": 1e4 * glued / max(1, len(letters_runs)),
           "bad": text.count("\ufffd") + len(re.findall(r"\(cid:\d+\)", text))}
    if ref is not None:
        matched = sum((got & ref).values())
        out["recall"] = matched / max(1, sum(ref.values()))
        out["precision"] = matched / max(1, sum(got.values()))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--libs", nargs="*", default=list(EXTRACTORS), choices=list(EXTRACTORS))
    ap.add_argument("--repeat", type=int, default=1, help="timing runs per library and file (best is kept)")
    a = ap.parse_args(argv)
    pdfs = [p for p in r_manuals() if "refman" not in p.name]  # the 2,415-page reference is not prose
    if fixture_pdf():
        pdfs.append(fixture_pdf())
    if not pdfs:
        print("No PDFs: apt-get install r-doc-pdf, and/or put ../shared/fixtures/arxiv in place.")
        return 2
    for lib in a.libs:  # import time is not extraction time
        __import__({"pymupdf": "pymupdf", "pdfplumber": "pdfplumber", "pypdf": "pypdf"}[lib])
    rows = []
    totals = {lib: collections.Counter() for lib in a.libs}
    for pdf in pdfs:
        ref = reference_words(pdf)
        for lib in a.libs:
            best = None
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                pages, n = EXTRACTORS[lib](pdf)
                secs = time.perf_counter() - t0
                best = secs if best is None else min(best, secs)
            s = score("\n".join(pages), ref)
            rows.append((pdf.name, lib, n, best, s))
            tot = totals[lib]
            tot["pages"] += n
            tot["secs"] += best
            tot["bad"] += s["bad"]
            if "recall" in s:
                tot["rec_sum"] += s["recall"]
                tot["prec_sum"] += s["precision"]
                tot["n_ref"] += 1
            print(f"  {pdf.name:<18} {lib:<10} {n:>4} pages {best:7.2f}s", file=sys.stderr, flush=True)
    print("| document | library | pages | seconds | ms/page | chars | word recall | word precision | glued/10k words | bad glyphs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, lib, n, secs, s in rows:
        rec = f"{s['recall']:.3f}" if "recall" in s else "-"
        prec = f"{s['precision']:.3f}" if "precision" in s else "-"
        print(f"| {name} | {lib} | {n} | {secs:.2f} | {1000 * secs / max(1, n):.0f} | {s['chars']:,} | {rec} | {prec} | "
              f"{s['glued_per_10k']:.1f} | {s['bad']} |")
    print()
    print("| library | pages | seconds | ms/page | mean word recall (R manuals) | mean word precision (R manuals) | bad glyphs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for lib, t in totals.items():
        n_ref = max(1, t["n_ref"])
        print(f"| {lib} | {t['pages']} | {t['secs']:.1f} | {1000 * t['secs'] / max(1, t['pages']):.0f} | "
              f"{t['rec_sum'] / n_ref:.3f} | {t['prec_sum'] / n_ref:.3f} | {t['bad']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
