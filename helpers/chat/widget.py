"""The chat in a notebook: an ipywidgets UI on top of :class:`helpers.chat.session.ChatSession`.

``ChatWidget(session).display()`` shows a transcript that fills in as tokens stream, a message
box, Send / Stop / Clear buttons, the system-prompt preset (plain assistant, storymaker, or documents
when the session has an index of the user's chunks: each reply then shows its sources; and the prompt
itself, editable), temperature / top-p / max-new-tokens controls and a base/tuned switch.

Enter in the message box sends, Shift+Enter adds a new line (a small script, shown with the
widget, turns Enter into a click on Send; ipywidgets' Textarea has no key events of its own).
Each reply is labelled with the model that wrote it (tuned or base), since the switch can change
between turns.

Generation runs in a background thread, so the Stop button is handled while tokens arrive. The
same methods the buttons call can be called from code (``send``, ``stop``, ``clear``, ``wait``),
which is how the notebook drives the chat under ``SMOKE=1``.
"""
from __future__ import annotations

import html
import threading

from helpers.chat.documents import DOCUMENT_PRESETS, sources_line
from helpers.chat.session import ChatError, ChatSession

# Enter sends, Shift+Enter is a new line: one listener per page (Jupyter, Colab's output frame),
# catching keydown on any chat widget's message box and clicking that widget's Send button.
ENTER_SENDS_JS = """
if (!window.__kitChatEnterSends) {
  window.__kitChatEnterSends = true;
  document.addEventListener('keydown', function (e) {
    var t = e.target;
    if (e.key !== 'Enter' || e.shiftKey || e.isComposing || !t || !t.closest) return;
    var box = t.closest('.kit-chat-message');
    if (!box) return;
    var root = box.closest('.kit-chat');
    var send = root && root.querySelector('button.kit-chat-send');
    e.preventDefault();
    e.stopPropagation();
    if (send && !send.disabled) {
      t.dispatchEvent(new Event('input', {bubbles: true}));  // the text reaches the kernel before the click
      send.click();
    }
  }, true);
}
"""


