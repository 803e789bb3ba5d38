"""Merging, GGUF export with a round trip through transformers' GGUF loader, and Hub refusals."""
import json

import pytest

from helpers.core.config import ConfigError
from helpers.chat.export import ExportConfig, ExportError, check_gguf, export_gguf, push_to_hub


def test_gguf_round_trip_of_the_tuned_model(merged, tmp_path):
    out, _ = merged
    lines = []
    path = export_gguf(out, tmp_path / "gguf", "f16", name="tuned", log=lines.append)
    assert path.name == "tuned-f16.gguf"
    modelfile = tmp_path / "gguf" / "Modelfile"
    assert modelfile.read_text().count("FROM ./tuned-f16.gguf")
    # what a person reads: the commands with the file's and the Modelfile's whole paths
    assert f"llama-cli -m {path} -cnv" in lines[0] and f"ollama create tuned -f {modelfile}" in lines[0]
    r = check_gguf(out, path, max_new_tokens=12, log=lines.append)
    assert "\\'" not in lines[1] and '\\"' not in lines[1] and "merged: “" in lines[1], lines[1]
    assert r["tokenizer_equal"] and r["greedy_equal"], r
    # f16 rounding moves logits a little; a near-tie may flip on a prompt position, the answer must not
    assert r["reference"] and r["max_logit_diff"] < 0.25 and r["top1_agree"] >= 0.9


def test_gguf_metadata_is_what_llama_cpp_reads(merged, tmp_path):
    import gguf
    out, _ = merged
    path = export_gguf(out, tmp_path, "q8_0", name="q")
    r = gguf.GGUFReader(str(path))
    big = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")
    f = {k: v.contents() for k, v in r.fields.items() if k not in big}
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
    from helpers.chat.export import llama3_rope_factors
    out, _ = merged
    head_dim = 64  # SmolLM2-135M: 576 / 9 heads
    # the merged config.json keeps rope settings in rope_parameters (transformers 5), with rope_theta
    llama3 = {"rope_theta": 100000.0, "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 1024}
    m3 = _with_config(out, tmp_path / "llama3", rope_parameters=llama3)
    r = gguf.GGUFReader(str(export_gguf(m3, tmp_path / "g3", "q8_0", log=lambda *_: None)))
    freqs = [t for t in r.tensors if t.name == "rope_freqs.weight"]  # the name llama.cpp loads
    assert len(freqs) == 1 and len(r.tensors) == 1 + len(gguf.GGUFReader(str(
        export_gguf(out, tmp_path / "g0", "q8_0", log=lambda *_: None))).tensors)
    freqs = freqs[0]
    expected = llama3_rope_factors(json.loads((m3 / "config.json").read_text()), head_dim)
    assert len(expected) == head_dim // 2 and expected[0] == 1.0 and expected[-1] == 32.0
    assert np.array_equal(np.asarray(freqs.data).ravel(), expected)
    lin = _with_config(out, tmp_path / "linear",
                       rope_parameters={"rope_theta": 100000.0, "rope_type": "linear", "factor": 2.0})
    f = {k: v.contents() for k, v in gguf.GGUFReader(str(export_gguf(lin, tmp_path / "gl", "q8_0",
                                                                       log=lambda *_: None))).fields.items()}
    assert f["llama.rope.scaling.type"] == "linear" and f["llama.rope.scaling.factor"] == 2.0
    yarn = _with_config(out, tmp_path / "yarn",
                        rope_parameters={"rope_theta": 100000.0, "rope_type": "yarn", "factor": 4.0})
    with pytest.raises(ExportError, match="rope scaling 'yarn' is not supported"):
        export_gguf(yarn, tmp_path / "gy", "f16")
    assert list((tmp_path / "gy").iterdir()) == []
    qwen = _with_config(out, tmp_path / "qwen", model_type="qwen2")
    with pytest.raises(ExportError, match="supports the Llama architecture; .* is 'qwen2'"):
        export_gguf(qwen, tmp_path / "gq", "f16")
    assert not (tmp_path / "gq").exists()


def test_gguf_of_a_folder_that_is_no_model_is_refused(tmp_path):
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
