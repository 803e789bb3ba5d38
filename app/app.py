"""The kit's chat as a Gradio app: runs locally and as a Hugging Face Space.

    ADAPTER=outputs/sft/adapter python app/app.py              # after notebook 04 on Colab or a GPU
    ADAPTER=outputs/smoke/sft/adapter python app/app.py        # after the SMOKE demo (scripts/demo.sh)

Environment: MODEL_NAME (base model; "" = the one the adapter was trained on, else the default
for this machine), ADAPTER (a LoRA adapter folder, or a Hub repo id of one pushed by notebook 06;
"" = chat with the base model only), QUANTIZATION ("auto"), GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
(where to listen; 127.0.0.1:7860 locally), APP_USER / APP_PASSWORD (a login, asked on every page:
set both on a shared machine or a public Space). The page is built by helpers/chat/app.py (notebook 06
launches the same one inline) over the ChatSession of the notebook's widget (helpers/chat/session.py).
"""
from __future__ import annotations

import os
from pathlib import Path

# The kit's package: installed (`bash scripts/setup_env.sh`, or `pip install` of the repository), or a
# copy of helpers/ beside app.py, as on a Space.
from helpers.chat import app_login, build_app, chat_model_name, load_chat_model


def resolve_adapter(adapter: str) -> str:
    """A local adapter folder; a Hub repo id is downloaded first (on a Space)."""
    if not adapter or Path(adapter).is_dir():
        return adapter
    if adapter.count("/") == 1 and not adapter.startswith((".", "/")):
        from huggingface_hub import snapshot_download
        from helpers.common.models import hf_token
        return snapshot_download(adapter, token=hf_token())
    raise SystemExit(f"ADAPTER={adapter!r} is neither a folder nor a Hub repo id (owner/name).")


MODEL_NAME = os.environ.get("MODEL_NAME", "")
ADAPTER_ARG = os.environ.get("ADAPTER", "")
ADAPTER = resolve_adapter(ADAPTER_ARG)
BASE_NAME = chat_model_name(MODEL_NAME, ADAPTER)  # the base the adapter was trained on when MODEL_NAME is ""
model, tokenizer = load_chat_model(BASE_NAME, ADAPTER, os.environ.get("QUANTIZATION", "auto"))
demo = build_app(model, tokenizer, BASE_NAME, ADAPTER_ARG, ADAPTER)

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=1).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), show_error=True, auth=app_login())
