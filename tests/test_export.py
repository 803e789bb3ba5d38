"""Merging, GGUF export with a round trip through transformers' GGUF loader, and Hub refusals."""
import json
import shutil

import pytest

from helpers.core.config import ConfigError
from helpers.chat.export import ExportConfig, ExportError, check_gguf, export_gguf, merge_adapter, push_to_hub
from helpers.common.run import RunDir
from tiny_adapter import EMBEDDED, tiny_adapter


@pytest.fixture(scope="session")
def adapter(tmp_path_factory):
    return tiny_adapter(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def merged(adapter, tmp_path_factory):
    """The adapter merged; its run folder says it was trained on a 4-bit base (as on Colab), so the
    merge must explain what that means (the weights are the same either way)."""
    work = tmp_path_factory.mktemp("export")
    shutil.copytree(adapter, work / "run" / "adapter")
    RunDir(work / "run").update("metrics", {"quantization": "4bit"})
    logs = []
    out = merge_adapter(EMBEDDED, work / "run" / "adapter", work / "merged", log=logs.append)
    return out, logs


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
    assert any("rounded weights" in l and "nf4-dequantized" in l for l in logs), logs
    with pytest.raises(ExportError, match="CUDA"):
        merge_adapter(EMBEDDED, adapter, tmp_path / "m2", mode="nf4-dequantized")


def test_gguf_round_trip_of_the_tuned_model(merged, tmp_path):
    out, _ = merged
    path = export_gguf(out, tmp_path / "gguf", "f16", name="tuned")
    assert path.name == "tuned-f16.gguf" and (tmp_path / "gguf" / "Modelfile").read_text().count("FROM ./tuned-f16.gguf")
    r = check_gguf(out, path, max_new_tokens=12)
    assert r["tokenizer_equal"] and r["greedy_equal"], r
    # f16 rounding moves logits a little; a near-tie may flip on a prompt position, the answer must not
    assert r["reference"] and r["max_logit_diff"] < 0.25 and r["top1_agree"] >= 0.9


def test_gguf_metadata_is_what_llama_cpp_reads(merged, tmp_path):
    import gguf
    out, _ = merged
    path = export_gguf(out, tmp_path, "q8_0", name="q")
    r = gguf.GGUFReader(str(path))
    f = {k: v.contents() for k, v in r.fields.items() if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")}
    assert f["general.architecture"] == "llama" and f["llama.attention.head_count_kv"] == 3
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.eos_token_id"] == 2
    assert "<|im_start|>" in f["tokenizer.chat_template"]
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in types  # tied embeddings


def _with_config(merged_dir, folder, **changes):
    """A model folder like the merged one (its files linked) whose config.json has ``changes``."""
    folder.mkdir()
    for f in merged_dir.iterdir():
        if f.name != "config.json":
            (folder / f.name).symlink_to(f)
    cfg = json.loads((merged_dir / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **changes}))
    return folder


def test_gguf_rope_scaling_and_refusals(merged, tmp_path):
    """llama3 rope scaling writes llama.cpp's rope_freqs tensor, linear scaling its two keys; an
    unsupported scaling or architecture is refused with its name and leaves no file behind."""
    import gguf
    import numpy as np
    from helpers.chat.export import _llama3_rope_factors
    out, _ = merged
    head_dim = 64  # SmolLM2-135M: 576 / 9 heads
    # the merged config.json keeps rope settings in rope_parameters (transformers 5), with rope_theta
    llama3 = {"rope_theta": 100000.0, "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 1024}
    m3 = _with_config(out, tmp_path / "llama3", rope_parameters=llama3)
    r = gguf.GGUFReader(str(export_gguf(m3, tmp_path / "g3", "q8_0", log=lambda *_: None)))
    freqs = [t for t in r.tensors if t.name == "rope_freqs.weight"]  # the name llama.cpp loads
    assert len(freqs) == 1 and len(r.tensors) == 1 + len(gguf.GGUFReader(str(
        export_gguf(out, tmp_path / "g0", "q8_0", log=lambda *_: None))).tensors)
    freqs = freqs[0]
    expected = _llama3_rope_factors(json.loads((m3 / "config.json").read_text()), head_dim)
    assert len(expected) == head_dim // 2 and expected[0] == 1.0 and expected[-1] == 32.0
    assert np.array_equal(np.asarray(freqs.data).ravel(), expected)
    lin = _with_config(out, tmp_path / "linear", rope_parameters={"rope_theta": 100000.0, "rope_type": "linear", "factor": 2.0})
    f = {k: v.contents() for k, v in gguf.GGUFReader(str(export_gguf(lin, tmp_path / "gl", "q8_0",
                                                                       log=lambda *_: None))).fields.items()}
    assert f["llama.rope.scaling.type"] == "linear" and f["llama.rope.scaling.factor"] == 2.0
    yarn = _with_config(out, tmp_path / "yarn", rope_parameters={"rope_theta": 100000.0, "rope_type": "yarn", "factor": 4.0})
    with pytest.raises(ExportError, match="rope scaling 'yarn' is not supported"):
        export_gguf(yarn, tmp_path / "gy", "f16")
    assert list((tmp_path / "gy").iterdir()) == []
    qwen = _with_config(out, tmp_path / "qwen", model_type="qwen2")
    with pytest.raises(ExportError, match="supports the Llama architecture; .* is 'qwen2'"):
        export_gguf(qwen, tmp_path / "gq", "f16")
    assert not (tmp_path / "gq").exists()


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
    with pytest.raises(ExportError, match="no config.json"):
        export_gguf(tmp_path / "nothing", tmp_path / "g")


def test_push_without_token_is_refused_before_any_network(adapter, monkeypatch):
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ExportError, match="HF_TOKEN"):
        push_to_hub(adapter, "someone/tiny-chat")
    with pytest.raises(ExportError, match="your-name/model-name"):
        push_to_hub(adapter, "not a repo id", token="x")


def test_export_config():
    assert ExportConfig.from_params({}).push_to_hub is False  # off by default
    with pytest.raises(ConfigError, match="HUB_REPO_ID"):
        ExportConfig.from_params({"PUSH_TO_HUB": True})
    with pytest.raises(ConfigError, match="GGUF_TYPE"):
        ExportConfig.from_params({"GGUF_TYPE": "q4"})


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
