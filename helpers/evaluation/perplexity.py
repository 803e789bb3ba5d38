"""Perplexity of reference answers under a model, on the reply tokens only (the tokens training
takes its loss on), batched with right padding and with logits computed only where scored."""
from __future__ import annotations

import math

from helpers.common.models import model_device
from helpers.common.prompts import PromptError, encode
from helpers.evaluation.metrics import EvalError


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
    (a large-vocabulary model would otherwise need gigabytes for them). A sequence longer than
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
