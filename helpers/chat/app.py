"""The chat as a Gradio app over a loaded model: ``app/app.py`` (your machine, a Space) and notebook 06
(shown inline, ``launch_app``) build it here.

What the widget shows, the app shows: each reply is labelled with the model that wrote it (tuned or
base, since the switch can change between turns), a reply cut at the token limit ends with
"… [cut at N tokens]" and a stopped one with "[stopped]". Stop ends generation through the
session (its reply is kept and marked), not by cancelling the request. One reply at a time on the
one model (a lock): switching the adapter off is model-wide. A login (``auth``, from
:func:`app_login`: ``APP_USER`` / ``APP_PASSWORD`` in the environment or Colab's secrets) guards
every page and API route; a share link without one is open to anyone who has it.
"""
import contextlib
import io
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from helpers.chat.session import PRESETS, ChatError, ChatSession, ReplyInfo
from helpers.common.run import RunDir

LOGIN_VARS = ("APP_USER", "APP_PASSWORD")  # environment variables or Colab secrets holding the app's login


def reply_mark(info: ReplyInfo) -> str:
    """What ends a reply's text: "… [cut at N tokens]" at the token limit, " [stopped]" after Stop."""
    if info.stop_reason == "max_new_tokens":
        return f"… [cut at {info.new_tokens} tokens]"
    if info.stop_reason == "stopped":
        return " [stopped]"
    return ""


def shown_message(m: dict) -> dict:
    """A message of the app's history as the chat shows it: a reply starts with its model's label."""
    if m["role"] != "assistant":
        return {"role": m["role"], "content": m["content"]}
    return {"role": "assistant", "content": f"**{m['model']} model:** {m['content']}{m.get('mark', '')}"}


def _secret(name: str) -> str:
    """A setting from the environment, else from Colab's secret store ("" when neither has it)."""
    if os.environ.get(name):
        return os.environ[name]
    if "google.colab" in sys.modules:
        try:
            from google.colab import userdata  # type: ignore
            return userdata.get(name) or ""
        except Exception:
            return ""
    return ""


def app_login() -> tuple[str, str] | None:
    """(user, password) for Gradio's login from ``APP_USER`` / ``APP_PASSWORD`` (environment or Colab
    secrets, never typed in a notebook); None when neither is set; one without the other is an error."""
    user, password = (_secret(n) for n in LOGIN_VARS)
    if bool(user) != bool(password):
        missing = LOGIN_VARS[1] if user else LOGIN_VARS[0]
        raise ChatError(f"The app's login needs both {' and '.join(LOGIN_VARS)}; {missing} is not set (a Colab "
                        "secret or an environment variable).")
    return (user, password) if user else None


def adapter_label(given: str, folder: str) -> tuple[str, str]:
    """How the header names the adapter: (the training run it came from, with its steps and eval
    loss when the run's manifest is there, or the Hub repo id; where it was loaded from)."""
    if not given:
        return "", ""
    if not Path(given).is_dir():
        return f"`{given}`", "the Hugging Face Hub"
    path = Path(folder).resolve()
    m = RunDir.of(path).metrics
    facts = []
    if m.get("steps"):
        facts.append(f"{m['steps']} training step{'s' if m['steps'] != 1 else ''}")
    if m.get("eval_loss") is not None:
        facts.append(f"eval loss {m['eval_loss']:.3f}")
    run = path.parent.name if path.name in ("adapter", "model") else path.name
    return f"run **{run}**" + (f" ({', '.join(facts)})" if facts else ""), f"`{given}`"


def app_header(base_name: str, adapter_given: str = "", adapter_dir: str = "") -> str:
    """The header: the base model, the run that tuned it, and what to try (worded without a position,
    since the side panel moves below the chat on a narrow window)."""
    run, source = adapter_label(adapter_given, adapter_dir or adapter_given)
    tuned = bool(adapter_given)
    return (f"### Chat with `{base_name}`" + (f", tuned by {run}" if tuned else " (the base model: no ADAPTER set)")
            + "\n" + (f"Adapter from {source}. " if tuned else "")
            + "Pick the *storymaker* preset for a choose-your-own-adventure story"
            + (", and switch *Model* to compare the tuned model with its base: each reply says which model "
               "wrote it." if tuned else "."))


