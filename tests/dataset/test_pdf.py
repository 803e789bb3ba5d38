"""helpers.dataset.pdf on real PDFs: the shipped arXiv paper, the R-intro manual (tests/material), and broken
copies of them, read and cleaned whole (``read_pdf``, ``read_pdfs``, ``clean_pages``)."""
import io
from pathlib import Path

import pytest

from helpers.common import resources as fixtures
from helpers.common.models import load_tokenizer
from helpers.dataset.chunking import chunk_text
from helpers.dataset.pdf import clean_pages, describe_stats, find_pdfs, read_pdf, read_pdfs
from helpers.dataset.pdf_extract import PdfError, extract_pages

PAPER = fixtures.fixture_pdf()
R_INTRO = Path(__file__).resolve().parent.parent / "material" / "R-intro.pdf"  # with its notice (material/NOTICE.md)


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
    assert s["extractor"] == "pdfium" and s["accents_composed"] >= 1  # PDFium maps the ligatures itself
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


# --- bounded cleaning: numbered lists are not references ---------------------------------------
def _license_pages(lines_per_page=48):
    """Real numbered-list prose: the Apache-2.0 licence (sections 1.-9.) and numpy's bundled
    licences (numbered clauses, copyright years), as they ship in those packages' wheels."""
    import importlib.metadata as md
    texts = []
    for dist, name in (("transformers", "LICENSE"), ("numpy", "LICENSE.txt")):
        f = next(f for f in md.distribution(dist).files if f.name == name and "licenses" in str(f))
        texts.append(f.read_text())
    lines = [ln.strip() for t in texts for ln in t.splitlines()]
    return ["\n".join(lines[i:i + lines_per_page]) for i in range(0, len(lines), lines_per_page)]


def test_long_document_with_numbered_lists_and_digit_led_lines_keeps_its_text():
    paper, _ = extract_pages(PAPER)
    digit_led = [ln for p in paper[:7] for ln in p.splitlines() if ln[:1].isdigit()]  # "2Zd d+1xφa", "0 σ +", ...
    lic = _license_pages()
    # the paper's body, then many pages of numbered clauses with the paper's digit-led lines strewn in
    body = paper[:7] + [p + "\n" + "\n".join(digit_led[k::len(lic)]) for k, p in enumerate(lic)]
    text, s = clean_pages(body, "book.pdf")
    assert s["references_chars"] == 0 and s["index_chars"] == 0, s
    assert "Grant of Patent License" in text and "Accepting Warranty or Additional Liability" in text
    assert "Redistributions in binary form must reproduce the above copyright" in text
    assert len(text) > 0.9 * sum(map(len, body))
    # the same with the paper's real last page (its unheaded numbered references) at the end
    text2, s2 = clean_pages(body + paper[7:], "book.pdf")
    assert 1000 < s2["references_chars"] < 2000
    assert "Adv. Phys. 59, 803" not in text2 and "Claredon Press" not in text2
    assert "We would like to thank Predrag Nikolic" in text2 and "Accepting Warranty or Additional Liability" in text2
    assert s2["removed_share"]["references_chars"] < 0.05 and s2["warnings"] == []


def test_a_large_cut_is_reported_by_name_and_share_and_a_too_large_one_refused():
    paper, _ = extract_pages(PAPER)
    # page 1 and the last page: the references are 14% of this document, under the 15% cap
    text, s = clean_pages(paper[:1] + paper[7:], "short.pdf")
    assert "Claredon Press" not in text and 0.10 < s["removed_share"]["references_chars"] < 0.15
    share = s["removed_share"]["references_chars"]  # the warning and the stats share one total
    assert s["warnings"] == [f"short.pdf: dropped 1,418 chars ({share:.1%} of the document) as an unheaded numbered "
                             "reference list at its end"]
    # half of page 1 and the last page: the list would be over 15%: nothing is cut, and the warning says so
    text, s = clean_pages([paper[0][:2000]] + paper[7:], "tiny.pdf")
    assert s["references_chars"] == 0 and "Claredon Press" in text
    assert len(s["warnings"]) == 1 and s["warnings"][0].startswith("tiny.pdf: kept 1,418 chars (")
    assert "more than the 15% an unheaded reference list may take" in s["warnings"][0]
    # a "References" heading followed by prose is not a reference list: nothing is cut, the heading is named
    lines = paper[:4] + ["References\n" + paper[4]] + paper[5:7]
    text, s = clean_pages(lines, "prose.pdf")
    assert s["references_chars"] == 0 and len(text) > 0.95 * sum(map(len, lines))
    assert any(w.startswith("prose.pdf: kept a section headed 'References'") for w in s["warnings"]), s["warnings"]
    # read_pdfs prints the warnings, naming the file
    import contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        read_pdfs([PAPER])
    assert "1111.2011v2.pdf: 8 pages" in buf.getvalue() and "3.8%" in buf.getvalue()


