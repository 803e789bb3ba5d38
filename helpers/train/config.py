"""What a training run is given and what it returns: :class:`TrainConfig` (notebooks 03 and 04), the
small configs of those notebooks' own switches, :class:`TrainResult`, the learning-rate rule of packed
runs, and the reader of a sweep's best settings (notebook 07 -> 04)."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.access import check_model_access
from helpers.common.models import default_model_name
from helpers.core.config import ConfigError, StepConfig, coerce_field
from helpers.core.files import PRETRAIN_RUN, SFT_RUN

# how a packed run's learning rate follows the examples one step holds (packed_step)
_PACKED_LR_FACTOR = {"linear": lambda k: k, "sqrt": math.sqrt, "none": lambda k: 1.0}
PACKED_LR_SCALINGS = tuple(_PACKED_LR_FACTOR)


@dataclass
class TrainConfig(StepConfig, notebooks=("03", "04")):
    """Everything one training run needs. Defaults are the QLoRA recipe for a Colab GPU."""
    model_name: str = ""  # base model: Hub id, folder or embedded name; "" = Llama-3.2-1B-Instruct on a GPU, else
                          # embedded SmolLM2-135M. Llama is gated: accept its licence on
                          # huggingface.co and add an HF_TOKEN secret (checked first)
    mode: str = "sft"  # "sft" (instruction tuning, loss on replies) or "pretrain" (raw text, loss on every token)
    dataset_path: str = ""  # JSONL: instruction/messages rows (sft), {"text"} rows (pretrain); "" = notebook 02's
                            # (needs 20 rows), else bundled chats
    eval_path: str = ""  # validation JSONL; "" = hold out eval_fraction of the training rows
    eval_fraction: float = 0.05  # share of training rows (pretrain: documents) held out for validation when EVAL_PATH
                                 # is ""
    replay_share: float = 0.0  # share of the training stream that is general data, against forgetting (0 = off; sft:
                               # examples, pretrain: blocks)
    replay_path: str = ""  # general data for REPLAY_SHARE: JSONL of conversations, instruction rows or {"text"} rows
                           # (pretrain); "" = bundled chats
    output_dir: str = "outputs/run"  # durable folder (Drive on Colab): adapter, metrics, checkpoint copies
    checkpoint_dir: str = ""  # fast local folder for checkpoints while training ("" = output_dir/local-checkpoints)
    run_name: str = ""  # the run's folder under the outputs folder (notebooks 03, 04), its label in logs and plots (""
                        # = OUTPUT_DIR's name)
    finetune: str = "lora"  # "lora" (an adapter on a frozen base) or "full" (every weight; no 4bit/8bit quantization)
    quantization: str = "auto"  # "4bit" (QLoRA), "8bit", "16bit", "none" (fp32); "auto" = 4bit on a GPU, fp32 on a CPU
    lora_r: int = 16  # LoRA rank: the adapter's size
    lora_alpha: int = 16  # LoRA scale numerator (scale = LORA_ALPHA / LORA_R)
    lora_dropout: float = 0.0  # dropout on the LoRA input (0 is fastest and usually as good)
    target_modules: str = "all-linear"  # "all-linear" or comma-separated names, e.g. "q_proj,v_proj"
    train_embeddings: bool = False  # also train embed_tokens and lm_head in full (domain pretraining: the domain's
                                    # vocabulary use)
    embedding_lr_ratio: float = 0.1  # learning rate of embed_tokens and lm_head relative to LEARNING_RATE
    init_adapter: str = ""  # "" = a fresh LoRA; else an adapter folder to start from, or "03" = notebook 03's (domain
                            # pretraining)
    template: str = "auto"  # "auto" (the model's chat template, else alpaca), "chat", or "alpaca" (our instruction
                            # template)
    system_prompt: str = ""  # system message added to conversations without one ("" = none)
    max_seq_len: int = 1024  # tokens per example (sft; longer ones are cut) or per packed block (pretrain)
    packing: bool = True  # sft: pack examples into rows of MAX_SEQ_LEN tokens, each attending only to itself (no
                          # padding)
    separate_documents: bool = False  # pretrain: documents sharing a block attend only to themselves (False: one
                                      # stream)
    packed_step_examples: float = 2.0  # sft packing: a step takes at most this many times the batch in examples
                                       # (fewer rows when rows hold many), so an epoch keeps enough steps (0 = off)
    packed_lr_scaling: str = "linear"  # sft packing: LEARNING_RATE x the step's examples per batch ("linear"), x its
                                       # square root ("sqrt") or as set ("none")
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
    resume: str = "auto"  # "auto" continues from the newest complete checkpoint, "never" starts over; or a checkpoint
                          # folder
    num_shards: int = 1  # > 1: cut the training data into N shards and train one per sitting
    shard_index: int = -1  # which shard to train now (-1 = the next untrained one)
    max_time_minutes: float = 0.0  # stop (after a checkpoint) when this much time has passed (0 = no limit)
    seed: int = 42  # seed for LoRA init, data order and dropout
    merge: bool = False  # also save the adapter merged into 16-bit base weights
    report_to: str = "tensorboard"  # "tensorboard", "none", "wandb", ...
    kernels: str = "auto"  # "auto" (fused LoRA layers; Liger's RMSNorm/SwiGLU/RoPE too on a GPU when installed),
                           # "liger" or "none"
    auto_fit: bool = True  # on a GPU: choose micro-batch and checkpointing from free memory (effective batch kept)
    max_rows: int = 0  # use only the first N training rows (0 = all), for quick trials

    @classmethod
    def notebook_defaults(cls) -> dict[str, dict[str, Any]]:
        # 03 pretrains: a larger rank, the embeddings trained, a small learning rate (the lever against
        # forgetting, bench/QUALITY.md 3b); no replay by default: the bundled conversations taught their style
        return {"03": dict(run_name=PRETRAIN_RUN, lora_r=64, lora_alpha=32, train_embeddings=True, learning_rate=5e-5),
                "04": dict(run_name=SFT_RUN, early_stopping_patience=3)}

    @classmethod
    def notebook_comments(cls) -> dict[str, dict[str, str]]:
        # 03's form says why its rank is larger than the default (its notebook_defaults() above)
        return {"03": dict(lora_r="LoRA rank: larger than for instruction tuning (notebook 04), as there is more "
                                  "to learn",
                           replay_share="share of the packed blocks that are general data (0 = off); best with your "
                                        "own general rows in the style to keep (REPLAY_PATH)")}

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        return dict(model_name="embedded/smollm2-135m-instruct", quantization="none", max_steps=6,
                    per_device_batch_size=2, gradient_accumulation_steps=1, max_seq_len=256, logging_steps=1,
                    eval_steps=3, save_steps=3, max_rows=48, report_to="none", gradient_checkpointing=False,
                    learning_rate=5e-4, warmup_ratio=0.0)

    def check_access(self) -> None:
        """Stop before any download when the base model is gated and this machine may not fetch it."""
        check_model_access(self.model_name or default_model_name())

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
            raise ConfigError(f"SHARD_INDEX={self.shard_index} with NUM_SHARDS={self.num_shards}: "
                              "index must be < shards.")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "max_seq_len", "lora_r", "logging_steps",
                     "save_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.upper()}={getattr(self, name)}: must be at least 1.")
        if self.learning_rate <= 0:
            raise ConfigError(f"LEARNING_RATE={self.learning_rate}: must be positive.")
        if self.packed_step_examples < 0:
            raise ConfigError(f"PACKED_STEP_EXAMPLES={self.packed_step_examples}: 0 (off) or a positive multiple of "
                              "the batch.")
        if self.packed_lr_scaling not in PACKED_LR_SCALINGS:
            raise ConfigError(f"PACKED_LR_SCALING={self.packed_lr_scaling!r}: one of "
                              f"{', '.join(repr(k) for k in PACKED_LR_SCALINGS)}.")


@dataclass
class TrainResult:
    """What ``train()`` returns: where the run's files are, and its record."""
    output_dir: Path  # durable run folder
    adapter_dir: Path  # final adapter (or full model) + tokenizer
    metrics: dict  # train/eval loss, time, tokens/s, peak memory, data report
    log_history: list  # the trainer's log lines (loss per step, eval loss, ...)
    plot: Path | None = None  # loss curve
    merged_dir: Path | None = None
    resumed_from: str | None = None
    shard: int | None = None


