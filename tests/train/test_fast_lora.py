"""The fused LoRA path (helpers/train/fast_lora.py) computes what peft computes: same loss, same
gradients for every adapter matrix and for the input, on the real embedded model and a real
conversation, with a dense base and with a bitsandbytes 4-bit base."""
import pytest
import torch

from helpers.common.resources import chitchat_conversations
from helpers.train.fast_lora import fused_attention_forward, fused_mlp_forward, patch_lora_layers, unpatch_lora_layers
from helpers.common.models import load_model
from helpers.common.prompts import encode
from helpers.train import TrainConfig
from helpers.train.model import add_lora

EMB = "embedded/smollm2-135m-instruct"


def _batch(tok):
    rows = [encode(tok, c, max_len=96) for c in chitchat_conversations()[:2]]
    n = min(len(r["input_ids"]) for r in rows)
    ids = torch.tensor([r["input_ids"][:n] for r in rows])
    return ids


def _lora_model(quantize_4bit: bool):
    model, tok = load_model(EMB, quantization="none", for_training=True, verbose=False)
    return _quantize_and_add_lora(model, quantize_4bit, "cpu"), tok


def _quantize_and_add_lora(model, quantize_4bit: bool, device: str, compute=torch.float32):
    model.to(device)
    if quantize_4bit:
        import bitsandbytes as bnb
        for layer in model.model.layers[:4]:  # four decoder layers in 4-bit are enough and keep it quick
            for parent in (layer.self_attn, layer.mlp):
                for name, lin in list(parent.named_children()):
                    if not isinstance(lin, torch.nn.Linear):
                        continue
                    q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=False, compute_dtype=compute,
                                          quant_type="nf4")
                    q.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False, quant_type="nf4",
                                                 compress_statistics=True)
                    # bitsandbytes repacks a 4-bit weight in place for its approximate CPU inference
                    # kernel on the first eval-mode forward on CPUs with AVX512-BF16 (after which
                    # forward is 0.4% off and dequantize_4bit reads the packed data wrongly). The kit
                    # never runs 4-bit on a CPU; these CPU tests keep bitsandbytes' exact path.
                    q.support_avx512bf16_for_cpu = False
                    q = q.to(device)  # quantizes
                    setattr(parent, name, q)
    cfg = TrainConfig(model_name=EMB, quantization="none", lora_r=8, lora_alpha=16, lora_dropout=0.0,
                      target_modules="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    torch.manual_seed(0)
    model = add_lora(model, cfg)
    g = torch.Generator().manual_seed(1)
    for n, p in model.named_parameters():  # peft starts B at zero; make both matrices matter
        if "lora_B" in n:
            p.data = (torch.randn(p.shape, generator=g) * 0.02).to(p.device)
    model.enable_input_require_grads()
    return model


def _loss_and_grads(model, ids, mask=None):
    model.zero_grad(set_to_none=True)
    emb_out = {}
    h = model.get_input_embeddings().register_forward_hook(lambda m, i, o: emb_out.setdefault("x", o))
    labels = ids if mask is None else ids.masked_fill(mask == 0, -100)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    h.remove()
    emb_out["x"].retain_grad()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads, emb_out["x"].grad.clone()


def _graph_node_names(t) -> dict:
    from collections import Counter
    seen, todo, names = set(), [t.grad_fn], Counter()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names[type(fn).__name__] += 1
        todo += [f for f, _ in fn.next_functions]
    return names


GPU = pytest.mark.gpu  # Liger's SwiGLU kernels, bitsandbytes' CUDA code (skipped without a GPU: conftest.py)


@pytest.mark.parametrize("quantize_4bit", [False, True], ids=["dense", "nf4"])
def test_fused_path_matches_peft(quantize_4bit):
    model, tok = _lora_model(quantize_4bit)
    ids = _batch(tok)
    _check_same(model, ids)


@GPU
def test_fused_path_matches_peft_on_gpu():
    """On a GPU the fused MLP uses Liger's SwiGLU kernels and bitsandbytes' CUDA dequantisation.
    A random-weight Llama (no download on the GPU machine), 4-bit, fp32 compute."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=2048))
    model = _quantize_and_add_lora(model, True, "cuda")
    ids = torch.randint(0, 2048, (2, 64), generator=torch.Generator().manual_seed(0)).cuda()
    _check_same(model, ids)


def _check_same(model, ids):
    loss_ref, grads_ref, gx_ref = _loss_and_grads(model, ids)
    model.train()  # no checkpointing here: the attention and MLP functions, not the whole-layer one
    n = patch_lora_layers(model)
    assert n == 7 * model.config.num_hidden_layers
    mlps = [layer.mlp for layer in model.base_model.model.model.layers]
    assert all(m.forward.__func__ is fused_mlp_forward for m in mlps)  # the whole MLP in one function
    attns = [layer.self_attn for layer in model.base_model.model.model.layers]
    assert all(a.forward.__func__ is fused_attention_forward for a in attns)  # q, k, v in one function
    loss, grads, gx = _loss_and_grads(model, ids)
    nodes = _graph_node_names(model(input_ids=ids, labels=ids).loss)
    n_layers = model.config.num_hidden_layers
    assert (nodes["_LoRASharedBackward"], nodes["_LoRAMLPBackward"], nodes["_LoRALinearBackward"]) == (
        n_layers, n_layers, n_layers)  # q/k/v together, the MLP whole, o_proj alone: the fused paths were taken
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert set(grads) == set(grads_ref) and len(grads) == 2 * n
    worst = max(((grads[k] - grads_ref[k]).abs().max() / grads_ref[k].abs().max()).item() for k in grads)
    assert worst < 1e-4, worst
    assert ((gx - gx_ref).abs().max() / gx_ref.abs().max()).item() < 1e-5
    # the gradients are not trivially zero: an adapter that did nothing would pass the checks above
    assert all(grads[k].abs().sum() > 0 for k in grads)
    assert unpatch_lora_layers(model) == n
    assert _loss_and_grads(model, ids)[0] == pytest.approx(loss_ref, rel=1e-6)


def _padded_batch(tok):
    """Two conversations of different lengths, right-padded, with their attention mask."""
    rows = [encode(tok, c, max_len=80)["input_ids"] for c in chitchat_conversations()[2:4]]
    rows[1] = rows[1][:len(rows[0]) * 2 // 3] if len(rows[1]) >= len(rows[0]) else rows[1]
    n = max(len(r) for r in rows)
    ids = torch.tensor([r + [tok.pad_token_id] * (n - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])
    assert mask.min() == 0  # the mask matters: the attention function gets a 4-D mask, not is_causal
    return ids, mask


def _check_same_under_checkpointing(model, batches, *, rel_loss, rel_grad, rel_logits=1e-3):
    """Gradient checkpointing on (as training runs): each decoder layer is one function, and the
    loss and every adapter gradient equal peft's under torch's checkpoint."""
    from helpers.train import fast_lora as fast_lora
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    n_layers = model.config.num_hidden_layers
    refs = [_loss_and_grads(model, *b) for b in batches]
    patch_lora_layers(model)
    layer_runs = []
    real = fast_lora.layer_fwd
    fast_lora.layer_fwd = lambda *a, **k: layer_runs.append(1) or real(*a, **k)
    try:
        loss, grads, gx = _loss_and_grads(model, *batches[0])
    finally:
        fast_lora.layer_fwd = real
    # once in the forward pass and once recomputed in backward: transformers' own checkpoint does
    # not wrap the layer a second time (older transformers wrap __call__, newer ones forward)
    assert len(layer_runs) == 2 * n_layers
    for (ids, mask), (loss_ref, grads_ref, gx_ref) in zip(batches, refs):
        loss, grads, gx = _loss_and_grads(model, ids, mask)
        nodes = _graph_node_names(model(input_ids=ids, attention_mask=mask, labels=ids).loss)
        assert nodes["_LoRADecoderLayerBackward"] == n_layers  # the whole layer is one function...
        assert nodes["_LoRAMLPBackward"] == nodes["CheckpointFunctionBackward"] == 0  # ...and not checkpointed again
        assert loss == pytest.approx(loss_ref, rel=rel_loss)
        assert set(grads) == set(grads_ref) and len(grads) == 14 * n_layers
        worst = max(((grads[k] - grads_ref[k]).abs().max() / grads_ref[k].abs().max()).item() for k in grads)
        assert worst < rel_grad, worst
        assert ((gx - gx_ref).abs().max() / gx_ref.abs().max()).item() < rel_grad
        assert all(grads[k].abs().sum() > 0 for k in grads)
    model.eval()
    with torch.no_grad():  # evaluation takes the layer's own forward (the fused attention and MLP)
        ids, mask = batches[-1]
        ref = model(input_ids=ids, attention_mask=mask).logits
        unpatch_lora_layers(model)
        out = model(input_ids=ids, attention_mask=mask).logits
        assert ((out - ref).abs().max() / ref.abs().max()).item() < rel_logits
    layers = model.base_model.model.model.layers
    assert all(layer.gradient_checkpointing and "_kit_ckpt" not in layer.__dict__ for layer in layers)


@pytest.mark.parametrize("quantize_4bit", [False, True], ids=["dense", "nf4"])
def test_whole_layer_under_checkpointing_matches_peft(quantize_4bit):
    model, tok = _lora_model(quantize_4bit)
    ids = _batch(tok)
    _check_same_under_checkpointing(model, [(ids, None), _padded_batch(tok)], rel_loss=1e-5, rel_grad=1e-4)


def test_whole_layer_saves_only_its_input_for_an_offloader():
    """An activation offloader's saved-tensor hooks (TRL's span the whole training step, backward
    included) see one tensor per layer, the layer input, in the forward pass, and nothing from the
    recomputation in backward: no activation goes to the CPU and back in the middle of backward."""
    model, tok = _lora_model(False)
    ids = _batch(tok)[:, :48]
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    patch_lora_layers(model)
    packed = {"forward": [], "backward": []}
    phase = ["forward"]

    def pack(t):
        packed[phase[0]].append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
        phase[0] = "backward"
        loss.backward()
    hidden = model.config.hidden_size
    n_layers = model.config.num_hidden_layers
    assert packed["forward"].count((ids.numel(), hidden)) == n_layers
    assert packed["backward"] == []


def test_checkpointing_switched_after_patching():
    """gradient_checkpointing_disable/enable on a patched model: the layers follow it (no
    checkpointing means the layer's own forward; enabling it again gives the whole-layer function
    back from the next call on), and the loss stays the same throughout."""
    model, tok = _lora_model(False)
    ids = _batch(tok)[:, :48]
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    patch_lora_layers(model)
    n_layers = model.config.num_hidden_layers

    def layer_nodes():
        return _graph_node_names(model(input_ids=ids, labels=ids).loss)["_LoRADecoderLayerBackward"]

    ref = _loss_and_grads(model, ids)[0]
    assert layer_nodes() == n_layers
    model.gradient_checkpointing_disable()
    assert layer_nodes() == 0
    assert _loss_and_grads(model, ids)[0] == pytest.approx(ref, rel=1e-5)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert _loss_and_grads(model, ids)[0] == pytest.approx(ref, rel=1e-5)  # first call: transformers' checkpoint
    assert layer_nodes() == n_layers


@GPU
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_whole_layer_on_gpu_with_liger(dtype):
    """On a GPU in bf16 as training runs on an A100/H100, and in fp16 as on a T4: Liger's RoPE and
    SwiGLU, torch's fused RMSNorm, SDPA's CUDA kernels, bitsandbytes' dequantisation. 16-bit sums in
    another order differ by about 1%, so the bound is loose; an error in the hand-written backward
    is far larger."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from helpers.train.model import apply_fast_kernels
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=512, intermediate_size=1408, num_hidden_layers=3,
                                         num_attention_heads=8, num_key_value_heads=2, vocab_size=2048))
    model = model.to(dtype)
    apply_fast_kernels(model, "liger", log=lambda *_: None)
    model = _quantize_and_add_lora(model, True, "cuda", dtype)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 2048, (2, 256), generator=g).cuda()
    mask = torch.ones_like(ids)
    mask[1, 200:] = 0
    _check_same_under_checkpointing(model, [(ids, None), (ids, mask)], rel_loss=2e-3, rel_grad=5e-2, rel_logits=3e-2)
    # Liger patched transformers' Llama module too: a model built afterwards on the CPU (notebook 06's
    # GGUF check) must still run there, and give the same logits as before any patching.
    torch.manual_seed(1)
    small = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=128)
    cpu_model = LlamaForCausalLM(small).eval()
    with torch.no_grad():
        assert torch.isfinite(cpu_model(input_ids=torch.arange(16)[None]).logits).all()


