"""Fused LoRA layers: the frozen base matmul and the adapter in one autograd function, and under
gradient checkpointing a whole Llama decoder layer in one.

peft computes a LoRA layer as ``base(x).clone() + lora_B(lora_A(x)) * scaling``: on a 4-bit base
that is a dequantise + matmul, a copy of the output, two small matmuls, a multiply and an add over
the whole (tokens x out_features) output, and the same again, mirrored, in the backward pass. Here
the adapter's rank-r product is written first and the base matmul accumulates onto it (cuBLAS adds
it in its epilogue), nothing is copied, and the backward pass computes the input gradient the same
way. Saved for backward: the input and the (tokens x r) product ``x @ A^T``; the dequantised weight
is rebuilt in backward rather than kept (as bitsandbytes does), so memory is the same as peft's.

Larger units go further: the three projections of a SwiGLU MLP with the activation between them
(``lora_mlp``), projections that read the same input, an attention block's q, k and v
(``lora_shared``), and, when the model trains with gradient checkpointing, the whole decoder layer
(``_LoRADecoderLayer``): its forward runs without autograd and keeps only the layer input; its
backward recomputes the layer (without the MLP's down matmul, whose output backward does not need)
and computes the adapter and input gradients by hand, with autograd only through RoPE and the
attention kernel. That replaces torch's checkpoint around the layer, which rebuilds and walks an
autograd graph of each layer in backward. At the sizes QLoRA trains a step is bound by the CPU's
Python rather than by the GPU (bench/RESULTS.md), so fewer, larger functions are what makes it
fast; for the same reason the adapters' casts to the compute dtype are made once per step, and
bitsandbytes' dequantisation kernels are called directly with arguments cached per weight
(``helpers.train.private_kernels``, which holds every private bitsandbytes and torch call used here).

How the pieces travel: each LoRA layer becomes a ``Proj`` (base layer, the adapter matrices cast to
the compute dtype, the scale, the parameters' dtypes). The autograd functions take the input, the
compute dtype, the ``Proj``s and then the adapter parameters themselves, flat (A, B of the first
projection, A, B of the next, ...): autograd sees only tensors passed directly, and it wants one
gradient back per argument. The hand-written backward passes return named bundles
(``AdapterGrads``, ``MLPGrads``, ``LayerGrads``) listing the projections in that same order;
``_param_grads`` flattens one into what autograd gets.

The math is the same as peft's (tests/test_fast_lora.py compares the loss and all gradients on the
embedded model, with and without checkpointing, with a padded batch); only the order of
floating-point sums differs. ``patch_lora_layers`` swaps the forward of each peft LoRA layer, MLP,
attention block and Llama decoder layer on the instance; anything the fused path does not cover
(several or mixed adapters, dropout > 0, DoRA and other variants, LoRA bias, merged or disabled
adapters, 8-bit bases, a KV cache, output_attentions) takes peft's and transformers' own forward,
so it is always safe to call. Packed batches (``helpers.train.packing``) keep the fused path: the
per-document mask arrives as the layer's ``attention_mask`` and the varlen kernels' document bounds
(``cu_seq_lens_q/k``, ``max_length_q/k``) are passed on to the attention call, in the forward and in
the recomputation of backward alike.
"""
from __future__ import annotations

import functools
import sys
import types
from typing import NamedTuple

import torch

from helpers.train.private_kernels import dense_weight, drop_cached_plan, fused_rms_norm

__all__ = ["AdapterGrads", "LayerGrads", "MLPGrads", "Proj", "lora_mlp", "lora_shared", "patch_lora_layers",
           "unpatch_lora_layers"]


