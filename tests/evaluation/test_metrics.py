"""Metrics on real text: ROUGE, the copy check, and the degeneration figures on the bundled conversations."""
import json

import pytest

from helpers.common.resources import chitchat
from helpers.evaluation.metrics import (EvalError, copy_score, degeneration, glued_word_share, implausible_word,
                                        is_copy, longest_common_run, repeated_ngram_share, repeated_word_share,
                                        rouge_scores, words)


def test_rouge_identical_and_disjoint():
    scores, backend = rouge_scores(["The cat sat on the mat.", "hello"], ["the cat sat on the mat", "goodbye"])
    assert backend.startswith("rouge-score")
    for k in ("rouge1", "rouge2", "rougeL"):
        assert scores[k][0] == pytest.approx(1.0)  # lower-cased, punctuation ignored
        assert scores[k][1] == 0.0


def test_rouge_offline_auto_falls_back(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, backend = rouge_scores(["a b"], ["a b"], "auto")
    assert backend.startswith("rouge-score")


def test_rouge_refuses_mismatched_lists_and_unknown_backends():
    with pytest.raises(EvalError, match="2 predictions for 1 references"):
        rouge_scores(["a", "b"], ["a"])
    with pytest.raises(EvalError, match="rouge backend 'bleu'"):
        rouge_scores(["a"], ["a"], "bleu")


def test_copy_check():
    prompt = "I went to the market yesterday and bought some apples and pears"
    assert copy_score("went to the market yesterday", prompt) == pytest.approx(1.0)
    assert is_copy("I went to the market yesterday and bought", prompt)
    assert not is_copy("Apples are great, I love pears too!", prompt)
    assert not is_copy("the market", prompt)  # too short to count


def test_words_and_longest_common_run_on_a_real_conversation():
    """A real reply against the user turn it answers: the words ROUGE sees, and the longest shared run."""
    row = json.loads(open(chitchat("test"), encoding="utf-8").readline())
    user, reply = row["messages"][0]["content"], row["messages"][1]["content"]
    w = words(reply)
    assert w and all(x == x.lower() and x.isalnum() for x in w)
    assert longest_common_run(w, w) == len(w)
    assert longest_common_run(w, words(user)) <= min(len(w), len(words(user)))
    assert copy_score(reply, reply) == pytest.approx(1.0) and copy_score(reply, "") == 0.0


def test_the_degeneration_shares_on_small_cases():
    assert repeated_ngram_share("I like the cat I like the cat") == pytest.approx(2 / 6)
    assert repeated_word_share("the the cat") == pytest.approx(1 / 3)
    assert glued_word_share("I went to the storeYesterday") == pytest.approx(1 / 5)
    assert degeneration("") == {"repeated_3grams": 0.0, "repeated_words": 0.0, "glued_words": 0.0}


def _conversation_messages(split="test"):
    return [m["content"] for line in open(chitchat(split), encoding="utf-8") for m in json.loads(line)["messages"]]


def test_degeneration_figures_stay_quiet_on_real_conversations():
    msgs = _conversation_messages("test") + _conversation_messages("train")
    figs = [degeneration(m) for m in msgs]
    for k in ("repeated_3grams", "repeated_words", "glued_words"):
        vals = [f[k] for f in figs]
        assert sum(vals) / len(vals) < 0.003, k  # real text: almost never
        assert sum(v > 0 for v in vals) / len(vals) < 0.04, k
    tokens = [t for m in msgs for t in m.split()]
    flagged = [t for t in tokens if implausible_word(t)]
    assert len(flagged) / len(tokens) < 0.0005
    for ok in ("iPhone", "MacBook", "google.com", "https://x.org/a,b", "#tidepodchallenge", "e.g.",
               "YESSSSSSSSSSSSSSSSSS", "procrastinating", "3.14", "don't", "(really?)", "Hello!"):
        assert implausible_word(ok) is None, ok


def test_degeneration_figures_fire_on_constructed_degenerate_text():
    """Seed 004's symptoms built from real messages: words glued / spaces lost, repeated phrases and words."""
    import random
    rnd = random.Random(0)
    msgs = [m for m in _conversation_messages("test") if len(m.split()) >= 12][:60]
    assert len(msgs) >= 40

    def glue(text):  # lose the spaces inside runs of 3-5 words, and after sentence marks
        w, out = text.split(), []
        while w:
            k = rnd.randint(3, 5)
            out.append("".join(w[:k]))
            w = w[k:]
        return " ".join(out).replace(". ", ".").replace("? ", "?")

    def repeat(text):  # a phrase said again and again
        w = text.split()
        return " ".join(w[:6] + w[2:6] * 4)

    def stutter(text):
        return " ".join(x for t in text.split() for x in (t, t))

    real = [degeneration(m) for m in msgs]
    glued = [degeneration(glue(m))["glued_words"] for m in msgs]
    assert sum(glued) / len(glued) > 0.3 and sum(g > 0 for g in glued) / len(glued) > 0.9
    assert sum(degeneration(repeat(m))["repeated_3grams"] for m in msgs) / len(msgs) > 0.4
    assert min(degeneration(stutter(m))["repeated_words"] for m in msgs) >= 0.3
    assert max(r["glued_words"] for r in real) < 0.1 and max(r["repeated_words"] for r in real) < 0.1
    assert implausible_word("storeYesterday") == "case join" and implausible_word("thatI") == "case join"
    assert implausible_word("cool.What") == "punctuation join" and implausible_word("yes,I") == "punctuation join"
    assert implausible_word("Iwenttothestoreyesterday") == "long"
