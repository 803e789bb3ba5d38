"""helpers.dataset.teacher: the OpenAI-compatible client against a real HTTP server on 127.0.0.1 (429 with
Retry-After, 500, timeouts, invalid JSON, truncated answers, a wrong key), a build that goes on past a
refused chunk, splits a chunk too long for the teacher and stores what is in flight when it must stop, the
resume store under SIGKILL, and the embedded model as the local teacher."""
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fake_openai import API_KEY, FakeOpenAI, passage_id
from helpers.common import resources as fixtures
from helpers.core.net import parse_retry_after
from helpers.dataset.chunking import Chunk, chunk_id
from helpers.dataset.answers import triples_from_answer
from helpers.dataset.teacher import (DEFAULT_PROMPT, HttpTeacher, TeacherError, TeacherStop, TeacherStore,
                                     chunk_answers, load_prompt, render_messages, request_key, run_teacher,
                                     split_text)

ROOT = Path(__file__).resolve().parent.parent.parent
PAPER = fixtures.fixture_pdf()

TEXTS = [
    "The Bethe lattice is a tree in which every node has the same number of neighbours. Because it has no loops, "
    "mean field theory becomes exact on it in the limit of large connectivity.",
    "An O(N) quantum rotor model describes N-component unit vectors with a kinetic term. Near the quantum critical "
    "point the gap closes and the correlation length diverges with exponent nu.",
    "In R, the function seq() builds regular sequences. Its arguments from, to and by give the start, the end and "
    "the step; length.out asks for a number of elements instead of a step.",
    "Vectors in R are recycled when an operation combines vectors of different lengths: the shorter one is repeated "
    "until it matches the longer one, with a warning if the lengths are not multiples.",
]


def chunks(texts=TEXTS, source="doc.pdf"):
    return [Chunk(chunk_id(source, t), source, i, t, len(t.split())) for i, t in enumerate(texts)]


def teacher(fake, **kw):
    kw = {"api_key": API_KEY, "timeout_s": 1.0, "backoff_s": 0.05, "max_retries": 4, "concurrency": 1, **kw}
    return HttpTeacher(fake.base_url, "llama-3.3-70b-versatile", **kw)


# --- the HTTP backend ----------------------------------------------------------------------------
def test_retries_429_with_retry_after_500_and_timeout(tmp_path):
    with FakeOpenAI(plan=["429", "500", "timeout", "ok"], retry_after="1", timeout_sleep=2.0) as fake:
        store = TeacherStore(tmp_path / "answers.jsonl")
        s = run_teacher(chunks()[:1], teacher(fake), store, n=2, verbose=False)
        assert s["answered"] == 1 and s["failed"] == [] and len(store) == 1
        rec = next(iter(store.records.values()))
        assert rec["attempts"] == 4
        assert fake.times[1] - fake.times[0] >= 0.95  # waited for Retry-After: 1 (backoff alone is 0.05 s)
        # the request is a real chat completion: model, messages, JSON mode, bearer key
        body = fake.bodies[-1]
        assert body["model"] == "llama-3.3-70b-versatile" and body["response_format"] == {"type": "json_object"}
        assert body["messages"][0]["role"] == "system" and TEXTS[0] in body["messages"][1]["content"]
        triples, rejects = triples_from_answer(rec, TEXTS[0])
        assert len(triples) == 2 and rejects == []
        assert rec["prompt_tokens"] > 0 and rec["completion_tokens"] > 0  # from the usage field


def test_invalid_json_and_truncated_answers_become_rejects_with_reasons(tmp_path):
    cs = chunks()[:3]
    with FakeOpenAI(plan=["invalid_json", "truncated", "ok"], n_examples=3) as fake:
        store = TeacherStore(tmp_path / "answers.jsonl")
        run_teacher(cs, teacher(fake), store, n=3, verbose=False)
    by_chunk = {r["chunk_id"]: r for r in store.records.values()}
    results = [triples_from_answer(by_chunk[c.id], c.text) for c in cs]
    (t0, r0), (t1, r1), (t2, r2) = results
    assert t0 == [] and len(r0) == 1 and r0[0]["reason"].startswith("unparseable JSON")
    assert r0[0]["answer"].startswith("Sure! Here are")  # the raw answer is kept for reading
    assert by_chunk[cs[1].id]["finish_reason"] == "length"
    assert 1 <= len(t1) < 3 and r1[-1]["reason"].startswith("truncated")
    assert len(t2) == 3 and r2 == []


