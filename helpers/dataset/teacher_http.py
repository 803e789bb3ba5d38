"""The OpenAI-compatible teacher: any ``/chat/completions`` endpoint (Groq, OpenAI, a local vLLM or
llama.cpp server), set by ``TEACHER_BASE_URL`` and ``TEACHER_MODEL``; the key is ``TEACHER_API_KEY``
from the environment or Colab's secret store, and is never printed.

Each request has ``timeout_s`` in all (:func:`helpers.core.net.request_within`). 429 waits for
``Retry-After`` (one longer than ``max_wait_s`` stops the build and says when to rerun), 5xx,
timeouts and dropped connections are retried with backoff. A 4xx that dooms every request (a
refused key, an unknown model, no credit) is :class:`TeacherStop`; any other refusal is
:class:`ChunkRefused` for that request alone, "too_long" when the chunk is over the teacher's
context. A 200 that is not a chat completion (a proxy's HTML page, an empty choices list) is
named and asked at most ``PROTOCOL_RETRIES`` more times. The table of what each bad reply gets is
in CONTRIBUTING.md ("Bad input").
"""
from __future__ import annotations

import datetime as dt
import os
import re
import sys
import threading
import time
from dataclasses import dataclass

from helpers.core.net import Backoff, client, parse_retry_after, request_within, transport_errors

PROTOCOL_RETRIES = 2  # a 200 that is not a chat completion (an HTML page, no choices) is asked at most twice more
TOO_LONG_RE = re.compile(r"context.length|maximum context|context (window|size)|too many (input |prompt )?tokens|"
                         r"(prompt|input|request) is too long|reduce the length", re.I)


class TeacherError(RuntimeError):
    """A teacher that cannot answer (bad settings, a request that kept failing)."""


class TeacherStop(TeacherError):
    """What dooms every request (a refused key, an unknown model, no credit, a long Retry-After, HTML
    every time): the build stops, with every answer that arrived stored."""


class ChunkRefused(TeacherError):
    """One request refused: ``kind`` "too_long" (over the teacher's context: split and asked in parts),
    "protocol" (a 200 that is not a chat completion) or "refused" (any other 4xx)."""

    def __init__(self, message: str, kind: str = "refused"):
        super().__init__(message)
        self.kind = kind


def teacher_api_key() -> str | None:
    """``TEACHER_API_KEY`` from the environment or Colab's secret store (never printed)."""
    key = os.environ.get("TEACHER_API_KEY")
    if key:
        return key
    if "google.colab" in sys.modules:
        try:
            from google.colab import userdata  # type: ignore
            return userdata.get("TEACHER_API_KEY")
        except Exception:
            return None
    return None


@dataclass
class Completion:
    text: str
    finish_reason: str | None  # "stop", "length" (cut at the token limit), ...
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    attempts: int = 1


