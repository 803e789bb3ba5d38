"""The training entry point (helpers/train/loop.py) on the real embedded model: loss falls, a run
killed by SIGKILL resumes to the same adapter, shards are tracked, bad input is explained before the
model loads, and the script runs under several processes (DDP through torchrun, gloo on the CPU:
the path `accelerate launch` takes on several GPUs), its checkpoints moving between world sizes."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import helpers.train.loop
from helpers.common.checkpoints import COMPLETE_MARKER, find_resume_checkpoint, verify_checkpoint
from helpers.common.resources import chitchat_conversations
from helpers.common.run import RunDir
from helpers.core.config import ConfigError
from helpers.core.jsonl import DataError, write_jsonl
from helpers.train import TrainConfig, train
from helpers.train.loop import main, whole_run_train_loss
from tiny_train import ROOT, TINY, adapter_tensors, cfg_for, write_convs

TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture(scope="module")
def convs(tmp_path_factory):
    return write_convs(tmp_path_factory.mktemp("data"))


def test_training_lowers_validation_loss(tmp_path, convs):
    r = train(cfg_for(tmp_path / "run", convs, max_steps=8, eval_fraction=0.2, eval_steps=4, save_steps=4))
    m = r.metrics
    assert m["steps"] == 8 and m["start_eval_loss"] > m["eval_loss"], m
    assert (r.adapter_dir / "adapter_model.safetensors").exists() and (r.adapter_dir / "tokenizer.json").exists()
    assert r.plot and r.plot.exists()
    assert m["data"]["train"]["kept"] == 32 and m["data"]["validation"]["kept"] == 8
    saved = json.loads((r.output_dir / "run.json").read_text())["metrics"]  # the run's manifest
    assert RunDir(r.output_dir).metrics == saved and saved["steps"] == 8
    assert saved["eval_perplexity"] < saved["start_perplexity"]


def _run_script(cfg_path, env=None):
    return subprocess.Popen([sys.executable, "-m", "helpers.train.loop", str(cfg_path)], cwd=ROOT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_after_checkpoint(cfg_path, ckpt_root, step, extra_delay):
    """Start a training process and SIGKILL it once checkpoint-<step> is complete (+ a delay)."""
    p = _run_script(cfg_path)
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:
        if (ckpt_root / f"checkpoint-{step}" / COMPLETE_MARKER).exists():
            time.sleep(extra_delay)
            break
        time.sleep(0.05)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    out = p.communicate()[0]
    return p.returncode, out


def test_sigkill_at_random_points_then_resume_matches_uninterrupted(tmp_path, convs):
    """CPU, deterministic: an interrupted-and-resumed run ends with the same adapter and losses."""
    steps, save = 10, 2
    base = dict(TINY, DATASET_PATH=str(convs), MAX_STEPS=steps, SAVE_STEPS=save, EVAL_FRACTION=0.0, SEED=7)
    ref_cfg = dict(base, OUTPUT_DIR=str(tmp_path / "ref"))
    (tmp_path / "ref.json").write_text(json.dumps(ref_cfg))
    p = _run_script(tmp_path / "ref.json")
    out = p.communicate()[0]
    assert p.returncode == 0, out[-3000:]
    ref = adapter_tensors(tmp_path / "ref" / "adapter")
    ref_history = json.loads((tmp_path / "ref" / "log_history.json").read_text())
    ref_losses = {h["step"]: h["loss"] for h in ref_history if "loss" in h}

    rng = random.Random(int(os.environ.get("KILL_SEED", "1")))
    run_dir = tmp_path / "killed"
    cfg = dict(base, OUTPUT_DIR=str(run_dir))
    (tmp_path / "killed.json").write_text(json.dumps(cfg))
    kill_steps = sorted(rng.sample(range(save, steps, save), 2))
    for k in kill_steps:
        code, out = _kill_after_checkpoint(tmp_path / "killed.json", run_dir / "checkpoints", k, rng.uniform(0, 1.0))
        assert code == -signal.SIGKILL, f"process was not killed at step {k}: {out[-2000:]}"
        newest = find_resume_checkpoint(run_dir / "checkpoints", run_dir / "checkpoints", log=lambda *_: None)
        assert newest is not None and int(newest.name.split("-")[1]) >= k  # lost at most the steps since it
    p = _run_script(tmp_path / "killed.json")
    out = p.communicate()[0]
    assert p.returncode == 0, out[-3000:]
    assert "Resuming from" in out
    got = adapter_tensors(run_dir / "adapter")
    assert got.keys() == ref.keys()
    for name in ref:
        assert torch.allclose(got[name], ref[name], atol=1e-6, rtol=1e-5), name
    losses = {}
    for line in (run_dir / "log_history.jsonl").read_text().splitlines():
        h = json.loads(line)
        if "loss" in h:
            losses[h["step"]] = h["loss"]  # a step redone after a kill logs again: keep the last
    assert set(losses) == set(ref_losses)
    for s in ref_losses:
        assert abs(losses[s] - ref_losses[s]) < 1e-4 * max(1.0, abs(ref_losses[s])), (s, losses[s], ref_losses[s])


@pytest.mark.parametrize("schedule", [dict(max_steps=6), dict(max_steps=-1, num_train_epochs=1.5, rows=8)],
                         ids=["max-steps", "epochs"])
def test_a_run_complete_in_its_checkpoint_is_not_trained_again(tmp_path, convs, schedule):
    """The runtime is lost after the last checkpoint (step 6 of 6), before the adapter and metrics are
    written, and the Drive copy of that checkpoint is damaged: the rerun says the run is complete and
    trains nothing (the Trainer alone would train a step 7), writes the same adapter, metrics and plot
    from the local checkpoint, and leaves a verified checkpoint-6 on Drive. A rerun of the finished
    run then returns its record as it is."""
    schedule = dict(schedule)
    data = convs
    if schedule.pop("rows", None):  # 8 rows, 4 steps an epoch: 1.5 epochs end mid-epoch at step 6
        data = tmp_path / "eight.jsonl"
        write_jsonl(data, chitchat_conversations()[:8])
    drive, local = tmp_path / "drive", tmp_path / "local"
    cfg = cfg_for(drive, data, save_steps=3, eval_fraction=0.0, checkpoint_dir=str(local), **schedule)
    first = train(cfg)
    ref, ref_metrics = adapter_tensors(first.adapter_dir), first.metrics
    assert ref_metrics["steps"] == 6
    shutil.rmtree(first.adapter_dir)  # lost with the runtime: what the run writes after its last checkpoint
    manifest = json.loads((drive / "run.json").read_text())
    del manifest["metrics"]
    (drive / "run.json").write_text(json.dumps(manifest))
    (drive / "log_history.json").unlink()
    (drive / "loss.png").unlink()
    weights = drive / "checkpoints" / "checkpoint-6" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert verify_checkpoint(weights.parent) is not None

    said = []
    again = train(cfg, log=said.append)
    assert any("Run already complete: checkpoint-6" in m and "nothing to train" in m for m in said), said
    assert not any(m.startswith("Done: 7") for m in said) and any(m.startswith("Done: 6 steps") for m in said)
    m = RunDir(drive).metrics
    assert m["steps"] == again.metrics["steps"] == 6
    assert m["train_loss"] == ref_metrics["train_loss"]
    assert not [c for d in (local, drive / "checkpoints") for c in d.glob("checkpoint-7*")]
    got = adapter_tensors(again.adapter_dir)
    assert got.keys() == ref.keys() and all(torch.equal(got[n], ref[n]) for n in ref)
    losses = [(h["step"], h["loss"]) for h in first.log_history if "loss" in h]
    assert (drive / "loss.png").exists() and [(h["step"], h["loss"]) for h in RunDir(drive).history()
                                              if "loss" in h] == losses
    assert verify_checkpoint(weights.parent) is None  # the damaged Drive copy was replaced

    said.clear()
    third = train(cfg, log=said.append)
    assert any("Run already complete" in m for m in said) and not any(m.startswith("Done") for m in said), said
    assert third.metrics == RunDir(drive).metrics == m  # its record as it was, train time included


def test_resume_folder_from_another_model_or_config_is_refused(tmp_path, convs):
    train(cfg_for(tmp_path / "run", convs, max_steps=2, save_steps=2, eval_fraction=0.0))
    with pytest.raises(ConfigError, match="lora_r: folder has 4, this run 8"):
        train(cfg_for(tmp_path / "run", convs, max_steps=4, save_steps=2, eval_fraction=0.0, lora_r=8))


def test_shards_are_trained_once_each_in_order(tmp_path, convs):
    kw = dict(max_steps=2, save_steps=2, eval_fraction=0.0, num_shards=2)
    r0 = train(cfg_for(tmp_path / "sh", convs, **kw))
    r1 = train(cfg_for(tmp_path / "sh", convs, **kw))
    assert (r0.shard, r1.shard) == (0, 1)
    assert r1.metrics["config"]["init_adapter"].endswith("shard-000/adapter")  # continues shard 0's adapter
    ledger = json.loads((tmp_path / "sh" / "run.json").read_text())["shards"]["done"]
    assert RunDir(tmp_path / "sh").shards_done() == ledger
    assert set(ledger) == {"0", "1"} and ledger["0"]["rows"] == 20
    with pytest.raises(ConfigError, match="All 2 shards"):
        train(cfg_for(tmp_path / "sh", convs, **kw))
    with pytest.raises(ConfigError, match="Shard 0 of 2 was already trained"):
        train(cfg_for(tmp_path / "sh", convs, shard_index=0, **{k: v for k, v in kw.items()}))


def test_bad_input_is_explained(tmp_path, convs):
    with pytest.raises(DataError, match="does not exist"):
        train(cfg_for(tmp_path / "x", tmp_path / "missing.jsonl", max_steps=1))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{not json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not a JSON object"):
        train(cfg_for(tmp_path / "y", bad, max_steps=1))
    rows = [{"instruction": "Say hi", "output": ""}] * 3
    write_jsonl(tmp_path / "empty.jsonl", rows)
    with pytest.raises(DataError, match="no usable rows"):
        train(cfg_for(tmp_path / "z", tmp_path / "empty.jsonl", max_steps=1, eval_fraction=0.0))


def test_a_list_in_a_text_field_is_rejected_naming_the_row_before_the_model_loads(tmp_path, convs, monkeypatch):
    rows = chitchat_conversations()[:6]
    flat = [{"instruction": r["messages"][0]["content"], "input": "", "output": r["messages"][1]["content"]}
            for r in rows]
    flat[3]["output"] = [flat[3]["output"], "a second reply"]  # a list where text belongs
    flat[4]["input"] = {"context": flat[4]["input"]}
    write_jsonl(tmp_path / "typed.jsonl", flat)
    loads = []
    real = helpers.train.loop.load_model
    monkeypatch.setattr(helpers.train.loop, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    with pytest.raises(DataError) as err:
        train(cfg_for(tmp_path / "t", tmp_path / "typed.jsonl", max_steps=1, eval_fraction=0.0))
    msg = str(err.value)
    assert "typed.jsonl row 3: not text: 'output' is a list" in msg and "row 4: not text: 'input' is a dict" in msg
    assert loads == []  # the model was never loaded
    assert not (tmp_path / "t" / "checkpoints").exists()


def test_whole_run_train_loss_weights_each_log_by_its_steps():
    """The manifest's train loss: each logged loss (the mean since the previous log) weighted by the
    steps it covers; a step logged twice (redone after a kill) counts once, with its last loss."""
    hist = [{"loss": 3.0, "step": 2}, {"eval_loss": 9.0, "step": 2}, {"loss": 2.0, "step": 3},
            {"loss": 1.0, "step": 6}, {"loss": 0.5, "step": 6}]
    assert whole_run_train_loss(hist) == pytest.approx((3.0 * 2 + 2.0 * 1 + 0.5 * 3) / 6)
    assert whole_run_train_loss([{"eval_loss": 1.0, "step": 4}]) is None


def test_main_help_lists_every_setting(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "python -m helpers.train config.json" in out
    assert f"TrainConfig, all {len(TrainConfig.field_names())} settings:" in out and "learning_rate" in out


# ----------------------------------------------------------------------------------------------
# Several processes: `python -m helpers.train.loop` alone and under torchrun
# ----------------------------------------------------------------------------------------------

def launch(cfg_path, nproc):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if nproc == 1:
        cmd = [sys.executable, "-m", "helpers.train", str(cfg_path)]
    else:
        cmd = [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_port", "29517", "-m", "helpers.train",
               str(cfg_path)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    return p.stdout + p.stderr


def write_cfg(tmp, name, out, steps, **extra):
    cfg = dict(MODEL_NAME="embedded/smollm2-135m-instruct", QUANTIZATION="none", MAX_SEQ_LEN=64,
               PER_DEVICE_BATCH_SIZE=2, GRADIENT_ACCUMULATION_STEPS=1, LEARNING_RATE=1e-3, WARMUP_RATIO=0.0,
               LOGGING_STEPS=1, REPORT_TO="none", GRADIENT_CHECKPOINTING=False, LORA_R=4, LORA_ALPHA=8,
               TARGET_MODULES="q_proj,v_proj", EVAL_STEPS=0, EVAL_FRACTION=0.0, SAVE_STEPS=2, MAX_STEPS=steps,
               DATASET_PATH=str(tmp / "train.jsonl"), OUTPUT_DIR=str(out))
    cfg.update(extra)
    p = tmp / f"{name}.json"
    p.write_text(json.dumps(cfg))
    return p


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    if not TORCHRUN.exists():
        pytest.skip("torchrun not found beside the Python interpreter")
    d = tmp_path_factory.mktemp("mp")
    write_jsonl(d / "train.jsonl", chitchat_conversations()[:40])
    return d


@pytest.mark.parametrize("first,second", [(2, 1), (1, 2)])
def test_checkpoint_moves_between_world_sizes(tmp, first, second):
    out = tmp / f"run_{first}to{second}"
    log1 = launch(write_cfg(tmp, f"a{first}", out, 4), first)
    state = json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    rng_files = sorted(p.name for p in (out / "checkpoints" / "checkpoint-4").glob("rng_state*.pth"))
    assert rng_files == (["rng_state_0.pth", "rng_state_1.pth"] if first == 2 else ["rng_state.pth"])
    assert log1.count("Done: 4 steps") == 1  # only rank 0 reports and writes the run's files
    metrics = json.loads((out / "run.json").read_text())["metrics"]
    assert metrics["world_size"] == first and state["global_step"] == 4
    log2 = launch(write_cfg(tmp, f"b{first}", out, 6), second)
    assert "Resuming from" in log2 and "checkpoint-4" in log2
    metrics = json.loads((out / "run.json").read_text())["metrics"]
    assert metrics["steps"] == 6 and metrics["world_size"] == second
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    steps = [json.loads(line)["step"] for line in (out / "log_history.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert steps[:4] == [1, 2, 3, 4] and steps[-2:] == [5, 6]  # steps 5-6 trained after the move, not 1-6 again


def test_packed_rows_under_ddp(tmp):
    """PACKING (on by default) under DDP: every rank packs the same rows and collates its own
    micro-batches for the per-document mask; the run trains and reports the packing."""
    out = tmp / "run_packed"
    log = launch(write_cfg(tmp, "packed", out, 2, MAX_SEQ_LEN=256, SAVE_STEPS=100), 2)
    metrics = json.loads((out / "run.json").read_text())["metrics"]
    pk = metrics["data"]["train"]["packing"]
    assert metrics["world_size"] == 2 and metrics["steps"] == 2 and pk["kernel"] == "mask"
    assert pk["rows"] < pk["examples"] == 40 and log.count("Packing kernel: mask") == 2  # each rank chose it
