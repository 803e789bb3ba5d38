"""helpers.dataset.teacher_http: what each bad reply of an OpenAI-compatible endpoint gets, against a real HTTP
server on 127.0.0.1 (tests/fake_openai.py): a trickled answer cut at the deadline, a Retry-After of an hour,
an HTML page or an empty choices list with status 200, and the refusals that stop a build or one chunk."""
import time

import pytest

from fake_openai import API_KEY, FakeOpenAI
from helpers.dataset.teacher import render_messages
from helpers.dataset.teacher_http import ChunkRefused, HttpTeacher, TeacherError, TeacherStop

PASSAGE = ("The Bethe lattice is a tree in which every node has the same number of neighbours. Because it has no "
           "loops, mean field theory becomes exact on it in the limit of large connectivity.")
MESSAGES = render_messages(PASSAGE, "doc.pdf", 2)


def teacher(fake, **kw):
    kw = {"api_key": API_KEY, "timeout_s": 5.0, "backoff_s": 0.05, "max_retries": 4, **kw}
    return HttpTeacher(fake.base_url, "llama-3.3-70b-versatile", **kw)


def test_a_trickled_answer_is_cut_at_the_request_deadline():
    """One byte every 0.3 s never trips httpx's per-read timeout; the 2 s deadline cuts each try."""
    with FakeOpenAI(default="trickle", trickle_s=0.3) as fake:
        t0 = time.monotonic()
        with pytest.raises(TeacherError, match=r"gave up after 2 tries: no complete answer within 2s") as err:
            teacher(fake, timeout_s=2.0, max_retries=1).complete(MESSAGES)
        took = time.monotonic() - t0
    assert not isinstance(err.value, (TeacherStop, ChunkRefused))  # asked again on the next run
    assert 4.0 <= took < 6.0  # two tries of 2 s (the answer would have taken ~100 s)


def test_retry_after_longer_than_the_wait_stops_and_says_when_to_rerun():
    with FakeOpenAI(plan=["429"], retry_after="3600") as fake:
        t0 = time.monotonic()
        with pytest.raises(TeacherStop) as err:
            teacher(fake, max_wait_s=120).complete(MESSAGES)
        assert time.monotonic() - t0 < 2 and sum(fake.requests.values()) == 1  # no hammering, no 120 s wait
    msg = str(err.value)
    assert "asked to wait 3600 s (60 min" in msg and "longer than the 120 s" in msg and "rerun after 20" in msg


@pytest.mark.parametrize("what, named", [
    ("html", "HTML page titled 'Sign in - Corporate Proxy' instead of a chat completion: a proxy's"),
    ("empty_choices", "empty choices list"),
])
def test_a_200_that_is_not_a_chat_completion_is_named_after_two_retries(what, named):
    with FakeOpenAI(default=what) as fake:
        with pytest.raises(ChunkRefused, match="not the OpenAI protocol" if what == "html" else named) as err:
            teacher(fake, max_retries=5).complete(MESSAGES)
        assert sum(fake.requests.values()) == 3  # asked twice more, not the 6 tries of max_retries
    assert err.value.kind == "protocol" and named in str(err.value) and "(3 times)" in str(err.value)


@pytest.mark.parametrize("what, stops, said", [
    ("401", True, "refused the API key (HTTP 401: Invalid API Key). Set TEACHER_API_KEY"),
    ("402", True, "no credit left (HTTP 402: Payment required"),
    ("insufficient_quota", True, "no credit left (HTTP 429: You exceeded your current quota"),
    ("404", True, "does not know model 'llama-3.3-70b-versatile' or the address is wrong (HTTP 404"),
    ("400", False, "refused by the teacher (HTTP 400: Your request was flagged by our content filter.)"),
    ("context", False, "too long for the teacher's context (HTTP 400: This model's maximum context length"),
])
def test_refusals_stop_the_build_only_when_they_doom_every_request(what, stops, said):
    with FakeOpenAI(default=what, context_chars=100 if what == "context" else 0) as fake:
        with pytest.raises(TeacherStop if stops else ChunkRefused) as err:
            teacher(fake).complete(MESSAGES)
        assert sum(fake.requests.values()) == 1  # a refusal is never retried
    assert said in str(err.value) and isinstance(err.value, TeacherStop) == stops
    if not stops:
        assert err.value.kind == ("too_long" if what == "context" else "refused")
