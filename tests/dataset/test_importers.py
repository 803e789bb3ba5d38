"""helpers.dataset.importers on real material: chitchat conversations written as ShareGPT, seed-002-style
Alpaca JSON, and a folder of real text and PDFs."""
import json
import shutil

import pytest


from helpers.common import resources as fixtures
from helpers.common.resources import chitchat_conversations
from helpers.core.jsonl import read_jsonl
from helpers.dataset.importers import ImportDataError, import_alpaca, import_sharegpt, import_text_folder, save_dataset


def test_sharegpt_fine_tome_conversations(tmp_path):
    convs = chitchat_conversations()[:20]
    back = {"user": "human", "assistant": "gpt"}
    rows = [{"conversations": [{"from": back[m["role"]], "value": m["content"]} for m in c["messages"]]} for c in convs]
    rows[3] = {"conversations": [{"from": "gpt", "value": "hi"}]}  # starts with the assistant
    rows[5] = {"conversations": [{"from": "narrator", "value": "x"}, {"from": "gpt", "value": "y"}]}
    rows.insert(0, {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                                      {"from": "human", "value": "there"}, {"from": "gpt", "value": "Hello!"}]})
    p = tmp_path / "fine_tome.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    got, problems = import_sharegpt(p)
    assert len(got) == 19
    assert got[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Hi\n\nthere"},
                                  {"role": "assistant", "content": "Hello!"}]
    assert got[1]["messages"] == [{"role": m["role"], "content": m["content"].strip()} for m in convs[0]["messages"]]
    assert problems[0] == "fine_tome.jsonl row 5: the conversation does not start with a user turn"
    assert "unknown speaker 'narrator'" in problems[1] and "row 7" in problems[1]
    assert problems[2].startswith("fine_tome.jsonl row 22: not JSON")
    # the same rows as one JSON list and as Parquet
    lst = tmp_path / "fine_tome.json"
    lst.write_text(json.dumps(rows))
    assert len(import_sharegpt(lst)[0]) == 19
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows[:5]), tmp_path / "train-00000.parquet")
    got_pq, probs_pq = import_sharegpt(tmp_path / "train-00000.parquet")
    assert len(got_pq) == 4
    assert probs_pq == ["train-00000.parquet row 5: the conversation does not start with a user turn"]


def test_alpaca_json_and_jsonl(tmp_path):
    seed_style = [{"Instruction": "Summarize the following abstract.", "Input": "We train a model on many tasks.",
                   "Output": "Multi-task training of a model."},
                  {"instruction": "Name R's sequence function.", "input": "", "output": "seq()"},
                  {"instruction": "No answer here", "input": "", "output": ""}]
    p = tmp_path / "alpaca.json"
    p.write_text(json.dumps(seed_style))
    rows, problems = import_alpaca(p)
    assert rows == [{"instruction": "Summarize the following abstract.", "input": "We train a model on many tasks.",
                     "output": "Multi-task training of a model."},
                    {"instruction": "Name R's sequence function.", "input": "", "output": "seq()"}]
    assert problems == ["alpaca.json row 3: empty or missing output"]
    out = save_dataset(rows * 20, tmp_path / "ds", test_fraction=0.5)
    assert out["train"] + out["test"] == 40
    assert read_jsonl(tmp_path / "ds" / "train.jsonl")[0]["instruction"]


def test_text_folder_with_real_pdfs(tmp_path):
    pdf = fixtures.fixture_pdf()
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    shutil.copy(pdf, tmp_path / "docs" / "paper.pdf")
    (tmp_path / "docs" / "bad.pdf").write_bytes(b"%PDF-1.4\n garbage")
    (tmp_path / "docs" / "sub" / "notes.md").write_text("# Notes\n\nThe Bethe lattice has no loops.\n")
    (tmp_path / "docs" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "docs" / "ignored.csv").write_text("a,b\n")
    rows, problems = import_text_folder(tmp_path / "docs")
    assert [r["source"] for r in rows] == ["paper.pdf", "sub/notes.md"]
    assert "Tešanović" in rows[0]["text"] and rows[1]["text"].startswith("# Notes")
    assert any(p.startswith("bad.pdf: ") for p in problems)
    assert any(p.startswith("latin1.txt: not UTF-8") for p in problems)


# --- files as users have them: a BOM, UTF-16, one latin-1 byte, lists, folders, structured values ----
def _sharegpt_rows(n):
    back = {"user": "human", "assistant": "gpt"}
    return [{"conversations": [{"from": back[m["role"]], "value": m["content"]} for m in c["messages"]]}
            for c in chitchat_conversations()[:n]]


