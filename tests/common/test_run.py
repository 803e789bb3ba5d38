"""helpers.common.run: the run folder and its manifest, on a real trained run of the embedded model."""
import json
import shutil

import pytest

from helpers.chat.session import ChatError, chat_model_name
from helpers.core.config import ConfigError
from helpers.evaluation.metrics import EvalError
from helpers.evaluation.config import default_test_path
from helpers.chat.export import ExportError
from helpers.common.resources import chitchat
from helpers.common.models import ModelLoadError
from helpers.common.run import MANIFEST_FILE, RunDir, check_adapter, is_adapter
from helpers.train import TrainConfig

EMBEDDED = "embedded/smollm2-135m-instruct"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of notebook 04's shape: outputs/<name>/ with adapter/, run.json and the log."""
    from helpers.train import train
    out = tmp_path_factory.mktemp("outputs") / "sft"
    cfg = TrainConfig(model_name=EMBEDDED, dataset_path=str(chitchat("train")), output_dir=str(out),
                      quantization="none", max_steps=2, per_device_batch_size=2, gradient_accumulation_steps=1,
                      max_seq_len=64, max_rows=10, eval_fraction=0.2, eval_steps=2, save_steps=2, learning_rate=1e-3,
                      warmup_ratio=0.0, lora_r=4, lora_alpha=8, logging_steps=1, report_to="none",
                      gradient_checkpointing=False)
    result = train(cfg)
    assert result.output_dir == out
    return RunDir.of(result.adapter_dir)


def test_a_finished_run_knows_itself(trained):
    assert is_adapter(trained.adapter) and trained.adapter.name == "adapter"
    assert RunDir.of(trained.path).path == trained.path  # the run folder or its adapter: the same run
    m = trained.metrics
    assert m["steps"] >= 1 and m["model_name"] == EMBEDDED == trained.base_model
    assert trained.quantization == m["quantization"] and trained.dataset_path == m["config"]["dataset_path"]
    assert set(json.loads(trained.manifest_path.read_text())) >= {"signature", "metrics"}
    history = trained.history()
    assert history[0]["step"] == 0 and "eval_loss" in history[0]  # the loss before training comes first
    line = trained.describe()
    assert trained.name in line and f"{m['steps']} step" in line and EMBEDDED in line
    # every reader takes its facts from the manifest
    assert default_test_path(trained.adapter) == default_test_path(trained.path)
    assert default_test_path(trained.adapter).name == "test.jsonl"
    assert chat_model_name("", str(trained.adapter)) == EMBEDDED


def test_a_folder_written_by_an_earlier_version_is_read(trained, tmp_path):
    """Runs on Drive from before the manifest (metrics.json, run_signature.json, shards.json,
    start_eval.json, sweep_run.json) keep resuming and describing themselves."""
    old = tmp_path / "old"
    shutil.copytree(trained.path, old)
    manifest = json.loads((old / MANIFEST_FILE).read_text())
    (old / MANIFEST_FILE).unlink()
    (old / "metrics.json").write_text(json.dumps(manifest["metrics"]))
    (old / "run_signature.json").write_text(json.dumps(manifest["signature"]))
    (old / "shards.json").write_text(json.dumps({"done": {"0": {"finished": "yesterday"}}}))
    (old / "start_eval.json").write_text("{not json")  # unreadable: knows nothing, breaks nothing
    run = RunDir.of(old / "adapter")
    assert run.path == old and run.metrics == manifest["metrics"] and run.get("start_eval") is None
    assert run.next_shard(2) == 1
    with pytest.raises(ConfigError, match="Shard 0 of 2 was already trained"):
        run.next_shard(2, 0)
    cfg = TrainConfig(**{k: v for k, v in manifest["metrics"]["config"].items() if k in TrainConfig.field_names()})
    run.check_signature(cfg, resuming=True)  # the same settings: accepted, and now in run.json
    with pytest.raises(ConfigError, match="lora_r: folder has"):
        run.check_signature(cfg.replace(lora_r=cfg.lora_r * 2), resuming=True)
    now = json.loads((old / MANIFEST_FILE).read_text())
    assert now["metrics"] == manifest["metrics"] and now["shards"]["done"]["0"]["finished"] == "yesterday"


def test_the_manifest_is_replaced_whole_and_a_damaged_one_is_named(tmp_path):
    run = RunDir(tmp_path / "r")
    assert not run.exists() and run.metrics == {} and run.history() == []
    assert "not finished" in run.describe()
    run.update("start_eval", {"eval_loss": 3.5})
    run.update("metrics", {"steps": 2, "eval_loss": 3.1, "first_eval_loss": 3.5})
    assert run.exists() and run.get("start_eval") == {"eval_loss": 3.5} and run.metrics["steps"] == 2
    assert "eval loss 3.500 -> 3.100" in run.describe()
    assert not list(run.path.glob(".*tmp"))  # written to a temporary file, then renamed
    with pytest.raises(KeyError, match="not a section"):
        run.update("metricz", {})
    run.manifest_path.write_text('{"metrics": {"steps": 2}')  # cut short (a kill during a copy to Drive)
    with pytest.raises(ConfigError, match=r"run\.json is damaged"):
        run.metrics


def test_one_adapter_check_for_every_step(trained, tmp_path):
    """The missing-adapter and wrong-base refusals are the same everywhere, in each step's own error."""
    for error in (EvalError, ExportError, ChatError, ModelLoadError):
        with pytest.raises(error, match="Run notebook 04"):
            check_adapter(tmp_path / "nothing", EMBEDDED, error=error)
    assert check_adapter(trained.adapter, error=EvalError).model_name == EMBEDDED
    assert check_adapter(trained.adapter, EMBEDDED, error=EvalError).run.path == trained.path
    other = tmp_path / "other"
    shutil.copytree(trained.path, other)
    with pytest.raises(ExportError, match="trained on 'embedded/smollm2-135m-instruct', not on 'meta-llama/"):
        check_adapter(other / "adapter", "meta-llama/Llama-3.2-1B-Instruct", error=ExportError)
    # an adapter alone (no run around it) that does not record its base
    bare = tmp_path / "bare"
    shutil.copytree(trained.adapter, bare)
    cfg = json.loads((bare / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = None
    (bare / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(EvalError, match="does not record its base model"):
        check_adapter(bare, error=EvalError)
    assert check_adapter(bare, error=ChatError, need_base=False).model_name == ""
    assert RunDir.of(bare).path == tmp_path  # an adapter folder alone: its parent is asked, and knows nothing
    assert not RunDir.of(bare).metrics


def test_test_set_follows_the_run(trained, tmp_path):
    assert default_test_path(trained.adapter) == chitchat("test")  # beside the data it was trained on
    with pytest.raises(EvalError, match="says which dataset"):
        default_test_path(tmp_path / "nowhere" / "adapter")
