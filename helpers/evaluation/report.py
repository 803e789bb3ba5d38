"""Evaluation (notebook 05): an honest base-vs-tuned report on the held-out split.

``evaluate_adapter(cfg)`` loads the base model once with the adapter attached and, for the base
(adapter switched off) and the tuned model (adapter on):

* answers every held-out prompt in the prompt format used in training (batched, left padding,
  KV cache, greedy by default, stopping at EOS / end of turn; ``helpers.common.generate``);
* scores the answers against the references with ROUGE-1/2/L F1 (``rouge-score``, lower-cased
  words, no stemming; ``evaluate``'s "rouge" metric when it can load, which wraps the same code);
* measures the perplexity of the references under each model on the reply tokens only (the
  same tokens training takes its loss on: ``helpers.common.prompts.encode``'s completion mask);
* measures answer length, how often an answer stopped by itself, and a copy check (an answer
  whose longest run of words copied from the prompt covers most of it);
* puts a 95% paired bootstrap confidence interval on every number and on every tuned - base
  difference (the same resampled prompts for both models), so a small test set does not
  oversell a difference;
* writes ``report.json``, ``report.md`` and ``answers.jsonl`` to the output folder (beside the
  adapter by default) and two plots.

**General ability (forgetting).** Seed project 004 tuned Llama 3.2 1B on raw text and its chatbot
got worse at plain conversation after one epoch (wrong syntax, repeated words, missing spaces).
So the report also puts the tuned model against the base on held-out *general* prompts
(``general_path``: "" = the bundled real conversations' test split, ``helpers.common.resources.chitchat("test")``;
a JSONL of your own; "none" = skip), at most ``general_max_examples`` of them, with the same paired
intervals: perplexity of the general references, ROUGE against them, answer length, and a
degeneration check per answer:

* ``repeated_3grams``: share of the answer's word 3-grams that repeat an earlier 3-gram of the
  same answer ("I like the cat I like the cat" → 2 of 6); ``repeated_words``: share of words equal
  to the word before them ("the the");
* ``glued_words``: share of whitespace-separated tokens that are not plausible words, with three
  rules that need no dictionary: (a) 18 or more letters in one token once letters repeated three
  times or more are squeezed ("YESSSS" is an elongation, not a join; English words that long are
  about 3 in 100,000 in the bundled conversations), (b) a lower-case run of two letters or more
  followed by a capital in a token that starts lower-case ("storeYesterday", "thatI"; "iPhone" and
  "MacBook" pass), (c) two letters, a sentence mark, two letters with no space ("cool.What",
  "yes,I"), unless it is a web address, an e-mail address, a file or domain name. Tokens with digits,
  hashtags and mentions are never flagged. Two short lower-case words glued together ("tothe")
  are not caught one by one (no rule without a dictionary separates them from compounds like
  "weekend"); glued runs of three or more words are (rule a);
* ``stop_rate``: share of answers that ended on end-of-turn / EOS by themselves
  (``generate_answers``' ``stopped``) rather than running into MAX_NEW_TOKENS.

**"held".** From the paired bootstrap of the *relative* change of general perplexity
(tuned / base - 1) and of each degeneration figure (tuned - base), with tolerance
``forgetting_tolerance`` (default 2%):

* **forgot**: the perplexity interval lies wholly above +tolerance, or a degeneration figure got
  worse with an interval that excludes 0 (more repeated 3-grams, repeated words or glued words;
  fewer answers that stop by themselves);
* **held**: the perplexity interval lies wholly at or below +tolerance and no degeneration figure
  got worse with an interval excluding 0;
* **unclear**: neither (the perplexity interval straddles +tolerance: too few general prompts to
  tell). ROUGE and answer length are reported but do not decide (a reference chat reply is one of
  many good ones). Without intervals (BOOTSTRAP=0) nothing is decided.

The report says it in one line, e.g. "general perplexity +1.2% [-0.4%, +1.9%] (tolerance +2%), no
degeneration figure worse: held". When the in-domain test set is the bundled conversations (the
SMOKE / demo default), the general set is the same prompts, and the report says so.

**Leakage.** Before scoring, each held-out row's word 8-gram containment in the adapter's
training set (and the training rows' source chunks, notebook 02's ``chunks.jsonl``) is measured
(``helpers.dataset.leakage``); the share of rows at or above ``leakage_threshold`` is printed and goes into
the report. ``drop_leaked`` (off by default: the report only reports) leaves them out of the scores.

The reference of a held-out row is its ``output`` (instruction rows) or, for conversations, the
first assistant reply (``reference_turn="first"``: the prompt is what came before it, as in
``helpers.common.rows.held_out_turns``) or the last one (``"last"``).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.generate import adapter_disabled, generate_answers
from helpers.common.models import ModelLoadError, load_model, model_device
from helpers.common.prompts import PromptError, encode, prompt_text, reference, resolve_style
from helpers.common.resources import chitchat
from helpers.common.rows import cut_at_reference
from helpers.common.run import RunDir, check_adapter
from helpers.core.config import ConfigError, StepConfig
from helpers.core.jsonl import DataError, read_jsonl, write_jsonl
from helpers.dataset import LeakageError, default_dataset, measure_leakage, training_passages
from helpers.evaluation.metrics import ROUGE_BACKENDS, EvalError, copy_score, degeneration, is_copy, rouge_scores, words
from helpers.evaluation.plots import plot_report

LONG_PROMPT_POLICIES = ("truncate", "skip", "error")
# name -> (label, higher is better: True / False / None for "neither")
METRICS = {
    "rouge1": ("ROUGE-1 F1", True),
    "rouge2": ("ROUGE-2 F1", True),
    "rougeL": ("ROUGE-L F1", True),
    "perplexity": ("perplexity of the references (reply tokens)", False),
    "answer_words": ("answer length (words)", None),
    "stop_rate": ("answers that stopped by themselves (EOS)", True),
    "copy_rate": ("answers that copy the prompt", False),
}
# the general (forgetting) section: perplexity and ROUGE of the general references, the degeneration check
GENERAL_METRICS = {
    "perplexity": ("perplexity of the general references", False),
    "rouge1": ("ROUGE-1 F1", True),
    "rougeL": ("ROUGE-L F1", True),
    "repeated_3grams": ("repeated word 3-grams (share)", False),
    "repeated_words": ("word repeated right after itself (share)", False),
    "glued_words": ("glued / implausible words (share)", False),
    "stop_rate": ("answers that stopped at end of turn", True),
    "answer_words": ("answer length (words)", None),
}
# the degeneration figures that decide "held": +1 = a rise is worse, -1 = a fall is worse
DEGENERATION = {"repeated_3grams": 1, "repeated_words": 1, "glued_words": 1, "stop_rate": -1}


@dataclass
class EvalConfig(StepConfig, notebooks=("05",)):
    """One base-vs-tuned evaluation. Defaults suit a Colab GPU."""
    adapter_dir: str = ""  # LoRA adapter to evaluate; "" = the one notebook 04 wrote (outputs/RUN_NAME/adapter)
    test_path: str = ""  # held-out JSONL with references; "" = test.jsonl beside the dataset the adapter was trained on
    output_dir: str = ""  # where the report goes ("" = an "eval" folder beside the adapter)
    model_name: str = ""  # base model; "" = the one the adapter was trained on
    quantization: str = "auto"  # "4bit" (an 8B model fits a T4), "8bit", "16bit", "none" (fp32); "auto" = 4bit on GPU, fp32 on CPU
    template: str = ""  # prompt format ("" = the one used in training, from the run's manifest)
    system_prompt: str = ""  # system message ("" = the one used in training, if any)
    reference_turn: str = "first"  # conversations: "first" or "last" assistant reply is the reference
    max_examples: int = 0  # evaluate only the first N held-out prompts (0 = all)
    max_new_tokens: int = 256  # longest answer, in tokens
    batch_size: int = 16  # prompts per generation batch
    ppl_batch_size: int = 8  # sequences per perplexity batch
    do_sample: bool = False  # False = greedy decoding (reproducible); True = sampling with TEMPERATURE and TOP_P
    temperature: float = 0.7  # sampling temperature (DO_SAMPLE only)
    top_p: float = 0.9  # nucleus sampling mass (DO_SAMPLE only)
    max_context: int = 0  # tokens the model may see (0 = the model's own context length)
    long_prompts: str = "truncate"  # prompt + answer longer than the context: "truncate" (keep the end), "skip" or "error"
    rouge_backend: str = "auto"  # "auto" (evaluate if it loads, else rouge-score), "rouge-score", "evaluate"
    copy_threshold: float = 0.6  # an answer copies the prompt when this share of its words is one run copied from it
    copy_min_words: int = 4  # shorter answers are never counted as copies
    bootstrap: int = 1000  # bootstrap resamples for the 95% confidence intervals
    seed: int = 0  # seed of the bootstrap and of sampling
    n_show: int = 5  # answers shown side by side in the report
    run_name: str = "sft"  # notebook 04's run folder under the outputs folder: the adapter evaluated, the report in its eval/
    general_path: str = ""  # general prompts for the forgetting check (JSONL with references); "" = the bundled conversations' test split; "none" = skip
    general_max_examples: int = 100  # general prompts evaluated (0 = all)
    forgetting_tolerance: float = 0.02  # relative rise of general perplexity still counted as "held" (0.02 = 2%)
    leakage_threshold: float = 0.5  # a held-out row whose word 8-grams are at least this share in the training text counts as leaked
    drop_leaked: bool = False  # leave leaked held-out rows out of the scores (False = only report them)

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        return dict(model_name="", quantization="none", max_examples=8, max_new_tokens=24, batch_size=8,
                    ppl_batch_size=4, bootstrap=200, n_show=3, general_max_examples=4)

    def validate(self) -> None:
        if self.long_prompts not in LONG_PROMPT_POLICIES:
            raise ConfigError(f"LONG_PROMPTS={self.long_prompts!r}: use one of {', '.join(LONG_PROMPT_POLICIES)}.")
        if self.rouge_backend not in ROUGE_BACKENDS:
            raise ConfigError(f"ROUGE_BACKEND={self.rouge_backend!r}: use one of {', '.join(ROUGE_BACKENDS)}.")
        if self.reference_turn not in ("first", "last"):
            raise ConfigError(f"REFERENCE_TURN={self.reference_turn!r}: use 'first' or 'last'.")
        for name in ("max_new_tokens", "batch_size", "ppl_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.upper()}={getattr(self, name)}: must be at least 1.")
        if self.bootstrap < 0 or 0 < self.bootstrap < 50:
            raise ConfigError(f"BOOTSTRAP={self.bootstrap}: use 0 (no intervals) or at least 50 resamples.")
        if not 0 < self.copy_threshold <= 1:
            raise ConfigError(f"COPY_THRESHOLD={self.copy_threshold}: must be in (0, 1].")
        if self.max_examples < 0 or self.max_context < 0 or self.general_max_examples < 0:
            raise ConfigError("MAX_EXAMPLES, GENERAL_MAX_EXAMPLES and MAX_CONTEXT must be 0 or positive.")
        if not 0 <= self.forgetting_tolerance < 1:
            raise ConfigError(f"FORGETTING_TOLERANCE={self.forgetting_tolerance}: a relative rise in [0, 1), e.g. 0.02.")
        if not 0 < self.leakage_threshold <= 1:
            raise ConfigError(f"LEAKAGE_THRESHOLD={self.leakage_threshold}: must be in (0, 1].")


# ----------------------------------------------------------------------------------------------
# Held-out rows
# ----------------------------------------------------------------------------------------------
def load_references(path: str | os.PathLike, turn: str = "first", max_examples: int = 0) -> tuple[list[dict], list[int]]:
    """Held-out rows cut at their reference, and the indices of rows without one (skipped).

    Raises EvalError when the file has no row with a reference at all."""
    try:
        rows = read_jsonl(path)
    except DataError as exc:
        raise EvalError(str(exc)) from None
    if not rows:
        raise EvalError(f"The test set {str(path)!r} is empty.")
    kept, missing = [], []
    for i, row in enumerate(rows):
        cut = cut_at_reference(row, turn)
        (kept.append(cut) if cut is not None else missing.append(i))
        if max_examples and len(kept) >= max_examples:
            break
    if not kept:
        raise EvalError(
            f"The test set {str(path)!r} has no references to compare against: none of its {len(rows)} rows has a "
            "non-empty 'output' (instruction rows) or an assistant reply after a user turn (conversations). "
            "An evaluation set needs the expected answers; notebook 02 writes them to test.jsonl.")
    if missing:
        print(f"WARNING: {len(missing)} held-out row(s) have no reference and are skipped: rows {missing[:10]}")
    return kept, missing


def prompt_source(row: dict) -> str:
    """The text the model was given (for the copy check): everything before the reference."""
    if "messages" in row:
        return "\n".join(str(m.get("content", "")) for m in row["messages"][:-1] if m.get("role") != "system")
    return "\n".join(x for x in (str(row.get("instruction") or ""), str(row.get("input") or "")) if x.strip())


# ----------------------------------------------------------------------------------------------
# Perplexity of the references (reply tokens only)
# ----------------------------------------------------------------------------------------------
def reference_sequences(tokenizer, rows: list[dict], style: str, system: str | None) -> list[dict]:
    """Token ids of prompt + reference with a mask on the reference's tokens (and its end
    marker) only: ``helpers.common.prompts.encode``, as in training, keeping only the last reply."""
    out = []
    for i, row in enumerate(rows):
        try:
            e = encode(tokenizer, row, style, max_len=10**9, system=system)
        except PromptError as exc:
            raise EvalError(f"held-out row {i}: {exc}") from None
        mask = list(e["completion_mask"])
        # keep only the last run of reply tokens: the reference (earlier replies are context)
        end = max(j for j, m in enumerate(mask) if m) + 1
        start = end
        while start > 0 and mask[start - 1]:
            start -= 1
        mask = [1 if start <= j < end else 0 for j in range(len(mask))]
        out.append({"input_ids": e["input_ids"], "completion_mask": mask})
    return out


def _decoder_and_head(model):
    """The transformer body and the output layer, so logits are computed only where needed.
    None when the model post-processes its logits (soft-capping, scaling): then full logits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if cfg is not None and (getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logits_scaling", None)):
        return None
    body = getattr(base, getattr(base, "base_model_prefix", "model"), None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if body is None or head is None or body is base:
        return None
    return body, head


def _right_padded(batch: list[dict], pad: int):
    """Token ids, attention mask and completion mask of sequences as (batch, longest) tensors,
    padded on the right."""
    import torch
    L = max(len(x["input_ids"]) for x in batch)
    ids = torch.full((len(batch), L), pad, dtype=torch.long)
    att = torch.zeros((len(batch), L), dtype=torch.long)
    msk = torch.zeros((len(batch), L), dtype=torch.bool)
    for r, x in enumerate(batch):
        n = len(x["input_ids"])
        ids[r, :n] = torch.tensor(x["input_ids"])
        att[r, :n] = 1
        msk[r, :n] = torch.tensor(x["completion_mask"], dtype=torch.bool)
    return ids, att, msk


def sequence_nll(model, tokenizer, seqs: list[dict], batch_size: int = 8, max_len: int | None = None,
                 chunk: int = 1024) -> tuple[list[float], list[int], int]:
    """Summed negative log-likelihood (nats) and token count of the masked tokens of each
    sequence, batched with right padding. Logits are computed only at the scored positions
    (a 128k-vocabulary model would otherwise need gigabytes for them). A sequence longer than
    ``max_len`` keeps its last ``max_len`` tokens; the third value counts those."""
    import torch
    import torch.nn.functional as F

    dev = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs = [dict(s) for s in seqs]
    cut = 0
    for s in seqs:
        if max_len and len(s["input_ids"]) > max_len:
            s["input_ids"], s["completion_mask"] = s["input_ids"][-max_len:], s["completion_mask"][-max_len:]
            cut += 1
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]["input_ids"]))
    nll = [0.0] * len(seqs)
    cnt = [0] * len(seqs)
    parts = _decoder_and_head(model)
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            ids, att, msk = (t.to(dev) for t in _right_padded([seqs[i] for i in idx], pad))
            # position t predicts token t+1: score the positions whose next token is masked in
            sel = msk[:, 1:].nonzero(as_tuple=False)  # (k, 2): row, position
            targets = ids[sel[:, 0], sel[:, 1] + 1]
            with torch.inference_mode():
                if parts is not None:
                    body, head = parts
                    hidden = body(input_ids=ids, attention_mask=att).last_hidden_state
                    h = hidden[sel[:, 0], sel[:, 1]]
                    losses = torch.cat([F.cross_entropy(head(h[c:c + chunk]).float(), targets[c:c + chunk],
                                                        reduction="none") for c in range(0, len(h), chunk)]) \
                        if len(h) else torch.zeros(0, device=dev)
                else:
                    logits = model(input_ids=ids, attention_mask=att).logits
                    losses = F.cross_entropy(logits[sel[:, 0], sel[:, 1]].float(), targets, reduction="none")
            per_row = torch.zeros(len(idx), dtype=torch.float64, device=dev).index_add_(0, sel[:, 0], losses.double())
            counts = torch.bincount(sel[:, 0], minlength=len(idx))
            for r, i in enumerate(idx):
                nll[i] = float(per_row[r])
                cnt[i] = int(counts[r])
    finally:
        if was_training:
            model.train()
    return nll, cnt, cut