def test_gives_up_after_max_retries_and_the_next_run_asks_again(tmp_path):
    cs = chunks()[:2]
    store_path = tmp_path / "answers.jsonl"
    with FakeOpenAI(plan=["500", "500", "500"]) as fake:
        s = run_teacher(cs[:1], teacher(fake, max_retries=2), TeacherStore(store_path), verbose=False)
        assert s["answered"] == 0 and len(s["failed"]) == 1
        assert "gave up after 3 tries" in s["failed"][0]["error"] and "HTTP 500" in s["failed"][0]["error"]
        s2 = run_teacher(cs, teacher(fake), TeacherStore(store_path), verbose=False)
        assert s2["answered"] == 2 and s2["resumed"] == 0 and s2["failed"] == []
        s3 = run_teacher(cs, teacher(fake), TeacherStore(store_path), verbose=False)
        assert s3["answered"] == 0 and s3["resumed"] == 2
        assert fake.delivered[passage_id(TEXTS[0])] == 1 and fake.delivered[passage_id(TEXTS[1])] == 1


def test_wrong_key_stops_with_a_clear_message_that_does_not_show_the_key(tmp_path):
    with FakeOpenAI() as fake:
        t = teacher(fake, api_key="sk-wrong-secret-123")
        with pytest.raises(TeacherError, match="TEACHER_API_KEY") as err:
            run_teacher(chunks()[:1], t, TeacherStore(tmp_path / "a.jsonl"), verbose=False)
        assert "sk-wrong-secret-123" not in str(err.value) and "sk-wrong-secret-123" not in repr(t)
        assert fake.headers_seen[0]["Authorization"] == "Bearer sk-wrong-secret-123"


def test_key_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TEACHER_API_KEY", API_KEY)
    with FakeOpenAI() as fake:
        t = HttpTeacher(fake.base_url, "m", timeout_s=5)
        assert run_teacher(chunks()[:1], t, TeacherStore(tmp_path / "a.jsonl"), verbose=False)["answered"] == 1


def test_requests_run_concurrently(tmp_path):
    with FakeOpenAI(delay=0.5) as fake:
        t0 = time.time()
        s = run_teacher(chunks(), teacher(fake, concurrency=4, timeout_s=5), TeacherStore(tmp_path / "a.jsonl"),
                        price_input_per_m=0.59, price_output_per_m=0.79, verbose=False)
        assert time.time() - t0 < 1.5  # four 0.5 s answers at once, not one after another (2 s)
        assert s["answered"] == 4 and set(fake.requests.values()) == {1}
        assert s["cost_usd"] == pytest.approx(s["prompt_tokens"] * 0.59e-6 + s["completion_tokens"] * 0.79e-6)


def test_settings_errors():
    with pytest.raises(TeacherError, match="TEACHER_BASE_URL"):
        HttpTeacher("", "m")
    with pytest.raises(TeacherError, match="TEACHER_MODEL"):
        HttpTeacher("http://127.0.0.1:1/v1", "")
    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 1  # a date in the past: now


# --- refusals: a chunk alone, or the build (with what is in flight stored) -------------------------
@functools.lru_cache(maxsize=1)
def paper_chunks():
    from helpers.common.models import load_tokenizer
    from helpers.dataset.chunking import chunk_text
    from helpers.dataset.pdf import read_pdf
    return chunk_text(read_pdf(PAPER).text, load_tokenizer("embedded/smollm2-135m-instruct"), 200, 0, PAPER.name)[:10]


