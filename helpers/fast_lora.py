"""Fused LoRA linear layers: the frozen base matmul and the adapter in one autograd function.

peft computes a LoRA layer as ``base(x).clone() + lora_B(lora_A(x)) * scaling``: on a 4-bit base
that is a dequantise + matmul, a copy of the output, two small matmuls, a multiply and an add over
the whole (tokens x out_features) output, and the same again, mirrored, in the backward pass. Here
the adapter's product is accumulated into the base output by one ``addmm`` (the scaling is its
``alpha``), nothing is copied, and the backward pass computes the input gradient with one matmul
against the dequantised weight plus one ``addmm`` for the adapter. Saved for backward: the input
and the (tokens x r) product ``x @ A^T``; the dequantised weight is rebuilt in backward rather than
kept (as bitsandbytes does), so memory is the same as peft's.

Two larger units go further: the three projections of a SwiGLU MLP with the activation between
them (``lora_mlp``), and projections that read the same input, an attention block's q, k and v
(``lora_shared``), each one autograd function. At the sizes QLoRA trains, a step is bound by the
CPU's Python rather than by the GPU (bench/RESULTS.md), so fewer, larger functions are what makes
it fast; for the same reason the adapters' casts to the compute dtype are made once per step, and
bitsandbytes' dequantisation kernels are called without its op dispatch.

The math is the same as peft's (tests/test_fast_lora.py compares outputs and all gradients on the
embedded model); only the order of floating-point sums differs. ``patch_lora_layers`` swaps the
forward of each peft LoRA layer, MLP and attention block on the instance; a layer falls back to
peft's own forward for anything the fused path does not cover (several or mixed adapters,
dropout > 0, DoRA and other variants, LoRA bias, merged or disabled adapters, 8-bit bases), so it
is always safe to call.
"""
from __future__ import annotations

import functools
import types

import torch

__all__ = ["lora_mlp", "lora_shared", "patch_lora_layers", "unpatch_lora_layers"]