def perplexity(nll: list[float], counts: list[int]) -> float:
    """Corpus perplexity: exp(total NLL / total scored tokens)."""
    n = sum(counts)
    return math.exp(sum(nll) / n) if n else float("nan")


# ----------------------------------------------------------------------------------------------
# Paired bootstrap
# ----------------------------------------------------------------------------------------------
def _stat(values, kind: str):
    """The statistic over the last-but-one axis: a mean, or a corpus perplexity of (nll, n) pairs."""
    import numpy as np
    if kind == "ppl":
        return np.exp(values[..., 0].sum(-1) / np.maximum(values[..., 1].sum(-1), 1))
    return values.mean(-1)


def paired_bootstrap(base, tuned, kind: str = "mean", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                     relative: bool = False) -> dict:
    """Point values and (1 - alpha) percentile intervals for base, tuned and tuned - base, from the
    same resampled examples for both models (a paired bootstrap). ``relative=True`` adds
    ``"relative"``: tuned / base - 1 (for a perplexity: +0.05 = 5% higher), from the same resamples.

    base, tuned: per-example values (kind "mean") or (nll, n_tokens) pairs (kind "ppl")."""
    import numpy as np
    b, t = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)
    if b.shape != t.shape or len(b) == 0:
        raise EvalError(f"bootstrap needs the same non-zero number of base and tuned values ({b.shape} vs {t.shape})")
    out = {"base": {"value": float(_stat(b, kind))}, "tuned": {"value": float(_stat(t, kind))}}
    out["diff"] = {"value": out["tuned"]["value"] - out["base"]["value"]}
    if relative:
        if out["base"]["value"] <= 0:
            raise EvalError("a relative change needs a positive base value")
        out["relative"] = {"value": out["tuned"]["value"] / out["base"]["value"] - 1}
    if n_boot:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(b), size=(n_boot, len(b)))
        sb, st = _stat(b[idx], kind), _stat(t[idx], kind)
        arrays = [("base", sb), ("tuned", st), ("diff", st - sb)]
        if relative:
            arrays.append(("relative", st / np.where(sb > 0, sb, np.nan) - 1))
        for name, arr in arrays:
            lo, hi = np.nanquantile(arr, [alpha / 2, 1 - alpha / 2])
            out[name]["ci"] = [float(lo), float(hi)]
    return out


