"""Fused LoRA linear layers: the frozen base matmul and the adapter in one autograd function.

peft computes a LoRA layer as ``base(x).clone() + lora_B(lora_A(x)) * scaling``: on a 4-bit base
that is a dequantise + matmul, a copy of the output, two small matmuls, a multiply and an add over
the whole (tokens x out_features) output, and the same again, mirrored, in the backward pass. Here
the adapter's product is accumulated into the base output by one ``addmm`` (the scaling is its
``alpha``), nothing is copied, and the backward pass computes the input gradient with one matmul
against the dequantised weight plus one ``addmm`` for the adapter. Saved for backward: the input
and the (tokens x r) product ``x @ A^T``; the dequantised weight is rebuilt in backward rather than
kept (as bitsandbytes does), so memory is the same as peft's.

The math is the same as peft's (tests/test_fast_lora.py compares outputs and all gradients on the
embedded model); only the order of floating-point sums differs. ``patch_lora_layers`` swaps the
forward of each peft LoRA layer on the instance; a layer falls back to peft's own forward for
anything the fused path does not cover (several or mixed adapters, dropout > 0, DoRA and other
variants, LoRA bias, merged or disabled adapters), so it is always safe to call.
"""
from __future__ import annotations

import types

import torch

__all__ = ["lora_linear", "lora_mlp", "patch_lora_layers", "unpatch_lora_layers"]


