"""A real OpenAI-compatible server on 127.0.0.1: ``transformers serve`` (transformers' own FastAPI server,
run offline) with a local model folder, for the end-to-end tests of the teacher's grades and the judge.

``transformers serve`` needs the ``openai`` package (pinned in requirements.txt, dev). The model is
loaded at start (``FORCE_MODEL``); requests name it by its folder."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TransformersServe:
    """``with TransformersServe(model_dir) as srv:`` ``srv.base_url`` and ``srv.model`` for an HttpTeacher."""

    def __init__(self, model_dir: str | os.PathLike, start_timeout: float = 240.0):
        self.model = str(model_dir)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"transformers_serve_{self.port}.log", "w")
        self.proc = subprocess.Popen([exe, "serve", self.model, "--host", "127.0.0.1", "--port", str(self.port),
                                      "--device", "cpu", "--log-level", "warning"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        t0 = time.time()
        while time.time() - t0 < self.start_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited ({self.proc.returncode}); see {self.log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.__exit__()
        raise RuntimeError(f"transformers serve did not answer within {self.start_timeout:.0f}s; see {self.log.name}")

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
