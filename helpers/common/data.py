"""Datasets on disk: JSONL reading and writing, validation, and the embedded real conversations.

Our datasets are JSON Lines, one row per line, in one of the two shapes of ``helpers.common.prompts``
(instruction rows or ``messages`` conversations); ``datasets.load_dataset("json", ...)`` loads
them as they are. Raw-text corpora for domain pretraining are rows with a ``text`` field.

``chitchat_conversations`` reads the real human conversations of the ``chitchat-dataset``
package (MIT, 7,168 conversations) so the whole pipeline has real data with no network.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
from pathlib import Path
from typing import Iterable


class DataError(ValueError):
    """A dataset that cannot be used; the message names the file and line."""


def read_jsonl(path: str | os.PathLike, strict: bool = True) -> list[dict]:
    """Rows of a JSON Lines file. A line that is not a JSON object raises DataError naming the
    file and line (``strict``), or is skipped with a printed warning (``strict=False``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Dataset file {str(path)!r} does not exist. Build it with notebook 02, import one "
                        f"with helpers.dataset.importers, or point the path at an existing .jsonl file.")
    rows, bad = [], []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                msg = f"{path}:{n}: not a JSON object ({exc})"
                if strict:
                    raise DataError(msg) from None
                bad.append(msg)
                continue
            rows.append(row)
    if bad:
        print(f"WARNING: {len(bad)} unreadable line(s) skipped in {path}: " + "; ".join(bad[:5]))
    return rows


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write rows atomically (temporary file, then rename), so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


TYPE_PROBLEM = "not text:"  # a list or dict where a string belongs (it would be trained on as Python's repr)


def validate_rows(rows: list[dict], path: str = "dataset") -> list[str]:
    """Problems with rows (missing fields, empty replies, wrong roles, a list or dict in a text
    field), one message per bad row."""
    problems = []
    for i, row in enumerate(rows):
        where = f"{path} row {i}"
        if "messages" in row:
            msgs = row["messages"]
            if not isinstance(msgs, list) or not msgs:
                problems.append(f"{where}: 'messages' is empty or not a list")
                continue
            for j, m in enumerate(msgs):
                if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
                    problems.append(f"{where}: message {j} needs role system/user/assistant and string content")
                    break
            else:
                if not any(m["role"] == "assistant" and m["content"].strip() for m in msgs):
                    problems.append(f"{where}: no non-empty assistant reply")
        elif "instruction" in row or "output" in row:
            wrong = [k for k in ("instruction", "input", "output") if row.get(k) is not None and not isinstance(row[k], str)]
            if wrong:
                problems.append(f"{where}: {TYPE_PROBLEM} " + ", ".join(f"{k!r} is a {type(row[k]).__name__}" for k in wrong))
                continue
            for key in ("instruction", "output"):
                if not str(row.get(key) or "").strip():
                    problems.append(f"{where}: missing or empty {key!r}")
                    break
        elif "text" in row:
            if row["text"] is not None and not isinstance(row["text"], str):
                problems.append(f"{where}: {TYPE_PROBLEM} 'text' is a {type(row['text']).__name__}")
            elif not str(row["text"] or "").strip():
                problems.append(f"{where}: empty 'text'")
        else:
            problems.append(f"{where}: no 'messages', 'instruction'/'output' or 'text' field (keys: {sorted(row)})")
    return problems


def row_hash(row: dict) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


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


def cut_at_reference(row: dict, turn: str = "first") -> dict | None:
    """The row cut so that its last message is the reference reply; None when it has none."""
    if "messages" not in row:
        if str(row.get("output") or "").strip() and str(row.get("instruction") or "").strip():
            return row
        return None
    msgs = row.get("messages") or []
    idx = [i for i, m in enumerate(msgs) if isinstance(m, dict) and m.get("role") == "assistant" and i > 0
           and str(m.get("content") or "").strip()]
    if not idx:
        return None
    i = idx[0] if turn == "first" else idx[-1]
    return {**row, "messages": msgs[: i + 1]}


def held_out_turns(conversations: list[dict]) -> list[dict]:
    """For evaluation: each conversation cut just after its first assistant reply, so the
    reference is that reply and the prompt is what came before it."""
    return [cut for cut in (cut_at_reference(c) for c in conversations) if cut is not None]


def build_chitchat(out_dir: str | os.PathLike, n_train: int = 800, n_test: int = 100, seed: int = 0) -> dict:
    """Write ``train.jsonl`` and ``test.jsonl`` of real conversations (messages rows) to ``out_dir``."""
    train, test = split_chitchat(n_train, n_test, seed)
    out = Path(out_dir)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "test.jsonl", test)
    return {"train": len(train), "test": len(test), "dir": str(out)}


if __name__ == "__main__":
    import sys
    from helpers.common.resources import RESOURCES
    target = sys.argv[1] if len(sys.argv) > 1 else str(RESOURCES / "chitchat")
    print(build_chitchat(target))


def read_text_corpus(sources: Iterable[str | os.PathLike], min_chars: int = 200) -> tuple[list[dict], list[str]]:
    """Raw-text documents for domain pretraining from JSONL files (rows with ``text``), .txt/.md
    files, PDF files and folders of these (recursively). Returns ``(rows, problems)``: rows are
    ``{"text", "source"}``; every file that gave nothing is named in ``problems``."""
    rows: list[dict] = []
    problems: list[str] = []
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".jsonl", ".txt", ".md", ".pdf"))
        elif p.exists():
            files.append(p)
        else:
            problems.append(f"{p}: does not exist")
    for f in files:
        suffix = f.suffix.lower()
        try:
            if suffix == ".jsonl":
                got = [{"text": str(r["text"]), "source": str(r.get("source") or r.get("id") or f.name)}
                       for r in read_jsonl(f, strict=False) if str(r.get("text") or "").strip()]
            elif suffix in (".txt", ".md"):
                got = [{"text": f.read_text(encoding="utf-8", errors="replace"), "source": f.name}]
            else:
                from helpers.dataset.pdf import read_pdf  # the PDF cleaner of notebook 02
                doc = read_pdf(f)
                got = [{"text": doc.text, "source": f.name}]
        except Exception as exc:  # one bad file never stops the corpus
            problems.append(f"{f}: {type(exc).__name__}: {exc}")
            continue
        kept = [r for r in got if len(r["text"].strip()) >= min_chars]
        if not kept:
            problems.append(f"{f}: no document of at least {min_chars} characters")
        rows += kept
    return rows, problems