def verdict(diff: dict, higher_is_better: bool | None) -> str:
    """What a difference's interval supports: "tuned better", "base better" or "no clear difference"."""
    ci = diff.get("ci")
    if higher_is_better is None:
        return "longer" if ci and ci[0] > 0 else ("shorter" if ci and ci[1] < 0 else "no clear difference")
    if not ci:
        return "no interval"
    if ci[0] > 0 or ci[1] < 0:
        up = ci[0] > 0
        return "tuned better" if up == higher_is_better else "base better"
    return "no clear difference"


# ----------------------------------------------------------------------------------------------
# The evaluation
# ----------------------------------------------------------------------------------------------
def default_test_path(adapter_dir: str | os.PathLike, ws=None) -> Path:
    """test.jsonl beside the dataset the adapter was trained on (from the run's manifest),
    else beside notebook 04's default dataset."""
    trained_on = RunDir.of(adapter_dir).dataset_path
    if trained_on:
        return Path(trained_on).with_name("test.jsonl")
    if ws is not None:
        return default_dataset(ws).with_name("test.jsonl")
    raise EvalError(f"No TEST_PATH given and no run manifest beside {adapter_dir} says which dataset it was trained on.")


@dataclass
class _Inputs:
    """What one evaluation reads and where it writes, resolved from the config and the run's metadata."""
    model_name: str
    template: str  # a prompt format name, or "auto"
    system: str | None
    test_path: Path
    out_dir: Path
    plots_dir: Path


