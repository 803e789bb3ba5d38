"""The training entry point on the real embedded model: loss falls, checkpoints survive a SIGKILL,
resume restores everything, shards are tracked, bad input is explained."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.core.config import ConfigError
from helpers.core.jsonl import DataError, write_jsonl
from helpers.common.resources import chitchat_conversations
from helpers.common.checkpoints import COMPLETE_MARKER, copy_checkpoint, find_resume_checkpoint, list_checkpoints
from helpers.common.run import RunDir
from helpers.train.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
EMB = "embedded/smollm2-135m-instruct"
TINY = dict(MODEL_NAME=EMB, QUANTIZATION="none", MAX_SEQ_LEN=64, PER_DEVICE_BATCH_SIZE=2, GRADIENT_ACCUMULATION_STEPS=1,
            LEARNING_RATE=1e-3, WARMUP_RATIO=0.0, LOGGING_STEPS=1, REPORT_TO="none", GRADIENT_CHECKPOINTING=False,
            LORA_R=4, LORA_ALPHA=8, TARGET_MODULES="q_proj,v_proj", EVAL_STEPS=0, SAVE_TOTAL_LIMIT=10)


@pytest.fixture(scope="module")
def convs(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rows = chitchat_conversations()[:40]
    write_jsonl(d / "train.jsonl", rows)
    return d / "train.jsonl"


def cfg_for(tmp, data, **kw):
    params = dict(TINY, DATASET_PATH=str(data), OUTPUT_DIR=str(tmp))
    params.update({k.upper(): v for k, v in kw.items()})
    return TrainConfig.from_params(params, environ={})


def adapter_tensors(folder):
    return load_file(str(Path(folder) / "adapter_model.safetensors"))


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
    ref_losses = {h["step"]: h["loss"] for h in json.loads((tmp_path / "ref" / "log_history.json").read_text()) if "loss" in h}

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


def test_checkpoints_are_copied_to_the_durable_folder_and_pruned(tmp_path, convs):
    cfg = cfg_for(tmp_path / "drive", convs, max_steps=6, save_steps=2, save_total_limit=2, eval_fraction=0.0,
                  checkpoint_dir=str(tmp_path / "local"))
    r = train(cfg)
    durable = [c.name for c in list_checkpoints(tmp_path / "drive" / "checkpoints")]
    assert durable == ["checkpoint-4", "checkpoint-6"]
    assert all((tmp_path / "drive" / "checkpoints" / c / COMPLETE_MARKER).exists() for c in durable)
    assert not list((tmp_path / "drive" / "checkpoints").glob(".*partial"))
    assert r.adapter_dir.parent == tmp_path / "drive"


@pytest.fixture(scope="module")
def drive_run(tmp_path_factory, convs):
    """A finished 6-step run with checkpoints 2, 4, 6 copied to a Drive-like folder, and its adapter."""
    root = tmp_path_factory.mktemp("drive_run")
    cfg = cfg_for(root / "drive", convs, max_steps=6, save_steps=2, eval_fraction=0.0, seed=3,
                  checkpoint_dir=str(root / "local"))
    r = train(cfg)
    return root, r


def _fresh_runtime_copy(drive_run, tmp_path, damage):
    """The durable folder alone (the local disk is gone, as on a new Colab runtime), damaged."""
    import shutil
    root, _ = drive_run
    drive = tmp_path / "drive"
    shutil.copytree(root / "drive", drive)
    shutil.rmtree(drive / "adapter")
    manifest = json.loads((drive / "run.json").read_text())
    del manifest["metrics"]  # the run had not finished when the runtime went
    (drive / "run.json").write_text(json.dumps(manifest))
    damage(drive / "checkpoints" / "checkpoint-6")
    return drive


@pytest.mark.parametrize("damage, why", [
    (lambda c: (c / "adapter_model.safetensors").write_bytes((c / "adapter_model.safetensors").read_bytes()[:5000]),
     "adapter_model.safetensors has 5,000 bytes"),
    (lambda c: (c / "adapter_model.safetensors").unlink(), "no weights in it"),
    (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt is missing"),
], ids=["truncated-adapter", "missing-adapter", "missing-optimizer"])
def test_damaged_durable_checkpoint_is_skipped_and_the_run_falls_back(drive_run, tmp_path, convs, damage, why):
    _, ref = drive_run
    drive = _fresh_runtime_copy(drive_run, tmp_path, damage)
    said = []
    cfg = cfg_for(drive, convs, max_steps=6, save_steps=2, eval_fraction=0.0, seed=3,
                  checkpoint_dir=str(tmp_path / "new-local"))
    r = train(cfg, log=said.append)
    skipped = [m for m in said if m.startswith("Skipping") and "checkpoint-6" in m]
    assert skipped and why in skipped[0], said
    assert r.resumed_from and r.resumed_from.endswith("checkpoint-4")
    assert any("Resuming from" in m and "checkpoint-4" in m for m in said)
    got, want = adapter_tensors(r.adapter_dir), adapter_tensors(ref.adapter_dir)
    for name in want:  # steps 5 and 6 redone from checkpoint 4: the same adapter as the run that was never damaged
        assert torch.allclose(got[name], want[name], atol=1e-6, rtol=1e-5), name
    # the train loss in the manifest covers steps 1-6, not only the 2 steps of this sitting
    m = RunDir(drive).metrics
    assert m["train_loss"] == pytest.approx(ref.metrics["train_loss"], abs=2e-4)
    assert m["train_loss_this_sitting"] != pytest.approx(m["train_loss"], abs=1e-3)


def test_checkpoints_carry_a_manifest_and_verify(drive_run, tmp_path, convs):
    from helpers.common.checkpoints import MANIFEST, verify_checkpoint
    from helpers.train.loop import whole_run_train_loss
    root, ref = drive_run
    ckpt = root / "drive" / "checkpoints" / "checkpoint-6"
    files = json.loads((ckpt / MANIFEST).read_text())["files"]
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= set(files)
    assert verify_checkpoint(ckpt) is None
    # a checkpoint without a manifest (written before it existed) is checked by parsing its files
    import shutil
    old = tmp_path / "checkpoint-6"
    shutil.copytree(ckpt, old)
    (old / MANIFEST).unlink()
    assert verify_checkpoint(old) is None
    (old / "optimizer.pt").write_bytes((ckpt / "optimizer.pt").read_bytes()[:1000])
    assert "optimizer.pt does not load" in verify_checkpoint(old)
    # one flipped byte in the middle of the weights: the sizes agree, the SHA-256 does not
    flipped = tmp_path / "flipped"
    shutil.copytree(ckpt, flipped)
    raw = bytearray((flipped / "adapter_model.safetensors").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (flipped / "adapter_model.safetensors").write_bytes(bytes(raw))
    assert "SHA-256" in verify_checkpoint(flipped)
    with pytest.raises(ConfigError, match="SHA-256"):
        train(cfg_for(tmp_path / "x", convs, resume=str(flipped), max_steps=1))
    hist = json.loads((root / "drive" / "log_history.json").read_text())
    assert whole_run_train_loss(hist) == pytest.approx(ref.metrics["train_loss"], abs=1e-4)


def test_half_copied_checkpoint_is_skipped_and_stale_partials_are_removed(drive_run, tmp_path):
    import shutil
    root, _ = drive_run
    drive = tmp_path / "drive"
    shutil.copytree(root / "drive" / "checkpoints" / "checkpoint-4", drive / "checkpoint-4")
    half = drive / "checkpoint-6"  # a copy that died midway: no marker
    shutil.copytree(root / "drive" / "checkpoints" / "checkpoint-6", half)
    (half / COMPLETE_MARKER).unlink()
    stale = drive / ".checkpoint-6.partial"
    shutil.copytree(root / "drive" / "checkpoints" / "checkpoint-6", stale)
    said = []
    best = find_resume_checkpoint(tmp_path / "local", drive, log=said.append)
    assert best == drive / "checkpoint-4"
    assert any("checkpoint-6" in s and "incomplete" in s for s in said)
    copy_checkpoint(root / "drive" / "checkpoints" / "checkpoint-6", drive, keep=3)  # the next complete copy
    assert not stale.exists() and not list(drive.glob(".*partial"))
    assert find_resume_checkpoint(tmp_path / "local", drive, log=said.append) == drive / "checkpoint-6"


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


def test_pretraining_with_embeddings_at_a_smaller_learning_rate(tmp_path, embedded_dir):
    docs = [{"text": (c["messages"][0]["content"] + " ") * 30} for c in chitchat_conversations()[:12]]
    write_jsonl(tmp_path / "corpus.jsonl", docs)
    cfg = cfg_for(tmp_path / "pt", tmp_path / "corpus.jsonl", mode="pretrain", max_steps=6, save_steps=6,
                  eval_fraction=0.25, train_embeddings=True, embedding_lr_ratio=0.1, eval_steps=6)
    r = train(cfg)
    m = r.metrics
    assert m["data"]["train"]["blocks"] > 0 and m["eval_perplexity"] < m["start_perplexity"]
    saved = adapter_tensors(r.adapter_dir)
    assert any("embed_tokens" in k for k in saved)  # the embeddings were trained and saved
    st = json.loads((r.output_dir / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    lrs = [h["learning_rate"] for h in st["log_history"] if "learning_rate" in h]
    assert lrs  # (group 0's rate is logged; the embedding group's is checked below)
    opt = torch.load(r.output_dir / "checkpoints" / "checkpoint-6" / "optimizer.pt", weights_only=False)
    group_lrs = sorted({g["initial_lr"] for g in opt["param_groups"]})
    assert group_lrs[0] == pytest.approx(cfg.learning_rate * 0.1) and group_lrs[-1] == pytest.approx(cfg.learning_rate)


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
    import helpers.common.models
    rows = chitchat_conversations()[:6]
    flat = [{"instruction": r["messages"][0]["content"], "input": "", "output": r["messages"][1]["content"]}
            for r in rows]
    flat[3]["output"] = [flat[3]["output"], "a second reply"]  # a list where text belongs
    flat[4]["input"] = {"context": flat[4]["input"]}
    write_jsonl(tmp_path / "typed.jsonl", flat)
    loads = []
    real = helpers.common.models.load_model
    monkeypatch.setattr(helpers.common.models, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    with pytest.raises(DataError) as err:
        train(cfg_for(tmp_path / "t", tmp_path / "typed.jsonl", max_steps=1, eval_fraction=0.0))
    msg = str(err.value)
    assert "typed.jsonl row 3: not text: 'output' is a list" in msg and "row 4: not text: 'input' is a dict" in msg
    assert loads == []  # the model was never loaded
    assert not (tmp_path / "t" / "checkpoints").exists()


def test_memory_plan_fits_t4_and_h100_like_the_measured_peaks():
    """plan_memory on the real Llama shapes: a 15 GiB T4 gets checkpointing, an 80 GiB H100 does
    not; predicted peaks are within 10% of the peaks measured on an H100 (bench/RESULTS.md)."""
    from transformers import LlamaConfig
    from helpers.train.memory import plan_memory

    class Shape:  # the loaded model's memory footprint and config are all the plan reads
        def __init__(self, cfg, gib):
            self.config, self.gib = cfg, gib

        def get_memory_footprint(self):
            return self.gib * 2**30

        def parameters(self):
            return iter([])

    l8 = Shape(LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                           num_key_value_heads=8), 5.4)
    cfg = TrainConfig(per_device_batch_size=2, gradient_accumulation_steps=1, max_seq_len=2048)
    t4, h100 = plan_memory(l8, cfg, True, 15.0), plan_memory(l8, cfg, True, 79.2)
    assert t4.gradient_checkpointing and not h100.gradient_checkpointing
    assert abs(t4.trainable_gib - 41_943_040 * 16 / 2**30) < 1e-6  # LoRA r=16 on all 7 projections of the 8B shape
    assert abs(t4.peak_gib - 6.48) / 6.48 < 0.1  # measured: checkpointing (one function per layer), inputs offloaded, fused AdamW
    assert abs(h100.peak_gib - 22.95) / 22.95 < 0.1
    kept = plan_memory(l8, cfg.replace(offload_activations=False), True, 15.0)
    assert abs(kept.peak_gib - 7.26) / 7.26 < 0.1  # measured with the layer inputs kept on the GPU
    tight = plan_memory(l8, TrainConfig(per_device_batch_size=8, gradient_accumulation_steps=2, max_seq_len=2048),
                        True, 10.0)
    assert tight.per_device_batch_size < 8 and tight.per_device_batch_size * tight.gradient_accumulation_steps >= 16
    # sized by tokens: rows of at most 256 tokens (short examples, PACKING=False) keep micro-batch 8
    short = plan_memory(l8, TrainConfig(per_device_batch_size=8, gradient_accumulation_steps=2, max_seq_len=2048),
                        True, 10.0, row_tokens=256)
    assert short.per_device_batch_size == 8 and "8 x 256 tokens" in short.reason
    # what train() plans for: packed rows at MAX_SEQ_LEN (fewer tokens in all: all of them), else the longest example
    from helpers.train.loop import _Data, _row_tokens
    data = _Data([], [{"input_ids": [0] * n} for n in (120, 300, 80)], [], {}, None)
    assert _row_tokens(TrainConfig(max_seq_len=1024), data) == 500
    assert _row_tokens(TrainConfig(max_seq_len=256), data) == 256
    assert _row_tokens(TrainConfig(max_seq_len=1024, packing=False), data) == 300
    # the per-document mask of packed rows on a T4 (4 bytes per entry) counts: 2 rows x 2048^2 x 4 B = 32 MiB
    masked = plan_memory(l8, cfg, True, 15.0, row_tokens=2048, document_mask=True)
    assert abs((masked.activations_gib - t4.activations_gib) - 2 * 2048 ** 2 * 4 / 2**30) < 1e-6
    with pytest.raises(ConfigError, match="does not fit"):
        plan_memory(Shape(l8.config, 30.0), cfg, True, 16.0)


# ----------------------------------------------------------------------------------------------
# Replay: general data mixed into the training stream
# ----------------------------------------------------------------------------------------------
class _SeenData:
    """A TrainerCallback that keeps the token ids the trainer was given to train and validate on."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Seen(TrainerCallback):
            train_ids: list = []
            eval_ids: list = []

            def on_train_begin(self, args, state, control, train_dataloader=None, eval_dataloader=None, **kw):
                self.train_ids = [list(x) for x in train_dataloader.dataset["input_ids"]]
                self.eval_ids = [list(x) for x in eval_dataloader.dataset["input_ids"]] if eval_dataloader else []
        return Seen()


