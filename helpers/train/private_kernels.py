"""The kit's only calls into private bitsandbytes and torch internals, for helpers.train.fast_lora. Each
is resolved once (on first use), checked, and replaced by the public way where it is missing or
fails, so a bitsandbytes or torch release that moves them costs speed, never a wrong result.

* ``dense_weight(base, dtype)``: a base layer's weight as a dense (out, in) matrix. A 4-bit weight
  on the current CUDA device is dequantised by calling bitsandbytes' CUDA kernels
  (``bitsandbytes.cextension.lib.cdequantize_blockwise_*``, on the stream from torch's private
  ``torch._C._cuda_getCurrentRawStream``) with the arguments bitsandbytes' own ``dequantize_4bit``
  passes them, cached per weight, without the checks, device switch and op dispatch around them:
  that Python costs as much as the kernel at QLoRA's sizes, and it runs three times per weight per
  step. Used only with bitsandbytes >= 0.50 (from which it declares the kernels' C signatures, so
  plain Python ints convert) and only when every kernel is there with that signature; anything
  else (no CUDA build, an older or reorganised bitsandbytes, another quant type or dtype, a weight
  on the CPU or another device, a call that raises) takes the public
  ``bitsandbytes.functional.dequantize_4bit``, bit for bit the same result.
* ``fused_rms_norm()``: torch's private ``aten._fused_rms_norm`` and its backward, or None where
  this torch lacks them (helpers.train.fast_lora then computes RMSNorm with public ops).
"""
from __future__ import annotations

import functools
import re
import warnings
from typing import NamedTuple

import torch

__all__ = ["MIN_BITSANDBYTES", "bnb_kernels", "dense_weight", "drop_cached_plan", "fused_rms_norm"]

MIN_BITSANDBYTES = (0, 50)  # the first release that declares the dequantisation kernels' argtypes

# bitsandbytes' kernels, by the dtype they write: (code, input, absmax, out, blocksize, n, stream)
_OUT_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
_QUANT_TYPES = ("nf4", "fp4")
_N_ARGS = 7
_PLAN = "_kit_deq"  # where a layer keeps its cached _Dequant4bit


class BnbKernels(NamedTuple):
    """bitsandbytes' CUDA dequantisation entry points, as ``bnb_kernels()`` resolved them."""
    dequant_4bit: dict       # {(output dtype, quant type): 4-bit blockwise dequantisation kernel}
    dequant_absmax: object   # fp32 8-bit blockwise dequantisation (double-quantised absmax values)
    raw_stream: object       # torch._C._cuda_getCurrentRawStream: device index -> the stream's handle


_UNRESOLVED = object()
_BNB = _UNRESOLVED  # BnbKernels once resolved; None: the public function from then on


def bnb_kernels() -> BnbKernels | None:
    """bitsandbytes' CUDA dequantisation kernels, resolved once, or None where they cannot be
    called directly (then ``dense_weight`` uses the public ``dequantize_4bit``)."""
    global _BNB
    if _BNB is _UNRESOLVED:
        try:
            import bitsandbytes
            from bitsandbytes.cextension import lib
            _BNB = resolve_bnb_kernels(bitsandbytes.__version__, lib,
                                       getattr(torch._C, "_cuda_getCurrentRawStream", None))
        except Exception:  # not installed, or another bitsandbytes layout
            _BNB = None
    return _BNB


def resolve_bnb_kernels(version: str, lib, raw_stream) -> BnbKernels | None:
    """The kernels of bitsandbytes ``version``'s native library ``lib``, or None when the version
    is older than MIN_BITSANDBYTES, ``raw_stream`` is missing, or one kernel is missing or lacks
    its declared 7-argument C signature (bitsandbytes declares it on import when torch sees CUDA;
    a CPU-only build has stand-ins that raise when called)."""
    if _release(version) < MIN_BITSANDBYTES or raw_stream is None:
        return None
    four = {(dt, q): _declared(lib, f"cdequantize_blockwise_{name}_{q}")
            for dt, name in _OUT_DTYPES.items() for q in _QUANT_TYPES}
    absmax = _declared(lib, "cdequantize_blockwise_fp32")
    if absmax is None or None in four.values():
        return None
    return BnbKernels(four, absmax, raw_stream)