def middle(text: str) -> str:
    """A piece of a text that no other chunk or part holds (not the overlap at its edges)."""
    return text[len(text) // 2 - 30:len(text) // 2 + 30]


def test_one_refused_chunk_in_ten_fails_alone_and_a_rerun_asks_only_for_it(tmp_path):
    cs = paper_chunks()
    bad = cs[3]
    store_path = tmp_path / "answers.jsonl"
    with FakeOpenAI(refuse={middle(bad.text): "400"}, delay=0.1) as fake:
        s = run_teacher(cs, teacher(fake, concurrency=4), TeacherStore(store_path), n=2, verbose=False)
        assert s["answered"] == 9 and len(TeacherStore(store_path)) == 9 and sum(fake.delivered.values()) == 9
        assert s["failed"] == [{"chunk_id": bad.id, "source": PAPER.name, "chunk_index": 3, "part": "",
                                "error": "refused by the teacher (HTTP 400: Your request was flagged by our content "
                                         "filter.)"}]
        assert fake.requests[passage_id(bad.text)] == 1  # a refusal is not retried
        fake.refuse.clear()
        s2 = run_teacher(cs, teacher(fake, concurrency=4), TeacherStore(store_path), n=2, verbose=False)
        assert s2["answered"] == 1 and s2["resumed"] == 9 and s2["failed"] == []
        assert fake.requests[passage_id(bad.text)] == 2 and sum(fake.requests.values()) == 11


def test_a_chunk_too_long_for_the_teacher_is_split_and_a_rerun_asks_only_the_missing_part(tmp_path):
    cs = paper_chunks()[:4]
    users = [len(render_messages(c.text, c.source, 2)[1]["content"]) for c in cs]
    long = cs[users.index(max(users))]
    halves = split_text(long.text)
    assert all(h and h in long.text for h in halves) and sum(map(len, halves)) >= len(long.text) - 2
    assert halves[0].rstrip()[-1:] in ".!?:)" or "\n\n" in long.text  # cut at a sentence end or paragraph
    store_path = tmp_path / "answers.jsonl"
    with FakeOpenAI(context_chars=max(users) - 1, refuse={middle(halves[1]): "400"}) as fake:
        s = run_teacher(cs, teacher(fake), TeacherStore(store_path), n=2, verbose=False)
        assert s["split"] == sum(u > max(users) - 1 for u in users) == 1
        assert [(f["chunk_id"], f["part"]) for f in s["failed"]] == [(long.id, "2")]
        store = TeacherStore(store_path)
        key = request_key("llama-3.3-70b-versatile", render_messages(long.text, long.source, 2))
        assert "context_length" not in store.records[key]["answer"] and store.records[key]["split"][1]["part"] == "2"
        assert "maximum context length" in store.records[key]["error"]
        leaves = chunk_answers(store, key, long.text)
        assert [(rec is not None, text, part) for rec, text, part in leaves] == [(True, halves[0], "1"),
                                                                                  (False, halves[1], "2")]
        triples, rejects = triples_from_answer(leaves[0][0], halves[0])
        assert len(triples) == 2 and rejects == [] and {t["part"] for t in triples} == {"1"}
        assert triples[0]["chunk_id"] == long.id  # the part's rows belong to their chunk
        fake.refuse.clear()
        s2 = run_teacher(cs, teacher(fake), TeacherStore(store_path), n=2, verbose=False)
        assert s2["answered"] == 1 and s2["failed"] == [] and s2["split"] == 1 and s2["resumed"] == 3
        # the whole chunk was asked once (refused), each half once, the refused half once more
        assert fake.requests[passage_id(long.text)] == 1 and fake.requests[passage_id(halves[0])] == 1
        assert fake.requests[passage_id(halves[1])] == 2
    leaves = chunk_answers(TeacherStore(store_path), key, long.text)
    assert all(len(triples_from_answer(rec, text)[0]) == 2 for rec, text, _ in leaves)


def test_a_refused_key_stops_the_build_and_answers_in_flight_are_stored(tmp_path):
    store_path = tmp_path / "answers.jsonl"
    with FakeOpenAI(plan=["ok", "ok", "ok", "401"], delay=0.6) as fake:
        t0 = time.time()
        with pytest.raises(TeacherStop, match="refused the API key") as err:
            run_teacher(paper_chunks(), teacher(fake, concurrency=4, timeout_s=5), TeacherStore(store_path),
                        verbose=False)
        stored = len(TeacherStore(store_path))
        # the three answers in flight when the 401 came were paid for: every one delivered is stored
        assert stored == sum(fake.delivered.values()) == 3 and sum(fake.requests.values()) == 4
        assert time.time() - t0 < 3  # the six not yet asked never were
    msg = str(err.value)
    assert f"{stored} answer(s) of this run are stored in {store_path}" in msg
    assert f"answering {PAPER.name} chunk" in msg


def test_a_retry_after_of_an_hour_stops_the_build_with_its_answers_saved(tmp_path):
    cs, store_path = chunks()[:3], tmp_path / "answers.jsonl"
    with FakeOpenAI(plan=["ok", "429"], retry_after="3600") as fake:
        with pytest.raises(TeacherStop, match=r"asked to wait 3600 s \(60 min.*rerun after") as err:
            run_teacher(cs, teacher(fake), TeacherStore(store_path), verbose=False)
        assert "1 answer(s) of this run are stored" in str(err.value) and len(TeacherStore(store_path)) == 1
        s = run_teacher(cs, teacher(fake), TeacherStore(store_path), verbose=False)  # later: only the rest
        assert s["resumed"] == 1 and s["answered"] == 2 and set(fake.delivered.values()) == {1}


def test_an_html_page_for_every_request_stops_the_build_naming_it(tmp_path):
    with FakeOpenAI(default="html") as fake:
        with pytest.raises(TeacherStop, match=r"no reply so far was a chat completion \(3 of them\).*"
                                              r"'Sign in - Corporate Proxy'.*not the OpenAI protocol"):
            run_teacher(chunks(), teacher(fake), TeacherStore(tmp_path / "a.jsonl"), verbose=False)
        # three chunks asked three times each; the fourth (started as the third failed) at most once
        assert sorted(fake.requests.values())[-3:] == [3, 3, 3] and sum(fake.requests.values()) <= 10


# --- the resume store under SIGKILL --------------------------------------------------------------
KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from helpers.dataset.chunking import chunk_text
    from helpers.common.models import load_tokenizer
    from helpers.dataset.pdf import read_pdf
    from helpers.dataset.teacher import HttpTeacher, TeacherStore, run_teacher
    doc = read_pdf({pdf!r})
    chunks = chunk_text(doc.text, load_tokenizer("embedded/smollm2-135m-instruct"), 300, 32, doc.source)[:{n}]
    t = HttpTeacher({url!r}, "llama-3.3-70b-versatile", api_key={key!r}, concurrency=1, timeout_s=10)
    s = run_teacher(chunks, t, TeacherStore({store!r}), n=2)
    print("CHUNKS", len(chunks), "ANSWERED", s["answered"], "RESUMED", s["resumed"])
""")


def test_killed_build_resumes_without_losing_or_repeating_a_chunk(tmp_path):
    store = tmp_path / "answers.jsonl"
    n = 8
    with FakeOpenAI(delay=0.4) as fake:
        script = tmp_path / "build.py"
        script.write_text(KILL_SCRIPT.format(root=str(ROOT), pdf=str(PAPER), n=n, url=fake.base_url, key=API_KEY,
                                             store=str(store)))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if store.exists() and store.read_text().count("\n") >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the build ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        first = [json.loads(line) for line in store.read_text().splitlines()]
        assert 3 <= len(first) < n
        requests_first = sum(fake.requests.values())
        in_flight = requests_first - len(first)  # asked when it was killed, never answered (0 or 1)
        assert in_flight in (0, 1)

        out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert f"CHUNKS {n} ANSWERED {n - len(first)} RESUMED {len(first)}" in out.stdout
        final = [json.loads(line) for line in store.read_text().splitlines()]
    ids = [r["chunk_id"] for r in final]
    assert len(ids) == n and len(set(ids)) == n  # every chunk present exactly once
    assert [r["chunk_id"] for r in final[:len(first)]] == [r["chunk_id"] for r in first]  # nothing rewritten
    # the server delivered (and would have billed) each chunk's answer exactly once
    assert sum(fake.delivered.values()) == n and set(fake.delivered.values()) == {1}
    # chunks answered before the kill were never asked again; only one in flight at the kill is asked twice
    assert sum(fake.requests.values()) == n + in_flight
    assert sorted(fake.requests.values()) == [1] * (n - in_flight) + [2] * in_flight


INTERRUPT_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from helpers.dataset.chunking import Chunk, chunk_id
    from helpers.dataset.teacher import HttpTeacher, TeacherStore, run_teacher
    texts = [f"Passage {{i}} explains how the Bethe lattice behaves, case {{i}}." for i in range(8)]
    chunks = [Chunk(chunk_id("doc.pdf", t), "doc.pdf", i, t, 20) for i, t in enumerate(texts)]
    t = HttpTeacher({url!r}, "llama-3.3-70b-versatile", api_key={key!r}, concurrency=4, timeout_s=10)
    run_teacher(chunks, t, TeacherStore({store!r}), n=2)
""")


