"""What the kit picks for each GPU (dtype, attention, kernels) and what it says, checked on the CPU
for the GPUs users have: a T4 (Colab's free tier, 7.5), an A100 (8.0), an H100 (9.0)."""
import pytest
import torch

from helpers.common.hardware import Choice, GpuCaps, choose

T4 = GpuCaps("Tesla T4", (7, 5), 15.0)
A100 = GpuCaps("NVIDIA A100-SXM4-40GB", (8, 0), 39.4)
H100 = GpuCaps("NVIDIA H100 80GB HBM3", (9, 0), 79.1)


def test_t4_gets_fp16_sdpa_and_liger_in_fp16():
    c = choose(GpuCaps(**{**T4.__dict__, "flash_attn": True, "liger": True}))
    assert (c.dtype, c.attention, c.liger, c.fused_lora) == ("float16", "sdpa", True, True)
    text = c.describe()
    assert "Tesla T4 (compute capability 7.5)" in text and "fp16 compute (bf16 needs compute capability 8.0" in text
    assert "flash_attn is installed but needs compute capability 8.0" in text
    assert "Liger RMSNorm/SwiGLU/RoPE on in fp16" in text and "fused LoRA layers on" in text


@pytest.mark.parametrize("caps", [A100, H100], ids=["A100", "H100"])
def test_ampere_and_hopper_get_bf16_and_flash_attention_when_installed(caps):
    c = choose(GpuCaps(**{**caps.__dict__, "flash_attn": True, "liger": True}))
    assert (c.dtype, c.attention, c.liger) == ("bfloat16", "flash_attention_2", True)
    assert f"{caps.name} (compute capability {caps.capability[0]}.0): bf16 compute" in c.describe()
    plain = choose(caps)  # neither flash_attn nor liger installed
    assert (plain.dtype, plain.attention, plain.liger) == ("bfloat16", "sdpa", False)
    assert "flash_attn is not installed" in plain.describe() and "pip install liger-kernel" in plain.describe()


def test_older_gpus_and_the_cpu():
    old = choose(GpuCaps("Tesla P100", (6, 0), 16.0, liger=True))
    assert (old.dtype, old.liger) == ("float16", False) and "need compute capability 7.0" in old.describe()
    cpu = choose(None)
    assert isinstance(cpu, Choice) and (cpu.dtype, cpu.attention, cpu.liger, cpu.fused_lora) == (
        "float32",
        "sdpa",
        False,
        True,
    )


def test_emulated_t4_is_named_as_such():
    c = choose(GpuCaps("Tesla T4", (7, 5), 15.0, emulated="T4 emulated on NVIDIA H200"))
    assert c.dtype == "float16" and "Tesla T4 (compute capability 7.5, T4 emulated on NVIDIA H200)" in c.describe()


def test_the_kit_reports_its_choice_here(capsys):
    from helpers.common.models import attn_implementation, compute_dtype
    from helpers.common.workspace import describe_gpu
    assert compute_dtype() == torch.float32 and attn_implementation(torch.float32) == "sdpa"
    assert "No GPU" in describe_gpu()


def test_packing_kernel_by_capability():
    """(d) Packed batches: a T4 (7.5) takes the per-document mask even with flash_attn and torch's
    varlen installed; 8.0+ takes FlashAttention-2's varlen kernel when installed, else PyTorch's
    varlen (torch 2.10+), else the mask; the CPU the mask. Each choice says why."""
    t4 = choose(GpuCaps(**{**T4.__dict__, "flash_attn": True, "torch_varlen": True}))
    assert (
        t4.packing == "mask" and "varlen flash kernels need compute capability 8.0; this GPU has 7.5" in t4.describe()
    )
    for caps in (A100, H100):
        assert (
            choose(GpuCaps(**{**caps.__dict__, "flash_attn": True, "torch_varlen": True})).packing
            == "flash_attention_2"
        )
        varlen = choose(GpuCaps(**{**caps.__dict__, "torch_varlen": True}))
        assert varlen.packing == "varlen" and "PyTorch's varlen attention" in varlen.describe()
        old_torch = choose(caps)
        assert old_torch.packing == "mask" and "no torch.nn.attention.varlen" in old_torch.describe()
    cpu = choose(None)
    assert cpu.packing == "mask" and "per-document causal mask" in cpu.describe()


def test_packing_kernel_of_a_model_on_the_cpu(embedded_dir):
    """What train() picks for the embedded model here: the mask path, even when the choice says
    varlen (the model is not on a GPU); a model running flash attention keeps it."""
    from helpers.common.hardware import Choice
    from helpers.common.models import load_model
    from helpers.train.packing import packing_kernel
    model, _ = load_model("embedded/smollm2-135m-instruct", quantization="none", for_training=True, verbose=False)
    assert packing_kernel(model, choose(None))[0] == "mask"
    assert packing_kernel(model, Choice("bfloat16", "sdpa", False, True, [], "varlen"))[0] == "mask"
    model.config._attn_implementation = "flash_attention_2"  # as a model loaded with it reports
    assert packing_kernel(model, choose(None))[0] == "flash_attention_2"