def _release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as '0.50.2' or '0.51.0.dev0'; (0, 0) if unreadable."""
    m = re.match(r"(\d+)\.(\d+)", str(version))
    return (int(m[1]), int(m[2])) if m else (0, 0)


def _declared(lib, name: str):
    try:
        fn = getattr(lib, name)
    except Exception:
        return None
    argtypes = getattr(fn, "argtypes", None)
    return fn if argtypes is not None and len(argtypes) == _N_ARGS else None


class _Dequant4bit:
    """What dense_weight passes bitsandbytes' kernels for one 4-bit weight in one output dtype,
    cached on the layer; ``key`` (the storages and the dtype) tells a moved or re-quantised
    weight, which gets a new plan."""
    __slots__ = ("key", "kernel", "raw_stream", "device", "device_index", "packed_ptr", "shape", "numel",
                 "blocksize", "absmax", "absmax_ptr", "absmax_shape", "absmax_numel", "absmax_kernel",
                 "code_ptr", "absmax2_ptr", "absmax_blocksize", "offset")

    def __init__(self, key, kernels: BnbKernels, kernel, w, qs):
        self.key, self.kernel, self.raw_stream = key, kernel, kernels.raw_stream
        self.device, self.device_index, self.packed_ptr = w.device, w.device.index, w.data_ptr()
        self.shape, self.numel, self.blocksize = tuple(qs.shape), qs.shape.numel(), qs.blocksize
        self.absmax = qs.absmax  # kept alive with its pointer
        self.absmax_ptr, self.absmax_shape, self.absmax_numel = qs.absmax.data_ptr(), qs.absmax.shape, qs.absmax.numel()
        if qs.nested:  # double quantisation: the absmax values are themselves 8-bit blockwise-quantised
            s2 = qs.state2
            self.absmax_kernel, self.absmax_blocksize, self.offset = kernels.dequant_absmax, s2.blocksize, qs.offset
            self.code_ptr, self.absmax2_ptr = s2.code.data_ptr(), s2.absmax.data_ptr()
        else:
            self.absmax_kernel = self.code_ptr = self.absmax2_ptr = self.absmax_blocksize = self.offset = None


def dense_weight(base: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The base layer's weight as a dense (out, in) matrix in ``dtype`` (dequantised if 4-bit)."""
    w = base.weight
    qs = getattr(w, "quant_state", None)
    if qs is None:
        return w.to(dtype)
    try:
        p = _plan(base, w, qs, dtype)
        if p is not None:
            stream = p.raw_stream(p.device_index)
            if p.absmax_kernel is None:
                absmax_ptr = p.absmax_ptr
            else:
                absmax = torch.empty(p.absmax_shape, dtype=torch.float32, device=p.device)
                p.absmax_kernel(p.code_ptr, p.absmax_ptr, p.absmax2_ptr, absmax.data_ptr(), p.absmax_blocksize,
                                p.absmax_numel, stream)
                absmax += p.offset
                absmax_ptr = absmax.data_ptr()
            out = torch.empty(p.shape, dtype=dtype, device=p.device)
            p.kernel(None, p.packed_ptr, absmax_ptr, out.data_ptr(), p.blocksize, p.numel, stream)
            return out
    except torch.cuda.OutOfMemoryError:
        raise  # the public function would need the same memory; a caller may retry smaller
    except Exception as exc:  # the private call failed: the public function from now on
        _give_up(exc)
    import bitsandbytes.functional as bnbF
    return bnbF.dequantize_4bit(w.data, qs).to(dtype)


def _plan(base, w, qs, dtype) -> _Dequant4bit | None:
    """The cached _Dequant4bit of this weight, or None where the kernels cannot be called directly
    (given up on, not on the current CUDA device, another quant type or dtype, another layout)."""
    if _BNB is None or not w.is_cuda or w.device.index != torch.cuda.current_device():
        return None
    key = (w.data_ptr(), qs.absmax.data_ptr(), dtype)
    cached = base.__dict__.get(_PLAN)
    if cached is not None and cached.key == key:
        return cached
    kernels = bnb_kernels()
    kernel = None if kernels is None else kernels.dequant_4bit.get((dtype, qs.quant_type))
    if kernel is None or not w.data.is_contiguous() or not qs.absmax.is_contiguous():
        return None
    plan = _Dequant4bit(key, kernels, kernel, w, qs)
    base.__dict__[_PLAN] = plan
    return plan


def _give_up(exc: Exception) -> None:
    global _BNB
    _BNB = None
    warnings.warn(f"Calling bitsandbytes' dequantisation kernel directly failed ({exc!r}); using "
                  "bitsandbytes.functional.dequantize_4bit from now on (same result, slower)", RuntimeWarning,
                  stacklevel=3)


def drop_cached_plan(module: torch.nn.Module) -> None:
    """Forget what dense_weight cached on ``module`` (when the kit unpatches a model)."""
    module.__dict__.pop(_PLAN, None)


class RmsNormOps(NamedTuple):
    forward: object   # (x, normalized_shape, weight, eps) -> (output, 1 / rms)
    backward: object  # (grad, x, normalized_shape, 1 / rms, weight, output_mask) -> (grad x, grad weight)


@functools.cache
def fused_rms_norm() -> RmsNormOps | None:
    """torch's private fused RMSNorm ops (``aten._fused_rms_norm`` and its backward), or None."""
    ops = torch.ops.aten
    if hasattr(ops, "_fused_rms_norm") and hasattr(ops, "_fused_rms_norm_backward"):
        return RmsNormOps(ops._fused_rms_norm, ops._fused_rms_norm_backward)
    return None
