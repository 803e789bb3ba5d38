"""bitsandbytes' private 4-bit kernels (helpers/train/private_kernels.py): the dense weight is
bitsandbytes' public dequantisation bit for bit, on real 4-bit weights, with the direct kernels
(GPU) or without them (CPU, or after a failed call); the kernels resolve only with their declared
C signatures."""
import pytest
import torch

GPU = pytest.mark.gpu  # bitsandbytes' CUDA code (skipped without a GPU: conftest.py)


def _linear4bit(w: torch.Tensor, quant_type: str, double_quant: bool, device: str):
    """A real bitsandbytes Linear4bit holding ``w`` (quantised on the move to ``device``)."""
    import bitsandbytes as bnb
    q = bnb.nn.Linear4bit(w.shape[1], w.shape[0], bias=False, compute_dtype=torch.float32, quant_type=quant_type)
    q.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, quant_type=quant_type,
                                 compress_statistics=double_quant)
    q.support_avx512bf16_for_cpu = False  # bitsandbytes' exact CPU path (see test_fast_lora._quantize_and_add_lora)
    return q.to(device)


@GPU
def test_direct_dequantisation_matches_bitsandbytes():
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbF
    from helpers.train.private_kernels import dense_weight
    w = torch.randn(384, 256) * 0.05
    for compute in (torch.bfloat16, torch.float32):
        q = bnb.nn.Linear4bit(256, 384, bias=False, compute_dtype=compute, quant_type="nf4")
        q.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, quant_type="nf4", compress_statistics=True)
        q = q.cuda()
        ref = bnbF.dequantize_4bit(q.weight.data, q.weight.quant_state)
        for dtype in (torch.bfloat16, torch.float32):
            assert torch.equal(dense_weight(q, dtype), ref.to(dtype)), (compute, dtype)


@pytest.mark.cpu
def test_without_cuda_the_weight_is_bitsandbytes_public_dequantisation():
    """Without CUDA the private kernels do not resolve (a CPU build of bitsandbytes has only
    stand-ins that raise when called), and dense_weight gives bitsandbytes' public dequantize_4bit,
    bit for bit, for real 4-bit weights of both quant types, with and without double quantisation."""
    import bitsandbytes
    import bitsandbytes.functional as bnbF
    from bitsandbytes.cextension import lib
    from helpers.train import private_kernels as pk
    def raw_stream(device_index):  # what torch._C._cuda_getCurrentRawStream (absent from a CPU torch) is
        return 0

    assert pk.resolve_bnb_kernels(bitsandbytes.__version__, lib, raw_stream) is None
    assert pk.bnb_kernels() is None
    w = torch.randn(96, 64, generator=torch.Generator().manual_seed(0)) * 0.05
    for quant_type, double_quant in (("nf4", True), ("fp4", False)):
        q = _linear4bit(w, quant_type, double_quant, "cpu")
        assert q.weight.quant_state.nested is double_quant
        ref = bnbF.dequantize_4bit(q.weight.data, q.weight.quant_state)
        assert (ref - w).abs().max() < 0.05  # a real 4-bit round trip, not zeros
        for dtype in (torch.bfloat16, torch.float32):
            assert torch.equal(pk.dense_weight(q, dtype), ref.to(dtype)), (quant_type, dtype)
        assert "_kit_deq" not in q.__dict__  # no plan for a CPU weight
    dense = torch.nn.Linear(64, 96, bias=False)
    assert torch.equal(pk.dense_weight(dense, torch.bfloat16), dense.weight.to(torch.bfloat16))


