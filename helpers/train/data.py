"""The run's data: its training, validation and replay rows read and checked before the model loads,
then encoded into the examples the trainer gets (:class:`TrainData`), validation set aside first."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers.common.resources import chitchat
from helpers.core.jsonl import read_jsonl
from helpers.train.config import TrainConfig
from helpers.train.examples import encode_rows, load_rows, shard_rows, split_rows
from helpers.train.replay import ReplayPool, content_key, describe_replay, mix_replay, read_replay, replay_examples


@dataclass
class RunRows:
    """The rows a run reads: training (capped by MAX_ROWS, cut to the shard), EVAL_PATH's validation
    rows (None without EVAL_PATH), and the replay pool (None when REPLAY_SHARE is 0)."""
    train: list[dict]
    validation: list[dict] | None
    replay: ReplayPool | None


@dataclass
class TrainData:
    """The encoded training and validation examples, with their reports (``train_enc`` holds the
    replay examples too, spread among the domain ones; ``train_rep`` is the domain's report)."""
    train_rows: list
    train_enc: list
    eval_enc: list
    train_rep: dict
    eval_rep: dict | None
    replay_rep: dict | None = None

    @property
    def has_eval(self) -> bool:
        return bool(self.eval_enc)


def read_data(cfg: TrainConfig, shard: int | None) -> RunRows:
    """The training rows (capped by MAX_ROWS, cut to the shard), the validation rows of EVAL_PATH,
    and the replay rows (REPLAY_SHARE > 0; each shard starts at its own part of them)."""
    rows = load_rows(cfg.dataset_path, cfg.mode)
    if cfg.max_rows:
        rows = rows[: cfg.max_rows]
    if shard is not None:
        rows = shard_rows(rows, cfg.num_shards, shard)
    return RunRows(rows, load_rows(cfg.eval_path, cfg.mode) if cfg.eval_path else None, read_replay(cfg, shard))


def encode_data(tok, cfg: TrainConfig, rows: RunRows, log) -> TrainData:
    """The examples encoded with the run's template, validation set aside first.

    Validation: EVAL_PATH's rows, else EVAL_FRACTION of the rows; a pretraining corpus of fewer
    than 4 documents holds out its last blocks instead. Validation is in-domain only: the replay
    examples (:func:`helpers.train.replay.replay_examples`) join the training examples after it is set aside."""
    if cfg.eval_path:
        train_rows, eval_rows = rows.train, rows.validation
    elif cfg.mode == "pretrain" and len(rows.train) < 4 and cfg.eval_fraction > 0:
        train_rows, eval_rows = rows.train, []  # too few documents: hold out the tail blocks instead (below)
    else:
        train_rows, eval_rows = split_rows(rows.train, cfg.eval_fraction, cfg.seed)
    train_enc, train_rep = encode_rows(tok, train_rows, cfg, Path(cfg.dataset_path).name)
    eval_enc, eval_rep = encode_rows(tok, eval_rows, cfg, "validation") if eval_rows else ([], None)
    if cfg.mode == "pretrain" and not eval_rows and not cfg.eval_path and cfg.eval_fraction > 0 and len(train_enc) >= 4:
        n_eval = max(1, int(round(len(train_enc) * cfg.eval_fraction)))
        train_enc, eval_enc = train_enc[:-n_eval], train_enc[-n_eval:]
        eval_rep = {"source": "validation", "blocks": n_eval,
                    "note": "the last blocks of the corpus (fewer than 4 documents)"}
        log(f"Fewer than 4 documents: the last {n_eval} of {n_eval + len(train_enc)} blocks are held out for "
            "perplexity.")
    replay_rep = None
    if rows.replay is not None:
        exclude = {k for k in map(content_key, list(eval_rows or []) + read_jsonl(chitchat("test"))) if k}
        replay_enc, replay_rep = replay_examples(tok, rows.replay, cfg, len(train_enc), exclude)
        train_enc = mix_replay(train_enc, replay_enc)
        log(describe_replay(replay_rep))
    return TrainData(train_rows, train_enc, eval_enc, train_rep, eval_rep, replay_rep)


def row_tokens(cfg: TrainConfig, data: TrainData) -> int:
    """The longest row the training data makes, for the memory plan: MAX_SEQ_LEN for packed rows
    and pretraining blocks (full but the last), else the longest example."""
    if cfg.mode == "sft" and cfg.packing:
        return min(cfg.max_seq_len, sum(len(e["input_ids"]) for e in data.train_enc))
    return max((len(e["input_ids"]) for e in data.train_enc), default=cfg.max_seq_len)