class Proj(NamedTuple):
    """One LoRA projection as the fused math takes it: ``x W^T + scale (x A^T) B^T``."""
    base: torch.nn.Module       # the frozen base layer (torch.nn.Linear or bitsandbytes' Linear4bit)
    lora_a: torch.Tensor | None  # A (r, in) in the compute dtype, this step's cast (no autograd); None on ctx
    lora_b: torch.Tensor | None  # B (out, r), the same
    scale: float                # peft's scaling, lora_alpha / r
    a_dtype: torch.dtype        # the dtype of the A parameter (fp32 as peft makes it): its gradient's
    b_dtype: torch.dtype

    def without_casts(self) -> Proj:
        """For ctx: the casts travel in saved_tensors (so saved-tensor hooks see them)."""
        return Proj(self.base, None, None, self.scale, self.a_dtype, self.b_dtype)

    def with_casts(self, lora_a: torch.Tensor, lora_b: torch.Tensor) -> Proj:
        return Proj(self.base, lora_a, lora_b, self.scale, self.a_dtype, self.b_dtype)


class AdapterGrads(NamedTuple):
    """The gradients of one adapter's parameters, in their dtypes."""
    d_lora_a: torch.Tensor
    d_lora_b: torch.Tensor


class MLPGrads(NamedTuple):
    gate: AdapterGrads
    up: AdapterGrads
    down: AdapterGrads


class LayerGrads(NamedTuple):
    """A decoder layer's adapter gradients, in the order of _LayerCall.projs."""
    q: AdapterGrads
    k: AdapterGrads
    v: AdapterGrads
    o: AdapterGrads
    gate: AdapterGrads
    up: AdapterGrads
    down: AdapterGrads


def _param_grads(bundle) -> list:
    """A bundle of AdapterGrads flattened in the order the adapter parameters were passed to the
    autograd function: d A, d B of the first projection, then of the next, ..."""
    return [t for grads in bundle for t in grads]


class _MLPActs(NamedTuple):
    """What the MLP's backward needs from its forward (_mlp_fwd); ``gate`` and ``up`` may be
    overwritten by the backward."""
    gate: torch.Tensor     # e = x W_gate^T + ..., before the activation
    up: torch.Tensor       # g = x W_up^T + ...
    gate_xa: torch.Tensor  # x A_gate^T
    up_xa: torch.Tensor    # x A_up^T
    down_ha: torch.Tensor  # h A_down^T, h = silu(e) * g


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
    """One LoRA layer: apply(x, dtype, proj, A parameter, B parameter)."""

    @staticmethod
    def forward(ctx, x, dtype, proj, lora_a, lora_b):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        out, xa = _base_lora_fwd(x2, proj, dtype)
        ctx.proj, ctx.dtype, ctx.x_dtype = proj.without_casts(), dtype, x.dtype
        ctx.save_for_backward(x2, xa, proj.lora_a, proj.lora_b)
        return out.view(*shape[:-1], out.shape[-1]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x2, xa, a, b = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).to(ctx.dtype)
        dx, d = _base_lora_bwd(g, x2, xa, ctx.proj.with_casts(a, b), ctx.dtype, need_dx=ctx.needs_input_grad[0])
        if dx is not None:
            dx = dx.view(*grad.shape[:-1], x2.shape[-1]).to(ctx.x_dtype)
        return dx, None, None, d.d_lora_a, d.d_lora_b


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


def _base_lora_fwd(x2, p: Proj, dtype):
    """(x2 W^T + scale (x2 A^T) B^T, x2 A^T) with W dequantised only for this product. The
    adapter's rank-r product is written first and the base matmul accumulates onto it (cuBLAS
    adds it in its epilogue), so the (tokens x out) output is written once rather than written,
    then read and written again by a rank-r update."""
    base, scale = p.base, p.scale
    xa = x2 @ p.lora_a.t()
    xs = xa if scale == 1 else xa * scale
    out = xs @ p.lora_b.t() if base.bias is None else torch.addmm(base.bias.to(dtype), xs, p.lora_b.t())
    del xs
    w = dense_weight(base, dtype)
    return out.addmm_(x2, w.t()), xa


def _base_lora_bwd(g, x_in, xa, p: Proj, dtype, dx=None, need_dx=True):
    """Backward of _base_lora_fwd for the output gradient g: (input gradient, added into dx when
    one is given, or None without need_dx; the AdapterGrads). x_in is released before the weight
    is dequantised, so a caller may pass a temporary."""
    t = (g @ p.lora_b).mul_(p.scale)                      # (tokens, r): dL/d(x A^T)
    d_a = (t.t() @ x_in).to(p.a_dtype)
    del x_in
    d_b = (g.t() @ xa).mul_(p.scale).to(p.b_dtype)
    if need_dx:
        dx = t @ p.lora_a if dx is None else dx.addmm_(t, p.lora_a)  # rank r first, the full matmul adds onto it
        w = dense_weight(p.base, dtype)
        dx.addmm_(g, w)
        del w
    return dx, AdapterGrads(d_a, d_b)