def test_an_interrupted_build_stores_the_answers_in_flight(tmp_path):
    """Ctrl-C (SIGINT) while four requests are in flight: the four answers, paid for, are stored."""
    store = tmp_path / "answers.jsonl"
    with FakeOpenAI(delay=1.5) as fake:
        script = tmp_path / "ask.py"
        script.write_text(INTERRUPT_SCRIPT.format(root=str(ROOT), url=fake.base_url, key=API_KEY, store=str(store)))
        # Ctrl-C's default, even where the tests run as a background job (which ignores SIGINT, and so would
        # the child: Python then never raises KeyboardInterrupt)
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 60
        while time.time() < deadline and sum(fake.requests.values()) < 4:
            time.sleep(0.02)
        assert sum(fake.requests.values()) == 4, proc.stdout.read().decode()[-2000:] if proc.poll() is not None else ""
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0].decode()
        assert proc.returncode != 0 and "KeyboardInterrupt" in out
        assert sum(fake.requests.values()) == 4  # nothing asked after the interrupt
    answers = [json.loads(line) for line in store.read_text().splitlines()]
    assert len(answers) == 4 == sum(fake.delivered.values())


def test_store_cuts_a_half_written_line_and_ignores_duplicates(tmp_path):
    p = tmp_path / "answers.jsonl"
    rec = {"key": "k1", "chunk_id": "c1", "source": "s", "chunk_index": 0, "teacher": "t", "answer": "{}",
           "finish_reason": "stop", "prompt_tokens": 1, "completion_tokens": 1}
    p.write_text(json.dumps(rec) + "\n" + '{"key": "k2", "chunk_id": "c2", "ans')
    st = TeacherStore(p)
    assert len(st) == 1 and st.repaired_bytes > 0 and p.read_text().endswith("\n")
    st.add({**rec, "key": "k2"})
    st.add({**rec, "key": "k2"})
    assert st.duplicates == 1
    assert [json.loads(x)["key"] for x in p.read_text().splitlines()] == ["k1", "k2"]