@dataclass
class _Prompts:
    """The held-out rows that are evaluated, their prompts, and how the context limit was applied."""
    rows: list[dict]
    prompts: list[str]
    ctx: int  # tokens the model may see
    room: int  # tokens left for a prompt: ctx - max_new_tokens
    long_idx: list[int]  # rows (before any were skipped) whose prompt was longer than room


def _resolve_inputs(cfg: EvalConfig, plots_dir: str | os.PathLike | None) -> _Inputs:
    """The base model, prompt format, system prompt and held-out set (the config's, else the
    training run's), and the output folders."""
    found = check_adapter(cfg.adapter_dir, cfg.model_name, error=EvalError)
    model_name, train_cfg = found.model_name, found.run.config
    test_path = Path(cfg.test_path) if cfg.test_path else default_test_path(cfg.adapter_dir)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(cfg.adapter_dir).parent / "eval"
    return _Inputs(model_name=model_name,
                   template=cfg.template or train_cfg.get("template") or "auto",
                   system=cfg.system_prompt or train_cfg.get("system_prompt") or None,
                   test_path=test_path, out_dir=out_dir,
                   plots_dir=Path(plots_dir) if plots_dir else out_dir / "plots")


def _load_tuned_model(cfg: EvalConfig, model_name: str):
    """The base model with the adapter attached (switched off for the base answers), and its
    tokenizer; an adapter that does not fit the base is refused with what to set."""
    try:
        model, tok = load_model(model_name, quantization=cfg.quantization, adapter=cfg.adapter_dir)
    except ModelLoadError as exc:
        raise EvalError(str(exc)) from None
    except RuntimeError as exc:
        if "size mismatch" in str(exc):
            raise EvalError(f"The adapter in {cfg.adapter_dir} does not fit {model_name!r} (its weight shapes differ: "
                            "it was trained for another base model). Set MODEL_NAME to the model it was trained on.") from None
        raise
    if not hasattr(model, "disable_adapter"):
        raise EvalError(f"{cfg.adapter_dir} did not load as a LoRA adapter; nothing to switch off for the base model.")
    return model, tok