def _mlp_fwd(x2, gate: Proj, up: Proj, down: Proj, dtype, keep_out=True):
    """SwiGLU MLP forward: (output, or None without keep_out; the _MLPActs its backward needs).
    Without keep_out only the down adapter's product is made, not the down matmul: a
    recomputation for backward needs no output."""
    e, xga = _base_lora_fwd(x2, gate, dtype)
    g, xua = _base_lora_fwd(x2, up, dtype)
    h = _silu_mul(e, g)
    if keep_out:
        out, hda = _base_lora_fwd(h, down, dtype)
    else:
        out, hda = None, h @ down.lora_a.t()
    return out, _MLPActs(e, g, xga, xua, hda)


def _mlp_bwd(dy, x2, acts: _MLPActs, gate: Proj, up: Proj, down: Proj, dtype, need_dx=True, dx=None):
    """Backward of _mlp_fwd for the output gradient dy: (input gradient, added into dx when one is
    given; the MLPGrads). h = silu(e) * g is recomputed and released inside; acts.gate and acts.up
    may be overwritten."""
    e, g = acts.gate, acts.up
    dh, d_down = _base_lora_bwd(dy, _silu_mul(e, g), acts.down_ha, down, dtype)
    de, dg = _silu_mul_backward(e, g, dh)
    del dh
    dx, d_gate = _base_lora_bwd(de, x2, acts.gate_xa, gate, dtype, dx, need_dx=need_dx)
    del de
    dx, d_up = _base_lora_bwd(dg, x2, acts.up_xa, up, dtype, dx, need_dx=need_dx)
    return dx, MLPGrads(d_gate, d_up, d_down)


class _LoRAMLP(torch.autograd.Function):
    """down(silu(gate(x)) * up(x)) for three LoRA layers, forward and backward in one function:
    saves x, the two (tokens x intermediate) projections and three (tokens x r) adapter products;
    the (tokens x intermediate) product h is recomputed in backward instead of being kept.
    apply(x, dtype, [gate, up, down Proj], then the six adapter parameters)."""

    @staticmethod
    def forward(ctx, x, dtype, projs, *adapter_params):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        out, acts = _mlp_fwd(x2, *projs, dtype)
        ctx.projs = [p.without_casts() for p in projs]
        ctx.dtype, ctx.x_dtype = dtype, x.dtype
        ctx.save_for_backward(x2, *acts, *(t for p in projs for t in (p.lora_a, p.lora_b)))
        return out.view(*shape[:-1], out.shape[-1]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x2, *saved = ctx.saved_tensors
        n = len(_MLPActs._fields)
        acts, casts = _MLPActs(*saved[:n]), saved[n:]
        projs = [p.with_casts(casts[2 * i], casts[2 * i + 1]) for i, p in enumerate(ctx.projs)]
        dy = grad.reshape(-1, grad.shape[-1]).to(ctx.dtype)
        dx, grads = _mlp_bwd(dy, x2, acts, *projs, ctx.dtype, need_dx=ctx.needs_input_grad[0])
        if dx is not None:
            dx = dx.view(*grad.shape[:-1], x2.shape[-1]).to(ctx.x_dtype)
        return (dx, None, None, *_param_grads(grads))


class _LoRAShared(torch.autograd.Function):
    """Several LoRA layers reading the same input (an attention block's q, k and v projections)
    in one function: one backward node, one input gradient summed in place.
    apply(x, dtype, [Proj per layer], then A, B of each layer)."""

    @staticmethod
    def forward(ctx, x, dtype, projs, *adapter_params):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        outs, saved = [], [x2]
        for p in projs:
            out, xa = _base_lora_fwd(x2, p, dtype)
            outs.append(out.view(*shape[:-1], out.shape[-1]).to(x.dtype))
            saved += [xa, p.lora_a, p.lora_b]
        ctx.projs = [p.without_casts() for p in projs]
        ctx.dtype, ctx.x_dtype = dtype, x.dtype
        ctx.save_for_backward(*saved)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        x2, *saved = ctx.saved_tensors
        dtype = ctx.dtype
        dx, param_grads = None, []
        for j, grad in enumerate(grads):
            if grad is None:
                param_grads += (None, None)
                continue
            xa, a, b = saved[3 * j:3 * j + 3]
            g = grad.reshape(-1, grad.shape[-1]).to(dtype)
            dx, d = _base_lora_bwd(g, x2, xa, ctx.projs[j].with_casts(a, b), dtype, dx,
                                   need_dx=ctx.needs_input_grad[0])
            param_grads += d
        if dx is not None:
            dx = dx.view(*grads[0].shape[:-1] if grads[0] is not None else x2.shape[:-1], x2.shape[-1])
            dx = dx.to(ctx.x_dtype)
        return (dx, None, None, *param_grads)


def _rms_norm(x2, w, eps):
    """(w * x / rms(x), 1 / rms(x)) as Llama computes it; torch's fused kernel on a GPU."""
    if x2.is_cuda and w.dtype == x2.dtype and fused_rms_norm() is not None:
        return fused_rms_norm().forward(x2, [x2.shape[-1]], w, eps)
    xf = x2.float()
    rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True).add_(eps))
    return w * (xf * rstd).to(x2.dtype), rstd


