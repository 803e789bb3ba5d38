"""Real offline material that ships with the kit (no network, nothing beside the repository).

* ``arxiv_fixture_dir()``: recorded arXiv API responses and a real arXiv paper, in
  ``helpers/resources/arxiv`` (from the arxiv.py test suite, MIT: see its ``LICENSE``);
  ``fixture_pdf()`` is that paper (``1111.2011v2.pdf``, 10 pages, two columns).
* ``chitchat(split)``: the bundled real conversations, ``helpers/resources/chitchat``.
* ``chitchat_conversations()``: every conversation of the ``chitchat-dataset`` package (MIT,
  7,168 conversations), which ``python -m helpers.common.resources`` cut into the bundled files.
"""
from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path

from helpers.core.files import DatasetFiles
from helpers.core.jsonl import DataError, write_jsonl

RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def arxiv_fixture_dir() -> Path:
    """``api/*.json`` recorded responses, the paper's Atom entry and the paper's PDF."""
    return RESOURCES / "arxiv"


def fixture_pdf() -> Path:
    """The real arXiv paper 1111.2011v2 as PDF."""
    return arxiv_fixture_dir() / "1111.2011v2.pdf"


def chitchat(split: str = "train") -> Path:
    """The bundled real conversations: ``"train"`` (800) or ``"test"`` (100 others)."""
    if split not in ("train", "test"):
        raise ValueError(f"chitchat split {split!r}: 'train' or 'test'")
    return RESOURCES / "chitchat" / f"{split}.jsonl"


# ----------------------------------------------------------------------------------------------
# Real conversations shipped in a package (offline)
# ----------------------------------------------------------------------------------------------
def chitchat_path() -> Path:
    spec = importlib.util.find_spec("chitchat_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("The offline conversations need `pip install chitchat-dataset==0.9.0`.")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset.json"


def chitchat_conversations(max_turns: int = 12, path: str | os.PathLike | None = None) -> list[dict]:
    """Every chitchat conversation as a ``messages`` row: the first speaker is the user, the other
    the assistant; consecutive lines of one speaker are joined; at most ``max_turns`` turns.
    Sorted by conversation id (deterministic)."""
    data = json.loads(Path(path or chitchat_path()).read_text())
    out = []
    for key in sorted(data):
        turns = data[key]["messages"]
        if len(turns) < 2:
            continue
        first = turns[0][0]["sender"]
        msgs: list[dict] = []
        for turn in turns[:max_turns]:
            role = "user" if turn[0]["sender"] == first else "assistant"
            text = "\n".join(m["text"] for m in turn).strip()
            if not text:
                continue
            if msgs and msgs[-1]["role"] == role:
                msgs[-1]["content"] += "\n" + text
            else:
                msgs.append({"role": role, "content": text})
        if any(m["role"] == "assistant" for m in msgs) and msgs[0]["role"] == "user":
            out.append({"id": key, "messages": msgs, "source": "chitchat-dataset 0.9.0 (MIT)"})
    return out


def split_chitchat(n_train: int, n_test: int, seed: int = 0, max_turns: int = 12) -> tuple[list[dict], list[dict]]:
    """Disjoint train and held-out conversations (shuffled with ``seed``; the held-out ones are
    taken from the end, so growing ``n_train`` never moves a test conversation into training)."""
    convs = chitchat_conversations(max_turns)
    random.Random(seed).shuffle(convs)
    if n_train + n_test > len(convs):
        raise DataError(f"asked for {n_train}+{n_test} conversations, the dataset has {len(convs)}")
    return convs[:n_train], convs[len(convs) - n_test:]


def build_chitchat(out_dir: str | os.PathLike, n_train: int = 800, n_test: int = 100, seed: int = 0) -> dict:
    """Write ``train.jsonl`` and ``test.jsonl`` of real conversations (messages rows) to ``out_dir``."""
    train, test = split_chitchat(n_train, n_test, seed)
    files = DatasetFiles(Path(out_dir))
    write_jsonl(files.train, train)
    write_jsonl(files.test, test)
    return {"train": len(train), "test": len(test), "dir": str(files.folder)}


if __name__ == "__main__":
    import sys
    target = sys.argv[1] if len(sys.argv) > 1 else str(RESOURCES / "chitchat")
    print(build_chitchat(target))
