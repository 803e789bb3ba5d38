"""helpers.dataset.grading: the teacher's grades of its triples, read strictly, against a real OpenAI-compatible
server on 127.0.0.1 that answers scripted grades, garbage, refusals and HTTP errors; the cache (a rerun asks
only what is missing); the card's section; the editable prompt; and the embedded model as a local grader."""
import json
import re

import pytest

from fake_openai import API_KEY, FakeOpenAI
from helpers.dataset.grading import (DEFAULT_GRADE_PROMPT, curate, curation_lines, grade_messages, load_grade_prompt,
                                     parse_grade)
from helpers.dataset.teacher import HttpTeacher, LocalTeacher, TeacherError, TeacherStore

CHUNKS = {"c1": "In R, the function seq() builds regular sequences. Its arguments from, to and by give the start, the "
                "end and the step; length.out asks for a number of elements instead of a step.",
          "c2": "Vectors in R are recycled when an operation combines vectors of different lengths: the shorter one "
                "is repeated until it matches the longer one. FILTERME"}
SCRIPT = {  # instruction -> what the grader replies
    "What does seq() build in R?": '{"faithful": 5, "self_contained": 5, "useful": 4, "reason": "Supported."}',
    "What does the proposed method do?": '{"faithful": 4, "self_contained": 1, "useful": 2, "reason": "It needs the '
                                         'passage: the proposed method."}',
    "How are the arguments of seq() used?": '```json\n{"faithful": 3, "self_contained": 4, "useful": 4, '
                                            '"reason": "Partly."}\n```',
    "What is a garbage question?": "Sure! I would rate this example quite highly overall.",
    "What is a refused question?": "I'm sorry, but I can't help with grading this.",
    "What is a wild grade?": '{"faithful": 9, "self_contained": 5, "useful": 5}',
    "Why are vectors recycled?": '{"faithful": 5, "self_contained": 5, "useful": 5, "reason": "Fine."}',
}


def grader_reply(messages):
    return SCRIPT[re.search(r"INSTRUCTION: (.*)", messages[-1]["content"]).group(1)]


def triples():
    out = []
    for i, ins in enumerate(SCRIPT):
        cid = "c2" if ins.startswith("Why are vectors") else "c1"
        out.append({"instruction": ins, "input": "", "output": f"An answer in other words, number {i}.",
                    "source": "r.pdf", "chunk_id": cid, "chunk_index": int(cid[1]), "item": i})
    return out


def http(fake):
    return HttpTeacher(fake.base_url, "llama-3.3-70b", api_key=API_KEY, timeout_s=5, backoff_s=0.05, max_retries=1,
                       concurrency=2)


def test_grades_are_read_strictly_and_each_bad_reply_is_named():
    assert parse_grade('{"faithful": 5, "self_contained": 4, "useful": 3, "reason": " ok "}') == (
        {"faithful": 5, "self_contained": 4, "useful": 3, "lowest": 3, "reason": "ok"}, None)
    assert parse_grade('```json\n{"faithful": 2, "self_contained": 4.0, "useful": 3}\n```')[0]["lowest"] == 2
    assert parse_grade("") == (None, "empty reply")
    assert parse_grade("Sure! 5/5")[1].startswith("not JSON")
    assert parse_grade("I'm sorry, I cannot grade this.")[1].startswith("refused")
    assert parse_grade('{"faithful": 5, "self_contai', "length") == (None, "cut at the token limit")
    assert parse_grade('{"faithful": 5, "useful": 3}') == (None, "no 'self_contained' grade")
    assert "not a whole number" in parse_grade('{"faithful": 6, "self_contained": 4, "useful": 3}')[1]
    assert "not a whole number" in parse_grade('{"faithful": true, "self_contained": 4, "useful": 3}')[1]
    assert "not a whole number" in parse_grade('{"faithful": "5", "self_contained": 4, "useful": 3}')[1]
    assert parse_grade('[{"faithful": 5}]') == (None, "not a JSON object (list)")
    # prose around the JSON is not a grade: strict
    assert parse_grade('Here: {"faithful": 5, "self_contained": 4, "useful": 3}')[1].startswith("not JSON")


def test_the_grading_prompt_is_a_file_the_user_can_edit(tmp_path):
    assert load_grade_prompt("") == DEFAULT_GRADE_PROMPT
    mine = tmp_path / "grade.txt"
    mine.write_text("Rate {output} against <<<\n{text}\n>>> as JSON {\"faithful\": n}", encoding="utf-8")
    assert load_grade_prompt(mine).startswith("Rate {output}")
    msgs = grade_messages(triples()[0], CHUNKS["c1"], load_grade_prompt(mine))
    assert msgs[1]["content"].startswith("Rate An answer in other words, number 0. against <<<\nIn R, the function")
    assert '{"faithful": n}' in msgs[1]["content"]  # JSON braces are left alone
    odd = grade_messages(triples()[0], "a passage that writes {output} and {instruction}", DEFAULT_GRADE_PROMPT)
    assert "a passage that writes {output} and {instruction}" in odd[1]["content"]  # filled in one pass
    (tmp_path / "bad.txt").write_text("Rate {output}.", encoding="utf-8")
    with pytest.raises(TeacherError, match=r"GRADE_PROMPT_FILE: prompt file .*bad.txt.* has no \{text\} placeholder"):
        load_grade_prompt(tmp_path / "bad.txt")
    with pytest.raises(TeacherError, match="does not exist"):
        load_grade_prompt(tmp_path / "missing.txt")


