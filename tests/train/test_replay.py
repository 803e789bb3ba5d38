"""Replay (helpers/train/replay.py): general data mixed into the training stream against forgetting,
on the real embedded model, the bundled conversations and the real arXiv paper: the share reached in
examples or blocks of their own, validation rows never drawn, bad replay files named, each shard its
own part of the rows, the share part of the run's signature."""
import pytest

from helpers.common.run import RunDir
from helpers.core.config import ConfigError
from helpers.core.jsonl import DataError, write_jsonl
from helpers.train import TrainConfig, train
from helpers.train.replay import mix_replay, read_replay, replay_count, replay_examples
from tiny_train import EMB, cfg_for, write_convs


@pytest.fixture(scope="module")
def convs(tmp_path_factory):
    return write_convs(tmp_path_factory.mktemp("data"))


def test_replay_count_and_mix_spread_the_replay_evenly():
    assert replay_count(40, 0.2) == 10 and replay_count(40, 0.0) == 0 and replay_count(3, 0.5) == 3
    mixed = mix_replay(list("abcd"), [1, 2])
    assert mixed == ["a", "b", 1, "c", 2, "d"]  # domain order kept, replay spread among it
    assert mix_replay([], [1, 2]) == [1, 2] and mix_replay(["a"], []) == ["a"]


