"""helpers.core.net: the Retry-After parser (seconds, HTTP dates, garbage), the backoff policy of arXiv and of the
teacher, and the httpx client factory against a real HTTP server on 127.0.0.1 (User-Agent, redirects,
timeouts, a body cut short)."""
import datetime as dt
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers.core.net import Backoff, client, parse_retry_after, request_within, transport_errors

NOW = dt.datetime(2026, 4, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("value, seconds", [
    ("7", 7.0), (" 120 ", 120.0), ("0", 0.0), ("1.5", 1.5),
    ("Wed, 01 Apr 2026 12:00:30 GMT", 30.0),  # IMF-fixdate
    ("Wednesday, 01-Apr-26 12:01:00 GMT", 60.0),  # RFC 850
    ("Wed Apr  1 12:00:05 2026", 5.0),  # asctime: no zone, read as UTC
    ("Wed, 01 Apr 2026 14:00:10 +0200", 10.0),  # a zone offset is honoured
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: now
])
def test_retry_after_seconds_and_http_dates(value, seconds):
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "nan", "inf", "1e3", "7 seconds", "Wed, 99 Foo"])
def test_retry_after_garbage_is_none(value):
    assert parse_retry_after(value, now=NOW) is None


def test_retry_after_date_against_the_clock():
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 85 <= parse_retry_after(future) <= 90


def test_backoff_policies():
    arxiv = Backoff(5.0)  # doubled, no jitter, no cap, a longer Retry-After wins
    assert [arxiv.delay(k) for k in range(4)] == [5.0, 10.0, 20.0, 40.0]
    assert arxiv.delay(0, retry_after=30.0) == 30.0 and arxiv.delay(2, retry_after=1.0) == 20.0
    teacher = Backoff(2.0, jitter=0.25, cap=120.0, retry_after="replaces")
    assert teacher.delay(0, rand=lambda: 0.0) == 2.0 and teacher.delay(1, rand=lambda: 1.0) == 5.0
    assert all(8.0 <= teacher.delay(2) <= 10.0 for _ in range(50))
    assert teacher.delay(10, rand=lambda: 0.5) == 120.0  # capped
    assert teacher.delay(3, retry_after=1.0) == 1.0 and teacher.delay(0, retry_after=500.0) == 120.0
    with pytest.raises(ValueError, match="retry_after='sometimes'"):
        Backoff(1.0, retry_after="sometimes")


class Server:
    """A tiny real HTTP server: /ua echoes the User-Agent, /moved redirects to /ua, /slow sleeps, /cut
    promises 1000 bytes and sends 10."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/ua")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path == "/slow":
                    time.sleep(1.0)
                if self.path in ("/trickle", "/stall"):  # headers at once, then a byte every 0.3 s, or one and silence
                    self.send_response(200)
                    self.send_header("Content-Length", "40")
                    self.end_headers()
                    for _ in range(40 if self.path == "/trickle" else 1):
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.3)
                    time.sleep(3.0 if self.path == "/stall" else 0)
                    return
                body = (self.headers.get("User-Agent", "") if self.path in ("/ua", "/slow") else "0123456789").encode()
                self.send_response(200)
                self.send_header("Content-Length", "1000" if self.path == "/cut" else str(len(body)))
                if self.path == "/cut":
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if self.path == "/cut":
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def test_client_user_agent_and_redirects(server):
    with client(5.0, user_agent="llama-kit-test/1") as c:
        assert c.get(server.url + "/ua").text == "llama-kit-test/1"
        followed = c.get(server.url + "/moved")
    with client(5.0, follow_redirects=True) as c:
        moved = c.get(server.url + "/moved")
    assert followed.status_code == 302  # not followed unless asked
    assert moved.status_code == 200 and moved.text.startswith("python-httpx/") and str(moved.url).endswith("/ua")


def test_client_timeout_and_cut_body_are_the_retryable_errors(server):
    timeout_error, broken = transport_errors()
    with client(0.3) as c:
        with pytest.raises(timeout_error):
            c.get(server.url + "/slow")
    with client(5.0) as c:
        with pytest.raises(broken):
            c.get(server.url + "/cut")
        with c.stream("GET", server.url + "/cut") as resp:  # streamed: the error comes while reading
            with pytest.raises(broken):
                for _ in resp.iter_bytes(4):
                    pass
    with client(1.0) as c:  # nothing listens there: refused
        with pytest.raises(broken):
            c.get("http://127.0.0.1:9/")
    assert not issubclass(timeout_error, broken[1]) and issubclass(timeout_error, broken[0])


def test_request_within_is_a_deadline_for_the_whole_request(server):
    """httpx's timeout is per read: a byte every 0.3 s would hold it for 12 s. The deadline cuts it at 1 s,
    and a body that stops after its first byte too; a prompt answer comes back whole."""
    timeout_error, _ = transport_errors()
    with client(1.0) as c:
        for path in ("/trickle", "/stall"):
            t0 = time.monotonic()
            with pytest.raises(timeout_error, match="within 1s"):
                request_within(c, "GET", server.url + path, 1.0)
            assert 0.9 <= time.monotonic() - t0 < 1.5, path
        reply = request_within(c, "GET", server.url + "/ua", 1.0)  # the pooled client still works
    assert reply.status_code == 200 and reply.text.startswith("python-httpx/")
