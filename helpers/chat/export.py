"""Export a tuned model: merge the adapter, write GGUF for llama.cpp/Ollama, push to the Hub.

* ``merge_adapter(model_name, adapter_dir, out_dir)`` loads the base model in 16 bits (fp32 on a
  CPU), never 4-bit, attaches the LoRA adapter, folds it in (``merge_and_unload``) and saves
  safetensors plus the tokenizer. An adapter trained with QLoRA learned against the NF4-rounded
  base weights; folding it into the full-precision weights changes the model slightly (usually
  harmless, but measure it). ``mode="nf4-dequantized"`` merges into the dequantized NF4 weights
  instead, reproducing what was trained exactly; it needs bitsandbytes on a CUDA GPU.
* ``export_gguf(model_dir, out_dir, out_type="f16")`` writes a Llama-architecture GGUF file with
  our own converter (the ``gguf`` package; no llama.cpp needed): llama hyperparameters, tensors
  renamed and q/k permuted as llama.cpp expects, the byte-level BPE tokenizer, special tokens and
  the chat template; f32, f16 or Q8_0. An Ollama ``Modelfile`` is written beside it.
* ``check_gguf(model_dir, gguf_path)`` loads the GGUF back with transformers and compares a greedy
  answer and the logits with the merged model's.
* ``push_to_hub(folder, repo_id)`` uploads an adapter or merged folder; it needs a token (``HF_TOKEN``
  in the environment or Colab's secrets) and refuses clearly, before any network call, without one.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.merge import MERGE_MODES, ExportError, merge_adapter  # noqa: F401  (merge_adapter: part of notebook 06's export)
from helpers.common.models import hf_progress_bars_off, hf_token, stop_token_ids
from helpers.common.run import is_adapter
from helpers.core.config import ConfigError, StepConfig

GGUF_TYPES = ("f32", "f16", "q8_0")
CHECK_PROMPT = "Tell me about your favourite book in two sentences."


@dataclass
class ExportConfig(StepConfig, notebooks=("06",)):
    """What notebook 06 exports and where it goes."""
    merge: bool = True  # merge the adapter into the base: safetensors in outputs/RUN_NAME/merged (16-bit on GPU, fp32
                        # on CPU)
    merge_mode: str = "full"  # "full" (full-precision base) or "nf4-dequantized" (the NF4 weights QLoRA saw; CUDA only)
    gguf: bool = True  # also write a GGUF file for llama.cpp / Ollama from the merged model (outputs/RUN_NAME/gguf/)
    gguf_type: str = "f16"  # "f16", "f32" or "q8_0"
    push_to_hub: bool = False  # upload to the Hugging Face Hub (needs an HF_TOKEN secret); off by default
    hub_repo_id: str = ""  # "your-name/model-name" on the Hub
    push_what: str = "adapter"  # "adapter" (small: a few MB) or "merged" (the whole model)
    hub_private: bool = True  # create the Hub repository as private

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        return dict(merge=True, gguf=True, gguf_type="f16", push_to_hub=False)

    def validate(self) -> None:
        if self.merge_mode not in MERGE_MODES:
            raise ConfigError(f"MERGE_MODE={self.merge_mode!r}: use one of {', '.join(MERGE_MODES)}.")
        if self.gguf_type not in GGUF_TYPES:
            raise ConfigError(f"GGUF_TYPE={self.gguf_type!r}: use one of {', '.join(GGUF_TYPES)}.")
        if self.push_what not in ("adapter", "merged"):
            raise ConfigError(f"PUSH_WHAT={self.push_what!r}: use 'adapter' or 'merged'.")
        if self.gguf and not self.merge:
            raise ConfigError("GGUF=True needs MERGE=True: the GGUF file is written from the merged model.")
        if self.push_to_hub and not self.hub_repo_id:
            raise ConfigError("PUSH_TO_HUB=True needs HUB_REPO_ID, e.g. 'your-name/llama-kit-chat'.")


# ----------------------------------------------------------------------------------------------
# GGUF
# ----------------------------------------------------------------------------------------------
def _permute(w, n_head: int, n_head_kv: int | None):
    """llama.cpp's q/k permutation (interleaved rotary halves); transformers' GGUF loader undoes it."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rope_parameters(cfg: dict) -> dict:
    params = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    if "rope_theta" not in params and "rope_theta" in cfg:
        params["rope_theta"] = cfg["rope_theta"]
    return params