def _rms_norm_bwd(dy, x2, rstd, w):
    """Input gradient of _rms_norm (the weight is frozen)."""
    if x2.is_cuda and w.dtype == x2.dtype and fused_rms_norm() is not None:
        return fused_rms_norm().backward(dy.to(x2.dtype), x2, [x2.shape[-1]], rstd, w, [True, False])[0]
    xhat = x2.float() * rstd
    gw = dy.float() * w.float()
    return (rstd * (gw - xhat * (gw * xhat).mean(-1, keepdim=True))).to(x2.dtype)


class _LayerCall:
    """What one decoder-layer call needs besides its input and the adapter parameters: the layer,
    the compute dtype, its seven projections (Proj: q, k, v, o, gate, up, down), the rotary
    cos/sin, the attention mask and the attention function's keyword arguments."""
    __slots__ = ("layer", "dtype", "projs", "cos", "sin", "mask", "kwargs", "rope", "attend")


def _attention(c: _LayerCall, q, k, v, shape):
    """The attention block between the projections, as the layer's own forward runs it: heads,
    rotary embedding (Liger's when it patched the model), the configured attention function."""
    attn = c.layer.self_attn
    hidden_shape = (*shape, -1, attn.head_dim)
    q = q.view(hidden_shape).transpose(1, 2)
    k = k.view(hidden_shape).transpose(1, 2)
    v = v.view(hidden_shape).transpose(1, 2)
    q, k = c.rope(q, k, c.cos, c.sin)
    out, _ = c.attend(attn, q, k, v, c.mask, dropout=0.0, scaling=attn.scaling, **c.kwargs)
    return out.reshape(-1, out.shape[-2] * out.shape[-1])


def _same(t):
    return t


