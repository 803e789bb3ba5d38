"""helpers.dataset.grading_ask: many small cached questions to a real OpenAI-compatible server on 127.0.0.1:
the estimate before asking, a rerun that asks only what is missing, a refusal that costs its question alone,
and a stop (HTML every time, a refused key) that keeps every answer that arrived."""
import pytest

from fake_openai import API_KEY, FakeOpenAI
from helpers.dataset.grading_ask import ask_all, estimate, estimate_line, make_ask
from helpers.dataset.teacher import HttpTeacher, TeacherStop, TeacherStore


def asks(asker, n=4):
    return [make_ask(asker, [{"role": "user", "content": f"Question {i}:\n<<<\npassage {i}\n>>>"}],
                     {"kind": "test", "index": i}, f"question {i}") for i in range(n)]


def http(fake, **kw):
    return HttpTeacher(fake.base_url, "judge-1", **{"api_key": API_KEY, "timeout_s": 5, "backoff_s": 0.05,
                                                     "max_retries": 1, **kw})


def test_estimate_then_ask_only_what_is_missing(tmp_path):
    with FakeOpenAI(reply=lambda m: '{"verdict": "correct"}') as fake:
        judge = http(fake, concurrency=2)
        store = TeacherStore(tmp_path / "j.jsonl")
        qs = asks(judge)
        est = estimate(qs, store, 100, 1.0, 2.0)
        assert est["requests"] == 4 and est["cached"] == 0 and est["max_completion_tokens"] == 400
        assert est["prompt_tokens"] > 0 and est["max_cost_usd"] == pytest.approx(
            (est["prompt_tokens"] * 1.0 + 400 * 2.0) / 1e6)
        assert estimate_line("Judge", est).startswith("Judge: 4 request(s) to send (0 of 4 cached), about ")
        run = ask_all(judge, qs[:3], store, verbose=False)
        assert run["asked"] == 3 and run["cached"] == 0 and run["prompt_tokens"] > 0 and len(fake.bodies) == 3
        rec = store.records[qs[0].key]
        assert rec["answer"] == '{"verdict": "correct"}' and rec["kind"] == "test" and rec["model"] == "judge-1"
        assert estimate(qs, store, 100)["requests"] == 1
        run = ask_all(judge, qs + qs[:1], store, verbose=False)  # the same question twice is asked once
        assert run["asked"] == 1 and run["cached"] == 4 and len(fake.bodies) == 4
        assert estimate_line("Judge", estimate(qs, TeacherStore(store.path), 100)) == \
            "Judge: all 4 already in the cache, nothing to ask"
    assert make_ask(judge, qs[0].messages).key == qs[0].key  # the key: model and messages


def test_a_refused_question_fails_alone_and_a_doomed_endpoint_stops_with_answers_stored(tmp_path):
    with FakeOpenAI(reply=lambda m: "{}", refuse={"passage 2": "400"}) as fake:
        store = TeacherStore(tmp_path / "j.jsonl")
        run = ask_all(http(fake), asks(http(fake)), store, verbose=False)
        assert run["asked"] == 3 and [f["where"] for f in run["failed"]] == ["question 2"]
        assert "content filter" in run["failed"][0]["error"] and len(store) == 3
    with FakeOpenAI(reply=lambda m: "{}", plan=["ok", "401"], default="401") as fake:
        store = TeacherStore(tmp_path / "k.jsonl")
        with pytest.raises(TeacherStop, match=r"judging stopped: .*refused the API key.*1 answer\(s\) of this run"):
            ask_all(http(fake, concurrency=1), asks(http(fake)), store, label="judging", verbose=False)
        assert len(store) == 1
    with FakeOpenAI(default="html") as fake:  # a proxy's sign-in page every time
        with pytest.raises(TeacherStop, match="no reply so far was a chat completion"):
            ask_all(http(fake, max_retries=3), asks(http(fake)), TeacherStore(tmp_path / "h.jsonl"), verbose=False)
