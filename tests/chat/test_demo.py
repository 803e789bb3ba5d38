"""Notebook 06's scripted chat on the embedded model with a tiny real adapter: labelled transcripts of
the tuned model and its base, where they part, the documents question with its sources, and Stop."""
import pytest

from helpers.chat.demo import DEMO_TURNS, first_difference, scripted_chat
from helpers.chat.session import ChatSession, load_chat_model
from helpers.chat.widget import ChatWidget
from tiny_adapter import EMBEDDED


@pytest.fixture(scope="module")
def tuned(adapter):
    return load_chat_model(EMBEDDED, str(adapter), quantization="none")


def test_first_difference():
    assert first_difference("a b c", "a b c") is None
    assert first_difference("a b c", "a x c") == 2
    assert first_difference("a b", "a b c") == 3


def test_scripted_chat_shows_both_models_labelled_and_where_they_part(tuned, capsys):
    from helpers.evaluation import ChunkIndex
    from paper_chunks import paper_chunks
    model, tok = tuned
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=16, index=ChunkIndex(paper_chunks(tok)))
    ui = ChatWidget(s)
    out = scripted_chat(ui, index=s.index, max_new_tokens=24)
    text = capsys.readouterr().out
    assert set(out) == {*DEMO_TURNS, "stop"} and out["stop"].startswith("Stop pressed mid-reply: stopped after")
    for preset in DEMO_TURNS:
        assert f"=== {preset}: the same messages to the tuned model and to its base" in text
        assert f"[system: {preset}]" in text
        assert (f"the first replies differ from word {out[preset]}" if out[preset] else "are the same") in text
    assert text.count("TUNED MODEL:") >= 4 and text.count("BASE MODEL:") >= 3  # two turns of assistant, one story
    assert "=== documents" in text and "(sources: [1] " in text
    # every reply cut at the limit says so, each on its own line (not only the last of a conversation)
    replies = [ln for ln in text.splitlines() if ln.strip().startswith(("TUNED MODEL:", "BASE MODEL:"))]
    assert all("[cut at" not in r or r.endswith("… [cut at 24 tokens]") for r in replies), replies
    # the widget is left as it was: settings back, conversation cleared
    assert ui.max_new_tokens.value == 16 and ui.temperature.value == 0.0 and s.seed is None
    assert s.history == [] and ui.preset.value == "assistant"
