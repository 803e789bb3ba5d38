"""Replay: general data mixed into the training stream, so the model keeps what it could do.

Replay (against forgetting: tuned on a narrow corpus alone, a chat model loses its syntax and
repeats itself): with ``REPLAY_SHARE`` = s > 0, general data makes up the share s of the training
examples, counted after encoding: SFT examples (rows), or pretraining blocks of MAX_SEQ_LEN
tokens. For N domain examples, round(N * s / (1 - s)) replay examples join them, spread evenly
among them; the Trainer shuffles them all as usual. Epochs and steps count them: one epoch is
N + R examples.

* The rows: ``REPLAY_PATH``, a JSONL of conversations (``{"messages"}``), instruction rows or (for
  pretraining) ``{"text"}`` rows; "" = the bundled conversations' train split
  (``helpers.common.resources.chitchat("train")``). A missing file or a row that is none of those is an
  error naming the file and row. They are drawn in an order fixed by SEED; rows whose content is
  a validation row of the run or a conversation of the bundled test split (notebook 05 measures
  general loss there) are never drawn. When the rows run out before the share is reached they are
  drawn again in the same order, and the data report warns.
* SFT: a replay row is trained like any row (the run's TEMPLATE and SYSTEM_PROMPT, loss on the
  replies, cut at MAX_SEQ_LEN).
* Pretraining: a conversation is rendered to text with the model's chat template, as SFT renders
  it (a model without one: plain ``User: ...`` / ``Assistant: ...`` lines), a ``{"text"}`` row is
  taken as it is; the replay texts are packed among themselves into full blocks, so no block
  holds both a domain document and a replay conversation.
* Validation stays in-domain: replay joins the training examples only, after the validation rows
  (or blocks) are set aside. The general loss is notebook 05's forgetting report.
* Shards: each shard gets its own replay, the share of its own examples, drawn starting at its
  own part (1/NUM_SHARDS) of the ordered rows.
* Resume: REPLAY_SHARE and REPLAY_PATH are part of the run's signature (``helpers.common.run``): a run
  resumed with another share or file is refused. The draw depends on SEED only, so a resumed
  run trains on the same examples.
* The data report (``metrics["data"]["replay"]``, printed): how many replay examples and tokens
  went in, from which file, from how many of its rows, and the share reached.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from helpers.common.prompts import PromptError, adds_bos, encode, has_chat_template, row_kind, to_messages
from helpers.common.resources import chitchat
from helpers.common.rows import validate_rows
from helpers.core.jsonl import DataError, read_jsonl
from helpers.train.config import TrainConfig
from helpers.train.examples import cut_blocks, document_ids

BUNDLED_REPLAY = "the bundled conversations (helpers.common.resources.chitchat('train'))"


@dataclass
class ReplayPool:
    """The rows replay draws from, read and checked before the model loads."""
    rows: list[dict]
    source: str  # the file, or BUNDLED_REPLAY
    start: int  # where this run (shard) starts in the seeded order of the rows


def read_replay(cfg: TrainConfig, shard: int | None = None) -> ReplayPool | None:
    """REPLAY_PATH's rows ("" = the bundled conversations' train split), None when REPLAY_SHARE
    is 0. A missing or empty file, or a row that is no conversation, instruction row or (pretrain
    only) ``{"text"}`` row, is a DataError naming the file and the rows."""
    if cfg.replay_share <= 0:
        return None
    path = Path(cfg.replay_path) if cfg.replay_path else chitchat("train")
    source = str(path) if cfg.replay_path else BUNDLED_REPLAY
    if not path.is_file():
        raise DataError(f"REPLAY_PATH {str(path)!r} does not exist: point it at a JSONL of general conversations "
                        '({"messages"}), instruction rows or {"text"} rows, or leave it "" for the bundled '
                        "conversations.")
    rows = read_jsonl(path)  # a line that is no JSON object: DataError naming the file and line
    if not rows:
        raise DataError(f"REPLAY_PATH {str(path)!r} holds no rows.")
    problems = validate_rows(rows, f"replay file {path}")
    if cfg.mode == "sft":
        problems += [f"replay file {path} row {i}: a raw 'text' row has no reply to train on; SFT replay needs "
                     "conversations or instruction rows" for i, r in enumerate(rows)
                     if "text" in r and "messages" not in r and "instruction" not in r and "output" not in r]
    if problems:
        raise DataError(f"{len(problems)} row(s) of the replay file {path} cannot be used (fix or remove them):\n  "
                        + "\n  ".join(problems[:10]) + ("\n  ..." if len(problems) > 10 else ""))
    start = (len(rows) * shard) // cfg.num_shards if shard is not None else 0
    return ReplayPool(rows, source, start)


def replay_count(n_domain: int, share: float) -> int:
    """Replay examples to add to ``n_domain`` domain examples so that they are ``share`` of all."""
    return int(round(n_domain * share / (1 - share))) if share > 0 else 0


def content_key(row: dict) -> str | None:
    """What a row says, whatever its other keys (ids, sources): its messages, or its text."""
    try:
        if row_kind(row) == "text":
            return json.dumps(["text", str(row["text"]).strip()])
        return json.dumps([[m["role"], str(m["content"]).strip()] for m in to_messages(row)])
    except (PromptError, KeyError, TypeError):
        return None


def replay_text(tokenizer, row: dict, system: str | None = None) -> str:
    """A replay row as pretraining text: a ``{"text"}`` row as it is; a conversation (or an
    instruction row, as its two turns) rendered with the model's chat template, or as plain
    ``User: ...`` / ``Assistant: ...`` lines when the model has none. The template's own BOS is
    left out: the packing adds it where the model expects one, as for every document."""
    if row_kind(row) == "text":
        return str(row["text"])
    msgs = to_messages(row, system)
    if not has_chat_template(tokenizer):
        return "\n".join(f"{m['role'].capitalize()}: {str(m['content']).strip()}" for m in msgs)
    text = tokenizer.apply_chat_template(msgs, tokenize=False)
    if tokenizer.bos_token and text.startswith(tokenizer.bos_token):
        text = text[len(tokenizer.bos_token):]
    return text


def _replay_order(pool: ReplayPool, seed: int):
    """Row indices in a seeded order, from the pool's start, round and round (pass, index)."""
    order = list(range(len(pool.rows)))
    random.Random(f"replay-{seed}").shuffle(order)
    n, k = len(order), 0
    while True:
        yield k // n, order[(pool.start + k) % n]
        k += 1


