"""Which PDF text extractor, on PDFs of a dozen makers (``bench/pdf_makers.py``)? Prints the tables of
``bench/RESULTS.md``, "PDF extraction".

    apt-get install poppler-utils ghostscript groff pandoc doxygen texlive-latex-base \\
        texlive-latex-recommended texlive-fonts-recommended texlive-latex-extra texlive-plain-generic \\
        lmodern libreoffice-writer-nogui dblatex docbook-xml
    pip install --target /tmp/benchsite pymupdf==2.0 pdfminer.six==20260107   # comparison only
    PYTHONPATH=$PWD .venv/bin/python bench/pdf_extractors.py --out /tmp/pdf-makers

Candidates: ``pdftotext`` (poppler, the reference), ``pypdfium2`` (PDFium's ``get_text_range``),
``pypdf``, ``pdfminer.six``, ``pymupdf`` (from ``--site``, appended to ``sys.path`` so the kit's
own packages win), ``kit-extract`` (``helpers.dataset.pdf_extract.extract_pages``: PDFium after
``pdf_repair``, with its line layout) and ``kit-clean`` (``read_pdf``: extraction and cleaning,
the text notebook 02 sends the teacher). Per maker and candidate:

* split/10k: adjacent words ``a b`` whose join ``ab`` is a word of the source text where the
  source never has ``a b`` (``v alue``); glued/10k: words not in the source that split into 2-4 of
  its words (``thefunction``). The source is the text that was set, where the maker was given it;
  otherwise pdftotext's own text (then pdftotext scores 0 by construction). Line-end hyphens are
  joined first in every candidate;
* 5-gram recall: the share of pdftotext's word 5-grams that the candidate has;
* code kept: the share of the listings' lines (8+ characters) that come out as one line of their
  own (a leading line number allowed); indentation kept: the share of indented ones that keep
  their indentation relative to the line that opens their listing (``pdftotext -layout`` is the
  reference here: plain ``pdftotext`` drops indentation);
* heads left: running heads (first/last line of a pdftotext page, digits masked, on 3+ pages)
  still in the text, as a share of their occurrences;
* ms/page: one process, one thread, best of ``--repeat``.
"""
from __future__ import annotations

import argparse
import collections
import functools
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pdf_makers  # noqa: E402


def extract_pdftotext(path: Path) -> list[str]:
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True).stdout
    return out.decode("utf-8", "replace").split("\f")[:-1] or [""]


def extract_pdftotext_layout(path: Path) -> list[str]:
    out = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(path), "-"], capture_output=True,
                         check=True).stdout
    return out.decode("utf-8", "replace").split("\f")[:-1] or [""]


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


def extract_pypdf(path: Path) -> list[str]:
    import pypdf
    return [p.extract_text() or "" for p in pypdf.PdfReader(str(path)).pages]


def extract_pdfminer(path: Path) -> list[str]:
    from pdfminer.high_level import extract_text
    return extract_text(str(path)).split("\f")


def extract_pymupdf(path: Path) -> list[str]:
    import pymupdf
    with pymupdf.open(str(path)) as doc:
        return [p.get_text() for p in doc]


def extract_kit(path: Path) -> list[str]:
    from helpers.dataset.pdf_extract import extract_pages
    from helpers.dataset.pdf_layout import CODE_MARK
    pages, _ = extract_pages(path, engine="pdfium")
    return [p.replace(CODE_MARK, "") for p in pages]


def extract_kit_clean(path: Path) -> list[str]:
    from helpers.dataset.pdf import read_pdf
    return [read_pdf(path).text]


EXTRACTORS = {"pdftotext": extract_pdftotext, "pdftotext -layout": extract_pdftotext_layout,
              "pypdfium2": extract_pypdfium2, "pypdf": extract_pypdf,
              "pdfminer.six": extract_pdfminer, "pymupdf": extract_pymupdf, "kit-extract": extract_kit,
              "kit-clean": extract_kit_clean}
MODULE = {"pypdfium2": "pypdfium2", "pypdf": "pypdf", "pdfminer.six": "pdfminer", "pymupdf": "pymupdf",
          "kit-extract": "pypdfium2", "kit-clean": "pypdfium2"}


def words(text: str) -> list[str]:
    """Lowercase words, line-end hyphens and PDFium's hyphen marks joined first."""
    text = re.sub(r"([A-Za-z])[-\u2010\u00ad\ufffe\x02]\s*\n\s*([A-Za-z])", r"\1\2", text)
    text = re.sub(r"([A-Za-z])[\ufffe\x02]([A-Za-z])", r"\1\2", text)
    return [w.lower() for w in re.findall(r"[A-Za-z]+", text)]