def layer_fwd(x2, c: _LayerCall, shape, for_backward=False):
    """A Llama decoder layer on the (tokens, hidden) input x2. Returns the output, or, with
    for_backward, a dict of everything the backward pass needs (the recomputation: attention kept
    as an autograd graph from q, k, v; the MLP's down matmul skipped), from which _layer_bwd pops
    each entry as soon as it is done with it."""
    layer, dtype, (q_p, k_p, v_p, o_p, g_p, u_p, d_p) = c.layer, c.dtype, c.projs
    n1, rstd1 = _rms_norm(x2, layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
    n1c = n1.to(dtype)
    q, xq = _base_lora_fwd(n1c, q_p, dtype)
    k, xk = _base_lora_fwd(n1c, k_p, dtype)
    v, xv = _base_lora_fwd(n1c, v_p, dtype)
    if for_backward:
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        # the recomputed attention keeps what its backward needs on the GPU: the saved-tensor
        # hooks of an activation offloader (TRL's context spans the whole training step) would
        # otherwise copy q, k, v and the output to the CPU and back, in the middle of backward
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_same, _same):
            a_graph = _attention(c, q, k, v, shape)
        a = a_graph.detach()
    else:
        a = _attention(c, q, k, v, shape)
    o, xo = _base_lora_fwd(a, o_p, dtype)
    h = x2 + o
    del o
    n2, rstd2 = _rms_norm(h, layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon)
    n2c = n2.to(dtype)
    del n2
    m, mlp_acts = _mlp_fwd(n2c, g_p, u_p, d_p, dtype, keep_out=not for_backward)
    if not for_backward:
        return h.add_(m)
    return dict(rstd1=rstd1, n1c=n1c, xqkv=(xq, xk, xv), qkv=(q, k, v), a_graph=a_graph, a=a, xo=xo, h=h,
                rstd2=rstd2, n2c=n2c, mlp=mlp_acts)


def _layer_bwd(dy2, x2, c: _LayerCall, shape, need_dx=True) -> tuple[torch.Tensor | None, LayerGrads]:
    """Gradients of a Llama decoder layer: (input gradient, the LayerGrads), from the layer input
    and the output gradient, recomputing the forward pass."""
    layer, dtype, (q_p, k_p, v_p, o_p, g_p, u_p, d_p) = c.layer, c.dtype, c.projs
    with torch.no_grad():
        s = layer_fwd(x2, c, shape, for_backward=True)
        dn2, mlp = _mlp_bwd(dy2.to(dtype), s["n2c"], s["mlp"], g_p, u_p, d_p, dtype)
        del s["mlp"], s["n2c"]
        post = layer.post_attention_layernorm
        dh = _rms_norm_bwd(dn2, s.pop("h"), s["rstd2"], post.weight).add_(dy2)
        del dn2
        d_a, d_o = _base_lora_bwd(dh.to(dtype), s.pop("a"), s["xo"], o_p, dtype)
    d_q, d_k, d_v = torch.autograd.grad(s.pop("a_graph"), s.pop("qkv"), d_a)
    del d_a
    with torch.no_grad():
        n1c, (xq, xk, xv) = s["n1c"], s["xqkv"]
        dn1, d_qp = _base_lora_bwd(d_q, n1c, xq, q_p, dtype)
        dn1, d_kp = _base_lora_bwd(d_k, n1c, xk, k_p, dtype, dn1)
        dn1, d_vp = _base_lora_bwd(d_v, n1c, xv, v_p, dtype, dn1)
        dx = None
        if need_dx:
            dx = _rms_norm_bwd(dn1, x2, s["rstd1"], layer.input_layernorm.weight).add_(dh)
    return dx, LayerGrads(d_qp, d_kp, d_vp, d_o, mlp.gate, mlp.up, mlp.down)


class _LoRADecoderLayer(torch.autograd.Function):
    """A whole Llama decoder layer with LoRA on its seven projections, checkpointed: the forward
    pass runs without autograd and keeps only the layer input; the backward pass recomputes the
    layer (without the MLP's down matmul, whose output backward does not need) and computes the
    gradients by hand, with autograd only through RoPE and the attention. What this replaces is
    torch's checkpoint around the layer: its recomputation rebuilds an autograd graph of some
    twenty nodes per layer and the backward walks it, all Python at these sizes.
    apply(x, _LayerCall, then the 14 adapter parameters in the order of its projs)."""

    @staticmethod
    def forward(ctx, x, c, *adapter_params):
        shape = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        ctx.c, ctx.shape = c, shape
        ctx.save_for_backward(x2)  # the one activation kept (activation offloading may move it to the CPU)
        return layer_fwd(x2, c, shape).view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        (x2,) = ctx.saved_tensors
        dx, grads = _layer_bwd(dy.reshape(x2.shape), x2, ctx.c, ctx.shape, need_dx=ctx.needs_input_grad[0])
        if dx is not None:
            dx = dx.view(dy.shape)
        return (dx, None, *_param_grads(grads))