def test_curation_keeps_the_good_drops_the_weak_and_never_loses_a_triple_to_the_grader(tmp_path, capsys):
    """Scripted grades, a fenced one, prose, a refusal, a grade out of range and an HTTP 400 on one chunk: the
    weak triple is dropped with the grader's reason, every unreadable grade keeps its triple and is named, the
    estimate is printed before asking, and a rerun asks only the grade whose request failed."""
    store_path = tmp_path / "teacher_grades.jsonl"
    with FakeOpenAI(reply=grader_reply, refuse={"FILTERME": "400"}) as fake:
        kept, dropped, s = curate(triples(), CHUNKS, http(fake), TeacherStore(store_path), 3, prices=(0.59, 0.79))
        out = capsys.readouterr().out
        assert "Grading 7 examples with llama-3.3-70b: 7 request(s) to send (0 of 7 cached)" in out
        assert "at most $0.00" in out and out.index("Grading 7") < out.index("FAILED")
        assert [d["instruction"] for d in dropped] == ["What does the proposed method do?"]
        assert dropped[0]["reason"] == "graded below CURATE_MIN_GRADE=3"
        assert dropped[0]["grade"]["self_contained"] == 1 and "proposed method" in dropped[0]["grade"]["reason"]
        assert len(kept) == 6 and s["graded"] == 3 and s["dropped"] == 1
        assert s["ungraded"] == {"not JSON": 1, "refused": 1, "'faithful' is 9, not a whole number from 1 to 5": 1,
                                 "request failed": 1}
        assert s["distribution"]["lowest"] == {1: 1, 2: 0, 3: 1, 4: 1, 5: 0}
        assert [k["grade"].get("lowest") for k in kept[:2]] == [4, 3]
        assert len(s["failed"]) == 1 and "HTTP 400" in s["failed"][0]["error"]
        asked = len(fake.bodies)
        card = "\n".join(curation_lines(s))
        assert "CURATE_MIN_GRADE=3: 3 graded, 1 dropped; 4 without a readable grade, kept" in card
        assert "| 1 | 0 | 1 | 0 | 1 |" in card and "- *What does the proposed method do?* (r.pdf): faithful 4, " \
            "self-contained 1, useful 2" in card
        # the grades are cached: a rerun asks only the one whose request failed
        fake.refuse.clear()
        kept2, dropped2, s2 = curate(triples(), CHUNKS, http(fake), TeacherStore(store_path), 3, verbose=False)
        assert len(fake.bodies) == asked + 1 and s2["asked"] == 1 and s2["cached"] == 6
        assert s2["graded"] == 4 and len(kept2) == 6 and s2["ungraded"].get("request failed") is None
        # a stricter threshold needs no request at all
        kept3, dropped3, _ = curate(triples(), CHUNKS, http(fake), TeacherStore(store_path), 5, verbose=False)
        assert len(fake.bodies) == asked + 1 and len(dropped3) == 3
    stored = [json.loads(x) for x in store_path.read_text().splitlines()]
    assert len(stored) == 7 and {"chunk_id", "instruction", "answer", "model"} <= set(stored[0])


def test_a_grader_that_cannot_answer_keeps_every_triple_and_says_why(tmp_path, capsys):
    with FakeOpenAI(reply=grader_reply) as fake:
        bad_key = HttpTeacher(fake.base_url, "llama-3.3-70b", api_key="wrong", timeout_s=5, max_retries=0)
        kept, dropped, s = curate(triples(), CHUNKS, bad_key, TeacherStore(tmp_path / "g.jsonl"), 3, verbose=False)
    assert len(kept) == 7 and not dropped and s["graded"] == 0 and "refused the API key" in s["stopped"]
    out = capsys.readouterr().out
    assert "GRADING STOPPED: THE EXAMPLES WITHOUT A GRADE ARE KEPT" in out and "refused the API key" in out
    assert "Grading stopped:" in "\n".join(curation_lines(s))


def test_no_grading_when_the_threshold_is_zero(tmp_path):
    kept, dropped, s = curate(triples(), CHUNKS, None, TeacherStore(tmp_path / "g.jsonl"), 0)
    assert len(kept) == 7 and not dropped and s == {"min_grade": 0, "off": True}
    assert "Not graded (CURATE_MIN_GRADE=0)" in "\n".join(curation_lines(s))


def test_the_embedded_model_grades_as_a_local_teacher(tmp_path, embedded_dir):
    """The local teacher of SMOKE runs grades too: its answer starts inside the object, and what it wrote is
    read strictly (a grade, or an unreadable reply that keeps the triple)."""
    teacher = LocalTeacher("embedded/smollm2-135m-instruct", max_new_tokens=32)
    kept, dropped, s = curate(triples()[:1], CHUNKS, teacher, TeacherStore(tmp_path / "g.jsonl"), 2, verbose=False)
    stored = next(iter(TeacherStore(tmp_path / "g.jsonl").records.values()))
    assert stored["answer"].startswith('{"faithful": ') and stored["backend"] == "local"
    assert s["graded"] + sum(s["ungraded"].values()) == 1 and len(kept) + len(dropped) == 1
