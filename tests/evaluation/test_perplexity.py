"""Perplexity of the references on the embedded model: only the reply tokens are scored, and the
batched, right-padded computation equals the model's own loss one sequence at a time."""
import math

import pytest
import torch

from helpers.common.models import load_model
from helpers.common.resources import chitchat
from helpers.common.rows import held_out_turns
from helpers.core.jsonl import read_jsonl
from helpers.evaluation.metrics import EvalError
from helpers.evaluation.perplexity import perplexity, reference_sequences, sequence_nll

EMBEDDED = "embedded/smollm2-135m-instruct"


def test_perplexity_batched_matches_one_by_one(embedded_dir):
    model, tok = load_model(EMBEDDED, quantization="none", verbose=False)
    rows = held_out_turns(read_jsonl(str(chitchat("test")))[:3])
    seqs = reference_sequences(tok, rows, "chat", None)
    # only the reference (last reply and its end marker) is scored
    ref_ids = tok(rows[0]["messages"][-1]["content"], add_special_tokens=False)["input_ids"]
    assert sum(seqs[0]["completion_mask"]) >= len(ref_ids)
    nll, cnt, cut = sequence_nll(model, tok, seqs, batch_size=3)
    assert cut == 0
    for s, n, c in zip(seqs, nll, cnt):
        ids = torch.tensor([s["input_ids"]])
        labels = torch.tensor([[t if m else -100 for t, m in zip(s["input_ids"], s["completion_mask"])]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        assert c == sum(s["completion_mask"][1:])
        assert n / c == pytest.approx(loss, rel=1e-3)
        assert math.isfinite(math.exp(n / c)) and math.exp(n / c) > 1
    # the corpus perplexity pools the tokens of every reference
    assert perplexity(nll, cnt) == pytest.approx(math.exp(sum(nll) / sum(cnt)))
    assert math.isnan(perplexity([], []))
    # a context shorter than a sequence keeps its last tokens, and says how many sequences were cut
    short = min(len(s["input_ids"]) for s in seqs) - 1
    nll_cut, cnt_cut, cut = sequence_nll(model, tok, seqs, batch_size=2, max_len=short)
    assert cut == 3 and all(0 < c <= short for c in cnt_cut) and all(math.isfinite(n) for n in nll_cut)


def test_only_the_last_reply_of_a_conversation_is_scored(smol_tokenizer):
    """A conversation with several assistant replies (and a user turn after the last one): the earlier
    replies are context, only the last is the reference."""
    row = read_jsonl(str(chitchat("test")))[0]
    assert sum(m["role"] == "assistant" for m in row["messages"]) >= 2
    seq = reference_sequences(smol_tokenizer, [row], "chat", None)[0]
    marked = [t for t, m in zip(seq["input_ids"], seq["completion_mask"]) if m]
    text = smol_tokenizer.decode(marked)
    last = [m["content"] for m in row["messages"] if m["role"] == "assistant"][-1]
    assert text.startswith(last) and "<|im_end|>" in text  # the reply and its end marker, nothing before it
    runs = sum(1 for j, m in enumerate(seq["completion_mask"]) if m and (j == 0 or not seq["completion_mask"][j - 1]))
    assert runs == 1
    with pytest.raises(EvalError, match="held-out row 0"):
        reference_sequences(smol_tokenizer, [{"messages": [{"role": "user", "content": "hi"}]}], "chat", None)