def replay_examples(tokenizer, pool: ReplayPool, cfg: TrainConfig, n_domain: int,
                    exclude: set[str]) -> tuple[list[dict], dict]:
    """The replay examples for ``n_domain`` domain examples (SFT rows, or pretraining blocks), and
    their report. Rows are drawn in a seeded order (SEED), never those whose content is in
    ``exclude`` (the validation rows, the bundled test conversations); when the pool runs out before
    the share is reached it is drawn again in the same order (the report counts the passes).

    SFT: each row encoded as any training row (the run's template, loss on the replies). Pretrain:
    each row rendered with :func:`replay_text`, and the rows packed among themselves into blocks of
    MAX_SEQ_LEN, so no block holds both a domain document and a replay conversation."""
    want = replay_count(n_domain, cfg.replay_share)
    rep = {"source": pool.source, "share": cfg.replay_share, "unit": "blocks" if cfg.mode == "pretrain" else "examples",
           "domain": n_domain, "replay": 0, "tokens": 0, "rows_drawn": 0, "distinct_rows": 0,
           "pool_rows": len(pool.rows), "excluded": 0, "skipped": 0, "passes": 0}
    if want == 0:
        return [], rep
    system = cfg.system_prompt or None
    block = cfg.max_seq_len
    add_bos = adds_bos(tokenizer)
    out: list[dict] = []
    docs: list[list[int]] = []
    n_stream = 0
    used: set[int] = set()
    excluded = {i for i, row in enumerate(pool.rows) if content_key(row) in exclude}
    skipped: dict[int, str] = {}

    def enough() -> bool:
        return n_stream >= want * block if cfg.mode == "pretrain" else len(out) >= want

    for passes, i in _replay_order(pool, cfg.seed):
        if enough():
            break
        if passes > 0 and not used:
            break  # a whole pass gave nothing usable (rows left out stay out: each later pass uses one at least)
        if i in excluded or i in skipped:
            continue
        row = pool.rows[i]
        if cfg.mode == "pretrain":
            docs.append(document_ids(tokenizer, replay_text(tokenizer, row, system), add_bos))
            n_stream += len(docs[-1])
        else:
            try:
                e = encode(tokenizer, row, cfg.template, cfg.max_seq_len, system)
            except PromptError as exc:
                skipped[i] = str(exc)
                continue
            if sum(e["completion_mask"]) == 0:
                skipped[i] = f"no reply tokens left within max_len={cfg.max_seq_len}"
                continue
            out.append({"input_ids": e["input_ids"], "completion_mask": e["completion_mask"]})
        used.add(i)
        rep["rows_drawn"] += 1
        rep["passes"] = passes + 1
    if not used:
        raise DataError(f"Replay: no row of {pool.source} can be used ({len(excluded)} are validation or test rows, "
                        f"{len(skipped)} cannot be encoded" + (f", e.g. row {next(iter(skipped))}: "
                                                               f"{next(iter(skipped.values()))}" if skipped else "")
                        + "); give REPLAY_PATH other rows, or REPLAY_SHARE=0.")
    if cfg.mode == "pretrain":
        out = cut_blocks(docs, block, cfg.separate_documents)[:want]
    rep.update(replay=len(out), tokens=sum(len(e["input_ids"]) for e in out), distinct_rows=len(used),
               excluded=len(excluded), skipped=len(skipped), skipped_rows=sorted(skipped.items())[:10])
    if cfg.mode != "pretrain":
        rep["trained_tokens"] = sum(sum(e["completion_mask"]) for e in out)
    return out, rep


def mix_replay(domain: list[dict], replay: list[dict]) -> list[dict]:
    """The domain examples in their order with the replay examples spread evenly among them."""
    if not replay:
        return list(domain)
    if not domain:
        return list(replay)
    out: list[dict] = []
    r = 0
    for i, ex in enumerate(domain):
        out.append(ex)
        target = round((i + 1) * len(replay) / len(domain))
        out += replay[r:target]
        r = max(r, target)
    return out + replay[r:]


def describe_replay(rep: dict) -> str:
    """The replay line of the data report."""
    total = rep["domain"] + rep["replay"]
    line = (f"Replay: {rep['replay']} {rep['unit']} ({rep['tokens']:,} tokens) of general data from "
            f"{rep['distinct_rows']} of {rep['pool_rows']} rows of {rep['source']}: "
            f"{100 * rep['replay'] / max(1, total):.1f}% of {total} "
            f"training {rep['unit']} (REPLAY_SHARE={rep['share']})")
    if rep["excluded"]:
        line += f"; {rep['excluded']} rows of it are validation or test rows and never drawn"
    if rep["skipped"]:
        line += f"; {rep['skipped']} rows skipped (e.g. row {rep['skipped_rows'][0][0]}: {rep['skipped_rows'][0][1]})"
    if rep["passes"] > 1:
        line += (f". WARNING: the replay rows were used {rep['passes']} times over to reach the share; give "
                 "REPLAY_PATH more general rows")
    return line
