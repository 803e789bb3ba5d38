"""helpers.evaluation.judge: the judge's section of a real report, against a real OpenAI-compatible server on
127.0.0.1 (an honest judge, a position-biased one, garbage, a refused request, a refused key), its cache, the
editable prompts, the report without a judge, and once end to end against ``transformers serve`` with the
embedded model."""
import copy
import json

import pytest

from fake_openai import API_KEY, FakeOpenAI
from helpers.core.jsonl import write_jsonl
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.judge import (GRADE_ANSWER_PROMPT, judge_answers, load_judge_prompts, parse_verdict,
                                      parse_winner)
from helpers.evaluation.judge_config import JudgeConfig
from helpers.evaluation.markdown import judge_markdown, retrieval_markdown
from helpers.evaluation.metrics import EvalError
from serve_local import TransformersServe

CFG = EvalConfig(bootstrap=200, seed=0)


def judged_report(report, tmp_path, rows=4):
    """A copy of the real report whose answers are known ones (base wrong, tuned right) about real-looking
    chunks, with chunks.jsonl beside its held-out set."""
    rep = copy.deepcopy(report)
    out, d = tmp_path / "eval", tmp_path / "dataset"
    out.mkdir(parents=True)
    d.mkdir(parents=True)
    (d / "test.jsonl").write_text("")
    write_jsonl(d / "chunks.jsonl", [{"chunk_id": f"c{i}", "source": "doc.pdf", "index": i,
                                      "text": f"PASSAGE-{i}: a Bethe lattice of connectivity {i + 2}."}
                                     for i in range(rows)])
    write_jsonl(out / "answers.jsonl", [
        {"index": i, "prompt": "<|im_start|>user ...", "question": f"What is the connectivity in case {i}?",
         "chunk_id": f"c{i}", "reference": f"It is {i + 2}.", "base": f"base answer {i}", "tuned": f"tuned answer {i}",
         "base_rougeL": 0.1, "tuned_rougeL": 0.3 if i else 0.1} for i in range(rows)])
    rep["test_path"] = str(d / "test.jsonl")
    rep["files"] = {"json": str(out / "report.json"), "markdown": str(out / "report.md"),
                    "answers": str(out / "answers.jsonl")}
    return rep


def honest(messages):
    user = messages[-1]["content"]
    if "Answer to grade:" in user:
        answer = user.split("Answer to grade:")[1]
        if "PASSAGE-3" in user and "base answer" in answer:
            return "Let me think about this one."
        return '{"verdict": "correct", "reason": "Right."}' if "tuned answer" in answer else \
            '{"verdict": "wrong", "reason": "No."}'
    a = user.split("Answer A:")[1].split("Answer B:")[0]
    return json.dumps({"winner": "A" if "tuned answer" in a else "B", "reason": "More correct."})


def biased(messages):
    if "Answer to grade:" in messages[-1]["content"]:
        return '{"verdict": "partly correct"}'
    return '{"winner": "A", "reason": "The first one."}'


def http_judge(fake, **kw):
    return JudgeConfig(**{"judge": "http", "judge_base_url": fake.base_url, "judge_model": "judge-70b",
                          "judge_concurrency": 2, **kw})


def test_verdicts_are_read_strictly():
    assert parse_verdict('{"verdict": "Partly correct", "reason": "x"}') == ("partly", None)
    assert parse_verdict('{"verdict": "maybe"}') == (None, "unknown verdict 'maybe'")
    assert parse_verdict("I'm sorry, I can't judge this.")[1].startswith("refused")
    assert parse_winner('```json\n{"winner": "b"}\n```') == ("B", None)
    assert parse_winner('{"winner": "both"}') == (None, "unknown winner 'both'")
    assert parse_winner("A is better")[1].startswith("not JSON")


