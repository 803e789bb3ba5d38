"""helpers.dataset.pdf_unicode: ligatures, TeX's spacing accents, invisible characters, on a made-up line and on
the real arXiv paper's text as PDFium extracts it."""
from helpers.common import resources as fixtures
from helpers.dataset.pdf_extract import extract_pages
from helpers.dataset.pdf_unicode import normalise_unicode

PAPER = fixtures.fixture_pdf()


def test_unicode_normalisation():
    text, c = normalise_unicode("e\ufb03cient \ufb01le, Erd\u02ddos, D. J\u00b4erome,\u00a0soft\u00adhyphen\ufffd")
    assert text == "efficient file, Erdős, D. Jérome, softhyphen"
    assert c == {"ligatures": 2, "accents_composed": 2, "invisible_chars": 1, "replacement_chars": 1}


def test_tex_accents_of_the_real_paper_are_composed():
    pages, _ = extract_pages(PAPER)
    assert "Teˇsanovi´c" in pages[0]  # PDFium gives TeX's accents as glyphs before the letter
    text, c = normalise_unicode(pages[0])
    assert "Zlatko Tešanović" in text and "Teˇsanovi´c" not in text
    assert c["accents_composed"] == 2 and c["ligatures"] == 0
    assert normalise_unicode(text) == (text, {"ligatures": 0, "accents_composed": 0, "invisible_chars": 0,
                                              "replacement_chars": 0})  # clean text stays as it is


def test_a_lone_accent_character_takes_no_letter_across_a_space():
    """bash(1) prints its =~ operator as U+02DC: "=˜ binary" stays two words (it became "=b̃inary")."""
    text, c = normalise_unicode("the =\u02dc binary operator; a \u02c6 then; Te\u02c7 sanovi\u00b4c")
    assert text == "the =\u02dc binary operator; a \u02c6 then; Tešanović" and c["accents_composed"] == 2
    # nor into a letter no language has: groff's "~chet" and "${parameter^pattern}"
    text, c = normalise_unicode("case.edu/\u02dcchet/bash ${parameter\u02c6pattern} ma\u02dcnana")
    assert text == "case.edu/\u02dcchet/bash ${parameter\u02c6pattern} mañana" and c["accents_composed"] == 1
