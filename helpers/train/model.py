"""The model made ready to train: gradient checkpointing, the memory plan, fast kernels (Liger, scoped
to CUDA tensors; fused LoRA layers), the LoRA adapter, the packing kernel, and fp32 master weights
under fp16."""
from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass

from helpers.common.hardware import current_choice
from helpers.common.models import attach_adapter, count_parameters, under_fsdp
from helpers.core.config import ConfigError
from helpers.train.config import TrainConfig, packs_documents
from helpers.train.data import TrainData, row_tokens
from helpers.train.memory import MemoryPlan, lora_targets, plan_memory
from helpers.train.packing import packing_kernel, prepare_model_for_packing


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
    # Liger tries every vendor's backend (Ascend, ...) and logs a warning for each that does not import on
    # this machine: noise for the user, whose CUDA kernels load fine
    logging.getLogger("liger_kernel.backends.registry").setLevel(logging.ERROR)
    from liger_kernel.transformers import _apply_liger_kernel_to_instance
    modeling = sys.modules.get(type(getattr(model, "base_model", model)).__module__)
    before = dict(vars(modeling)) if modeling else {}
    _apply_liger_kernel_to_instance(model=model, rope=True, swiglu=True, rms_norm=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    scope_liger_to_cuda(modeling, before)
    log("Fast kernels: Liger RMSNorm, SwiGLU and RoPE" + (" (fp16)" if choice.dtype == "float16" else ""))
    return "liger"


def scope_liger_to_cuda(modeling, before: dict) -> None:
    """Liger patches the model's instance and also the whole modeling module (its RMSNorm and MLP
    classes, its ``apply_rotary_pos_emb``), so every model built afterwards in this process would
    run Triton kernels, a model on the CPU too (the GGUF check of notebook 06 loads one there, and
    fails with "Pointer argument cannot be accessed from Triton"). Put the classes back (the trained
    instance keeps its patched modules) and let the patched functions run Liger on CUDA tensors only."""
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
    # imported here, not at the top: fast_lora imports torch, and `import helpers.train` stays light
    from helpers.train.fast_lora import patch_lora_layers
    if kernels == "none" or under_fsdp():
        return applied
    n = patch_lora_layers(model)
    if not n:
        return applied
    log(f"Fast kernels: fused LoRA on {n} layers")
    return "fused-lora" if applied == "none" else f"{applied}+fused-lora"


def add_lora(model, cfg: TrainConfig):
    """The model with the run's LoRA adapter: INIT_ADAPTER's weights (trainable) when set, else a
    fresh one of LORA_R on TARGET_MODULES (embed_tokens and lm_head trained in full with TRAIN_EMBEDDINGS)."""
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


@dataclass
class PreparedModel:
    """What :func:`prepare_model` leaves for the trainer."""
    model: object  # the model to train (a PeftModel with LoRA)
    cfg: TrainConfig  # the run's config with the memory plan's batch and checkpointing
    plan: MemoryPlan | None  # the memory plan (AUTO_FIT on a GPU), else None
    kernels: str  # the fast kernels applied ("none", "liger", "fused-lora", "liger+fused-lora")
    trainable: int  # trainable parameters
    packing: str | None  # the packing kernel, None when rows hold one document each


def prepare_model(model, cfg: TrainConfig, quant: str, data: TrainData, log) -> PreparedModel:
    """The memory plan (AUTO_FIT on a GPU: micro-batch, accumulation, checkpointing), gradient
    checkpointing, fast kernels, the LoRA adapter and the packing kernel."""
    import torch

    quantized = quant in ("4bit", "8bit")
    plan = None
    if cfg.auto_fit and torch.cuda.is_available():
        packed = packs_documents(cfg)
        plan = plan_memory(model, cfg, quantized, row_tokens=row_tokens(cfg, data),
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
    trainable = count_parameters(model, trainable_only=True)
    log(describe_trainable(model))
    return PreparedModel(model, cfg, plan, kernels, trainable, packing)


def describe_trainable(model) -> str:
    """What trains, in figures that add up with the load line's "N parameters": LoRA's weights and the
    trainable copies of embed_tokens/lm_head (TRAIN_EMBEDDINGS: peft trains a copy and keeps the
    original frozen) are added beside the base model's frozen weights; a full fine-tune trains them all."""
    lora = copies = 0
    for name, p in model.named_parameters():
        if p.requires_grad and "lora_" in name:
            lora += p.numel()
        elif p.requires_grad and "modules_to_save" in name:
            copies += p.numel()
    trainable, total = count_parameters(model, trainable_only=True), count_parameters(model)
    if not lora and not copies:
        return f"Trainable parameters: {trainable / 1e6:.1f}M of {total / 1e6:.1f}M (every weight of the model)"
    parts = [f"LoRA {lora / 1e6:.2f}M"] + ([f"trainable copies of embed_tokens/lm_head {copies / 1e6:.2f}M"]
                                           if copies else [])
    return (f"Trainable parameters: {trainable / 1e6:.2f}M ({' + '.join(parts)}), added beside the "
            f"{(total - trainable) / 1e6:.1f}M frozen weights of the base model")


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
