"""helpers.core.jsonl: the crash-safe JSONL store behind arXiv's manifest and the teacher's answers, on real files:
a torn last line (skipped and reported, or cut off), a damaged middle line (reported, or refused), keyed
look-ups, appends from several threads."""
import json
import threading

import pytest

from helpers.core.jsonl import (BadRow, DataError, JsonlError, JsonlStore, read_jsonl, read_rows, read_text_file,
                                 write_jsonl)


def by_id(row):
    return row["id"]


def test_torn_last_line_is_reported_kept_in_the_file_and_the_next_row_starts_a_new_line(tmp_path):
    p = tmp_path / "manifest.jsonl"
    p.write_text('{"id": "a", "n": 1}\n{"id": "b", "n": 2}\n{"id": "c", "ti')  # a write cut short
    store = JsonlStore(p, by_id)
    assert set(store.rows) == {"a", "b"} and "c" not in store and len(store) == 2
    assert len(store.problems) == 1 and store.problems[0].startswith(f"{p}:3: unreadable line skipped (")
    assert store.problems[0].endswith("probably a write cut short") and store.repaired_bytes == 0
    assert p.read_text().endswith('"ti')  # nothing is thrown away
    assert store.add({"id": "c", "n": 3})
    lines = p.read_text().split("\n")
    assert lines[2] == '{"id": "c", "ti' and json.loads(lines[3]) == {"id": "c", "n": 3} and lines[4] == ""
    again = JsonlStore(p, by_id)
    assert again.rows == {"a": {"id": "a", "n": 1}, "b": {"id": "b", "n": 2}, "c": {"id": "c", "n": 3}}
    assert len(again.problems) == 1 and f"{p}:3:" in again.problems[0]


def test_torn_last_line_is_cut_off_when_asked(tmp_path):
    p = tmp_path / "answers.jsonl"
    good = '{"id": "a", "n": 1}\n'
    p.write_text(good + '{"id": "b", "ans')
    store = JsonlStore(p, by_id, torn_tail="truncate", bad_line="raise")
    assert list(store.rows) == ["a"] and store.repaired_bytes == len('{"id": "b", "ans') and store.problems == []
    assert p.read_text() == good
    store.add({"id": "b", "n": 2})
    assert [json.loads(x)["id"] for x in p.read_text().splitlines()] == ["a", "b"]
    assert JsonlStore(p, by_id, torn_tail="truncate", bad_line="raise").repaired_bytes == 0


