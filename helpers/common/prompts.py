"""Prompt formatting: the instruction template, the model's own chat template, and EOS.

Rows come in two shapes, and every helper takes both:

* instruction rows: ``{"instruction": ..., "input": ..., "output": ...}`` (``input`` may be empty)
* conversations: ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``

Two styles turn them into text:

* ``"chat"``: the tokenizer's chat template (ChatML for SmolLM2, ``<|start_header_id|>`` for
  Llama 3). The end-of-turn marker the template writes is what generation stops on.
* ``"alpaca"``: our instruction template with ``### Instruction`` / ``### Input`` /
  ``### Response`` headers; the tokenizer's EOS token is appended to every response, so a tuned
  model learns to stop.

``encode`` tokenizes a row for training and marks which tokens carry loss (the responses, with
their end marker); ``prompt_text`` gives the text a model continues at inference time.
"""
from __future__ import annotations

from typing import Any, Iterable

STYLES = ("auto", "chat", "alpaca")

# Our own instruction template (Alpaca layout: the format the seeds and most public sets use).
INSTRUCTION_HEADER = "Complete the task described below. Use the input when one is given.\n\n"
INSTRUCTION_WITH_INPUT = (
    INSTRUCTION_HEADER + "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
INSTRUCTION_NO_INPUT = INSTRUCTION_HEADER + "### Instruction:\n{instruction}\n\n### Response:\n"


class PromptError(ValueError):
    """A row or tokenizer that cannot be formatted; the message names the row and the problem."""


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_style(tokenizer, style: str = "auto") -> str:
    """"auto" means the model's chat template when it has one, else the instruction template."""
    if style not in STYLES:
        raise PromptError(f"template style {style!r} is not one of {', '.join(STYLES)}.")
    if style == "auto":
        return "chat" if has_chat_template(tokenizer) else "alpaca"
    if style == "chat" and not has_chat_template(tokenizer):
        raise PromptError(
            "This tokenizer has no chat template (a base model, not an -Instruct one). Use "
            "template='alpaca' (our instruction template with EOS appended), or load an -Instruct model.")
    return style


def row_kind(row: dict) -> str:
    if "messages" in row:
        return "messages"
    if "instruction" in row and "output" in row:
        return "instruction"
    if "text" in row:
        return "text"
    raise PromptError(f"row has neither 'messages' nor 'instruction'/'output' nor 'text' fields: keys {sorted(row)}")


def to_messages(row: dict, system: str | None = None) -> list[dict[str, str]]:
    """A conversation (list of role/content dicts) from either row shape."""
    kind = row_kind(row)
    if kind == "messages":
        msgs = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    elif kind == "instruction":
        user = str(row["instruction"]).strip()
        if str(row.get("input") or "").strip():
            user += "\n\n" + str(row["input"]).strip()
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": str(row["output"]).strip()}]
    else:
        raise PromptError("a raw 'text' row is pretraining data, not a conversation")
    if system and (not msgs or msgs[0]["role"] != "system"):
        msgs = [{"role": "system", "content": system}] + msgs
    return msgs


def alpaca_prompt(instruction: str, input: str = "") -> str:
    if input and input.strip():
        return INSTRUCTION_WITH_INPUT.format(instruction=instruction.strip(), input=input.strip())
    return INSTRUCTION_NO_INPUT.format(instruction=instruction.strip())


def _alpaca_from_messages(msgs: list[dict]) -> tuple[str, str]:
    """Flatten a conversation into (prompt text so far, last reply) for the instruction template."""
    system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
    turns = [m for m in msgs if m["role"] != "system"]
    if not turns:
        raise PromptError("conversation has no user or assistant turn")
    *history, last = turns
    if last["role"] != "user":
        raise PromptError("the instruction template needs the conversation to end with a user turn")
    context = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in history)
    inp = "\n\n".join(x for x in (system, context) if x)
    return alpaca_prompt(last["content"], inp), ""


def prompt_text(tokenizer, row_or_messages: Any, style: str = "auto", system: str | None = None) -> str:
    """The text a model continues to answer: everything up to where the (last) reply starts."""
    style = resolve_style(tokenizer, style)
    if isinstance(row_or_messages, list):
        msgs = row_or_messages
    else:
        msgs = to_messages(row_or_messages, system)
    if msgs and msgs[-1]["role"] == "assistant":
        msgs = msgs[:-1]
    if style == "chat":
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    if isinstance(row_or_messages, dict) and row_kind(row_or_messages) == "instruction":
        text = alpaca_prompt(str(row_or_messages["instruction"]), str(row_or_messages.get("input") or ""))
    else:
        text, _ = _alpaca_from_messages(msgs)
    bos = tokenizer.bos_token if adds_bos(tokenizer) else ""
    return bos + text