class ChatWidget:
    """The notebook's chat UI over one :class:`ChatSession`; its buttons call the methods below."""

    def __init__(self, session: ChatSession):
        import ipywidgets as W
        self.session = session
        self._thread: threading.Thread | None = None
        self.error: str = ""
        self.replies: list[str] = []  # which model wrote each assistant message: "tuned" or "base"
        self.sources: list[str] = []  # each assistant message's sources line ("" without the documents preset)
        label = {"description_width": "90px"}  # wide enough for "Temperature", on every slider alike
        self.preset = W.Dropdown(options=session.presets, value=session.preset, description="Preset", style=label,
                                 layout=W.Layout(width="300px"))
        self.system = W.Textarea(value=session.system_prompt, description="System", style=label,
                                 layout=W.Layout(width="auto", height="70px"))
        # three sliders that share the row and shrink with it (no horizontal scrollbar)
        slider = dict(style=label, layout=W.Layout(flex="1 1 0%", min_width="220px", width="auto"))
        self.temperature = W.FloatSlider(value=session.temperature, min=0.0, max=2.0, step=0.05,
                                         description="Temperature", **slider)
        self.top_p = W.FloatSlider(value=session.top_p, min=0.05, max=1.0, step=0.05, description="Top-p", **slider)
        self.max_new_tokens = W.IntSlider(value=session.max_new_tokens, min=1, max=2048, step=1,
                                          description="Max tokens", **slider)
        self.model_switch = W.ToggleButtons(options=["tuned", "base"], value="tuned" if session.tuned else "base",
                                            disabled=not session.has_adapter, style={"button_width": "80px"})
        self.transcript = W.HTML(layout=W.Layout(width="auto", min_height="200px"))
        self.status = W.HTML()
        self.message = W.Textarea(placeholder="Type a message: Enter sends, Shift+Enter adds a new line",
                                  layout=W.Layout(width="auto", height="60px"))
        self.message.add_class("kit-chat-message")
        self.send_button = W.Button(description="Send", button_style="primary")
        self.send_button.add_class("kit-chat-send")
        self.stop_button = W.Button(description="Stop", button_style="danger", disabled=True)
        self.clear_button = W.Button(description="Clear")
        self.send_button.on_click(lambda _: self.send(self.message.value))
        self.stop_button.on_click(lambda _: self.stop())
        self.clear_button.on_click(lambda _: self.clear())
        self.preset.observe(self._on_preset, names="value")
        self.box = W.VBox([
            W.HBox([self.preset, W.Label("Model", layout=W.Layout(margin="2px 4px 2px 24px")), self.model_switch],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")), self.system,
            W.HBox([self.temperature, self.top_p, self.max_new_tokens],
                   layout=W.Layout(width="auto", flex_flow="row wrap")),
            self.transcript, self.message, W.HBox([self.send_button, self.stop_button, self.clear_button]),
            self.status], layout=W.Layout(width="auto"))
        self.box.add_class("kit-chat")
        self._render()

    # -- actions (buttons, or code) ---------------------------------------------------------
    def _on_preset(self, change) -> None:
        self.session.set_preset(change["new"])
        self.system.value = self.session.system_prompt

    def _apply_settings(self) -> None:
        s = self.session
        s.system_prompt = self.system.value
        s.temperature, s.top_p = float(self.temperature.value), float(self.top_p.value)
        s.max_new_tokens = int(self.max_new_tokens.value)
        s.tuned = self.model_switch.value == "tuned"

    def send(self, text: str, wait: bool = False) -> None:
        """Start answering ``text`` in the background (``wait=True`` returns when the reply is done)."""
        if self.busy:
            self.status.value = "<b>Still answering:</b> wait, or press Stop."
            return
        if not text or not text.strip():
            self.status.value = "Type a message first."
            return
        self.error = ""
        try:
            self._apply_settings()
        except ChatError as exc:
            self.error = str(exc)
            self.status.value = f"<b>Error:</b> {html.escape(str(exc))}"
            return
        self.message.value = ""
        self._thread = threading.Thread(target=self._run, args=(text,), daemon=True, name="chat-widget")
        self._set_busy(True)
        self._thread.start()
        if wait:
            self.wait()

    def _run(self, text: str) -> None:
        partial = ""
        which = "tuned" if self.session.tuned else "base"
        n_before = len(self.session.history)
        try:
            for piece in self.session.stream(text):
                partial += piece
                self._render(pending=(text, partial, which))
            if len(self.session.history) > n_before:
                self.replies.append(which)
                self.sources.append(sources_line(self.session.sources) if self.session.preset in DOCUMENT_PRESETS
                                    else "")
            info = self.session.last
            why = {"eos": "finished", "max_new_tokens": f"cut at max tokens ({info.new_tokens})",
                   "stop_string": "stop string", "stopped": "stopped"}.get(info.stop_reason, info.stop_reason)
            note = f" {self.session.notice}" if self.session.notice else ""
            if self.sources and self.sources[-1]:
                note += f" {self.sources[-1][0].upper()}{self.sources[-1][1:]}."
            self.status.value = (f"{'tuned' if info.tuned else 'base'} model: {info.new_tokens} tokens in "
                                 f"{info.seconds:.1f}s ({why}).{html.escape(note)}")
        except ChatError as exc:
            self.error = str(exc)
            self.status.value = f"<b>Error:</b> {html.escape(str(exc))}"
        finally:
            self._set_busy(False)
            self._render()

    def stop(self) -> None:
        """Stop the reply being generated (it keeps what was written so far)."""
        self.session.stop()

    def clear(self) -> None:
        """Stop any reply and forget the conversation."""
        self.stop()
        self.wait()
        self.session.clear()
        self.replies, self.sources = [], []
        self.status.value = "Conversation cleared."
        self._render()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the reply being generated (at most ``timeout`` seconds)."""
        t = self._thread
        if t is not None:
            t.join(timeout)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- display ------------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        self.send_button.disabled = busy
        self.stop_button.disabled = not busy

    def _speakers(self) -> list[str]:
        """The label of each message in the history: "you", or the model that wrote the reply."""
        out, k = [], 0
        for m in self.session.history:
            if m["role"] == "assistant":
                out.append(f"{self.replies[k]} model" if k < len(self.replies) else "model")
                k += 1
            else:
                out.append("you")
        return out

    def _render(self, pending: tuple[str, str, str] | None = None) -> None:
        rows, k = [], 0
        for m, who in zip(self.session.history, self._speakers()):
            note = ""
            if m["role"] == "assistant":
                note = self.sources[k] if k < len(self.sources) else ""
                k += 1
            rows.append((m["role"], who, m["content"], note))
        if pending:
            rows += [("user", "you", pending[0], ""), ("assistant", f"{pending[2]} model", pending[1] + " ▌", "")]
        self.transcript.value = '<div style="border:1px solid #ccc;padding:6px;min-height:186px">' + "".join(
            _message_html(*r) for r in rows) + ("" if rows else "<i>No messages yet.</i>") + "</div>"

    def text(self) -> str:
        """The transcript as plain text, each reply labelled with the model that wrote it."""
        s = self.session
        lines = [f"[system: {s.preset}] {s.system_prompt[:100]}{'...' if len(s.system_prompt) > 100 else ''}"]
        notes = iter(self.sources)
        for m, who in zip(s.history, self._speakers()):
            lines.append(f"{who.upper():>11}: {m['content']}")
            note = next(notes, "") if m["role"] == "assistant" else ""
            if note:
                lines.append(f"{'':>11}  ({note})")
        return "\n".join(lines)

    def display(self):
        from IPython.display import Javascript, display
        display(self.box)
        display(Javascript(ENTER_SENDS_JS))
        return self


def _message_html(role: str, who: str, content: str, note: str) -> str:
    """One message of the transcript: who wrote it, the text, and its sources line (if any) below."""
    colors = {"user": "#e8f0fe", "assistant": "#f1f3f4"}
    badge = {"tuned model": "#1e7e34", "base model": "#6c757d"}
    head = (f'<span class="kit-chat-who" style="background:{badge.get(who, "#444")};color:#fff;border-radius:3px;'
            f'padding:0 5px;font-size:0.85em">{who}</span> ' if role == "assistant" else f"<b>{who}:</b> ")
    tail = (f'<div class="kit-chat-sources" style="color:#555;font-size:0.85em">{html.escape(note)}</div>'
            if note else "")
    return (f'<div style="background:{colors.get(role, "#fff")};margin:3px;padding:4px;white-space:pre-wrap">'
            f"{head}{html.escape(content)}{tail}</div>")