def llama3_rope_factors(cfg: dict, head_dim: int):
    """The ``rope_freqs`` tensor llama.cpp uses for Llama 3.1/3.2's "llama3" rope scaling."""
    import numpy as np
    rp = _rope_parameters(cfg)
    base = float(rp.get("rope_theta", 10000.0))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = float(rp.get("factor", 8.0))
    low, high = float(rp.get("low_freq_factor", 1.0)), float(rp.get("high_freq_factor", 4.0))
    old_ctx = float(rp.get("original_max_position_embeddings", 8192))
    low_wl, high_wl = old_ctx / low, old_ctx / high
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old_ctx / wl - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _pre_tokenizer_name(tj: dict) -> str:
    """llama.cpp's ``tokenizer.ggml.pre`` for this tokenizer.json's pre-tokenizer."""
    text = json.dumps(tj.get("pre_tokenizer"))
    if "\\\\p{N}{1,3}" in text and "(?i:'s|'t|'re|'ve|'m|'ll|'d)" in text:
        return "llama-bpe"  # Llama 3
    if '"Digits"' in text and '"individual_digits": true' in text:
        return "smollm"
    return "gpt-2"


def _tokenizer_metadata(model_dir: Path, vocab_size: int) -> dict:
    """Tokens, token types, merges and special ids from tokenizer.json (byte-level BPE only)."""
    import gguf
    tj_path = model_dir / "tokenizer.json"
    if not tj_path.exists():
        raise ExportError(f"{model_dir} has no tokenizer.json; GGUF export needs a fast (tokenizers) tokenizer.")
    tj = json.loads(tj_path.read_text())
    model = tj.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        fallback = " with byte fallback (sentencepiece)" if model.get("byte_fallback") else ""
        raise ExportError("GGUF export supports byte-level BPE tokenizers (Llama 3, SmolLM2, GPT-2 style); "
                          f"this one is {model.get('type')!r}{fallback}.")
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in tj.get("added_tokens", [])}
    for content, t in added.items():
        vocab[content] = t["id"]
    by_id = {i: t for t, i in vocab.items()}
    n = max(vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for i in range(n):
        tok = by_id.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif tok in added:
            tokens.append(tok)
            types.append(gguf.TokenType.CONTROL if added[tok].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(tok)
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {"tokens": tokens, "types": [int(t) for t in types], "merges": merges, "pre": _pre_tokenizer_name(tj),
            "vocab": vocab}


def _special_ids(model_dir: Path, vocab: dict[str, int]) -> dict[str, int]:
    tc_path = model_dir / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text()) if tc_path.exists() else {}
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        val = tc.get(key)
        if isinstance(val, dict):
            val = val.get("content")
        if val in vocab:
            out[key] = vocab[val]
    gen = model_dir / "generation_config.json"
    if "eos_token" not in out and gen.exists():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        if eos is not None:
            out["eos_token"] = int(eos)
    return out


def _chat_template(model_dir: Path) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text()
    tc_path = model_dir / "tokenizer_config.json"
    if tc_path.exists():
        tpl = json.loads(tc_path.read_text()).get("chat_template")
        if isinstance(tpl, str):
            return tpl
    return None


def _read_weights(model_dir: Path) -> dict:
    from safetensors.numpy import load_file
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir} holds no .safetensors weights: export from a merged model folder "
                          "(merge_adapter writes one).")
    weights = {}
    for f in files:
        try:
            weights.update(load_file(str(f)))
        except TypeError:  # bf16 has no numpy dtype: go through torch
            from safetensors.torch import load_file as load_torch
            weights.update({k: v.float().numpy() for k, v in load_torch(str(f)).items()})
    return weights