# --- prompt, parsing and validation --------------------------------------------------------------
def test_prompt_is_ours_editable_and_keys_change_with_it(tmp_path):
    assert "JSON" in DEFAULT_PROMPT and "{text}" in DEFAULT_PROMPT and "{n}" in DEFAULT_PROMPT
    msgs = render_messages("PASSAGE", "paper.pdf", 3)
    assert "PASSAGE" in msgs[1]["content"] and "paper.pdf" in msgs[1]["content"] and "Write 3 " in msgs[1]["content"]
    f = tmp_path / "prompt.txt"
    f.write_text('Make {n} JSON items like {"instruction": ..} from:\n{text}')
    custom = load_prompt(f)
    m2 = render_messages("PASSAGE", "paper.pdf", 2, custom)
    assert m2[1]["content"] == 'Make 2 JSON items like {"instruction": ..} from:\nPASSAGE'
    assert request_key("m", msgs) != request_key("m", m2) != request_key("other", m2)
    (tmp_path / "bad.txt").write_text("no placeholder")
    with pytest.raises(TeacherError, match=r"bad.txt.*\{text\}"):
        load_prompt(tmp_path / "bad.txt")


# --- the embedded model as the local teacher ----------------------------------------------------
def test_local_teacher_answers_are_stored_and_every_one_accounted_for(tmp_path):
    from helpers.dataset.chunking import chunk_text
    from helpers.common.models import load_tokenizer
    from helpers.dataset.pdf import read_pdf
    from helpers.dataset.teacher import LocalTeacher
    doc = read_pdf(PAPER)
    cs = chunk_text(doc.text, load_tokenizer("embedded/smollm2-135m-instruct"), 200, 0, doc.source)[:2]
    t = LocalTeacher("embedded/smollm2-135m-instruct", quantization="none", max_new_tokens=96, batch_size=2)
    store = TeacherStore(tmp_path / "answers.jsonl")
    s = run_teacher(cs, t, store, n=2, verbose=False)
    assert s["answered"] == 2 and s["backend"] == "local" and s["total_cost_usd"] == 0
    for c in cs:
        rec = next(r for r in store.records.values() if r["chunk_id"] == c.id)
        assert rec["answer"].startswith('{"examples": [{"instruction": "What')
        assert rec["completion_tokens"] > 0 and rec["prompt_tokens"] > 100
        triples, rejects = triples_from_answer(rec, c.text)
        assert triples or rejects  # an answer is used or rejected with a reason, never lost
        assert all(r["reason"] for r in rejects)
        for tr in triples:
            assert tr["instruction"] and tr["output"] and tr["source"] == doc.source
    # a second run with the same teacher and prompt asks nothing
    assert run_teacher(cs, t, store, n=2, verbose=False)["resumed"] == 2