def test_sharegpt_with_a_bom_utf16_or_a_stray_byte_keeps_every_readable_row(tmp_path):
    rows = _sharegpt_rows(6)
    pretty = tmp_path / "pretty.json"  # a pretty-printed JSON list with a BOM, as Windows tools write it
    pretty.write_bytes(b"\xef\xbb\xbf" + json.dumps(rows, indent=2).encode())
    got, problems = import_sharegpt(pretty)
    assert len(got) == 6 and problems == []
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert import_sharegpt(bom) == (got, [])  # the first row is kept
    u16 = tmp_path / "u16.jsonl"
    u16.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-16"))
    assert import_sharegpt(u16) == (got, [])
    lines = [json.dumps(r).encode() for r in rows]
    lines[2] = lines[2].replace(b'"value": "', b'"value": "caf\xe9 ', 1)  # one latin-1 byte in row 3
    stray = tmp_path / "stray.jsonl"
    stray.write_bytes(b"\n".join(lines) + b"\n")
    offset = len(lines[0]) + len(lines[1]) + 2 + lines[2].index(b"\xe9")
    got_stray, problems = import_sharegpt(stray)
    assert got_stray == got[:2] + got[3:]
    assert problems == [f"stray.jsonl row 3: byte 0xe9 at byte offset {offset} is not UTF-8 "
                        "(the file is neither UTF-8 nor UTF-16; save it as UTF-8)"]


def test_sharegpt_lists_empty_user_turns_and_folders(tmp_path):
    rows = _sharegpt_rows(3)
    turns_only = tmp_path / "turns.json"  # JSON Lines whose first line is a list (the turns themselves)
    turns_only.write_text("\n".join(json.dumps(r["conversations"]) for r in rows) + "\n")
    got, problems = import_sharegpt(turns_only)
    assert len(got) == 3 and problems == []
    rows[1]["conversations"][0]["value"] = "   "
    rows[2]["conversations"][1]["value"] = ["a", "b"]
    p = tmp_path / "empty_user.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    got, problems = import_sharegpt(p)
    assert len(got) == 1
    assert problems == ["empty_user.jsonl row 2: user turn 0 is empty",
                        "empty_user.jsonl row 3: turn 1: not text: 'value' is a list (import it as text, "
                        "e.g. json.dumps the value)"]
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "part-1.jsonl").write_text("{}\n")
    for importer in (import_sharegpt, import_alpaca):
        with pytest.raises(ImportDataError, match=r"shards is a folder, not a file: give one file in it "
                                                  r"\(it holds part-1.jsonl\)"):
            importer(tmp_path / "shards")
    with pytest.raises(ImportDataError, match=r"nothing.json: no such file"):
        import_sharegpt(tmp_path / "nothing.json")


def test_alpaca_refuses_structured_values_and_names_bad_rows(tmp_path):
    rows = [{"instruction": "List two R vectors.", "input": "", "output": ["a", "b"]},
            {"instruction": "Describe the row.", "input": {"x": 1}, "output": "one field"},
            {"instruction": "Name R's sequence function.", "input": "", "output": "seq()"},
            {"instruction": "How many?", "input": "", "output": 3}]
    p = tmp_path / "typed.json"
    data = json.dumps(rows, indent=2).encode()
    p.write_bytes(data.replace(b"seq()", b"s\xe9q()"))  # a latin-1 byte in row 3 of a JSON list
    got, problems = import_alpaca(p)
    assert got == [{"instruction": "How many?", "input": "", "output": "3"}]
    assert problems[0] == ("typed.json row 1: not text: 'output' is a list (import it as text, "
                           "e.g. json.dumps the value)")
    assert problems[1].startswith("typed.json row 2: not text: 'input' is a dict")
    assert problems[2].startswith(f"typed.json row 3: byte 0xe9 at byte offset {data.index(b'seq()') + 1} is not UTF-8")
    assert "['a', 'b']" not in json.dumps(got)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(rows, indent=2)[:-40])
    with pytest.raises(ImportDataError, match=r"broken.json: row 4 of the JSON list: not valid JSON at byte offset"):
        import_alpaca(broken)


def test_text_folder_reads_a_bom_and_utf16(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "bom.md").write_bytes(b"\xef\xbb\xbf# Notes\n\nThe Bethe lattice has no loops.\n")
    (tmp_path / "docs" / "u16.txt").write_bytes("Caf\u00e9 notes on R.\n".encode("utf-16"))
    (tmp_path / "docs" / "latin1.txt").write_bytes("Line one.\ncaf\xe9".encode("latin-1"))
    rows, problems = import_text_folder(tmp_path / "docs")
    assert rows == [{"text": "# Notes\n\nThe Bethe lattice has no loops.", "source": "bom.md"},
                    {"text": "Café notes on R.", "source": "u16.txt"}]
    assert problems == ["latin1.txt: not UTF-8 text, line 2: byte 0xe9 at byte offset 13 is not UTF-8 "
                        "(the file is neither UTF-8 nor UTF-16; save it as UTF-8)"]
