"""Training: one entry point for domain pretraining (notebook 03) and instruction tuning (04).

``train(cfg)`` runs TRL's ``SFTTrainer`` on a LoRA (or QLoRA, or full) model and returns a
:class:`TrainResult`. The same code runs as a script, alone or under ``accelerate launch``::

    python -m helpers.train config.json            # fields not in the file keep their defaults
    MAX_STEPS=50 python -m helpers.train config.json   # any field from the environment
    accelerate launch --config_file configs/accelerate/ddp.yaml -m helpers.train config.json

Checkpoints survive a Colab disconnect: each one is written to fast local disk, then copied to
``output_dir/checkpoints`` (Drive on Colab) under a temporary name and renamed when complete;
the last ``save_total_limit`` are kept, and leftovers of interrupted copies are removed. Each
checkpoint carries a ``MANIFEST.json`` (every file's size and SHA-256, written at save).
``resume="auto"`` picks the newest checkpoint (local or Drive) that verifies: complete, with its
weights, optimizer, scheduler and trainer state, each file as the manifest recorded it (or, for a
checkpoint without one, safetensors headers that parse and pickles that load). A checkpoint that
fails is named with the reason and the next older one is tried, so a truncated adapter or a
missing ``optimizer.pt`` on Drive never resumes silently. Resuming restores weights, optimizer,
scheduler, RNG state and the position in the data; ``metrics.json``'s ``train_loss`` is the mean
over the whole run, every sitting included. A long dataset can be trained in shards, one
per sitting, with a ledger (``shards.json``) so no shard is trained twice or skipped.
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

from .config import ConfigError, StepConfig
from .data import TYPE_PROBLEM, DataError, read_jsonl, validate_rows
from .fixtures import chitchat

COMPLETE_MARKER = "CHECKPOINT_COMPLETE"
MANIFEST = "MANIFEST.json"  # every file of a checkpoint with its size and SHA-256
RUN_SIGNATURE = "run_signature.json"
SIGNATURE_FIELDS = ("model_name", "mode", "finetune", "quantization", "lora_r", "lora_alpha", "target_modules",
                    "train_embeddings", "template", "max_seq_len", "dataset_path", "seed", "num_shards")


@dataclass
class TrainConfig(StepConfig):
    """Everything one training run needs. Defaults are the QLoRA recipe for a Colab GPU."""
    model_name: str = ""  # base model: Hub id, local folder or embedded name ("" = default for this machine)
    mode: str = "sft"  # "sft" (instruction tuning, loss on replies) or "pretrain" (raw text, loss on every token)
    dataset_path: str = ""  # JSONL: instruction rows or messages (sft), or {"text": ...} rows (pretrain)
    eval_path: str = ""  # validation JSONL; "" = hold out eval_fraction of the training rows
    eval_fraction: float = 0.05  # share of training rows held out for validation when eval_path is ""
    output_dir: str = "outputs/run"  # durable folder (Drive on Colab): adapter, metrics, checkpoint copies
    checkpoint_dir: str = ""  # fast local folder for checkpoints while training ("" = output_dir/local-checkpoints)
    run_name: str = ""  # label in logs and plots ("" = the output folder's name)
    finetune: str = "lora"  # "lora" (adapter on a frozen base) or "full" (every weight; no quantization)
    quantization: str = "auto"  # "4bit" (QLoRA), "8bit", "16bit", "none" (fp32) or "auto" (4bit on GPU, fp32 on CPU)
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 16  # LoRA scale numerator (scale = alpha / r)
    lora_dropout: float = 0.0  # dropout on the LoRA input (0 is fastest and usually as good)
    target_modules: str = "all-linear"  # "all-linear" or comma-separated names, e.g. "q_proj,v_proj"
    train_embeddings: bool = False  # also train embed_tokens and lm_head in full (domain pretraining)
    embedding_lr_ratio: float = 0.1  # learning rate of embed_tokens/lm_head relative to learning_rate
    init_adapter: str = ""  # start from this adapter (e.g. notebook 03's) instead of a fresh LoRA
    template: str = "auto"  # "auto" (chat template if the model has one), "chat" or "alpaca"
    system_prompt: str = ""  # system message added to conversations without one ("" = none)
    max_seq_len: int = 1024  # tokens per example (sft) or per packed block (pretrain)
    packing: bool = False  # pack several short examples into one sequence (padding-free, needs flash-attn for best speed)
    num_train_epochs: float = 1.0  # passes over the training data (ignored when max_steps > 0)
    max_steps: int = -1  # stop after this many optimizer steps (-1 = use epochs)
    per_device_batch_size: int = 4  # examples per GPU per micro-step
    gradient_accumulation_steps: int = 4  # micro-steps per optimizer step
    learning_rate: float = 2e-4  # peak learning rate of the LoRA weights
    lr_scheduler: str = "linear"  # "linear", "cosine", "constant", "constant_with_warmup", ...
    warmup_ratio: float = 0.03  # share of steps spent warming the learning rate up
    weight_decay: float = 0.01  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping
    optim: str = "auto"  # "auto" (fused AdamW on GPU, AdamW on CPU) or any transformers optim name
    gradient_checkpointing: bool = True  # recompute activations in backward: much less memory, ~30% slower
    offload_activations: bool = True  # with checkpointing on a GPU: keep the checkpointed layer inputs in CPU memory
    logging_steps: int = 10  # log train loss every N steps
    eval_steps: int = 50  # validate every N steps (0 = only at the end)
    save_steps: int = 50  # checkpoint every N steps
    save_total_limit: int = 3  # checkpoints kept (local and on Drive)
    early_stopping_patience: int = 0  # stop after N evaluations without a better eval loss (0 = off)
    resume: str = "auto"  # "auto" (newest complete checkpoint), "never", or a checkpoint folder
    num_shards: int = 1  # cut the training data into N shards, one trained per sitting
    shard_index: int = -1  # which shard to train now (-1 = the next untrained one)
    max_time_minutes: float = 0.0  # stop (after a checkpoint) when this much time has passed (0 = no limit)
    seed: int = 42  # seed for LoRA init, data order and dropout
    merge: bool = False  # also save the adapter merged into 16-bit base weights
    report_to: str = "tensorboard"  # "tensorboard", "none", "wandb", ...
    kernels: str = "auto"  # "auto" (fused LoRA layers; Liger's RMSNorm/SwiGLU/RoPE too on a GPU when installed), "liger" or "none"
    auto_fit: bool = True  # on a GPU: choose micro-batch and checkpointing from free memory (effective batch kept)
    max_rows: int = 0  # use only the first N training rows (0 = all), for quick trials
    text_sources: str = ""  # notebook 03: comma-separated JSONL/text/PDF files or folders for the corpus ("" = notebooks 01 and 02's); train() reads dataset_path
    use_sweep_best: bool = False  # notebook 04: take the best settings of notebook 07's sweep (outputs/sweep/best_config.json) over the others

    @classmethod
    def notebook_defaults(cls) -> dict[str, dict[str, Any]]:
        # 03 pretrains: a larger rank, the embeddings trained, a smaller learning rate (seed 000's recipe)
        return {"03": dict(run_name="pretrain", lora_r=64, lora_alpha=32, train_embeddings=True, learning_rate=5e-5),
                "04": dict(run_name="sft", early_stopping_patience=3)}

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
        if self.num_shards < 1 or self.shard_index >= self.num_shards:
            raise ConfigError(f"SHARD_INDEX={self.shard_index} with NUM_SHARDS={self.num_shards}: index must be < shards.")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "max_seq_len", "lora_r", "logging_steps",
                     "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.upper()}={getattr(self, name)}: must be at least 1.")
        if self.learning_rate <= 0:
            raise ConfigError(f"LEARNING_RATE={self.learning_rate}: must be positive.")


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


def pack_texts(tokenizer, texts: list[str], block_size: int) -> tuple[list[dict], dict]:
    """Documents tokenized, joined with EOS between them, cut into blocks of ``block_size`` tokens
    (the tail shorter than a block is kept as a last, shorter block)."""
    from .prompts import adds_bos
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    add_bos = adds_bos(tokenizer)
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        if add_bos:
            ids = [tokenizer.bos_token_id] + ids
        stream += ids + ([eos] if eos is not None else [])
    blocks = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    blocks = [b for b in blocks if len(b) >= 16]
    return [{"input_ids": b, "completion_mask": [1] * len(b)} for b in blocks], {
        "documents": len(texts), "tokens": len(stream), "blocks": len(blocks), "block_size": block_size}


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
    from .prompts import describe_report, encode_many
    if cfg.mode == "pretrain":
        enc, rep = pack_texts(tokenizer, [str(r["text"]) for r in rows], cfg.max_seq_len)
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


# ----------------------------------------------------------------------------------------------
# Checkpoints that survive Colab
# ----------------------------------------------------------------------------------------------
def _step_of(path: Path) -> int:
    try:
        return int(path.name.split("-")[-1])
    except ValueError:
        return -1


def is_complete_checkpoint(path: Path) -> bool:
    return (path / COMPLETE_MARKER).exists() and (path / "trainer_state.json").exists()


def _sha256(path: Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(ckpt: Path) -> None:
    """``MANIFEST`` in a checkpoint: every file's size and SHA-256, written at save time (before the
    completion marker), so a copy damaged later (on Drive, in transit) is recognised before resuming."""
    files = {str(f.relative_to(ckpt)): {"bytes": f.stat().st_size, "sha256": _sha256(f)}
             for f in sorted(ckpt.rglob("*")) if f.is_file() and f.name not in (MANIFEST, COMPLETE_MARKER)}
    tmp = ckpt / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"files": files}, indent=1) + "\n")
    os.replace(tmp, ckpt / MANIFEST)


def _check_safetensors(f: Path) -> str | None:
    """None when the header of a .safetensors file parses and its tensors fit in the file."""
    size = f.stat().st_size
    try:
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if size < 8 or n <= 0 or 8 + n > size:
                return f"{f.name} is cut short ({size:,} bytes; its header alone needs {8 + max(n, 0):,})"
            header = json.loads(fh.read(n))
    except (ValueError, OSError) as exc:
        return f"{f.name} has no readable header ({type(exc).__name__}: {str(exc)[:80]})"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        return f"{f.name} is cut short ({size:,} bytes of {8 + n + end:,})"
    return None


def verify_checkpoint(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be resumed from, or None when it can.

    Complete (marker and trainer state), with the files a resume needs: the weights
    (``adapter_model.safetensors`` or ``model*.safetensors``), ``optimizer.pt``, ``scheduler.pt``
    and the trainer state. With a ``MANIFEST`` (written at save) every file must have its recorded
    size and SHA-256; without one (older checkpoints) safetensors headers must parse and fit the
    file, and the pickles (optimizer, scheduler, RNG states) must load."""
    if not (ckpt / COMPLETE_MARKER).exists():
        return "incomplete (the run or the copy to Drive was interrupted)"
    weights = [f for f in ckpt.glob("*.safetensors") if f.name.startswith(("adapter_model", "model"))]
    if not weights:
        return "no weights in it (adapter_model.safetensors or model*.safetensors is missing)"
    for need in ("trainer_state.json", "optimizer.pt", "scheduler.pt"):
        if not (ckpt / need).exists():
            what = " (resuming would restart AdamW's state from zero)" if need == "optimizer.pt" else ""
            return f"{need} is missing{what}"
    manifest = ckpt / MANIFEST
    if manifest.exists():
        try:
            files = json.loads(manifest.read_text())["files"]
        except (ValueError, KeyError) as exc:
            return f"its {MANIFEST} is damaged ({type(exc).__name__})"
        for name, want in files.items():
            f = ckpt / name
            if not f.exists():
                return f"{name} is missing (listed in its {MANIFEST})"
            if f.stat().st_size != want["bytes"]:
                return f"{name} has {f.stat().st_size:,} bytes, {want['bytes']:,} when it was saved"
            if _sha256(f) != want["sha256"]:
                return f"{name} differs from the file saved (SHA-256 mismatch)"
        return None
    for f in weights:
        why = _check_safetensors(f)
        if why:
            return why
    try:
        json.loads((ckpt / "trainer_state.json").read_text())
    except ValueError as exc:
        return f"trainer_state.json does not parse ({exc})"
    import torch
    for f in [ckpt / "optimizer.pt", ckpt / "scheduler.pt"] + sorted(ckpt.glob("rng_state*.pth")):
        try:
            torch.load(f, map_location="cpu", weights_only=False)
        except Exception as exc:
            return f"{f.name} does not load ({type(exc).__name__}: {str(exc)[:80]})"
    return None


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("checkpoint-*") if p.is_dir() and _step_of(p) >= 0), key=_step_of)