class _SeenData:
    """A TrainerCallback that keeps the token ids the trainer was given to train and validate on."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Seen(TrainerCallback):
            train_ids: list = []
            eval_ids: list = []

            def on_train_begin(self, args, state, control, train_dataloader=None, eval_dataloader=None, **kw):
                self.train_ids = [list(x) for x in train_dataloader.dataset["input_ids"]]
                self.eval_ids = [list(x) for x in eval_dataloader.dataset["input_ids"]] if eval_dataloader else []
        return Seen()


def _arxiv_pages():
    from helpers.common.resources import fixture_pdf
    from helpers.dataset.pdf_extract import extract_pages
    pages, _ = extract_pages(fixture_pdf())
    return [{"text": p} for p in pages if len(p.split()) > 50]


def test_pretraining_with_replay_has_the_share_in_blocks_of_their_own(tmp_path, smol_tokenizer):
    """Domain: the real arXiv paper's pages; replay: the bundled conversations, rendered with the
    chat template. A fifth of the training blocks are replay, every domain block is the domain's
    own packing, no block holds both, and validation is the held-out pages alone."""
    from helpers.core.jsonl import read_jsonl
    from helpers.common.resources import chitchat
    from helpers.train.examples import pack_texts, split_rows
    docs = _arxiv_pages()
    assert len(docs) >= 8
    write_jsonl(tmp_path / "paper.jsonl", docs)
    seen = _SeenData()
    r = train(cfg_for(tmp_path / "pt", tmp_path / "paper.jsonl", mode="pretrain", max_steps=1, save_steps=1,
                      eval_fraction=0.2, replay_share=0.2), callbacks=[seen])
    tok = smol_tokenizer
    train_docs, eval_docs = split_rows(docs, 0.2, 42)
    domain = [b["input_ids"] for b in pack_texts(tok, [d["text"] for d in train_docs], 64)[0]]
    rep = r.metrics["data"]["replay"]
    assert rep["unit"] == "blocks" and rep["domain"] == len(domain) and rep["source"].startswith("the bundled")
    n_replay = round(len(domain) * 0.2 / 0.8)
    assert rep["replay"] == n_replay > 10 and rep["tokens"] == 64 * n_replay
    assert len(seen.train_ids) == len(domain) + n_replay
    assert abs(n_replay / len(seen.train_ids) - 0.2) < 0.01
    left = list(seen.train_ids)
    for b in domain:  # every domain block, as the domain alone packs it
        left.remove(b)
    assert len(left) == n_replay and all(len(b) == 64 for b in left)
    # each replay block, cut at EOS, is pieces of single conversations (never a piece of the paper)
    convs = [tok(tok.apply_chat_template(c["messages"], tokenize=False), add_special_tokens=False)["input_ids"]
             for c in read_jsonl(chitchat("train"))]
    hay = " | " + " | ".join(" ".join(map(str, c)) for c in convs) + " | "
    paper = " | " + " | ".join(" ".join(map(str, b)) for b in domain) + " | "
    eos = tok.eos_token_id
    for b in left:
        pieces, cur = [], []
        for t in b:
            if t == eos:
                pieces.append(cur)
                cur = []
            else:
                cur.append(t)
        pieces.append(cur)
        for p in pieces:
            if len(p) >= 1:
                assert f" {' '.join(map(str, p))} " in hay, tok.decode(b)
        longest = max(pieces, key=len)
        if len(longest) >= 12:
            assert f" {' '.join(map(str, longest))} " not in paper
    assert sum("<|im_start|>user" in tok.decode(b) for b in left) > n_replay // 2  # the chat template's turns
    # validation: the held-out pages alone
    assert seen.eval_ids == [b["input_ids"] for b in pack_texts(tok, [d["text"] for d in eval_docs], 64)[0]]
    assert r.metrics["data"]["validation"]["documents"] == len(eval_docs)


def test_sft_replay_rows_are_trained_and_validation_rows_are_never_drawn(tmp_path, convs, smol_tokenizer):
    """SFT with a replay file holding the run's own validation conversations (under other ids) and
    30 bundled conversations: the replay examples are bundled ones, encoded like any row, counted in
    the data report; the validation set is the held-out rows alone, and none of them is trained on."""
    from helpers.core.jsonl import read_jsonl
    from helpers.common.resources import chitchat
    from helpers.common.prompts import encode
    from helpers.train.examples import split_rows
    rows = read_jsonl(convs)
    train_part, val_part = split_rows(rows, 0.2, 42)
    general = read_jsonl(chitchat("train"))[:30]
    write_jsonl(tmp_path / "replay.jsonl", [dict(r, id=f"copy-{i}") for i, r in enumerate(val_part)] + general)
    seen = _SeenData()
    r = train(cfg_for(tmp_path / "sft", convs, max_steps=2, save_steps=2, eval_fraction=0.2, eval_steps=2,
                      replay_share=0.25, replay_path=str(tmp_path / "replay.jsonl")), callbacks=[seen])
    d = r.metrics["data"]
    n_domain = d["train"]["kept"]
    want = round(n_domain * 0.25 / 0.75)
    assert d["replay"]["replay"] == want and d["replay"]["domain"] == n_domain and d["replay"]["unit"] == "examples"
    assert d["replay"]["excluded"] >= len(val_part) and d["replay"]["source"] == str(tmp_path / "replay.jsonl")
    assert d["replay"]["trained_tokens"] > 0 and d["replay"]["passes"] == 1
    enc = lambda row: encode(smol_tokenizer, row, "auto", 64)["input_ids"]  # noqa: E731
    domain = [enc(x) for x in train_part]
    val = [enc(x) for x in val_part]
    bundled = [enc(x) for x in general]
    assert len(seen.train_ids) == n_domain + want
    replayed = [x for x in seen.train_ids if x not in domain]
    assert len(replayed) == want and all(x in bundled for x in replayed)
    assert not any(v in seen.train_ids for v in val)  # the validation conversations are never trained on
    assert seen.eval_ids == val and d["validation"]["kept"] == len(val_part)


def test_replay_share_must_be_below_one(tmp_path, convs):
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"REPLAY_SHARE=.*must be in \[0, 1\)"):
            cfg_for(tmp_path / "x", convs, replay_share=bad)
    with pytest.raises(ConfigError, match="REPLAY_SHARE=1.0"):  # a config built directly is checked by train()
        train(TrainConfig(model_name=EMB, dataset_path=str(convs), output_dir=str(tmp_path / "y"), replay_share=1.0))
    assert not (tmp_path / "y").exists()


def test_a_missing_or_malformed_replay_file_names_the_file_and_row(tmp_path, convs):
    with pytest.raises(DataError, match=r"REPLAY_PATH '.*nowhere.jsonl' does not exist"):
        train(cfg_for(tmp_path / "a", convs, max_steps=1, replay_share=0.2,
                      replay_path=str(tmp_path / "nowhere.jsonl")))
    bad = tmp_path / "bad_replay.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
                   '{"messages": [{"role": "user", "content": "hi"}\n')
    with pytest.raises(DataError, match=r"bad_replay.jsonl:2: not a JSON object"):
        train(cfg_for(tmp_path / "b", convs, max_steps=1, replay_share=0.2, replay_path=str(bad)))
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"messages": [{"role": "human", "content": "hi"}]}, {"prompt": "no known field"}]
    write_jsonl(tmp_path / "shape.jsonl", rows)
    with pytest.raises(DataError) as err:
        train(cfg_for(tmp_path / "c", convs, max_steps=1, replay_share=0.2, replay_path=str(tmp_path / "shape.jsonl")))
    assert "shape.jsonl row 1: message 0 needs role" in str(err.value)
    assert "shape.jsonl row 2: no 'messages'" in str(err.value)
    write_jsonl(tmp_path / "text.jsonl", rows[:1] + [{"text": "Plain text, for pretraining only."}])
    with pytest.raises(DataError, match=r"text.jsonl row 1: a raw 'text' row has no reply"):  # SFT needs replies
        train(cfg_for(tmp_path / "d", convs, max_steps=1, replay_share=0.2, replay_path=str(tmp_path / "text.jsonl")))
    from helpers.common.resources import chitchat
    with pytest.raises(DataError, match="no row of .*test.jsonl can be used .100 are validation or test rows"):
        train(cfg_for(tmp_path / "e", convs, max_steps=1, replay_share=0.2, replay_path=str(chitchat("test"))))
    assert not any((tmp_path / x / "checkpoints").exists() for x in "abcde")


def test_resume_with_another_replay_share_is_refused(tmp_path, convs):
    train(cfg_for(tmp_path / "run", convs, max_steps=2, save_steps=2, eval_fraction=0.0, replay_share=0.2))
    with pytest.raises(ConfigError, match="replay_share: folder has 0.2, this run 0.3"):
        train(cfg_for(tmp_path / "run", convs, max_steps=4, save_steps=2, eval_fraction=0.0, replay_share=0.3))
    with pytest.raises(ConfigError, match="replay_share: folder has 0.2, this run 0.0"):
        train(cfg_for(tmp_path / "run", convs, max_steps=4, save_steps=2, eval_fraction=0.0))
    # a run folder from before replay existed (no replay in its signature) ran without replay
    run = RunDir(tmp_path / "run")
    sig = {k: v for k, v in run.get("signature").items() if not k.startswith("replay")}
    run.update("signature", sig)
    cfg = cfg_for(tmp_path / "run", convs, eval_fraction=0.0, replay_share=0.2)
    with pytest.raises(ConfigError, match="replay_share: folder has 0.0, this run 0.2"):
        run.check_signature(cfg, resuming=True)
    run.check_signature(cfg.replace(replay_share=0.0), resuming=True)


def test_each_shard_draws_its_replay_from_its_own_part_of_the_rows(smol_tokenizer):
    cfg = TrainConfig(mode="sft", replay_share=0.2, num_shards=2, max_seq_len=128)
    pools = [read_replay(cfg, s) for s in (0, 1)]
    assert [p.start for p in pools] == [0, 400] and len(pools[0].rows) == 800
    (e0, r0), (e1, r1) = [replay_examples(smol_tokenizer, p, cfg, 40, set()) for p in pools]
    assert r0["replay"] == r1["replay"] == 10
    assert not any(x in e1 for x in e0)  # different conversations
    again, _ = replay_examples(smol_tokenizer, read_replay(cfg, 1), cfg, 40, set())
    assert again == e1  # the same draw on a rerun (a resumed sitting trains the same examples)
