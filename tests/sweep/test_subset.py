"""The sweep's fixed subset carved from the bundled real conversations: disjoint from its validation
rows, the same on every rerun, and refused when the folder holds another one."""
from pathlib import Path

import pytest

from helpers.common.rows import row_hash
from helpers.core.config import ConfigError
from helpers.core.jsonl import DataError, read_jsonl, write_jsonl
from helpers.sweep.subset import prepare_subset
from tiny_sweep import CHITCHAT, tiny


def test_the_subset_is_fixed_per_sweep_folder_and_another_subset_is_refused(tmp_path):
    # the subset is fixed per sweep folder: a different subset would make runs incomparable
    cfg = tiny(tmp_path, grid={"lora_r": [4]})
    meta = prepare_subset(cfg, Path(cfg.output_dir))
    assert meta["train_rows"] == 12 and meta["val_rows"] == 4
    assert prepare_subset(cfg, Path(cfg.output_dir)) == meta
    with pytest.raises(ConfigError, match="another subset .*subset_size: folder has 12, now 20"):
        prepare_subset(tiny(tmp_path, grid={"lora_r": [4]}, subset_size=20), Path(cfg.output_dir))


def test_unusable_rows_and_copies_of_validation_rows_are_never_trained_on(tmp_path):
    rows = read_jsonl(CHITCHAT)[:20]
    data = tmp_path / "doubled.jsonl"
    write_jsonl(data, rows + [{"messages": []}] + rows)  # every row twice, and one that cannot be trained on
    cfg = tiny(tmp_path, grid={"lora_r": [4]}, dataset_path=str(data), subset_size=100, eval_size=4)
    logs = []
    meta = prepare_subset(cfg, Path(cfg.output_dir), log=logs.append)
    train, val = read_jsonl(meta["train_path"]), read_jsonl(meta["val_path"])
    assert len(val) == 4 and not {row_hash(r) for r in train} & {row_hash(r) for r in val}
    dup = 40 - 4 - len(train)
    assert dup >= 4  # each validation row's copy was dropped from the training rows
    assert f"1 row(s) of {data} cannot be trained on and are left out of the subset." in logs
    assert f"{dup} training row(s) identical to a validation row were left out." in logs
    assert any("not SUBSET_SIZE=100" in m for m in logs)
    # the same seed carves the same rows in the same order, in another folder too
    again = prepare_subset(cfg, tmp_path / "again", log=lambda *a: None)
    assert read_jsonl(again["train_path"]) == train and read_jsonl(again["val_path"]) == val
    assert again["train_sha256"] == meta["train_sha256"]
    other = prepare_subset(tiny(tmp_path, grid={"lora_r": [4]}, dataset_path=str(data), subset_size=100,
                                subset_seed=7), tmp_path / "seed7", log=lambda *a: None)
    assert read_jsonl(other["val_path"]) != val


def test_a_pretraining_subset_keeps_only_rows_with_text(tmp_path):
    chats = read_jsonl(CHITCHAT)[:10]
    texts = [{"text": f"Document {i}: " + " ".join(m["content"] for m in r["messages"])} for i, r in enumerate(chats)]
    data = tmp_path / "mixed.jsonl"
    write_jsonl(data, chats + texts)
    meta = prepare_subset(tiny(tmp_path, grid={"lora_r": [4]}, dataset_path=str(data), mode="pretrain",
                               subset_size=100, eval_size=2), tmp_path / "pre", log=lambda *a: None)
    kept = read_jsonl(meta["train_path"]) + read_jsonl(meta["val_path"])
    assert sorted(r["text"] for r in kept) == sorted(r["text"] for r in texts)
    with pytest.raises(DataError, match="DATASET_PATH is empty"):
        prepare_subset(tiny(tmp_path, grid={"lora_r": [4]}, dataset_path=""), tmp_path / "none")
    with pytest.raises(DataError, match="10 usable rows: too few for EVAL_SIZE=9"):
        prepare_subset(tiny(tmp_path, grid={"lora_r": [4]}, dataset_path=str(data), mode="pretrain", eval_size=9),
                       tmp_path / "few", log=lambda *a: None)
