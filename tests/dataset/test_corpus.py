"""Raw text for notebook 03 from text files, folders, JSONL and PDFs; what cannot be read is named."""
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