def _fit_prompts(cfg: EvalConfig, model, tok, rows: list[dict], style: str, system: str | None, log) -> _Prompts:
    """The prompts, with the LONG_PROMPTS policy applied to those that leave no room for an answer
    of MAX_NEW_TOKENS: truncated (keep the end, at generation), skipped, or refused."""
    model_ctx = int(getattr(model.config, "max_position_embeddings", 0) or 0) or 10**9
    ctx = min(cfg.max_context, model_ctx) if cfg.max_context else model_ctx
    room = ctx - cfg.max_new_tokens
    if room < 8:
        raise EvalError(f"MAX_NEW_TOKENS={cfg.max_new_tokens} leaves no room for a prompt in a context of {ctx} tokens.")
    prompts = [prompt_text(tok, r, style, system) for r in rows]
    lens = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    long_idx = [i for i, n in enumerate(lens) if n > room]
    if long_idx and cfg.long_prompts == "error":
        raise EvalError(
            f"{len(long_idx)} held-out prompt(s) are longer than the context allows ({room} tokens = context {ctx} - "
            f"MAX_NEW_TOKENS {cfg.max_new_tokens}): rows {long_idx[:10]} with {[lens[i] for i in long_idx[:10]]} tokens. "
            "Set LONG_PROMPTS='truncate' (keep each prompt's end) or 'skip', or lower MAX_NEW_TOKENS.")
    if long_idx and cfg.long_prompts == "skip":
        keep = [i for i in range(len(rows)) if i not in set(long_idx)]
        if not keep:
            raise EvalError(f"Every held-out prompt is longer than the {room} tokens the context allows; nothing left.")
        rows, prompts = [rows[i] for i in keep], [prompts[i] for i in keep]
    if long_idx:
        log(f"{len(long_idx)} prompt(s) longer than {room} tokens: "
            + ("skipped." if cfg.long_prompts == "skip" else "truncated from the left (their end is kept)."))
    return _Prompts(rows=rows, prompts=prompts, ctx=ctx, room=room, long_idx=long_idx)


def _run_both_models(cfg: EvalConfig, model, tok, fit: _Prompts, seqs: list[dict], log) -> dict[str, dict]:
    """For the base (adapter off) and the tuned model: the generated answers and the NLL of the
    references. ``{"base"|"tuned": {"gen": generate_answers' dict, "nll": [...], "count": [...]}}``."""
    gen_kw = dict(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, do_sample=cfg.do_sample,
                  temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, max_prompt_tokens=fit.room)
    results: dict[str, dict] = {}
    for which in ("base", "tuned"):
        ctxm = adapter_disabled(model) if which == "base" else contextlib.nullcontext()
        with ctxm:
            gen = generate_answers(model, tok, fit.prompts, **gen_kw)
            nll, cnt, _ = sequence_nll(model, tok, seqs, cfg.ppl_batch_size, max_len=fit.ctx)
        results[which] = {"gen": gen, "nll": nll, "count": cnt}
        log(f"{which}: {sum(gen['new_tokens'])} tokens generated in {gen['seconds']:.1f}s "
            f"({gen['tokens_per_second']} tok/s); reference perplexity {perplexity(nll, cnt):.2f} "
            f"over {sum(cnt)} tokens")
    return results


def _score_answers(cfg: EvalConfig, results: dict[str, dict], rows: list[dict],
                   refs: list[str]) -> tuple[dict[str, dict[str, list]], str]:
    """Per-example values of each model: ROUGE, answer length, stopped, copy score and copy flag,
    the degeneration figures, and (nll, tokens) pairs for perplexity. Returns them and the ROUGE
    library used."""
    backend_used = ""
    per: dict[str, dict[str, list]] = {}
    for which in ("base", "tuned"):
        ans = results[which]["gen"]["answers"]
        rs, backend_used = rouge_scores(ans, refs, cfg.rouge_backend)
        per[which] = {**rs,
                      "answer_words": [len(words(a)) for a in ans],
                      "stop_rate": [1.0 if s else 0.0 for s in results[which]["gen"]["stopped"]],
                      "copy_score": [copy_score(a, prompt_source(r)) for a, r in zip(ans, rows)],
                      "copy_rate": [1.0 if is_copy(a, prompt_source(r), cfg.copy_threshold, cfg.copy_min_words) else 0.0
                                    for a, r in zip(ans, rows)],
                      "ppl_pairs": list(zip(results[which]["nll"], results[which]["count"]))}
        degen = [degeneration(a) for a in ans]
        per[which].update({k: [d[k] for d in degen] for k in ("repeated_3grams", "repeated_words", "glued_words")})
    return per, backend_used


def _compare_models(cfg: EvalConfig, per: dict[str, dict[str, list]], table: dict | None = None) -> dict[str, dict]:
    """Each metric of ``table`` (METRICS) for base, tuned and tuned - base with paired bootstrap
    intervals, and its verdict; perplexity also as a relative change."""
    metrics = {}
    for name, (label, hib) in (table or METRICS).items():
        if name == "perplexity":
            bs = paired_bootstrap(per["base"]["ppl_pairs"], per["tuned"]["ppl_pairs"], "ppl", cfg.bootstrap, cfg.seed,
                                  relative=True)
        else:
            bs = paired_bootstrap(per["base"][name], per["tuned"][name], "mean", cfg.bootstrap, cfg.seed)
        metrics[name] = {"label": label, "higher_is_better": hib, **bs, "verdict": verdict(bs["diff"], hib)}
    return metrics