@dataclass
class Replier:
    """Answers one message at a time on the one model, and stops the reply of the browser tab that
    asks (each tab's running session is kept by its Gradio session id)."""
    model: object
    tokenizer: object
    has_adapter: bool

    def __post_init__(self):
        self.lock = threading.Lock()
        self.running: dict[str, ChatSession] = {}
        self.stopping: set[str] = set()  # tabs whose Stop came, also before their reply's first token

    def stop(self, request=None) -> None:
        """Stop the reply being written for this browser tab (it is kept, marked "[stopped]")."""
        key = getattr(request, "session_hash", "") or ""
        self.stopping.add(key)
        session = self.running.get(key)
        if session is not None:
            session.stop()

    def respond(self, message, state, preset, system, which, temperature, top_p, max_new_tokens, request=None):
        """Stream the reply to ``message``: yields (the chat as shown, the history kept)."""
        import gradio as gr

        text = (message or "").strip()
        if not text:
            yield [shown_message(m) for m in state], state
            return
        which = which if self.has_adapter else "base"
        try:
            session = ChatSession(self.model, self.tokenizer, preset=preset, system_prompt=system or PRESETS[preset],
                                  temperature=float(temperature), top_p=float(top_p),
                                  max_new_tokens=int(max_new_tokens), tuned=which == "tuned")
        except ChatError as exc:
            raise gr.Error(str(exc)) from None
        history = [{"role": m["role"], "content": m["content"]} for m in state]
        asked = state + [{"role": "user", "content": text}]
        key = getattr(request, "session_hash", "") or ""
        reply = ""
        yield [shown_message(m) for m in asked], state
        with self.lock:
            self.running[key] = session
            try:
                for piece in session.stream(text, history=history):
                    if key in self.stopping:  # a Stop that came before generation started
                        session.stop()
                    if not reply and session.notice:
                        gr.Warning(session.notice)
                    reply += piece
                    pending = {"role": "assistant", "model": which, "content": reply + " ▌"}
                    yield [shown_message(m) for m in asked + [pending]], state
            except ChatError as exc:
                raise gr.Error(str(exc)) from None
            finally:
                self.running.pop(key, None)
                self.stopping.discard(key)
        done = asked + [{"role": "assistant", "model": which, "mark": reply_mark(session.last),
                         "content": reply.strip() or "(no reply: the model ended its turn at once)"}]
        yield [shown_message(m) for m in done], done


def _side_panel(gr, has_adapter: bool) -> dict:
    """The preset, the model choice, the sampling settings (one panel) and the system prompt."""
    c = {"preset": gr.Dropdown(list(PRESETS), value="assistant", label="Preset", elem_id="preset")}
    c["which"] = gr.Radio(["tuned", "base"] if has_adapter else ["base"], value="tuned" if has_adapter else "base",
                          label="Model", info="tuned = base + adapter; base = the adapter switched off"
                          if has_adapter else "no adapter loaded (set ADAPTER)", elem_id="model-choice")
    with gr.Accordion("Sampling", open=True, elem_id="sampling"):
        c["temperature"] = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature", info="0 = greedy",
                                     elem_id="temperature")
        c["top_p"] = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p", elem_id="top-p")
        c["max_new_tokens"] = gr.Slider(1, 1024, value=256, step=1, label="Max new tokens", elem_id="max-new-tokens")
    c["system"] = gr.Textbox(PRESETS["assistant"], label="System prompt", lines=4, max_lines=12, elem_id="system")
    return c


