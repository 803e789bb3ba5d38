"""Prompt formatting and reply-only loss masks, with SmolLM2's ChatML and the real Llama 3 template."""
import copy

import pytest

from helpers.common.prompts import PromptError, encode, encode_many, prompt_text, reference, resolve_style, to_messages

CONV = {"messages": [
    {"role": "user", "content": "hi, how are you?"},
    {"role": "assistant", "content": "Good thanks! And you?"},
    {"role": "user", "content": "tired, long day at work"},
    {"role": "assistant", "content": "Oh no, get some rest."},
]}
ROW = {"instruction": "Summarize the text.", "input": "LoRA trains small adapters.", "output": "Adapters are trained."}


def trained_text(tok, enc):
    return tok.decode([i for i, m in zip(enc["input_ids"], enc["completion_mask"]) if m])


@pytest.mark.parametrize("which", ["smol", "llama3"])
def test_chat_mask_covers_replies_and_end_of_turn_only(which, smol_tokenizer, llama3_tokenizer):
    tok = smol_tokenizer if which == "smol" else llama3_tokenizer
    enc = encode(tok, CONV, style="chat")
    end = "<|im_end|>" if which == "smol" else "<|eot_id|>"
    text = trained_text(tok, enc)
    assert "Good thanks! And you?" in text and "Oh no, get some rest." in text
    assert text.count(end) == 2  # each reply ends with the marker generation stops on
    assert "hi, how are you?" not in text and "tired" not in text  # user turns are not trained
    # the full token sequence is exactly the chat template's rendering
    full = tok.apply_chat_template(CONV["messages"], tokenize=False)
    assert tok.decode(enc["input_ids"]) == full


def test_llama3_prompt_ends_with_assistant_header(llama3_tokenizer):
    p = prompt_text(llama3_tokenizer, ROW, style="chat")
    assert p.startswith("<|begin_of_text|>") and p.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "Summarize the text." in p and "LoRA trains small adapters." in p


@pytest.mark.parametrize("which", ["smol", "llama3"])
def test_alpaca_template_appends_eos_and_trains_it(which, smol_tokenizer, llama3_tokenizer):
    tok = smol_tokenizer if which == "smol" else llama3_tokenizer
    enc = encode(tok, ROW, style="alpaca")
    text = trained_text(tok, enc)
    assert text == "Adapters are trained." + tok.eos_token
    full = tok.decode(enc["input_ids"])
    assert "### Instruction:\nSummarize the text." in full and "### Input:\nLoRA trains small adapters." in full
    assert full.rstrip(tok.eos_token).endswith("### Response:\nAdapters are trained.")
    if which == "llama3":
        assert enc["input_ids"][0] == tok.bos_token_id


def test_prompt_text_matches_training_prefix(smol_tokenizer):
    """The inference prompt is exactly the untrained prefix the model saw in training."""
    row = {"messages": CONV["messages"][:2]}
    enc = encode(smol_tokenizer, row, style="chat")
    first_trained = enc["completion_mask"].index(1)
    assert smol_tokenizer.decode(enc["input_ids"][:first_trained]) == prompt_text(smol_tokenizer, row)


def test_truncation_is_reported_and_prompt_only_rows_are_skipped(smol_tokenizer):
    long = copy.deepcopy(ROW)
    long["input"] = "word " * 400
    rows = [ROW, long, {"instruction": "x", "output": ""}, {"foo": 1}]
    enc, rep = encode_many(smol_tokenizer, rows, style="alpaca", max_len=64)
    assert rep["kept"] == 1 and rep["skipped"] == 3
    reasons = dict(rep["skipped_rows"])
    assert "no reply tokens left" in reasons[1] and "empty 'output'" in reasons[2] and "keys ['foo']" in reasons[3]
    long_reply = dict(ROW, output="answer " * 200)
    enc, rep = encode_many(smol_tokenizer, [ROW, long_reply], style="alpaca", max_len=100)
    assert rep["truncated"] == 1 and rep["kept"] == 2 and len(enc[1]["input_ids"]) == 100


def test_a_tokenizer_without_chat_template_is_explained(smol_tokenizer):
    import copy as _c
    tok = _c.deepcopy(smol_tokenizer)
    tok.chat_template = None
    assert resolve_style(tok, "auto") == "alpaca"
    with pytest.raises(PromptError, match="no chat template"):
        resolve_style(tok, "chat")


def test_system_prompt_and_reference():
    msgs = to_messages(ROW, system="Be brief.")
    assert msgs[0] == {"role": "system", "content": "Be brief."} and msgs[-1]["role"] == "assistant"
    assert reference(CONV) == "Oh no, get some rest." and reference(ROW) == "Adapters are trained."
    with pytest.raises(PromptError, match="end with the assistant"):
        reference({"messages": CONV["messages"][:1]})