def _arxiv_pages():
    from helpers.common.resources import fixture_pdf
    from helpers.dataset.pdf import extract_pages
    pages, _ = extract_pages(fixture_pdf())
    return [{"text": p} for p in pages if len(p.split()) > 50]


def test_pretraining_with_replay_has_the_share_in_blocks_of_their_own(tmp_path, smol_tokenizer):
    """Domain: the real arXiv paper's pages; replay: the bundled conversations, rendered with the
    chat template. A fifth of the training blocks are replay, every domain block is the domain's
    own packing, no block holds both, and validation is the held-out pages alone."""
    from helpers.core.jsonl import read_jsonl
    from helpers.common.resources import chitchat
    from helpers.train.loop import pack_texts, split_rows
    docs = _arxiv_pages()
    assert len(docs) >= 8
    write_jsonl(tmp_path / "paper.jsonl", docs)
    seen = _SeenData()
    r = train(cfg_for(tmp_path / "pt", tmp_path / "paper.jsonl", mode="pretrain", max_steps=1, save_steps=1,
                      eval_fraction=0.2, replay_share=0.2), callbacks=[seen])
    tok = smol_tokenizer
    train_docs, eval_docs = split_rows(docs, 0.2, 42)
    domain = [b["input_ids"] for b in pack_texts(tok, [d["text"] for d in train_docs], 64)[0]]
    rep = r.metrics["data"]["replay"]
    assert rep["unit"] == "blocks" and rep["domain"] == len(domain) and rep["source"].startswith("the bundled")
    n_replay = round(len(domain) * 0.2 / 0.8)
    assert rep["replay"] == n_replay > 10 and rep["tokens"] == 64 * n_replay
    assert len(seen.train_ids) == len(domain) + n_replay
    assert abs(n_replay / len(seen.train_ids) - 0.2) < 0.01
    left = list(seen.train_ids)
    for b in domain:  # every domain block, as the domain alone packs it
        left.remove(b)
    assert len(left) == n_replay and all(len(b) == 64 for b in left)
    # each replay block, cut at EOS, is pieces of single conversations (never a piece of the paper)
    convs = [tok(tok.apply_chat_template(c["messages"], tokenize=False), add_special_tokens=False)["input_ids"]
             for c in read_jsonl(chitchat("train"))]
    hay = " | " + " | ".join(" ".join(map(str, c)) for c in convs) + " | "
    paper = " | " + " | ".join(" ".join(map(str, b)) for b in domain) + " | "
    eos = tok.eos_token_id
    for b in left:
        pieces, cur = [], []
        for t in b:
            if t == eos:
                pieces.append(cur)
                cur = []
            else:
                cur.append(t)
        pieces.append(cur)
        for p in pieces:
            if len(p) >= 1:
                assert f" {' '.join(map(str, p))} " in hay, tok.decode(b)
        longest = max(pieces, key=len)
        if len(longest) >= 12:
            assert f" {' '.join(map(str, longest))} " not in paper
    assert sum("<|im_start|>user" in tok.decode(b) for b in left) > n_replay // 2  # the chat template's turns
    # validation: the held-out pages alone
    assert seen.eval_ids == [b["input_ids"] for b in pack_texts(tok, [d["text"] for d in eval_docs], 64)[0]]
    assert r.metrics["data"]["validation"]["documents"] == len(eval_docs)


