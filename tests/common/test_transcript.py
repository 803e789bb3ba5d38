"""Conversations rendered for a person (helpers/common/transcript.py), on the bundled real
conversations and answers of the real embedded model: turns from their start, no template tokens,
cut marks where a text was cut or the model hit its token limit, readable headings."""
import pytest

from helpers.common.generate import generate_answers
from helpers.common.models import load_model
from helpers.common.prompts import prompt_text, to_messages
from helpers.common.resources import chitchat
from helpers.common.rows import cut_at_reference
from helpers.common.transcript import Answer, clip, conversation_markdown, conversation_text, heading
from helpers.core.jsonl import read_jsonl
from tiny_adapter import EMBEDDED

TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>")


@pytest.fixture(scope="module")
def answered():
    """Three held-out conversations with a system turn, and the embedded model's answers to them at
    12 new tokens (cut) and at 200 (some stop by themselves)."""
    model, tok = load_model(EMBEDDED, quantization="none", verbose=False)
    rows = [cut_at_reference(r) for r in read_jsonl(chitchat("test"))[:3]]
    turns = [to_messages(r, system="You are a friendly assistant who answers briefly.")[:-1] for r in rows]
    prompts = [prompt_text(tok, t) for t in turns]
    assert all("<|im_start|>" in p for p in prompts)  # what the model reads is template text
    short = generate_answers(model, tok, prompts, max_new_tokens=12)
    return rows, turns, short


def test_markdown_shows_the_turns_whole_the_answers_with_cut_marks_and_no_template_tokens(answered):
    rows, turns, short = answered
    for i, (r, t) in enumerate(zip(rows, turns)):
        answers = [Answer("base", short["answers"][i], short["stopped"][i], "ROUGE-L 0.12"),
                   Answer("tuned", "A complete answer.", True)]
        md = conversation_markdown(t, answers, r["messages"][-1]["content"], heading(i + 1, t[-1]["content"]))
        assert not any(tok in md for tok in TEMPLATE_TOKENS)
        assert "> **system:** You are a friendly assistant who answers briefly." in md
        user = " ".join(t[-1]["content"].split())
        assert f"> **user:** {user[:40]}" in md  # the user turn from its first word, never mid-phrase
        assert md.startswith(f"#### Example {i + 1}: {' '.join(user.split()[:3])}")
        base_line = next(line for line in md.splitlines() if line.startswith("**base**"))
        if not short["stopped"][i]:  # cut at 12 tokens: the mark and the reason
            assert base_line.startswith("**base** (ROUGE-L 0.12, cut at the token limit): ") and base_line.endswith("…")
        assert "**tuned**: A complete answer." in md
    assert not all(short["stopped"])  # 12 tokens cut at least one answer, so the branch above ran


def test_text_form_for_a_console_and_tags_in_answers_stay_visible(answered):
    rows, turns, short = answered
    text = conversation_text(turns[0], [Answer("base", short["answers"][0], short["stopped"][0])],
                             rows[0]["messages"][-1]["content"], "Example 1")
    lines = [line for line in text.splitlines() if not line.startswith(" ")]  # continuation lines are indented
    assert lines[0] == "Example 1" and lines[2].startswith("system:") and lines[3].startswith("user:")
    assert lines[4].startswith("reference:") and lines[5].startswith("base:") and len(lines) == 6
    assert not any(tok in text for tok in TEMPLATE_TOKENS)
    md = conversation_markdown([{"role": "user", "content": "Why <think>?"}], [Answer("tuned", "<b>bold</b> & more")])
    assert "Why &lt;think&gt;?" in md and "&lt;b&gt;bold&lt;/b&gt; &amp; more" in md


def test_clip_cuts_at_a_word_with_a_mark_and_headings_use_the_first_words():
    text = "The quick brown fox jumps over the lazy dog near the river bank"
    assert clip(text, 200) == text
    cut = clip(text, 30)
    assert cut == "The quick brown fox jumps over…" and len(cut) <= 31
    assert clip("  many   spaces\n\n\n\nnew para ", 100) == "many spaces\n\nnew para"
    assert heading(3, "What does the paper say about the Hubble tension in cosmology today?") == \
        "Example 3: What does the paper say about the Hubble…"
    assert heading(1, "Hi there") == "Example 1: Hi there" and heading(2, "") == "Example 2"
    empty = conversation_markdown([], [Answer("base", "", False)])
    assert "**base** (cut at the token limit): (empty)" in empty