def find_resume_checkpoint(local_dir: Path, durable_dir: Path, log=print) -> Path | None:
    """The newest checkpoint, local or durable (Drive), that verifies (``verify_checkpoint``);
    each newer one that does not is named with the reason, and the next older one is tried."""
    cands = list_checkpoints(local_dir) + (list_checkpoints(durable_dir)
                                           if durable_dir.resolve() != local_dir.resolve() else [])
    # newest step first; at one step the local copy first (faster), then the durable one
    cands.sort(key=lambda p: (-_step_of(p), p.parent.resolve() != local_dir.resolve()))
    for ckpt in cands:
        why = verify_checkpoint(ckpt)
        if why is None:
            return ckpt
        log(f"Skipping {ckpt}: {why}; trying an older checkpoint.")
    return None


def copy_checkpoint(src: Path, dest_root: Path, keep: int) -> Path:
    """Copy a checkpoint folder completely (temporary name, then rename), keep the newest ``keep``,
    and remove the ``.partial`` leftovers of copies that were interrupted."""
    dest_root.mkdir(parents=True, exist_ok=True)
    final = dest_root / src.name
    if final.exists() and is_complete_checkpoint(final):
        return final
    tmp = dest_root / f".{src.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    (tmp / COMPLETE_MARKER).write_text(json.dumps({"copied_at": time.time()}) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for stale in dest_root.glob(".checkpoint-*.partial"):  # a complete copy exists now: they are no use
        shutil.rmtree(stale, ignore_errors=True)
    ckpts = [c for c in list_checkpoints(dest_root) if is_complete_checkpoint(c)]
    for old in ckpts[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


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


def _make_callbacks(cfg: TrainConfig, durable_ckpt: Path, t_start: float):
    from transformers import TrainerCallback

    class DurableCheckpoints(TrainerCallback):
        """After each checkpoint: mark it complete locally, copy it to the durable folder."""

        def on_save(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not ckpt.exists():
                return
            write_manifest(ckpt)
            (ckpt / COMPLETE_MARKER).write_text(json.dumps({"step": state.global_step, "time": time.time()}) + "\n")
            if durable_ckpt.resolve() != Path(args.output_dir).resolve():
                copy_checkpoint(ckpt, durable_ckpt, cfg.save_total_limit)

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
                with open(Path(cfg.output_dir) / "log_history.jsonl", "a") as fh:
                    fh.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

    return [DurableCheckpoints(), TimeBudget(), LiveLog()]


def check_signature(cfg: TrainConfig, out: Path, resuming: bool) -> None:
    """Refuse to resume a run folder written for another model or config."""
    sig_path = out / RUN_SIGNATURE
    mine = {k: getattr(cfg, k) for k in SIGNATURE_FIELDS}
    if sig_path.exists() and resuming:
        theirs = json.loads(sig_path.read_text())
        diff = {k: (theirs.get(k), mine[k]) for k in SIGNATURE_FIELDS if k in theirs and theirs.get(k) != mine[k]}
        if diff:
            lines = "; ".join(f"{k}: folder has {a!r}, this run {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(f"{out} holds checkpoints of another run ({lines}). Use another OUTPUT_DIR, "
                              "or RESUME='never' to start over there (its checkpoints are then replaced).")
    out.mkdir(parents=True, exist_ok=True)
    sig_path.write_text(json.dumps(mine, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# Shards
# ----------------------------------------------------------------------------------------------
def shard_ledger(out: Path) -> dict:
    p = out / "shards.json"
    return json.loads(p.read_text()) if p.exists() else {"done": {}}


def next_shard(cfg: TrainConfig, out: Path) -> int | None:
    done = shard_ledger(out)["done"]
    if cfg.shard_index >= 0:
        if str(cfg.shard_index) in done:
            raise ConfigError(f"Shard {cfg.shard_index} of {cfg.num_shards} was already trained "
                              f"({done[str(cfg.shard_index)]['finished']}); shards.json in {out} records it. "
                              "Set SHARD_INDEX=-1 to take the next untrained one.")
        return cfg.shard_index
    for i in range(cfg.num_shards):
        if str(i) not in done:
            return i
    return None


def record_shard(out: Path, index: int, info: dict) -> None:
    ledger = shard_ledger(out)
    ledger["done"][str(index)] = info
    tmp = out / "shards.json.tmp"
    tmp.write_text(json.dumps(ledger, indent=2) + "\n")
    os.replace(tmp, out / "shards.json")


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


@dataclass
class MemoryPlan:
    per_device_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    budget_gib: float
    weights_gib: float
    activations_gib: float
    reason: str
    trainable_gib: float = 0.0  # trainable weights, their gradients and AdamW's two fp32 states

    @property
    def peak_gib(self) -> float:
        return self.weights_gib + self.trainable_gib + self.activations_gib


def lora_parameter_count(config, cfg: "TrainConfig") -> int:
    """Parameters LoRA adds to a Llama-style model for cfg's rank and target modules."""
    h, layers = config.hidden_size, config.num_hidden_layers
    inter = getattr(config, "intermediate_size", 4 * h)
    heads = getattr(config, "num_attention_heads", 1)
    head_dim = getattr(config, "head_dim", None) or h // heads
    kv = getattr(config, "num_key_value_heads", heads) * head_dim
    sizes = {"q_proj": (h, heads * head_dim), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (heads * head_dim, h),
             "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    targets = lora_targets(cfg)
    names = sizes if targets == "all-linear" else [t for t in targets if t in sizes]
    return cfg.lora_r * layers * sum(sum(sizes[n]) for n in names)


def gpu_memory_budget_gib() -> float:
    """Usable GPU memory: ``LLAMA_KIT_GPU_MEMORY_GIB`` if set (to plan for a smaller GPU, or a
    process capped with torch.cuda.set_per_process_memory_fraction), else the device's total."""
    import torch
    if os.environ.get("LLAMA_KIT_GPU_MEMORY_GIB"):
        return float(os.environ["LLAMA_KIT_GPU_MEMORY_GIB"])
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 2**30


def plan_memory(model, cfg: "TrainConfig", quantized: bool, budget_gib: float | None = None) -> MemoryPlan:
    """Pick micro-batch, gradient accumulation and checkpointing so the run fits with margin.

    Activation bytes per token, fitted on an H100 to our path's measured peaks (bench/RESULTS.md,
    Llama-3.1-8B and 3.2-1B shapes, bf16, fused LoRA, tiled LM head): without checkpointing about
    36 x hidden per layer; with it one layer's working set (16 x hidden) plus the saved layer
    inputs, 2 x hidden per layer, of which only the last few (TRL's stash of 5) stay on the GPU
    when they are offloaded to the CPU; plus about 40 KB for the LM head tiles and the loss.
    Weights are measured on the loaded model; the adapters count 16 bytes per parameter (fp32
    weight, gradient and two AdamW states). Margin: 15% of the budget and 1 GiB for the CUDA
    context and fragmentation. The effective batch (micro-batch x accumulation) of the config is kept."""
    budget = gpu_memory_budget_gib() if budget_gib is None else budget_gib
    weights = model.get_memory_footprint() / 2**30
    c = model.config
    hidden, layers = c.hidden_size, c.num_hidden_layers
    per_tok_nockpt = 36 * hidden * layers + 40_000
    saved_layers = min(layers, 6) if cfg.offload_activations else layers
    per_tok_ckpt = 2 * hidden * saved_layers + 16 * hidden + 40_000
    if cfg.finetune == "full":
        trainable = 16 * sum(p.numel() for p in model.parameters()) / 2**30
    else:
        trainable = 16 * lora_parameter_count(c, cfg) / 2**30
    free = budget * 0.85 - 1.0 - weights - trainable
    want_b, accum = cfg.per_device_batch_size, cfg.gradient_accumulation_steps
    effective = want_b * accum
    seq = cfg.max_seq_len

    def act(b, per_tok):
        return b * seq * per_tok / 2**30

    if free <= 0:
        raise ConfigError(f"The model alone ({weights:.1f} GiB) does not fit in {budget:.1f} GiB of GPU memory with "
                          "margin: use 4-bit quantization, a smaller model, or a larger GPU.")
    if act(want_b, per_tok_nockpt) <= free:
        return MemoryPlan(want_b, accum, False, budget, weights, act(want_b, per_tok_nockpt),
                          f"batch {want_b} x {seq} tokens fits without gradient checkpointing "
                          f"(~{act(want_b, per_tok_nockpt):.1f} GiB activations of {free:.1f} free): fastest", trainable)
    b = want_b
    while b > 1 and act(b, per_tok_ckpt) > free:
        b //= 2
    if act(b, per_tok_ckpt) > free:
        raise ConfigError(f"Even one sequence of {seq} tokens needs ~{act(1, per_tok_ckpt):.1f} GiB of activations with "
                          f"checkpointing, and {free:.1f} GiB are free: lower MAX_SEQ_LEN.")
    new_accum = max(1, -(-effective // b))
    why = (f"batch {want_b} x {seq} tokens needs ~{act(want_b, per_tok_nockpt):.1f} GiB without checkpointing, "
           f"{free:.1f} GiB free: gradient checkpointing on")
    if b != want_b:
        why += f", micro-batch {want_b} -> {b} with accumulation {accum} -> {new_accum} (effective batch kept)"
    if cfg.offload_activations:
        why += ", checkpointed layer inputs offloaded to CPU memory"
    return MemoryPlan(b, new_accum, True, budget, weights, act(b, per_tok_ckpt), why, trainable)


def apply_fast_kernels(model, kernels: str = "auto", log=print) -> str:
    """Swap in fused Triton kernels (Liger: RMSNorm, SwiGLU, RoPE) on the model instance.

    The LM head needs no kernel of its own: TRL's SFTTrainer already scores only the trained
    positions, in tiles, without building the (batch, seq, vocab) logits. Returns what was done."""
    from .hardware import current_choice
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
    """Route the LoRA layers through helpers.fast_lora (base matmul and adapter in one autograd
    function, no copies of the output) unless KERNELS='none', under FSDP (sharded 4-bit weights)
    or on an 8-bit base. Returns the updated description of what was applied."""
    from .fast_lora import patch_lora_layers
    from .models import under_fsdp
    if kernels == "none" or under_fsdp():
        return applied
    n = patch_lora_layers(model)
    if not n:
        return applied
    log(f"Fast kernels: fused LoRA on {n} layers")
    return "fused-lora" if applied == "none" else f"{applied}+fused-lora"


def lora_targets(cfg: TrainConfig):
    if cfg.target_modules.strip() == "all-linear":
        return "all-linear"
    return [t.strip() for t in cfg.target_modules.split(",") if t.strip()]


def add_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model
    if cfg.init_adapter:
        from .models import attach_adapter
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
    from trl import SFTTrainer

    class KitTrainer(SFTTrainer):
        """SFTTrainer with a smaller learning rate for embed_tokens/lm_head (domain pretraining)."""

        embedding_lr_ratio: float = 1.0

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


def peak_memory_gib() -> float | None:
    import torch
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return None


# ----------------------------------------------------------------------------------------------
# The entry point
# ----------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, log=print, callbacks: list | None = None) -> TrainResult:
    """One training run; ``callbacks``: extra TrainerCallbacks (the sweep's pruning watch).

    The datasets library's progress bars (TRL's "Building labels", "Truncating", ... over rows
    already encoded) are off while it runs: they finish in milliseconds and only leave frozen
    lines in a notebook. The trainer's own progress (bar and table) stays."""
    import datasets.utils.logging as ds_logging
    was_on = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        return _train(cfg, log, callbacks)
    finally:
        if was_on:
            ds_logging.enable_progress_bar()


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


def _train(cfg: TrainConfig, log=print, callbacks: list | None = None) -> TrainResult:
    import torch
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, set_seed
    from trl import SFTConfig

    from .models import (check_quantization, compute_dtype, count_parameters, default_model_name, load_model,
                         resolve_model_path, under_fsdp)
    from .plots import plot_losses

    t_start = time.time()
    if not cfg.model_name:
        cfg = cfg.replace(model_name=default_model_name())
    resolve_model_path(cfg.model_name)  # unknown names fail here, before any data work
    quant = check_quantization(cfg.quantization)
    if cfg.finetune == "full" and quant in ("4bit", "8bit"):
        quant = "16bit" if torch.cuda.is_available() else "none"
    out_root = Path(cfg.output_dir)
    out_root.mkdir(parents=True, exist_ok=True)

    shard = None
    out = out_root
    if cfg.num_shards > 1:
        shard = next_shard(cfg, out_root)
        if shard is None:
            raise ConfigError(f"All {cfg.num_shards} shards in {out_root} are trained (see shards.json). "
                              "Use a new OUTPUT_DIR for another pass.")
        out = out_root / f"shard-{shard:03d}"
        done = shard_ledger(out_root)["done"]
        prev = [int(k) for k in done]
        if prev and not cfg.init_adapter:
            last = out_root / f"shard-{max(prev):03d}" / "adapter"
            cfg = cfg.replace(init_adapter=str(last))
        log(f"Shard {shard + 1} of {cfg.num_shards}" + (f", continuing from {cfg.init_adapter}" if cfg.init_adapter else ""))
    # the data is read and validated before the model loads or a checkpoint is touched: a bad row
    # fails in seconds, not after minutes of loading
    rows = load_rows(cfg.dataset_path, cfg.mode)
    if cfg.max_rows:
        rows = rows[: cfg.max_rows]
    if shard is not None:
        rows = shard_rows(rows, cfg.num_shards, shard)
    eval_loaded = load_rows(cfg.eval_path, cfg.mode) if cfg.eval_path else None
    durable_ckpt = out / "checkpoints"
    # On Colab checkpoints are written to the fast local disk and copied to Drive; elsewhere the
    # durable folder is written directly.
    local_ckpt = Path(cfg.checkpoint_dir) / (out.name if shard is not None else "") if cfg.checkpoint_dir \
        else durable_ckpt

    resume_from: Path | None = None
    if cfg.resume == "auto":
        resume_from = find_resume_checkpoint(local_ckpt, durable_ckpt, log)
    elif cfg.resume not in ("never", "", "none"):
        resume_from = Path(cfg.resume)
        why = verify_checkpoint(resume_from) if resume_from.is_dir() else "no such folder"
        if why:
            raise ConfigError(f"RESUME={cfg.resume!r} cannot be resumed from: {why}. Use RESUME='auto' to take the "
                              "newest checkpoint that verifies.")
    check_signature(cfg, out_root, resuming=resume_from is not None or (out_root / "shards.json").exists())
    if cfg.resume in ("never", "none"):
        for d in (local_ckpt, durable_ckpt):
            shutil.rmtree(d, ignore_errors=True)
        (out / "log_history.jsonl").unlink(missing_ok=True)
    if resume_from is not None and resume_from.parent.resolve() != local_ckpt.resolve():
        local_ckpt.mkdir(parents=True, exist_ok=True)
        dest = local_ckpt / resume_from.name
        if not dest.exists() or verify_checkpoint(dest) is not None:
            log(f"Copying {resume_from} to the fast local disk ...")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(resume_from, dest)
        resume_from = dest
    if resume_from is not None:
        log(f"Resuming from {resume_from} (step {_step_of(resume_from)})")

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

    quantized = quant in ("4bit", "8bit")
    plan = None
    if cfg.auto_fit and torch.cuda.is_available():
        plan = plan_memory(model, cfg, quantized)
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
    trainable = count_parameters(model, trainable_only=True)
    log(f"Trainable parameters: {trainable / 1e6:.2f}M of {count_parameters(model) / 1e6:.1f}M "
        f"({100 * trainable / max(1, count_parameters(model)):.2f}%)")

    cuda = torch.cuda.is_available()
    dtype = compute_dtype()
    optim = cfg.optim
    if optim == "auto":
        # Fused AdamW updates every adapter tensor in one kernel. bitsandbytes' paged 8-bit AdamW
        # loops over the ~450 adapter tensors of an 8B model in Python, and a QLoRA step is bound
        # by the CPU: fused is ~4% faster there, for 6 more bytes per adapter parameter (~0.25 GiB
        # at 8B, r=16; bench/RESULTS.md). It also shards under FSDP, which the 8-bit state cannot.
        optim = "adamw_torch_fused" if cuda else "adamw_torch"
    offload = bool(cuda and cfg.gradient_checkpointing and cfg.offload_activations and not under_fsdp())
    report = cfg.report_to
    if report == "tensorboard":
        import importlib.util
        if importlib.util.find_spec("tensorboard") is None:
            report = "none"
    has_eval = bool(eval_enc)
    eval_steps = cfg.eval_steps if cfg.eval_steps > 0 else None
    args = SFTConfig(
        output_dir=str(local_ckpt),
        run_name=cfg.run_name or out.name,
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
        optim=optim,
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
        report_to=report,
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_length=cfg.max_seq_len,
        packing=cfg.packing,
        padding_free=cfg.packing,
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
        use_cpu=not cuda,
        dataloader_num_workers=0,
        save_only_model=False,
        disable_tqdm=False,
    )
    if report == "tensorboard":
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")  # durable (Drive on Colab)
    extra_callbacks = list(callbacks or [])
    if args.n_gpu > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # Several GPUs visible to one process: train on this one (the model is placed on it) rather
        # than the Trainer's nn.DataParallel; for several GPUs use `accelerate launch` or torchrun.
        log(f"{args.n_gpu} GPUs visible to one process: training on GPU {torch.cuda.current_device()} only. "
            "Use `accelerate launch --config_file configs/accelerate/ddp.yaml -m helpers.train ...` for all of them.")
        args._n_gpu = 1
    callbacks = _make_callbacks(cfg, durable_ckpt, t_start) + extra_callbacks
    if cfg.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    Trainer = _make_trainer_class()
    Trainer.embedding_lr_ratio = cfg.embedding_lr_ratio if cfg.train_embeddings else 1.0
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(train_enc),
                      eval_dataset=Dataset.from_list(eval_enc) if has_eval else None,
                      processing_class=tok, callbacks=callbacks)
    recast = keep_master_weights_fp32(trainer.model, fp16=args.fp16)
    if recast:
        log(f"fp16 training: {recast} trainable tensors kept in fp32 for the gradient scaler")
    start_file = out / "start_eval.json"
    start_eval = None
    if has_eval and resume_from is None:
        # the untrained model's validation loss: the "before" of every before/after figure
        with _quiet_evaluate(trainer):
            start_eval = {k: v for k, v in trainer.evaluate().items() if k == "eval_loss"}
        start_file.write_text(json.dumps(start_eval) + "\n")
        log(f"Validation loss before training: {start_eval['eval_loss']:.3f} "
            f"(perplexity {math.exp(start_eval['eval_loss']):.2f})")
    elif start_file.exists():
        start_eval = json.loads(start_file.read_text())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_train = time.time()
    out_train = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_s = time.time() - t_train

    adapter_dir = out / ("adapter" if cfg.finetune == "lora" else "model")
    trainer.save_model(str(adapter_dir))
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(adapter_dir))
    history = trainer.state.log_history
    if start_eval:
        history = [{"eval_loss": start_eval["eval_loss"], "step": 0, "epoch": 0.0}] + list(history)
    last = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if has_eval and last is not None and last.get("step") == trainer.state.global_step \
            and not args.load_best_model_at_end:
        final_eval = {"eval_loss": last["eval_loss"]}  # these very weights were just evaluated
    elif has_eval:
        with _quiet_evaluate(trainer):  # the training table above already shows the evaluations
            final_eval = trainer.evaluate()
    else:
        final_eval = {}
    tokens_seen = int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0)
    metrics = {
        "run_name": cfg.run_name or out.name, "model_name": cfg.model_name, "mode": cfg.mode, "quantization": quant,
        "steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0, 3),
        "train_loss": round(whole, 4) if (whole := whole_run_train_loss(trainer.state.log_history)) is not None
        else (round(out_train.training_loss, 4) if out_train.training_loss else None),  # every sitting's steps
        "train_loss_this_sitting": round(out_train.training_loss, 4) if out_train.training_loss else None,
        "eval_loss": round(final_eval["eval_loss"], 4) if "eval_loss" in final_eval else None,
        "first_eval_loss": next((round(h["eval_loss"], 4) for h in history if "eval_loss" in h), None),
        "start_eval_loss": start_eval["eval_loss"] if start_eval else None,
        "start_perplexity": round(math.exp(start_eval["eval_loss"]), 3) if start_eval else None,
        "eval_perplexity": round(math.exp(final_eval["eval_loss"]), 3) if "eval_loss" in final_eval else None,
        "train_seconds": round(train_s, 1), "tokens_seen": tokens_seen,
        "tokens_per_second": round(tokens_seen / train_s, 1) if train_s > 0 and tokens_seen else None,
        "peak_memory_gib": peak_memory_gib(), "trainable_parameters": trainable, "kernels": kernels,
        "resumed_from": str(resume_from) if resume_from else None,
        "data": {"train": train_rep, "validation": eval_rep}, "shard": shard,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "memory_plan": dataclasses.asdict(plan) if plan else None,
        "config": {k: v for k, v in cfg.to_dict().items()},
    }
    plot = merged = None
    if not trainer.is_world_process_zero():  # under DDP/FSDP only rank 0 writes the run's files
        del trainer
        return TrainResult(out, adapter_dir, metrics, history, None, None, metrics["resumed_from"], shard)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    (out / "log_history.json").write_text(json.dumps(history, indent=1) + "\n")
    plot = plot_losses(history, out / "loss.png", title=f"{cfg.run_name or out.name}: loss")
    if cfg.merge and cfg.finetune == "lora":
        from .export import merge_adapter
        merged = merge_adapter(cfg.model_name, adapter_dir, out / "merged")
    if shard is not None:
        record_shard(out_root, shard, {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": len(train_rows),
                                       "steps": trainer.state.global_step, "adapter": str(adapter_dir)})
    log(f"Done: {_plural(metrics['steps'], 'step')} in {train_s:.0f} s; train loss {_num(metrics['train_loss'])}"
        + (f", eval loss {_num(metrics['first_eval_loss'])} -> {_num(metrics['eval_loss'])}" if has_eval else "")
        + f"; adapter in {adapter_dir}")
    del trainer
    return TrainResult(out, adapter_dir, metrics, history, plot, merged, str(resume_from) if resume_from else None, shard)


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



def default_dataset(ws, min_rows: int = 20) -> Path:
    """The dataset notebooks 04 and 07 train on when DATASET_PATH is "": notebook 02's.

    * Notebook 02's ``train.jsonl`` with at least ``min_rows`` examples: that one.
    * Fewer rows: an error saying what to do (too small to fine-tune on, and training on other
      data without being asked would hide it), except under ``SMOKE=1``, where the tiny smoke
      dataset is expected and the bundled real conversations (helpers/resources/chitchat) stand in, announced
      in a box.
    * No dataset from notebook 02 at all: the bundled real conversations, announced in a box.
    """
    from .data import DataError
    from .show import announce
    built = Path(ws.data_dir) / "dataset" / "train.jsonl"
    bundled = chitchat("train")
    if built.exists():
        n = sum(1 for line in built.open(encoding="utf-8") if line.strip())
        if n >= min_rows:
            print(f"Training on notebook 02's dataset: {built} ({n} examples)")
            return built
        if not getattr(ws, "smoke", False):
            raise DataError(
                f"Notebook 02's dataset {built} has only {n} example(s), fewer than {min_rows}: too few to fine-tune "
                "on. Build a larger one with notebook 02 (more PDFs: MAX_PDFS, more chunks: MAX_CHUNKS, or more "
                f"examples per chunk: PAIRS_PER_CHUNK), or set DATASET_PATH: DATASET_PATH=\"{built}\" to train on "
                f"these {n} anyway, or DATASET_PATH=\"{bundled}\" for the bundled real conversations.")
        announce("SMOKE: not training on notebook 02's dataset", [
            f"Notebook 02's dataset {built} has only {n} example(s), fewer than {min_rows}.",
            f"This SMOKE run trains on the bundled real conversations instead: {bundled}.",
            "Outside SMOKE this is an error; set DATASET_PATH to choose the data yourself."])
        return bundled
    announce("Training on the bundled demo conversations", [
        f"There is no dataset from notebook 02 in {built.parent}.",
        f"This run trains on the bundled real conversations (chit-chat, for trying the kit): {bundled}.",
        "To train on your own data, run notebook 02 first or set DATASET_PATH to a JSONL file."])
    return bundled


if __name__ == "__main__":
    sys.exit(main())
