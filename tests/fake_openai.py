"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol, for tests.

``POST /v1/chat/completions`` with a bearer key answers ``chat.completion`` objects with ``usage``.
The answer to a passage is a JSON object of examples built from the passage's own words (not
copies of it), so the teacher's validation keeps them. ``plan`` scripts misbehaviour for the
first requests, one entry per request in arrival order: ``"429"`` (with ``Retry-After``),
``"500"``, ``"timeout"`` (answers after the client has given up), ``"invalid_json"``,
``"truncated"`` (cut mid-object, ``finish_reason: "length"``), ``"empty"``, ``"ok"``. ``delay``
slows every answer (for the kill test). The server counts requests and delivered answers per
passage, so a test can prove nothing was asked twice.
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
                 timeout_sleep: float = 3.0, n_examples: int = 2):
        self.plan = list(plan or [])
        self.delay, self.retry_after, self.timeout_sleep, self.n_examples = (
            delay,
            retry_after,
            timeout_sleep,
            n_examples,
        )
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

    def _next(self) -> str:
        with self._lock:
            return self.plan.pop(0) if self.plan else "ok"

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body: bytes | str, headers: dict | None = None) -> bool:
                data = body.encode() if isinstance(body, str) else body
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
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
                what = fake._next()
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
                content = json.dumps({"examples": examples_for(passage, fake.n_examples)})
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
                if self._send(200, json.dumps(resp)):
                    with fake._lock:
                        fake.delivered[pid] += 1

        return Handler