def split_glued(text: str, source: str) -> tuple[float, float, list[str]]:
    """Split and glued words per 10k words of ``text`` against the words of ``source``, and examples."""
    ref = words(source)
    vocab, pairs = collections.Counter(ref), set(zip(ref, ref[1:]))
    got = words(text)
    splits = [f"{a} {b}" for a, b in zip(got, got[1:]) if len(a + b) >= 4 and a + b in vocab and (a, b) not in pairs]
    parts_of = frozenset(w for w in vocab if len(w) >= 2 or w in ("a", "i"))

    @functools.lru_cache(maxsize=None)
    def glued(w: str) -> bool:
        @functools.lru_cache(maxsize=None)
        def parts(i: int) -> int:
            if i == len(w):
                return 0
            return min((1 + parts(j) for j in range(len(w), i + 1, -1) if w[i:j] in parts_of), default=99)
        return 2 <= parts(0) <= 4
    glue = [w for w in got if len(w) >= 6 and w not in vocab and glued(w)]
    n = max(1, len(got))
    return 1e4 * len(splits) / n, 1e4 * len(glue) / n, (splits[:3] + glue[:3])


def recall5(text: str, ref: str) -> float:
    def grams(t):
        w = words(t)
        return collections.Counter(zip(w, w[1:], w[2:], w[3:], w[4:]))
    r = grams(ref)
    return sum((grams(text) & r).values()) / max(1, sum(r.values()))


CALLOUT_RE = re.compile("\\s*\\d+\u2708$")  # dblatex's callout mark after a code line, as PDFs map its glyph


def code_kept(text: str, code: list[str]) -> float | None:
    want = [re.sub(r"\s+", " ", ln.strip()) for ln in code if len(ln.strip()) >= 8]
    if not want:
        return None
    text = "\n".join(CALLOUT_RE.sub("", ln) for ln in text.splitlines())
    lines = {re.sub(r"\s+", " ", re.sub(r"^\s*\d+\s+", "", ln).strip()) for ln in text.splitlines()}
    lines |= {re.sub(r"\s+", " ", ln.strip()) for ln in text.splitlines()}
    return sum(w in lines for w in want) / len(want)


def _key(line: str) -> str:
    return re.sub(r"\s+", "", re.sub(r"\d+", "#", line))


def indent_kept(text: str, code: list[str]) -> float | None:
    """The share of indented code lines (8+ characters) that come out indented as in the source,
    relative to the unindented line that opens their listing (a page margin or a line number
    before both is allowed)."""
    def key(ln: str) -> str:
        return re.sub(r"\s+", " ", ln.strip())
    leads: dict[str, list[int]] = collections.defaultdict(list)
    for ln in text.splitlines():
        body = re.sub(r"^(\s*)\d+ ", r"\1", CALLOUT_RE.sub("", ln.rstrip()))  # Doxygen's line numbers
        leads[key(body)].append(len(body) - len(body.lstrip()))
    kept = total = 0
    anchor = None
    for ln in code:
        indent = len(ln) - len(ln.lstrip())
        if ln.strip() and indent == 0:
            anchor = key(ln)
        elif anchor and indent >= 4 and len(ln.strip()) >= 8:
            total += 1
            kept += any(b - a == indent for a in leads.get(anchor, []) for b in leads.get(key(ln), []))
    return kept / total if total else None


def running_heads(ref_pages: list[str]) -> set[str]:
    edges = collections.Counter()
    for p in ref_pages:
        lines = [ln.strip() for ln in p.splitlines() if ln.strip()]
        edges.update({_key(ln) for ln in lines[:1] + lines[-1:] if sum(c.isalpha() for c in ln) >= 4})
    return {k for k, n in edges.items() if n >= 3}


def heads_left(text: str, heads: set[str], ref_pages: list[str]) -> float | None:
    """Lines of ``text`` that start or end with a running head, per page that has one in pdftotext."""
    if not heads:
        return None
    total = sum(1 for p in ref_pages if any(_key(ln) in heads for ln in p.splitlines()))
    left = sum(1 for ln in text.splitlines()
               if (k := _key(ln)) and any(k.startswith(h) or k.endswith(h) for h in heads))
    return min(1.0, left / max(1, total))


def measure(libs, docs, repeat: int):
    rows = []
    for maker, pdf, source, code in docs:
        ref_pages = extract_pdftotext(pdf)
        ref = "\n".join(ref_pages)
        heads = running_heads(ref_pages)
        for lib in libs:
            best, pages = None, None
            for _ in range(repeat):
                t0 = time.perf_counter()
                pages = EXTRACTORS[lib](pdf)
                secs = time.perf_counter() - t0
                best = secs if best is None else min(best, secs)
            text = "\n".join(pages)
            split, glue, examples = split_glued(text, source or ref)
            rows.append({"maker": maker, "doc": pdf.name, "lib": lib, "pages": len(ref_pages), "split": split,
                         "glued": glue, "recall": recall5(text, ref), "code": code_kept(text, code),
                         "indent": indent_kept(text, code),
                         "heads": heads_left(text, heads, ref_pages), "ms": 1000 * best / max(1, len(ref_pages)),
                         "source": source is not None, "examples": examples})
            print(f"  {maker:<36} {lib:<13} {best:6.2f}s {examples}", file=sys.stderr, flush=True)
    return rows


