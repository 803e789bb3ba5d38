"""JSON Lines on disk: ``read_jsonl`` and ``write_jsonl`` (whole files, written atomically) and a
resumable, crash-safe JSONL store: rows that arrive one at a time (arXiv's manifest and
abstracts in :mod:`helpers.scrape.step`, the teacher's answers in :mod:`helpers.dataset.teacher`), each written
the moment it is done, so a rerun after a crash knows what is already done.

:class:`JsonlStore` opens an existing file and indexes its rows by ``key(row)`` (``store.rows``,
``key in store``); :meth:`JsonlStore.add` appends one row: one ``write`` on an ``O_APPEND``
descriptor, then ``fsync``, under a lock (threads may share a store). A crash therefore leaves at
most one cut-short last line. What opening does with damage is the owner's choice:

* ``torn_tail``: a last line with no newline after it (a write cut short), when it does not read
  as a row. ``"skip"``: it stays in the file, is reported in ``problems`` and skipped, and the next
  row starts on a new line. ``"truncate"``: the bytes after the last newline are cut off the file
  (``repaired_bytes`` counts them); this is done whether or not they would read as a row.
* ``bad_line``: any other line that is not a JSON object with a key. ``"skip"``: reported in
  ``problems`` and skipped; ``"raise"``: ``error`` (``JsonlError`` unless given) naming the file
  and line, so a damaged store is never silently half-read.

Lines are split on ``\\n`` only (a row may hold U+2028 or other characters Python's
``str.splitlines`` would split on). A key met twice: the later row wins unless a subclass's
:meth:`JsonlStore.accept` says otherwise (the teacher keeps the first, unless re-asked).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable, Iterable


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


class JsonlError(ValueError):
    """A JSONL store that cannot be read; the message names the file and line."""


class JsonlStore:
    """Rows of a JSONL file by key, appended and fsynced one by one (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, key: Callable[[dict], str], *, torn_tail: str = "skip",
                 bad_line: str = "skip", error: type[Exception] = JsonlError):
        if torn_tail not in ("skip", "truncate") or bad_line not in ("skip", "raise"):
            raise ValueError(f"JsonlStore({path}): torn_tail is 'skip' or 'truncate' (got {torn_tail!r}), "
                             f"bad_line 'skip' or 'raise' (got {bad_line!r})")
        self.path, self.key = Path(path), key
        self.torn_tail, self.bad_line, self.error = torn_tail, bad_line, error
        self.rows: dict[str, dict] = {}
        self.problems: list[str] = []  # lines skipped on open, each "file:line: why"
        self.repaired_bytes = 0  # bytes of a cut-short last line cut off on open (torn_tail="truncate")
        self._needs_newline = False
        self._lock = threading.Lock()
        if self.path.exists():
            self._load()

    # --- reading --------------------------------------------------------------------------
    def _load(self) -> None:
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw) and self.torn_tail == "truncate":
            self.repaired_bytes = len(raw) - end
            with self.path.open("r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
            raw = raw[:end]
        self._needs_newline = bool(raw) and not raw.endswith(b"\n")
        lines = raw.split(b"\n")
        last = len(lines) if self._needs_newline else len(lines) - 1  # number of the torn line, if any
        for n, data in enumerate(lines, 1):
            if not data.strip():
                continue
            try:
                row = self._parse(data)
                key = self.key(row)
            except (ValueError, KeyError, TypeError) as exc:
                if self.bad_line == "raise" and not (n == last and self._needs_newline):
                    raise self.error(f"{self.path}:{n}: not a JSON line ({_why(exc)}); the store is damaged") from None
                self.problems.append(f"{self.path}:{n}: unreadable line skipped ({_why(exc)}); "
                                     "probably a write cut short")
                continue
            if self.accept(key, row):
                self.rows[key] = row

    def _parse(self, data: bytes) -> dict:
        text = data.decode("utf-8", errors="replace" if self.bad_line == "skip" else "strict")
        row = json.loads(text)
        if not isinstance(row, dict):
            raise TypeError(f"a JSON {type(row).__name__}, not an object")
        return row

    def accept(self, key: str, row: dict) -> bool:
        """Whether ``row`` (read on open or being added) goes into ``rows`` (and, when added, the
        file); the default: always, a later row replacing an earlier one of the same key."""
        return True

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: str, default=None):
        return self.rows.get(key, default)

    # --- writing --------------------------------------------------------------------------
    def add(self, row: dict) -> bool:
        """Append ``row`` (one write, then fsync) unless :meth:`accept` refuses it; returns whether it was."""
        key = self.key(row)
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock:
            if not self.accept(key, row):
                return False
            if self._needs_newline:
                line = "\n" + line
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = line.encode("utf-8")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._needs_newline = False
            self.rows[key] = row
            return True


def _why(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no key {exc}"
    return str(exc)
