"""Raw text for notebook 03 from text files, folders, JSONL and PDFs; what cannot be read is named."""
import json

from helpers.common.resources import fixture_pdf
from helpers.core.jsonl import write_jsonl
from helpers.dataset.corpus import read_text_corpus


def test_text_corpus_from_files_folders_and_pdfs(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("A real document about R. " * 20)
    (tmp_path / "docs" / "tiny.md").write_text("too short")
    write_jsonl(tmp_path / "abs.jsonl", [{"id": "1", "text": "Abstract words here. " * 20}, {"id": "2", "text": ""}])
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    sources = [tmp_path / "docs", tmp_path / "abs.jsonl", tmp_path / "broken.pdf", tmp_path / "missing"]
    sources.append(fixture_pdf())
    rows, problems = read_text_corpus(sources)
    names = {r["source"] for r in rows}
    assert {"a.txt", "1"} <= names
    assert any("tiny.md" in p for p in problems) and any("broken.pdf" in p for p in problems)
    assert any("missing" in p and "does not exist" in p for p in problems)
    pdf_row = next(r for r in rows if r["source"] == fixture_pdf().name)
    assert len(pdf_row["text"]) > 20000


def test_a_bom_is_dropped_and_a_latin1_file_or_row_is_named_not_kept_with_u_fffd(tmp_path):
    prose = "R is a language and environment for statistical computing and graphics. " * 4
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + prose.encode())
    (tmp_path / "u16.md").write_bytes(prose.encode("utf-16"))
    latin = ("Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9. " * 10).encode("latin-1")
    (tmp_path / "latin1.txt").write_bytes(b"First line.\n" + latin)
    lines = [json.dumps({"id": "a", "text": prose}).encode(), json.dumps({"id": "b", "text": prose}).encode(),
             json.dumps({"id": "c", "text": ["a", "b"] * 100}).encode()]
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines[1] = lines[1].replace(b"graphics", b"graph\xefcs", 1)
    (tmp_path / "rows.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rows, problems = read_text_corpus([tmp_path])
    assert rows == [{"text": prose, "source": "bom.txt"}, {"text": prose, "source": "a"},
                    {"text": prose, "source": "u16.md"}]
    assert not any("\ufffd" in r["text"] or r["text"].startswith("\ufeff") for r in rows)
    offset = len(lines[0]) + 1 + lines[1].index(b"\xef" + b"cs")
    assert problems == [
        f"{tmp_path / 'latin1.txt'}: not UTF-8 text, line 2: byte 0x{latin[3]:02x} at byte offset 15 is not UTF-8 "
        "(the file is neither UTF-8 nor UTF-16; save it as UTF-8)",
        f"{tmp_path / 'rows.jsonl'}:2: byte 0xef at byte offset {offset} is not UTF-8 (the file is neither UTF-8 nor "
        "UTF-16; save it as UTF-8); row skipped",
        f"{tmp_path / 'rows.jsonl'}:3: 'text' is a list, not text; row skipped"]
