"""Notebook 05's settings: the checks of EvalConfig, and what a config resolves to for a real run
(the held-out set beside the training set, the base model, the output folders) or why it cannot."""
import json
import shutil
from pathlib import Path

import pytest

from helpers.common.resources import chitchat
from helpers.core.config import ConfigError
from helpers.common.workspace import workspace
from helpers.core.files import SFT_RUN
from helpers.dataset import default_dataset
from helpers.evaluation.config import EvalConfig, default_chunks_path, default_test_path, resolve_inputs
from helpers.evaluation.metrics import EvalError
from helpers.evaluation.report import evaluate_adapter

EMBEDDED = "embedded/smollm2-135m-instruct"


def test_config_checks():
    with pytest.raises(ConfigError, match="LONG_PROMPTS"):
        EvalConfig(long_prompts="cut").validate()
    with pytest.raises(ConfigError, match="BOOTSTRAP"):
        EvalConfig(bootstrap=10).validate()
    with pytest.raises(ConfigError, match="FORGETTING_TOLERANCE"):
        EvalConfig(forgetting_tolerance=-0.1).validate()
    with pytest.raises(ConfigError, match="LEAKAGE_THRESHOLD"):
        EvalConfig(leakage_threshold=0).validate()
    EvalConfig().validate()
    assert EvalConfig().run_name == SFT_RUN


def test_missing_adapter_says_run_04(tmp_path):
    with pytest.raises(EvalError, match="Run notebook 04"):
        evaluate_adapter(EvalConfig(adapter_dir=str(tmp_path / "sft" / "adapter")))


def test_adapter_for_another_base(tmp_path, adapter):
    other = tmp_path / "adapter"
    shutil.copytree(adapter, other)
    cfg_path = other / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = "meta-llama/Llama-3.2-1B-Instruct"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(EvalError, match="trained on 'meta-llama/Llama-3.2-1B-Instruct'"):
        evaluate_adapter(EvalConfig(adapter_dir=str(other), model_name=EMBEDDED, quantization="none",
                                    test_path=str(chitchat("test"))))


def test_the_defaults_come_from_the_training_run(adapter, tmp_path):
    """Nothing set but the adapter: the test split beside the run's training set, the base model it
    was trained on, the report in eval/ beside the adapter and its plots under it."""
    assert default_test_path(adapter) == chitchat("test")  # the bundled split sits beside the training file
    inputs = resolve_inputs(EvalConfig(adapter_dir=str(adapter)), None)
    assert inputs.model_name == EMBEDDED and inputs.test_path == chitchat("test")
    assert inputs.out_dir == Path(adapter).parent / "eval" and inputs.plots_dir == inputs.out_dir / "plots"
    assert inputs.template != "" and inputs.system is None
    mine = resolve_inputs(EvalConfig(adapter_dir=str(adapter), test_path=str(tmp_path / "t.jsonl"),
                                     output_dir=str(tmp_path / "o"), template="chatml", system_prompt="Be brief."),
                          tmp_path / "p")
    assert (mine.test_path, mine.out_dir, mine.plots_dir) == (tmp_path / "t.jsonl", tmp_path / "o", tmp_path / "p")
    assert (mine.template, mine.system) == ("chatml", "Be brief.")


def test_retrieval_searches_the_chunks_beside_the_held_out_set_else_notebook_02s(tmp_path, workdir):
    """Held-out rows from notebook 02 search the chunks beside them; rows from elsewhere (the bundled
    conversations, an import) search notebook 02's chunks of the workspace when it wrote some, and
    without any the path beside the rows is kept, so the section names what is missing."""
    from paper_chunks import write_chunks
    rows = [{"chunk_id": "p0", "source": "paper.pdf", "index": 0, "text": "The Bethe lattice of connectivity 3."}]
    ws = workspace(use_drive=False)
    elsewhere = tmp_path / "import" / "test.jsonl"
    elsewhere.parent.mkdir()
    shutil.copy(chitchat("test"), elsewhere)
    assert default_chunks_path(elsewhere, ws) == elsewhere.parent / "chunks.jsonl"  # no chunks anywhere yet
    ws.dataset.chunks.parent.mkdir(parents=True, exist_ok=True)
    write_chunks(ws.dataset.chunks, rows)  # notebook 02's chunks
    assert default_chunks_path(elsewhere, ws) == ws.dataset.chunks
    write_chunks(elsewhere.parent / "chunks.jsonl", rows)
    assert default_chunks_path(elsewhere, ws) == elsewhere.parent / "chunks.jsonl"
    assert default_chunks_path(tmp_path / "x" / "test.jsonl") == tmp_path / "x" / "chunks.jsonl"


def test_without_a_manifest_the_test_path_is_beside_the_default_dataset(tmp_path, workdir):
    """An adapter without a run around it: the test split beside notebook 04's default dataset of the
    workspace, and without a workspace an error that asks for TEST_PATH."""
    ws = workspace(use_drive=False)
    assert default_test_path(tmp_path / "adapter", ws) == chitchat("test")  # no dataset yet: the bundled one
    ws.dataset.train.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(chitchat("train"), ws.dataset.train)  # notebook 02's dataset, here real conversations
    assert default_dataset(ws) == ws.dataset.train
    assert default_test_path(tmp_path / "adapter", ws) == ws.dataset.test
    with pytest.raises(EvalError, match="No TEST_PATH given"):
        default_test_path(tmp_path / "adapter")