@dataclass(frozen=True)
class _LlamaShape:
    """The hyperparameters of a Llama ``config.json`` that the GGUF header and the tensors need."""
    cfg: dict  # the config.json itself
    n_head: int
    n_kv: int
    hidden: int
    head_dim: int
    vocab_size: int
    tie: bool  # tied embeddings: no output.weight, llama.cpp reuses token_embd
    rope: dict  # rope parameters (rope_theta and any scaling)
    rope_type: str  # "default", "linear" or "llama3" are supported

    @property
    def n_layers(self) -> int:
        return int(self.cfg["num_hidden_layers"])


def _read_llama_config(model_dir: Path) -> _LlamaShape:
    """The model folder's config.json, refusing a folder without one or a non-Llama architecture."""
    cfg_path = model_dir / "config.json"
    if not cfg_path.exists():
        raise ExportError(f"{model_dir} holds no config.json: not a model folder. Merge the adapter first "
                          "(merge_adapter) and export the merged folder.")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("model_type") != "llama":
        raise ExportError(f"GGUF export here supports the Llama architecture; {model_dir} is "
                          f"{cfg.get('model_type')!r}. Use llama.cpp's convert_hf_to_gguf.py for other families.")
    n_head = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    rope = _rope_parameters(cfg)
    return _LlamaShape(cfg=cfg, n_head=n_head, n_kv=int(cfg.get("num_key_value_heads") or n_head), hidden=hidden,
                       head_dim=int(cfg.get("head_dim") or hidden // n_head), vocab_size=int(cfg["vocab_size"]),
                       tie=bool(cfg.get("tie_word_embeddings", False)),
                       rope=rope, rope_type=str(rope.get("rope_type") or rope.get("type") or "default"))


def _add_model_metadata(w, shape: _LlamaShape, name: str, out_type: str, n_tokens: int) -> None:
    """The llama hyperparameters llama.cpp reads: sizes, heads, rope, norm epsilon, file type."""
    import gguf
    cfg = shape.cfg
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[out_type]
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(n_tokens)
    w.add_context_length(int(cfg.get("max_position_embeddings", 2048)))
    w.add_embedding_length(shape.hidden)
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_block_count(shape.n_layers)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_kv)
    w.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim != shape.hidden // shape.n_head:
        w.add_key_length(shape.head_dim)
        w.add_value_length(shape.head_dim)
    w.add_rope_freq_base(float(shape.rope.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-5)))
    if shape.rope_type == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(shape.rope["factor"]))
    elif shape.rope_type not in ("default", "llama3"):
        raise ExportError(f"rope scaling {shape.rope_type!r} is not supported by this exporter.")


def _add_tokenizer_metadata(w, model_dir: Path, tokmeta: dict) -> None:
    """The byte-level BPE tokenizer (tokens, types, merges), special token ids, whether a BOS
    token is added, and the chat template."""
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(tokmeta["pre"])
    w.add_token_list(tokmeta["tokens"])
    w.add_token_types(tokmeta["types"])
    w.add_token_merges(tokmeta["merges"])
    specials = _special_ids(model_dir, tokmeta["vocab"])
    for key, adder in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                       ("unk_token", w.add_unk_token_id), ("pad_token", w.add_pad_token_id)):
        if key in specials:
            adder(specials[key])
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tok("a", add_special_tokens=True)["input_ids"]
    w.add_add_bos_token(bool(ids) and tok.bos_token_id is not None and ids[0] == tok.bos_token_id)
    w.add_add_space_prefix(False)
    tpl = _chat_template(model_dir)
    if tpl:
        w.add_chat_template(tpl)


def _gguf_tensor_name(name_map, hf_name: str) -> str:
    """llama.cpp's name of a transformers tensor (``model.layers.0.self_attn.q_proj.weight`` ->
    ``blk.0.attn_q.weight``)."""
    new = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if new is None:
        raise ExportError(f"Cannot map tensor {hf_name!r} to a GGUF name (not a plain Llama model?).")
    return new


