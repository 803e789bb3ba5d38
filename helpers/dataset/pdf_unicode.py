"""Unicode clean-up of extracted text: ligatures, the spacing accents TeX fonts put before a letter,
invisible characters and odd spaces, then NFC."""
from __future__ import annotations

import re
import unicodedata

LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st",
             "\ufb06": "st", "\u0132": "IJ", "\u0133": "ij"}
# Spacing accents that TeX's fonts emit as separate glyphs in front of the letter they belong to.
SPACING_ACCENTS = {"\u00b4": "\u0301", "\u02c7": "\u030c", "\u00a8": "\u0308", "\u02dc": "\u0303",
                   "\u02c6": "\u0302", "\u00b8": "\u0327", "\u02da": "\u030a", "\u02d8": "\u0306",
                   "\u02dd": "\u030b"}
_ACC = "[" + "".join(SPACING_ACCENTS) + "]"
# inside a word the accent may come with a space ("Teˇ sanovi"); after a space or a sign it is the
# character itself (bash's "=˜ binary", "a ˆ then") and takes no letter across a space
ACCENT_RE = re.compile(f"(?:(?<=[^\\W\\d_])({_ACC}) ?|({_ACC}))([A-Za-z\u0131])")
INVISIBLE_RE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
SPACES_RE = re.compile("[\u00a0\u2000-\u200a\u202f\u205f\u3000]")


def normalise_unicode(text: str) -> tuple[str, dict]:
    """Ligatures, TeX spacing accents, invisible characters and odd spaces; then NFC."""
    counts = {"ligatures": 0, "accents_composed": 0, "invisible_chars": 0, "replacement_chars": 0}
    for lig, repl in LIGATURES.items():
        n = text.count(lig)
        if n:
            counts["ligatures"] += n
            text = text.replace(lig, repl)
    # Alphabetic presentation forms and full-width letters: compatibility-decompose them.
    text = re.sub("[\ufb00-\ufb4f\uff01-\uff5e]", lambda m: unicodedata.normalize("NFKC", m.group()), text)

    def compose(m):
        # only into a letter that exists accented (š, ć, ñ): groff's "~chet" and "${parameter^pattern}"
        # print ~ and ^ as these glyphs too, and p̂ or c̃ are no letters of any language
        letter = unicodedata.normalize("NFC", m.group(3) + SPACING_ACCENTS[m.group(1) or m.group(2)])
        if len(letter) != 1:
            return m.group(0)
        counts["accents_composed"] += 1
        return letter
    text = ACCENT_RE.sub(compose, text)
    text, n = INVISIBLE_RE.subn("", text)
    counts["invisible_chars"] = n
    counts["replacement_chars"] = text.count("\ufffd")
    text = text.replace("\ufffd", "")
    text = SPACES_RE.sub(" ", text)
    return unicodedata.normalize("NFC", text), counts
