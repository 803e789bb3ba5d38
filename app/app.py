"""The kit's chat as a Gradio app: runs locally and as a Hugging Face Space.

    ADAPTER=outputs/sft/adapter python app/app.py              # after notebook 04 on Colab or a GPU
    ADAPTER=outputs/smoke/sft/adapter python app/app.py        # after the SMOKE demo (scripts/demo.sh)

Environment: MODEL_NAME (base model; "" = the one the adapter was trained on, else the default
for this machine), ADAPTER (a LoRA adapter folder, or a Hub repo id of one pushed by notebook 06;
"" = chat with the base model only), QUANTIZATION ("auto"), GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
(where to listen; 127.0.0.1:7860 locally). The same ChatSession as the notebook's widget does the
work (helpers/chat/session.py).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr

# The kit's package: installed (`bash scripts/setup_env.sh`, or `pip install` of the repository), or a
# copy of helpers/ beside app.py, as on a Space.
from helpers.chat import PRESETS, ChatError, ChatSession, RunDir, chat_model_name, load_chat_model


def resolve_adapter(adapter: str) -> str:
    """A local adapter folder; a Hub repo id is downloaded first (on a Space)."""
    if not adapter or Path(adapter).is_dir():
        return adapter
    if adapter.count("/") == 1 and not adapter.startswith((".", "/")):
        from huggingface_hub import snapshot_download
        from helpers.common.models import hf_token
        return snapshot_download(adapter, token=hf_token())
    raise SystemExit(f"ADAPTER={adapter!r} is neither a folder nor a Hub repo id (owner/name).")


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


MODEL_NAME = os.environ.get("MODEL_NAME", "")
ADAPTER_ARG = os.environ.get("ADAPTER", "")
ADAPTER = resolve_adapter(ADAPTER_ARG)
BASE_NAME = chat_model_name(MODEL_NAME, ADAPTER)  # the base the adapter was trained on when MODEL_NAME is ""
model, tokenizer = load_chat_model(BASE_NAME, ADAPTER, os.environ.get("QUANTIZATION", "auto"))
HAS_ADAPTER = bool(ADAPTER)
LOCK = threading.Lock()  # one model, one reply at a time (switching the adapter off is model-wide)


def respond(message, history, preset, system, which, temperature, top_p, max_new_tokens):
    """Stream the reply to ``message`` given the chat so far; Gradio's Stop closes this generator,
    which stops generation at the next token."""
    text = message if isinstance(message, str) else (message or {}).get("text", "")
    try:
        session = ChatSession(model, tokenizer, preset=preset, system_prompt=system or PRESETS[preset],
                              temperature=float(temperature), top_p=float(top_p),
                              max_new_tokens=int(max_new_tokens), tuned=HAS_ADAPTER and which == "tuned")
        with LOCK:
            reply = ""
            stream = session.stream(text, history=history or [])
            first = True
            for piece in stream:
                if first and session.notice:
                    gr.Warning(session.notice)
                first = False
                reply += piece
                yield reply
            if not reply:
                yield "(no reply: the model ended its turn at once)"
    except ChatError as exc:
        raise gr.Error(str(exc)) from None


RUN, FROM = adapter_label(ADAPTER_ARG, ADAPTER)
HEADER = (f"### Chat with `{BASE_NAME}`" + (f", tuned by {RUN}" if HAS_ADAPTER else " (the base model: no ADAPTER set)")
          + "\n" + (f"Adapter from {FROM}. " if HAS_ADAPTER else "")
          + "Pick the *storymaker* preset on the right for a choose-your-own-adventure story"
          + (", and switch *Model* to compare the tuned model with its base." if HAS_ADAPTER else "."))

# Layout: the conversation on the left (first in reading order), a side panel on the right with
# the preset, the model choice and the system prompt, and the sampling settings in one panel.
# The side panel's components are rendered before the ChatInterface is built (so it does not put
# them in an accordion of its own), into a column created after the chat's column.
with gr.Blocks(title="llama-kit chat") as demo:
    gr.Markdown(HEADER, elem_id="header")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=420, elem_id="conversation") as chat_column:
            pass
        with gr.Column(scale=1, min_width=280, elem_id="side-panel"):
            preset = gr.Dropdown(list(PRESETS), value="assistant", label="Preset", elem_id="preset")
            which = gr.Radio(["tuned", "base"] if HAS_ADAPTER else ["base"], value="tuned" if HAS_ADAPTER else "base",
                             label="Model", info="tuned = base + adapter; base = the adapter switched off"
                             if HAS_ADAPTER else "no adapter loaded (set ADAPTER)", elem_id="model-choice")
            with gr.Accordion("Sampling", open=True, elem_id="sampling"):
                temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature", info="0 = greedy",
                                        elem_id="temperature")
                top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p", elem_id="top-p")
                max_new_tokens = gr.Slider(1, 1024, value=256, step=1, label="Max new tokens", elem_id="max-new-tokens")
            system = gr.Textbox(PRESETS["assistant"], label="System prompt", lines=4, max_lines=12, elem_id="system")
    preset.change(lambda p: PRESETS[p], preset, system)
    with chat_column:
        chat = gr.ChatInterface(
            respond,
            chatbot=gr.Chatbot(label="Conversation", height=480, elem_id="chatbot"),
            textbox=gr.Textbox(placeholder="Type a message: Enter sends, Shift+Enter is a new line", lines=1,
                               max_lines=8, submit_btn=True, stop_btn=True, elem_id="message", scale=7),
            additional_inputs=[preset, system, which, temperature, top_p, max_new_tokens],
        )

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), show_error=True)
