"""Notebook 06: chat with the tuned model (``session``, the notebook's ``widget``, the Gradio app built
by ``app`` for ``app/app.py`` and the notebook), answering from the user's documents (``documents``), and
export it: merge, GGUF, the Hub (``export``)."""
from helpers.chat.app import AppHandle, app_login, build_app, launch_app, reply_mark
from helpers.chat.documents import DOCUMENT_PRESETS, chunks_for_chat, load_chat_index, sources_line
from helpers.chat.export import ExportConfig, check_gguf, export_gguf, merge_adapter, push_to_hub
from helpers.chat.session import PRESETS, ChatConfig, ChatError, ChatSession, chat_model_name, load_chat_model
from helpers.chat.widget import ChatWidget
from helpers.common.run import RunDir

__all__ = ["DOCUMENT_PRESETS", "PRESETS", "AppHandle", "ChatConfig", "ChatError", "ChatSession", "ChatWidget",
           "ExportConfig", "RunDir", "app_login", "build_app", "chat_model_name", "check_gguf", "chunks_for_chat",
           "export_gguf", "launch_app", "load_chat_index", "load_chat_model", "merge_adapter", "push_to_hub",
           "reply_mark", "sources_line"]
