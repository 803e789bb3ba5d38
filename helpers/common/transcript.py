"""A conversation shown as a conversation: the system and user turns, the reference, then each
model's answer, each cut at a word with a visible "…" (and a note when the model itself was cut
at its token limit), under a heading made of the question's first words.

The prompt a model continues is template text (``<|im_start|>system ...``); a person reads the
turns it was made from. ``conversation_markdown`` renders them for a notebook (Markdown, with
anything that looks like a tag escaped so that it shows), ``conversation_text`` the same as plain
lines for a console. Notebook 04's first look and notebook 05's answers side by side use them.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

CUT = "…"
LIMIT_NOTE = "cut at the token limit"


@dataclass
class Answer:
    """One model's answer: its label ("base", "tuned"), the text, whether the model stopped by itself
    (False: it was cut at its token limit), and an optional note beside the label ("ROUGE-L 0.31")."""
    label: str
    text: str
    stopped: bool = True
    note: str = ""


def clip(text: str, width: int) -> str:
    """``text`` (whitespace runs within a line made single) whole when it fits in ``width`` characters,
    else cut at the last word boundary before it, with "…"."""
    text = "\n".join(" ".join(line.split()) for line in str(text).strip().splitlines()).strip()
    text = re.sub(r"\n{3,}", "\n\n", text)
    if len(text) <= width:
        return text
    cut = text[:width]
    if not text[width].isspace() and " " in cut[width // 2:]:  # inside a word: back to its start
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + CUT


def first_words(text: str, n: int = 8) -> str:
    """The first ``n`` words of ``text`` on one line, with "…" when there are more."""
    words = str(text).split()
    return " ".join(words[:n]) + (CUT if len(words) > n else "")


def heading(number: int, question: str) -> str:
    """An example's heading: its number and the question's first words ("Example 2: What is the…")."""
    return f"Example {number}: {first_words(question)}" if question.strip() else f"Example {number}"


def _answer_body(a: Answer, width: int) -> str:
    """An answer's text cut at ``width``, with "…" also when the model was cut at its token limit."""
    body = clip(a.text, width)
    if not body:
        return "(empty)"
    if not a.stopped and not body.endswith(CUT):
        body = body.rstrip(" ,;:") + CUT
    return body


def _md(text: str) -> str:
    """Text safe in Markdown: tags escaped (so ``<think>`` shows), line breaks kept."""
    return html.escape(text, quote=False).replace("\n", "  \n")


def conversation_markdown(turns: list[dict], answers: list[Answer], reference: str | None = None,
                          title: str = "", width: int = 600) -> str:
    """The conversation in Markdown: ``title`` as a heading, each turn (role in bold, quoted), the
    reference, then each answer with its label; every text cut at ``width`` characters with "…"."""
    out = [f"#### {_md(title)}", ""] if title else []
    for t in turns:
        role = str(t.get("role", "user"))
        out += [f"> **{role}:** " + _md(clip(t.get("content", ""), width)).replace("  \n", "  \n> "), ">"]
    if out and out[-1] == ">":
        out[-1] = ""
    if reference is not None:
        out += [f"**reference:** {_md(clip(reference, width)) or '(empty)'}", ""]
    for a in answers:
        extra = ", ".join(x for x in (a.note, "" if a.stopped else LIMIT_NOTE) if x)
        out += [f"**{_md(a.label)}**" + (f" ({_md(extra)})" if extra else "") + f": {_md(_answer_body(a, width))}",
                ""]
    return "\n".join(out).rstrip() + "\n"


def conversation_text(turns: list[dict], answers: list[Answer], reference: str | None = None,
                      title: str = "", width: int = 600) -> str:
    """The same as :func:`conversation_markdown` in plain lines, for a console or a log."""
    out = [title, "-" * min(80, max(len(title), 20))] if title else []
    names = [str(t.get("role", "user")) for t in turns] + (["reference"] if reference is not None else [])
    names += [a.label for a in answers]
    w = max(len(n) for n in names) + 1 if names else 0

    def say(name: str, body: str) -> None:  # continuation lines indented under the first
        out.append(f"{name + ':':<{w}} " + body.replace("\n", "\n" + " " * (w + 1)))

    for t in turns:
        say(str(t.get("role", "user")), clip(t.get("content", ""), width))
    if reference is not None:
        say("reference", clip(reference, width) or "(empty)")
    for a in answers:
        extra = ", ".join(x for x in (a.note, "" if a.stopped else LIMIT_NOTE) if x)
        say(a.label, _answer_body(a, width) + (f"  ({extra})" if extra else ""))
    return "\n".join(out) + "\n"