def test_running_heads_whose_section_title_changes_every_few_pages_are_removed():
    paper, _ = extract_pages(PAPER)
    titles = ["I. INTRODUCTION", "I. INTRODUCTION", "II. SELF-CONSISTENT ACTION", "II. SELF-CONSISTENT ACTION",
              "III. CRITICAL POINT", "IV. CORRECTIONS AT FINITE N", "IV. CORRECTIONS AT FINITE N", "V. DISCUSSION"]
    # with the page number beside the title (even pages: number first), as LaTeX book classes set them
    with_folio = [(f"{i + 1} {t.title()}" if i % 2 else f"{t.title()} {i + 1}") + "\n" + p
                  for i, (t, p) in enumerate(zip(titles, paper))]
    text, s = clean_pages(with_folio, "heads.pdf")
    for t in set(titles):
        assert t.title() not in text, t
    assert "I. INTRODUCTION" in text and "V. DISCUSSION" in text  # the real headings stay
    # without a number: the authors and the section's title, which changes every page or two
    plain = [f"Murray et al. · {t.title()}\n{p}" for t, p in zip(titles, paper)]
    text, s = clean_pages(plain, "heads.pdf")
    assert "Murray et al. ·" not in text and s["header_footer_lines"] == 8
    assert "James M. Murray" in text  # the real author line stays


def test_code_blocks_keep_lines_and_indentation_through_pdf_and_chunks(tmp_path):
    """A real PDF (matplotlib's PDF backend) with prose in a serif font and real Python source in
    a monospaced one: the code comes out as one block with its lines and indentation, and a chunk
    limit smaller than the block cuts it between lines, never re-joining them with spaces."""
    import inspect
    import json.decoder
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    code = inspect.getsource(json.decoder.JSONDecoder.raw_decode).splitlines()
    code = [ln[4:] for ln in code]  # as printed in a manual: the method's own indentation
    prose = inspect.getdoc(json.decoder).splitlines() + inspect.getdoc(json.decoder.JSONDecoder).splitlines()[:6]
    pdf = tmp_path / "manual.pdf"
    with PdfPages(pdf) as out:
        fig = plt.figure(figsize=(8.5, 11))
        y = 0.95
        for ln in prose:
            fig.text(0.1, y, ln, family="DejaVu Serif", fontsize=9)
            y -= 0.018
        y -= 0.02
        glyph = 0.6 * 9 / (8.5 * 72)  # one DejaVu Sans Mono glyph at 9 pt, as a share of the page width
        for ln in code:
            indent = len(ln) - len(ln.lstrip())
            fig.text(0.1 + indent * glyph, y, ln.strip(), family="DejaVu Sans Mono", fontsize=9)
            y -= 0.018
        out.savefig(fig)
        plt.close(fig)
    doc = read_pdf(pdf)
    want = "\n".join(ln.rstrip() for ln in code if ln.strip())
    assert want in doc.text, doc.text
    tok = load_tokenizer("embedded/smollm2-135m-instruct")
    chunks = chunk_text(doc.text, tok, max_tokens=64, overlap_tokens=0, source="manual.pdf")
    assert len(chunks) >= 3
    code_lines = [ln.rstrip() for ln in code if ln.strip()]
    for ln in code_lines:  # each line of code whole, indented as in the source, in some chunk
        assert any(ln in c.text.split("\n") for c in chunks), ln
    for c in chunks:  # and no chunk glues two lines of code together with a space
        for a, b in zip(code_lines, code_lines[1:]):
            assert f"{a} {b.strip()}" not in c.text


def test_find_pdfs_walks_folders_and_describe_stats_sums_up_a_document(tmp_path, paper):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "Paper.PDF").write_bytes(PAPER.read_bytes())
    (tmp_path / "z.pdf").write_bytes(PAPER.read_bytes())
    (tmp_path / "notes.txt").write_text("not a pdf")
    assert find_pdfs(tmp_path) == [tmp_path / "a" / "b" / "Paper.PDF", tmp_path / "z.pdf"]
    assert find_pdfs(tmp_path / "missing") == [] and find_pdfs(tmp_path / "notes.txt") == []
    line = describe_stats(paper.stats)
    assert line.startswith(f"8 pages, {paper.stats['chars_extracted']:,} → {paper.stats['chars_clean']:,} chars")
    assert "7 page numbers" in line and "1,418 chars of references (3.8%)" in line
    assert "words de-hyphenated" in line and "warning" not in line