def forgetting_verdict(metrics: dict, tolerance: float = 0.02) -> dict:
    """Whether general ability held (the rule in the module docstring), from the general
    section's metrics: ``{"outcome": "held" | "forgot" | "unclear" | "not decided", "line", "worse"}``
    where ``worse`` names the degeneration figures that got worse with an interval excluding 0."""
    rel = metrics["perplexity"]["relative"]
    worse = []
    for name, sign in DEGENERATION.items():
        ci = metrics.get(name, {}).get("diff", {}).get("ci")
        if ci and ((sign > 0 and ci[0] > 0) or (sign < 0 and ci[1] < 0)):
            worse.append(name)
    ppl = f"general perplexity {rel['value']:+.1%}"
    if "ci" not in rel:
        return {"outcome": "not decided", "worse": [],
                "line": f"{ppl} (no interval: BOOTSTRAP=0): not decided"}
    lo, hi = rel["ci"]
    ppl += f" [{lo:+.1%}, {hi:+.1%}] (tolerance +{tolerance:.0%})"
    degen = ("worse: " + ", ".join(f"{metrics[n]['label']} {metrics[n]['diff']['value']:+.3f}" for n in worse)
             if worse else "no degeneration figure worse")
    if lo > tolerance or worse:
        outcome, why = "forgot", ""
    elif hi <= tolerance:
        outcome, why = "held", ""
    else:
        outcome, why = "unclear", f" (the perplexity interval reaches past +{tolerance:.0%}: too few general prompts to tell)"
    return {"outcome": outcome, "worse": worse, "line": f"{ppl}, {degen}: {outcome}{why}"}


def _general_path(cfg: EvalConfig) -> Path | None:
    """The general prompts' file: GENERAL_PATH, the bundled conversations' test split for "",
    None for "none"."""
    if cfg.general_path.strip().lower() == "none":
        return None
    if cfg.general_path:
        return Path(cfg.general_path)
    return chitchat("test")


def _general_report(cfg: EvalConfig, model, tok, style: str, inputs: _Inputs, log) -> tuple[dict, list[dict]]:
    """The forgetting section: base vs tuned on the general prompts (the same loaded model, the
    adapter off and on), perplexity, ROUGE and the degeneration check with paired intervals, and
    whether general ability held. Returns the section and its answers rows ([] when skipped)."""
    path = _general_path(cfg)
    if path is None:
        return {"skipped": "GENERAL_PATH='none': no forgetting check"}, []
    rows, missing = load_references(path, cfg.reference_turn, cfg.general_max_examples)
    same = path.resolve() == Path(inputs.test_path).resolve()
    log(f"General prompts {path}: {len(rows)}" + (" (the same set as the in-domain test set)" if same else ""))
    gcfg = cfg.replace(long_prompts="truncate") if cfg.long_prompts == "error" else cfg
    fit = _fit_prompts(gcfg, model, tok, rows, style, inputs.system, log)
    refs = [_reference_text(r) for r in fit.rows]
    results = _run_both_models(gcfg, model, tok, fit, reference_sequences(tok, fit.rows, style, inputs.system), log)
    per, _ = _score_answers(cfg, results, fit.rows, refs)
    metrics = _compare_models(cfg, per, GENERAL_METRICS)
    held = forgetting_verdict(metrics, cfg.forgetting_tolerance)
    log("General ability: " + held["line"])
    answers = _answer_rows(fit, refs, results, per)
    bundled = not cfg.general_path
    note = ("the general set IS the in-domain test set (both are the bundled conversations' test split): "
            "the two sections measure the same prompts" if same else
            "the bundled real conversations' test split (chit-chat the base model can hold)" if bundled else
            "your GENERAL_PATH")
    return {"path": str(path), "bundled": bundled, "same_as_in_domain": same, "note": note,
            "n_examples": len(fit.rows), "rows_without_reference": len(missing), "long_prompts": len(fit.long_idx),
            "tolerance": cfg.forgetting_tolerance, "metrics": metrics, "held": held,
            "examples": answers[: cfg.n_show]}, answers


def _leakage_check(cfg: EvalConfig, test_path: Path, rows: list[dict], log) -> tuple[list[dict], dict]:
    """The held-out rows' word 8-gram containment in the adapter's training set and its source
    chunks (``helpers.dataset.leakage``), and the rows kept (all of them unless DROP_LEAKED)."""
    train_path = RunDir.of(cfg.adapter_dir).dataset_path
    if not train_path or not Path(train_path).is_file():
        why = f"the training set {train_path} is not there" if train_path else "the run does not say its training set"
        log(f"Leakage: not measured ({why})")
        return rows, {"skipped": f"not measured: {why}"}
    train_path = Path(train_path)
    try:
        train_rows = read_jsonl(train_path)
        passages, desc = training_passages(train_rows, train_path.with_name("chunks.jsonl"),
                                           train_path.parent.parent / "corpus" / "pdf_text.jsonl", rows)
    except (DataError, LeakageError) as exc:
        raise EvalError(f"Leakage check: {exc}") from None
    res = measure_leakage(rows, train_rows, passages, cfg.leakage_threshold, desc)
    summary = res.summary() | {"line": res.line(), "train_path": str(train_path), "dropped": 0,
                               "same_file": train_path.resolve() == Path(test_path).resolve()}
    log("Leakage: " + res.line())
    if cfg.drop_leaked and res.flagged:
        flagged = set(res.flagged)
        rows = [r for i, r in enumerate(rows) if i not in flagged]
        if not rows:
            raise EvalError(f"DROP_LEAKED: every one of the {len(flagged)} held-out rows is leaked "
                            f"(containment >= {cfg.leakage_threshold} in {train_path}); nothing left to evaluate.")
        summary["dropped"] = len(flagged)
        log(f"DROP_LEAKED: {len(flagged)} leaked row(s) left out of the scores")
    return rows, summary