class HttpTeacher:
    """An OpenAI-compatible chat-completions endpoint (see the module docstring)."""

    backend = "http"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_new_tokens: int = 1024,
                 temperature: float = 0.2, timeout_s: float = 120.0, max_retries: int = 5, backoff_s: float = 2.0,
                 max_wait_s: float = 120.0, json_mode: bool = True, concurrency: int = 4):
        if not base_url:
            raise TeacherError("TEACHER_BASE_URL is empty: set it to an OpenAI-compatible endpoint, e.g. "
                               "https://api.groq.com/openai/v1, https://api.openai.com/v1 or http://localhost:8000/v1.")
        if not model:
            raise TeacherError("TEACHER_MODEL is empty: name the model the endpoint serves, "
                               "e.g. llama-3.3-70b-versatile.")
        self.url = base_url.rstrip("/") + ("" if base_url.rstrip("/").endswith("/chat/completions")
                                           else "/chat/completions")
        self.model = model
        self._key = api_key if api_key is not None else teacher_api_key()
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self.backoff_s, self.max_wait_s = backoff_s, max_wait_s
        self.json_mode, self.concurrency = json_mode, max(1, concurrency)
        self._local = threading.local()

    @property
    def name(self) -> str:
        return self.model

    @property
    def backoff(self) -> Backoff:
        """``backoff_s`` doubled per retry, plus up to 25 % at random; a 429's Retry-After is the wait
        instead; never more than ``max_wait_s``."""
        return Backoff(self.backoff_s, jitter=0.25, cap=self.max_wait_s, retry_after="replaces")

    @property
    def key_id(self) -> str:
        return self.model

    def __repr__(self) -> str:  # never the key
        return f"HttpTeacher(url={self.url!r}, model={self.model!r}, key={'set' if self._key else 'not set'})"

    def _client(self):
        if getattr(self._local, "client", None) is None:  # one pooled client per worker thread
            self._local.client = client(self.timeout_s)
        return self._local.client

    def complete(self, messages: list[dict], stop: threading.Event | None = None) -> Completion:
        """One chat completion, retried on 429, 5xx, timeouts and broken connections; raises
        :class:`TeacherStop`, :class:`ChunkRefused` or, after the last retry, :class:`TeacherError`.
        ``stop`` set (the build is stopping): no further try."""
        timeout_error, broken = transport_errors()
        payload = {"model": self.model, "messages": messages, "max_tokens": self.max_new_tokens,
                   "temperature": self.temperature}
        if self.json_mode:
            payload["response_format"] = {"type": "json_object"}
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        t0, err, not_completions = time.time(), "", 0
        for attempt in range(1, self.max_retries + 2):
            if stop is not None and stop.is_set():  # the build stopped before this request was sent
                raise TeacherError(f"not asked: the build stopped{' (last try: ' + err + ')' if err else ''}")
            retry_after = None
            try:
                r = request_within(self._client(), "POST", self.url, self.timeout_s, json=payload, headers=headers)
            except timeout_error:
                err = f"no complete answer within {self.timeout_s:g}s (REQUEST_TIMEOUT, for the whole request)"
            except broken as exc:
                err = f"connection failed ({type(exc).__name__}: {str(exc)[:200]})"
            else:
                if r.status_code == 200:
                    comp, err = self._completion(r, t0, attempt)
                    if comp is not None:
                        return comp
                    not_completions += 1
                    if not_completions > PROTOCOL_RETRIES:
                        raise ChunkRefused(f"{err} ({not_completions} times)", "protocol")
                elif r.status_code == 429 and "insufficient_quota" not in r.text:
                    retry_after = parse_retry_after(r.headers.get("retry-after"))
                    if retry_after is not None and retry_after > self.max_wait_s:
                        raise self._long_wait(retry_after, r.headers.get("retry-after"))
                    err = f"rate limited (HTTP 429, Retry-After {r.headers.get('retry-after')!r})"
                elif r.status_code >= 500:
                    err = f"server error (HTTP {r.status_code}: {self._their_message(r)})"
                else:
                    raise self._refusal(r)
            if attempt > self.max_retries:
                break
            delay = self.backoff.delay(attempt - 1, retry_after)
            if stop is None:
                time.sleep(delay)
            else:
                stop.wait(delay)  # wakes when the build stops
        raise TeacherError(f"gave up after {attempt} tries: {err}")

    def _completion(self, r, t0: float, attempt: int) -> tuple[Completion | None, str]:
        """A 200 reply as a completion, or None and what it is instead (an HTML page, no choices, not JSON)."""
        if "html" in r.headers.get("content-type", "").lower() or r.text.lstrip()[:1] == "<":
            return None, (f"HTTP 200 with {self._their_message(r)} instead of a chat completion: a proxy's, login or "
                          f"error page, not the OpenAI protocol (check TEACHER_BASE_URL {self.url})")
        try:
            body = r.json()
            if isinstance(body, dict) and body.get("choices") == []:
                return None, ("HTTP 200 with an empty choices list: no completion in the reply (the endpoint does not "
                              "speak the OpenAI protocol, or a filter dropped the answer)")
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
            usage = body.get("usage") or {}
            return Completion(text, choice.get("finish_reason"), int(usage.get("prompt_tokens") or 0),
                              int(usage.get("completion_tokens") or 0), round(time.time() - t0, 3), attempt), ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            return None, (f"HTTP 200 but not a chat completion, not the OpenAI protocol ({type(exc).__name__}: "
                          f"{str(exc)[:100]}; body {r.text[:200]!r})")

    def _their_message(self, r) -> str:
        """The endpoint's own words: the JSON error's message, an HTML page's title, else the body's start
        (never the key)."""
        try:
            body = r.json()
            err = body.get("error") if isinstance(body, dict) else None
            msg = (err.get("message") if isinstance(err, dict) else err) or body.get("message") or body.get("detail")
        except (ValueError, AttributeError):
            msg = None
        if not msg:
            title = re.search(r"<title[^>]*>(.*?)</title>", r.text, re.S | re.I)
            msg = (f"an HTML page titled {' '.join(title.group(1).split())!r}" if title else
                   "an HTML page" if r.text.lstrip()[:1] == "<" else repr(r.text[:300]))
        msg = " ".join(str(msg).split())[:300]
        return msg.replace(self._key, "***") if self._key else msg

    def _refusal(self, r) -> TeacherError:
        """A 4xx: :class:`TeacherStop` when it dooms every request (key, model, credit), else
        :class:`ChunkRefused` for this request alone."""
        code, msg, low = r.status_code, self._their_message(r), r.text.lower()
        said = f"HTTP {code}: {msg}"
        if code in (401, 403):
            return TeacherStop(f"{self.url} refused the API key ({said}). Set TEACHER_API_KEY in the environment or "
                               "as a Colab secret (key icon) to a valid key.")
        if code == 402 or "insufficient_quota" in low:
            return TeacherStop(f"{self.url} says the account has no credit left ({said}): add credit or use another "
                               "key, then rerun.")
        if code == 404 or "model_not_found" in low:
            return TeacherStop(f"{self.url} does not know model {self.model!r} or the address is wrong ({said}): "
                               "check TEACHER_MODEL and TEACHER_BASE_URL.")
        if code == 413 or TOO_LONG_RE.search(r.text[:2000]):
            return ChunkRefused(f"too long for the teacher's context ({said})", "too_long")
        return ChunkRefused(f"refused by the teacher ({said})")

    def _long_wait(self, seconds: float, header: str) -> TeacherStop:
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds + 60)
        return TeacherStop(f"{self.url} is rate limiting and asked to wait {seconds:.0f} s ({seconds / 60:.0f} min; "
                           f"HTTP 429, Retry-After: {header}), longer than the {self.max_wait_s:g} s this build waits: "
                           f"rerun after {when:%Y-%m-%d %H:%M} UTC")
