"""The chat in a notebook: an ipywidgets UI on top of :class:`helpers.chat.ChatSession`.

``ChatWidget(session).display()`` shows a transcript that fills in as tokens stream, a message
box, Send / Stop / Clear buttons, the system-prompt preset (plain assistant or storymaker, and the
prompt itself, editable), temperature / top-p / max-new-tokens controls and a base/tuned switch.

Generation runs in a background thread, so the Stop button is handled while tokens arrive. The
same methods the buttons call can be called from code (``send``, ``stop``, ``clear``, ``wait``),
which is how the notebook drives the chat under ``SMOKE=1``.
"""
from __future__ import annotations

import html
import threading

from .chat import PRESETS, ChatError, ChatSession


class ChatWidget:
    def __init__(self, session: ChatSession):
        import ipywidgets as W
        self.session = session
        self._thread: threading.Thread | None = None
        self.error: str = ""
        self.preset = W.Dropdown(options=list(PRESETS), value=session.preset, description="Preset")
        self.system = W.Textarea(value=session.system_prompt, description="System",
                                 layout=W.Layout(width="100%", height="70px"))
        self.temperature = W.FloatSlider(value=session.temperature, min=0.0, max=2.0, step=0.05,
                                         description="Temperature")
        self.top_p = W.FloatSlider(value=session.top_p, min=0.05, max=1.0, step=0.05, description="Top-p")
        self.max_new_tokens = W.IntSlider(value=session.max_new_tokens, min=1, max=2048, step=1,
                                          description="Max tokens")
        self.model_switch = W.ToggleButtons(options=["tuned", "base"], value="tuned" if session.tuned else "base",
                                            description="Model", disabled=not session.has_adapter)
        self.transcript = W.HTML(layout=W.Layout(width="100%", min_height="200px", border="1px solid #ccc",
                                                 padding="6px"))
        self.status = W.HTML()
        self.message = W.Textarea(placeholder="Type a message; Send (or Shift+Enter is a new line)",
                                  layout=W.Layout(width="100%", height="60px"))
        self.send_button = W.Button(description="Send", button_style="primary")
        self.stop_button = W.Button(description="Stop", button_style="danger", disabled=True)
        self.clear_button = W.Button(description="Clear")
        self.send_button.on_click(lambda _: self.send(self.message.value))
        self.stop_button.on_click(lambda _: self.stop())
        self.clear_button.on_click(lambda _: self.clear())
        self.preset.observe(self._on_preset, names="value")
        self.box = W.VBox([
            W.HBox([self.preset, self.model_switch]), self.system,
            W.HBox([self.temperature, self.top_p, self.max_new_tokens]),
            self.transcript, self.message, W.HBox([self.send_button, self.stop_button, self.clear_button]),
            self.status])
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
        try:
            for piece in self.session.stream(text):
                partial += piece
                self._render(pending=(text, partial))
            info = self.session.last
            why = {"eos": "finished", "max_new_tokens": f"cut at max tokens ({info.new_tokens})",
                   "stop_string": "stop string", "stopped": "stopped"}.get(info.stop_reason, info.stop_reason)
            note = f" {self.session.notice}" if self.session.notice else ""
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
        self.status.value = "Conversation cleared."
        self._render()

    def wait(self, timeout: float | None = None) -> None:
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

    def _render(self, pending: tuple[str, str] | None = None) -> None:
        rows = [(m["role"], m["content"]) for m in self.session.history]
        if pending:
            rows += [("user", pending[0]), ("assistant", pending[1] + " ▌")]
        colors = {"user": "#e8f0fe", "assistant": "#f1f3f4"}
        self.transcript.value = "".join(
            f'<div style="background:{colors.get(r, "#fff")};margin:3px;padding:4px;white-space:pre-wrap">'
            f"<b>{r}:</b> {html.escape(c)}</div>" for r, c in rows) or "<i>No messages yet.</i>"

    def text(self) -> str:
        """The transcript as plain text."""
        return self.session.transcript()

    def display(self):
        from IPython.display import display
        display(self.box)
        return self
