"""Folding a LoRA adapter into its base: the merged model answers as the base with the adapter on,
says what a 4-bit-trained adapter means for the merge, and refuses adapters it cannot fold."""
import json
import shutil

import pytest

from helpers.common.merge import ExportError, merge_adapter
from tiny_adapter import EMBEDDED


def test_merge_equals_adapter_on(adapter, merged):
    import torch
    from transformers import AutoModelForCausalLM
    from helpers.common.models import load_model
    out, logs = merged
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    info = json.loads((out / "MERGE_INFO.json").read_text())
    assert info["dtype"] == "float32" and info["mode"] == "full"
    peft_model, tok = load_model(EMBEDDED, quantization="none", adapter=str(adapter), verbose=False)
    m = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert not any("lora" in n for n, _ in m.named_parameters())
    ids = tok.apply_chat_template([{"role": "user", "content": "What do you do on weekends?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.inference_mode():
        a, b = peft_model(ids).logits, m(ids).logits
        with peft_model.disable_adapter():
            base = peft_model(ids).logits
    assert (a - b).abs().max() < 1e-3
    assert (a - base).abs().max() > 1e-3  # the merge did fold the adapter in


def test_merge_explains_quantized_training(adapter, merged, tmp_path):
    _, logs = merged
    assert any("rounded weights" in line and "nf4-dequantized" in line for line in logs), logs
    with pytest.raises(ExportError, match="CUDA"):
        merge_adapter(EMBEDDED, adapter, tmp_path / "m2", mode="nf4-dequantized")


def test_adapter_for_another_base_is_refused(adapter, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(adapter, other)
    cfg = json.loads((other / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "meta-llama/Llama-3.2-1B-Instruct"
    (other / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="trained on 'meta-llama/Llama-3.2-1B-Instruct'"):
        merge_adapter(EMBEDDED, other, tmp_path / "m")
    with pytest.raises(ExportError, match="not a LoRA adapter"):
        merge_adapter(EMBEDDED, tmp_path / "nothing", tmp_path / "m")


@pytest.mark.gpu  # bitsandbytes' NF4 dequantisation
def test_nf4_dequantized_merge_reproduces_the_4bit_model(tmp_path):
    """mode="nf4-dequantized" merges the adapter into the weights QLoRA trained against: the merged
    model answers like the 4-bit base with the adapter on (bf16 rounding apart), much closer than
    mode="full", which merges into the full-precision weights the adapter never saw. A random-weight
    Llama with the real Llama 3 tokenizer (no download on the GPU machine)."""
    import os
    from pathlib import Path

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from helpers.common.models import load_model
    tok_dir = os.environ.get("BENCH_TOKENIZER")
    if not tok_dir:
        from offline import llama3_tokenizer_dir
        tok_dir = llama3_tokenizer_dir()
    base = tmp_path / "base"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(hidden_size=256, intermediate_size=704, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=128256)).to(torch.bfloat16).save_pretrained(base)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(tok_dir) / f, base / f)
    model4, _ = load_model(str(base), quantization="4bit", verbose=False)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model4, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.05)  # peft starts B at zero: make the adapter matter
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.randint(0, 128000, (2, 64), generator=torch.Generator().manual_seed(1)).cuda()
    with torch.inference_mode():
        ref = peft_model(input_ids=ids).logits.float()
        with peft_model.disable_adapter():
            base_only = peft_model(input_ids=ids).logits.float()
    del peft_model, model4
    diff = {}
    for mode in ("nf4-dequantized", "full"):
        out = merge_adapter(str(base), tmp_path / "adapter", tmp_path / mode, mode=mode, log=lambda *_: None)
        assert json.loads((out / "MERGE_INFO.json").read_text())["mode"] == mode
        merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16).cuda().eval()
        with torch.inference_mode():
            diff[mode] = (merged(input_ids=ids).logits.float() - ref).abs().max().item()
        del merged
    adapter_effect = (ref - base_only).abs().max().item()
    assert diff["nf4-dequantized"] < 0.25 * diff["full"], diff
    assert diff["nf4-dequantized"] < 0.1 * adapter_effect, (diff, adapter_effect)
