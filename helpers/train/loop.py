"""Training: one entry point for domain pretraining (notebook 03) and instruction tuning (04).

``train(cfg)`` runs TRL's ``SFTTrainer`` on a LoRA (or QLoRA, or full) model and returns a
:class:`TrainResult`. The same code runs as a script, alone or under ``accelerate launch``::

    python -m helpers.train config.json            # fields not in the file keep their defaults
    MAX_STEPS=50 python -m helpers.train config.json   # any field from the environment
    accelerate launch --config_file configs/accelerate/ddp.yaml -m helpers.train config.json

Where things live: the configuration is :mod:`helpers.train.config`; the rows and their encoding
:mod:`helpers.train.data`, :mod:`helpers.train.examples` and :mod:`helpers.train.replay` (general data
against forgetting, ``REPLAY_SHARE``); the model preparation (kernels, LoRA) :mod:`helpers.train.model`;
the trainer :mod:`helpers.train.trainer`; the micro-batch and checkpointing that fit the GPU
:mod:`helpers.train.memory`. The run folder and its manifest (``run.json``) are
:class:`helpers.common.run.RunDir`; checkpoints that survive a Colab disconnect, and the choice of the
one to resume, are :mod:`helpers.common.checkpoints`. This module holds ``train()``, which reads as its
phases, and the run's record.

Resuming restores weights, optimizer, scheduler, RNG state and the position in the data; the
manifest's ``train_loss`` is the mean over the whole run, every sitting included. A run whose
checkpoint already holds its last step (killed before its record was written, or simply rerun) is
not trained again: what is missing is written from that checkpoint. A long dataset
can be trained in shards, one per sitting, with a ledger in the manifest so no shard is trained
twice or skipped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.checkpoints import checkpoint_dirs, keep_durable_copy, resume_point, stage_locally, step_of
from helpers.common.merge import merge_adapter
from helpers.common.models import check_quantization, default_model_name, load_model, resolve_model_path
from helpers.common.plots import plot_losses
from helpers.common.run import RunDir
from helpers.core.config import ConfigError
from helpers.train.config import TrainConfig, TrainResult, forgetting_warning
from helpers.train.data import RunRows, TrainData, encode_data, read_data
from helpers.train.memory import peak_memory_gib
from helpers.train.model import PreparedModel, prepare_model
from helpers.train.trainer import build_trainer, quiet_evaluate, run_callbacks, training_arguments, training_batches


def train(cfg: TrainConfig, log=print, callbacks: list | None = None) -> TrainResult:
    """One training run; ``callbacks``: extra TrainerCallbacks (the sweep's pruning watch).

    Its phases: :func:`_plan` (model, quantization, run folder, shard),
    :func:`helpers.train.data.read_data` (rows read and validated before the model loads, so a bad row
    fails in seconds), :func:`_resume_from` (the checkpoint to resume, the run's signature checked),
    :func:`_load_and_encode`, :func:`helpers.train.model.prepare_model` (memory plan, kernels, LoRA),
    the trainer (:mod:`helpers.train.trainer`), :func:`_evaluate_start`, the fit itself and
    :func:`_finish` (weights, metrics and log into the run's manifest).

    The datasets library's progress bars (TRL's "Building labels", "Truncating", ... over rows
    already encoded) are off while it runs: they finish in milliseconds and only leave frozen
    lines in a notebook. The progress is the kit's table (helpers.train.progress)."""
    import torch

    t_start = time.time()
    with _datasets_progress_off():
        plan = _plan(cfg, log)
        cfg = plan.cfg
        rows = read_data(cfg, plan.shard)
        ckpt = _resume_from(cfg, plan, log)
        if ckpt.resume_from is not None and 0 < cfg.max_steps <= step_of(ckpt.resume_from):
            recorded = _recorded_result(cfg, plan, ckpt, log)
            if recorded is not None:  # a rerun of a finished run: nothing to load
                return recorded
        model, tok, data = _load_and_encode(cfg, plan.quant, rows, log)
        prepared = prepare_model(model, cfg, plan.quant, data, log)
        cfg = prepared.cfg
        batches = training_batches(cfg, data, tok, prepared.packing, log)
        data.train_rep.update(batches.report)  # the packing report joins the data report
        args = training_arguments(cfg, batches, plan.run, ckpt.local, log)
        callbacks = run_callbacks(cfg, plan.root, ckpt.durable, t_start, list(callbacks or []), data.has_eval,
                                  log)
        trainer = build_trainer(cfg, prepared.model, tok, batches, args, callbacks, log)
        if _holds_every_step(trainer, ckpt.resume_from):
            return _finish_without_training(cfg, trainer, tok, data, plan, ckpt, prepared, log)
        start_eval = _evaluate_start(trainer, plan.run, data.has_eval, ckpt.resume_from, log)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t_train = time.time()
        out_train = trainer.train(resume_from_checkpoint=str(ckpt.resume_from) if ckpt.resume_from else None)
        fit = _Fit(out_train, time.time() - t_train, start_eval, ckpt.resume_from, plan.quant, prepared, plan.shard)
        return _finish(cfg, trainer, tok, data, plan, fit, log)


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
class RunPlan:
    """What :func:`_plan` decides before any data work."""
    cfg: TrainConfig  # the run's config (model name filled in; a shard continues the previous adapter)
    quant: str  # the quantization the model loads with
    root: RunDir  # OUTPUT_DIR: the run folder, with the shard ledger
    run: RunDir  # this sitting's folder: root, or its shard's folder
    shard: int | None  # the shard trained now (NUM_SHARDS > 1)


@dataclass
class Checkpoints:
    """Where this run's checkpoints go, and the one it resumes from."""
    local: Path  # the trainer's checkpoints (fast local disk)
    durable: Path  # their copies that survive the runtime (Drive on Colab)
    resume_from: Path | None


@dataclass
class _Fit:
    """What the fit phase leaves for the finish."""
    output: Any  # the Trainer's TrainOutput
    seconds: float
    start_eval: dict | None
    resume_from: Path | None
    quant: str
    prepared: PreparedModel  # the memory plan, kernels and trainable parameters
    shard: int | None


def _plan(cfg: TrainConfig, log) -> RunPlan:
    """The model (its name checked before any data work), the quantization, the run folder, and
    with NUM_SHARDS > 1 the shard to train now (continuing from the previous shard's adapter)."""
    import torch

    cfg.validate()  # a config built directly (TrainConfig(...)) is checked too
    if not cfg.model_name:
        cfg = cfg.replace(model_name=default_model_name())
    resolve_model_path(cfg.model_name)  # unknown names fail here, before any data work
    if forgetting_warning(cfg):
        log(forgetting_warning(cfg))
    quant = check_quantization(cfg.quantization)
    if cfg.finetune == "full" and quant in ("4bit", "8bit"):
        quant = "16bit" if torch.cuda.is_available() else "none"
    root = RunDir(cfg.output_dir)
    root.path.mkdir(parents=True, exist_ok=True)
    if cfg.num_shards == 1:
        return RunPlan(cfg, quant, root, root, None)
    shard = root.next_shard(cfg.num_shards, cfg.shard_index)
    if shard is None:
        raise ConfigError(f"All {cfg.num_shards} shards in {root.path} are trained (see {root.manifest_path.name}). "
                          "Use a new OUTPUT_DIR for another pass.")
    prev = [int(k) for k in root.shards_done()]
    if prev and not cfg.init_adapter:
        cfg = cfg.replace(init_adapter=str(root.shard(max(prev)).adapter))
    log(f"Shard {shard + 1} of {cfg.num_shards}"
        + (f", continuing from {cfg.init_adapter}" if cfg.init_adapter else ""))
    return RunPlan(cfg, quant, root, root.shard(shard), shard)


def _resume_from(cfg: TrainConfig, plan: RunPlan, log) -> Checkpoints:
    """The local and durable checkpoint folders, and the checkpoint to resume or None. The run
    folder's signature must match when resuming; RESUME='never' clears the old checkpoints and live log."""
    root, run = plan.root, plan.run
    local_ckpt, durable_ckpt = checkpoint_dirs(cfg.checkpoint_dir, run, in_shard=plan.shard is not None)
    resume_from = resume_point(cfg.resume, local_ckpt, durable_ckpt, log)
    root.check_signature(cfg, resuming=resume_from is not None or root.has_shards())
    if cfg.resume in ("never", "none"):
        for d in (local_ckpt, durable_ckpt):
            shutil.rmtree(d, ignore_errors=True)
        run.live_log.unlink(missing_ok=True)
    if resume_from is not None:
        resume_from = stage_locally(resume_from, local_ckpt, log)
        log(f"Resuming from {resume_from} (step {step_of(resume_from)})")
    return Checkpoints(local_ckpt, durable_ckpt, resume_from)


def _holds_every_step(trainer, resume_from: Path | None) -> bool:
    """Whether the checkpoint to resume from has every step of the run (MAX_STEPS, or the steps of
    NUM_TRAIN_EPOCHS). The Trainer itself checks for the end only after a step, so resuming there
    would train one step more than the run has."""
    if resume_from is None:
        return False
    done = json.loads((resume_from / "trainer_state.json").read_text())["global_step"]
    total = trainer.args.max_steps
    if total <= 0:
        total = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[-1]
    return done >= total


def _recorded_result(cfg: TrainConfig, plan: RunPlan, ckpt: Checkpoints, log) -> TrainResult | None:
    """A run already complete whose record is all there (metrics at its last checkpoint's step,
    weights, log, loss plot, the merged model when MERGE): that record, its durable checkpoint
    checked; None when something is missing (or for a shard, whose ledger :func:`_finish` writes)."""
    run, step = plan.run, step_of(ckpt.resume_from)
    weights, m = run.weights_dir(cfg.finetune), run.metrics
    has_weights = any(weights.glob("*.safetensors")) and any((weights / f).exists() for f in ("adapter_config.json",
                                                                                          "config.json"))
    whole = has_weights and run.history_file.exists() and run.loss_plot.exists() \
        and (run.merged_dir.exists() or not cfg.merge)
    if plan.shard is not None or m.get("steps") != step or not whole:
        return None
    if int(os.environ.get("RANK", "0")) == 0:  # under DDP one process copies
        keep_durable_copy(ckpt.local, ckpt.durable, cfg.save_total_limit, log)
    log(f"Run already complete: {ckpt.resume_from.name} is its last step ({step}), nothing to train; its record "
        f"is in {run.path} (train loss {_num(m.get('train_loss'))}). RESUME='never' trains it again from the start.")
    return TrainResult(run.path, weights, m, run.history(), run.loss_plot,
                       run.merged_dir if cfg.merge else None, m.get("resumed_from"), plan.shard)


def _finish_without_training(cfg: TrainConfig, trainer, tok, data: TrainData, plan: RunPlan, ckpt: Checkpoints,
                             prepared: PreparedModel, log) -> TrainResult:
    """A run complete in its checkpoint (killed after its last one): its record as it is, or the
    weights and state restored from the checkpoint and :func:`_finish` writing what is missing
    (adapter, metrics, log, plots); the train loss and steps stay those of the training done."""
    from transformers.trainer_callback import TrainerState
    from transformers.trainer_utils import TrainOutput

    recorded = _recorded_result(cfg, plan, ckpt, log)
    if recorded is not None:
        return recorded
    log(f"Run already complete: {ckpt.resume_from.name} holds every step of it ({step_of(ckpt.resume_from)}); "
        "nothing to train. Writing its adapter, metrics and plots from that checkpoint.")
    trainer._load_from_checkpoint(str(ckpt.resume_from))  # the weights, as Trainer.train loads them to resume
    trainer.state = TrainerState.load_from_json(str(ckpt.resume_from / "trainer_state.json"))
    if trainer.is_world_process_zero():
        keep_durable_copy(ckpt.local, ckpt.durable, cfg.save_total_limit, log)
    fit = _Fit(TrainOutput(trainer.state.global_step, 0.0, {}), 0.0, plan.run.get("start_eval"), ckpt.resume_from,
               plan.quant, prepared, plan.shard)
    return _finish(cfg, trainer, tok, data, plan, fit, log)


def _load_and_encode(cfg: TrainConfig, quant: str, rows: RunRows, log):
    """The model and tokenizer (seeded), and the examples encoded with the run's template
    (:func:`helpers.train.data.encode_data`)."""
    from transformers import set_seed

    set_seed(cfg.seed)
    model, tok = load_model(cfg.model_name, quantization=quant, for_training=True)
    return model, tok, encode_data(tok, cfg, rows, log)


def _evaluate_start(trainer, run: RunDir, has_eval: bool, resume_from: Path | None, log) -> dict | None:
    """The untrained model's validation loss, the "before" of every before/after figure: measured
    on a fresh run and kept in the manifest, read back from it when resuming."""
    if has_eval and resume_from is None:
        with quiet_evaluate(trainer):
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
        with quiet_evaluate(trainer):  # the training table above already shows the evaluations
            return trainer.evaluate()
    return {}


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


def _metrics(cfg: TrainConfig, trainer, data: TrainData, run: RunDir, fit: _Fit, history: list[dict],
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
        "peak_memory_gib": peak_memory_gib(), "trainable_parameters": fit.prepared.trainable,
        "kernels": fit.prepared.kernels, "resumed_from": str(fit.resume_from) if fit.resume_from else None,
        "data": {"train": data.train_rep, "validation": data.eval_rep, "replay": data.replay_rep}, "shard": fit.shard,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "memory_plan": dataclasses.asdict(fit.prepared.plan) if fit.prepared.plan else None,
        "config": cfg.to_dict(),
    }


def _finish(cfg: TrainConfig, trainer, tok, data: TrainData, plan: RunPlan, fit: _Fit, log) -> TrainResult:
    """Save the weights, evaluate them, and (rank 0) record the run: manifest, log, loss plot,
    the merged model when MERGE, the shard in the ledger."""
    run = plan.run
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
        plan.root.record_shard(fit.shard, {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": len(data.train_rows),
                                      "steps": trainer.state.global_step, "adapter": str(adapter_dir)})
    took = f"in {fit.seconds:.0f} s" if fit.output.training_loss or fit.seconds else "(trained before, none now)"
    log(f"Done: {_plural(metrics['steps'], 'step')} {took}; adapter in {adapter_dir}")
    log(f"  {_train_loss_words(metrics['train_loss'], history)}"
        + (f"; validation loss {_num(metrics['first_eval_loss'], 4)} -> {_num(metrics['eval_loss'], 4)}"
           if data.has_eval else ""))
    del trainer
    return TrainResult(run.path, adapter_dir, metrics, history, plot, merged, resumed, fit.shard)


def _train_loss_words(mean: float | None, history: list[dict]) -> str:
    """The Done line's training loss, said so that it agrees with the table above it: the mean over
    every step of the run (the table's rows are means over their own stretch of steps), and the
    last row's figure beside it when that differs."""
    last = next((h["loss"] for h in reversed(history) if "loss" in h), None)
    if mean is None or last is None or f"{last:.4f}" == f"{mean:.4f}":
        return f"train loss {_num(mean, 4)}"
    return f"train loss {_num(mean, 4)} (the mean over all steps; {_num(last, 4)} in the table's last row)"


def _plural(n, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _num(x, digits: int = 3) -> str:
    """A loss for a log line: 3 decimals ("3.175"), or "n/a"."""
    return "n/a" if x is None else f"{x:.{digits}f}"


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