def test_rejected_answers_can_be_asked_again_on_a_rerun(tmp_path):
    cs = chunks()[:3]
    store_path = tmp_path / "answers.jsonl"
    with FakeOpenAI(plan=["invalid_json", "empty", "ok"]) as fake:
        s1 = run_teacher(cs, teacher(fake), TeacherStore(store_path), n=2, verbose=False)
        assert s1["answered"] == 3
        store = TeacherStore(store_path)
        by_chunk = {r["chunk_id"]: r for r in store.records.values()}
        useless = [c for c in cs if not triples_from_answer(by_chunk[c.id], c.text)[0]]
        assert len(useless) == 2  # the unparseable and the empty answer
        s2 = run_teacher(cs, teacher(fake), TeacherStore(store_path), n=2, verbose=False)  # a plain rerun asks nothing
        assert s2["answered"] == 0 and s2["resumed"] == 3 and sum(fake.requests.values()) == 3
        s3 = run_teacher(cs, teacher(fake), TeacherStore(store_path), n=2, verbose=False, reask_rejected=True)
        assert s3["reasked"] == 2 and s3["answered"] == 2 and s3["resumed"] == 1
        assert {fake.requests[passage_id(c.text)] for c in useless} == {2}  # each garbage chunk asked once more
        s4 = run_teacher(cs, teacher(fake), TeacherStore(store_path), n=2, verbose=False, reask_rejected=True)
        assert s4["reasked"] == 0 and s4["answered"] == 0  # now every answer is usable: nothing more to ask
    store = TeacherStore(store_path)
    assert len(store) == 3 and len(store.superseded) == 2 and store.duplicates == 0
    for c in cs:
        key = {r["chunk_id"]: k for k, r in store.records.items()}[c.id]
        triples, rejects = triples_from_answer(store.records[key], c.text)
        assert len(triples) == 2 and rejects == []
    lines = store_path.read_text().splitlines()
    assert len(lines) == 5  # the two rejected answers are still in the file, never lost
    assert sorted(json.loads(x).get("reasked", 0) for x in lines) == [0, 0, 0, 1, 1]
