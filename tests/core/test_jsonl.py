"""helpers.core.jsonl: the crash-safe JSONL store behind arXiv's manifest and the teacher's answers, on real files:
a torn last line (skipped and reported, or cut off), a damaged middle line (reported, or refused), keyed
look-ups, appends from several threads."""
import json
import threading

import pytest

from helpers.core.jsonl import DataError, JsonlError, JsonlStore, read_jsonl, write_jsonl


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