def _answer_rows(fit: _Prompts, refs: list[str], results: dict[str, dict], per: dict[str, dict[str, list]]) -> list[dict]:
    """One answers.jsonl row per prompt: prompt, reference, both answers and their scores."""
    answers = []
    for i, (r, p, ref) in enumerate(zip(fit.rows, fit.prompts, refs)):
        answers.append({"index": i, "id": r.get("id"), "prompt": p, "reference": ref,
                        **{w: results[w]["gen"]["answers"][i] for w in ("base", "tuned")},
                        **{f"{w}_{k}": round(float(per[w][k][i]), 4) for w in ("base", "tuned")
                           for k in ("rouge1", "rouge2", "rougeL", "copy_score", "repeated_3grams", "repeated_words",
                                     "glued_words", "stop_rate")},
                        **{f"{w}_ppl": round(math.exp(per[w]["ppl_pairs"][i][0] / max(1, per[w]["ppl_pairs"][i][1])), 3)
                           for w in ("base", "tuned")}})
    return answers


def _build_report(cfg: EvalConfig, inputs: _Inputs, style: str, missing: list[int], fit: _Prompts, refs: list[str],
                  results: dict[str, dict], backend_used: str, metrics: dict, answers: list[dict],
                  general: dict, leakage: dict, t_start: float) -> dict:
    """The report dict (report.json without its "plots" and "files", which come when written)."""
    import torch
    return {
        "model_name": inputs.model_name, "adapter_dir": str(cfg.adapter_dir), "test_path": str(inputs.test_path),
        "quantization": cfg.quantization, "template": style, "system_prompt": inputs.system,
        "n_examples": len(fit.rows), "reference_turn": cfg.reference_turn,
        "rows_without_reference": missing,
        "reference_words": sum(len(words(x)) for x in refs) / len(refs),
        "reference_tokens_scored": sum(results["base"]["count"]),
        "long_prompts": {"policy": cfg.long_prompts, "count": len(fit.long_idx), "context": fit.ctx,
                         "max_prompt_tokens": fit.room,
                         "what": {"truncate": "prompts longer than the context allows keep their last tokens",
                                  "skip": "prompts longer than the context allows are left out of every metric",
                                  "error": "no prompt was longer than the context allows"}[cfg.long_prompts]},
        "generation": {"max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size,
                       "decoding": f"sampling (temperature {cfg.temperature}, top-p {cfg.top_p}, seed {cfg.seed})"
                       if cfg.do_sample else "greedy",
                       **{f"{w}_tokens_per_second": results[w]["gen"]["tokens_per_second"] for w in ("base", "tuned")},
                       **{f"{w}_seconds": results[w]["gen"]["seconds"] for w in ("base", "tuned")}},
        "rouge_backend": backend_used + " (F1; lower-cased letters and digits, no stemming)",
        "copy_check": f"an answer of at least {cfg.copy_min_words} words copies the prompt when one run of words "
                      f"taken verbatim from it covers at least {cfg.copy_threshold:.0%} of the answer",
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "interval": "95% percentile, paired"},
        "metrics": metrics,
        "examples": answers[: cfg.n_show],
        "leakage": leakage,
        "general": general,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "seconds": round(time.time() - t_start, 1),
    }


def _write_report(report: dict, answers: list[dict], per: dict, refs: list[str], inputs: _Inputs,
                  plot_prefix: str, general_answers: list[dict] | None = None) -> None:
    """answers.jsonl (and general_answers.jsonl), the plots, report.json and report.md in the
    output folder; adds the "plots" and "files" entries to ``report``."""
    out_dir = inputs.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "answers.jsonl", answers)
    write_jsonl(out_dir / "general_answers.jsonl", general_answers or [])
    report["plots"] = [str(p) for p in plot_report(report, per, refs, inputs.plots_dir, plot_prefix) if p]
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out_dir / "report.md").write_text(report_markdown(report, out_dir))
    report["files"] = {"json": str(out_dir / "report.json"), "markdown": str(out_dir / "report.md"),
                       "answers": str(out_dir / "answers.jsonl"),
                       "general_answers": str(out_dir / "general_answers.jsonl")}


def evaluate_adapter(cfg: EvalConfig, plots_dir: str | os.PathLike | None = None, plot_prefix: str = "eval_",
                     log=print) -> dict:
    """Base vs tuned on the held-out set; see the module docstring. Returns the report dict
    (also written to ``output_dir/report.json`` and ``report.md``)."""

    t_start = time.time()
    inputs = _resolve_inputs(cfg, plots_dir)
    rows, missing = load_references(inputs.test_path, cfg.reference_turn, cfg.max_examples)
    log(f"Held-out set {inputs.test_path}: {len(rows)} rows with a reference" +
        (f", {len(missing)} without one skipped" if missing else ""))
    rows, leakage = _leakage_check(cfg, inputs.test_path, rows, log)

    model, tok = _load_tuned_model(cfg, inputs.model_name)
    style = resolve_style(tok, inputs.template)
    fit = _fit_prompts(cfg, model, tok, rows, style, inputs.system, log)
    refs = [_reference_text(r) for r in fit.rows]
    seqs = reference_sequences(tok, fit.rows, style, inputs.system)

    results = _run_both_models(cfg, model, tok, fit, seqs, log)
    per, backend_used = _score_answers(cfg, results, fit.rows, refs)
    metrics = _compare_models(cfg, per)
    answers = _answer_rows(fit, refs, results, per)
    general, general_answers = _general_report(cfg, model, tok, style, inputs, log)
    report = _build_report(cfg, inputs, style, missing, fit, refs, results, backend_used, metrics, answers,
                           general, leakage, t_start)
    del model
    _write_report(report, answers, per, refs, inputs, plot_prefix, general_answers)
    log(f"Report in {inputs.out_dir} ({report['seconds']}s)")
    return report


def _reference_text(row: dict) -> str:
    return reference(row)


# ----------------------------------------------------------------------------------------------
# Report: Markdown and table (the plots are helpers.evaluation.plots.plot_report)
# ----------------------------------------------------------------------------------------------
def _fmt(x: float, name: str) -> str:
    if name == "perplexity":
        return f"{x:.2f}"
    if name == "answer_words":
        return f"{x:.1f}"
    return f"{x:.3f}"