def test_private_kernels_resolve_only_with_their_declared_signatures():
    """bitsandbytes' kernels are called with plain ints, which ctypes converts only where the C
    signature is declared (bitsandbytes >= 0.50 declares it). A library whose kernels all carry
    that 7-argument signature resolves; one kernel missing, an undeclared or other signature, an
    older bitsandbytes, or no raw-stream function gives None (the public function then)."""
    import ctypes as ct
    import types
    from helpers.train import private_kernels as pk
    seven = ct.CFUNCTYPE(None, *[ct.c_void_p] * 4, ct.c_int32, ct.c_int32, ct.c_void_p)
    six = ct.CFUNCTYPE(None, *[ct.c_void_p] * 4, ct.c_int32, ct.c_int32)
    names = [f"cdequantize_blockwise_{d}_{q}" for d in ("bf16", "fp16", "fp32") for q in ("nf4", "fp4")]
    names.append("cdequantize_blockwise_fp32")
    calls = []
    full = {n: seven(lambda *a, n=n: calls.append(n)) for n in names}
    def stream(device_index):  # torch._C._cuda_getCurrentRawStream's part (a CPU torch has none)
        return 0

    kernels = pk.resolve_bnb_kernels("0.50.2", types.SimpleNamespace(**full), stream)
    assert kernels is not None and kernels.raw_stream is stream
    assert set(kernels.dequant_4bit) == {(dt, q) for dt in (torch.bfloat16, torch.float16, torch.float32)
                                          for q in ("nf4", "fp4")}
    kernels.dequant_4bit[torch.bfloat16, "nf4"](None, 0, 0, 0, 64, 0, 0)
    kernels.dequant_absmax(0, 0, 0, 0, 256, 0, 0)
    assert calls == ["cdequantize_blockwise_bf16_nf4", "cdequantize_blockwise_fp32"]  # each name its own kernel
    assert pk.resolve_bnb_kernels("0.51.0.dev0", types.SimpleNamespace(**full), stream) is not None
    assert pk.resolve_bnb_kernels("1.0.0", types.SimpleNamespace(**full), stream) is not None
    assert pk.resolve_bnb_kernels("0.49.1", types.SimpleNamespace(**full), stream) is None
    assert pk.resolve_bnb_kernels("0.50.2", types.SimpleNamespace(**full), None) is None
    for name in names:
        missing = {n: f for n, f in full.items() if n != name}
        assert pk.resolve_bnb_kernels("0.50.2", types.SimpleNamespace(**missing), stream) is None, name
        undeclared = dict(full, **{name: lambda *a: None})  # like a CPU build's stand-in
        assert pk.resolve_bnb_kernels("0.50.2", types.SimpleNamespace(**undeclared), stream) is None, name
        other = dict(full, **{name: six(lambda *a: None)})
        assert pk.resolve_bnb_kernels("0.50.2", types.SimpleNamespace(**other), stream) is None, name


@GPU
def test_direct_dequantisation_falls_back_to_bitsandbytes():
    """On a GPU the direct kernels resolve with the pinned bitsandbytes (else every step would take
    the slower public function unnoticed). Without them, and after a direct call that fails (with
    one warning), the weight is bitsandbytes' public dequantize_4bit, bit for bit."""
    import ctypes
    import bitsandbytes.functional as bnbF
    from helpers.train import private_kernels as pk
    kernels = pk.bnb_kernels()
    assert kernels is not None
    w = torch.randn(384, 256, generator=torch.Generator().manual_seed(0)) * 0.05
    q = _linear4bit(w, "nf4", True, "cuda")
    ref = bnbF.dequantize_4bit(q.weight.data, q.weight.quant_state)
    assert torch.equal(pk.dense_weight(q, torch.bfloat16), ref.to(torch.bfloat16))
    assert "_kit_deq" in q.__dict__  # the direct path ran and cached its plan
    pk.drop_cached_plan(q)

    def fails(*args):  # what ctypes raises for a pointer passed without a declared signature
        raise ctypes.ArgumentError("argument 2: OverflowError: int too long to convert")

    broken = pk.BnbKernels({k: fails for k in kernels.dequant_4bit}, kernels.dequant_absmax, kernels.raw_stream)
    try:
        pk._BNB = None  # as when a symbol is missing
        assert torch.equal(pk.dense_weight(q, torch.bfloat16), ref.to(torch.bfloat16))
        assert "_kit_deq" not in q.__dict__
        pk._BNB = broken
        with pytest.warns(RuntimeWarning, match="dequantize_4bit from now on"):
            out = pk.dense_weight(q, torch.float32)
        assert torch.equal(out, ref.to(torch.float32))
        assert pk._BNB is None and pk.bnb_kernels() is None  # given up on for the rest of the process
        assert torch.equal(pk.dense_weight(q, torch.float32), ref.to(torch.float32))
    finally:
        pk._BNB = kernels
        pk.drop_cached_plan(q)