def test_an_honest_judge_grades_compares_and_caches(report, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_API_KEY", API_KEY)
    rep = judged_report(report, tmp_path)
    logs = []
    with FakeOpenAI(reply=honest) as fake:
        rep = judge_answers(http_judge(fake, judge_price_input_per_m=1.0), CFG, rep, log=logs.append)
        assert logs[0].startswith("Judge judge-70b: 16 request(s) to send (0 of 16 cached)") and "$" in logs[0]
        assert len(fake.bodies) == 16
        assert sum("PASSAGE-2: a Bethe lattice" in b["messages"][-1]["content"] for b in fake.bodies) == 4
        j = rep["judge"]
        assert j["n"] == 4 and j["n_graded"] == 3 and j["unreadable"] == {"not JSON": 1}
        assert j["verdicts"] == {"base": {"wrong": 3}, "tuned": {"correct": 4}}
        assert j["correct"]["base"]["value"] == 0 and j["correct"]["tuned"]["value"] == 1
        assert j["correct"]["diff"]["ci"] == [1.0, 1.0] and j["rougeL"]["tuned"]["value"] == pytest.approx(0.7 / 3)
        assert j["win_rate"]["value"] == 1 and j["win_rate"]["n"] == 4 and j["outcomes"] == {"tuned wins": 4}
        assert j["consistency"] == {"value": 1.0, "n": 4} and j["first_position"]["value"] == 0.5
        assert j["rouge_agreement"] == {"value": 1.0, "n": 3}
        assert j["cost_usd"] > 0 and j["asked"] == 16 and j["failed"] == 0
        # a rerun asks nothing: every judgement is cached
        rep = judge_answers(http_judge(fake), CFG, rep, log=logs.append)
        assert len(fake.bodies) == 16 and rep["judge"]["asked"] == 0 and logs[-2].endswith("nothing to ask")
    md = (tmp_path / "eval" / "report.md").read_text()
    assert "## Judge: is it right, and which is better?" in md and "## Metrics (value [95% CI])" in md
    assert "| correct share (judge) ↑ | 0.00 [0.00, 0.00] | 1.00 [1.00, 1.00] | +1.00 [+1.00, +1.00] |" in md
    assert "win rate 1.00 [1.00, 1.00] over 4 prompts (tuned wins 4, ties 0, base wins 0)" in md
    assert "swapped in 100% of 4 prompts" in md and "higher ROUGE-L in 100% of 3 prompts" in md
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["judge"]["n_graded"] == 3
    assert len((tmp_path / "eval" / "judgements.jsonl").read_text().splitlines()) == 16


def test_the_answers_given_with_passages_are_graded_too_so_the_four_ways_share_the_judge(report, tmp_path,
                                                                                       monkeypatch):
    """With retrieval rows in answers.jsonl (notebook 05's four ways), the judge grades both answers given with
    passages for the judged prompts (not pairwise), and the retrieval table gains a judged-correct column."""
    monkeypatch.setenv("JUDGE_API_KEY", API_KEY)
    rep = judged_report(report, tmp_path, rows=3)
    answers = tmp_path / "eval" / "answers.jsonl"
    closed = [json.loads(line) for line in answers.read_text().splitlines()]
    rag = [{**a, "way": "retrieval", "base": f"tuned answer {a['index']} from the passage",
            "tuned": f"tuned answer {a['index']} with passages"} for a in closed]
    rag[2]["base"] = "base answer 2 guessed"
    write_jsonl(answers, closed + rag)
    rep["retrieval"] = {"k": 2, "index": "BM25 over 3 chunks", "prompts_cut": 0,
                        "ways": {w: {"label": lab, "rougeL": {"value": 0.2}} for w, lab in
                                 (("base", "base, closed book"), ("tuned", "tuned, closed book"),
                                  ("base_rag", "base + retrieved passages"),
                                  ("tuned_rag", "tuned + retrieved passages"))},
                        "verdict": {"line": "Both together are best.", "diffs": {}},
                        "hit_rate": {"skipped": "not measured"}}
    with FakeOpenAI(reply=honest) as fake:
        rep = judge_answers(http_judge(fake, judge_max_examples=2), CFG, rep, log=lambda *_: None)
        assert len(fake.bodies) == 2 * (2 + 2) + 2 * 2  # closed: 2 grades + 2 pairs per prompt; with passages: 2
        graded = [b["messages"][-1]["content"] for b in fake.bodies]
        assert sum("with passages" in g or "from the passage" in g for g in graded) == 4
    ways = rep["judge"]["ways"]
    assert ways["base"]["value"] == 0 and ways["tuned"]["value"] == 1
    assert ways["base_rag"] == {"value": 1.0, "n": 2, "ci": [1.0, 1.0]} and ways["tuned_rag"]["value"] == 1
    md = retrieval_markdown(rep)
    assert "| way | ROUGE-L F1 ↑ [95% CI] | − base, closed book | judged correct ↑ [95% CI] |" in md
    assert "| base + retrieved passages | 0.200 | — | 1.00 [1.00, 1.00] (n=2) |" in md


def test_a_position_biased_judge_is_caught_by_the_swap(report, tmp_path, monkeypatch):
    """A judge that always picks the first answer: every prompt's two orders disagree, so the win rate is a
    tie (0.5), self-consistency is 0 and the first position is picked every time."""
    monkeypatch.setenv("JUDGE_API_KEY", API_KEY)
    with FakeOpenAI(reply=biased) as fake:
        j = judge_answers(http_judge(fake), CFG, judged_report(report, tmp_path), log=lambda m: None)["judge"]
    assert j["win_rate"]["value"] == 0.5 and j["outcomes"] == {"tie": 4}
    assert j["consistency"] == {"value": 0.0, "n": 4} and j["first_position"] == {"value": 1.0, "n": 8}
    assert j["rouge_agreement"] == {"value": None, "n": 0} and j["verdicts"]["base"] == {"partly": 4}
    md = judge_markdown({"judge": j})
    assert "swapped in 0% of 4 prompts" in md and "first answer picked in 100% of 8" in md
    assert "higher ROUGE-L in n/a (none to count) prompts" in md


def test_refused_requests_fail_alone_and_a_refused_key_stops_the_judge_not_the_report(report, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("JUDGE_API_KEY", API_KEY)
    rep = judged_report(report, tmp_path)
    with FakeOpenAI(reply=honest, refuse={"PASSAGE-1": "400"}) as fake:
        j = judge_answers(http_judge(fake), CFG, rep, log=lambda m: None)["judge"]
        assert j["failed"] == 4 and j["n_graded"] == 2 and j["win_rate"]["n"] == 3
        fake.refuse.clear()
        j = judge_answers(http_judge(fake), CFG, rep, log=lambda m: None)["judge"]
        assert j["asked"] == 4 and j["failed"] == 0 and j["win_rate"]["n"] == 4
    monkeypatch.setenv("JUDGE_API_KEY", "wrong")
    rep2 = judged_report(report, tmp_path / "again")
    with FakeOpenAI(reply=honest) as fake:
        j = judge_answers(http_judge(fake), CFG, rep2, log=lambda m: None)["judge"]
    assert "refused the API key" in j["stopped"] and j["n_graded"] == 0 and j["win_rate"]["value"] is None
    md = (tmp_path / "again" / "eval" / "report.md").read_text()
    assert "stopped:" in md and "## Metrics (value [95% CI])" in md


def test_without_a_judge_the_section_says_how_to_add_one(report, tmp_path):
    rep = judged_report(report, tmp_path)
    rep = judge_answers(JudgeConfig(), CFG, rep, log=lambda m: None)
    assert rep["judge"]["skipped"].startswith("no judge endpoint")
    md = (tmp_path / "eval" / "report.md").read_text()
    section = md.split("## Judge: is it right, and which is better?")[1].split("## Answers side by side")[0]
    assert [line for line in section.splitlines() if line.strip()] == [
        "No judge ran (no judge endpoint: JUDGE_BASE_URL is empty and notebook 02's teacher was not an "
        "OpenAI-compatible endpoint).",
        "To add one, set JUDGE_BASE_URL and JUDGE_MODEL to an OpenAI-compatible endpoint (its key in the "
        "JUDGE_API_KEY secret), or JUDGE='local' for a transformers model, and run the judge cell again."]
    assert "## Metrics (value [95% CI])" in md and "## General ability" in md
    assert "To add one" in judge_markdown({})


def test_the_judging_prompts_are_files_the_user_can_edit(report, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_API_KEY", API_KEY)
    assert load_judge_prompts(JudgeConfig())[0] == GRADE_ANSWER_PROMPT
    bad = tmp_path / "bad.txt"
    bad.write_text("Grade it.", encoding="utf-8")
    with pytest.raises(EvalError, match=r"JUDGE_PROMPT_FILE: prompt file .*bad.txt.* has no \{answer\} placeholder"):
        judge_answers(JudgeConfig(judge="local", judge_prompt_file=str(bad)), CFG, judged_report(report, tmp_path))
    mine = tmp_path / "mine.txt"
    mine.write_text('MY RUBRIC for {answer} (reference {reference}) <<<\n{passage}\n>>> {"verdict": "..."}',
                    encoding="utf-8")
    with FakeOpenAI(reply=honest) as fake:
        judge_answers(http_judge(fake, judge_prompt_file=str(mine), judge_max_examples=1, judge_concurrency=1), CFG,
                      judged_report(report, tmp_path / "mine"), log=lambda m: None)
    assert fake.bodies[0]["messages"][-1]["content"] == \
        'MY RUBRIC for base answer 0 (reference It is 2.) <<<\nPASSAGE-0: a Bethe lattice of connectivity 2.\n>>> ' \
        '{"verdict": "..."}'


def test_end_to_end_with_transformers_serve_and_the_embedded_model(report, tmp_path, embedded_dir):
    """The real local server (``transformers serve``, offline) with the embedded model judges the real
    report's first answers: every judgement is stored, and each is a verdict or named as unreadable."""
    with TransformersServe(embedded_dir) as srv:
        cfg = JudgeConfig(judge="http", judge_base_url=srv.base_url, judge_model=srv.model, judge_max_examples=1,
                          judge_max_new_tokens=24, judge_concurrency=1)
        rep = copy.deepcopy(report)
        out = tmp_path / "eval"
        out.mkdir()
        (out / "answers.jsonl").write_text(open(report["files"]["answers"]).read())
        rep["files"] = {**rep["files"], "json": str(out / "report.json"), "markdown": str(out / "report.md"),
                        "answers": str(out / "answers.jsonl")}
        j = judge_answers(cfg, CFG, rep, log=lambda m: None)["judge"]
    stored = [json.loads(x) for x in (out / "judgements.jsonl").read_text().splitlines()]
    assert len(stored) == 4 and {r["kind"] for r in stored} == {"grade", "pair"} and j["failed"] == 0
    assert all(r["completion_tokens"] > 0 and r["model"] == srv.model for r in stored)
    parsed = sum((parse_verdict if r["kind"] == "grade" else parse_winner)(r["answer"], r["finish_reason"])[0]
                 is not None for r in stored)
    assert parsed + sum(j["unreadable"].values()) == 4 and "## Judge" in (out / "report.md").read_text()
