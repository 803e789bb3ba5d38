"""The trainer of a run: TRL's SFTTrainer with the kit's training step (:class:`KitTrainerMixin`), its
arguments (precision, schedule, checkpoints, DDP), the batches it is given (packed rows and their
learning rate), and the callbacks that keep checkpoints durable, the time budget and the live log."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.common.checkpoints import durable_checkpoints_callback
from helpers.common.models import compute_dtype, under_fsdp
from helpers.common.run import RunDir
from helpers.train.config import PackedStep, TrainConfig, packed_step
from helpers.train.data import TrainData
from helpers.train.model import keep_master_weights_fp32
from helpers.train.packing import REAL_TOKENS, PackedCollator, describe_packing, pack_examples
from helpers.train.progress import use_kit_progress


class KitTrainerMixin:
    """The kit's changes to TRL's SFTTrainer (see :func:`kit_trainer_class`): a smaller learning rate
    for embed_tokens/lm_head (domain pretraining), and a training step without waits for the GPU.

    TRL's ``compute_loss`` and the Trainer read their metrics and token count back from the GPU at
    every step, so the GPU idles while the CPU catches up. For the loss TRL computes by default
    (``loss_type="nll"`` through its fused LM head, no label smoothing, no loss function of the
    user's, no MoE auxiliary loss, no sequence parallelism) the loss here is the same expression,
    the metrics stay sums on the GPU until the trainer logs, and the token count comes from the
    packed collator (``REAL_TOKENS``); any other loss runs TRL's own code (measurements: bench/RESULTS.md)."""

    embedding_lr_ratio: float = 1.0

    def _kit_plain_loss(self) -> bool:
        """Whether this run's loss is TRL's default one, which :meth:`compute_loss` computes itself."""
        pc = getattr(self.accelerator, "parallelism_config", None)
        return (self.compute_loss_func is None and self.label_smoother is None
                and getattr(self.args, "loss_type", "nll") == "nll" and not getattr(self, "aux_loss_enabled", False)
                and not (pc is not None and getattr(pc, "sp_enabled", False)))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss, its metrics kept as sums on the GPU (read in :meth:`log`), not read back each step."""
        import torch

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
        """The token count from the collator's CPU-side ``REAL_TOKENS`` (one process), not from the GPU."""
        real = inputs.get(REAL_TOKENS) if isinstance(inputs, dict) else None
        if real is None or self.args.world_size > 1 or self.args.include_num_input_tokens_seen != "non_padding":
            return super()._track_num_input_tokens(inputs)
        self.state.num_input_tokens_seen += int(real)

    def log(self, logs, start_time=None):
        """TRL's entropy and token accuracy from the sums kept since the last log line."""
        mode = "train" if self.model.training else "eval"
        sums = self.__dict__.get("_kit_sums", {}).pop(mode, None)
        if sums is not None:
            valid, entropy, correct = sums.tolist()
            self._metrics[mode]["entropy"].append(entropy / valid if valid > 0 else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append(correct / valid if valid > 0 else 0.0)
            self._metrics[mode]["num_tokens"] = [self.state.num_input_tokens_seen]
        return super().log(logs, start_time)

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with embed_tokens/lm_head in groups of their own at ``embedding_lr_ratio``."""
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
            groups.setdefault((emb, lr, wd), []).append(p)
        # LoRA's groups first: the Trainer logs the first group's rate, which is LEARNING_RATE's schedule
        params = [{"params": ps, "lr": lr, "weight_decay": wd} for (emb, lr, wd), ps in sorted(
            groups.items(), key=lambda kv: kv[0][0])]
        opt_cls, opt_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        opt_kwargs.pop("lr", None)
        self.optimizer = opt_cls(params, lr=self.args.learning_rate, **opt_kwargs)
        return self.optimizer


def kit_trainer_class(embedding_lr_ratio: float = 1.0) -> type:
    """TRL's SFTTrainer with :class:`KitTrainerMixin`'s step, and ``embedding_lr_ratio`` for the
    learning rate of embed_tokens/lm_head. Built on call: trl loads only when a run trains."""
    from trl import SFTTrainer

    return type("KitTrainer", (KitTrainerMixin, SFTTrainer), {"embedding_lr_ratio": embedding_lr_ratio})


def _optimizer_name(cfg: TrainConfig, cuda: bool) -> str:
    """OPTIM, or for "auto" fused AdamW on a GPU: one kernel for every adapter tensor, where bitsandbytes'
    paged 8-bit AdamW loops over them in Python and a QLoRA step is bound by the CPU; it also shards
    under FSDP, which the 8-bit state cannot (measurements: bench/RESULTS.md)."""
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


@dataclass
class TrainingBatches:
    """What the trainer is given: the training and validation examples (the training ones packed
    into rows with PACKING), the collator for the packing kernel, the packed run's step (rows per
    step and learning rate; None = the config's as set), and the packing report for the data report."""
    train: list[dict]
    eval: list[dict]
    collator: PackedCollator | None
    step: PackedStep | None
    report: dict

    @property
    def has_eval(self) -> bool:
        return bool(self.eval)


def training_batches(cfg: TrainConfig, data: TrainData, tok, packing: str | None, log) -> TrainingBatches:
    """The examples as the trainer takes them. With ``packing`` (a kernel of helpers.train.packing)
    SFT examples are packed into rows of MAX_SEQ_LEN tokens, with the rows per step and learning
    rate of :func:`packed_step`, and the collator trains the documents of a row (or a pretraining
    block) apart. The validation examples stay one per row (collated for the same kernel), so the
    validation loss is the same figure with PACKING on or off."""
    train_enc, collator, step, report = data.train_enc, None, None, {}
    if packing:
        if cfg.mode == "sft":
            train_enc, rep = pack_examples(train_enc, cfg.max_seq_len)
            step = packed_step(cfg, rep["examples"], rep["rows"], int(os.environ.get("WORLD_SIZE", "1")))
            report["packing"] = dict(rep, kernel=packing, learning_rate=step.learning_rate,
                                     lr_scaling=cfg.packed_lr_scaling,
                                     rows_per_step=step.micro_batch * step.accumulation)
            log(describe_packing(rep, packing) + "; " + step.why)
        else:
            report["separate_documents"] = {"kernel": packing}
            log(f"Documents sharing a block trained apart (SEPARATE_DOCUMENTS, {packing} path)")
        collator = PackedCollator(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id, packing,
                                  count_tokens=True)
    return TrainingBatches(train_enc, data.eval_enc, collator, step, report)


def training_arguments(cfg: TrainConfig, batches: TrainingBatches, run: RunDir, local_ckpt: Path, log):
    """:func:`sft_arguments` with the packed step's rows and learning rate (validation keeps the
    micro-batch as set), TensorBoard's logs in the run folder, and one process that sees several
    GPUs kept to one of them."""
    import torch

    step = batches.step
    step_cfg = cfg if step is None else cfg.replace(
        learning_rate=step.learning_rate, per_device_batch_size=step.micro_batch,
        gradient_accumulation_steps=step.accumulation)
    args = sft_arguments(step_cfg, run, local_ckpt, batches.has_eval)
    args.per_device_eval_batch_size = cfg.per_device_batch_size
    if _report_to(cfg) == "tensorboard":
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.path / "tensorboard")  # durable (Drive on Colab)
    if args.n_gpu > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # Several GPUs visible to one process: train on this one (the model is placed on it) rather
        # than the Trainer's nn.DataParallel; for several GPUs use `accelerate launch` or torchrun.
        log(f"{args.n_gpu} GPUs visible to one process: training on GPU {torch.cuda.current_device()} only. "
            "Use `accelerate launch --config_file configs/accelerate/ddp.yaml -m helpers.train.loop ...` for all "
            "of them.")
        args._n_gpu = 1
    return args


def run_callbacks(cfg: TrainConfig, root: RunDir, durable_ckpt: Path, t_start: float, extra: list,
                  has_eval: bool, log=print) -> list:
    """Drive-safe checkpoint copies, the time budget, the live log of the run, the ``extra``
    callbacks (the sweep's pruning watch), and early stopping (EARLY_STOPPING_PATIENCE, with validation)."""
    from transformers import EarlyStoppingCallback, TrainerCallback

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

    callbacks = [durable_checkpoints_callback(durable_ckpt, cfg.save_total_limit, log), TimeBudget(), LiveLog()] + extra
    if cfg.early_stopping_patience and has_eval:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    return callbacks


def build_trainer(cfg: TrainConfig, model, tok, batches: TrainingBatches, args, callbacks: list, log):
    """The KitTrainer over the batches with the run's arguments and callbacks, and the kit's training
    table for the Trainer's progress output; embed_tokens/lm_head at EMBEDDING_LR_RATIO when they are
    trained; trainable weights kept in fp32 under fp16."""
    from datasets import Dataset

    Trainer = kit_trainer_class(cfg.embedding_lr_ratio if cfg.train_embeddings else 1.0)
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(batches.train),
                      eval_dataset=Dataset.from_list(batches.eval) if batches.has_eval else None,
                      processing_class=tok, callbacks=callbacks, data_collator=batches.collator)
    use_kit_progress(trainer, log)  # step, train and validation loss, rate, time left; no frozen bar
    recast = keep_master_weights_fp32(trainer.model, fp16=args.fp16)
    if recast:
        log(f"fp16 training: {recast} trainable tensors kept in fp32 for the gradient scaler")
    return trainer


class quiet_evaluate:
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
