"""Dataset rows: checking their shape, hashing them, and cutting a conversation at its reference reply.

Our datasets are JSON Lines, one row per line, in one of the two shapes of ``helpers.common.prompts``
(instruction rows or ``messages`` conversations); ``datasets.load_dataset("json", ...)`` loads
them as they are. Raw-text corpora for domain pretraining are rows with a ``text`` field.
"""
from __future__ import annotations

import hashlib
import json

TYPE_PROBLEM = "not text:"  # a list or dict where a string belongs (it would be trained on as Python's repr)


def validate_rows(rows: list[dict], path: str = "dataset") -> list[str]:
    """Problems with rows (missing fields, empty replies or user turns, wrong roles, a list or dict in
    a text field or a message's content), one message per bad row."""
    problems = []
    for i, row in enumerate(rows):
        where = f"{path} row {i}"
        if "messages" in row:
            msgs = row["messages"]
            if not isinstance(msgs, list) or not msgs:
                problems.append(f"{where}: 'messages' is empty or not a list")
                continue
            for j, m in enumerate(msgs):
                if isinstance(m, dict) and isinstance(m.get("content"), (list, dict)):
                    kind = type(m["content"]).__name__
                    problems.append(f"{where}: {TYPE_PROBLEM} message {j}'s 'content' is a {kind}")
                    break
                if (
                    not isinstance(m, dict)
                    or m.get("role") not in ("system", "user", "assistant")
                    or not isinstance(m.get("content"), str)
                ):
                    problems.append(f"{where}: message {j} needs role system/user/assistant and string content")
                    break
            else:
                empty = next((j for j, m in enumerate(msgs) if m["role"] == "user" and not m["content"].strip()), None)
                if empty is not None:
                    problems.append(f"{where}: message {empty} is an empty user turn")
                elif not any(m["role"] == "assistant" and m["content"].strip() for m in msgs):
                    problems.append(f"{where}: no non-empty assistant reply")
        elif "instruction" in row or "output" in row:
            wrong = [
                k for k in ("instruction", "input", "output") if row.get(k) is not None and not isinstance(row[k], str)
            ]
            if wrong:
                problems.append(
                    f"{where}: {TYPE_PROBLEM} " + ", ".join(f"{k!r} is a {type(row[k]).__name__}" for k in wrong)
                )
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