def _dense_weight(base: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The base layer's weight as a dense (out, in) matrix in ``dtype`` (dequantised if 4-bit)."""
    w = base.weight
    qs = getattr(w, "quant_state", None)
    if qs is None:
        return w.to(dtype)
    impl = _bnb_cuda() if w.is_cuda and dtype in (torch.bfloat16, torch.float16, torch.float32) else None
    if impl is None:
        import bitsandbytes.functional as bnbF
        return bnbF.dequantize_4bit(w.data, qs).to(dtype)
    # bitsandbytes' own CUDA kernels, called as its dequantize_4bit calls them but without the
    # checks and op dispatch around them: that Python costs as much as the kernel at these sizes,
    # and it runs three times per weight per step
    deq_4bit, deq_blockwise = impl
    absmax = qs.absmax
    if qs.nested:
        s2 = qs.state2
        absmax = torch.empty(qs.absmax.shape, dtype=torch.float32, device=w.device)
        deq_blockwise(qs.absmax, s2.absmax, s2.code, s2.blocksize, torch.float32, absmax)
        absmax += qs.offset
    out = torch.empty(qs.shape, dtype=dtype, device=w.device)
    deq_4bit(w.data, absmax, qs.blocksize, qs.quant_type, dtype, out)
    return out


@functools.cache
def _bnb_cuda():
    try:
        from bitsandbytes.backends.cuda import ops
        return ops._dequantize_4bit_impl, ops._dequantize_blockwise_impl
    except Exception:  # another bitsandbytes layout, or no CUDA build: the public function then
        return None


# Adapter weights are fp32 (peft's default, for the optimizer's sake) and the matmuls run in bf16:
# the cast of each adapter matrix is made once per training step rather than once per use (the
# forward pass, the recomputation under checkpointing and the backward pass use it). A step is
# one top-level forward of the patched model (a forward pre-hook counts them); the version
# counter and data pointer of the fp32 weight guard against changes in between.
_STEP = [0]


def _next_step(*_):
    _STEP[0] += 1


def _adapter(layer, name: str, dtype: torch.dtype):
    """(A, B, A in dtype, B in dtype) of one adapter, casts cached for the current step."""
    a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
    key = (_STEP[0], dtype, a._version, b._version, a.data_ptr(), b.data_ptr())
    cache = layer.__dict__.get("_kit_cast")
    if cache is None or cache[0] != key:
        cache = (key, a.detach().to(dtype), b.detach().to(dtype))
        layer.__dict__["_kit_cast"] = cache
    return a, b, cache[1], cache[2]


class _LoRALinear(torch.autograd.Function):
    """One LoRA layer; the projection comes as (base layer, A, B, A in dtype, B in dtype, scale)."""

    @staticmethod
    def forward(ctx, x, dtype, base, lora_a, lora_b, a, b, scale):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        out, xa = _base_lora_fwd(x2, base, a, b, scale, dtype)
        ctx.base, ctx.scale, ctx.dtype, ctx.x_dtype = base, scale, dtype, x.dtype
        ctx.save_for_backward(x2, xa, a, b)
        ctx.param_dtypes = (lora_a.dtype, lora_b.dtype)
        return out.view(*shape[:-1], out.shape[-1]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x2, xa, a, b = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).to(ctx.dtype)
        dx, d_a, d_b = _base_lora_bwd(g, x2, xa, ctx.base, a, b, ctx.scale, ctx.dtype, ctx.param_dtypes,
                                      need_dx=ctx.needs_input_grad[0])
        if dx is not None:
            dx = dx.view(*grad.shape[:-1], x2.shape[-1]).to(ctx.x_dtype)
        return dx, None, None, d_a, d_b, None, None, None


def _silu_mul(e, g):
    """h = silu(e) * g (Liger's Triton kernel on a GPU when installed)."""
    if e.is_cuda and _liger_swiglu() is not None:
        return _liger_swiglu()[0](e, g)[2]
    return torch.nn.functional.silu(e).mul_(g)


def _silu_mul_backward(e, g, dh):
    """(de, dg) for h = silu(e) * g; may overwrite e and g (they are not needed afterwards)."""
    if e.is_cuda and _liger_swiglu() is not None:
        return _liger_swiglu()[1](e, g, dh)
    se = torch.sigmoid(e)
    silu = e * se
    dg = dh * silu
    de = dh * g * se * (1 + e * (1 - se))
    return de, dg


@functools.cache
def _liger_swiglu():
    try:
        from liger_kernel.ops.swiglu import swiglu_backward, swiglu_forward
        return swiglu_forward, swiglu_backward
    except Exception:  # not installed, or no Triton for this device
        return None


def _base_lora_fwd(x2, base, a, b, scale, dtype):
    """(x2 W^T + scale (x2 A^T) B^T, x2 A^T) with W dequantised only for this product."""
    w = _dense_weight(base, dtype)
    xa = x2 @ a.t()
    out = x2 @ w.t() if base.bias is None else torch.addmm(base.bias.to(dtype), x2, w.t())
    del w
    return out.addmm_(xa, b.t(), alpha=scale), xa


def _base_lora_bwd(g, x_in, xa, base, a, b, scale, dtype, param_dtypes, dx=None, need_dx=True):
    """Backward of _base_lora_fwd for the output gradient g: (input gradient, added into dx when
    one is given, or None without need_dx; gradient of A; gradient of B). x_in is released
    before the weight is dequantised, so a caller may pass a temporary."""
    t = (g @ b).mul_(scale)                               # (tokens, r): dL/d(x A^T)
    d_a = (t.t() @ x_in).to(param_dtypes[0])
    del x_in
    d_b = (g.t() @ xa).mul_(scale).to(param_dtypes[1])
    if need_dx:
        w = _dense_weight(base, dtype)
        dx = g @ w if dx is None else dx.addmm_(g, w)
        del w
        dx.addmm_(t, a)
    return dx, d_a, d_b


class _LoRAMLP(torch.autograd.Function):
    """down(silu(gate(x)) * up(x)) for three LoRA layers, forward and backward in one function:
    saves x, the two (tokens x intermediate) projections and three (tokens x r) adapter products;
    the (tokens x intermediate) product h is recomputed in backward instead of being kept.
    Each projection comes as (base layer, A, B, A in dtype, B in dtype, scale)."""

    @staticmethod
    def forward(ctx, x, dtype, gate, ga_p, gb_p, ga, gb, gs, up, ua_p, ub_p, ua, ub, us,
                down, da_p, db_p, da, db, ds):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        e, xga = _base_lora_fwd(x2, gate, ga, gb, gs, dtype)
        g, xua = _base_lora_fwd(x2, up, ua, ub, us, dtype)
        h = _silu_mul(e, g)
        out, hda = _base_lora_fwd(h, down, da, db, ds, dtype)
        ctx.mods, ctx.scales, ctx.dtype, ctx.x_dtype = (gate, up, down), (gs, us, ds), dtype, x.dtype
        ctx.param_dtypes = tuple(p.dtype for p in (ga_p, gb_p, ua_p, ub_p, da_p, db_p))
        ctx.save_for_backward(x2, e, g, xga, xua, hda, ga, gb, ua, ub, da, db)
        return out.view(*shape[:-1], out.shape[-1]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x2, e, g, xga, xua, hda, ga, gb, ua, ub, da, db = ctx.saved_tensors
        gate, up, down = ctx.mods
        gs, us, ds = ctx.scales
        pga, pgb, pua, pub, pda, pdb = ctx.param_dtypes
        dtype = ctx.dtype
        dy = grad.reshape(-1, grad.shape[-1]).to(dtype)
        # down projection; its input h = silu(e) * g is recomputed and released inside
        dh, d_da, d_db = _base_lora_bwd(dy, _silu_mul(e, g), hda, down, da, db, ds, dtype, (pda, pdb))
        de, dg = _silu_mul_backward(e, g, dh)
        del dh
        # gate and up projections, one input gradient
        need_dx = ctx.needs_input_grad[0]
        dx, d_ga, d_gb = _base_lora_bwd(de, x2, xga, gate, ga, gb, gs, dtype, (pga, pgb), need_dx=need_dx)
        dx, d_ua, d_ub = _base_lora_bwd(dg, x2, xua, up, ua, ub, us, dtype, (pua, pub), dx, need_dx=need_dx)
        if dx is not None:
            dx = dx.view(*grad.shape[:-1], x2.shape[-1]).to(ctx.x_dtype)
        return (dx, None, None, d_ga, d_gb, None, None, None, None, d_ua, d_ub, None, None, None,
                None, d_da, d_db, None, None, None)


class _LoRAShared(torch.autograd.Function):
    """Several LoRA layers reading the same input (an attention block's q, k and v projections)
    in one function: one backward node, one input gradient summed in place. Each projection comes
    as (base layer, A, B, A in dtype, B in dtype, scale)."""

    @staticmethod
    def forward(ctx, x, dtype, *specs):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        outs, saved, mods, scales, pdtypes = [], [x2], [], [], []
        for i in range(0, len(specs), 6):
            base, a_p, b_p, a, b, scale = specs[i:i + 6]
            out, xa = _base_lora_fwd(x2, base, a, b, scale, dtype)
            outs.append(out.view(*shape[:-1], out.shape[-1]).to(x.dtype))
            saved += [xa, a, b]
            mods.append(base)
            scales.append(scale)
            pdtypes.append((a_p.dtype, b_p.dtype))
        ctx.mods, ctx.scales, ctx.pdtypes, ctx.dtype, ctx.x_dtype = mods, scales, pdtypes, dtype, x.dtype
        ctx.save_for_backward(*saved)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        x2, *saved = ctx.saved_tensors
        dtype = ctx.dtype
        dx, out = None, [None, None]
        for j, grad in enumerate(grads):
            if grad is None:
                out += [None] * 6
                continue
            xa, a, b = saved[3 * j:3 * j + 3]
            g = grad.reshape(-1, grad.shape[-1]).to(dtype)
            dx, d_a, d_b = _base_lora_bwd(g, x2, xa, ctx.mods[j], a, b, ctx.scales[j], dtype, ctx.pdtypes[j], dx,
                                          need_dx=ctx.needs_input_grad[0])
            out += [None, d_a, d_b, None, None, None]
        if dx is not None:
            dx = dx.view(*grads[0].shape[:-1] if grads[0] is not None else x2.shape[:-1], x2.shape[-1])
            out[0] = dx.to(ctx.x_dtype)
        return tuple(out)


def _autocast_dtype(x, base):
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return getattr(base, "compute_dtype", None) or x.dtype


def _fused_args(x: torch.Tensor, layers) -> list | None:
    """[x, dtype, then per layer: base layer, A, B, A in dtype, B in dtype, scale], the arguments
    of the fused functions; None when one of the layers cannot take the fused path."""
    names = [_fusable(m, (), {}) for m in layers]
    if None in names:
        return None
    dtype = _autocast_dtype(x, layers[0].get_base_layer())
    args = [x, dtype]
    for m, n in zip(layers, names):
        args += [m.get_base_layer(), *_adapter(m, n, dtype), float(m.scaling[n])]
    return args


def lora_mlp(x: torch.Tensor, gate, up, down) -> torch.Tensor | None:
    """A SwiGLU MLP whose three projections are peft LoRA layers, in one fused function; None
    when one of the layers cannot take the fused path (the caller then runs the module as is)."""
    args = _fused_args(x, (gate, up, down))
    return None if args is None else _LoRAMLP.apply(*args)


def lora_shared(x: torch.Tensor, *layers) -> tuple | None:
    """The outputs of several peft LoRA layers applied to the same ``x``, in one fused function;
    None when one of them cannot take the fused path."""
    args = _fused_args(x, layers)
    return None if args is None else _LoRAShared.apply(*args)


def _fusable(layer, args, kwargs) -> str | None:
    """The active adapter's name if this call can take the fused path, else None (also for a
    layer that is no longer a LoRA layer: peft's merge_and_unload swaps in the plain base layer)."""
    if args or kwargs or not hasattr(layer, "lora_A") or layer.disable_adapters or layer.merged:
        return None
    active = layer.active_adapters
    if len(active) != 1:
        return None
    name = active[0]
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}):
        return None
    if layer.use_dora.get(name, False) or getattr(layer, "lora_bias", {}).get(name, False):
        return None
    if not isinstance(layer.lora_dropout[name], torch.nn.Identity):
        return None
    base = layer.get_base_layer()
    if type(base) is not torch.nn.Linear and type(base).__name__ != "Linear4bit":
        return None
    return name