def _autocast_dtype(x, base):
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return getattr(base, "compute_dtype", None) or x.dtype


def _fused_args(x: torch.Tensor, layers) -> tuple[torch.dtype, list[Proj], list[torch.Tensor]] | None:
    """(compute dtype, a Proj per layer, the adapter parameters A, B of each layer in order): what
    the fused functions take after x; None when one of the layers cannot take the fused path."""
    names = [_fusable(m, (), {}) for m in layers]
    if None in names:
        return None
    dtype = _autocast_dtype(x, layers[0].get_base_layer())
    projs, params = [], []
    for m, n in zip(layers, names):
        a, b, a_cast, b_cast = _adapter(m, n, dtype)
        projs.append(Proj(m.get_base_layer(), a_cast, b_cast, float(m.scaling[n]), a.dtype, b.dtype))
        params += (a, b)
    return dtype, projs, params


def lora_mlp(x: torch.Tensor, gate, up, down) -> torch.Tensor | None:
    """A SwiGLU MLP whose three projections are peft LoRA layers, in one fused function; None
    when one of the layers cannot take the fused path (the caller then runs the module as is)."""
    args = _fused_args(x, (gate, up, down))
    if args is None:
        return None
    dtype, projs, params = args
    return _LoRAMLP.apply(x, dtype, projs, *params)


def lora_shared(x: torch.Tensor, *layers) -> tuple | None:
    """The outputs of several peft LoRA layers applied to the same ``x``, in one fused function;
    None when one of them cannot take the fused path."""
    args = _fused_args(x, layers)
    if args is None:
        return None
    dtype, projs, params = args
    return _LoRAShared.apply(x, dtype, projs, *params)


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
    ready = self.__dict__.pop("_kit_out", None)  # computed with its siblings by fused_attention_forward
    if ready is not None and ready[0] is x and not args and not kwargs:
        return ready[1]
    fused = None if args or kwargs else _fused_args(x, (self,))
    if fused is None:
        return self._kit_forward(x, *args, **kwargs)
    dtype, (proj,), params = fused
    return _LoRALinear.apply(x, dtype, proj, *params)


def fused_mlp_forward(self, x, *args, **kwargs):
    out = None if args or kwargs else lora_mlp(x, self.gate_proj, self.up_proj, self.down_proj)
    return self._kit_forward(x, *args, **kwargs) if out is None else out


def fused_attention_forward(self, hidden_states, *args, **kwargs):
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


def _fused_layer_forward(self, hidden_states, *args, **kwargs):
    """A Llama decoder layer under gradient checkpointing, in training: one function for the whole
    layer (_LoRADecoderLayer) in place of torch's checkpoint around the layer's modules. Anything
    else (no checkpointing, evaluation, a KV cache, a projection that cannot take the fused path)
    runs the layer's own forward, whose attention and MLP are still fused (patch_lora_layers),
    checkpointed as transformers would."""
    d = self.__dict__
    if self.gradient_checkpointing or d.get("_kit_ckpt_func") is not d.get("_gradient_checkpointing_func"):
        # checkpointing was switched on or off since patching: this call as transformers runs it
        # (an older transformers has already wrapped it in its checkpoint), then take over
        out = self._kit_forward(hidden_states, *args, **kwargs)
        _take_over_checkpointing(self)
        return out
    if not (d.get("_kit_ckpt") and self.training and torch.is_grad_enabled()):
        return self._kit_forward(hidden_states, *args, **kwargs)
    call = None if args else layer_call(self, hidden_states, kwargs)
    if call is None:
        return d["_kit_ckpt_func"](functools.partial(self._kit_forward, **kwargs), hidden_states, *args)
    c, adapter_params = call
    return _LoRADecoderLayer.apply(hidden_states, c, *adapter_params)