def test_falls_back_to_peft_where_not_fusable():
    """Dropout > 0 is peft's business: the patched layer must call peft's forward (same result
    under a fixed seed) rather than silently skip the dropout."""
    model, tok = load_model(EMB, quantization="none", for_training=True, verbose=False)
    cfg = TrainConfig(model_name=EMB, quantization="none", lora_r=4, lora_alpha=8, lora_dropout=0.5,
                      target_modules="q_proj,v_proj")
    torch.manual_seed(0)
    model = add_lora(model, cfg)
    for n_, p in model.named_parameters():
        if "lora_B" in n_:
            p.data.normal_(0, 0.05)
    model.train()
    ids = _batch(tok)
    torch.manual_seed(3)
    ref = model(input_ids=ids).logits
    patch_lora_layers(model)
    torch.manual_seed(3)
    out = model(input_ids=ids).logits
    assert torch.equal(out, ref)


def test_cached_adapter_casts_follow_weight_updates():
    """The bf16/fp32 casts of the adapter weights are cached for one training step. An optimizer
    that writes the weights behind autograd's back (as bitsandbytes' 8-bit optimizers do, through
    raw pointers: no version bump) must still be seen by the next forward."""
    model, tok = _lora_model(False)
    ids = _batch(tok)[:1, :32]  # bf16 on this CPU is slow
    patch_lora_layers(model)
    # oneDNN's native bf16 kernels (CPUs with AVX512-BF16) round the fused and peft's sums differently
    # enough to blur a 0.2% bound; ATen's own bf16 CPU kernels give the same result on every CPU.
    # fp32 adapters, bf16 matmuls: the casts are copies
    with torch.backends.mkldnn.flags(enabled=False), torch.autocast("cpu", dtype=torch.bfloat16):
        before = _loss_and_grads(model, ids)[0]
        with torch.no_grad():
            for n_, p in model.named_parameters():
                if "lora_B" in n_:
                    p.data.mul_(20.0)  # through .data: the parameter's version counter does not move
        after = _loss_and_grads(model, ids)[0]
        unpatch_lora_layers(model)
        reference = _loss_and_grads(model, ids)[0]
    assert after == pytest.approx(reference, rel=2e-3)  # bf16: peft sums in another order
    assert abs(after - before) > 10 * abs(after - reference)