def _fused_forward(self, x, *args, **kwargs):
    ready = self.__dict__.pop("_kit_out", None)  # computed with its siblings by _fused_attention_forward
    if ready is not None and ready[0] is x and not args and not kwargs:
        return ready[1]
    fused = None if args or kwargs else _fused_args(x, (self,))
    if fused is None:
        return self._kit_forward(x, *args, **kwargs)
    return _LoRALinear.apply(*fused)


def _fused_mlp_forward(self, x, *args, **kwargs):
    out = None if args or kwargs else lora_mlp(x, self.gate_proj, self.up_proj, self.down_proj)
    return self._kit_forward(x, *args, **kwargs) if out is None else out


def _fused_attention_forward(self, hidden_states, *args, **kwargs):
    """Compute q, k and v together, then run the attention's own forward: its calls of q_proj,
    k_proj and v_proj on the same hidden states pick up the results (see _fused_forward)."""
    projs = (self.q_proj, self.k_proj, self.v_proj)
    outs = lora_shared(hidden_states, *projs)
    if outs is None:
        return self._kit_forward(hidden_states, *args, **kwargs)
    for m, o in zip(projs, outs):
        m.__dict__["_kit_out"] = (hidden_states, o)
    try:
        return self._kit_forward(hidden_states, *args, **kwargs)
    finally:
        for m in projs:
            m.__dict__.pop("_kit_out", None)


