"""Generation: batched answers with left padding, the KV cache and proper stopping.

``generate_answers(model, tokenizer, prompts)`` answers many prompts at once (greedy by default),
stopping each one at EOS or an end-of-turn marker. ``base_and_tuned`` answers with the base model
and with the adapter on one loaded model (the adapter switched off, then on), so the model is
never loaded twice.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from helpers.common.models import load_model, model_device, stop_token_ids
from helpers.common.prompts import prompt_text, reference, to_messages
from helpers.common.rows import cut_at_reference
from helpers.common.transcript import Answer, conversation_markdown, conversation_text, heading
from helpers.core.files import DatasetFiles
from helpers.core.jsonl import read_jsonl
from helpers.core.show import in_notebook


def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 256, batch_size: int = 16,
                     do_sample: bool = False, temperature: float = 0.7, top_p: float = 0.9,
                     stop_strings: list[str] | None = None, seed: int = 0,
                     max_prompt_tokens: int | None = None) -> dict:
    """Answers to ``prompts`` (texts already in the model's prompt format).

    Returns ``{"answers": [...], "new_tokens": [...], "stopped": [...], "prompt_tokens": [...],
    "truncated": n, "seconds": s, "tokens_per_second": x}``. ``stopped[i]`` is whether answer i
    ended on a stop token (EOS or end-of-turn) rather than at ``max_new_tokens``.
    Prompts are tokenized once, sorted by token length and batched with left padding (so a batch
    wastes little on padding and shares the KV cache well); answers come back in the original
    order. ``max_prompt_tokens``: a longer prompt keeps only its last that many tokens (the end,
    where the reply starts); ``truncated`` counts them.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1")
    dev = model_device(model)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    ids_all = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    truncated = 0
    if max_prompt_tokens:
        for i, ids in enumerate(ids_all):
            if len(ids) > max_prompt_tokens:
                ids_all[i] = ids[len(ids) - max_prompt_tokens:]
                truncated += 1
    order = sorted(range(len(prompts)), key=lambda i: len(ids_all[i]))
    answers: list[str] = [""] * len(prompts)
    counts: list[int] = [0] * len(prompts)
    stopped: list[bool] = [False] * len(prompts)
    eos = stop_token_ids(tokenizer)
    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=eos)
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p)
        torch.manual_seed(seed)
    if stop_strings:
        gen_kwargs.update(stop_strings=stop_strings, tokenizer=tokenizer)
    was_training = model.training
    model.eval()
    t0 = time.time()
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            enc = tokenizer.pad({"input_ids": [ids_all[i] for i in idx]}, return_tensors="pt").to(dev)
            with torch.inference_mode():
                out = model.generate(**enc, **gen_kwargs)
            new = out[:, enc["input_ids"].shape[1]:]
            for row, i in enumerate(idx):
                toks = new[row].tolist()
                # count up to and including the first stop token; the rest is padding
                n = len(toks)
                for j, t in enumerate(toks):
                    if t in eos:
                        n = j + 1
                        stopped[i] = True
                        break
                counts[i] = n
                answers[i] = tokenizer.decode(toks[:n], skip_special_tokens=True).strip()
                if stop_strings:
                    for st in stop_strings:
                        if st in answers[i]:
                            answers[i] = answers[i].split(st, 1)[0].strip()
                            stopped[i] = True
    finally:
        tokenizer.padding_side = old_side
        if was_training:
            model.train()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.time() - t0
    return {"answers": answers, "new_tokens": counts, "stopped": stopped, "prompt_tokens": [len(x) for x in ids_all],
            "truncated": truncated, "seconds": round(secs, 3),
            "tokens_per_second": round(sum(counts) / secs, 1) if secs > 0 else None}


@contextlib.contextmanager
def adapter_disabled(model):
    """Inside the block a PEFT model answers as its base model; outside, with the adapter."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        yield model


def base_and_tuned(model, tokenizer, prompts: list[str], **kw) -> tuple[dict, dict]:
    """Answers of the base model (adapter off) and of the tuned model (adapter on)."""
    with adapter_disabled(model):
        base = generate_answers(model, tokenizer, prompts, **kw)
    tuned = generate_answers(model, tokenizer, prompts, **kw)
    return base, tuned


def compare_on_examples(model_name: str, adapter_dir: str | Path, dataset_path: str | Path, n: int = 3,
                        quantization: str = "auto", max_new_tokens: int = 64, template: str = "auto") -> list[dict]:
    """Show base and tuned answers to the first ``n`` held-out rows of a dataset as conversations
    (the turns, the reference, each model's answer with its cut marks; Markdown in a notebook)."""
    held_out = DatasetFiles.beside(dataset_path).test
    if held_out.exists() and held_out != Path(dataset_path):
        dataset_path = held_out  # prompts the model has not been trained on
    model, tok = load_model(model_name, quantization=quantization, adapter=str(adapter_dir), verbose=False)
    rows = [c for c in (cut_at_reference(r) for r in read_jsonl(dataset_path)) if c is not None][:n]
    prompts = [prompt_text(tok, r, template) for r in rows]
    base, tuned = base_and_tuned(model, tok, prompts, max_new_tokens=max_new_tokens)
    out, shown = [], []
    for i, (r, p) in enumerate(zip(rows, prompts)):
        turns, ref = to_messages(r)[:-1], reference(r)
        answers = [Answer(w, g["answers"][i], g["stopped"][i]) for w, g in (("base", base), ("tuned", tuned))]
        user = next((t["content"] for t in turns if t["role"] == "user"), "")
        title = f"{heading(i + 1, user)} (held-out row {i + 1} of {Path(dataset_path).name})"
        shown.append((turns, answers, ref, title))
        out.append({"prompt": p, "reference": ref, "base": base["answers"][i], "tuned": tuned["answers"][i],
                    "turns": turns})
    if in_notebook():
        from IPython.display import Markdown, display
        display(Markdown("\n\n".join(conversation_markdown(t, a, ref, title) for t, a, ref, title in shown)))
    else:
        print("\n".join(conversation_text(t, a, ref, title) for t, a, ref, title in shown))
    return out
