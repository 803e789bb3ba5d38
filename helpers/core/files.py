"""Where each file lives: the named paths that one notebook hands to the next, and the kit's cache.

Every notebook and every step finds the files of another step here, never by spelling out a
name: ``DatasetFiles(folder).train``, ``ArxivFiles(folder).manifest``. The folders themselves
come from the ``Workspace`` (``ws.dataset``, ``ws.arxiv``, ``ws.run(name)``).
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where converted embedded models live: ``$LLAMA_KIT_CACHE`` or ``~/.cache/llama-kit``."""
    return Path(os.environ.get("LLAMA_KIT_CACHE", Path.home() / ".cache" / "llama-kit"))
