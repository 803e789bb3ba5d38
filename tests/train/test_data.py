"""The run's data (helpers/train/data.py) on the real tokenizer and the bundled conversations: rows
capped and cut to the shard, validation set aside before the replay examples join the training ones,
a tiny corpus holding out its last blocks, and the row length the memory plan sizes for."""
import pytest

from helpers.core.jsonl import read_jsonl, write_jsonl
from helpers.train import TrainConfig
from helpers.train.data import TrainData, encode_data, read_data, row_tokens
from helpers.train.replay import describe_replay
from tiny_train import write_convs


@pytest.fixture(scope="module")
def convs(tmp_path_factory):
    return write_convs(tmp_path_factory.mktemp("data"))


def test_read_data_caps_and_shards_the_rows_and_reads_the_replay_pool(convs):
    cfg = TrainConfig(dataset_path=str(convs), max_rows=30, num_shards=3, replay_share=0.2)
    rows = read_data(cfg, 1)
    assert rows.train == read_jsonl(convs)[10:20] and rows.validation is None
    assert rows.replay.start == len(rows.replay.rows) // 3 and len(rows.replay.rows) == 800
    alone = read_data(TrainConfig(dataset_path=str(convs), eval_path=str(convs)), None)
    assert len(alone.train) == 40 and alone.validation == alone.train and alone.replay is None


def test_validation_is_set_aside_before_replay_joins(convs, smol_tokenizer):
    cfg = TrainConfig(dataset_path=str(convs), max_seq_len=128, eval_fraction=0.2, replay_share=0.2)
    said = []
    data = encode_data(smol_tokenizer, cfg, read_data(cfg, None), said.append)
    assert len(data.train_rows) == data.train_rep["kept"] == 32 and data.eval_rep["kept"] == 8 and data.has_eval
    assert data.replay_rep["domain"] == 32 and data.replay_rep["replay"] == 8 and len(data.train_enc) == 40
    assert len(data.eval_enc) == 8 and not any(e in data.train_enc for e in data.eval_enc)
    assert said == [describe_replay(data.replay_rep)]


def test_a_corpus_of_fewer_than_four_documents_holds_out_its_last_blocks(tmp_path, convs, smol_tokenizer):
    text = " ".join(m["content"] for r in read_jsonl(convs) for m in r["messages"])
    write_jsonl(tmp_path / "docs.jsonl", [{"text": text}, {"text": text[::-1]}])
    cfg = TrainConfig(mode="pretrain", dataset_path=str(tmp_path / "docs.jsonl"), max_seq_len=64, eval_fraction=0.25)
    said = []
    data = encode_data(smol_tokenizer, cfg, read_data(cfg, None), said.append)
    n = len(data.train_enc) + len(data.eval_enc)
    assert len(data.eval_enc) == round(n * 0.25) and data.eval_rep["blocks"] == len(data.eval_enc)
    assert said == [f"Fewer than 4 documents: the last {len(data.eval_enc)} of {n} blocks are held out for perplexity."]


def test_row_tokens_is_the_row_the_memory_plan_sizes_for():
    """What train() plans for: packed rows at MAX_SEQ_LEN (fewer tokens in all: all of them), else the
    longest example."""
    data = TrainData([], [{"input_ids": [0] * n} for n in (120, 300, 80)], [], {}, None)
    assert row_tokens(TrainConfig(max_seq_len=1024), data) == 500
    assert row_tokens(TrainConfig(max_seq_len=256), data) == 256
    assert row_tokens(TrainConfig(max_seq_len=1024, packing=False), data) == 300
