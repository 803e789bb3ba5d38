"""Rows to examples (helpers/train/examples.py) on the real tokenizer and the bundled conversations:
the validation split, rows checked before any model loads, documents packed into blocks with BOS and
EOS where the model expects them, shards that partition the rows."""
import pytest

from helpers.common.resources import chitchat_conversations
from helpers.core.jsonl import DataError, write_jsonl
from helpers.train import TrainConfig
from helpers.train.examples import (
    cut_blocks,
    document_ids,
    encode_rows,
    load_rows,
    pack_texts,
    shard_rows,
    split_rows,
)


def test_split_rows_is_deterministic_and_keeps_every_row_once():
    rows = [{"i": i} for i in range(40)]
    train, val = split_rows(rows, 0.2, 42)
    assert len(val) == 8 and len(train) == 32 and sorted(r["i"] for r in train + val) == list(range(40))
    assert split_rows(rows, 0.2, 42) == (train, val) and split_rows(rows, 0.2, 7) != (train, val)
    assert split_rows(rows[:3], 0.5, 42) == (rows[:3], [])  # too few rows to hold any out
    assert split_rows(rows, 0.0, 42) == (rows, [])


def test_shards_partition_the_rows_in_order():
    rows = list(range(10))
    parts = [shard_rows(rows, 3, i) for i in range(3)]
    assert parts == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]] and sum(parts, []) == rows


def test_documents_are_packed_with_bos_and_eos_into_blocks(smol_tokenizer):
    tok = smol_tokenizer
    text = chitchat_conversations()[0]["messages"][0]["content"]
    ids = document_ids(tok, text, add_bos=True)
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert ids[1:-1] == tok(text, add_special_tokens=False)["input_ids"]
    assert document_ids(tok, text, add_bos=False) == ids[1:]
    texts = [" ".join(m["content"] for m in c["messages"]) for c in chitchat_conversations()[:20]]
    blocks, rep = pack_texts(tok, texts, 64)
    assert all(len(b["input_ids"]) == 64 for b in blocks[:-1]) and 16 <= len(blocks[-1]["input_ids"]) <= 64
    assert rep["documents"] == 20 and rep["blocks"] == len(blocks) and rep["tokens"] >= sum(
        len(b["input_ids"]) for b in blocks)
    assert all(b["completion_mask"] == [1] * len(b["input_ids"]) for b in blocks)  # pretraining: every token
    assert cut_blocks([[1, 2], [3, 4, 5]], 2) == [{"input_ids": [1, 2], "completion_mask": [1, 1]},
                                                  {"input_ids": [3, 4], "completion_mask": [1, 1]},
                                                  {"input_ids": [5], "completion_mask": [1]}]


def test_rows_are_checked_before_any_model_loads(tmp_path):
    with pytest.raises(DataError, match="DATASET_PATH is empty"):
        load_rows("", "sft")
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"instruction": "Say hi", "output": ["hi", "hello"]}, {"instruction": "a", "output": "b"}])
    with pytest.raises(DataError, match=r"1 row\(s\) of .*rows.jsonl hold a list or dict where text belongs"):
        load_rows(str(path), "sft")
    write_jsonl(path, [{"text": "a document"}, {"text": "  "}, {"text": "another"}])
    assert load_rows(str(path), "pretrain") == [{"text": "a document"}, {"text": "another"}]
    write_jsonl(path, [{"text": ""}])
    with pytest.raises(DataError, match="pretraining needs rows with a non-empty 'text' field"):
        load_rows(str(path), "pretrain")


def test_encode_rows_encodes_sft_rows_and_packs_pretraining_text(smol_tokenizer, capsys):
    rows = chitchat_conversations()[:6]
    enc, rep = encode_rows(smol_tokenizer, rows, TrainConfig(max_seq_len=128), "chats")
    assert len(enc) == rep["kept"] == 6 and all(0 < sum(e["completion_mask"]) < len(e["input_ids"]) <= 128
                                                 for e in enc)
    texts = [{"text": " ".join(m["content"] for m in r["messages"]) * 3} for r in rows]
    blocks, prep = encode_rows(smol_tokenizer, texts, TrainConfig(mode="pretrain", max_seq_len=64), "docs")
    assert prep["source"] == "docs" and prep["blocks"] == len(blocks) > 0
    assert "docs: 6 documents" in capsys.readouterr().out
    with pytest.raises(DataError, match="empty: no usable rows"):
        encode_rows(smol_tokenizer, [{"instruction": "Say hi", "output": ""}], TrainConfig(), "empty")