def adds_bos(tokenizer) -> bool:
    """Whether a model expects a BOS token in front (Llama 3 does; SmolLM2's template does not)."""
    if tokenizer.bos_token is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def reference(row: dict) -> str:
    """The expected answer of a held-out row: the output, or the last assistant message."""
    if row_kind(row) == "instruction":
        return str(row["output"]).strip()
    msgs = row["messages"]
    if not msgs or msgs[-1]["role"] != "assistant":
        raise PromptError("a held-out conversation must end with the assistant's reply (the reference)")
    return msgs[-1]["content"].strip()


def _segments(tokenizer, msgs: list[dict], style: str) -> list[tuple[str, bool]]:
    """The conversation as consecutive (text, trained?) pieces whose concatenation is the full text."""
    if style == "chat":
        pieces: list[tuple[str, bool]] = []
        done = ""
        for i, m in enumerate(msgs):
            full = tokenizer.apply_chat_template(msgs[: i + 1], tokenize=False)
            if m["role"] == "assistant":
                head = tokenizer.apply_chat_template(msgs[:i], add_generation_prompt=True, tokenize=False) if i else ""
                if not head.startswith(done) or not full.startswith(head):
                    raise PromptError("this chat template rewrites earlier turns; use template='alpaca'")
                pieces.append((head[len(done):], False))
                pieces.append((full[len(head):], True))
            else:
                if not full.startswith(done):
                    raise PromptError("this chat template rewrites earlier turns; use template='alpaca'")
                pieces.append((full[len(done):], False))
            done = full
        return [(t, w) for t, w in pieces if t]
    # alpaca: every assistant turn becomes one prompt/response pair in the template
    out: list[tuple[str, bool]] = []
    bos = tokenizer.bos_token if adds_bos(tokenizer) else ""
    eos = tokenizer.eos_token or ""
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prompt, _ = _alpaca_from_messages(msgs[:i])
        out.append(((bos if not out else "") + prompt, False))
        out.append((m["content"].strip() + eos, True))
        bos = ""
    return out


def encode(tokenizer, row: dict, style: str = "auto", max_len: int = 2048, system: str | None = None,
           train_on_prompt: bool = False) -> dict[str, Any]:
    """Token ids of a row plus ``completion_mask`` (1 where the loss is taken: replies and their
    end marker). Returns also ``truncated`` (bool) so callers can count rows cut at ``max_len``."""
    style = resolve_style(tokenizer, style)
    if row_kind(row) == "instruction":
        if not str(row.get("output") or "").strip():
            raise PromptError("empty 'output'")
        if not str(row.get("instruction") or "").strip():
            raise PromptError("empty 'instruction'")
    msgs = to_messages(row, system)
    if not any(m["role"] == "assistant" and str(m["content"]).strip() for m in msgs):
        raise PromptError("conversation has no non-empty assistant reply to learn from")
    if style == "alpaca" and row_kind(row) == "instruction":
        bos = tokenizer.bos_token if adds_bos(tokenizer) else ""
        segs = [(bos + alpaca_prompt(str(row["instruction"]), str(row.get("input") or "")), False),
                (str(row["output"]).strip() + (tokenizer.eos_token or ""), True)]
    else:
        segs = _segments(tokenizer, msgs, style)
    ids: list[int] = []
    mask: list[int] = []
    for text, trained in segs:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [1 if (trained or train_on_prompt) else 0] * len(piece)
    truncated = len(ids) > max_len
    ids, mask = ids[:max_len], mask[:max_len]
    return {"input_ids": ids, "completion_mask": mask, "truncated": truncated}


def encode_many(tokenizer, rows: Iterable[dict], style: str = "auto", max_len: int = 2048,
                system: str | None = None, drop_truncated: bool = False, source: str = "dataset"):
    """Encode many rows; returns (encoded, report). Bad rows are reported by index, never silently
    dropped: the report lists them with the reason, and counts truncated rows."""
    encoded, bad, truncated, no_loss = [], [], 0, 0
    for i, row in enumerate(rows):
        try:
            e = encode(tokenizer, row, style, max_len, system)
        except PromptError as exc:
            bad.append((i, str(exc)))
            continue
        if e["truncated"]:
            truncated += 1
            if drop_truncated:
                bad.append((i, f"longer than max_len={max_len} tokens"))
                continue
        if sum(e["completion_mask"]) == 0:
            no_loss += 1
            bad.append((i, f"no reply tokens left within max_len={max_len} (the prompt alone fills it)"))
            continue
        encoded.append({"input_ids": e["input_ids"], "completion_mask": e["completion_mask"]})
    report = {"source": source, "rows": len(encoded) + len(bad), "kept": len(encoded), "truncated": truncated,
              "skipped": len(bad), "skipped_rows": bad[:50]}
    return encoded, report


def describe_report(report: dict) -> str:
    msg = (f"{report['source']}: {report['kept']} of {report['rows']} rows kept; "
           f"{report['truncated']} truncated to the max length; {report['skipped']} skipped")
    if report["skipped_rows"]:
        msg += " (" + "; ".join(f"row {i}: {why}" for i, why in report["skipped_rows"][:5])
        msg += ", ..." if report["skipped"] > 5 else ""
        msg += ")"
    return msg
