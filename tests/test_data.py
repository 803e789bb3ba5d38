"""JSONL datasets, validation, the bundled real conversations, raw-text corpora."""

import pytest

from helpers.core.jsonl import DataError, read_jsonl, write_jsonl
from helpers.common.resources import chitchat_conversations, split_chitchat
from helpers.common.rows import held_out_turns, validate_rows
from helpers.dataset.corpus import read_text_corpus
from helpers.common.resources import chitchat, fixture_pdf


def test_read_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(DataError, match=r"d.jsonl:3: not a JSON object"):
        read_jsonl(p)
    assert read_jsonl(p, strict=False) == [{"a": 1}]
    with pytest.raises(DataError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_write_jsonl_is_atomic_and_loadable_by_datasets(tmp_path):
    rows = [{"instruction": "i", "input": "", "output": "o"}] * 3
    p = write_jsonl(tmp_path / "x" / "train.jsonl", rows)
    assert read_jsonl(p) == rows and not list(p.parent.glob("*.tmp*"))
    from datasets import load_dataset
    ds = load_dataset("json", data_files=str(p), split="train")
    assert ds.num_rows == 3 and ds.column_names == ["instruction", "input", "output"]


def test_validate_rows_reports_each_bad_row():
    rows = [{"instruction": "x", "output": "y"}, {"instruction": "x", "output": " "},
            {"messages": [{"role": "user", "content": "hi"}]}, {"messages": [{"role": "bot", "content": "x"}]},
            {"text": ""}, {"foo": 1}]
    problems = validate_rows(rows, "f.jsonl")
    assert [p.split(":")[0] for p in problems] == [f"f.jsonl row {i}" for i in (1, 2, 3, 4, 5)]


def test_bundled_conversations_are_real_and_disjoint():
    convs = chitchat_conversations()
    assert len(convs) > 4000  # of 7,168: 3,150 are a single turn (one speaker only) and are skipped
    c = convs[0]
    assert c["messages"][0]["role"] == "user" and any(m["role"] == "assistant" for m in c["messages"])
    assert all(len(x["messages"]) <= 12 for x in convs[:200])
    train, test = split_chitchat(100, 20)
    assert not {t["id"] for t in train} & {t["id"] for t in test}
    held = held_out_turns(test)
    assert all(h["messages"][-1]["role"] == "assistant" for h in held)
    # the shipped split in helpers/resources/chitchat is what split_chitchat builds
    committed = read_jsonl(chitchat("test"))
    assert [r["id"] for r in committed] == [r["id"] for r in split_chitchat(800, 100)[1]]


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
