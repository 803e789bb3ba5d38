"""The PDFs of the extractor benchmark (``bench/pdf_extractors.py``) and of the PDF tests: the kit's
own text (prose from CONTRIBUTING.md, code listings from ``helpers/``) set by each maker's own tool,
plus Debian's documentation PDFs where they are installed.

    apt-get install poppler-utils ghostscript groff pandoc doxygen texlive-latex-base \\
        texlive-latex-recommended texlive-fonts-recommended texlive-latex-extra texlive-plain-generic \\
        lmodern libreoffice-writer-nogui dblatex docbook-xml
    .venv/bin/python bench/pdf_makers.py --out /tmp/pdf-makers          # builds every maker it can
    .venv/bin/python bench/pdf_makers.py --material tests/material      # the PDFs the tests ship

Each maker gives ``(maker, pdf, source text or None, code lines)``: the source text is what was set
(the reference vocabulary for split and glued words), the code lines those set as listings."""
from __future__ import annotations

import argparse
import ast
import gzip
import html
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_FILES = ["helpers/dataset/pdf_paragraphs.py", "helpers/dataset/pdf_furniture.py", "helpers/dataset/chunking.py",
              "helpers/dataset/pdf_repair.py", "helpers/core/jsonl.py"]
BASH_MAN = Path("/usr/share/man/man1/bash.1.gz")
VALGRIND_PDF = Path("/usr/share/doc/valgrind/valgrind_manual.pdf.gz")
BZIP2_PDF = Path("/usr/share/doc/bzip2/manual.pdf.gz")
R_INTRO = ROOT / "tests" / "material" / "R-intro.pdf"
ARXIV_PDF = ROOT / "helpers" / "resources" / "arxiv" / "1111.2011v2.pdf"  # the fixture paper