def test_a_damaged_middle_line_is_reported_or_refused(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b", oops}\n\n[1, 2]\n{"no_id": 1}\n{"id": "c"}\n')
    lenient = JsonlStore(p, by_id)
    assert list(lenient.rows) == ["a", "c"]
    assert [x.split(": unreadable")[0] for x in lenient.problems] == [f"{p}:2", f"{p}:4", f"{p}:5"]
    assert "not an object" in lenient.problems[1] and "no key 'id'" in lenient.problems[2]
    with pytest.raises(JsonlError, match=r"rows.jsonl:2: not a JSON line \(.*\); the store is damaged"):
        JsonlStore(p, by_id, torn_tail="truncate", bad_line="raise")

    class StoreError(RuntimeError):
        pass
    p.write_text('{"id": "a"}\n{"id": "b"}\n{]\n')
    with pytest.raises(StoreError, match=r"rows.jsonl:3: not a JSON line"):
        JsonlStore(p, by_id, bad_line="raise", error=StoreError)
    assert p.read_text().endswith("{]\n")  # refusing never rewrites the file


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_bytes(b'{"id": "a"}\n{"id": "b", "t": "\xff"}\n')
    with pytest.raises(JsonlError, match=r"rows.jsonl:2: not a JSON line"):
        JsonlStore(p, by_id, bad_line="raise")
    assert set(JsonlStore(p, by_id).rows) == {"a", "b"}  # the lenient reader replaces the byte


def test_rows_with_unicode_line_separators_round_trip(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028, U+0085 and form feeds as they are: str.splitlines() would cut there
    p = tmp_path / "rows.jsonl"
    tricky = {"id": "x", "text": "one\u2028two\x85three\x0cfour\u2029five"}
    store = JsonlStore(p, by_id, torn_tail="truncate", bad_line="raise")
    store.add(tricky)
    store.add({"id": "y", "text": "plain"})
    again = JsonlStore(p, by_id, torn_tail="truncate", bad_line="raise")
    assert again.rows == {"x": tricky, "y": {"id": "y", "text": "plain"}} and again.problems == []


def test_keyed_lookup_later_rows_win_and_accept_can_refuse(tmp_path):
    p = tmp_path / "sub" / "rows.jsonl"
    store = JsonlStore(p, by_id)
    assert not p.exists() and len(store) == 0  # opening creates nothing
    store.add({"id": "a", "v": 1})
    store.add({"id": "a", "v": 2})
    assert store.get("a") == {"id": "a", "v": 2} and store.get("zz") is None
    assert JsonlStore(p, by_id).rows == {"a": {"id": "a", "v": 2}}

    class FirstWins(JsonlStore):
        def accept(self, key, row):
            return key not in self.rows
    first = FirstWins(p, by_id)
    assert first.rows == {"a": {"id": "a", "v": 1}}
    assert first.add({"id": "a", "v": 3}) is False and first.add({"id": "b", "v": 1}) is True
    assert len(p.read_text().splitlines()) == 3  # the refused row was never written

    with pytest.raises(ValueError, match="torn_tail is 'skip' or 'truncate'"):
        JsonlStore(p, by_id, torn_tail="ignore")


def test_appends_from_several_threads_stay_whole_lines(tmp_path):
    p = tmp_path / "rows.jsonl"
    store = JsonlStore(p, by_id)
    text = "x" * 5000

    def work(t):
        for i in range(25):
            store.add({"id": f"{t}-{i}", "text": text})
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = JsonlStore(p, by_id, bad_line="raise")
    assert len(again) == 100 == len(p.read_text().splitlines()) and again.problems == []


def test_read_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(DataError, match=r"d.jsonl:3: not a JSON object"):
        read_jsonl(p)
    assert read_jsonl(p, strict=False) == [{"a": 1}]
    with pytest.raises(DataError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_write_jsonl_is_atomic_and_loadable_by_datasets(tmp_path):
    rows = [{"instruction": "i", "input": "", "output": "o"}] * 3
    p = write_jsonl(tmp_path / "x" / "train.jsonl", rows)
    assert read_jsonl(p) == rows and not list(p.parent.glob("*.tmp*"))
    from datasets import load_dataset
    ds = load_dataset("json", data_files=str(p), split="train")
    assert ds.num_rows == 3 and ds.column_names == ["instruction", "input", "output"]


# --- files users bring: BOM, UTF-16, a stray latin-1 byte, a list, a folder ------------------------
ROWS = [{"instruction": "Name the café's owner.", "output": "Zoë"}, {"instruction": "2+2?", "output": "4"},
        {"instruction": "Capital of Peru?", "output": "Lima"}]


def _jsonl_bytes(rows, encoding="utf-8"):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(encoding)


def test_a_bom_or_utf16_keeps_every_row_strict_or_not(tmp_path):
    for name, data in [("bom.jsonl", b"\xef\xbb\xbf" + _jsonl_bytes(ROWS)),
                       ("utf16.jsonl", _jsonl_bytes(ROWS, "utf-16")),  # with its BOM
                       ("utf16be.jsonl", b"\xfe\xff" + _jsonl_bytes(ROWS, "utf-16-be")),
                       ("utf16le_nobom.jsonl", _jsonl_bytes(ROWS, "utf-16-le")),
                       ("crlf.jsonl", _jsonl_bytes(ROWS).replace(b"\n", b"\r\n"))]:
        (tmp_path / name).write_bytes(data)
        assert read_jsonl(tmp_path / name) == ROWS, name
        assert read_jsonl(tmp_path / name, strict=False) == ROWS, name


def test_one_latin1_byte_costs_its_row_alone_named_with_file_row_and_offset(tmp_path, capsys):
    good = _jsonl_bytes(ROWS)
    lines = good.split(b"\n")
    lines[1] = lines[1].replace(b"4", b"vier \xe9")  # one latin-1 byte in row 2
    p = tmp_path / "mixed.jsonl"
    p.write_bytes(b"\n".join(lines))
    offset = len(lines[0]) + 1 + lines[1].index(b"\xe9")
    assert read_jsonl(p, strict=False) == [ROWS[0], ROWS[2]]
    out = capsys.readouterr().out
    assert f"1 unreadable line(s) skipped in {p}: {p}:2: byte 0xe9 at byte offset {offset} is not UTF-8" in out
    with pytest.raises(DataError, match=rf"mixed.jsonl:2: byte 0xe9 at byte offset {offset} is not UTF-8"):
        read_jsonl(p)


def test_read_rows_tells_a_json_list_from_json_lines_by_the_content(tmp_path):
    pretty = tmp_path / "pretty.json"  # a pretty-printed JSON list with a BOM
    pretty.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS, indent=2, ensure_ascii=False).encode())
    assert read_rows(pretty) == list(enumerate(ROWS, 1))
    one_line = tmp_path / "one_line.json"
    one_line.write_text(json.dumps(ROWS))
    assert read_rows(one_line) == list(enumerate(ROWS, 1))
    for name in ("lists.json", "lists.jsonl"):  # JSON Lines whose rows are lists: never one document
        (tmp_path / name).write_text(json.dumps([1, 2]) + "\n" + json.dumps(ROWS[0]) + "\n")
        assert read_rows(tmp_path / name) == [(1, [1, 2]), (2, ROWS[0])]
    bad = tmp_path / "bad_list.json"  # a latin-1 byte in item 2 of a list: that item alone, with its offset
    data = json.dumps(ROWS, indent=1, ensure_ascii=False).encode().replace(b'"4"', b'"\xe9"')
    bad.write_bytes(data)
    got = read_rows(bad)
    assert [n for n, r in got if isinstance(r, dict)] == [1, 3]
    at = data.index(b"\xe9")
    assert isinstance(got[1][1], BadRow) and f"byte 0xe9 at byte offset {at} is not UTF-8" in str(got[1][1])
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(ROWS, indent=1)[:-30])
    with pytest.raises(DataError, match=r"broken.json: row 3 of the JSON list: not valid JSON at byte offset \d+"):
        read_rows(broken)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match=r"folder is a folder, not a file: give one file in it \(it holds a.jsonl\)"):
        read_rows(tmp_path / "folder")


def test_read_text_file_drops_a_bom_and_names_a_byte_that_is_not_utf8(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfCaf\xc3\xa9 notes.\n")
    assert read_text_file(tmp_path / "bom.txt") == "Café notes.\n"
    (tmp_path / "u16.txt").write_bytes("Café notes.\n".encode("utf-16"))
    assert read_text_file(tmp_path / "u16.txt") == "Café notes.\n"
    (tmp_path / "latin1.txt").write_bytes("Line one.\nCafé notes.\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt: not UTF-8 text, line 2: byte 0xe9 at byte offset 13 "):
        read_text_file(tmp_path / "latin1.txt")