def _add_tensor(w, new: str, data, qtype) -> None:
    """One tensor in the file's type: vectors (norms) stay f32; matrices f32, f16 or Q8_0 (f16 when
    a row is not a multiple of 32, which Q8_0 needs)."""
    import gguf
    import numpy as np
    if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        w.add_tensor(new, np.ascontiguousarray(data, dtype=np.float32))
    elif qtype == gguf.GGMLQuantizationType.F16:
        w.add_tensor(new, np.ascontiguousarray(data, dtype=np.float16))
    else:
        if data.shape[-1] % 32:
            w.add_tensor(new, np.ascontiguousarray(data, dtype=np.float16))  # Q8_0 needs rows of 32k
        else:
            q = gguf.quants.quantize(np.ascontiguousarray(data), qtype)
            w.add_tensor(new, q, raw_shape=q.shape, raw_dtype=qtype)


def _add_tensors(w, weights: dict, shape: _LlamaShape, out_type: str) -> int:
    """Every weight under its llama.cpp name, q/k permuted, in the file's type (plus ``rope_freqs``
    for llama3 rope scaling); skips rotary caches and a tied ``lm_head``. Returns the count."""
    import gguf
    import numpy as np
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.n_layers)
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0}[out_type]
    written = 0
    if shape.rope_type == "llama3":
        # llama.cpp looks the table up as "rope_freqs.weight", the name its own converter writes
        w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                     llama3_rope_factors(shape.cfg, shape.head_dim))
        written += 1
    for hf_name, data in weights.items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        if hf_name == "lm_head.weight" and shape.tie:
            continue
        new = _gguf_tensor_name(name_map, hf_name)
        data = np.asarray(data, dtype=np.float32)
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = _permute(data, shape.n_head, shape.n_head)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = _permute(data, shape.n_head, shape.n_kv)
        _add_tensor(w, new, data, qtype)
        written += 1
    return written


def _write_modelfile(out_dir: Path, name: str, gguf_path: Path, vocab: dict[str, int]) -> Path:
    """An Ollama ``Modelfile`` beside the GGUF file, with the end-of-turn tokens as stops."""
    stops = sorted({t for t in ("<|eot_id|>", "<|im_end|>", "<|end_of_text|>") if t in vocab})
    modelfile = out_dir / "Modelfile"
    modelfile.write_text(f"# Ollama: `ollama create {name} -f Modelfile` then `ollama run {name}`\n"
                         f"FROM ./{gguf_path.name}\n" + "".join(f'PARAMETER stop "{s}"\n' for s in stops))
    return modelfile


