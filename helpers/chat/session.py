"""Chat with a model: multi-turn history, system-prompt presets, streaming, and a stop that works.

:class:`ChatSession` holds one conversation on one loaded model (base + adapter, PEFT):

* the history goes through the model's chat template every turn; when the conversation no longer
  fits the context (prompt + ``max_new_tokens``), the oldest turns are dropped and ``notice``
  says so;
* ``stream(text)`` yields the reply as it is generated (``TextIteratorStreamer``, generation in a
  thread); ``send(text)`` returns it whole;
* it never hangs on a model that does not emit EOS: ``max_new_tokens`` is always bounded, stop
  strings end the reply, and ``stop()`` (from any thread, e.g. a Stop button) ends generation at
  the next token through a ``StoppingCriteria``;
* ``tuned=False`` answers with the base model (the adapter switched off on the same weights);
* the "documents" preset (with ``index``, a ``ChunkIndex`` of the user's chunks) puts the top
  ``retrieval_k`` passages before each message and keeps them as the reply's ``sources``
  (:mod:`helpers.chat.documents`).

The ipywidgets UI is in :mod:`helpers.chat.widget`, the Gradio app in ``app/app.py``.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from helpers.chat.documents import DOCUMENT_PRESETS, message_with_sources
from helpers.common.access import check_model_access
from helpers.common.models import default_model_name, load_model, model_device, stop_token_ids
from helpers.common.run import check_adapter
from helpers.core.config import ConfigError, StepConfig
from helpers.core.files import SFT_RUN

PRESETS = {
    "assistant": "You are a helpful, honest assistant. Answer clearly and briefly, and say so when you do not know.",
    "storymaker": (
        "You are Storymaker, the narrator of a choose-your-own-adventure story. Write in the second person "
        "(\"you\"), present tense, in vivid but short scenes of at most two paragraphs. Begin by setting the "
        "scene in the world the player asks for. End every scene with exactly three numbered choices of what "
        "to do next, and wait. When the player picks a number or writes their own action, continue the story "
        "from it, keeping characters, places and items consistent with what happened before. Never decide "
        "for the player, and bring the story to a satisfying end when they ask to finish."),
}
MAX_NEW_TOKENS_CAP = 4096


class ChatError(ValueError):
    """A chat request that cannot be served; the message says why and what to do."""


@dataclass
class ChatConfig(StepConfig, notebooks=("06",)):
    """Which model notebook 06 chats with, and how it samples."""
    model_name: str = ""  # base model; "" = the one notebook 04 trained (from its run's manifest), else the default.
                          # Llama-3.2-1B-Instruct (a GPU's) is gated: accept its licence on huggingface.co and add an
                          # HF_TOKEN secret (checked first)
    adapter_dir: str = ""  # LoRA adapter; "" = notebook 04's, in outputs/RUN_NAME/adapter
    quantization: str = "auto"  # how the base is loaded to chat: "4bit", "16bit", "none" (fp32); "auto" = 4bit on GPU,
                                # fp32 on CPU
    preset: str = "assistant"  # system prompt preset: "assistant", "storymaker" or "documents" (answers from your
                               # documents: the top RETRIEVAL_K chunks of notebook 02 with each message)
    retrieval_k: int = 3  # "documents" preset: passages of your documents (BM25) given with each message
    chunks_path: str = ""  # "documents" preset: the chunks searched; "" = notebook 02's chunks.jsonl (the adapter's
                           # dataset)
    temperature: float = 0.7  # sampling temperature (0 = greedy)
    top_p: float = 0.9  # nucleus sampling mass
    max_new_tokens: int = 256  # longest reply, in tokens (always bounded)
    context_tokens: int = 0  # context window in tokens (0 = the model's own); the oldest turns are dropped to fit
    share_link: bool = False  # the app (below) also at a public gradio.live link, e.g. for a phone. Anyone who has the
                              # link can use your GPU: set APP_USER and APP_PASSWORD secrets to require a login. The
                              # app shows inline without it (on Colab too)
    run_name: str = SFT_RUN  # notebook 04's run folder under the outputs folder: its adapter; merged/ and gguf/ go
                             # there

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        return dict(quantization="none", max_new_tokens=16, temperature=0.0)

    def check_access(self) -> None:
        """A base named here is checked at once; "" (the adapter's) by :func:`chat_model_name`."""
        check_model_access(self.model_name)

    def validate(self) -> None:
        if self.preset not in PRESETS and self.preset not in DOCUMENT_PRESETS:
            raise ConfigError(f"PRESET={self.preset!r}: use one of {', '.join([*PRESETS, *DOCUMENT_PRESETS])}.")
        if self.retrieval_k < 1:
            raise ConfigError(f"RETRIEVAL_K={self.retrieval_k}: give at least 1 passage per message.")
        check_sampling(self.temperature, self.top_p, self.max_new_tokens, ConfigError)


def check_sampling(temperature: float, top_p: float, max_new_tokens: int, err=ChatError) -> None:
    if not 0 <= temperature <= 2:
        raise err(f"temperature={temperature}: use a value from 0 (greedy) to 2.")
    if not 0 < top_p <= 1:
        raise err(f"top_p={top_p}: use a value in (0, 1].")
    if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS_CAP:
        raise err(f"max_new_tokens={max_new_tokens}: use a whole number from 1 to {MAX_NEW_TOKENS_CAP} "
                  "(a reply is always bounded, so a model that never emits EOS cannot run forever).")


def message_text(content) -> str:
    """Plain text of a message's content (a string, or a list of parts as Gradio sends them)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(message_text(c) for c in content)
    return "" if content is None else str(content)


@dataclass
class ReplyInfo:
    """How the last reply ended and what it cost."""
    stop_reason: str = ""  # "eos", "max_new_tokens", "stop_string", "stopped" (Stop button)
    new_tokens: int = 0
    seconds: float = 0.0
    trimmed_turns: int = 0  # oldest messages dropped to fit the context this turn
    prompt_tokens: int = 0
    tuned: bool = True
    extra: dict = field(default_factory=dict)


class ChatSession:
    """One conversation with one model. Not for concurrent use: one reply at a time (a lock)."""

    def __init__(self, model, tokenizer, preset: str = "assistant", system_prompt: str | None = None,
                 temperature: float = 0.7, top_p: float = 0.9, max_new_tokens: int = 256,
                 stop_strings: list[str] | tuple[str, ...] = (), context_tokens: int = 0, tuned: bool = True,
                 seed: int | None = None, eos_token_ids: list[int] | None = None, index=None,
                 retrieval_k: int = 3):
        if not getattr(tokenizer, "chat_template", None):
            raise ChatError("This tokenizer has no chat template (a base model, not an -Instruct one): a chat needs "
                            "one to format the turns. Load an -Instruct model, or one tuned with template='chat'.")
        self.model, self.tokenizer = model, tokenizer
        self.history: list[dict[str, str]] = []
        self.index, self.retrieval_k = index, retrieval_k  # the "documents" preset's ChunkIndex
        self.sources: list = []  # the passages the last reply was given ("documents" preset)
        self.preset = preset
        self.system_prompt = system_prompt if system_prompt is not None else self._preset_text(preset)
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.stop_strings = list(stop_strings)
        self.context_tokens = context_tokens or self.model_context()
        self._tuned = True
        self.tuned = tuned
        self.seed = seed
        self.eos_token_ids = eos_token_ids  # None = EOS and end-of-turn markers of the tokenizer
        self.notice = ""  # what the last turn had to do to fit (trimming), for the UI
        self.last = ReplyInfo()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- settings ---------------------------------------------------------------------------
    def _preset_text(self, name: str) -> str:
        if name in DOCUMENT_PRESETS and self.index is None:
            raise ChatError(f"The {name!r} preset answers from your documents, but no chunks are loaded: notebook 02 "
                            "writes chunks.jsonl; give ChatSession(index=ChunkIndex.from_file(path)).")
        if name not in PRESETS and name not in DOCUMENT_PRESETS:
            raise ChatError(f"Unknown preset {name!r}; presets: {', '.join(self.presets)}.")
        return PRESETS.get(name) or DOCUMENT_PRESETS[name]

    @property
    def presets(self) -> list[str]:
        """The presets this session offers ("documents" only with an index of chunks)."""
        return list(PRESETS) + (list(DOCUMENT_PRESETS) if self.index is not None else [])

    def set_preset(self, name: str) -> None:
        """Switch the system prompt to a preset (the history is kept)."""
        self.system_prompt = self._preset_text(name)
        self.preset = name

    @property
    def has_adapter(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")

    @property
    def tuned(self) -> bool:
        return self._tuned

    @tuned.setter
    def tuned(self, value: bool) -> None:
        if value and not self.has_adapter:
            raise ChatError("This model has no adapter, so there is no tuned model to switch to: load it with "
                            "load_model(name, adapter='outputs/sft/adapter') (notebook 04 writes it).")
        self._tuned = bool(value)

    def model_context(self) -> int:
        cfg = getattr(self.model, "config", None)
        n = getattr(cfg, "max_position_embeddings", None) or getattr(self.tokenizer, "model_max_length", 2048)
        return int(min(n, 1_000_000))

    def clear(self) -> None:
        """Forget the conversation (settings stay)."""
        self.history = []
        self.notice = ""

    def stop(self) -> None:
        """End the reply being generated at the next token (safe to call from another thread)."""
        self._stop.set()

    # -- prompt -------------------------------------------------------------------------------
    def messages(self, history: list[dict] | None = None) -> list[dict[str, str]]:
        hist = self.history if history is None else history
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return msgs + [{"role": m["role"], "content": message_text(m["content"])} for m in hist]

    def _count(self, msgs: list[dict]) -> int:
        return len(self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"])

    def fit(self, history: list[dict]) -> tuple[list[dict], int]:
        """The newest part of ``history`` (ending with the user's turn) that fits the context with
        room for ``max_new_tokens``; returns it and how many messages were dropped."""
        budget = self.context_tokens - self.max_new_tokens
        if budget <= 0:
            raise ChatError(f"max_new_tokens={self.max_new_tokens} leaves no room in a context of "
                            f"{self.context_tokens} tokens for the conversation: lower max_new_tokens.")
        start = 0
        while True:
            kept = history[start:]
            n = self._count(self.messages(kept))
            if n <= budget:
                return kept, start
            # drop the oldest exchange: up to and including the next assistant reply
            nxt = next((i for i in range(start, len(history) - 1) if history[i]["role"] == "assistant"), None)
            if nxt is None:
                raise ChatError(f"Your message alone takes {n} tokens with the system prompt, more than the "
                                f"{budget} the context leaves (context {self.context_tokens} minus max_new_tokens "
                                f"{self.max_new_tokens}). Shorten it, shorten the system prompt, or lower "
                                "max_new_tokens.")
            start = nxt + 1

    # -- generation ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _adapter_state(self):
        if self.has_adapter and not self._tuned:
            with self.model.disable_adapter():
                yield
        else:
            yield

    def stream(self, user_text: str, history: list[dict] | None = None) -> Iterator[str]:
        """Yield the reply to ``user_text`` piece by piece; the turn is added to the history at the end.

        ``history`` (role/content dicts) replaces the session's own, as a stateless UI (Gradio) sends it.
        """
        from transformers import TextIteratorStreamer

        if not isinstance(user_text, str) or not user_text.strip():
            raise ChatError("Type a message first: an empty message has nothing to answer.")
        check_sampling(self.temperature, self.top_p, self.max_new_tokens)
        if history is not None:
            self.history = [{"role": m["role"], "content": message_text(m["content"])} for m in history
                            if m.get("role") in ("user", "assistant")]
        if not self._lock.acquire(blocking=False):
            raise ChatError("A reply is still being generated: wait for it or press Stop.")
        try:
            full = self.history + [{"role": "user", "content": user_text.strip()}]
            kept, dropped = self._fit_turn(self._with_sources(full))
            ids = self.tokenizer.apply_chat_template(self.messages(kept), add_generation_prompt=True,
                                                     tokenize=True, return_dict=True, return_tensors="pt")
            dev = model_device(self.model)
            input_ids = ids["input_ids"].to(dev)
            attention = ids["attention_mask"].to(dev)
            self._stop.clear()
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            eos = list(self.eos_token_ids) if self.eos_token_ids else stop_token_ids(self.tokenizer)
            kwargs = self._generate_kwargs(input_ids, attention, streamer, eos)
            box: dict[str, Any] = {}
            t0 = time.time()
            thread = threading.Thread(target=self._generate, args=(kwargs, streamer, box), daemon=True,
                                      name="chat-generate")
            thread.start()
            text, shown = "", 0
            try:
                for piece in streamer:
                    text += piece
                    visible = self._visible(text)
                    if len(visible) > shown:
                        yield visible[shown:]
                        shown = len(visible)
            finally:
                # an abandoned iterator (Gradio's Stop, a closed tab) also ends generation
                self._stop.set()
                thread.join()
            if "error" in box:
                raise ChatError(f"Generation failed: {type(box['error']).__name__}: {box['error']}") from box["error"]
            reply = self._cut(text).strip()
            rest = self._visible(text, final=True)[shown:]
            if rest:
                yield rest
            new = box["out"][0, input_ids.shape[1]:].tolist()
            reason = self._stop_reason(new, text, eos)
            self.last = ReplyInfo(reason, len(new), round(time.time() - t0, 2), dropped, input_ids.shape[1],
                                  self._tuned, {"sources": [p.label for p in self.sources]} if self.sources else {})
            self.history = full + [{"role": "assistant", "content": reply}]
        finally:
            self._stop.clear()
            self._lock.release()

    def _with_sources(self, full: list[dict]) -> list[dict]:
        """The turns the model sees: with the "documents" preset, the last message carries the top
        passages of the user's documents (within half the room the context leaves); ``sources``
        holds them. The history keeps the message as typed."""
        self.sources = []
        if self.preset not in DOCUMENT_PRESETS or self.index is None:
            return full
        budget = (self.context_tokens - self.max_new_tokens) // 2
        text, self.sources = message_with_sources(self.index, self.retrieval_k, full[-1]["content"], self.tokenizer,
                                                  budget)
        return full[:-1] + [{"role": "user", "content": text}]

    def _fit_turn(self, full: list[dict]) -> tuple[list[dict], int]:
        """:meth:`fit` for this turn, with ``notice`` saying how many messages were left out."""
        kept, dropped = self.fit(full)
        self.notice = ""
        if dropped:
            self.notice = (f"The conversation is longer than the {self.context_tokens}-token context, so the "
                           f"oldest {dropped} message{'s' if dropped != 1 else ''} (of {len(full)}) "
                           "were left out of what the model sees.")
        return kept, dropped

    def _generate_kwargs(self, input_ids, attention, streamer, eos: list[int]) -> dict[str, Any]:
        """``model.generate`` arguments: bounded length, the Stop button's criterion, sampling, stop strings."""
        from transformers import StoppingCriteriaList

        kwargs = dict(input_ids=input_ids, attention_mask=attention, max_new_tokens=self.max_new_tokens,
                      streamer=streamer, stopping_criteria=StoppingCriteriaList([_stop_criterion(self._stop)]),
                      eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id
                      is not None else eos[0])
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop_strings:
            kwargs.update(stop_strings=self.stop_strings, tokenizer=self.tokenizer)
        return kwargs

    def _generate(self, kwargs: dict, streamer, box: dict) -> None:
        """Generation thread: the output (or the error, for the caller to raise) goes into ``box``."""
        import torch

        try:
            if self.seed is not None:
                torch.manual_seed(self.seed)
            with torch.inference_mode(), self._adapter_state():
                box["out"] = self.model.generate(**kwargs)
        except BaseException as exc:  # shown to the caller, never swallowed
            box["error"] = exc
            streamer.end()

    def _stop_reason(self, new: list[int], text: str, eos: list[int]) -> str:
        """Why the reply ended: "eos", "stop_string", "max_new_tokens" or "stopped" (Stop button)."""
        if new and new[-1] in eos:
            return "eos"
        if any(s in text for s in self.stop_strings):
            return "stop_string"
        if len(new) >= self.max_new_tokens:
            return "max_new_tokens"
        return "stopped"

    def send(self, user_text: str) -> str:
        """The whole reply to ``user_text`` (see :meth:`stream`)."""
        return "".join(self.stream(user_text)).strip()

    def _cut(self, text: str) -> str:
        for s in self.stop_strings:
            if s and s in text:
                text = text.split(s, 1)[0]
        return text

    def _visible(self, text: str, final: bool = False) -> str:
        """Text safe to show now: cut at a stop string, and holding back a tail that may become one."""
        text = self._cut(text)
        if final:
            return text.rstrip()
        hold = 0
        for s in self.stop_strings:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        return text[:len(text) - hold] if hold else text

    def transcript(self, width: int = 100) -> str:
        """The conversation as plain text (system prompt shortened)."""
        more = "..." if len(self.system_prompt) > width else ""
        lines = [f"[system: {self.preset}] {self.system_prompt[:width]}{more}"]
        for m in self.history:
            lines.append(f"{m['role'].upper():>9}: {m['content']}")
        return "\n".join(lines)


def _stop_criterion(event: threading.Event):
    """A ``StoppingCriteria`` that ends generation at the next token once ``event`` is set."""
    import torch
    from transformers import StoppingCriteria

    class _StopEvent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return _StopEvent()


def chat_model_name(model_name: str = "", adapter_dir: str = "") -> str:
    """The base model to chat with: ``model_name``, else the one notebook 04 trained the adapter on
    (its run's manifest, then the adapter's own record), else the default for this machine.

    A missing adapter folder is an error naming notebook 04, not a silent fall-back to the base."""
    if adapter_dir:  # a base that does not fit the adapter is refused when it is attached (load_model)
        trained_on = check_adapter(adapter_dir, error=ChatError, need_base=False).model_name
        model_name = model_name or trained_on
    model_name = model_name or default_model_name()
    check_model_access(model_name)  # gated without a token or licence: the steps, before any download
    return model_name


def load_chat_model(model_name: str = "", adapter_dir: str = "", quantization: str = "auto"):
    """(model, tokenizer) for chatting: the base with the adapter attached when one is given."""
    name = chat_model_name(model_name, adapter_dir)
    return load_model(name, quantization=quantization, adapter=adapter_dir or None)