def test_sft_replay_rows_are_trained_and_validation_rows_are_never_drawn(tmp_path, convs, smol_tokenizer):
    """SFT with a replay file holding the run's own validation conversations (under other ids) and
    30 bundled conversations: the replay examples are bundled ones, encoded like any row, counted in
    the data report; the validation set is the held-out rows alone, and none of them is trained on."""
    from helpers.core.jsonl import read_jsonl
    from helpers.common.resources import chitchat
    from helpers.common.prompts import encode
    from helpers.train.loop import split_rows
    rows = read_jsonl(convs)
    train_part, val_part = split_rows(rows, 0.2, 42)
    general = read_jsonl(chitchat("train"))[:30]
    write_jsonl(tmp_path / "replay.jsonl", [dict(r, id=f"copy-{i}") for i, r in enumerate(val_part)] + general)
    seen = _SeenData()
    r = train(cfg_for(tmp_path / "sft", convs, max_steps=2, save_steps=2, eval_fraction=0.2, eval_steps=2,
                      replay_share=0.25, replay_path=str(tmp_path / "replay.jsonl")), callbacks=[seen])
    d = r.metrics["data"]
    n_domain = d["train"]["kept"]
    want = round(n_domain * 0.25 / 0.75)
    assert d["replay"]["replay"] == want and d["replay"]["domain"] == n_domain and d["replay"]["unit"] == "examples"
    assert d["replay"]["excluded"] >= len(val_part) and d["replay"]["source"] == str(tmp_path / "replay.jsonl")
    assert d["replay"]["trained_tokens"] > 0 and d["replay"]["passes"] == 1
    enc = lambda row: encode(smol_tokenizer, row, "auto", 64)["input_ids"]  # noqa: E731
    domain = [enc(x) for x in train_part]
    val = [enc(x) for x in val_part]
    bundled = [enc(x) for x in general]
    assert len(seen.train_ids) == n_domain + want
    replayed = [x for x in seen.train_ids if x not in domain]
    assert len(replayed) == want and all(x in bundled for x in replayed)
    assert not any(v in seen.train_ids for v in val)  # the validation conversations are never trained on
    assert seen.eval_ids == val and d["validation"]["kept"] == len(val_part)