def _dense_weight(base: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The base layer's weight as a dense (out, in) matrix in ``dtype`` (dequantised if 4-bit)."""
    w = base.weight
    qs = getattr(w, "quant_state", None)
    if qs is not None:
        import bitsandbytes.functional as bnbF
        return bnbF.dequantize_4bit(w.data, qs).to(dtype)
    return w.to(dtype)


class _LoRALinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, base, lora_a, lora_b, scale, dtype):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        a = lora_a.to(dtype)
        b = lora_b.to(dtype)
        w = _dense_weight(base, dtype)
        xa = x2 @ a.t()                                   # (tokens, r)
        out = torch.addmm(x2 @ w.t() if base.bias is None else torch.addmm(base.bias.to(dtype), x2, w.t()),
                          xa, b.t(), alpha=scale)
        ctx.base, ctx.scale, ctx.dtype, ctx.x_dtype = base, scale, dtype, x.dtype
        ctx.save_for_backward(x2, xa, lora_a, lora_b)
        return out.view(*shape[:-1], out.shape[-1]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x2, xa, lora_a, lora_b = ctx.saved_tensors
        dtype, scale = ctx.dtype, ctx.scale
        g = grad.reshape(-1, grad.shape[-1]).to(dtype)
        a, b = lora_a.to(dtype), lora_b.to(dtype)
        gb = (g @ b).mul_(scale)                          # (tokens, r): dL/d(x A^T)
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            w = _dense_weight(ctx.base, dtype)
            grad_x = torch.addmm(g @ w, gb, a).view(*grad.shape[:-1], x2.shape[-1]).to(ctx.x_dtype)
        if ctx.needs_input_grad[2]:
            grad_a = (gb.t() @ x2).to(lora_a.dtype)
        if ctx.needs_input_grad[3]:
            grad_b = (g.t() @ xa).mul_(scale).to(lora_b.dtype)
        return grad_x, None, grad_a, grad_b, None, None


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


_LIGER = []


def _liger_swiglu():
    if not _LIGER:
        try:
            from liger_kernel.ops.swiglu import swiglu_backward, swiglu_forward
            _LIGER.append((swiglu_forward, swiglu_backward))
        except Exception:  # not installed, or no Triton for this device
            _LIGER.append(None)
    return _LIGER[0]


def _base_lora_fwd(x2, base, a, b, scale, dtype):
    """(x2 W^T + scale (x2 A^T) B^T, x2 A^T) with W dequantised only for this product."""
    w = _dense_weight(base, dtype)
    xa = x2 @ a.t()
    out = x2 @ w.t() if base.bias is None else torch.addmm(base.bias.to(dtype), x2, w.t())
    del w
    return out.addmm_(xa, b.t(), alpha=scale), xa


class _LoRAMLP(torch.autograd.Function):
    """down(silu(gate(x)) * up(x)) for three LoRA layers, forward and backward in one function:
    saves x, the two (tokens x intermediate) projections and three (tokens x r) adapter products;
    the (tokens x intermediate) product h is recomputed in backward instead of being kept."""

    @staticmethod
    def forward(ctx, x, gate, ga, gb, gs, up, ua, ub, us, down, da, db, ds, dtype):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        e, xga = _base_lora_fwd(x2, gate, ga.to(dtype), gb.to(dtype), gs, dtype)
        g, xua = _base_lora_fwd(x2, up, ua.to(dtype), ub.to(dtype), us, dtype)
        h = _silu_mul(e, g)
        out, hda = _base_lora_fwd(h, down, da.to(dtype), db.to(dtype), ds, dtype)
        ctx.mods, ctx.scales, ctx.dtype, ctx.x_dtype = (gate, up, down), (gs, us, ds), dtype, x.dtype
        ctx.save_for_backward(x2, e, g, xga, xua, hda, ga, gb, ua, ub, da, db)
        return out.view(*shape[:-1], out.shape[-1]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x2, e, g, xga, xua, hda, ga, gb, ua, ub, da, db = ctx.saved_tensors
        gate, up, down = ctx.mods
        gs, us, ds = ctx.scales
        dtype = ctx.dtype
        dy = grad.reshape(-1, grad.shape[-1]).to(dtype)
        # down projection
        t = (dy @ db.to(dtype)).mul_(ds)
        h = _silu_mul(e, g)
        d_da = (t.t() @ h).to(da.dtype)
        del h
        d_db = (dy.t() @ hda).mul_(ds).to(db.dtype)
        w = _dense_weight(down, dtype)
        dh = (dy @ w).addmm_(t, da.to(dtype))
        del w
        de, dg = _silu_mul_backward(e, g, dh)
        del dh
        # gate and up projections
        tg = (de @ gb.to(dtype)).mul_(gs)
        tu = (dg @ ub.to(dtype)).mul_(us)
        d_ga = (tg.t() @ x2).to(ga.dtype)
        d_gb = (de.t() @ xga).mul_(gs).to(gb.dtype)
        d_ua = (tu.t() @ x2).to(ua.dtype)
        d_ub = (dg.t() @ xua).mul_(us).to(ub.dtype)
        dx = None
        if ctx.needs_input_grad[0]:
            w = _dense_weight(gate, dtype)
            dx = (de @ w).addmm_(tg, ga.to(dtype))
            del w
            w = _dense_weight(up, dtype)
            dx.addmm_(dg, w).addmm_(tu, ua.to(dtype))
            del w
            dx = dx.view(*grad.shape[:-1], x2.shape[-1]).to(ctx.x_dtype)
        return dx, None, d_ga, d_gb, None, None, d_ua, d_ub, None, None, d_da, d_db, None, None


def _autocast_dtype(x, base):
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return getattr(base, "compute_dtype", None) or x.dtype


def lora_linear(x: torch.Tensor, base: torch.nn.Module, lora_a: torch.Tensor, lora_b: torch.Tensor,
                scale: float, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``base(x) + scale * x @ lora_a^T @ lora_b^T`` for a frozen ``base`` (nn.Linear or
    bitsandbytes Linear4bit), computed in ``dtype`` (default: the autocast dtype if autocast is on,
    else the 4-bit layer's compute dtype, else x's dtype)."""
    dtype = dtype or _autocast_dtype(x, base)
    return _LoRALinear.apply(x, base, lora_a, lora_b, float(scale), dtype)


def lora_mlp(x: torch.Tensor, gate, up, down) -> torch.Tensor | None:
    """A SwiGLU MLP whose three projections are peft LoRA layers, in one fused function; None
    when one of the layers cannot take the fused path (the caller then runs the module as is)."""
    names = [_fusable(m, (), {}) for m in (gate, up, down)]
    if None in names:
        return None
    (g, u, d), (ng, nu, nd) = (gate, up, down), names
    gb_, ub_, db_ = g.get_base_layer(), u.get_base_layer(), d.get_base_layer()
    return _LoRAMLP.apply(x, gb_, g.lora_A[ng].weight, g.lora_B[ng].weight, float(g.scaling[ng]),
                          ub_, u.lora_A[nu].weight, u.lora_B[nu].weight, float(u.scaling[nu]),
                          db_, d.lora_A[nd].weight, d.lora_B[nd].weight, float(d.scaling[nd]),
                          _autocast_dtype(x, gb_))


def _fusable(layer, args, kwargs) -> str | None:
    """The active adapter's name if this call can take the fused path, else None."""
    if args or kwargs or layer.disable_adapters or layer.merged:
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
    name = _fusable(self, args, kwargs)
    if name is None:
        return self._kit_forward(x, *args, **kwargs)
    return lora_linear(x, self.get_base_layer(), self.lora_A[name].weight, self.lora_B[name].weight,
                       self.scaling[name])


def _fused_mlp_forward(self, x, *args, **kwargs):
    out = None if args or kwargs else lora_mlp(x, self.gate_proj, self.up_proj, self.down_proj)
    return self._kit_forward(x, *args, **kwargs) if out is None else out


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
    n = 0
    for module in model.modules():
        if hasattr(module, "_kit_forward"):
            continue
        if _is_swiglu_mlp(module):
            _swap_forward(module, _fused_mlp_forward)
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
    n = 0
    for module in model.modules():
        if hasattr(module, "_kit_forward"):
            if module._kit_had_own:
                module.forward = module._kit_forward
            else:
                del module.forward
            n += isinstance(module, LoraLayer)
            del module._kit_forward, module._kit_had_own
    return n
