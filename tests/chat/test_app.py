"""The Gradio app's parts with the embedded model and a tiny real adapter: replies labelled with their
model, cut and stopped replies marked, the login read from the environment, and a real Gradio server on
127.0.0.1 that refuses every request without that login (real HTTP)."""
import threading
import time
import types

import pytest
import httpx

from helpers.chat import ChatError, app_login, launch_app, load_chat_model, reply_mark
from helpers.chat.app import Replier, app_header, shown_message
from helpers.chat.session import ReplyInfo
from tiny_adapter import EMBEDDED

SETTINGS = ("assistant", "", "tuned", 0.0, 0.9)  # preset, system (""= the preset's), model, temperature, top_p


@pytest.fixture(scope="module")
def tuned(adapter):
    return load_chat_model(EMBEDDED, str(adapter), quantization="none")


def last(shown):
    return shown[-1]["content"]


def test_marks_and_labels():
    assert reply_mark(ReplyInfo("max_new_tokens", 16)) == "… [cut at 16 tokens]"
    assert reply_mark(ReplyInfo("stopped", 3)) == " [stopped]"
    assert reply_mark(ReplyInfo("eos", 9)) == ""
    shown = shown_message({"role": "assistant", "model": "base", "content": "Hi", "mark": " [stopped]"})
    assert shown == {"role": "assistant", "content": "**base model:** Hi [stopped]"}
    assert shown_message({"role": "user", "content": "Hello"}) == {"role": "user", "content": "Hello"}


def test_header_names_no_position(adapter):
    header = app_header(EMBEDDED, str(adapter), str(adapter))
    assert EMBEDDED in header and "run **tiny-sft**" in header and "each reply says which model" in header
    assert "right" not in header and "left" not in header and "below" not in header


def test_replies_are_labelled_by_model_and_cut_replies_marked(tuned):
    model, tok = tuned
    replier = Replier(model, tok, has_adapter=True)
    tab = types.SimpleNamespace(session_hash="tab-1")
    *_, (shown, state) = replier.respond("Tell me about the sea.", [], *SETTINGS, 4, request=tab)
    assert [m["role"] for m in state] == ["user", "assistant"] and state[1]["model"] == "tuned"
    assert last(shown).startswith("**tuned model:** ") and last(shown).endswith("… [cut at 4 tokens]")
    # switch to the base: the new reply says so, the first keeps its label, the model sees no labels
    settings = SETTINGS[:2] + ("base",) + SETTINGS[3:]
    *_, (shown, state) = replier.respond("And the mountains?", state, *settings, 4, request=tab)
    assert [m.get("model") for m in state] == [None, "tuned", None, "base"]
    assert shown[1]["content"].startswith("**tuned model:**") and shown[3]["content"].startswith("**base model:**")
    assert "model:**" not in state[1]["content"] and "[cut" not in state[1]["content"]


def test_stop_keeps_the_reply_and_marks_it(tuned):
    model, tok = tuned
    replier = Replier(model, tok, has_adapter=True)
    tab, other = types.SimpleNamespace(session_hash="tab-1"), types.SimpleNamespace(session_hash="tab-2")
    steps = replier.respond("Tell me a long story about a lighthouse keeper.", [], *SETTINGS, 400, request=tab)
    next(steps)  # the user's message is shown at once
    streaming = next(steps)[0]
    assert last(streaming).endswith(" ▌")
    replier.stop(other)  # another tab's Stop leaves this reply alone
    assert "tab-1" in replier.running
    replier.stop(tab)
    *_, (shown, state) = steps
    assert last(shown).endswith(" [stopped]") and state[-1]["mark"] == " [stopped]"
    assert not replier.running


def test_login_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("APP_USER", raising=False)
    monkeypatch.delenv("APP_PASSWORD", raising=False)
    assert app_login() is None
    monkeypatch.setenv("APP_USER", "ada")
    with pytest.raises(ChatError, match="APP_PASSWORD is not set"):
        app_login()
    monkeypatch.setenv("APP_PASSWORD", "not-a-real-secret")
    assert app_login() == ("ada", "not-a-real-secret")


def test_the_app_refuses_requests_without_the_login(tuned, adapter, monkeypatch, capsys):
    model, tok = tuned
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    app = launch_app(model, tok, EMBEDDED, str(adapter), share=False, auth=("ada", "not-a-real-secret"),
                     inline=False)
    try:
        assert app.url.startswith("http://127.0.0.1:") and app.share_url is None
        assert "behind a login" in capsys.readouterr().out
        for path in ("config", "gradio_api/info"):
            r = httpx.get(app.url + path, timeout=30)
            assert r.status_code == 401, (path, r.status_code, r.text[:200])
        # asking the model to write (the chat's own request) is refused too
        r = httpx.post(app.url + "gradio_api/queue/join", json={"data": ["Hi"], "fn_index": 0, "session_hash": "x"},
                       timeout=30)
        assert r.status_code == 401, (r.status_code, r.text[:200])
        page = httpx.get(app.url, timeout=30)  # the login form: nothing of the app's config in it
        assert page.status_code == 200 and EMBEDDED not in page.text
        s = httpx.Client()
        assert s.post(app.url + "login", data={"username": "ada", "password": "wrong"}, timeout=30).status_code == 400
        assert s.get(app.url + "config", timeout=30).status_code == 401
        assert s.post(app.url + "login", data={"username": "ada", "password": "not-a-real-secret"},
                      timeout=30).status_code == 200
        config = s.get(app.url + "config", timeout=30)
        assert config.status_code == 200 and EMBEDDED in config.text and "tiny-sft" in config.text
    finally:
        app.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(app.url + "config", timeout=5)
    app.close()  # a second close (the button, then code) does nothing
    assert capsys.readouterr().out.count("The app is stopped.") == 1


def test_stop_from_another_thread_ends_generation(tuned):
    """Stop arrives on Gradio's thread while the reply streams on another."""
    model, tok = tuned
    replier = Replier(model, tok, has_adapter=False)
    tab = types.SimpleNamespace(session_hash="t")
    out = {}

    def run():
        out["all"] = list(replier.respond("Write a very long poem about rivers.", [], "assistant", "", "tuned",
                                          0.0, 0.9, 600, request=tab))

    t = threading.Thread(target=run)
    t.start()
    while "t" not in replier.running and t.is_alive():
        time.sleep(0.001)
    replier.stop(tab)  # at once: before the first token, which must not lose it
    t.join(120)
    shown, state = out["all"][-1]
    assert state[-1]["model"] == "base"  # no adapter: the base answers whatever the switch says
    assert last(shown).startswith("**base model:**") and state[-1]["mark"] == " [stopped]", state[-1]
    assert len(state[-1]["content"].split()) < 20
