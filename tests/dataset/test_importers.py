"""helpers.dataset.importers on real material: chitchat conversations written as ShareGPT, seed-002-style
Alpaca JSON, and a folder of real text and PDFs."""
import json
import shutil


from helpers.common import resources as fixtures
from helpers.common.resources import chitchat_conversations
from helpers.core.jsonl import read_jsonl
from helpers.dataset.importers import import_alpaca, import_sharegpt, import_text_folder, save_dataset


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
