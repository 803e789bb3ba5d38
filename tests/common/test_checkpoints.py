"""Checkpoints of real training runs (helpers/common/checkpoints.py) on the embedded model: copied to
the durable folder and pruned, verified by their manifest, a damaged or half-copied one skipped and the
run falling back to the one before, a damaged durable copy replaced by a verified one."""
import json
import shutil

import pytest
import torch

from helpers.common.checkpoints import (COMPLETE_MARKER, MANIFEST, copy_checkpoint, find_resume_checkpoint,
                                        keep_durable_copy, list_checkpoints, verify_checkpoint)
from helpers.common.run import RunDir
from helpers.core.config import ConfigError
from helpers.train import train
from tiny_train import adapter_tensors, cfg_for, write_convs


@pytest.fixture(scope="module")
def convs(tmp_path_factory):
    return write_convs(tmp_path_factory.mktemp("data"))


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
    # the good checkpoint-6 written locally replaced the damaged one on Drive: the next runtime resumes from it
    assert verify_checkpoint(drive / "checkpoints" / "checkpoint-6") is None
    assert any(m.startswith("Replacing") and "checkpoint-6" in m for m in said), said
    assert find_resume_checkpoint(tmp_path / "gone", drive / "checkpoints", log=said.append).name == "checkpoint-6"


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


def _truncate_weights(c):
    w = c / "adapter_model.safetensors"
    w.write_bytes(w.read_bytes()[:-4096])


def _corrupt_optimizer(c):
    raw = bytearray((c / "optimizer.pt").read_bytes())
    raw[len(raw) // 3: len(raw) // 3 + 64] = bytes(64)  # 64 bytes zeroed, the size unchanged
    (c / "optimizer.pt").write_bytes(bytes(raw))


def _delete_a_listed_file(c):
    listed = json.loads((c / MANIFEST).read_text())["files"]
    assert "training_args.bin" in listed
    (c / "training_args.bin").unlink()


@pytest.mark.parametrize("damage, why", [
    (_truncate_weights, "adapter_model.safetensors has"),
    (_corrupt_optimizer, "optimizer.pt differs from the file saved (SHA-256 mismatch)"),
    (_delete_a_listed_file, f"training_args.bin is missing (listed in its {MANIFEST})"),
], ids=["truncated-weights", "corrupt-bytes", "listed-file-deleted"])
@pytest.mark.parametrize("sync", ["copy_checkpoint", "keep_durable_copy"])
def test_a_damaged_durable_copy_keeping_its_marker_is_replaced(drive_run, tmp_path, damage, why, sync):
    """A durable copy marked complete but damaged is not taken as done: the copy the run makes at each save
    (copy_checkpoint) and the one it makes when it ends without saving (keep_durable_copy) replace it."""
    root, _ = drive_run
    local = tmp_path / "local"
    src = local / "checkpoint-6"
    shutil.copytree(root / "drive" / "checkpoints" / "checkpoint-6", src)
    durable = tmp_path / "drive" / "checkpoints"
    shutil.copytree(src, durable / "checkpoint-6")
    damage(durable / "checkpoint-6")
    assert (durable / "checkpoint-6" / COMPLETE_MARKER).exists()
    assert why in verify_checkpoint(durable / "checkpoint-6")
    said = []
    if sync == "copy_checkpoint":
        got = copy_checkpoint(src, durable, keep=3, log=said.append)
    else:
        got = keep_durable_copy(local, durable, keep=3, log=said.append)
    assert got == durable / "checkpoint-6"
    assert verify_checkpoint(got) is None
    assert len(said) == 1 and said[0].startswith(f"Replacing {got}: {why}"), said
    assert sorted(p.name for p in durable.iterdir()) == ["checkpoint-6"]  # nothing left beside it
    for f in src.iterdir():
        if f.name != COMPLETE_MARKER:
            assert (got / f.name).read_bytes() == f.read_bytes(), f.name
    said.clear()
    assert copy_checkpoint(src, durable, keep=3, log=said.append) == got and said == []  # a good copy stays


def test_every_durable_copy_damaged_a_finished_run_leaves_verified_ones(drive_run, tmp_path, convs):
    """A new runtime finds every checkpoint on Drive damaged (each keeping its marker): the run starts
    over, and each checkpoint it saves replaces the damaged copy, so Drive holds verified ones again."""
    _, ref = drive_run
    drive = _fresh_runtime_copy(drive_run, tmp_path, _truncate_weights)
    for c in ("checkpoint-2", "checkpoint-4"):
        _corrupt_optimizer(drive / "checkpoints" / c)
    said = []
    cfg = cfg_for(drive, convs, max_steps=6, save_steps=2, eval_fraction=0.0, seed=3,
                  checkpoint_dir=str(tmp_path / "new-local"))
    r = train(cfg, log=said.append)
    assert r.resumed_from is None and sum(m.startswith("Skipping") for m in said) == 3, said
    ckpts = list_checkpoints(drive / "checkpoints")
    assert [c.name for c in ckpts] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert [verify_checkpoint(c) for c in ckpts] == [None, None, None]
    assert sum(m.startswith("Replacing") for m in said) == 3, said
    got, want = adapter_tensors(r.adapter_dir), adapter_tensors(ref.adapter_dir)
    assert all(torch.allclose(got[n], want[n], atol=1e-6, rtol=1e-5) for n in want)
