"""Notebook 06's scripted conversation under ``SMOKE=1`` (the headless check): code drives the chat
widget as a person would, in one call, and shows what the tuned model changed.

The same messages go to the tuned model and to its base with the same sampling seed, so where their
replies part is the adapter's doing; each reply is labelled with its model, and one line says from
which word the two first replies differ (or that they do not). Then a question about the user's
documents (the *documents* preset, its sources printed) and a Stop pressed mid-reply.
"""
import time

from helpers.chat.app import reply_mark

DEMO_TURNS = {"assistant": ["Hi! What do you like to do on weekends?", "Why that?"],
              "storymaker": ["Start an adventure on a foggy pirate island."]}


class DemoError(RuntimeError):
    """The scripted chat met an error a person would have seen in the widget."""


def first_difference(a: str, b: str) -> int | None:
    """The 1-based word at which two replies part, or None when they are the same words."""
    wa, wb = a.split(), b.split()
    for i, (x, y) in enumerate(zip(wa, wb)):
        if x != y:
            return i + 1
    return None if len(wa) == len(wb) else min(len(wa), len(wb)) + 1


def _conversation(ui, preset: str, which: str, turns: list[str]) -> str:
    """One conversation of ``turns`` with one model; returns its first reply."""
    ui.clear()
    ui.preset.value = preset
    ui.model_switch.value = which
    marks = []
    for text in turns:
        ui.send(text, wait=True)
        if ui.error:
            raise DemoError(f"{preset} / {which}: {ui.error}")
        marks.append(reply_mark(ui.session.last))
    print(_transcript(ui, marks))
    return ui.session.history[1]["content"]


def _transcript(ui, marks: list[str]) -> str:
    """The widget's transcript as text, each reply labelled and ending with its cut or stop mark."""
    lines, k = [ui.text().splitlines()[0]], 0
    for m in ui.session.history:
        if m["role"] == "user":
            lines.append(f"{'YOU':>11}: {m['content']}")
            continue
        lines.append(f"{ui.replies[k].upper() + ' MODEL':>11}: {m['content']}{marks[k]}")
        if ui.sources[k]:
            lines.append(f"{'':>11}  ({ui.sources[k]})")
        k += 1
    return "\n".join(lines)


def _stop_mid_reply(ui) -> str:
    """Press Stop once the reply has started; returns what the session says about it."""
    ui.clear()
    ui.preset.value = "assistant"
    ui.max_new_tokens.value = 512
    ui.send("Tell me a long story about a lighthouse keeper.")
    while ui.busy and "▌" not in ui.transcript.value:
        time.sleep(0.05)
    ui.stop()
    ui.wait()
    info = ui.session.last
    return f"Stop pressed mid-reply: {info.stop_reason} after {info.new_tokens} tokens."


def scripted_chat(ui, index=None, max_new_tokens: int = 48, temperature: float = 0.7, seed: int = 0) -> dict:
    """Drive ``ui`` (a :class:`ChatWidget`): each preset's messages to the tuned model and to its base,
    a documents question when ``index`` is given, and a Stop. Prints the labelled transcripts; returns
    {preset: the word where the first replies differ or None, "stop": the Stop line}."""
    s = ui.session
    saved = (ui.max_new_tokens.value, ui.temperature.value, s.seed)
    ui.max_new_tokens.value, ui.temperature.value = max_new_tokens, temperature
    out = {}
    try:
        for preset, turns in DEMO_TURNS.items():
            print(f"=== {preset}: the same messages to the tuned model and to its base (sampled at temperature "
                  f"{temperature}, the same seed, up to {max_new_tokens} tokens a reply)")
            replies = {}
            for which in ("tuned", "base") if s.has_adapter else ("base",):
                s.seed = seed
                replies[which] = _conversation(ui, preset, which, turns)
            if len(replies) == 2:
                out[preset] = first_difference(replies["tuned"], replies["base"])
                print(f"-> the first replies differ from word {out[preset]}" if out[preset] else
                      "-> the first replies are the same: this adapter barely moved the model", end="\n\n")
        if index is not None:
            words = index.chunks[len(index.chunks) // 2]["text"].split()
            print("=== documents: a question about your documents, with the passages found for it")
            _conversation(ui, "documents", "tuned" if s.has_adapter else "base",
                          ["What do the documents say about " + " ".join(words[10:20]) + "?"])
            print()
        out["stop"] = _stop_mid_reply(ui)
        print(out["stop"])
    finally:
        ui.max_new_tokens.value, ui.temperature.value, s.seed = saved
        ui.preset.value = "assistant"
        ui.clear()
    return out
