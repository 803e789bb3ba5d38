"""Notebook 06: chat with the tuned model (``session``, the notebook's ``widget``, the Gradio app in
``app/``) and export it: merge, GGUF, the Hub (``export``)."""
from helpers.chat.export import ExportConfig, check_gguf, export_gguf, merge_adapter, push_to_hub
from helpers.chat.session import PRESETS, ChatConfig, ChatError, ChatSession, chat_model_name, load_chat_model
from helpers.chat.widget import ChatWidget
from helpers.common.run import RunDir

__all__ = ["PRESETS", "ChatConfig", "ChatError", "ChatSession", "ChatWidget", "ExportConfig", "RunDir",
           "chat_model_name", "check_gguf", "export_gguf", "load_chat_model", "merge_adapter", "push_to_hub"]