def _fmt(v, pattern):
    return "-" if v is None else pattern.format(v)


def print_tables(rows) -> None:
    print("| maker | document | pages | reference words | candidate | split/10k | glued/10k | 5-gram recall | "
          "code lines kept | indentation kept | heads left | ms/page |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['maker']} | {r['doc']} | {r['pages']} | {'source' if r['source'] else 'pdftotext'} | {r['lib']} | "
              f"{r['split']:.1f} | {r['glued']:.1f} | {r['recall']:.3f} | {_fmt(r['code'], '{:.1%}')} | "
              f"{_fmt(r['indent'], '{:.1%}')} | "
              f"{_fmt(r['heads'], '{:.0%}')} | {r['ms']:.0f} |")
    print()
    libs = list(dict.fromkeys(r["lib"] for r in rows))
    print("| candidate | makers | split/10k (mean) | glued/10k (mean) | 5-gram recall (mean) | code lines kept "
          "(mean) | indentation kept (mean) | worst split/10k | worst glued/10k | ms/page (mean) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for lib in libs:
        rs = [r for r in rows if r["lib"] == lib]
        src = [r for r in rs if r["source"]]
        codes = [r["code"] for r in rs if r["code"] is not None]
        indents = [r["indent"] for r in rs if r["indent"] is not None]

        def mean(xs):
            return sum(xs) / max(1, len(xs))
        worst_s = max(src, key=lambda r: r["split"]) if src else None
        worst_g = max(src, key=lambda r: r["glued"]) if src else None
        print(f"| {lib} | {len(rs)} | {mean([r['split'] for r in src]):.1f} | {mean([r['glued'] for r in src]):.1f} | "
              f"{mean([r['recall'] for r in rs]):.3f} | {mean(codes):.1%} | {mean(indents):.1%} | "
              f"{worst_s['split']:.1f} ({worst_s['maker']}) | {worst_g['glued']:.1f} ({worst_g['maker']}) | "
              f"{mean([r['ms'] for r in rs]):.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--libs", nargs="*", default=None, choices=list(EXTRACTORS))
    ap.add_argument("--repeat", type=int, default=1, help="timing runs per candidate and file (best is kept)")
    ap.add_argument("--out", default="/tmp/pdf-makers", help="where the makers' PDFs are built")
    ap.add_argument("--site", default=os.environ.get("PDF_BENCH_SITE", "/tmp/benchsite"),
                    help="a pip --target folder with pymupdf and pdfminer.six (appended to sys.path)")
    ap.add_argument("--makers", nargs="*", default=None, help="only makers whose name contains one of these")
    ap.add_argument("--kit-root", help="measure the kit-* candidates of another checkout (an earlier commit's tree)")
    a = ap.parse_args(argv)
    sys.path.append(a.site)
    if a.kit_root:
        sys.path.insert(0, str(Path(a.kit_root).resolve()))
    libs = a.libs or [lib for lib in EXTRACTORS if lib not in MODULE or importlib.util.find_spec(MODULE[lib])]
    docs = pdf_makers.makers(Path(a.out))
    if a.makers:
        docs = [d for d in docs if any(m.lower() in d[0].lower() for m in a.makers)]
    if not docs:
        print("No PDFs: see the apt-get line in this script's docstring.")
        return 2
    for lib in libs:  # import time is not extraction time
        if lib in MODULE:
            __import__(MODULE[lib])
    rows = measure(libs, docs, a.repeat)
    if a.kit_root:
        for r in rows:
            r["lib"] += f" ({Path(a.kit_root).name})" if r["lib"].startswith("kit") else ""
    print_tables(rows)
    versions = {m: getattr(sys.modules.get(m), "__version__", "?") for m in ("pypdf", "pdfminer")}
    print(f"\nversions: pypdfium2 {_pdfium_version()}, pypdf {versions['pypdf']}, pdfminer.six {versions['pdfminer']}, "
          f"pymupdf {_mupdf_version()}, {_poppler_version()}")
    return 0


def _pdfium_version() -> str:
    import pypdfium2
    return f"{pypdfium2.version.PYPDFIUM_INFO} (PDFium {pypdfium2.version.PDFIUM_INFO})"


def _mupdf_version() -> str:
    mod = sys.modules.get("pymupdf")
    return getattr(mod, "VersionBind", "?") if mod else "not installed"


def _poppler_version() -> str:
    out = subprocess.run(["pdftotext", "-v"], capture_output=True, text=True)
    return (out.stderr or out.stdout).splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
