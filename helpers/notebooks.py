"""The seven notebooks and the configs each builds from its parameters cell.

The top of the house: it imports every step, so the tools and tests that look at all notebooks
at once (``tools/sync_notebooks.py``, ``tests/test_notebooks.py``) ask here, while a notebook
imports only its own room.
"""
from __future__ import annotations

import helpers.chat  # noqa: F401  (each import registers its step's configs)
import helpers.dataset  # noqa: F401
import helpers.evaluation  # noqa: F401
import helpers.scrape  # noqa: F401
import helpers.sweep  # noqa: F401
import helpers.train  # noqa: F401
from helpers.core.config import registered_configs

NOTEBOOKS = ("01", "02", "03", "04", "05", "06", "07")


def notebook_configs(notebook: str) -> list[type]:
    """The config classes notebook ``notebook`` ("04", or a name like "04_finetune") builds, in order."""
    return registered_configs(notebook)
