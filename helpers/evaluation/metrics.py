"""Metrics on text: words, ROUGE, copying of the prompt, and the degeneration checks of the general
section (repetition, glued words)."""
from __future__ import annotations

import os
import re

ROUGE_BACKENDS = ("auto", "rouge-score", "evaluate")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


class EvalError(ValueError):
    """Evaluation input that cannot be used; the message says what is wrong and what to do."""


# ----------------------------------------------------------------------------------------------
# Metrics on text
# ----------------------------------------------------------------------------------------------
def words(text: str) -> list[str]:
    """Lower-cased words as ROUGE sees them (rouge-score's tokenizer: letters and digits)."""
    from rouge_score import tokenize
    return tokenize.tokenize(text or "", None)


def rouge_scores(predictions: list[str], references: list[str],
                 backend: str = "auto") -> tuple[dict[str, list[float]], str]:
    """Per-example ROUGE-1/2/L F1 and which library computed them.

    "auto" uses Hugging Face ``evaluate`` when its "rouge" metric loads (it is fetched from the
    Hub, so never offline) and ``rouge-score`` otherwise; both lower-case, keep letters and
    digits, and do not stem, so the numbers are the same."""
    if len(predictions) != len(references):
        raise EvalError(f"{len(predictions)} predictions for {len(references)} references")
    if backend not in ROUGE_BACKENDS:
        raise EvalError(f"rouge backend {backend!r} is not one of {', '.join(ROUGE_BACKENDS)}")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_EVALUATE_OFFLINE") == "1"
    if backend == "evaluate" or (backend == "auto" and not offline):
        try:
            import evaluate
            metric = evaluate.load("rouge")
            res = metric.compute(predictions=predictions, references=references, use_aggregator=False,
                                 use_stemmer=False, rouge_types=list(ROUGE_KEYS))
            from importlib.metadata import version
            return {k: [float(x) for x in res[k]] for k in ROUGE_KEYS}, f"evaluate {version('evaluate')} (rouge)"
        except Exception as exc:  # the Hub is unreachable, or evaluate is not installed
            if backend == "evaluate":
                raise EvalError(f"evaluate's rouge metric did not load ({type(exc).__name__}: {str(exc)[:200]}); "
                                "use rouge_backend='rouge-score', which works offline.") from None
    from importlib.metadata import version

    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=False)
    out: dict[str, list[float]] = {k: [] for k in ROUGE_KEYS}
    for p, r in zip(predictions, references):
        s = scorer.score(r, p)
        for k in ROUGE_KEYS:
            out[k].append(float(s[k].fmeasure))
    return out, f"rouge-score {version('rouge-score')}"


def longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest contiguous run of words shared by ``a`` and ``b``."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                if cur[j + 1] > best:
                    best = cur[j + 1]
        prev = cur
    return best


def copy_score(answer: str, source: str) -> float:
    """Share of the answer's words that form one run copied verbatim from ``source`` (0..1)."""
    a, s = words(answer), words(source)
    if not a or not s:
        return 0.0
    return longest_common_run(a, s) / len(a)


def is_copy(answer: str, source: str, threshold: float = 0.6, min_words: int = 4) -> bool:
    return len(words(answer)) >= min_words and copy_score(answer, source) >= threshold


# ----------------------------------------------------------------------------------------------
# Degeneration (the general section): repetition and glued words, the symptoms of over-tuning
# ----------------------------------------------------------------------------------------------
_EDGE = "\"'()[]{}<>*_`.,!?;:\u2026-\u201c\u201d\u2018\u2019"
_LONG_LETTERS = 18
_CASE_JOIN = re.compile(r"[a-z]{2}[A-Z](?=[a-z]|$)")
_PUNCT_JOIN = re.compile(r"[A-Za-z]{2}[.,!?;:](?:[A-Za-z]{2}|I(?![A-Za-z]))")
_NOT_A_JOIN = re.compile(r"://|^www\.|@|\.(?:com|org|net|edu|gov|io|co|uk|de|fr|ai|me|tv|ly|pdf|py|txt|jpg|png|"
                         r"html|js|md|csv|json|ipynb|exe|zip)\b", re.IGNORECASE)


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """Share of the word n-grams of ``text`` that repeat an earlier n-gram of it (0 without any)."""
    w = words(text)
    grams = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def repeated_word_share(text: str) -> float:
    """Share of words that equal the word right before them ("the the")."""
    w = words(text)
    return sum(a == b for a, b in zip(w, w[1:])) / len(w) if len(w) > 1 else 0.0


def implausible_word(token: str) -> str | None:
    """Why a whitespace-separated token looks like words glued together, or None for a plausible word.

    Three rules that need no dictionary: "long", 18 or more letters once letters repeated three times
    or more are squeezed ("YESSSS" is an elongation); "case join", a lower-case run followed by a
    capital in a token that starts lower-case ("storeYesterday", "thatI"; "iPhone" passes);
    "punctuation join", two letters, a sentence mark, two letters ("cool.What"). Tokens with digits,
    hashtags, mentions, web and e-mail addresses and file names are never flagged."""
    core = token.strip(_EDGE)
    if not core or core[0] in "#@" or any(c.isdigit() for c in core) or _NOT_A_JOIN.search(core):
        return None
    squeezed = re.sub(r"(.)\1{2,}", r"\1", core)
    if squeezed.isalpha() and len(squeezed) >= _LONG_LETTERS:
        return "long"
    if core[0].islower() and _CASE_JOIN.search(core):
        return "case join"
    if _PUNCT_JOIN.search(core):
        return "punctuation join"
    return None


def glued_word_share(text: str) -> float:
    """Share of the whitespace-separated tokens of ``text`` that ``implausible_word`` flags."""
    toks = (text or "").split()
    return sum(implausible_word(t) is not None for t in toks) / len(toks) if toks else 0.0


def degeneration(answer: str) -> dict[str, float]:
    """The per-answer degeneration figures of the general section."""
    return {"repeated_3grams": repeated_ngram_share(answer, 3), "repeated_words": repeated_word_share(answer),
            "glued_words": glued_word_share(answer)}