def _cell(d: dict, name: str, signed: bool = False) -> str:
    v = d["value"]
    s = ("+" if signed and v >= 0 else "") + _fmt(v, name)
    if "ci" in d:
        lo, hi = d["ci"]
        s += f" [{('+' if signed and lo >= 0 else '') + _fmt(lo, name)}, {('+' if signed and hi >= 0 else '') + _fmt(hi, name)}]"
    return s


def metrics_table(report: dict, metrics: dict | None = None) -> str:
    """The base-vs-tuned table in Markdown: value [95% CI] for each model and the difference
    (``metrics``: another section's, e.g. ``report["general"]["metrics"]``; default the in-domain)."""
    lines = ["| metric | base | tuned | tuned − base | verdict |", "|---|---|---|---|---|"]
    for name, m in (metrics if metrics is not None else report["metrics"]).items():
        arrow = {True: " ↑", False: " ↓", None: ""}[m["higher_is_better"]]
        lines.append(f"| {m['label']}{arrow} | {_cell(m['base'], name)} | {_cell(m['tuned'], name)} | "
                     f"{_cell(m['diff'], name, signed=True)} | {m['verdict']} |")
    return "\n".join(lines)


def side_by_side(report: dict, width: int = 400) -> str:
    """The sample answers in Markdown: prompt (its end), reference, base, tuned."""
    def clip(t: str, tail: bool = False) -> str:
        t = " ".join(str(t).split())
        if len(t) <= width:
            return t
        return ("…" + t[-width:]) if tail else (t[:width] + "…")
    out = []
    for ex in report["examples"]:
        out += [f"### Example {ex['index'] + 1}" + (f" ({ex['id']})" if ex.get("id") else ""), "",
                f"- **prompt (end):** `{clip(ex['prompt'], tail=True)}`",
                f"- **reference:** {clip(ex['reference'])}",
                f"- **base** (ROUGE-L {ex['base_rougeL']:.2f}): {clip(ex['base']) or '*(empty)*'}",
                f"- **tuned** (ROUGE-L {ex['tuned_rougeL']:.2f}): {clip(ex['tuned']) or '*(empty)*'}", ""]
    return "\n".join(out)


def leakage_line(report: dict) -> str:
    """The leakage figure in one line, for the notebook and the Markdown report."""
    lk = report.get("leakage") or {}
    if "skipped" in lk:
        return f"Leakage: {lk['skipped']}."
    text = f"Leakage: {lk['line']} ({lk['train_path']}; {lk['passages']})"
    if lk.get("same_file"):
        text += "; the test set IS the training set"
    return text + (f"; {lk['dropped']} left out of the scores (DROP_LEAKED)." if lk.get("dropped") else
                   "; reported only, all rows scored." if lk.get("flagged") else ".")


def general_markdown(report: dict) -> str:
    """The forgetting section in Markdown: what the general set is, the one-line verdict, the table."""
    g = report.get("general") or {}
    if "skipped" in g:
        return f"General ability: {g['skipped']}."
    lines = [f"**General ability: {g['held']['outcome']}.** {g['held']['line'][0].upper() + g['held']['line'][1:]}.", "",
             f"- general prompts: `{g['path']}`, {g['n_examples']} with a reference ({g['note']})",
             "- held = the 95% interval of the relative change of general perplexity lies at or below "
             f"+{g['tolerance']:.0%} and no degeneration figure (repeated 3-grams, repeated words, glued words, "
             "stops at end of turn) got worse with an interval excluding 0; forgot = the interval lies above "
             f"+{g['tolerance']:.0%} or a degeneration figure got worse; unclear = neither", "",
             metrics_table(report, g["metrics"])]
    return "\n".join(lines)


def report_markdown(report: dict, out_dir: Path | None = None) -> str:
    g, lp = report["generation"], report["long_prompts"]
    lines = [
        f"# Base vs tuned: {report['model_name']} + {report['adapter_dir']}", "",
        f"- held-out set: `{report['test_path']}`, {report['n_examples']} prompts with a reference "
        f"({report['reference_turn']} assistant reply of each conversation); "
        f"{len(report['rows_without_reference'])} rows without a reference skipped",
        f"- prompt format: {report['template']}" + (f", system prompt {report['system_prompt']!r}" if report['system_prompt'] else ""),
        f"- answers: {g['decoding']}, at most {g['max_new_tokens']} new tokens, batches of {g['batch_size']}; "
        f"{g['base_tokens_per_second']} (base) and {g['tuned_tokens_per_second']} (tuned) generated tokens/s on {report['device']}",
        f"- long prompts (context {lp['context']} tokens, at most {lp['max_prompt_tokens']} for the prompt): "
        f"{lp['count']} — policy '{lp['policy']}': {lp['what']}",
        f"- ROUGE: {report['rouge_backend']}; perplexity: of the reference replies under each model, reply tokens only "
        f"({report['reference_tokens_scored']} tokens), as in training",
        f"- copy check: {report['copy_check']}",
        f"- intervals: {report['bootstrap']['interval']} bootstrap over prompts, {report['bootstrap']['resamples']} "
        f"resamples (seed {report['bootstrap']['seed']}); a difference whose interval contains 0 is not established "
        "by this test set", "",
        "## Metrics (value [95% CI])", "", metrics_table(report), "",
        f"Mean reference length: {report['reference_words']:.1f} words.", "", leakage_line(report), "",
        "## General ability: base vs tuned on general prompts (forgetting)", "", general_markdown(report), "",
        "## Answers side by side", "", side_by_side(report),
    ]
    if report.get("plots"):
        lines += ["## Plots", ""]
        for p in report["plots"]:
            rel = os.path.relpath(p, out_dir) if out_dir else p
            lines.append(f"![{Path(p).stem}]({rel})")
    return "\n".join(lines) + "\n"
