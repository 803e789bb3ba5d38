"""Merging, GGUF export with a round trip through transformers' GGUF loader, and Hub refusals."""
import json
import shutil

import pytest

from helpers.config import ConfigError
from helpers.export import ExportConfig, ExportError, check_gguf, export_gguf, merge_adapter, push_to_hub
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
    (work / "run" / "metrics.json").write_text(json.dumps({"quantization": "4bit"}))
    logs = []
    out = merge_adapter(EMBEDDED, work / "run" / "adapter", work / "merged", log=logs.append)
    return out, logs


def test_merge_equals_adapter_on(adapter, merged):
    import torch
    from transformers import AutoModelForCausalLM
    from helpers.models import load_model
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
