"""Importers: datasets users bring instead of building one, into the kit's formats.

* ``import_sharegpt(path)``: ShareGPT / FineTome-style ``{"conversations": [{"from", "value"}]}``
  rows (JSON, JSONL or Parquet) → ``{"messages": [{"role", "content"}]}`` rows;
* ``import_alpaca(path)``: Alpaca-style ``instruction`` / ``input`` / ``output`` rows (JSON list or
  JSONL; ``Instruction``/``Input``/``Output`` as in seed 002 too) → instruction rows;
* ``import_text_folder(folder)``: ``.txt``, ``.md`` and ``.pdf`` files → ``{"text", "source"}``
  rows for notebook 03 (PDFs cleaned by ``helpers.dataset.pdf``).

Each returns ``(rows, problems)``: a row or file that cannot be used is listed in ``problems`` with
its file, row number and reason, never dropped silently. Files are read as
``helpers.core.jsonl.read_rows`` reads them: UTF-8 with or without a BOM, or UTF-16; a byte that is
not UTF-8 costs its row alone; JSON list or JSON Lines by the content. A list or dict where text
belongs, and an empty user turn, reject their row. ``save_dataset(rows, out_dir)`` writes
``train.jsonl`` / ``test.jsonl`` with a deterministic held-out share.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from helpers.core.files import DatasetFiles
from helpers.core.jsonl import BadRow, DataError, read_rows, read_text_file, write_jsonl
from helpers.dataset.pdf import read_pdfs

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
            "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system"}


class ImportDataError(DataError):
    """A file that cannot be imported at all; the message names it (and the row, where there is one)."""


def _load_rows(path: str | os.PathLike) -> list[tuple[int, object]]:
    """(row number, value) of a JSON list, JSONL or Parquet file; row numbers count from 1; a row
    that cannot be read is a BadRow."""
    p = Path(path)
    if p.suffix.lower() == ".parquet" and p.is_file():
        import pyarrow.parquet as pq
        return list(enumerate(pq.read_table(p).to_pylist(), 1))
    try:
        return read_rows(p)
    except DataError as exc:
        raise ImportDataError(str(exc)) from None


def _structured(fields: dict) -> str | None:
    """Why a row with a list or dict where text belongs is refused (it would become Python's repr)."""
    wrong = [f"{k!r} is a {type(v).__name__}" for k, v in fields.items() if isinstance(v, (list, dict))]
    return ("not text: " + ", ".join(wrong) + " (import it as text, e.g. json.dumps the value)") if wrong else None


def _conversation(row, where: str) -> tuple[dict | None, str | None]:
    if isinstance(row, BadRow):
        return None, f"{where}: {row}"
    if isinstance(row, list):  # a row that is the list of turns itself
        row = {"conversations": row}
    if not isinstance(row, dict):
        return None, f"{where}: not a JSON object"
    turns = row.get("conversations") if "conversations" in row else row.get("messages")
    if not isinstance(turns, list) or not turns:
        return None, f"{where}: no 'conversations' (or 'messages') list"
    msgs: list[dict] = []
    for j, t in enumerate(turns):
        if not isinstance(t, dict):
            return None, f"{where}: turn {j} is not an object"
        who = str(t.get("from", t.get("role", ""))).strip().lower()
        text = t.get("value", t.get("content"))
        role = ROLE_MAP.get(who)
        if role is None:
            return None, f"{where}: turn {j} has an unknown speaker {who!r} (known: {', '.join(sorted(ROLE_MAP))})"
        if isinstance(text, (list, dict)):
            return None, f"{where}: turn {j}: " + _structured({"value": text})
        if not isinstance(text, str):
            return None, f"{where}: turn {j} has no text"
        if msgs and msgs[-1]["role"] == role and role != "system":
            msgs[-1]["content"] += "\n\n" + text.strip()
        else:
            msgs.append({"role": role, "content": text.strip()})
    body = [m for m in msgs if m["role"] != "system"]
    if not body or body[0]["role"] != "user":
        return None, f"{where}: the conversation does not start with a user turn"
    empty = next((j for j, m in enumerate(body) if m["role"] == "user" and not m["content"]), None)
    if empty is not None:
        return None, f"{where}: user turn {empty} is empty"
    if not any(m["role"] == "assistant" and m["content"] for m in body):
        return None, f"{where}: no non-empty assistant turn"
    return {"messages": msgs}, None


def import_sharegpt(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    for n, row in _load_rows(path):
        conv, why = _conversation(row, f"{Path(path).name} row {n}")
        if conv is None:
            problems.append(why)
        else:
            rows.append(conv)
    return rows, problems


def import_alpaca(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    for n, row in _load_rows(path):
        where = f"{Path(path).name} row {n}"
        if isinstance(row, BadRow):
            problems.append(f"{where}: {row}")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        low = {str(k).strip().lower(): v for k, v in row.items()}
        out = {}
        for field, aliases in (("instruction", ("instruction", "prompt", "question")), ("input", ("input", "context")),
                               ("output", ("output", "response", "answer"))):
            out[field] = next((low[a] for a in aliases if a in low), "")
        why = _structured(out)
        if why:
            problems.append(f"{where}: {why}")
            continue
        out = {k: "" if v is None else str(v).strip() for k, v in out.items()}
        if not out["instruction"] or not out["output"]:
            problems.append(f"{where}: empty or missing {'instruction' if not out['instruction'] else 'output'}")
            continue
        rows.append(out)
    return rows, problems


def import_text_folder(folder: str | os.PathLike) -> tuple[list[dict], list[str]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ImportDataError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".md", ".pdf"))
    rows, problems = [], []
    pdfs = [p for p in files if p.suffix.lower() == ".pdf"]
    docs, bad = read_pdfs(pdfs, verbose=False)
    by_path = {d.path: d for d in docs}
    problems += [f"{b['file']}: {b['reason']}" for b in bad]
    for p in files:
        rel = str(p.relative_to(folder))
        if p.suffix.lower() == ".pdf":
            if str(p) in by_path:
                rows.append({"text": by_path[str(p)].text, "source": rel})
            continue
        try:
            text = read_text_file(p)
        except DataError as exc:
            problems.append(f"{rel}: {str(exc).removeprefix(f'{p}: ')}")
            continue
        if not text.strip():
            problems.append(f"{rel}: empty file")
            continue
        rows.append({"text": text.strip(), "source": rel})
    return rows, problems


def save_dataset(rows: list[dict], out_dir: str | os.PathLike, test_fraction: float = 0.1) -> dict:
    """``train.jsonl`` and ``test.jsonl``: a row goes to test when the hash of its content falls
    in the held-out share, so the split is the same on every run and for every order of rows."""
    train, test = [], []
    for r in rows:
        h = int(hashlib.sha256(json.dumps(r, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8], 16)
        (test if h / 0xFFFFFFFF < test_fraction else train).append(r)
    out = Path(out_dir)
    files = DatasetFiles(out)
    write_jsonl(files.train, train)
    write_jsonl(files.test, test)
    return {"train": len(train), "test": len(test), "dir": str(out)}
