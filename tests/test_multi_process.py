"""The training entry point under several processes (DDP through torchrun, gloo on the CPU):
the same code path `accelerate launch` takes on several GPUs, and checkpoints that move between
world sizes (saved with 2 processes, resumed on 1, and the other way round)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.common.resources import chitchat_conversations
from helpers.core.jsonl import write_jsonl

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).with_name("torchrun")


def launch(cfg_path, nproc):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if nproc == 1:
        cmd = [sys.executable, "-m", "helpers.train.loop", str(cfg_path)]
    else:
        cmd = [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_port", "29517", "-m", "helpers.train.loop", str(cfg_path)]
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
    steps = [json.loads(l)["step"] for l in (out / "log_history.jsonl").read_text().splitlines() if '"loss"' in l]
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