def test_patched_model_survives_merge_and_unload():
    """After peft's merge_and_unload the MLP and attention blocks still carry the patched forward
    but hold plain Linear layers: they must run them as they are, with the merged result."""
    model, tok = _lora_model(False)
    ids = _batch(tok)
    patch_lora_layers(model)
    with torch.no_grad():
        before = model(input_ids=ids).logits
        merged = model.merge_and_unload()
        after = merged(input_ids=ids).logits
    assert torch.allclose(after, before, atol=1e-4, rtol=1e-4)


def test_fused_layer_passes_packed_document_bounds_to_attention():
    """A packed batch's varlen bounds (helpers.train.packing: cu_seq_lens_q/k, max_length_q/k) keep the
    fused whole-layer path and reach its attention call; an argument it does not know still falls
    back to the layer's own forward."""
    from helpers.train.fast_lora import layer_call
    model, tok = _lora_model(False)
    patch_lora_layers(model)
    layer = model.base_model.model.model.layers[0]
    x = torch.zeros(1, 6, model.config.hidden_size)
    cos_sin = model.base_model.model.model.rotary_emb(x, torch.arange(6)[None])
    cu = torch.tensor([0, 2, 6], dtype=torch.int32)
    kw = dict(attention_mask=None, position_ids=torch.tensor([[0, 1, 0, 1, 2, 3]]), position_embeddings=cos_sin,
              cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=4, max_length_k=4, use_cache=False)
    call = layer_call(layer, x, kw)
    assert call is not None
    c, params = call
    assert c.kwargs["cu_seq_lens_q"] is cu and c.kwargs["max_length_k"] == 4 and len(params) == 14
    assert layer_call(layer, x, dict(kw, output_attentions=True)) is None
    unpatch_lora_layers(model)
