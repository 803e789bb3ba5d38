"""Rows to examples: the training rows read and checked, split for validation or cut to a shard,
and encoded with the run's template (SFT) or packed into blocks of tokens (pretraining)."""
from __future__ import annotations

import random

from helpers.common.prompts import adds_bos, describe_report, encode_many
from helpers.common.rows import TYPE_PROBLEM, validate_rows
from helpers.core.jsonl import DataError, read_jsonl
from helpers.train.config import TrainConfig


def split_rows(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministic train/validation split of rows (validation never trained on)."""
    if fraction <= 0 or len(rows) < 4:
        return rows, []
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    n_eval = max(1, int(round(len(rows) * fraction)))
    ev = set(idx[:n_eval])
    return [r for i, r in enumerate(rows) if i not in ev], [r for i, r in enumerate(rows) if i in ev]


def document_ids(tokenizer, text: str, add_bos: bool) -> list[int]:
    """One document's tokens as the packed stream holds them: BOS first where the model expects
    one (``helpers.common.prompts.adds_bos``), EOS last."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if add_bos:
        ids = [tokenizer.bos_token_id] + ids
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def cut_blocks(docs: list[list[int]], block_size: int, separate: bool = False) -> list[dict]:
    """Documents' tokens back to back, cut into blocks of ``block_size`` tokens (the last one may
    be shorter). With ``separate`` each block also records the lengths of the document pieces it
    holds (``seq_lengths``), so that they are trained apart (helpers.train.packing)."""
    blocks: list[dict] = []
    cur: list[int] = []
    lens: list[int] = []

    def emit():
        b = {"input_ids": cur, "completion_mask": [1] * len(cur)}
        if separate:
            b["seq_lengths"] = lens
        blocks.append(b)

    for d in docs:
        k = 0
        while k < len(d):
            take = min(block_size - len(cur), len(d) - k)
            cur = cur + d[k:k + take]
            lens = lens + [take]
            k += take
            if len(cur) == block_size:
                emit()
                cur, lens = [], []
    if cur:
        emit()
    return blocks


def pack_texts(tokenizer, texts: list[str], block_size: int, separate: bool = False) -> tuple[list[dict], dict]:
    """Documents tokenized, joined with EOS between them, cut into blocks of ``block_size`` tokens
    (the tail shorter than a block is kept as a last, shorter block); ``separate``: see
    :func:`cut_blocks` (SEPARATE_DOCUMENTS)."""
    add_bos = adds_bos(tokenizer)
    docs = [document_ids(tokenizer, t, add_bos) for t in texts]
    blocks = [b for b in cut_blocks(docs, block_size, separate) if len(b["input_ids"]) >= 16]
    return blocks, {"documents": len(texts), "tokens": sum(map(len, docs)), "blocks": len(blocks),
                    "block_size": block_size, "separate_documents": separate}


def load_rows(path: str, mode: str) -> list[dict]:
    """The rows of a training (or validation) file, checked: a list or dict where text belongs is an
    error naming the rows; pretraining keeps the rows with text, SFT warns about rows it cannot use."""
    if not path:
        raise DataError("DATASET_PATH is empty: point it at a JSONL file (notebook 02 writes data/<name>/train.jsonl).")
    rows = read_jsonl(path)
    if not rows:
        raise DataError(f"{path} holds no rows.")
    problems = validate_rows(rows, path)
    wrong_type = [p for p in problems if TYPE_PROBLEM in p]
    if wrong_type:  # never train on str(list): say which rows to fix
        raise DataError(f"{len(wrong_type)} row(s) of {path} hold a list or dict where text belongs:\n  "
                        + "\n  ".join(wrong_type[:10]) + ("\n  ..." if len(wrong_type) > 10 else ""))
    if mode == "pretrain":
        bad = [i for i, r in enumerate(rows) if not str(r.get("text") or "").strip()]
        if len(bad) == len(rows):
            raise DataError(f"{path}: pretraining needs rows with a non-empty 'text' field; none found.")
        if bad:
            print(f"WARNING: {len(bad)} row(s) of {path} have no text and are skipped: rows {bad[:10]}")
        return [r for r in rows if str(r.get("text") or "").strip()]
    if problems:
        print(f"WARNING: {len(problems)} row(s) of {path} cannot be trained on and are skipped:\n  "
              + "\n  ".join(problems[:10]) + ("\n  ..." if len(problems) > 10 else ""))
    return rows


def encode_rows(tokenizer, rows: list[dict], cfg: TrainConfig, source: str):
    """The rows as training examples and their report (printed): pretraining packs their text into
    blocks of MAX_SEQ_LEN tokens, SFT encodes each with the run's template (an error when none is usable)."""
    if cfg.mode == "pretrain":
        enc, rep = pack_texts(tokenizer, [str(r["text"]) for r in rows], cfg.max_seq_len, cfg.separate_documents)
        print(f"{source}: {rep['documents']} documents, {rep['tokens']:,} tokens -> {rep['blocks']} blocks of "
              f"{rep['block_size']}")
        return enc, dict(rep, source=source)
    enc, rep = encode_many(tokenizer, rows, cfg.template, cfg.max_seq_len, cfg.system_prompt or None, source=source)
    print(describe_report(rep))
    if not enc:
        raise DataError(f"{source}: no usable rows (see the reasons above).")
    return enc, rep


def shard_rows(rows: list, num_shards: int, index: int) -> list:
    """Shard ``index`` of ``num_shards`` contiguous, near-equal parts (stable across sittings)."""
    n = len(rows)
    lo = (n * index) // num_shards
    hi = (n * (index + 1)) // num_shards
    return rows[lo:hi]