def prose_paragraphs(limit: int = 40) -> list[str]:
    """Paragraphs of plain prose from CONTRIBUTING.md and README.md (markup removed, tables and
    lists of links left out)."""
    out = []
    texts = [(ROOT / name).read_text(encoding="utf-8") for name in ("CONTRIBUTING.md", "README.md")]
    texts += [ast.get_docstring(ast.parse(f.read_text(encoding="utf-8"))) or ""
              for f in sorted(ROOT.glob("helpers/*/*.py"))]
    for text in texts:
        for block in re.split(r"\n\s*\n", text):
            lines = [ln.strip().lstrip("-*0123456789. ").strip() for ln in block.splitlines()]
            if not lines or block.lstrip().startswith(("#", "|", "```", "    ")):
                continue
            p = " ".join(ln for ln in lines if ln)
            p = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", p).replace("**", "").replace("`", "")
            p = re.sub(r"[^\x20-\x7e]", " ", p)
            if len(p.split()) >= 25:
                out.append(re.sub(r"\s+", " ", p).strip())
    return out[:limit]


def code_listings(width: int = 64, limit: int = 12) -> list[list[str]]:
    """Functions of the kit (docstrings left out) whose lines fit ``width`` characters."""
    out = []
    for f in sorted(ROOT.glob("helpers/*/*.py")):
        src = f.read_text(encoding="utf-8")
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if not isinstance(node, ast.FunctionDef):
                continue
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) and \
                isinstance(getattr(node.body[0], "value", None), ast.Constant) else node.body
            if not body:
                continue
            code = [lines[node.lineno - 1]] + lines[body[0].lineno - 1:node.end_lineno]
            code = textwrap.dedent("\n".join(code)).splitlines()
            if 5 <= len(code) <= 24 and max(map(len, code)) <= width and not any("\\" in ln for ln in code):
                out.append(code)
    return out[:limit]


def document(n_sections: int = 8, width: int = 64) -> list[tuple[str, list[str], list[str]]]:
    """Sections of (title, paragraphs, code lines)."""
    paras, codes = prose_paragraphs(), code_listings(width)
    titles = ["Layout", "Imports", "Files between notebooks", "Configuration", "Notes in their place",
              "Packaging", "Tests", "Notebooks", "Data contracts", "Bad input"]
    return [(titles[i % len(titles)], paras[3 * i:3 * i + 3], codes[i % len(codes)]) for i in range(n_sections)]


def source_text(doc) -> str:
    return "\n\n".join(f"{t}\n\n" + "\n\n".join(ps) + "\n\n" + "\n".join(code) for t, ps, code in doc)


def all_code(doc) -> list[str]:
    return [ln for _, _, code in doc for ln in code]


def _roff(doc, title: str = "KITMANUAL") -> str:
    def esc(s: str) -> str:
        s = s.replace("\\", "\\e")
        return re.sub(r"^([.'])", r"\\&\1", s)
    out = [f'.TH {title} 7 "2026" "llama-notebook-kit" "Kit Manual"']
    for t, ps, code in doc:
        out.append(f".SH {t.upper()}")
        for p in ps:  # a few words in bold and italic, as man pages set option and file names
            words = p.replace("\\", "\\e").split()
            for k in range(3, len(words), 11):
                words[k] = f"\\fB{words[k]}\\fR" if k % 2 else f"\\fI{words[k]}\\fR"
            # short source lines, as man pages are written: groff's PDF writer then ends a run with
            # a word space and an empty string, the shape PDFium misreads (pdf_repair)
            out += [".PP"] + [re.sub(r"^([.'])", r"\\&\1", ln) for ln in textwrap.wrap(" ".join(words), 60)]
        out += [".PP", ".EX"] + [esc(ln) if ln.strip() else "" for ln in code] + [".EE"]
    return "\n".join(out) + "\n"


def _run(cmd, cwd: Path, **kw) -> bool:
    try:
        kw.setdefault("stdout", subprocess.DEVNULL)
        subprocess.run(cmd, cwd=cwd, check=True, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=600,
                       **kw)
        return True
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError):
        return False


def groff_pdf(out: Path, doc) -> Path | None:
    """groff -Tpdf (gropdf) of the kit's text as a man page."""
    if not shutil.which("groff"):
        return None
    (out / "kit-groff.7").write_text(_roff(doc))
    with (out / "kit-groff.pdf").open("wb") as fh:
        ok = _run(["groff", "-Tpdf", "-man", "kit-groff.7"], out, stdout=fh)
    return out / "kit-groff.pdf" if ok else None


def groff_ghostscript(out: Path, doc) -> Path | None:
    """groff -Tps through Ghostscript's ps2pdf: listings in Ghostscript's Courier."""
    if not (shutil.which("groff") and shutil.which("ps2pdf")):
        return None
    (out / "kit-gs.7").write_text(_roff(doc, "KITGS"))
    with (out / "kit-gs.ps").open("wb") as fh:
        ok = _run(["groff", "-Tps", "-man", "kit-gs.7"], out, stdout=fh)
    return out / "kit-gs.pdf" if ok and _run(["ps2pdf", "kit-gs.ps", "kit-gs.pdf"], out) else None


def _latex(doc, options: str = "", packages: str = "", size: str = "") -> str:
    def esc(s: str) -> str:
        return re.sub(r"([&%$#_{}])", r"\\\1", s).replace("~", r"\textasciitilde{}").replace("^", r"\^{}")
    body = []
    for t, ps, code in doc:
        body += [f"\\section{{{t}}}"] + [esc(p) + "\n" for p in ps]
        body += [size + r"\begin{verbatim}"] + code + [r"\end{verbatim}" + (r"\normalsize" if size else "")]
    return (f"\\documentclass[{options}]{{article}}\n{packages}\\pagestyle{{headings}}\n\\begin{{document}}\n"
            "\\title{Kit Manual}\\author{llama-notebook-kit}\\maketitle\n\\tableofcontents\n"
            + "\n".join(body) + "\n\\end{document}\n")


def latex_pdf(out: Path, doc, name: str, options: str = "", packages: str = "", size: str = "",
              dvips: bool = False) -> Path | None:
    """pdfLaTeX (or latex + dvips + Ghostscript) of the kit's text in the article class."""
    if not shutil.which("pdflatex"):
        return None
    (out / f"{name}.tex").write_text(_latex(doc, options, packages, size))
    if dvips:
        ok = all(_run(["latex", "-interaction=nonstopmode", f"{name}.tex"], out) for _ in range(2)) and \
            _run(["dvips", "-q", "-o", f"{name}.ps", f"{name}.dvi"], out) and _run(["ps2pdf", f"{name}.ps"], out)
    else:
        ok = all(_run(["pdflatex", "-interaction=nonstopmode", f"{name}.tex"], out) for _ in range(2))
    return out / f"{name}.pdf" if ok and (out / f"{name}.pdf").exists() else None


def pandoc_pdf(out: Path, doc) -> Path | None:
    """pandoc Markdown → PDF (its LaTeX template, pdfLaTeX)."""
    if not (shutil.which("pandoc") and shutil.which("pdflatex")):
        return None
    md = "\n\n".join(f"# {t}\n\n" + "\n\n".join(ps) + "\n\n```\n" + "\n".join(code) + "\n```" for t, ps, code in doc)
    (out / "kit-pandoc.md").write_text(md)
    ok = _run(["pandoc", "kit-pandoc.md", "-o", "kit-pandoc.pdf", "--pdf-engine=pdflatex"], out)
    return out / "kit-pandoc.pdf" if ok else None


def libreoffice_pdf(out: Path, doc) -> Path | None:
    """LibreOffice Writer (headless) of the text as justified paragraphs and <pre> listings."""
    soffice = shutil.which("soffice")
    if not soffice:
        return None
    body = "".join(f"<h1>{html.escape(t)}</h1>" + "".join(f'<p style="text-align: justify">{html.escape(p)}</p>'
                                                            for p in ps)
                   + "<pre>" + html.escape("\n".join(code)) + "</pre>" for t, ps, code in doc)
    (out / "kit-writer.html").write_text(f"<html><head><meta charset='utf-8'></head><body>{body}</body></html>")
    ok = _run([soffice, "--headless", "--convert-to", "pdf:writer_pdf_Export", "--outdir", str(out),
               "kit-writer.html"], out)
    return out / "kit-writer.pdf" if ok else None


def dblatex_pdf(out: Path, doc) -> Path | None:
    """DocBook through dblatex: listings with callout marks (``<co/>``) on every third code line."""
    if not shutil.which("dblatex"):
        return None
    body = []
    for k, (t, ps, code) in enumerate(doc):
        marked = [html.escape(ln) + (f'<co id="c{k}_{j}"/>' if j % 3 == 0 and ln.strip() else "")
                  for j, ln in enumerate(code)]
        calls = "".join(f'<callout arearefs="c{k}_{j}"><para>Line {j + 1}.</para></callout>'
                        for j, ln in enumerate(code) if j % 3 == 0 and ln.strip())
        body.append(f"<section><title>{html.escape(t)}</title>"
                    + "".join(f"<para>{html.escape(p)}</para>" for p in ps)
                    + "<programlisting>" + "\n".join(marked) + "</programlisting>"
                    + f"<calloutlist>{calls}</calloutlist></section>")
    (out / "kit-dblatex.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE article PUBLIC "-//OASIS//DTD DocBook XML V4.5//EN" '
        '"http://www.oasis-open.org/docbook/xml/4.5/docbookx.dtd">\n<article><title>Kit Manual</title>'
        + "".join(body) + "</article>\n")
    ok = _run(["dblatex", "-q", "kit-dblatex.xml", "-o", "kit-dblatex.pdf"], out)
    return out / "kit-dblatex.pdf" if ok else None


def doxygen_pdf(out: Path) -> tuple[Path, list[str]] | None:
    """Doxygen's LaTeX reference manual (with source listings) of a few kit modules, pdfLaTeX."""
    if not (shutil.which("doxygen") and shutil.which("pdflatex")):
        return None
    src = out / "dox"
    src.mkdir(exist_ok=True)
    code = []
    for name in CODE_FILES[:3]:
        shutil.copy(ROOT / name, src / Path(name).name)
        code += (ROOT / name).read_text().splitlines()
    (src / "Doxyfile").write_text("PROJECT_NAME = kit\nINPUT = .\nFILE_PATTERNS = *.py\nGENERATE_HTML = NO\n"
                                  "GENERATE_LATEX = YES\nSOURCE_BROWSER = YES\nHAVE_DOT = NO\nCLASS_DIAGRAMS = NO\n"
                                  "CLASS_GRAPH = NO\nQUIET = YES\nWARNINGS = NO\n")
    if not _run(["doxygen", "Doxyfile"], src):
        return None
    latex = src / "latex"
    ok = all(_run(["pdflatex", "-interaction=nonstopmode", "refman.tex"], latex) for _ in range(2))
    if not ok or not (latex / "refman.pdf").exists():
        return None
    shutil.copy(latex / "refman.pdf", out / "kit-doxygen.pdf")
    return out / "kit-doxygen.pdf", code


def bash_man(out: Path) -> tuple[Path, str] | None:
    """Debian's bash(1) through groff -Tpdf, with groff's plain-text rendering as its source text."""
    if not (shutil.which("groff") and BASH_MAN.exists()):
        return None
    roff = gzip.decompress(BASH_MAN.read_bytes())
    pdf = out / "bash.pdf"
    with pdf.open("wb") as fh:
        subprocess.run(["groff", "-Tpdf", "-man"], input=roff, stdout=fh, stderr=subprocess.DEVNULL, check=True)
    ref = subprocess.run(["groff", "-Tutf8", "-man", "-rHY=0", "-rLL=200n", "-P-cbou"], input=roff,
                         capture_output=True, check=True).stdout.decode("utf-8", "replace")
    return pdf, ref


def makers(out: Path) -> list[tuple[str, Path, str | None, list[str]]]:
    """(maker, pdf, source text or None, code lines) for every maker this machine has."""
    out.mkdir(parents=True, exist_ok=True)
    doc, narrow = document(), document(width=48)
    found = []

    def add(maker, pdf, d):
        if pdf is not None:
            found.append((maker, pdf, source_text(d), all_code(d)))
    add("groff -Tpdf (man)", groff_pdf(out, doc), doc)
    add("groff -Tps + Ghostscript", groff_ghostscript(out, doc), doc)
    add("LaTeX article", latex_pdf(out, doc, "kit-latex"), doc)
    add("LaTeX two-column", latex_pdf(out, narrow, "kit-twocol", "twocolumn", size=r"\scriptsize"), narrow)
    add("LaTeX Courier, dvips + Ghostscript",
        latex_pdf(out, doc, "kit-dvips", packages="\\usepackage{times}\\usepackage{courier}\n", dvips=True), doc)
    add("pandoc (pdfLaTeX)", pandoc_pdf(out, doc), doc)
    add("LibreOffice Writer", libreoffice_pdf(out, doc), doc)
    add("DocBook, dblatex (callouts)", dblatex_pdf(out, doc), doc)
    dox = doxygen_pdf(out)
    if dox:
        code = [ln for ln in dox[1] if ln.strip()]
        found.append(("Doxygen (pdfLaTeX)", dox[0], "\n".join(dox[1]), code))
        if shutil.which("gs") and _run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=pdfwrite",
                                        "-sOutputFile=kit-doxygen-gs.pdf", dox[0].name], out):
            found.append(("Doxygen printed through Ghostscript", out / "kit-doxygen-gs.pdf", "\n".join(dox[1]), code))
    man = bash_man(out)
    if man:
        found.append(("groff -Tpdf, Debian bash(1)", man[0], man[1], []))
    if R_INTRO.exists():
        found.append(("Texinfo (R-intro)", R_INTRO, None, []))
    if VALGRIND_PDF.exists():
        (out / "valgrind_manual.pdf").write_bytes(gzip.decompress(VALGRIND_PDF.read_bytes()))
        found.append(("DocBook, Apache FOP (valgrind)", out / "valgrind_manual.pdf", None, []))
    if BZIP2_PDF.exists():
        (out / "bzip2-manual.pdf").write_bytes(gzip.decompress(BZIP2_PDF.read_bytes()))
        found.append(("DocBook, PassiveTeX (bzip2)", out / "bzip2-manual.pdf", None, []))
    if ARXIV_PDF.exists():
        found.append(("revtex two-column (arXiv)", ARXIV_PDF, None, []))
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/pdf-makers")
    ap.add_argument("--material", help="write the tests' PDFs (groff, Ghostscript, dvips, dblatex) and sources here")
    a = ap.parse_args(argv)
    if a.material:  # the tests' material: three sections, the sources beside the PDFs
        doc = document(n_sections=3)
        work = Path(a.out)
        work.mkdir(parents=True, exist_ok=True)
        courier = "\\usepackage{times}\\usepackage{courier}\n"
        for pdf in (groff_pdf(work, doc), groff_ghostscript(work, doc),
                    latex_pdf(work, doc, "kit-dvips", packages=courier, dvips=True), dblatex_pdf(work, doc)):
            for f in (pdf, pdf.with_suffix(".7"), pdf.with_suffix(".tex"), pdf.with_suffix(".xml")):
                if f.exists():
                    shutil.copy(f, Path(a.material) / f.name)
                    print(f.name, f.stat().st_size)
        return 0
    for maker, pdf, _, code in makers(Path(a.out)):
        print(f"{maker}: {pdf} ({len(code)} code lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