def _take_over_checkpointing(layer) -> None:
    """transformers checkpoints a layer whose `gradient_checkpointing` flag is set (older versions
    around the whole call, newer ones around forward); a patched layer checkpoints itself, in
    _LoRADecoderLayer. So the flag moves to `_kit_ckpt`, and the checkpoint function then set is
    remembered: when gradient_checkpointing_enable/disable runs again it sets a new one."""
    d = layer.__dict__
    d["_kit_ckpt"] = bool(layer.gradient_checkpointing)
    d["_kit_ckpt_func"] = d.get("_gradient_checkpointing_func")
    layer.gradient_checkpointing = False


_LAYER_KWARGS = {"attention_mask", "position_ids", "past_key_values", "use_cache", "cache_position",
                 "position_embeddings"}
# A packed batch's document bounds, for the varlen attention kernels (helpers.train.packing): passed on as they are
_PACKING_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def layer_call(layer, x, kwargs) -> tuple[_LayerCall, list] | None:
    """The _LayerCall for this call and the 14 adapter parameters (A, B of q, k, v, o, gate, up,
    down), or None when it cannot take the fused layer path."""
    if kwargs.get("past_key_values") is not None or kwargs.get("position_embeddings") is None:
        return None
    if any(v is not None and v is not False for k, v in kwargs.items()
           if k not in _LAYER_KWARGS and k not in _PACKING_KWARGS):
        return None  # output_attentions, a linear-attention seq_idx and the like: the layer's own forward
    attn, mlp = layer.self_attn, layer.mlp
    args = _fused_args(x, (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj,
                           mlp.down_proj))
    if args is None:
        return None
    c = _LayerCall()
    c.layer = layer
    c.dtype, c.projs, adapter_params = args
    cos, sin = kwargs["position_embeddings"]
    c.cos, c.sin, c.mask = cos.to(c.dtype), sin.to(c.dtype), kwargs.get("attention_mask")
    c.kwargs = {k: kwargs[k] for k in ("position_ids", "cache_position", *_PACKING_KWARGS)
                if kwargs.get(k) is not None}
    module = sys.modules[type(attn).__module__]
    c.rope = module.apply_rotary_pos_emb  # Liger's when it patched the model
    impl = attn.config._attn_implementation
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    c.attend = module.eager_attention_forward if impl in (None, "eager") else ALL_ATTENTION_FUNCTIONS[impl]
    return c, adapter_params


def _is_llama_layer(module) -> bool:
    """A Llama decoder layer (pre-norm attention and SwiGLU MLP, RMSNorm without offset, no
    attention dropout, no q/k norms) whose seven projections are LoRA layers."""
    if type(module).__name__ != "LlamaDecoderLayer" or not hasattr(module, "gradient_checkpointing"):
        return False
    attn, mlp = getattr(module, "self_attn", None), getattr(module, "mlp", None)
    if attn is None or mlp is None or not _is_qkv_attention(attn) or not _is_swiglu_mlp(mlp):
        return False
    from peft.tuners.lora import LoraLayer
    if not isinstance(getattr(attn, "o_proj", None), LoraLayer) or hasattr(attn, "q_norm"):
        return False
    if getattr(attn.config, "attention_dropout", 0.0) or getattr(attn.config, "hidden_act", "silu") != "silu":
        return False
    norms = (getattr(module, "input_layernorm", None), getattr(module, "post_attention_layernorm", None))
    return all(n is not None and hasattr(n, "weight") and hasattr(n, "variance_epsilon")
               and not getattr(n, "offset", 0.0) for n in norms)


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
        if _is_llama_layer(module):
            _swap_forward(module, _fused_layer_forward)
            _take_over_checkpointing(module)
        elif _is_swiglu_mlp(module):
            _swap_forward(module, fused_mlp_forward)
        elif _is_qkv_attention(module):
            _swap_forward(module, fused_attention_forward)
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
        drop_cached_plan(module)
        if "_kit_ckpt" in module.__dict__:
            module.gradient_checkpointing = module.__dict__.pop("_kit_ckpt")
            module.__dict__.pop("_kit_ckpt_func")
        if hasattr(module, "_kit_forward"):
            if module._kit_had_own:
                module.forward = module._kit_forward
            else:
                del module.forward
            n += isinstance(module, LoraLayer)
            del module._kit_forward, module._kit_had_own
    return n