@dataclass
class PretrainSources(StepConfig, notebooks=("03",)):
    """Notebook 03's own setting: where the text it gathers into DATASET_PATH comes from."""
    text_sources: str = ""  # notebook 03's corpus, read into DATASET_PATH: comma-separated JSONL/text/PDF files or
                            # folders ("" = notebooks 01 and 02's)


@dataclass
class FinetuneChoices(StepConfig, notebooks=("04",)):
    """Notebook 04's own switch: whether a sweep's best settings replace the cell's."""
    use_sweep_best: bool = False  # True: notebook 04 takes notebook 07's best settings over the others (run 07 first;
                                  # sweep/best_config.json)


_FORGETTING_DOSE = 1e-3  # learning rate x epochs of raw text from which general answers drifted (QUALITY.md 3b)
# what the packing rule was measured at (bench/QUALITY.md): examples per row, and the rate's factor
_PACKED_K_MEASURED = 16.0
_PACKED_LR_MEASURED = 2.2


@dataclass
class PackedStep:
    """A packed SFT run's optimizer step: micro-batch and accumulation (rows per step), learning
    rate, and the sentence the log prints about them."""
    micro_batch: int
    accumulation: int
    learning_rate: float
    why: str


def packed_step(cfg: TrainConfig, examples: int, rows: int, world: int = 1) -> PackedStep:
    """Rows per step and learning rate of a packed SFT run whose rows hold k = examples / rows each.

    The batch (micro-batch x accumulation x GPUs) counts examples, as recipes give it. A packed step
    takes at most PACKED_STEP_EXAMPLES times that many examples: when rows hold more, a step takes
    fewer rows, so short examples still make an epoch of enough optimizer steps. The rate follows
    the examples a step holds against the batch: x that ratio ("linear"), its square root ("sqrt"),
    or as set ("none"). Measurements at several data shapes: bench/QUALITY.md."""
    k = examples / rows if rows else 1.0
    micro, accum = cfg.per_device_batch_size, cfg.gradient_accumulation_steps
    batch = micro * accum * world
    if cfg.packed_step_examples > 0:
        want_rows = max(1, min(batch, round(cfg.packed_step_examples * batch / k)))
        per_rank = max(1, round(want_rows / world))
        if per_rank >= micro:
            accum = max(1, round(per_rank / micro))
        else:
            micro, accum = per_rank, 1
    step_rows = micro * accum * world
    ratio = step_rows * k / batch
    factor = _PACKED_LR_FACTOR[cfg.packed_lr_scaling](ratio)
    lr = cfg.learning_rate * factor
    steps = f"{step_rows} rows per step ({step_rows * k:.0f} examples)"
    if step_rows != batch:
        steps += f", not {batch}: rows of {k:.1f} examples would leave an epoch too few steps"
    if cfg.packed_lr_scaling == "none" or factor == 1.0:
        return PackedStep(micro, accum, lr, f"{steps}; learning rate {lr:.3g} as set")
    rule = f"sqrt({ratio:.2f})" if cfg.packed_lr_scaling == "sqrt" else f"{ratio:.2f}"
    why = f"{steps}; learning rate {cfg.learning_rate:.3g} x {rule} = {lr:.3g} (PACKED_LR_SCALING)"
    if k > _PACKED_K_MEASURED or factor > _PACKED_LR_MEASURED * 1.05:
        why += (f". Measured up to {_PACKED_K_MEASURED:g} examples per row and x{_PACKED_LR_MEASURED:g} "
                "(bench/QUALITY.md): watch the first losses, and if they jump, lower LEARNING_RATE or run notebook 07")
    return PackedStep(micro, accum, lr, why)