def test_replay_share_must_be_below_one(tmp_path, convs):
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"REPLAY_SHARE=.*must be in \[0, 1\)"):
            cfg_for(tmp_path / "x", convs, replay_share=bad)
    with pytest.raises(ConfigError, match="REPLAY_SHARE=1.0"):  # a config built directly is checked by train()
        train(TrainConfig(model_name=EMB, dataset_path=str(convs), output_dir=str(tmp_path / "y"), replay_share=1.0))
    assert not (tmp_path / "y").exists()


def test_a_missing_or_malformed_replay_file_names_the_file_and_row(tmp_path, convs):
    with pytest.raises(DataError, match=r"REPLAY_PATH '.*nowhere.jsonl' does not exist"):
        train(cfg_for(tmp_path / "a", convs, max_steps=1, replay_share=0.2, replay_path=str(tmp_path / "nowhere.jsonl")))
    bad = tmp_path / "bad_replay.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
                   '{"messages": [{"role": "user", "content": "hi"}\n')
    with pytest.raises(DataError, match=r"bad_replay.jsonl:2: not a JSON object"):
        train(cfg_for(tmp_path / "b", convs, max_steps=1, replay_share=0.2, replay_path=str(bad)))
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"messages": [{"role": "human", "content": "hi"}]}, {"prompt": "no known field"}]
    write_jsonl(tmp_path / "shape.jsonl", rows)
    with pytest.raises(DataError) as err:
        train(cfg_for(tmp_path / "c", convs, max_steps=1, replay_share=0.2, replay_path=str(tmp_path / "shape.jsonl")))
    assert "shape.jsonl row 1: message 0 needs role" in str(err.value) and "shape.jsonl row 2: no 'messages'" in str(err.value)
    write_jsonl(tmp_path / "text.jsonl", rows[:1] + [{"text": "Plain text, for pretraining only."}])
    with pytest.raises(DataError, match=r"text.jsonl row 1: a raw 'text' row has no reply"):  # SFT needs replies
        train(cfg_for(tmp_path / "d", convs, max_steps=1, replay_share=0.2, replay_path=str(tmp_path / "text.jsonl")))
    from helpers.common.resources import chitchat
    with pytest.raises(DataError, match="no row of .*test.jsonl can be used .100 are validation or test rows"):
        train(cfg_for(tmp_path / "e", convs, max_steps=1, replay_share=0.2, replay_path=str(chitchat("test"))))
    assert not any((tmp_path / x / "checkpoints").exists() for x in "abcde")


