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

Files users bring (datasets, text) are read by :func:`read_user_text` and :func:`read_rows`: UTF-8
with or without a BOM, or UTF-16 (by its BOM, or by its zero bytes); a byte that is not UTF-8
costs its row alone, named with the file, the row and the byte offset. ``read_rows`` tells a
JSON list from JSON Lines by the content, so a JSONL file whose first row is a list stays JSONL.
"""
from __future__ import annotations

import codecs
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable


class DataError(ValueError):
    """A dataset that cannot be used; the message names the file and line."""


_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, kept by the surrogateescape decoder
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


@dataclass
class UserText:
    """A user's text file, decoded: ``text`` holds each byte that is not UTF-8 as a lone surrogate
    (U+DC80-U+DCFF), so a bad byte costs only the row it is in (:meth:`bad_byte`)."""
    path: Path
    text: str
    encoding: str  # "utf-8", "utf-8 with a BOM", "utf-16-le", ...
    bom: int  # bytes of byte-order mark before the text

    def bad_byte(self, start: int = 0, end: int | None = None) -> str | None:
        """What is wrong with ``text[start:end]`` when it holds a byte that is not UTF-8, else None."""
        m = _NOT_UTF8.search(self.text, start, len(self.text) if end is None else end)
        if m is None:
            return None
        offset = self.bom + len(self.text[:m.start()].encode("utf-8", "surrogateescape"))
        return (f"byte 0x{ord(m.group()) - 0xDC00:02x} at byte offset {offset} is not UTF-8 "
                "(the file is neither UTF-8 nor UTF-16; save it as UTF-8)")

    def offset(self, pos: int) -> int:
        """The byte offset in the file of character ``pos`` of ``text``."""
        return self.bom + len(self.text[:pos].encode(self.encoding.split()[0], "surrogateescape"))


def read_user_text(path: str | os.PathLike) -> UserText:
    """A user's file as text: UTF-8 (a BOM is dropped) or UTF-16 (by its BOM or, without one, by a
    zero byte in the first two). A folder, a missing file or broken UTF-16 is a DataError naming it."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file())[:5]
        raise DataError(f"{path} is a folder, not a file: give one file in it"
                        + (f" (it holds {', '.join(inside)}{', ...' if len(inside) == 5 else ''})" if inside else
                           " (it holds no files)"))
    if not path.exists():
        raise DataError(f"{path}: no such file")
    raw = path.read_bytes()
    bom, enc = next(((len(b), e) for b, e in _BOMS if raw.startswith(b)), (0, "utf-8"))
    if not bom and len(raw) >= 2 and (raw[0] == 0) != (raw[1] == 0):  # "{\0" or "\0{": UTF-16 without a BOM
        enc = "utf-16-be" if raw[0] == 0 else "utf-16-le"
    if enc == "utf-8":
        return UserText(path, raw[bom:].decode("utf-8", "surrogateescape"), "utf-8 with a BOM" if bom else "utf-8", bom)
    try:
        return UserText(path, raw[bom:].decode(enc), enc, bom)
    except UnicodeDecodeError as exc:
        line = raw[bom:bom + exc.start].decode(enc, "replace").count("\n") + 1
        raise DataError(f"{path}:{line}: broken {enc} at byte offset {bom + exc.start} ({exc.reason})") from None


def read_text_file(path: str | os.PathLike) -> str:
    """A user's text file (UTF-8 with or without a BOM, or UTF-16) as text; a byte that is not UTF-8
    is a DataError naming the file, the line and the byte, never text with U+FFFD in it."""
    ut = read_user_text(path)
    m = _NOT_UTF8.search(ut.text)
    if m:
        raise DataError(f"{ut.path}: not UTF-8 text, line {ut.text.count(chr(10), 0, m.start()) + 1}: {ut.bad_byte()}")
    return ut.text


class BadRow(ValueError):
    """A row of a user's file that cannot be read; the message says why (the caller names file and row)."""