def _is_qkv_attention(module) -> bool:
    from peft.tuners.lora import LoraLayer
    return all(isinstance(getattr(module, n, None), LoraLayer) for n in ("q_proj", "k_proj", "v_proj"))


def _swap_forward(module, fn) -> None:
    module._kit_forward = module.forward  # what ran before: the class's forward, or Liger's on the instance
    module._kit_had_own = "forward" in module.__dict__
    module.forward = types.MethodType(fn, module)


def _is_swiglu_mlp(module) -> bool:
    from peft.tuners.lora import LoraLayer
    if not all(isinstance(getattr(module, n, None), LoraLayer) for n in ("gate_proj", "up_proj", "down_proj")):
        return False
    act = getattr(module, "act_fn", None)
    return isinstance(act, torch.nn.SiLU) or type(act).__name__ == "SiLUActivation" or (
        act is None and type(module).__name__ == "LigerSwiGLUMLP")


def patch_lora_layers(model) -> int:
    """Route every peft LoRA Linear / Linear4bit layer of ``model`` through the fused function,
    and every SwiGLU MLP whose three projections are LoRA layers through the fused MLP.
    Returns how many LoRA layers were patched. Not for FSDP (the sharded 4-bit weight has no
    usable quant state on each rank) nor for 8-bit bases: those keep peft's forward."""
    from peft.tuners.lora import LoraLayer
    if not hasattr(model, "_kit_step_hook"):
        model._kit_step_hook = model.register_forward_pre_hook(_next_step)
    n = 0
    for module in model.modules():
        if hasattr(module, "_kit_forward"):
            continue
        if _is_swiglu_mlp(module):
            _swap_forward(module, _fused_mlp_forward)
        elif _is_qkv_attention(module):
            _swap_forward(module, _fused_attention_forward)
        elif isinstance(module, LoraLayer):
            base = module.get_base_layer()
            if type(base) is not torch.nn.Linear and type(base).__name__ != "Linear4bit":
                continue
            _swap_forward(module, _fused_forward)
            n += 1
    return n


def unpatch_lora_layers(model) -> int:
    """Undo patch_lora_layers; returns how many LoRA layers got peft's forward back."""
    from peft.tuners.lora import LoraLayer
    if hasattr(model, "_kit_step_hook"):
        model._kit_step_hook.remove()
        del model._kit_step_hook
    n = 0
    for module in model.modules():
        module.__dict__.pop("_kit_cast", None)
        if hasattr(module, "_kit_forward"):
            if module._kit_had_own:
                module.forward = module._kit_forward
            else:
                del module.forward
            n += isinstance(module, LoraLayer)
            del module._kit_forward, module._kit_had_own
    return n
