"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol, for tests.

``POST /v1/chat/completions`` with a bearer key answers ``chat.completion`` objects with ``usage``.
The answer to a passage is a JSON object of examples built from the passage's own words (not
copies of it), so the teacher's validation keeps them. ``plan`` scripts misbehaviour for the
first requests, one entry per request in arrival order: ``"429"`` (with ``Retry-After``),
``"500"``, ``"timeout"`` (answers after the client has given up), ``"invalid_json"``,
``"truncated"`` (cut mid-object, ``finish_reason: "length"``), ``"empty"``, ``"ok"``, and the
refusals and oddities of real providers: ``"400"`` (a request refused alone), ``"401"``, ``"402"``,
``"404"`` (unknown model), ``"insufficient_quota"`` (OpenAI's 429 for no credit), ``"html"`` (a
proxy's sign-in page with status 200), ``"empty_choices"``, ``"trickle"`` (the answer sent one
byte every ``trickle_s``); ``default`` is what comes after the plan. ``refuse`` maps a piece of a
passage to what every request about that passage gets; ``context_chars`` refuses, as OpenAI does
with HTTP 400 ``context_length_exceeded``, a prompt longer than that. ``delay`` slows every
answer (for the kill test). ``reply`` (a function of the request's messages) writes the content of
an "ok" answer instead of the examples: scripted grades and verdicts, refusals, garbage. The
server counts requests and delivered answers per passage, so a test can prove nothing was asked
twice.
"""
from __future__ import annotations

import collections
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "test-key-not-secret"
REFUSALS = {  # what real providers answer (OpenAI's error objects)
    "400": (400, {"message": "Your request was flagged by our content filter.", "type": "invalid_request_error",
                  "code": "content_filter"}),
    "context": (400, {"message": "This model's maximum context length is {n} characters. However, your messages "
                                 "resulted in {asked} characters. Please reduce the length of the messages.",
                      "type": "invalid_request_error", "code": "context_length_exceeded"}),
    "401": (401, {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}),
    "402": (402, {"message": "Payment required: your balance is $0.00.", "type": "billing_error"}),
    "404": (404, {"message": "The model `llama-9` does not exist or you do not have access to it.",
                  "type": "invalid_request_error", "code": "model_not_found"}),
    "insufficient_quota": (429, {"message": "You exceeded your current quota, please check your plan and billing "
                                            "details.", "type": "insufficient_quota", "code": "insufficient_quota"}),
}
SIGN_IN_PAGE = ("<!DOCTYPE html><html><head><title>Sign in - Corporate Proxy</title></head>"
                "<body><form>Please sign in to continue.</form></body></html>")


def passage_of(messages: list[dict]) -> str:
    user = [m["content"] for m in messages if m.get("role") == "user"][-1]
    m = re.search(r"<<<\n(.*)\n>>>", user, re.S)
    return m.group(1) if m else user


def passage_id(passage: str) -> str:
    return hashlib.sha256(passage.encode()).hexdigest()[:12]


def examples_for(passage: str, n: int = 2) -> list[dict]:
    words = re.findall(r"[A-Za-z]{5,}", passage)
    common = [w for w, _ in collections.Counter(w.lower() for w in words).most_common(6)] or ["nothing"]
    head = " ".join(passage.split()[:6])
    out = []
    for i in range(n):
        topic = common[i % len(common)]
        out.append({"instruction": f"Explain the role of '{topic}' in the section that opens with: {head}",
                    "input": "",
                    "output": f"The section treats {topic} together with {', '.join(common[:3])}; "
                              f"answer number {i + 1} sums this up in other words for passage {passage_id(passage)}."})
    return out


class FakeOpenAI:
    def __init__(self, plan: list[str] | None = None, delay: float = 0.0, retry_after: str = "1",
                 timeout_sleep: float = 3.0, n_examples: int = 2, default: str = "ok",
                 refuse: dict[str, str] | None = None, context_chars: int = 0, trickle_s: float = 0.8,
                 reply=None):
        self.plan = list(plan or [])
        self.default, self.refuse, self.context_chars, self.trickle_s = default, dict(refuse or {}), context_chars, \
            trickle_s
        self.delay, self.retry_after, self.timeout_sleep, self.n_examples = (
            delay,
            retry_after,
            timeout_sleep,
            n_examples,
        )
        self.reply = reply
        self.requests = collections.Counter()  # passage id -> requests received
        self.delivered = collections.Counter()  # passage id -> 200 answers fully sent
        self.bodies: list[dict] = []
        self.headers_seen: list[dict] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _next(self, passage: str, user: str) -> str:
        if self.context_chars and len(user) > self.context_chars:
            return "context"
        for piece, what in self.refuse.items():
            if piece in passage:
                return what
        with self._lock:
            return self.plan.pop(0) if self.plan else self.default

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body: bytes | str, headers: dict | None = None,
                      content_type: str = "application/json") -> bool:
                data = body.encode() if isinstance(body, str) else body
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    return True
                except (BrokenPipeError, ConnectionResetError):
                    return False

            def do_POST(self):
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with fake._lock:
                    fake.bodies.append(body)
                    fake.headers_seen.append(dict(self.headers))
                    fake.times.append(time.time())
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    self._send(
                        401, json.dumps({"error": {"message": "Invalid API Key", "type": "invalid_request_error"}})
                    )
                    return
                passage = passage_of(body["messages"])
                pid = passage_id(passage)
                with fake._lock:
                    fake.requests[pid] += 1
                user = [m["content"] for m in body["messages"] if m.get("role") == "user"][-1]
                what = fake._next(passage, user)
                if what in REFUSALS:
                    code, error = REFUSALS[what]
                    if what == "context":
                        error = dict(error, message=error["message"].format(n=fake.context_chars, asked=len(user)))
                    self._send(code, json.dumps({"error": error}))
                    return
                if what == "html":
                    self._send(200, SIGN_IN_PAGE, content_type="text/html; charset=utf-8")
                    return
                if what == "empty_choices":
                    self._send(200, json.dumps({"id": "x", "object": "chat.completion", "choices": [], "usage": {}}))
                    return
                if what == "429":
                    self._send(
                        429, json.dumps({"error": {"message": "Rate limit reached"}}), {"Retry-After": fake.retry_after}
                    )
                    return
                if what == "500":
                    self._send(500, json.dumps({"error": {"message": "internal error"}}))
                    return
                if what == "timeout":
                    time.sleep(fake.timeout_sleep)
                    what = "ok"
                if fake.delay:
                    time.sleep(fake.delay)
                finish = "stop"
                content = fake.reply(body["messages"]) if fake.reply else \
                    json.dumps({"examples": examples_for(passage, fake.n_examples)})
                if what == "invalid_json":
                    content = "Sure! Here are the examples: {instruction: explain the model, output: it is a model}"
                elif what == "truncated":
                    content, finish = content[: len(content) * 2 // 3], "length"
                elif what == "empty":
                    content = ""
                resp = {"id": f"chatcmpl-{pid}", "object": "chat.completion", "created": int(time.time()),
                        "model": body.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                     "finish_reason": finish}],
                        "usage": {"prompt_tokens": len(json.dumps(body["messages"])) // 4,
                                  "completion_tokens": len(content) // 4,
                                  "total_tokens": len(json.dumps(body["messages"])) // 4 + len(content) // 4}}
                if what == "trickle":
                    self._trickle(json.dumps(resp).encode())
                elif self._send(200, json.dumps(resp)):
                    with fake._lock:
                        fake.delivered[pid] += 1

            def _trickle(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for i in range(len(data)):
                    try:
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(fake.trickle_s)

        return Handler

