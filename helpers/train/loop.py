"""Training: one entry point for domain pretraining (notebook 03) and instruction tuning (04).

``train(cfg)`` runs TRL's ``SFTTrainer`` on a LoRA (or QLoRA, or full) model and returns a
:class:`TrainResult`. The same code runs as a script, alone or under ``accelerate launch``::

    python -m helpers.train.loop config.json            # fields not in the file keep their defaults
    MAX_STEPS=50 python -m helpers.train.loop config.json   # any field from the environment
    accelerate launch --config_file configs/accelerate/ddp.yaml -m helpers.train.loop config.json

Where things live: the run folder and its manifest (``run.json``) are :class:`helpers.common.run.RunDir`;
checkpoints that survive a Colab disconnect, and the choice of the one to resume, are
:mod:`helpers.common.checkpoints`; the micro-batch and checkpointing that fit the GPU are
:mod:`helpers.train.memory`. This module holds the configuration, the data encoding, the model
preparation (kernels, LoRA) and ``train()``, which reads as its phases.

Resuming restores weights, optimizer, scheduler, RNG state and the position in the data; the
manifest's ``train_loss`` is the mean over the whole run, every sitting included. A long dataset
can be trained in shards, one per sitting, with a ledger in the manifest so no shard is trained
twice or skipped.

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

import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.checkpoints import (
    checkpoint_dirs,
    durable_checkpoints_callback,
    resume_point,
    stage_locally,
    step_of,
)
from helpers.common.hardware import current_choice
from helpers.common.merge import merge_adapter
from helpers.common.models import (
    attach_adapter,
    check_quantization,
    compute_dtype,
    count_parameters,
    default_model_name,
    load_model,
    resolve_model_path,
    under_fsdp,
)
from helpers.common.plots import plot_losses
from helpers.common.prompts import (
    PromptError,
    adds_bos,
    describe_report,
    encode,
    encode_many,
    has_chat_template,
    row_kind,
    to_messages,
)
from helpers.common.resources import chitchat
from helpers.common.rows import TYPE_PROBLEM, validate_rows
from helpers.common.run import RunDir
from helpers.core.config import ConfigError, StepConfig
from helpers.core.jsonl import DataError, read_jsonl
from helpers.train.memory import MemoryPlan, lora_targets, peak_memory_gib, plan_memory
from helpers.train.packing import (
    REAL_TOKENS,
    PackedCollator,
    describe_packing,
    pack_examples,
    packing_kernel,
    prepare_model_for_packing,
)

# how a packed run's learning rate follows the k examples one packed row holds (packed_lr)
_PACKED_LR_FACTOR = {"linear": lambda k: k, "sqrt": math.sqrt, "none": lambda k: 1.0}
PACKED_LR_SCALINGS = tuple(_PACKED_LR_FACTOR)


@dataclass
class TrainConfig(StepConfig, notebooks=("03", "04")):
    """Everything one training run needs. Defaults are the QLoRA recipe for a Colab GPU."""
    model_name: str = ""  # base model: Hub id, folder or embedded name; "" = Llama-3.2-1B-Instruct on a GPU, else embedded SmolLM2-135M
    mode: str = "sft"  # "sft" (instruction tuning, loss on replies) or "pretrain" (raw text, loss on every token)
    dataset_path: str = ""  # JSONL: instruction/messages rows (sft), {"text"} rows (pretrain); "" = notebook 02's (needs 20 rows), else bundled chats
    eval_path: str = ""  # validation JSONL; "" = hold out eval_fraction of the training rows
    eval_fraction: float = 0.05  # share of training rows (pretrain: documents) held out for validation when EVAL_PATH is ""
    replay_share: float = 0.0  # share of the training stream that is general data, against forgetting (0 = off; sft: examples, pretrain: blocks)
    replay_path: str = ""  # general data for REPLAY_SHARE: JSONL of conversations, instruction rows or {"text"} rows (pretrain); "" = bundled chats
    output_dir: str = "outputs/run"  # durable folder (Drive on Colab): adapter, metrics, checkpoint copies
    checkpoint_dir: str = ""  # fast local folder for checkpoints while training ("" = output_dir/local-checkpoints)
    run_name: str = ""  # the run's folder under the outputs folder (notebooks 03, 04), its label in logs and plots ("" = OUTPUT_DIR's name)
    finetune: str = "lora"  # "lora" (an adapter on a frozen base) or "full" (every weight; no 4bit/8bit quantization)
    quantization: str = "auto"  # "4bit" (QLoRA), "8bit", "16bit", "none" (fp32); "auto" = 4bit on a GPU, fp32 on a CPU
    lora_r: int = 16  # LoRA rank: the adapter's size
    lora_alpha: int = 16  # LoRA scale numerator (scale = LORA_ALPHA / LORA_R)
    lora_dropout: float = 0.0  # dropout on the LoRA input (0 is fastest and usually as good)
    target_modules: str = "all-linear"  # "all-linear" or comma-separated names, e.g. "q_proj,v_proj"
    train_embeddings: bool = False  # also train embed_tokens and lm_head in full (domain pretraining: the domain's vocabulary use)
    embedding_lr_ratio: float = 0.1  # learning rate of embed_tokens and lm_head relative to LEARNING_RATE
    init_adapter: str = ""  # "" = a fresh LoRA; else an adapter folder to start from, or "03" = notebook 03's (domain pretraining)
    template: str = "auto"  # "auto" (the model's chat template, else alpaca), "chat", or "alpaca" (our instruction template)
    system_prompt: str = ""  # system message added to conversations without one ("" = none)
    max_seq_len: int = 1024  # tokens per example (sft; longer ones are cut) or per packed block (pretrain)
    packing: bool = True  # sft: pack examples into rows of MAX_SEQ_LEN tokens, each attending only to itself (no padding)
    separate_documents: bool = False  # pretrain: documents sharing a block attend only to themselves (False: one stream)
    packed_lr_scaling: str = "linear"  # sft packing: LEARNING_RATE x examples per row ("linear"), x their square root ("sqrt") or as set ("none")
    num_train_epochs: float = 1.0  # passes over the training data (ignored when MAX_STEPS > 0)
    max_steps: int = -1  # > 0: stop after this many optimizer steps; -1 = run NUM_TRAIN_EPOCHS
    per_device_batch_size: int = 4  # rows per GPU per micro-batch: packed rows, examples (PACKING=False) or blocks
    gradient_accumulation_steps: int = 4  # micro-batches per optimizer step
    learning_rate: float = 2e-4  # peak learning rate of the LoRA weights (of every weight with FINETUNE="full")
    lr_scheduler: str = "linear"  # "linear", "cosine", "constant", "constant_with_warmup", ...
    warmup_ratio: float = 0.03  # share of steps spent warming the learning rate up
    weight_decay: float = 0.01  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping
    optim: str = "auto"  # "auto" (fused AdamW on GPU, AdamW on CPU) or any transformers optim name
    gradient_checkpointing: bool = True  # recompute activations in backward: much less memory, ~30% slower
    offload_activations: bool = True  # with checkpointing on a GPU: keep the checkpointed layer inputs in CPU memory
    logging_steps: int = 10  # log train loss every N steps
    eval_steps: int = 50  # validate every N steps (0 = only at the end)
    save_steps: int = 50  # checkpoint every N steps (copied to Drive on Colab)
    save_total_limit: int = 3  # checkpoints kept (local and on Drive)
    early_stopping_patience: int = 0  # stop after N evaluations without a better validation loss (0 = off)
    resume: str = "auto"  # "auto" continues from the newest complete checkpoint, "never" starts over; or a checkpoint folder
    num_shards: int = 1  # > 1: cut the training data into N shards and train one per sitting
    shard_index: int = -1  # which shard to train now (-1 = the next untrained one)
    max_time_minutes: float = 0.0  # stop (after a checkpoint) when this much time has passed (0 = no limit)
    seed: int = 42  # seed for LoRA init, data order and dropout
    merge: bool = False  # also save the adapter merged into 16-bit base weights
    report_to: str = "tensorboard"  # "tensorboard", "none", "wandb", ...
    kernels: str = "auto"  # "auto" (fused LoRA layers; Liger's RMSNorm/SwiGLU/RoPE too on a GPU when installed), "liger" or "none"
    auto_fit: bool = True  # on a GPU: choose micro-batch and checkpointing from free memory (effective batch kept)
    max_rows: int = 0  # use only the first N training rows (0 = all), for quick trials
    text_sources: str = ""  # notebook 03's corpus, read into DATASET_PATH: comma-separated JSONL/text/PDF files or folders ("" = notebooks 01 and 02's)
    use_sweep_best: bool = False  # True: notebook 04 takes notebook 07's best settings over the others (run 07 first; sweep/best_config.json)

    @classmethod
    def notebook_defaults(cls) -> dict[str, dict[str, Any]]:
        # 03 pretrains: a larger rank, the embeddings trained, a smaller learning rate (seed 000's recipe)
        # and a fifth of the blocks general conversations (replay, against forgetting; bench/quality.py --replay)
        return {"03": dict(run_name="pretrain", lora_r=64, lora_alpha=32, train_embeddings=True, learning_rate=5e-5,
                           replay_share=0.2),
                "04": dict(run_name="sft", early_stopping_patience=3)}

    @classmethod
    def notebook_comments(cls) -> dict[str, dict[str, str]]:
        # 03's form says why its rank is larger than the default (its notebook_defaults() above)
        return {"03": dict(lora_r="LoRA rank: larger than for instruction tuning (notebook 04), as there is more to learn",
                           replay_share="share of the packed blocks that are general conversations, so the model keeps "
                                        "its chat skills (0 = off)")}

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        return dict(model_name="embedded/smollm2-135m-instruct", quantization="none", max_steps=6,
                    per_device_batch_size=2, gradient_accumulation_steps=1, max_seq_len=256, logging_steps=1,
                    eval_steps=3, save_steps=3, max_rows=48, report_to="none", gradient_checkpointing=False,
                    learning_rate=5e-4, warmup_ratio=0.0)

    def validate(self) -> None:
        if self.mode not in ("sft", "pretrain"):
            raise ConfigError(f"MODE={self.mode!r}: use 'sft' (instruction tuning) or 'pretrain' (raw text).")
        if self.finetune not in ("lora", "full"):
            raise ConfigError(f"FINETUNE={self.finetune!r}: use 'lora' or 'full'.")
        if self.finetune == "full" and self.quantization in ("4bit", "8bit"):
            raise ConfigError("Full fine-tuning updates every weight and cannot run on a 4/8-bit quantized base; "
                              "use QUANTIZATION='16bit' (GPU) or 'none', or FINETUNE='lora' for QLoRA.")
        if not 0 <= self.eval_fraction < 0.5:
            raise ConfigError(f"EVAL_FRACTION={self.eval_fraction}: must be in [0, 0.5).")
        if not 0 <= self.replay_share < 1:
            raise ConfigError(f"REPLAY_SHARE={self.replay_share}: must be in [0, 1) (the share of general data in the "
                              "training stream; 0 = no replay, 0.2 = one example in five).")
        if self.num_shards < 1 or self.shard_index >= self.num_shards:
            raise ConfigError(f"SHARD_INDEX={self.shard_index} with NUM_SHARDS={self.num_shards}: index must be < shards.")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "max_seq_len", "lora_r", "logging_steps",
                     "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.upper()}={getattr(self, name)}: must be at least 1.")
        if self.learning_rate <= 0:
            raise ConfigError(f"LEARNING_RATE={self.learning_rate}: must be positive.")
        if self.packed_lr_scaling not in PACKED_LR_SCALINGS:
            raise ConfigError(f"PACKED_LR_SCALING={self.packed_lr_scaling!r}: one of "
                              f"{', '.join(repr(k) for k in PACKED_LR_SCALINGS)}.")


@dataclass
class TrainResult:
    output_dir: Path  # durable run folder
    adapter_dir: Path  # final adapter (or full model) + tokenizer
    metrics: dict  # train/eval loss, time, tokens/s, peak memory, data report
    log_history: list  # the trainer's log lines (loss per step, eval loss, ...)
    plot: Path | None = None  # loss curve
    merged_dir: Path | None = None
    resumed_from: str | None = None
    shard: int | None = None


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
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


# -- Replay: general data mixed into the training stream, so the model keeps what it could do --
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
    line = (f"Replay: {rep['replay']} {rep['unit']} ({rep['tokens']:,} tokens) of general data from {rep['distinct_rows']} "
            f"of {rep['pool_rows']} rows of {rep['source']}: {100 * rep['replay'] / max(1, total):.1f}% of {total} "
            f"training {rep['unit']} (REPLAY_SHARE={rep['share']})")
    if rep["excluded"]:
        line += f"; {rep['excluded']} rows of it are validation or test rows and never drawn"
    if rep["skipped"]:
        line += f"; {rep['skipped']} rows skipped (e.g. row {rep['skipped_rows'][0][0]}: {rep['skipped_rows'][0][1]})"
    if rep["passes"] > 1:
        line += (f". WARNING: the replay rows were used {rep['passes']} times over to reach the share; give "
                 "REPLAY_PATH more general rows")
    return line


def shard_rows(rows: list, num_shards: int, index: int) -> list:
    """Shard ``index`` of ``num_shards`` contiguous, near-equal parts (stable across sittings)."""
    n = len(rows)
    lo = (n * index) // num_shards
    hi = (n * (index + 1)) // num_shards
    return rows[lo:hi]


# ----------------------------------------------------------------------------------------------
# Metrics and callbacks
# ----------------------------------------------------------------------------------------------
def whole_run_train_loss(log_history: list[dict]) -> float | None:
    """Mean training loss over every logged step of the run, all sittings together: each logged
    ``loss`` (the mean since the previous log) weighted by the steps it covers. The log of a
    resumed run comes back with its checkpoint, so this covers the steps trained before the resume
    too (the Trainer's own ``training_loss`` counts only the last sitting's steps)."""
    by_step: dict[int, float] = {}
    for h in log_history:
        if "loss" in h and "step" in h:
            by_step[int(h["step"])] = float(h["loss"])  # a step logged twice (redone after a kill): the last
    total = covered = prev = 0
    for step in sorted(by_step):
        n = step - prev
        total += by_step[step] * n
        covered += n
        prev = step
    return total / covered if covered else None


def _make_callbacks(cfg: TrainConfig, root: RunDir, durable_ckpt: Path, t_start: float):
    """Drive-safe checkpoint copies, the time budget, and the live log of the run."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        """Stop cleanly (with a checkpoint) once max_time_minutes have passed."""

        def on_step_end(self, args, state, control, **kw):
            if cfg.max_time_minutes and (time.time() - t_start) / 60 >= cfg.max_time_minutes:
                print(f"Time budget of {cfg.max_time_minutes} min reached at step {state.global_step}: "
                      "saving a checkpoint and stopping (rerun to continue).")
                control.should_save = True
                control.should_training_stop = True
            return control

    class LiveLog(TrainerCallback):
        """Append every log line to log_history.jsonl as it happens (for plots of a killed run)."""

        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                root.append_log({"step": state.global_step, "epoch": state.epoch, **logs})

    return [durable_checkpoints_callback(durable_ckpt, cfg.save_total_limit), TimeBudget(), LiveLog()]



# ----------------------------------------------------------------------------------------------
# Model preparation
# ----------------------------------------------------------------------------------------------
def prepare_for_training(model, cfg: TrainConfig, quantized: bool):
    """Gradient checkpointing and input gradients, without the fp32 up-cast of norms, embeddings
    and lm_head that ``prepare_model_for_kbit_training`` does: that up-cast costs memory and
    speed (../bench/RESULTS.md) and is not needed with bf16/fp16 autocast."""
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if quantized or cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def apply_fast_kernels(model, kernels: str = "auto", log=print) -> str:
    """Swap in fused Triton kernels (Liger: RMSNorm, SwiGLU, RoPE) on the model instance.

    The LM head needs no kernel of its own: TRL's SFTTrainer already scores only the trained
    positions, in tiles, without building the (batch, seq, vocab) logits. Returns what was done."""
    if kernels == "none":
        return "none"
    choice = current_choice()
    if not choice.liger:
        if kernels == "liger":
            raise ConfigError(f"KERNELS='liger' cannot run here: {choice.describe()}.")
        return "none"
    import sys

    from liger_kernel.transformers import _apply_liger_kernel_to_instance
    modeling = sys.modules.get(type(getattr(model, "base_model", model)).__module__)
    before = dict(vars(modeling)) if modeling else {}
    _apply_liger_kernel_to_instance(model=model, rope=True, swiglu=True, rms_norm=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    _scope_liger_to_cuda(modeling, before)
    log("Fast kernels: Liger RMSNorm, SwiGLU and RoPE" + (" (fp16)" if choice.dtype == "float16" else ""))
    return "liger"


def _scope_liger_to_cuda(modeling, before: dict) -> None:
    """Liger patches the model's instance and also the whole modeling module (its RMSNorm and MLP
    classes, its ``apply_rotary_pos_emb``), so every model built afterwards in this process would
    run Triton kernels, a model on the CPU too (the GGUF check of notebook 06 loads one there, and
    fails with "Pointer argument cannot be accessed from Triton"). Put the classes back (the trained
    instance keeps its patched modules) and let the patched functions run Liger on CUDA tensors only."""
    import functools
    if modeling is None:
        return
    for name, new in list(vars(modeling).items()):
        old = before.get(name)
        if old is None or new is old:
            continue
        if isinstance(old, type):
            setattr(modeling, name, old)
        elif callable(old) and callable(new):
            plain = getattr(old, "_kit_plain", old)  # a later run (a sweep) replaces the dispatcher, never nests it

            @functools.wraps(plain)
            def dispatch(*args, _liger=new, _plain=plain, **kwargs):
                first = args[0] if args else next(iter(kwargs.values()), None)
                return (_liger if getattr(first, "is_cuda", False) else _plain)(*args, **kwargs)
            dispatch._kit_plain = plain
            setattr(modeling, name, dispatch)


def keep_master_weights_fp32(model, fp16: bool) -> int:
    """Under fp16 mixed precision, put trainable weights that are 16-bit back in fp32; returns how many.

    TRL's SFTTrainer casts the trainable weights of a quantized model to bf16 (the QLoRA paper's
    recipe), whatever the run's precision. With fp16 (a T4) the Trainer's GradScaler must unscale
    the gradients, which it cannot do for bf16 ones ("_amp_foreach_non_finite_check_and_unscale_cuda"
    not implemented for 'BFloat16') and should not do for fp16 ones (updates below fp16's resolution
    vanish): the weights it updates must be fp32. Under bf16 the cast stays, as TRL means it."""
    import torch
    if not fp16:
        return 0
    n = 0
    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16):
            p.data = p.data.float()
            n += 1
    return n


def fuse_lora(model, kernels: str, applied: str, log=print) -> str:
    """Route the LoRA layers through helpers.train.fast_lora (base matmul and adapter in one autograd
    function, no copies of the output) unless KERNELS='none', under FSDP (sharded 4-bit weights)
    or on an 8-bit base. Returns the updated description of what was applied."""
    from helpers.train.fast_lora import patch_lora_layers
    if kernels == "none" or under_fsdp():
        return applied
    n = patch_lora_layers(model)
    if not n:
        return applied
    log(f"Fast kernels: fused LoRA on {n} layers")
    return "fused-lora" if applied == "none" else f"{applied}+fused-lora"


def add_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model
    if cfg.init_adapter:
        print(f"Continuing from adapter {cfg.init_adapter}")
        return attach_adapter(model, cfg.init_adapter, cfg.model_name, trainable=True)
    modules_to_save = ["embed_tokens", "lm_head"] if cfg.train_embeddings else None
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    kwargs = dict(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                  task_type="CAUSAL_LM", target_modules=lora_targets(cfg), modules_to_save=modules_to_save)
    if modules_to_save and tied:
        kwargs["ensure_weight_tying"] = True
    return get_peft_model(model, LoraConfig(**kwargs))


def _make_trainer_class():
    import torch
    from trl import SFTTrainer


    class KitTrainer(SFTTrainer):
        """SFTTrainer with a smaller learning rate for embed_tokens/lm_head (domain pretraining), and a
        training step without the trainer's own waits for the GPU.

        TRL's ``compute_loss`` reads its metrics (``num_valid > 0``, entropy, token accuracy, token
        count) with ``.item()`` after every forward, and the Trainer reads the token count with
        ``.item()`` after every backward: each read makes the CPU wait until the GPU has caught up,
        so the GPU then idles while Python prepares the next kernels (the between-step gap of
        bench/RESULTS.md, and most of a small model's step). Here, for the loss TRL computes by
        default (``loss_type="nll"`` through its fused LM head, no label smoothing, no loss function
        of the user's, no MoE auxiliary loss, no sequence parallelism), the loss is the same
        expression and the metrics stay sums on the GPU, read when the trainer logs; the token count
        comes from the CPU (the packed collator's ``REAL_TOKENS``, the same non-padding count). Any
        other loss runs TRL's own code. The libraries still wait inside the forward and backward
        (TRL's fused LM head, transformers' packed-position check: bench/RESULTS.md)."""

        embedding_lr_ratio: float = 1.0

        def _kit_plain_loss(self) -> bool:
            pc = getattr(self.accelerator, "parallelism_config", None)
            return (self.compute_loss_func is None and self.label_smoother is None
                    and getattr(self.args, "loss_type", "nll") == "nll" and not getattr(self, "aux_loss_enabled", False)
                    and not (pc is not None and getattr(pc, "sp_enabled", False)))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs.pop(REAL_TOKENS, None)
            if not self._kit_plain_loss():
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            inputs["use_cache"] = False
            outputs = model(**inputs, fused_lm_head=True)
            count = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            # TRL's expression: clamped so a batch without trained tokens gives a finite zero
            loss = (-outputs.log_probs).sum() / torch.as_tensor(count).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            with torch.no_grad():
                sums = torch.stack([outputs.label_mask.sum().float(), outputs.entropy.detach().float().sum(),
                                    outputs.is_top1.sum().float()])
                if self.args.world_size > 1:  # every rank, every step, as TRL gathers (no host wait)
                    sums = self.accelerator.reduce(sums, reduction="sum")
                kept = self.__dict__.setdefault("_kit_sums", {})
                kept[mode] = sums if kept.get(mode) is None else kept[mode] + sums
            return (loss, outputs) if return_outputs else loss

        def _track_num_input_tokens(self, inputs):
            real = inputs.get(REAL_TOKENS) if isinstance(inputs, dict) else None
            if real is None or self.args.world_size > 1 or self.args.include_num_input_tokens_seen != "non_padding":
                return super()._track_num_input_tokens(inputs)
            self.state.num_input_tokens_seen += int(real)

        def log(self, logs, start_time=None):
            mode = "train" if self.model.training else "eval"
            sums = self.__dict__.get("_kit_sums", {}).pop(mode, None)
            if sums is not None:
                valid, entropy, correct = sums.tolist()
                self._metrics[mode]["entropy"].append(entropy / valid if valid > 0 else 0.0)
                self._metrics[mode]["mean_token_accuracy"].append(correct / valid if valid > 0 else 0.0)
                self._metrics[mode]["num_tokens"] = [self.state.num_input_tokens_seen]
            return super().log(logs, start_time)

        def create_optimizer(self, model=None):
            if self.optimizer is not None or self.embedding_lr_ratio == 1.0:
                return super().create_optimizer(model) if model is not None else super().create_optimizer()
            model = self.model
            decay = set(self.get_decay_parameter_names(model))
            groups: dict[tuple, list] = {}
            for n, p in model.named_parameters():
                if not p.requires_grad:
                    continue
                emb = "embed_tokens" in n or "lm_head" in n
                wd = self.args.weight_decay if n in decay else 0.0
                lr = self.args.learning_rate * (self.embedding_lr_ratio if emb else 1.0)
                groups.setdefault((lr, wd), []).append(p)
            params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
            opt_cls, opt_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            opt_kwargs.pop("lr", None)
            self.optimizer = opt_cls(params, lr=self.args.learning_rate, **opt_kwargs)
            return self.optimizer

    return KitTrainer


# ----------------------------------------------------------------------------------------------
# The entry point: plan, data, resume point, model, trainer, fit, finish
# ----------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, log=print, callbacks: list | None = None) -> TrainResult:
    """One training run; ``callbacks``: extra TrainerCallbacks (the sweep's pruning watch).

    Its phases, each a function below: :func:`_plan` (model, quantization, run folder, shard),
    :func:`_read_data` (rows read and validated before the model loads, so a bad row fails in
    seconds), :func:`_resume_from` (the checkpoint to resume, the run's signature checked),
    :func:`_load_and_encode`, :func:`_prepare_model` (memory plan, kernels, LoRA),
    :func:`_build_trainer`, :func:`_evaluate_start`, the fit itself and :func:`_finish`
    (weights, metrics and log into the run's manifest).

    The datasets library's progress bars (TRL's "Building labels", "Truncating", ... over rows
    already encoded) are off while it runs: they finish in milliseconds and only leave frozen
    lines in a notebook. The trainer's own progress (bar and table) stays."""
    import torch

    t_start = time.time()
    with _datasets_progress_off():
        cfg, quant, root, run, shard = _plan(cfg, log)
        rows, eval_loaded, replay = _read_data(cfg, shard)
        local_ckpt, durable_ckpt, resume_from = _resume_from(cfg, root, run, shard, log)
        model, tok, data = _load_and_encode(cfg, quant, rows, eval_loaded, replay, log)
        model, cfg, plan, kernels, trainable, packing = _prepare_model(model, cfg, quant, log, data)
        trainer = _build_trainer(cfg, model, tok, data, root, run, local_ckpt, durable_ckpt, t_start,
                                 list(callbacks or []), log, packing)
        start_eval = _evaluate_start(trainer, run, data.has_eval, resume_from, log)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t_train = time.time()
        out_train = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        fit = _Fit(out_train, time.time() - t_train, start_eval, resume_from, quant, kernels, plan, shard, trainable)
        return _finish(cfg, trainer, tok, data, root, run, fit, log)


class _datasets_progress_off:
    """The datasets library's progress bars off inside the block, as they were after it."""

    def __enter__(self):
        import datasets.utils.logging as ds_logging
        self.logging, self.was_on = ds_logging, ds_logging.is_progress_bar_enabled()
        ds_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        if self.was_on:
            self.logging.enable_progress_bar()
        return False


@dataclass
class _Data:
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


@dataclass
class _Fit:
    """What the fit phase leaves for the finish."""
    output: Any  # the Trainer's TrainOutput
    seconds: float
    start_eval: dict | None
    resume_from: Path | None
    quant: str
    kernels: str
    plan: MemoryPlan | None
    shard: int | None
    trainable: int  # trainable parameters


def _plan(cfg: TrainConfig, log) -> tuple[TrainConfig, str, RunDir, RunDir, int | None]:
    """The model (its name checked before any data work), the quantization, the run folder, and
    with NUM_SHARDS > 1 the shard to train now (continuing from the previous shard's adapter)."""
    import torch

    cfg.validate()  # a config built directly (TrainConfig(...)) is checked too
    if not cfg.model_name:
        cfg = cfg.replace(model_name=default_model_name())
    resolve_model_path(cfg.model_name)  # unknown names fail here, before any data work
    quant = check_quantization(cfg.quantization)
    if cfg.finetune == "full" and quant in ("4bit", "8bit"):
        quant = "16bit" if torch.cuda.is_available() else "none"
    root = RunDir(cfg.output_dir)
    root.path.mkdir(parents=True, exist_ok=True)
    if cfg.num_shards == 1:
        return cfg, quant, root, root, None
    shard = root.next_shard(cfg.num_shards, cfg.shard_index)
    if shard is None:
        raise ConfigError(f"All {cfg.num_shards} shards in {root.path} are trained (see {root.manifest_path.name}). "
                          "Use a new OUTPUT_DIR for another pass.")
    prev = [int(k) for k in root.shards_done()]
    if prev and not cfg.init_adapter:
        cfg = cfg.replace(init_adapter=str(root.shard(max(prev)).adapter))
    log(f"Shard {shard + 1} of {cfg.num_shards}" + (f", continuing from {cfg.init_adapter}" if cfg.init_adapter else ""))
    return cfg, quant, root, root.shard(shard), shard


def _read_data(cfg: TrainConfig, shard: int | None) -> tuple[list[dict], list[dict] | None, ReplayPool | None]:
    """The training rows (capped by MAX_ROWS, cut to the shard), the validation rows of EVAL_PATH,
    and the replay rows (REPLAY_SHARE > 0; each shard starts at its own part of them)."""
    rows = load_rows(cfg.dataset_path, cfg.mode)
    if cfg.max_rows:
        rows = rows[: cfg.max_rows]
    if shard is not None:
        rows = shard_rows(rows, cfg.num_shards, shard)
    return rows, (load_rows(cfg.eval_path, cfg.mode) if cfg.eval_path else None), read_replay(cfg, shard)


def _resume_from(cfg: TrainConfig, root: RunDir, run: RunDir, shard: int | None, log):
    """(local, durable checkpoint folders, the checkpoint to resume or None). The run folder's
    signature must match when resuming; RESUME='never' clears the old checkpoints and live log."""
    local_ckpt, durable_ckpt = checkpoint_dirs(cfg.checkpoint_dir, run, in_shard=shard is not None)
    resume_from = resume_point(cfg.resume, local_ckpt, durable_ckpt, log)
    root.check_signature(cfg, resuming=resume_from is not None or root.has_shards())
    if cfg.resume in ("never", "none"):
        for d in (local_ckpt, durable_ckpt):
            shutil.rmtree(d, ignore_errors=True)
        run.live_log.unlink(missing_ok=True)
    if resume_from is not None:
        resume_from = stage_locally(resume_from, local_ckpt, log)
        log(f"Resuming from {resume_from} (step {step_of(resume_from)})")
    return local_ckpt, durable_ckpt, resume_from


def _load_and_encode(cfg: TrainConfig, quant: str, rows: list[dict], eval_loaded: list[dict] | None,
                     replay: ReplayPool | None, log):
    """The model and tokenizer (seeded), and the examples encoded with the run's template.

    Validation: EVAL_PATH's rows, else EVAL_FRACTION of the rows; a pretraining corpus of fewer
    than 4 documents holds out its last blocks instead. Validation is in-domain only: the replay
    examples (:func:`replay_examples`) join the training examples after it is set aside."""
    from transformers import set_seed

    set_seed(cfg.seed)
    model, tok = load_model(cfg.model_name, quantization=quant, for_training=True)
    if cfg.eval_path:
        train_rows, eval_rows = rows, eval_loaded
    elif cfg.mode == "pretrain" and len(rows) < 4 and cfg.eval_fraction > 0:
        train_rows, eval_rows = rows, []  # too few documents: hold out the tail blocks instead (below)
    else:
        train_rows, eval_rows = split_rows(rows, cfg.eval_fraction, cfg.seed)
    train_enc, train_rep = encode_rows(tok, train_rows, cfg, Path(cfg.dataset_path).name)
    eval_enc, eval_rep = encode_rows(tok, eval_rows, cfg, "validation") if eval_rows else ([], None)
    if cfg.mode == "pretrain" and not eval_rows and not cfg.eval_path and cfg.eval_fraction > 0 and len(train_enc) >= 4:
        n_eval = max(1, int(round(len(train_enc) * cfg.eval_fraction)))
        train_enc, eval_enc = train_enc[:-n_eval], train_enc[-n_eval:]
        eval_rep = {"source": "validation", "blocks": n_eval, "note": "the last blocks of the corpus (fewer than 4 documents)"}
        log(f"Fewer than 4 documents: the last {n_eval} of {n_eval + len(train_enc)} blocks are held out for perplexity.")
    replay_rep = None
    if replay is not None:
        exclude = {k for k in map(content_key, list(eval_rows or []) + read_jsonl(chitchat("test"))) if k}
        replay_enc, replay_rep = replay_examples(tok, replay, cfg, len(train_enc), exclude)
        train_enc = mix_replay(train_enc, replay_enc)
        log(describe_replay(replay_rep))
    return model, tok, _Data(train_rows, train_enc, eval_enc, train_rep, eval_rep, replay_rep)


def _prepare_model(model, cfg: TrainConfig, quant: str, log, data: "_Data"):
    """The memory plan (AUTO_FIT on a GPU: micro-batch, accumulation, checkpointing), gradient
    checkpointing, fast kernels, the LoRA adapter and the packing kernel. Returns (model, cfg as
    planned, plan, kernels, trainable parameters, packing kernel or None)."""
    import torch

    quantized = quant in ("4bit", "8bit")
    plan = None
    if cfg.auto_fit and torch.cuda.is_available():
        packed = packs_documents(cfg)
        plan = plan_memory(model, cfg, quantized, row_tokens=_row_tokens(cfg, data),
                           document_mask=packed and current_choice().packing == "mask")
        cfg = cfg.replace(per_device_batch_size=plan.per_device_batch_size,
                          gradient_accumulation_steps=plan.gradient_accumulation_steps,
                          gradient_checkpointing=plan.gradient_checkpointing)
        log(f"Memory plan for {plan.budget_gib:.1f} GiB ({torch.cuda.get_device_name()}): weights "
            f"{plan.weights_gib:.1f} GiB, predicted peak {plan.peak_gib:.1f} GiB; {plan.reason}. "
            "Set AUTO_FIT=0 to use your settings as they are.")
    model = prepare_for_training(model, cfg, quantized)
    kernels = apply_fast_kernels(model, cfg.kernels, log)
    if cfg.finetune == "lora":
        model = add_lora(model, cfg)
        kernels = fuse_lora(model, cfg.kernels, kernels, log)
    packing = _prepare_packing(model, cfg, log)
    trainable, total = count_parameters(model, trainable_only=True), count_parameters(model)
    log(f"Trainable parameters: {trainable / 1e6:.2f}M of {total / 1e6:.1f}M ({100 * trainable / max(1, total):.2f}%)")
    return model, cfg, plan, kernels, trainable, packing


def _row_tokens(cfg: TrainConfig, data: "_Data") -> int:
    """The longest row the training data makes, for the memory plan: MAX_SEQ_LEN for packed rows
    and pretraining blocks (full but the last), else the longest example."""
    if cfg.mode == "sft" and cfg.packing:
        return min(cfg.max_seq_len, sum(len(e["input_ids"]) for e in data.train_enc))
    return max((len(e["input_ids"]) for e in data.train_enc), default=cfg.max_seq_len)


def _prepare_packing(model, cfg: TrainConfig, log) -> str | None:
    """The kernel for packed batches by capability (helpers.common.hardware, helpers.train.packing) and the model
    set up for it, when rows hold several documents trained apart: SFT with PACKING, pretraining
    with SEPARATE_DOCUMENTS. None otherwise."""
    if not packs_documents(cfg):
        if cfg.mode == "sft":
            log("Packing off (PACKING=False): one example per row, padded to the longest of its micro-batch")
        return None
    kernel, why = packing_kernel(model, current_choice())
    prepare_model_for_packing(model, kernel)
    log(f"Packing kernel: {kernel} ({why})")
    return kernel


_PACKED_LR_MEASURED = 2.1  # the largest factor bench/QUALITY.md measured (the chat protocol, "linear")


def packed_lr(lr: float, examples: int, rows: int, scaling: str) -> tuple[float, str]:
    """The learning rate of a packed SFT run, and the sentence that says so.

    LEARNING_RATE is the rate of a batch of examples, as recipes give it (2e-4 for a batch of 16
    examples in the QLoRA recipe). Packed, a batch of the same number of rows holds k = examples /
    rows times the examples, so an epoch takes k times fewer optimizer steps, each over a k times
    bigger batch, and at the same rate it learns less. "linear" (the default) multiplies the rate by
    k, the linear scaling rule (Goyal et al., 2017, "Accurate, large minibatch SGD"), so an epoch
    moves the weights about as far as the unpacked recipe; "sqrt" by sqrt(k), the square-root rule
    for Adam (Malladi et al., 2022); "none" keeps it. Measured on the chat protocol of
    bench/QUALITY.md (k = 2.1, 90 steps instead of 188, one H200 run, the recipe's 10 warm-up
    steps): held-out perplexity 29.25 with "none", 27.87 with "sqrt", 26.73 with "linear", against
    26.67 for the unpacked recipe; with the kit's WARMUP_RATIO (3% of the steps), "linear" gave
    26.60 on two seeds against the recipe's 26.69 in the same run (QUALITY.md 1d)."""
    k = examples / rows if rows else 1.0
    factor = _PACKED_LR_FACTOR[scaling](k)
    if scaling == "none" or factor == 1.0:
        return lr, f"learning rate {lr:.3g} as set (PACKED_LR_SCALING={scaling!r}, {k:.2f} examples per row)"
    rule = f"sqrt({k:.2f})" if scaling == "sqrt" else f"{k:.2f}"
    why = (f"learning rate {lr:.3g} x {rule} = {lr * factor:.3g} for {k:.2f} examples per row "
           f"(PACKED_LR_SCALING={scaling!r}; 'none' keeps {lr:.3g})")
    if factor > _PACKED_LR_MEASURED:
        why += (f". The rule was measured up to x{_PACKED_LR_MEASURED:g} (bench/QUALITY.md); at x{factor:.1f} "
                "watch the first losses, and if they jump, try 'sqrt' or notebook 07's sweep")
    return lr * factor, why


def packs_documents(cfg: TrainConfig) -> bool:
    """Whether the run's rows hold several documents, each trained as if alone (PACKING for SFT,
    SEPARATE_DOCUMENTS for pretraining, whose blocks otherwise are one stream of text)."""
    return cfg.packing if cfg.mode == "sft" else cfg.separate_documents


def _optimizer_name(cfg: TrainConfig, cuda: bool) -> str:
    # Fused AdamW updates every adapter tensor in one kernel. bitsandbytes' paged 8-bit AdamW
    # loops over the ~450 adapter tensors of an 8B model in Python, and a QLoRA step is bound
    # by the CPU: fused is ~4% faster there, for 6 more bytes per adapter parameter (~0.25 GiB
    # at 8B, r=16; bench/RESULTS.md). It also shards under FSDP, which the 8-bit state cannot.
    if cfg.optim != "auto":
        return cfg.optim
    return "adamw_torch_fused" if cuda else "adamw_torch"


def _report_to(cfg: TrainConfig) -> str:
    """REPORT_TO, with "tensorboard" dropped to "none" when tensorboard is not installed."""
    import importlib.util
    if cfg.report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        return "none"
    return cfg.report_to


def sft_arguments(cfg: TrainConfig, run: RunDir, local_ckpt: Path, has_eval: bool):
    """TRL's SFTConfig for the run: precision from the GPU, evaluation and checkpoint schedule,
    activation offloading, DDP settings, and the trainer's checkpoints in ``local_ckpt``."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    dtype = compute_dtype()
    offload = bool(cuda and cfg.gradient_checkpointing and cfg.offload_activations and not under_fsdp())
    eval_steps = cfg.eval_steps if cfg.eval_steps > 0 else None
    return SFTConfig(
        output_dir=str(local_ckpt),
        run_name=cfg.run_name or run.name,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio if 0 < cfg.warmup_ratio < 1 else int(cfg.warmup_ratio),
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=_optimizer_name(cfg, cuda),
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype == torch.float16,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval and eval_steps else ("no" if not has_eval else "epoch"),
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=bool(cfg.early_stopping_patience and has_eval),
        metric_for_best_model="eval_loss" if has_eval else None,
        greater_is_better=False if has_eval else None,
        report_to=_report_to(cfg),
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_length=cfg.max_seq_len,
        # PACKING is the kit's own (helpers.train.packing: its rows and collator, the attention per kernel);
        # TRL's padding-free batches are right only when whoever runs them turns the cache off
        packing=False,
        padding_free=False,
        completion_only_loss=True,
        dataset_num_proc=None,
        activation_checkpointing=False,  # already enabled (without the up-cast) in prepare_for_training
        activation_offloading=offload,  # TRL: the checkpointed layer inputs wait in pinned CPU memory
        # Under DDP every trainable tensor gets a gradient each step (adapters, or all weights), so
        # DDP need not walk the graph for unused ones (the Trainer asks it to for a PeftModel, which
        # is not a PreTrainedModel) nor broadcast buffers (the rotary tables are the same everywhere)
        ddp_find_unused_parameters=False,
        ddp_broadcast_buffers=False,
        include_num_input_tokens_seen="non_padding",
        # no host wait in the step (KitTrainer): the loss is not read for the NaN filter (a NaN
        # loss is logged as NaN, which the sweep's watch prunes), batches are copied asynchronously
        logging_nan_inf_filter=False,
        dataloader_pin_memory=cuda,
        accelerator_config={"non_blocking": cuda},
        use_cpu=not cuda,
        dataloader_num_workers=0,
        save_only_model=False,
        disable_tqdm=False,
    )


def _build_trainer(cfg: TrainConfig, model, tok, data: _Data, root: RunDir, run: RunDir, local_ckpt: Path,
                   durable_ckpt: Path, t_start: float, extra_callbacks: list, log, packing: str | None = None):
    """The trainer with the run's arguments and callbacks; trainable weights kept in fp32 under fp16.
    With ``packing`` (a kernel of helpers.train.packing) the examples are packed into rows of MAX_SEQ_LEN
    tokens and collated for that kernel."""
    import torch
    from datasets import Dataset
    from transformers import EarlyStoppingCallback

    train_enc, eval_enc, collator = data.train_enc, data.eval_enc, None
    lr_cfg = cfg
    if packing:
        # The validation examples stay one per row (collated for the same kernel): the validation
        # loss is then the same figure with PACKING on or off, and the same as before packing
        if cfg.mode == "sft":
            train_enc, rep = pack_examples(train_enc, cfg.max_seq_len)
            lr, why = packed_lr(cfg.learning_rate, rep["examples"], rep["rows"], cfg.packed_lr_scaling)
            lr_cfg = cfg.replace(learning_rate=lr)
            data.train_rep["packing"] = dict(rep, kernel=packing, learning_rate=lr, lr_scaling=cfg.packed_lr_scaling)
            log(describe_packing(rep, packing) + "; " + why)
        else:
            data.train_rep["separate_documents"] = {"kernel": packing}
            log(f"Documents sharing a block trained apart (SEPARATE_DOCUMENTS, {packing} path)")
        collator = PackedCollator(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id, packing,
                                  count_tokens=True)
    args = sft_arguments(lr_cfg, run, local_ckpt, data.has_eval)
    if _report_to(cfg) == "tensorboard":
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.path / "tensorboard")  # durable (Drive on Colab)
    if args.n_gpu > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # Several GPUs visible to one process: train on this one (the model is placed on it) rather
        # than the Trainer's nn.DataParallel; for several GPUs use `accelerate launch` or torchrun.
        log(f"{args.n_gpu} GPUs visible to one process: training on GPU {torch.cuda.current_device()} only. "
            "Use `accelerate launch --config_file configs/accelerate/ddp.yaml -m helpers.train.loop ...` for all of them.")
        args._n_gpu = 1
    callbacks = _make_callbacks(cfg, root, durable_ckpt, t_start) + extra_callbacks
    if cfg.early_stopping_patience and data.has_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    Trainer = _make_trainer_class()
    Trainer.embedding_lr_ratio = cfg.embedding_lr_ratio if cfg.train_embeddings else 1.0
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(train_enc),
                      eval_dataset=Dataset.from_list(eval_enc) if data.has_eval else None,
                      processing_class=tok, callbacks=callbacks, data_collator=collator)
    recast = keep_master_weights_fp32(trainer.model, fp16=args.fp16)
    if recast:
        log(f"fp16 training: {recast} trainable tensors kept in fp32 for the gradient scaler")
    return trainer


def _evaluate_start(trainer, run: RunDir, has_eval: bool, resume_from: Path | None, log) -> dict | None:
    """The untrained model's validation loss, the "before" of every before/after figure: measured
    on a fresh run and kept in the manifest, read back from it when resuming."""
    if has_eval and resume_from is None:
        with _quiet_evaluate(trainer):
            start_eval = {k: v for k, v in trainer.evaluate().items() if k == "eval_loss"}
        run.update("start_eval", start_eval)
        log(f"Validation loss before training: {start_eval['eval_loss']:.3f} "
            f"(perplexity {math.exp(start_eval['eval_loss']):.2f})")
        return start_eval
    return run.get("start_eval")


def _final_eval(trainer, has_eval: bool) -> dict:
    """The validation loss of the final weights (the last evaluation when it was of these very weights)."""
    last = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if has_eval and last is not None and last.get("step") == trainer.state.global_step \
            and not trainer.args.load_best_model_at_end:
        return {"eval_loss": last["eval_loss"]}
    if has_eval:
        with _quiet_evaluate(trainer):  # the training table above already shows the evaluations
            return trainer.evaluate()
    return {}


def _metrics(cfg: TrainConfig, trainer, data: _Data, run: RunDir, fit: _Fit, history: list[dict],
             final_eval: dict) -> dict:
    """The run's record for its manifest."""
    state, out_train, start_eval = trainer.state, fit.output, fit.start_eval
    tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
    whole = whole_run_train_loss(state.log_history)
    sitting = round(out_train.training_loss, 4) if out_train.training_loss else None
    return {
        "run_name": cfg.run_name or run.name, "model_name": cfg.model_name, "mode": cfg.mode,
        "quantization": fit.quant, "steps": state.global_step, "epochs": round(state.epoch or 0, 3),
        "train_loss": round(whole, 4) if whole is not None else sitting,  # every sitting's steps
        "train_loss_this_sitting": sitting,
        "eval_loss": round(final_eval["eval_loss"], 4) if "eval_loss" in final_eval else None,
        "first_eval_loss": next((round(h["eval_loss"], 4) for h in history if "eval_loss" in h), None),
        "start_eval_loss": start_eval["eval_loss"] if start_eval else None,
        "start_perplexity": round(math.exp(start_eval["eval_loss"]), 3) if start_eval else None,
        "eval_perplexity": round(math.exp(final_eval["eval_loss"]), 3) if "eval_loss" in final_eval else None,
        "train_seconds": round(fit.seconds, 1), "tokens_seen": tokens_seen,
        "tokens_per_second": round(tokens_seen / fit.seconds, 1) if fit.seconds > 0 and tokens_seen else None,
        "peak_memory_gib": peak_memory_gib(), "trainable_parameters": fit.trainable,
        "kernels": fit.kernels, "resumed_from": str(fit.resume_from) if fit.resume_from else None,
        "data": {"train": data.train_rep, "validation": data.eval_rep, "replay": data.replay_rep}, "shard": fit.shard,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "memory_plan": dataclasses.asdict(fit.plan) if fit.plan else None,
        "config": cfg.to_dict(),
    }


def _finish(cfg: TrainConfig, trainer, tok, data: _Data, root: RunDir, run: RunDir, fit: _Fit, log) -> TrainResult:
    """Save the weights, evaluate them, and (rank 0) record the run: manifest, log, loss plot,
    the merged model when MERGE, the shard in the ledger."""
    adapter_dir = run.weights_dir(cfg.finetune)
    trainer.save_model(str(adapter_dir))
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(adapter_dir))
    history = list(trainer.state.log_history)
    if fit.start_eval:
        history = [{"eval_loss": fit.start_eval["eval_loss"], "step": 0, "epoch": 0.0}] + history
    metrics = _metrics(cfg, trainer, data, run, fit, history, _final_eval(trainer, data.has_eval))
    resumed = metrics["resumed_from"]
    if not trainer.is_world_process_zero():  # under DDP/FSDP only rank 0 writes the run's files
        del trainer
        return TrainResult(run.path, adapter_dir, metrics, history, None, None, resumed, fit.shard)
    run.finish(metrics, history)
    plot = plot_losses(history, run.loss_plot, title=f"{cfg.run_name or run.name}: loss")
    merged = None
    if cfg.merge and cfg.finetune == "lora":
        merged = merge_adapter(cfg.model_name, adapter_dir, run.merged_dir)
    if fit.shard is not None:
        root.record_shard(fit.shard, {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": len(data.train_rows),
                                      "steps": trainer.state.global_step, "adapter": str(adapter_dir)})
    log(f"Done: {_plural(metrics['steps'], 'step')} in {fit.seconds:.0f} s; train loss {_num(metrics['train_loss'])}"
        + (f", eval loss {_num(metrics['first_eval_loss'])} -> {_num(metrics['eval_loss'])}" if data.has_eval else "")
        + f"; adapter in {adapter_dir}")
    del trainer
    return TrainResult(run.path, adapter_dir, metrics, history, plot, merged, resumed, fit.shard)


def _plural(n, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _num(x, digits: int = 3) -> str:
    """A loss for a log line: 3 decimals ("3.175"), or "n/a"."""
    return "n/a" if x is None else f"{x:.{digits}f}"


class _quiet_evaluate:
    """Run ``trainer.evaluate()`` outside training without the progress callback's own output
    (in a notebook, a second evaluation table beside the training table; in a console a dict)."""

    def __init__(self, trainer):
        self.trainer, self.popped = trainer, []

    def __enter__(self):
        from transformers.trainer_callback import ProgressCallback
        try:
            from transformers.utils.notebook import NotebookProgressCallback
        except ImportError:  # IPython not installed
            NotebookProgressCallback = ProgressCallback
        for cls in {ProgressCallback, NotebookProgressCallback}:
            cb = self.trainer.pop_callback(cls)
            if cb is not None:
                self.popped.append(cb)
        return self

    def __exit__(self, *exc):
        for cb in self.popped:
            self.trainer.add_callback(cb)
        return False



def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    params: dict[str, Any] = {}
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print(TrainConfig().describe(full=True))
        return 0
    if argv:
        params = {k.upper(): v for k, v in json.loads(Path(argv[0]).read_text()).items()}
    cfg = TrainConfig.from_params(params)
    print(cfg.describe())
    train(cfg)
    return 0




if __name__ == "__main__":
    sys.exit(main())
