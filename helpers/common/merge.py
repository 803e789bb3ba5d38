"""Fold a LoRA adapter into its base model's weights: notebook 06's export, and a training run's
MERGE setting.

An adapter trained with QLoRA learned against the NF4-rounded base weights; folding it into the
full-precision weights changes the model slightly. ``mode="nf4-dequantized"`` merges into the
dequantized NF4 weights instead, reproducing what was trained exactly; it needs a CUDA GPU.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from helpers.common.models import attach_adapter, has_cuda, hf_progress_bars_off, load_model
from helpers.common.run import check_adapter

MERGE_MODES = ("full", "nf4-dequantized")


class ExportError(RuntimeError):
    """An export that cannot be done as asked; the message says why and what to do."""


def merge_adapter(model_name: str, adapter_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  mode: str = "full", log=print) -> Path:
    """Merge a LoRA adapter into the base model's 16-bit weights and save safetensors + tokenizer.

    The base is loaded unquantized (bf16/fp16 on a GPU, fp32 on a CPU). With ``mode="full"`` the
    adapter is added to the full-precision weights. An adapter trained on a 4-bit (QLoRA) base
    learned corrections against the NF4-rounded weights, so the merged model differs slightly
    from the model you evaluated (base in NF4 + adapter). ``mode="nf4-dequantized"`` loads the
    base in 4 bits, dequantizes it to 16 bits and merges into those weights, reproducing the
    trained model exactly (at the quality of the NF4 base); it needs bitsandbytes and a CUDA GPU.
    Returns the merged folder.
    """
    import torch
    if mode not in MERGE_MODES:
        raise ExportError(f"mode={mode!r}: use one of {', '.join(MERGE_MODES)}.")
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    trained_on = check_adapter(adapter_dir, model_name, error=ExportError).run.quantization
    t0 = time.time()
    if mode == "nf4-dequantized":
        if not has_cuda() or importlib.util.find_spec("bitsandbytes") is None:
            raise ExportError("mode='nf4-dequantized' needs bitsandbytes on a CUDA GPU (dequantizing NF4 runs there). "
                              "On a CPU use mode='full' (the adapter merged into the full-precision base).")
        model, tok = load_model(model_name, quantization="4bit", verbose=False)
        model = model.dequantize()  # NF4 -> 16-bit nn.Linear, exactly the weights QLoRA trained against
        note = "merged into the dequantized NF4 base (the weights the adapter was trained against)"
    else:
        model, tok = load_model(model_name, quantization="16bit" if has_cuda() else "none", verbose=False)
        note = f"merged into the {'16-bit' if has_cuda() else 'fp32'} base weights"
        if trained_on in ("4bit", "8bit"):
            log(f"Note: this adapter was trained on a {trained_on} (quantized) base. It learned against the "
                "rounded weights, so merging it into the full-precision base changes the model slightly; "
                "compare a few answers (notebook 05), or use mode='nf4-dequantized' on a GPU to merge into "
                "the dequantized 4-bit weights instead. Merging into a quantized base itself (re-rounding "
                "after the merge) would cost more quality, which is why we never do that.")
    model = attach_adapter(model, str(adapter_dir), model_name)
    model = model.merge_and_unload()
    model.eval()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with hf_progress_bars_off():  # no "Writing model shards" bar: the merge's line says it
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    info = {"base_model": model_name, "adapter": str(adapter_dir), "mode": mode, "trained_on": trained_on,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""), "note": note,
            "merged_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    (tmp / "MERGE_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    n_files = len(list(out_dir.glob("*.safetensors")))
    log(f"Merged {adapter_dir} into {model_name} ({note}) in {time.time() - t0:.0f} s: {out_dir} "
        f"({info['dtype']} weights, {n_files} safetensors file{'s' if n_files != 1 else ''})")
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out_dir
