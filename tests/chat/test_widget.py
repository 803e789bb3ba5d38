"""The notebook's chat widget driven in Python (its buttons and controls, no browser) on the embedded
model with a tiny real adapter; tests/browser/test_chat_widget.py checks the same widget in a page."""
import html
import time

import pytest

from helpers.chat.session import PRESETS, ChatSession, load_chat_model
from helpers.chat.widget import ChatWidget
from tiny_adapter import EMBEDDED, tiny_adapter

NEVER = [49151]  # a token id the model never writes: it then never "emits EOS"


@pytest.fixture(scope="session")
def adapter(tmp_path_factory):
    return tiny_adapter(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def tuned(adapter):
    return load_chat_model(EMBEDDED, str(adapter), quantization="none")


@pytest.fixture(scope="module")
def plain():
    from helpers.common.models import load_model
    return load_model(EMBEDDED, quantization="none", verbose=False)


def test_widget_driven_by_code(tuned):
    model, tok = tuned
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=6)
    ui = ChatWidget(s)
    ui.model_switch.value = "base"
    ui.send("Hello!", wait=True)
    assert not ui.error and len(s.history) == 2 and s.last.tuned is False
    assert "base model" in ui.status.value and "Hello!" in ui.transcript.value
    # each reply is labelled with the model that wrote it
    ui.model_switch.value = "tuned"
    ui.send("And you?", wait=True)
    assert ui.replies == ["base", "tuned"] and s.last.tuned is True
    assert ui.transcript.value.index(">base model<") < ui.transcript.value.index(">tuned model<")
    assert "BASE MODEL:" in ui.text() and "TUNED MODEL:" in ui.text()
    # Stop while the reply streams in the background thread
    ui.max_new_tokens.value = 400
    s.eos_token_ids = NEVER
    ui.send("Tell me a long story.")
    deadline = time.time() + 120
    while ui.busy and "▌" not in ui.transcript.value and time.time() < deadline:
        time.sleep(0.05)
    ui.stop()
    ui.wait(120)
    assert not ui.busy and s.last.stop_reason == "stopped" and "stopped" in ui.status.value
    ui.clear()
    assert s.history == [] and "No messages" in ui.transcript.value


def test_buttons_send_escape_and_clear_and_the_preset_switches_the_system_prompt(tuned):
    model, tok = tuned
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=5)
    ui = ChatWidget(s)
    assert "No messages yet" in ui.transcript.value and ui.stop_button.disabled and not ui.send_button.disabled
    ui.preset.value = "storymaker"  # the dropdown: the session's system prompt and the editable box follow
    assert s.preset == "storymaker" and ui.system.value == PRESETS["storymaker"]
    ui.message.value = "   "
    ui.send_button.click()
    assert "Type a message first" in ui.status.value and s.history == [] and not ui.busy
    ui.message.value = "<i>Begin</i> in a forest & a cave"
    ui.send_button.click()  # what the Send button (and Enter) does
    assert ui.message.value == ""  # the box is emptied as the message goes out
    ui.wait(120)
    assert not ui.busy and not ui.error, ui.error
    assert [m["role"] for m in s.history] == ["user", "assistant"] and ui.replies == ["tuned"]
    assert s.history[0]["content"] == "<i>Begin</i> in a forest & a cave" and s.system_prompt == PRESETS["storymaker"]
    # the transcript shows the text, never its markup
    assert "<b>you:</b> &lt;i&gt;Begin&lt;/i&gt; in a forest &amp; a cave" in ui.transcript.value
    assert html.escape(s.history[1]["content"]) in ui.transcript.value and "▌" not in ui.transcript.value
    assert "tuned model: " in ui.status.value and not ui.send_button.disabled and ui.stop_button.disabled
    assert ui.text().startswith("[system: storymaker] You are Storymaker")
    assert ui.text().endswith("TUNED MODEL: " + s.history[1]["content"])
    ui.clear_button.click()
    assert s.history == [] and ui.replies == [] and ui.status.value == "Conversation cleared."
    assert "No messages yet" in ui.transcript.value and s.preset == "storymaker"


def test_a_second_send_while_answering_and_a_tuned_switch_without_adapter_are_refused(tuned, plain):
    model, tok = tuned
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=400, eos_token_ids=NEVER)
    ui = ChatWidget(s)
    ui.send("Tell me a long story.")
    ui.send("And another one.")  # the first reply is still streaming
    assert "Still answering" in ui.status.value and ui.send_button.disabled and not ui.stop_button.disabled
    deadline = time.time() + 120
    while ui.busy and "▌" not in ui.transcript.value and time.time() < deadline:
        time.sleep(0.05)  # the reply is streaming: a stop now ends it (not one before generation starts)
    ui.stop_button.click()
    ui.wait(120)
    assert not ui.busy and [m["content"] for m in s.history if m["role"] == "user"] == ["Tell me a long story."]
    assert s.last.stop_reason == "stopped"
    # a model without adapter: the switch is disabled, and forcing it to "tuned" is a clear error, no reply
    bare = ChatWidget(ChatSession(*plain, temperature=0.0, max_new_tokens=4, tuned=False))
    assert bare.model_switch.disabled and bare.model_switch.value == "base"
    bare.model_switch.value = "tuned"
    bare.send("Hello", wait=True)
    assert "no adapter" in bare.error and "Error:" in bare.status.value and bare.session.history == []
    assert not bare.busy


def test_documents_preset_shows_the_sources_of_each_reply(tuned):
    from helpers.evaluation import ChunkIndex
    from paper_chunks import paper_chunks, question
    model, tok = tuned
    chunks = paper_chunks(tok)
    assert ChatWidget(ChatSession(model, tok)).preset.options == ("assistant", "storymaker")  # no chunks: not offered
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=4, index=ChunkIndex(chunks), retrieval_k=2)
    ui = ChatWidget(s)
    assert "documents" in ui.preset.options
    ui.send("Hi", wait=True)
    ui.preset.value = "documents"
    ui.send(question(chunks[6]), wait=True)
    assert not ui.error and ui.sources[0] == "" and ui.sources[1].startswith("sources: [1] 1111.2011v2.pdf #6, [2] ")
    assert html.escape(ui.sources[1]) in ui.transcript.value and "Sources: [1] 1111.2011v2.pdf #6" in ui.status.value
    assert f"({ui.sources[1]})" in ui.text()
    ui.clear()
    assert ui.sources == [] and "kit-chat-sources" not in ui.transcript.value
