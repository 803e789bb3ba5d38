"""The memory plan: micro-batch, gradient accumulation and checkpointing that fit the GPU.

``plan_memory(model, cfg, quantized)`` is what ``TrainConfig.auto_fit`` runs on a GPU: it
measures the loaded weights, predicts the adapters' and activations' bytes from the model's
shape, and keeps the effective batch (micro-batch x accumulation) of the config. The 15 GiB cap
of the T4 emulation (``LLAMA_KIT_EMULATE_T4=1``) and ``LLAMA_KIT_GPU_MEMORY_GIB`` set its budget.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from helpers.core.config import ConfigError


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


def lora_targets(cfg) -> str | list[str]:
    """LoRA's target modules from ``cfg.target_modules``: "all-linear" or the listed names."""
    if cfg.target_modules.strip() == "all-linear":
        return "all-linear"
    return [t.strip() for t in cfg.target_modules.split(",") if t.strip()]


def lora_parameter_count(config, cfg) -> int:
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


def plan_memory(model, cfg, quantized: bool, budget_gib: float | None = None, row_tokens: int | None = None,
                document_mask: bool = False) -> MemoryPlan:
    """Pick micro-batch, gradient accumulation and checkpointing so the run fits with margin.

    Sized by tokens: a micro-batch is ``per_device_batch_size`` rows of ``row_tokens`` tokens (the
    longest row the data can make: a packed row's budget, MAX_SEQ_LEN, or with PACKING=False the
    longest example; default MAX_SEQ_LEN). ``document_mask``: the packed rows run on the per-document
    mask path (helpers.train.packing "mask": a T4, the CPU), which adds the (rows, tokens, tokens) mask
    and its additive copy, 4 bytes per entry; the varlen kernels need no mask.

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
    seq = min(cfg.max_seq_len, row_tokens) if row_tokens else cfg.max_seq_len

    def act(b, per_tok):
        return (b * seq * per_tok + (4 * b * seq * seq if document_mask else 0)) / 2**30

    if free <= 0:
        raise ConfigError(f"The model alone ({weights:.1f} GiB) does not fit in {budget:.1f} GiB of GPU memory with "
                          "margin: use 4-bit quantization, a smaller model, or a larger GPU.")
    if act(want_b, per_tok_nockpt) <= free:
        return MemoryPlan(want_b, accum, False, budget, weights, act(want_b, per_tok_nockpt),
                          f"batch {want_b} x {seq} tokens fits without gradient checkpointing "
                          f"(~{act(want_b, per_tok_nockpt):.1f} GiB activations of {free:.1f} free): fastest",
                          trainable)
    b = want_b
    while b > 1 and act(b, per_tok_ckpt) > free:
        b //= 2
    if act(b, per_tok_ckpt) > free:
        raise ConfigError(f"Even one sequence of {seq} tokens needs ~{act(1, per_tok_ckpt):.1f} GiB of activations "
                          f"with checkpointing, and {free:.1f} GiB are free: lower MAX_SEQ_LEN.")
    new_accum = max(1, -(-effective // b))
    why = (f"batch {want_b} x {seq} tokens needs ~{act(want_b, per_tok_nockpt):.1f} GiB without checkpointing, "
           f"{free:.1f} GiB free: gradient checkpointing on")
    if b != want_b:
        why += f", micro-batch {want_b} -> {b} with accumulation {accum} -> {new_accum} (effective batch kept)"
    if cfg.offload_activations:
        why += ", checkpointed layer inputs offloaded to CPU memory"
    return MemoryPlan(b, new_accum, True, budget, weights, act(b, per_tok_ckpt), why, trainable)




def peak_memory_gib() -> float | None:
    import torch
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return None
