"""The gated-model check: the exact steps before any download, no network offline, and the Hub's
answers read right (a real HTTP server on 127.0.0.1 speaking the Hub's model-info and auth-check API)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers.common.access import ModelAccessError, check_model_access
from helpers.common.models import EMBEDDED_DEFAULT, ModelLoadError, resolve_model_path
from helpers.train import TrainConfig

GATED = "meta-llama/Llama-3.2-1B-Instruct"
GRANTED = "hf_granted_not_secret"


@pytest.fixture
def hub():
    """A Hub on 127.0.0.1: repositories under meta-llama/ are gated, ``GRANTED`` may read them; it
    records every request path."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            parts = self.path.split("?")[0].strip("/").split("/")  # api, models, owner, name[, auth-check]
            repo = "/".join(parts[2:4])
            gated = "manual" if repo.startswith("meta-llama/") else False
            if parts[-1] == "auth-check":
                if gated and self.headers.get("Authorization") != f"Bearer {GRANTED}":
                    return self._send(403, {"error": "Access to this model is restricted."},
                                      {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access restricted"})
                return self._send(200, {})
            self._send(200, {"id": repo, "modelId": repo, "gated": gated, "private": False, "sha": "0" * 40,
                             "tags": [], "siblings": []})

        def _send(self, status, body, headers=None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_token(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)


@pytest.fixture
def online(monkeypatch):
    """The Hub may be asked (the suite runs with HF_HUB_OFFLINE=1)."""
    import huggingface_hub.constants as c
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)


def test_gated_model_without_token_offline_gets_the_steps_and_no_request(no_token, hub, monkeypatch):
    url, seen = hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelAccessError) as exc:
        check_model_access(GATED, endpoint=url)
    text = str(exc.value)
    assert f"https://huggingface.co/{GATED}" in text and "HF_TOKEN" in text and "Colab" in text
    assert "no HF_TOKEN is set" in text and "embedded/smollm2-135m-instruct" in text
    assert seen == []  # offline: the Hub is never asked
    # the loader asks the same before any download, and the error is a ModelLoadError
    with pytest.raises(ModelLoadError, match="Accept its licence"):
        resolve_model_path(GATED)
    # a notebook stops when it builds its config, before any install or download
    with pytest.raises(ModelAccessError, match="HF_TOKEN"):
        TrainConfig.from_params({"MODEL_NAME": GATED}, environ={})


def test_embedded_model_folder_and_token_pass_without_network(no_token, hub, tmp_path, monkeypatch, online):
    url, seen = hub
    check_model_access(EMBEDDED_DEFAULT, endpoint=url)
    (tmp_path / "config.json").write_text("{}")
    check_model_access(str(tmp_path), endpoint=url)
    assert seen == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_model_access(GATED, token="hf_any_not_secret", endpoint=url)  # offline with a token: let the loader try
    assert seen == []


def test_online_the_hub_says_gated_and_whether_the_token_may_read(no_token, hub, online):
    url, seen = hub
    with pytest.raises(ModelAccessError, match="no HF_TOKEN is set"):
        check_model_access("meta-llama/Llama-3.1-8B-Instruct", endpoint=url)
    with pytest.raises(ModelAccessError, match="has not been granted access"):
        check_model_access("meta-llama/Llama-3.1-8B-Instruct", token="hf_refused_not_secret", endpoint=url)
    check_model_access("meta-llama/Llama-3.1-8B-Instruct", token=GRANTED, endpoint=url)
    check_model_access("open-org/open-model", endpoint=url)  # not gated: no token needed
    assert any(p.endswith("/auth-check") for p in seen) and any("open-org/open-model" in p for p in seen)


def test_unreachable_hub_leaves_the_explaining_to_the_loader(no_token, online):
    check_model_access("some-org/some-model", endpoint="http://127.0.0.1:9")  # nothing listens there
