"""Named paths: every file one notebook hands to the next has one name, and the steps that write and
read it agree on it."""
from helpers.common.resources import build_chitchat
from helpers.common.workspace import workspace
from helpers.core.files import PRETRAIN_RUN, SFT_RUN, ArxivFiles, CorpusFiles, DatasetFiles, SweepFiles, cache_dir


def test_workspace_names_each_notebooks_files(workdir):
    ws = workspace(use_drive=False)
    assert ws.arxiv == ArxivFiles(workdir / "data" / "arxiv")
    assert ws.arxiv.manifest.name == "manifest.jsonl" and ws.arxiv.pdfs.parent == ws.arxiv.folder
    assert ws.dataset.train == workdir / "data" / "dataset" / "train.jsonl"
    assert {p.name for p in (ws.dataset.test, ws.dataset.card, ws.dataset.rejects, ws.dataset.chunks,
                             ws.dataset.test_leaked)} == {"test.jsonl", "card.md", "rejects.jsonl", "chunks.jsonl",
                                                         "test_leaked.jsonl"}
    assert ws.corpus == CorpusFiles(workdir / "data" / "corpus") and ws.corpus.pdf_text != ws.corpus.pretrain
    assert ws.sweep() == SweepFiles(workdir / "outputs" / "sweep") and ws.sweep().best.parent == ws.sweep().folder
    assert ws.run(SFT_RUN).path == workdir / "outputs" / SFT_RUN
    assert ws.run(PRETRAIN_RUN).adapter.parent.name == "pretrain"


def test_a_training_file_finds_its_siblings_and_the_corpus(workdir):
    ws = workspace(use_drive=False)
    assert DatasetFiles.beside(ws.dataset.train) == ws.dataset
    assert DatasetFiles.beside(ws.dataset.train).corpus == ws.corpus  # evaluation finds notebook 02's PDF text


def test_what_a_step_writes_is_found_by_its_name(tmp_path):
    build_chitchat(tmp_path / "dataset", n_train=20, n_test=5)
    files = DatasetFiles(tmp_path / "dataset")
    assert files.train.exists() and files.test.exists()
    assert sum(1 for _ in files.train.open()) == 20


def test_cache_follows_its_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMA_KIT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LLAMA_KIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "llama-kit"
