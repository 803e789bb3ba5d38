"""What this GPU can do, and what the kit picks for it, with the reason for each choice.

``choose(caps)`` is a pure function of a :class:`GpuCaps` (name, compute capability, memory, which
optional kernel packages are installed) and returns a :class:`Choice`:

* compute dtype: bf16 from compute capability 8.0 (Ampere: A100, L4, H100), fp16 below (the T4 is
  7.5 and has no bf16 units; torch may still report bf16 as "supported" there through emulation,
  which is slow, so the kit goes by the capability), fp32 on a CPU;
* attention: FlashAttention-2 when the ``flash_attn`` package is installed and the GPU is 8.0 or
  newer, else PyTorch's SDPA, which picks its own fastest backend for the GPU (flash from 8.0,
  memory-efficient on a T4);
* Liger's Triton kernels (RMSNorm, SwiGLU, RoPE) when installed: in bf16 from 8.0, in fp16 on 7.x
  (its kernels fail in bf16 on sm75, which has none, and pass in fp16 there: Liger-Kernel issue 51);
  off below 7.0;
* the kit's fused LoRA layers and whole-layer function (``helpers/fast_lora.py``): PyTorch ops and
  bitsandbytes' dequantisation only, no Triton, so on every GPU and on the CPU;
* packing (``PACKING``, ``helpers/packing.py``): the documents of a packed micro-batch in one row
  through a varlen flash kernel, FlashAttention-2's when the model runs it, else PyTorch's own
  (``torch.nn.attention.varlen``, flash kernels from compute capability 8.0); below 8.0 (a T4) and
  on the CPU the rows stay rows and attention takes a per-document causal mask.

``gpu_caps()`` reads the caps of this process's GPU. ``LLAMA_KIT_EMULATE_T4=1`` makes a bigger GPU
behave as a T4 for the kit, to rerun Colab's free tier anywhere: ``torch.cuda.is_bf16_supported``
says no, the process is capped at 15 GiB (``torch.cuda.set_per_process_memory_fraction``; the
memory plan plans for 15 GiB) and the kit chooses as for compute capability 7.5. The kernels that
run are still the real GPU's: a T4's missing kernels are not emulated, which is why the choice above
goes by capability and is tested on the CPU for each GPU (``tests/test_hardware.py``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

T4 = dict(name="Tesla T4", capability=(7, 5), memory_gib=15.0)
EMULATE_T4_ENV = "LLAMA_KIT_EMULATE_T4"


@dataclass(frozen=True)
class GpuCaps:
    name: str
    capability: tuple[int, int]
    memory_gib: float
    flash_attn: bool = False  # the flash_attn package is installed
    liger: bool = False  # the liger_kernel package is installed
    torch_varlen: bool = False  # torch.nn.attention.varlen.varlen_attn exists (torch 2.10+)
    emulated: str = ""  # "" or what is emulated ("T4 on NVIDIA H200")


@dataclass(frozen=True)
class Choice:
    dtype: str  # "bfloat16", "float16" or "float32"
    attention: str  # "flash_attention_2" or "sdpa"
    liger: bool  # Liger's RMSNorm/SwiGLU/RoPE kernels
    fused_lora: bool  # helpers.train.fast_lora's fused LoRA layers and whole-layer function
    reasons: list[str] = field(default_factory=list)
    packing: str = "mask"  # packed batches: "flash_attention_2", "varlen" (PyTorch's) or "mask" (per-document mask)

    def describe(self) -> str:
        return "; ".join(self.reasons)


def choose(caps: GpuCaps | None) -> Choice:
    """The dtype, attention and kernels for ``caps`` (None: no GPU); see the module docstring."""
    if caps is None:
        return Choice("float32", "sdpa", False, True, [
            "no GPU: fp32 on the CPU", "attention: PyTorch SDPA",
            "fused LoRA layers on (PyTorch ops)", "Liger off (needs a CUDA GPU)",
            "packing: a per-document causal mask (no varlen kernel on the CPU)"], "mask")
    major, minor = caps.capability
    cc = f"{major}.{minor}"
    gpu = f"{caps.name} (compute capability {cc}{', ' + caps.emulated if caps.emulated else ''})"
    reasons = []
    if major >= 8:
        dtype = "bfloat16"
        reasons.append(f"{gpu}: bf16 compute")
    else:
        dtype = "float16"
        reasons.append(f"{gpu}: fp16 compute (bf16 needs compute capability 8.0; fp32 master weights for the "
                       "adapters, with loss scaling)")
    if caps.flash_attn and major >= 8:
        attention = "flash_attention_2"
        reasons.append("attention: FlashAttention-2")
    else:
        attention = "sdpa"
        why = ("flash_attn is installed but needs compute capability 8.0" if caps.flash_attn
               else "flash_attn is not installed")
        reasons.append(f"attention: PyTorch SDPA, which picks its backend for this GPU ({why})")
    if not caps.liger:
        liger = False
        reasons.append("Liger off (not installed: pip install liger-kernel)")
    elif major >= 7:
        liger = True
        reasons.append("Liger RMSNorm/SwiGLU/RoPE on" + ("" if major >= 8 else " in fp16 (they fail in bf16 on sm7x)"))
    else:
        liger = False
        reasons.append(f"Liger off (its Triton kernels need compute capability 7.0; this GPU has {cc})")
    reasons.append("fused LoRA layers on (PyTorch ops and bitsandbytes, every GPU)")
    if attention == "flash_attention_2":
        packing = "flash_attention_2"
        reasons.append("packing: FlashAttention-2's varlen kernel")
    elif major >= 8 and caps.torch_varlen:
        packing = "varlen"
        reasons.append("packing: PyTorch's varlen attention (torch.nn.attention.varlen)")
    else:
        packing = "mask"
        why = (f"varlen flash kernels need compute capability 8.0; this GPU has {cc}" if major < 8
               else "this torch has no torch.nn.attention.varlen (2.10+) and flash_attn is not installed")
        reasons.append(f"packing: a per-document causal mask ({why})")
    return Choice(dtype, attention, liger, True, reasons, packing)


def emulating_t4() -> bool:
    return os.environ.get(EMULATE_T4_ENV, "").strip().lower() in ("1", "true", "yes", "on")


_EMULATION_APPLIED = False


def apply_t4_emulation() -> None:
    """Make this process's (bigger) GPU behave as a T4 for the kit: no bf16, 15 GiB. Idempotent."""
    global _EMULATION_APPLIED
    import torch
    if _EMULATION_APPLIED or not torch.cuda.is_available():
        return
    torch.cuda.is_bf16_supported = lambda *args, **kwargs: False
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    torch.cuda.set_per_process_memory_fraction(min(1.0, T4["memory_gib"] / total))
    os.environ.setdefault("LLAMA_KIT_GPU_MEMORY_GIB", str(T4["memory_gib"]))  # what the memory plan budgets for
    _EMULATION_APPLIED = True


def torch_varlen():
    """PyTorch's ``varlen_attn`` (torch 2.10+), or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def gpu_caps() -> GpuCaps | None:
    """This process's GPU (``LOCAL_RANK``'s under accelerate), or None without one."""
    import importlib.util

    import torch
    if not torch.cuda.is_available():
        return None
    installed = dict(flash_attn=importlib.util.find_spec("flash_attn") is not None,
                     liger=importlib.util.find_spec("liger_kernel") is not None,
                     torch_varlen=torch_varlen() is not None)
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    if emulating_t4():
        apply_t4_emulation()
        return GpuCaps(T4["name"], T4["capability"], T4["memory_gib"], emulated=f"T4 emulated on {props.name}",
                       **installed)
    return GpuCaps(props.name, (props.major, props.minor), round(props.total_memory / 2**30, 1), **installed)


def current_choice() -> Choice:
    return choose(gpu_caps())