# --- scanned pages: images with at most a stray line of text ---------------------------------------
def _scan_book(dst: Path, pages: str):
    """A PDF whose pages are ``T`` (a page of real prose set as text) or ``S`` (a scanned page: a
    picture of prose drawn by Pillow, covering the page, with a library's download stamp and URL set
    as text, as archives stamp their scans)."""
    import argparse
    import inspect
    import json.decoder

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.backends.backend_pdf import PdfPages
    from PIL import Image, ImageDraw
    prose = [ln for obj in (json, argparse, json.decoder.JSONDecoder, PdfPages)
             for ln in inspect.getdoc(obj).splitlines() if ln.strip()]
    with PdfPages(dst) as out:
        for n, kind in enumerate(pages, 1):
            fig = plt.figure(figsize=(8.5, 11))
            if kind == "T":
                for k, ln in enumerate(prose[20 * n:20 * n + 20]):
                    fig.text(0.08, 0.95 - 0.025 * k, ln, fontsize=9)
            else:
                img = Image.new("L", (850, 1100), 235)
                draw = ImageDraw.Draw(img)
                for k, ln in enumerate(prose[:30]):
                    draw.text((60, 60 + 30 * k), ln, fill=20)
                ax = fig.add_axes([0, 0, 1, 1])
                ax.imshow(np.asarray(img), cmap="gray", aspect="auto")
                ax.axis("off")
                fig.text(0.05, 0.01, f"Downloaded from https://archive.example.org/scans/4711/p{n} on 2 Dec 2026",
                         fontsize=7)
            out.savefig(fig)
            plt.close(fig)
    return dst


def test_a_mostly_scanned_document_is_refused_by_name_and_a_few_scanned_pages_are_warned_about(tmp_path):
    mostly = _scan_book(tmp_path / "mostly_scanned.pdf", "TSSSSSS")  # one text page among six scans
    few = _scan_book(tmp_path / "one_scan.pdf", "TTTST")
    only = tmp_path / "only_images.pdf"  # image-only, several pages, no text at all (Pillow)
    from PIL import Image
    Image.new("RGB", (400, 500), "white").save(only, "PDF", save_all=True,
                                               append_images=[Image.new("RGB", (400, 500), "gray")] * 3)
    pages, facts = extract_pages(mostly)
    assert facts["image_pages"] == [2, 3, 4, 5, 6, 7] and "archive.example.org" in pages[1]
    docs, problems = read_pdfs([mostly, few, only], verbose=False)
    assert [d.source for d in docs] == ["one_scan.pdf"]  # the teacher never sees the stamps of the scans
    why = {p["file"]: p["reason"] for p in problems}
    assert why["mostly_scanned.pdf"].startswith("mostly scanned: 6 of its 7 pages are images without a text layer")
    assert "OCR" in why["mostly_scanned.pdf"] and "no text layer on any of its 4 page(s)" in why["only_images.pdf"]
    s = docs[0].stats
    assert s["scanned_pages"] == [4] and s["pages_without_text"] == 0
    assert s["warnings"] == ["one_scan.pdf: 1 of 5 pages are scanned images without text (page(s) 4): their "
                             "content is missing; OCR them to use it"]
    assert "1 scanned page(s) (OCR them)" in describe_stats(s)


def test_a_pdf_whose_text_has_no_spaces_is_warned_about_by_name(tmp_path):
    """A text layer without word spaces (as some DocBook PDFs have: pdftotext glues them too) is
    named before a teacher is paid to read it; the same prose with its spaces, and real papers,
    are not."""
    import contextlib
    import inspect
    import json.decoder

    from pdf_material import font, write_pdf
    prose = [ln for ln in inspect.getdoc(json.decoder.JSONDecoder).splitlines() if len(ln.split()) >= 6][:30]

    def page(lines):
        ops = [b"BT /F1 9 Tf"] + [b"1 0 0 1 60 %d Tm (%s) Tj" % (740 - 12 * k, ln.replace("(", "[").replace(
            ")", "]").encode()) for k, ln in enumerate(lines)] + [b"ET"]
        return b"\n".join(ops)
    glued = write_pdf(tmp_path / "nospace.pdf", page([ln.replace(" ", "") for ln in prose]),
                      {"F1": font("Times-Roman")})
    spaced = write_pdf(tmp_path / "spaced.pdf", page(prose), {"F1": font("Times-Roman")})
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        docs, _ = read_pdfs([glued, spaced, PAPER])
    assert docs[0].stats["long_token_share"] > 0.3
    assert [w for d in docs for w in d.stats["warnings"] if "without a space" in w] == [
        f"nospace.pdf: {docs[0].stats['long_token_share']:.0%} of its text is in runs of 30+ characters without a "
        "space: its text layer lost the spaces between words, and the teacher would read glued words; check "
        "`pdftotext` on it, or export the PDF again from its source"]
    assert docs[1].stats["long_token_share"] == 0 and docs[2].stats["long_token_share"] < 0.01
    assert "WARNING nospace.pdf:" in buf.getvalue() and "WARNING spaced.pdf" not in buf.getvalue()