def forgetting_warning(cfg: TrainConfig) -> str:
    """A warning for a pretraining run whose rate x epochs reached the zone where the model measurably
    drifted from its own general answers (bench/QUALITY.md 3b), else "". Runs cut by MAX_STEPS are not
    judged: their epochs are not known before the data is."""
    if cfg.mode != "pretrain" or cfg.max_steps > 0 or cfg.learning_rate * cfg.num_train_epochs < _FORGETTING_DOSE:
        return ""
    return (f"WARNING: LEARNING_RATE {cfg.learning_rate:g} for {cfg.num_train_epochs:g} epochs of raw text is where "
            "the model drifted from its own general answers in bench/QUALITY.md 3b (their perplexity +24% to +61%); "
            "a smaller rate kept most of the domain gain. Check notebook 05's general-ability section after")


def packs_documents(cfg: TrainConfig) -> bool:
    """Whether the run's rows hold several documents, each trained as if alone (PACKING for SFT,
    SEPARATE_DOCUMENTS for pretraining, whose blocks otherwise are one stream of text)."""
    return cfg.packing if cfg.mode == "sft" else cfg.separate_documents


def load_best_config(path: str | os.PathLike) -> dict:
    """The best run's TrainConfig overrides from a sweep's best_config.json, each converted to its
    field's type (for notebook 04): ``cfg = cfg.replace(**load_best_config(ws.sweep().best))``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run notebook 07 (the sweep) first, or leave it out.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}).") from None
    overrides = data.get("overrides") if isinstance(data, dict) else None
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path} has no 'overrides' object: is it a sweep's best_config.json?")
    fields = TrainConfig.field_names()
    out = {}
    for name, value in overrides.items():
        if name not in fields:
            raise ConfigError(f"{path}: {name!r} is not a TrainConfig field (written by another version?).")
        out[name] = coerce_field(TrainConfig, name, value, str(path))
    return out
