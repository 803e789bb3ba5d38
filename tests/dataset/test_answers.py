"""helpers.dataset.answers: teachers' answers parsed forgivingly, items validated with the reason for each
reject, and whole stored answers turned into triples and rejects (cut at the token limit, repeated items)."""
import json

from helpers.dataset.answers import parse_answer, triples_from_answer, validate_item

BETHE = ("The Bethe lattice is a tree in which every node has the same number of neighbours. Because it has no loops, "
         "mean field theory becomes exact on it in the limit of large connectivity.")


def test_parser_is_forgiving():
    item = {"instruction": "Define a Bethe lattice.", "input": "", "output": "A loop-free tree."}
    js = json.dumps(item)
    assert parse_answer(json.dumps({"examples": [item]}))[0] == [item]
    assert parse_answer("```json\n[" + js + ",]\n```")[0] == [item]
    assert parse_answer("Here you go:\n" + js + "\nHope this helps!")[0] == [item]
    assert parse_answer(json.dumps({"Triples": [item, item]}))[0] == [item, item]
    items, err, cut = parse_answer('{"examples": [' + js + ', {"instruction": "Explain the gap", "outp')
    assert items == [item] and err is None and cut
    # an object left open (the small model starts a nested list): its complete fields are salvaged
    items, err, cut = parse_answer('{"examples": [{"instruction": "What is a node?", "input": "", '
                                   '"output": "A layer.", "examples": [{"instruction": "What')
    assert items == [{"instruction": "What is a node?", "input": "", "output": "A layer."}] and err is None and cut
    items, err, cut = parse_answer("instruction: explain; output: nothing")
    assert items == [] and err.startswith("unparseable JSON")
    assert parse_answer("   ")[1] == "empty answer"


def test_validation_reasons():
    chunk = BETHE
    ok, why = validate_item({"Instruction": "What is a Bethe lattice?",
                             "Output": "A tree where all nodes have equal degree."}, chunk)
    assert why is None and ok == {"instruction": "What is a Bethe lattice?", "input": "",
                                  "output": "A tree where all nodes have equal degree."}
    assert validate_item({"question": "Why exact?", "answer": "No loops."}, chunk)[0]["output"] == "No loops."
    cases = [
        ({"instruction": "", "output": "x"}, "empty instruction"),
        ({"instruction": "Explain.", "output": "  "}, "empty output"),
        ({"instruction": "Explain."}, "missing field 'output'"),
        ({"instruction": "Explain.", "output": ["a"]}, "field 'output' is not a string (list)"),
        ({"instruction": "Summarise the text.", "output": chunk}, "output copied from the chunk"),
        ({"instruction": "Why does R print [1] in front of a result?", "output": "Because."},
         "copies the prompt's example"),
        ({"instruction": "Name the lattice.", "output": "Name the lattice."}, "output repeats the instruction"),
        ("just a string", "not a JSON object (str)"),
        ({"instruction": "What is the process of indexing?", "output": "The process of indexing"},
         "output only restates the instruction"),
        ({"instruction": "Define it.", "input": "Some context here.", "output": "Some context here."},
         "output repeats the input"),
        ({"instruction": "What is the purpose of [insert keyword]?", "output": "It is [insert topic]."},
         "placeholder text instead of content"),
    ]
    for item, reason in cases:
        assert validate_item(item, chunk) == (None, reason)


def record(answer: str, finish_reason: str = "stop") -> dict:
    """A stored answer as TeacherStore holds it."""
    return {"source": "paper.pdf", "chunk_id": "c1", "chunk_index": 0, "teacher": "llama-3.3-70b-versatile",
            "answer": answer, "finish_reason": finish_reason}


def test_triples_carry_their_source_and_every_reject_its_reason():
    good = {"instruction": "Why is mean field theory exact on a Bethe lattice?", "input": "",
            "output": "Because the lattice has no loops, so in the limit of large connectivity fluctuations vanish."}
    answer = json.dumps({"examples": [good, dict(good), {"instruction": "Name it.", "output": "Name it."}]})
    triples, rejects = triples_from_answer(record(answer), BETHE)
    assert triples == [{**good, "source": "paper.pdf", "chunk_id": "c1", "chunk_index": 0,
                        "teacher": "llama-3.3-70b-versatile", "item": 0}]
    assert [r["reason"] for r in rejects] == ["repeated within the answer", "output repeats the instruction"]
    assert rejects[0]["item"] == good and rejects[0]["chunk_id"] == "c1"
    # cut at the token limit: the complete example is kept, the cut one reported
    cut = answer[:answer.index("Name it.")]
    triples, rejects = triples_from_answer(record(cut, "length"), BETHE)
    assert len(triples) == 1 and rejects[-1]["reason"] == "truncated: the last example was cut at the token limit"
    assert rejects[-1]["answer_tail"] == cut[-300:]
    # nothing usable before the limit, and an empty answer
    triples, rejects = triples_from_answer(record('{"examples": [{"instruction": "Wh', "length"), BETHE)
    assert triples == [] and rejects[0]["reason"] == "truncated: cut at the token limit before any complete example"
    assert triples_from_answer(record("", "length"), BETHE)[1][0]["reason"] == "empty answer"
