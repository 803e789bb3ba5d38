"""Batched generation on the real embedded model: answers come back in the prompts' order whatever
the batching, long prompts keep their end, and base and tuned answers come from one loaded model."""
import pytest

from helpers.common.generate import adapter_disabled, compare_on_examples, generate_answers
from helpers.common.models import load_model
from helpers.common.prompts import prompt_text
from helpers.common.resources import chitchat
from helpers.core.jsonl import read_jsonl
from tiny_adapter import EMBEDDED, tiny_adapter

QUESTIONS = ["What is the capital of France?", "Name a colour of the sky.",
             "Write one sentence about cats and why people keep them as pets at home."]


@pytest.fixture(scope="module")
def model_and_tok():
    return load_model(EMBEDDED, quantization="none", verbose=False)


def prompts(tok):
    return [prompt_text(tok, {"instruction": q, "input": "", "output": ""}) for q in QUESTIONS]


def test_answers_keep_the_prompts_order_whatever_the_batch(model_and_tok):
    model, tok = model_and_tok
    one = generate_answers(model, tok, prompts(tok), max_new_tokens=12, batch_size=1)
    all_at_once = generate_answers(model, tok, prompts(tok), max_new_tokens=12, batch_size=3)
    assert one["answers"] == all_at_once["answers"]
    assert "paris" in one["answers"][0].lower()
    assert all(0 < n <= 12 for n in one["new_tokens"]) and len(one["stopped"]) == 3
    assert tok.padding_side == "right"  # restored after the left-padded batches


def test_a_long_prompt_keeps_its_end_and_is_counted(model_and_tok):
    model, tok = model_and_tok
    ps = prompts(tok)
    out = generate_answers(model, tok, ps, max_new_tokens=4, max_prompt_tokens=20)
    longer = sum(len(tok(p, add_special_tokens=False)["input_ids"]) > 20 for p in ps)
    assert out["truncated"] == longer > 0 and max(out["prompt_tokens"]) == 20
    with pytest.raises(ValueError, match="batch_size=0"):
        generate_answers(model, tok, ps, batch_size=0)


def test_base_answers_with_the_adapter_switched_off_are_the_base_models(tmp_path_factory, model_and_tok, capsys):
    adapter = tiny_adapter(tmp_path_factory.getbasetemp())
    base_model, tok = model_and_tok
    plain = generate_answers(base_model, tok, prompts(tok), max_new_tokens=10)
    tuned_model, _ = load_model(EMBEDDED, quantization="none", adapter=str(adapter), verbose=False)
    with adapter_disabled(tuned_model):
        off = generate_answers(tuned_model, tok, prompts(tok), max_new_tokens=10)
    assert off["answers"] == plain["answers"]
    rows = compare_on_examples(EMBEDDED, adapter, chitchat("train"), n=2, quantization="none", max_new_tokens=8)
    held_out = read_jsonl(chitchat("test"))  # the test split beside the training file, never the training rows
    assert len(rows) == 2 and rows[0]["reference"] in {m["content"] for r in held_out for m in r["messages"]}
    shown = capsys.readouterr().out  # the conversations as a person reads them, never template text
    assert shown.count("reference:") == 2 and shown.count("Example ") == 2 and "<|im_start|>" not in shown
    assert rows[0]["turns"][-1]["content"].split()[0] in shown  # the user turn, from its first word
    assert "(cut at the token limit)" in shown and "…" in shown  # 8 new tokens: every answer is cut, and says so