def read_rows(path: str | os.PathLike, jsonl: bool | None = None) -> list[tuple[int, object]]:
    """``(row number, value)`` of a user's JSON Lines file (row = line) or JSON list (row = item,
    from 1); a row that cannot be read is a :class:`BadRow` value, so the others are kept.

    ``jsonl=None`` decides by the content: ``.jsonl``/``.ndjson`` files, and files whose first
    non-blank line is a JSON value alone (and not the whole file), are JSON Lines; a file that
    starts with ``[`` otherwise is one JSON list, which a syntax error refuses whole (DataError
    naming the row and byte offset: nothing after it can be found)."""
    ut = read_user_text(path)
    if jsonl is None:
        jsonl = ut.path.suffix.lower() in (".jsonl", ".ndjson") or not ut.text.lstrip().startswith("[")
        if not jsonl:
            first = next(line for line in ut.text.split("\n") if line.strip())
            jsonl = first.strip() != ut.text.strip() and _parses(first)
    return _json_lines(ut) if jsonl else _json_list(ut)


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def _json_lines(ut: UserText) -> list[tuple[int, object]]:
    rows: list[tuple[int, object]] = []
    pos = 0
    for n, line in enumerate(ut.text.split("\n"), 1):
        start, pos = pos, pos + len(line) + 1
        if not line.strip():
            continue
        bad = ut.bad_byte(start, start + len(line))
        if bad:
            rows.append((n, BadRow(bad)))
            continue
        try:
            rows.append((n, json.loads(line)))
        except ValueError as exc:
            rows.append((n, BadRow(f"not JSON ({exc})")))
    return rows


def _json_list(ut: UserText) -> list[tuple[int, object]]:
    text, dec, rows = ut.text, json.JSONDecoder(), []
    i = _JSON_SPACE.match(text, text.index("[") + 1).end()
    n = 0
    while i < len(text) and text[i] != "]":
        n += 1
        try:
            value, end = dec.raw_decode(text, i)
        except ValueError as exc:
            raise DataError(f"{ut.path}: row {n} of the JSON list: not valid JSON at byte offset "
                            f"{ut.offset(getattr(exc, 'pos', i))} ({getattr(exc, 'msg', exc)}); "
                            "the rows after it cannot be found, fix the file") from None
        bad = ut.bad_byte(i, end)
        rows.append((n, BadRow(bad) if bad else value))
        i = _JSON_SPACE.match(text, end).end()
        if i < len(text) and text[i] == ",":
            i = _JSON_SPACE.match(text, i + 1).end()
        elif i >= len(text) or text[i] != "]":
            raise DataError(f"{ut.path}: after row {n} of the JSON list: ',' or ']' expected at byte offset "
                            f"{ut.offset(i)}; fix the file")
    if i >= len(text) or text[i + 1:].strip():
        raise DataError(f"{ut.path}: the JSON list {'has no closing ]' if i >= len(text) else 'has text after its ]'}"
                        f" (after row {n}, byte offset {ut.offset(min(i + 1, len(text)))}); fix the file")
    return rows


def read_jsonl(path: str | os.PathLike, strict: bool = True) -> list[dict]:
    """Rows of a JSON Lines file (UTF-8 with or without a BOM, or UTF-16). A line that is not a JSON
    object (or holds a byte that is not UTF-8) raises DataError naming the file, line and why
    (``strict``), or is skipped and counted in a printed warning (``strict=False``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Dataset file {str(path)!r} does not exist. Build it with notebook 02, import one "
                        f"with helpers.dataset.importers, or point the path at an existing .jsonl file.")
    rows, bad = [], []
    for n, row in read_rows(path, jsonl=True):
        if isinstance(row, dict):
            rows.append(row)
            continue
        why = (str(row).replace("not JSON (", "not a JSON object (", 1) if isinstance(row, BadRow)
               else f"not a JSON object (a JSON {type(row).__name__})")
        msg = f"{path}:{n}: {why}"
        if strict:
            raise DataError(msg)
        bad.append(msg)
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
