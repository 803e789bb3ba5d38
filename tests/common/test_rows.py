"""Dataset rows: validation that names each bad row, held-out turns cut at the reference."""
from helpers.common.rows import validate_rows


def test_validate_rows_reports_each_bad_row():
    rows = [{"instruction": "x", "output": "y"}, {"instruction": "x", "output": " "},
            {"messages": [{"role": "user", "content": "hi"}]}, {"messages": [{"role": "bot", "content": "x"}]},
            {"text": ""}, {"foo": 1}]
    problems = validate_rows(rows, "f.jsonl")
    assert [p.split(":")[0] for p in problems] == [f"f.jsonl row {i}" for i in (1, 2, 3, 4, 5)]


def test_cut_at_reference_on_real_conversations():
    from helpers.common.resources import chitchat
    from helpers.common.rows import cut_at_reference
    from helpers.core.jsonl import read_jsonl
    convs = read_jsonl(chitchat("test"))[:50]
    for conv in convs:
        first, last = cut_at_reference(conv), cut_at_reference(conv, turn="last")
        replies = [i for i, m in enumerate(conv["messages"])
                   if m["role"] == "assistant" and i > 0 and m["content"].strip()]
        if not replies:
            assert first is None and last is None
            continue
        assert first["messages"] == conv["messages"][: replies[0] + 1]
        assert last["messages"] == conv["messages"][: replies[-1] + 1]
        assert first["messages"][-1]["role"] == "assistant" and len(first["messages"]) <= len(last["messages"])
    assert cut_at_reference({"instruction": "Say hi.", "input": "", "output": "Hi."})["output"] == "Hi."
    assert cut_at_reference({"instruction": "Say hi.", "output": " "}) is None
    assert cut_at_reference({"messages": [{"role": "assistant", "content": "an opener with no prompt"}]}) is None


def test_row_hash_is_stable_and_ignores_key_order():
    from helpers.common.rows import row_hash
    a = {"instruction": "Name the tool.", "input": "", "output": "R."}
    b = {"output": "R.", "input": "", "instruction": "Name the tool."}
    assert row_hash(a) == row_hash(b) and len(row_hash(a)) == 16
    assert row_hash(a) != row_hash({**a, "output": "R!"})
    assert row_hash({"text": "é"}) == row_hash({"text": "\u00e9"})


def test_structured_content_and_empty_user_turns_are_named_by_row():
    from helpers.common.rows import TYPE_PROBLEM
    ok = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    rows = [ok, {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "hello"}]},
            {"messages": [{"role": "user", "content": ["a", "b"]}, {"role": "assistant", "content": "x"}]},
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": {"k": 1}}]},
            {"instruction": "x", "output": ["a", "b"]}]
    assert validate_rows(rows, "f.jsonl") == [
        "f.jsonl row 1: message 0 is an empty user turn",
        f"f.jsonl row 2: {TYPE_PROBLEM} message 0's 'content' is a list",
        f"f.jsonl row 3: {TYPE_PROBLEM} message 1's 'content' is a dict",
        f"f.jsonl row 4: {TYPE_PROBLEM} 'output' is a list"]