def build_app(model, tokenizer, base_name: str, adapter_given: str = "", adapter_dir: str = ""):
    """The Gradio Blocks of the chat: the conversation first, the side panel beside it (below it on a
    narrow window), Enter sends, Shift+Enter is a new line, Stop keeps the reply so far."""
    import gradio as gr

    has_adapter = bool(adapter_given) and hasattr(model, "disable_adapter")
    replier = Replier(model, tokenizer, has_adapter)
    with gr.Blocks(title="llama-kit chat", analytics_enabled=False) as demo:
        gr.Markdown(app_header(base_name, adapter_given, adapter_dir), elem_id="header")
        state, asked = gr.State([]), gr.State("")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=420, elem_id="conversation"):
                chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chatbot")
                box = gr.Textbox(placeholder="Type a message: Enter sends, Shift+Enter is a new line", lines=1,
                                 max_lines=8, submit_btn=True, stop_btn=False, show_label=False, elem_id="message")
            with gr.Column(scale=1, min_width=280, elem_id="side-panel"):
                side = _side_panel(gr, has_adapter)
        side["preset"].change(lambda p: PRESETS[p], side["preset"], side["system"])
        inputs = [asked, state] + [side[k] for k in ("preset", "system", "which", "temperature", "top_p",
                                                     "max_new_tokens")]

        def respond(message, history, preset, system, which, temperature, top_p, max_new_tokens,
                    request: gr.Request):  # Gradio passes the request to a parameter typed gr.Request
            yield from replier.respond(message, history, preset, system, which, temperature, top_p, max_new_tokens,
                                       request=request)

        def stop(request: gr.Request):
            replier.stop(request)

        # while a reply streams the box shows Stop instead of Send; afterwards Send again (also after an error)
        box.submit(lambda m: (gr.Textbox(value="", interactive=False, submit_btn=False, stop_btn=True), m), box,
                   [box, asked], queue=False) \
            .then(respond, inputs, [chatbot, state], concurrency_limit=1) \
            .then(lambda: gr.Textbox(interactive=True, submit_btn=True, stop_btn=False), None, box, queue=False)
        box.stop(stop, None, None, queue=False)
        chatbot.clear(lambda: ([], []), None, [chatbot, state], queue=False)
    return demo


@dataclass
class AppHandle:
    """A launched app: where it listens, its share link (if any), and ``close()`` to stop it."""
    demo: object
    url: str
    share_url: str | None = None
    button: object = None  # the notebook's "Stop the app" button, if shown
    closed: bool = False

    def close(self) -> None:
        """Stop the server (the page shows it is gone; the model stays loaded in the notebook)."""
        if self.closed:
            return
        with contextlib.redirect_stdout(io.StringIO()):  # Gradio's own "Closing server running on port ..."
            self.demo.close()
        self.closed = True
        if self.button is not None:
            self.button.disabled, self.button.description = True, "App stopped"
        print("The app is stopped.")


def launch_app(model, tokenizer, base_name: str, adapter_dir: str = "", share: bool = False,
               auth: tuple[str, str] | None = None, inline: bool = True, port: int | None = None) -> AppHandle:
    """Start the app on this model without blocking (in a notebook: shown inline, on Colab through its
    proxy); ``share`` adds a public gradio.live link; ``auth`` = (user, password) requires a login."""
    demo = build_app(model, tokenizer, base_name, adapter_dir, adapter_dir)
    demo.queue(default_concurrency_limit=1)
    _, url, share_url = demo.launch(share=share, auth=auth, inline=inline, prevent_thread_lock=True, quiet=True,
                                    server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                                    server_port=port, show_error=True)
    print(f"The app is running at {url}" + (f" and at {share_url} (public link)" if share_url else "")
          + (" behind a login." if auth else "."))
    if share and not auth:
        print("Anyone with the public link can use this GPU: set the APP_USER and APP_PASSWORD secrets for a login.")
    handle = AppHandle(demo, url, share_url)
    if inline:
        _stop_button(handle)
    return handle


def _stop_button(handle: AppHandle) -> None:
    """In a notebook, a button under the app that stops it (``handle.close()`` does the same)."""
    try:
        from IPython import get_ipython
        if get_ipython() is None:
            return
        import ipywidgets as W
        from IPython.display import display
    except ImportError:
        return
    handle.button = W.Button(description="Stop the app", button_style="danger", icon="stop")
    handle.button.on_click(lambda _: handle.close())
    display(handle.button)