def test_resume_with_another_replay_share_is_refused(tmp_path, convs):
    train(cfg_for(tmp_path / "run", convs, max_steps=2, save_steps=2, eval_fraction=0.0, replay_share=0.2))
    with pytest.raises(ConfigError, match="replay_share: folder has 0.2, this run 0.3"):
        train(cfg_for(tmp_path / "run", convs, max_steps=4, save_steps=2, eval_fraction=0.0, replay_share=0.3))
    with pytest.raises(ConfigError, match="replay_share: folder has 0.2, this run 0.0"):
        train(cfg_for(tmp_path / "run", convs, max_steps=4, save_steps=2, eval_fraction=0.0))
    # a run folder from before replay existed (no replay in its signature) ran without replay
    run = RunDir(tmp_path / "run")
    sig = {k: v for k, v in run.get("signature").items() if not k.startswith("replay")}
    run.update("signature", sig)
    cfg = cfg_for(tmp_path / "run", convs, eval_fraction=0.0, replay_share=0.2)
    with pytest.raises(ConfigError, match="replay_share: folder has 0.0, this run 0.2"):
        run.check_signature(cfg, resuming=True)
    run.check_signature(cfg.replace(replay_share=0.0), resuming=True)


def test_each_shard_draws_its_replay_from_its_own_part_of_the_rows(smol_tokenizer):
    from helpers.train.loop import read_replay, replay_examples
    cfg = TrainConfig(mode="sft", replay_share=0.2, num_shards=2, max_seq_len=128)
    pools = [read_replay(cfg, s) for s in (0, 1)]
    assert [p.start for p in pools] == [0, 400] and len(pools[0].rows) == 800
    (e0, r0), (e1, r1) = [replay_examples(smol_tokenizer, p, cfg, 40, set()) for p in pools]
    assert r0["replay"] == r1["replay"] == 10
    assert not any(x in e1 for x in e0)  # different conversations
    again, _ = replay_examples(smol_tokenizer, read_replay(cfg, 1), cfg, 40, set())
    assert again == e1  # the same draw on a rerun (a resumed sitting trains the same examples)
