"""The kit's chat as a Gradio app: runs locally and as a Hugging Face Space.

    MODEL_NAME=embedded/smollm2-135m-instruct ADAPTER=outputs/sft/adapter python app/app.py

Environment: MODEL_NAME (base model; "" = the default for this machine), ADAPTER (a LoRA adapter
folder, or a Hub repo id of one pushed by notebook 06; "" = chat with the base model only),
QUANTIZATION ("auto"), GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (where to listen; 127.0.0.1:7860
locally). The same ChatSession as the notebook's widget does the work (helpers/chat.py).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr

# The kit's package: installed (`bash scripts/setup_env.sh`, or `pip install` of the repository), or a
# copy of helpers/ beside app.py, as on a Space.
from helpers.chat import PRESETS, ChatError, ChatSession, load_chat_model


def resolve_adapter(adapter: str) -> str:
    """A local adapter folder; a Hub repo id is downloaded first (on a Space)."""
    if not adapter or Path(adapter).is_dir():
        return adapter
    if adapter.count("/") == 1 and not adapter.startswith((".", "/")):
        from huggingface_hub import snapshot_download
        from helpers.models import hf_token
        return snapshot_download(adapter, token=hf_token())
    raise SystemExit(f"ADAPTER={adapter!r} is neither a folder nor a Hub repo id (owner/name).")


MODEL_NAME = os.environ.get("MODEL_NAME", "")
ADAPTER = resolve_adapter(os.environ.get("ADAPTER", ""))
model, tokenizer = load_chat_model(MODEL_NAME, ADAPTER, os.environ.get("QUANTIZATION", "auto"))
HAS_ADAPTER = bool(ADAPTER)
LOCK = threading.Lock()  # one model, one reply at a time (switching the adapter off is model-wide)


def respond(message, history, preset, system, temperature, top_p, max_new_tokens, which):
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


with gr.Blocks(title="llama-kit chat") as demo:
    gr.Markdown(f"## Chat with {MODEL_NAME or 'the default model'}"
                + (f" + adapter `{Path(ADAPTER).name}`" if HAS_ADAPTER else " (base model)")
                + "\nPick *storymaker* for a choose-your-own-adventure story.")
    preset = gr.Dropdown(list(PRESETS), value="assistant", label="Preset", render=False)
    system = gr.Textbox(PRESETS["assistant"], label="System prompt", lines=3, render=False)
    preset.change(lambda p: PRESETS[p], preset, system)
    chat = gr.ChatInterface(
        respond,
        additional_inputs=[
            preset, system,
            gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature (0 = greedy)"),
            gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p"),
            gr.Slider(1, 1024, value=256, step=1, label="Max new tokens"),
            gr.Radio(["tuned", "base"] if HAS_ADAPTER else ["base"], value="tuned" if HAS_ADAPTER else "base",
                     label="Model"),
        ],
        additional_inputs_accordion=gr.Accordion("Settings", open=False),
        stop_btn=True,
    )

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), show_error=True)
