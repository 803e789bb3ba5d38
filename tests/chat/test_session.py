"""The chat session with the embedded model and a tiny real adapter (no mocks)."""
import time

import pytest

from helpers.chat.session import PRESETS, ChatConfig, ChatError, ChatSession, load_chat_model
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


def test_stream_yields_text_and_keeps_history(tuned):
    model, tok = tuned
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=8)
    pieces = list(s.stream("What is the capital of France?"))
    reply = "".join(pieces).strip()
    assert reply and all(isinstance(p, str) and p for p in pieces)
    assert [m["role"] for m in s.history] == ["user", "assistant"]
    assert s.history[1]["content"] == reply
    assert s.last.stop_reason in ("eos", "max_new_tokens") and 1 <= s.last.new_tokens <= 8
    # the second turn sees the first through the chat template
    s.max_new_tokens = 4
    s.send("And of Italy?")
    assert len(s.history) == 4 and s.last.prompt_tokens > 20


def test_max_new_tokens_bounds_a_model_that_never_emits_eos(tuned):
    model, tok = tuned
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=12, eos_token_ids=NEVER)
    s.send("Say hi.")
    assert s.last.stop_reason == "max_new_tokens" and s.last.new_tokens == 12


def test_stop_mid_stream_returns_promptly(tuned):
    model, tok = tuned
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=400, eos_token_ids=NEVER)
    got = []
    t0 = time.time()
    for piece in s.stream("Tell me a long story about a lighthouse."):
        got.append(piece)
        if len(got) == 2:
            s.stop()  # what the Stop button does, here from the consuming thread
    assert s.last.stop_reason == "stopped"
    assert s.last.new_tokens < 20, s.last
    assert time.time() - t0 < 120
    assert s.history[-1]["content"] == "".join(got).strip()


def test_stop_strings_cut_the_reply(tuned):
    model, tok = tuned
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=30, eos_token_ids=NEVER, stop_strings=["e"])
    reply = s.send("Describe the sea.")
    assert "e" not in reply and s.last.stop_reason == "stop_string"


def test_long_conversation_drops_oldest_turns_and_says_so(tuned):
    model, tok = tuned
    history = []
    for i in range(4):
        history += [{"role": "user", "content": f"Question {i}: " + "tell me more " * 20},
                    {"role": "assistant", "content": f"Answer {i}: " + "here is more " * 20}]
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=2, context_tokens=260)
    kept, dropped = s.fit(history + [{"role": "user", "content": "Last question?"}])
    assert dropped >= 2 and kept[0]["role"] == "user" and kept[-1]["content"] == "Last question?"
    list(s.stream("Last question?", history=history))
    assert "oldest" in s.notice and "260-token context" in s.notice
    assert s.last.trimmed_turns == dropped and s.last.prompt_tokens <= 260 - 2
    # a single message longer than the context cannot be trimmed: a clear error, no generation
    s2 = ChatSession(model, tok, max_new_tokens=2, context_tokens=120)
    with pytest.raises(ChatError, match="Shorten it"):
        s2.send("word " * 200)


def test_base_switch_equals_plain_base_and_tuned_differs(tuned, plain):
    import torch
    model, tok = tuned
    pmodel, ptok = plain
    q = "Do you like music?"
    base = ChatSession(model, tok, temperature=0.0, max_new_tokens=8, tuned=False)
    ref = ChatSession(pmodel, ptok, temperature=0.0, max_new_tokens=8, tuned=False)
    assert base.send(q) == ref.send(q)
    ids = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.inference_mode():
        on = model(ids).logits
        with model.disable_adapter():
            off = model(ids).logits
        plain_logits = pmodel(ids).logits
    assert torch.allclose(off, plain_logits, atol=1e-4)
    assert (on - plain_logits).abs().max() > 1e-3  # the adapter changes the model


def test_bad_input_clear_messages(tuned, plain, tmp_path):
    model, tok = tuned
    s = ChatSession(model, tok)
    with pytest.raises(ChatError, match="empty message"):
        s.send("   ")
    with pytest.raises(ChatError, match="temperature"):
        s.temperature = 5.0
        s.send("hi")
    with pytest.raises(ChatError, match="Unknown preset"):
        s.set_preset("pirate")
    with pytest.raises(ChatError, match="no adapter"):
        ChatSession(*plain, tuned=True)
    with pytest.raises(ChatError, match="notebook 04"):
        load_chat_model(EMBEDDED, str(tmp_path / "missing"), quantization="none")
    s.set_preset("storymaker")
    assert s.system_prompt == PRESETS["storymaker"] and "three numbered choices" in s.system_prompt


def test_config_smoke_preset_and_validation(monkeypatch):
    from helpers.core.config import ConfigError
    monkeypatch.setenv("SMOKE", "1")
    cfg = ChatConfig.from_params({"PRESET": "storymaker"})
    assert cfg.preset == "storymaker" and cfg.max_new_tokens == 16 and cfg.temperature == 0.0
    with pytest.raises(ConfigError, match="PRESET"):
        ChatConfig.from_params({"PRESET": "nope"})
    monkeypatch.setenv("MAX_NEW_TOKENS", "0")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        ChatConfig.from_params({})


def test_documents_preset_answers_with_the_papers_passages_and_names_its_sources(tuned):
    """The "documents" preset on the bundled paper's chunks: the top passages go before the message
    the model sees, the history keeps it as typed, and the reply's sources are the passages used."""
    from helpers.evaluation import ChunkIndex
    from paper_chunks import paper_chunks, question
    model, tok = tuned
    chunks = paper_chunks(tok)
    with pytest.raises(ChatError, match="no chunks are loaded"):
        ChatSession(model, tok, preset="documents")
    s = ChatSession(model, tok, temperature=0.0, max_new_tokens=4, index=ChunkIndex(chunks), retrieval_k=2)
    assert s.presets == ["assistant", "storymaker", "documents"]
    q = question(chunks[6])
    s.send(q)  # the assistant preset does not retrieve
    plain_tokens = s.last.prompt_tokens
    assert s.sources == [] and s.last.extra == {}
    s.clear()
    s.set_preset("documents")
    assert "passages" in s.system_prompt
    s.send(q)
    assert s.sources[0].chunk_id == chunks[6]["chunk_id"] and len(s.sources) == 2
    assert s.last.extra["sources"] == ["1111.2011v2.pdf #6", s.sources[1].label]
    assert s.last.prompt_tokens > plain_tokens + 150  # two passages of up to 160 tokens went in
    assert s.history[0]["content"] == q
    s.send("the of and")  # nothing to retrieve for stop words: no sources, and the old passages are gone
    assert s.sources == [] and s.last.prompt_tokens < plain_tokens + 60
    with pytest.raises(ChatError, match="no chunks are loaded"):
        ChatSession(model, tok).set_preset("documents")