def export_gguf(model_dir: str | os.PathLike, out_dir: str | os.PathLike, out_type: str = "f16",
                name: str | None = None, log=print) -> Path:
    """Write ``<out_dir>/<name>-<type>.gguf`` from a Llama-architecture model folder; returns its path.

    Norms stay f32 (as llama.cpp writes them); matrices are f16, f32 or Q8_0. With tied embeddings
    no ``output.weight`` is written and llama.cpp reuses ``token_embd``. The file is written as
    ``.gguf.partial`` and renamed when complete.
    """
    import gguf
    if out_type not in GGUF_TYPES:
        raise ExportError(f"out_type={out_type!r}: use one of {', '.join(GGUF_TYPES)}.")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    shape = _read_llama_config(model_dir)
    name = name or model_dir.name
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{out_type}.gguf"
    tmp = path.with_suffix(".gguf.partial")

    t0 = time.time()
    weights = _read_weights(model_dir)
    tokmeta = _tokenizer_metadata(model_dir, shape.vocab_size)
    w = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _add_model_metadata(w, shape, name, out_type, len(tokmeta["tokens"]))
    _add_tokenizer_metadata(w, model_dir, tokmeta)
    written = _add_tensors(w, weights, shape, out_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    modelfile = _write_modelfile(out_dir, name, path, tokmeta["vocab"])
    log(f"GGUF ({out_type}, {written} tensors, {path.stat().st_size / 2**20:.0f} MiB) written in "
        f"{time.time() - t0:.0f}s: {path}\n  llama.cpp: llama-cli -m {path} -cnv\n"
        f"  Ollama: ollama create {name} -f {modelfile}, then ollama run {name} (the Modelfile: {modelfile})")
    return path


def check_gguf(model_dir: str | os.PathLike, gguf_path: str | os.PathLike, prompt: str = CHECK_PROMPT,
               max_new_tokens: int = 24, log=print) -> dict:
    """Load the GGUF back with transformers and compare it with the model folder it came from.

    Returns ``{"greedy_equal", "reference", "gguf", "max_logit_diff", "top1_agree"}``: the greedy
    answers to ``prompt`` of both models, the largest logit difference on the prompt, and the share
    of prompt positions where both predict the same next token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model_dir, gguf_path = Path(model_dir), Path(gguf_path)
    if not gguf_path.exists():
        raise ExportError(f"{gguf_path} does not exist: run export_gguf first.")
    with hf_progress_bars_off():  # the check's lines say what was loaded
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        ref = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        back = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                    dtype=torch.float32).eval()
        gtok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    msgs = [{"role": "user", "content": prompt}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) if tok.chat_template else prompt
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    gids = gtok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    same_tokens = ids.shape == gids.shape and bool((ids == gids).all())
    eos = stop_token_ids(tok)
    answers = []
    with torch.inference_mode():
        l_ref, l_back = ref(ids).logits[0], back(ids).logits[0]
        for m in (ref, back):
            out = m.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos[0])
            answers.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    result = {"greedy_equal": answers[0] == answers[1], "reference": answers[0], "gguf": answers[1],
              "max_logit_diff": round(float((l_ref - l_back).abs().max()), 5),
              "top1_agree": round(float((l_ref.argmax(-1) == l_back.argmax(-1)).float().mean()), 4),
              "tokenizer_equal": same_tokens}
    log(f"GGUF round trip {'OK' if result['greedy_equal'] and same_tokens else 'MISMATCH'}: greedy answers "
        f"{'equal' if result['greedy_equal'] else 'differ'}, tokenizer {'equal' if same_tokens else 'differs'}, "
        f"max logit difference {result['max_logit_diff']}, same next token at {result['top1_agree']:.0%} of positions."
        f"\n  merged: {_quoted(answers[0])}\n  gguf:   {_quoted(answers[1])}")
    return result


def _quoted(text: str) -> str:
    """An answer on one readable line: in curly quotes, line breaks shown as ⏎, nothing escaped."""
    return "“" + " ⏎ ".join(line.strip() for line in text.splitlines() if line.strip()) + "”"


# ----------------------------------------------------------------------------------------------
# Hub
# ----------------------------------------------------------------------------------------------
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def push_to_hub(folder: str | os.PathLike, repo_id: str, private: bool = True, token: str | None = None,
                log=print) -> str:
    """Upload an adapter or merged-model folder to ``repo_id`` on the Hugging Face Hub; returns its URL.

    The token comes from ``token``, else ``HF_TOKEN`` in the environment or Colab's secrets. Without
    one this refuses before any network call.
    """
    folder = Path(folder)
    if not repo_id or not REPO_ID.match(repo_id):
        raise ExportError(f"HUB_REPO_ID={repo_id!r} is not a Hub repository id of the form 'your-name/model-name'.")
    if not folder.is_dir() or not (is_adapter(folder) or (folder / "config.json").exists()):
        raise ExportError(f"{folder} is not an adapter or model folder: nothing to push.")
    token = token or hf_token()
    if not token:
        raise ExportError("Pushing to the Hub needs a token with write access and none was found. On Colab add "
                          "a secret named HF_TOKEN (key icon in the left bar, allow notebook access); elsewhere "
                          "set HF_TOKEN in the environment. Create one at https://huggingface.co/settings/tokens.")
    from huggingface_hub import HfApi
    api = HfApi(token=token)
    readme = folder / "README.md"
    if not readme.exists():
        kind = "LoRA adapter" if is_adapter(folder) else "merged model"
        readme.write_text(f"---\nlibrary_name: {'peft' if kind == 'LoRA adapter' else 'transformers'}\n"
                          f"tags: [llama-kit]\n---\n# {repo_id.split('/')[1]}\n\nA {kind} made with the "
                          "llama-kit notebooks (notebook 04 fine-tune, notebook 06 export).\n")
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload from llama-kit notebook 06")
    log(f"Pushed {folder} to {url} ({'private' if private else 'public'}).")
    return str(url)
