"""Checkpoints that survive a Colab disconnect, and the choice of the one to resume from.

While training, each checkpoint is written to fast local disk. :class:`DurableCheckpoints` then
writes its ``MANIFEST.json`` (every file's size and SHA-256) and its completion marker, and
copies it to the run's durable ``checkpoints/`` folder (Drive on Colab) under a temporary name,
renamed when complete; a copy already there that does not verify is replaced the same way; the
newest ``save_total_limit`` are kept and leftovers of interrupted copies are removed.

:func:`find_resume_checkpoint` picks the newest checkpoint, local or durable, that
:func:`verify_checkpoint` accepts: complete, with its weights, optimizer, scheduler and trainer
state, each file as the manifest recorded it (or, for a checkpoint without one, safetensors
headers that parse and pickles that load). A checkpoint that fails is named with the reason and
the next older one is tried. :func:`resume_point` is the whole decision for ``TrainConfig.resume``
("auto", "never" or a folder), and the sweep uses the same function.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from helpers.core.config import ConfigError

COMPLETE_MARKER = "CHECKPOINT_COMPLETE"
MANIFEST = "MANIFEST.json"  # every file of a checkpoint with its size and SHA-256


def step_of(path: Path) -> int:
    """The step of a ``checkpoint-N`` folder (-1 for another name)."""
    try:
        return int(path.name.split("-")[-1])
    except ValueError:
        return -1


def is_complete_checkpoint(path: Path) -> bool:
    return (path / COMPLETE_MARKER).exists() and (path / "trainer_state.json").exists()


def _sha256(path: Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(ckpt: Path) -> None:
    """``MANIFEST`` in a checkpoint: every file's size and SHA-256, written at save time (before the
    completion marker), so a copy damaged later (on Drive, in transit) is recognised before resuming."""
    files = {str(f.relative_to(ckpt)): {"bytes": f.stat().st_size, "sha256": _sha256(f)}
             for f in sorted(ckpt.rglob("*")) if f.is_file() and f.name not in (MANIFEST, COMPLETE_MARKER)}
    tmp = ckpt / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"files": files}, indent=1) + "\n")
    os.replace(tmp, ckpt / MANIFEST)


def _check_safetensors(f: Path) -> str | None:
    """None when the header of a .safetensors file parses and its tensors fit in the file."""
    size = f.stat().st_size
    try:
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if size < 8 or n <= 0 or 8 + n > size:
                return f"{f.name} is cut short ({size:,} bytes; its header alone needs {8 + max(n, 0):,})"
            header = json.loads(fh.read(n))
    except (ValueError, OSError) as exc:
        return f"{f.name} has no readable header ({type(exc).__name__}: {str(exc)[:80]})"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        return f"{f.name} is cut short ({size:,} bytes of {8 + n + end:,})"
    return None


def verify_checkpoint(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be resumed from, or None when it can.

    Complete (marker and trainer state), with the files a resume needs: the weights
    (``adapter_model.safetensors`` or ``model*.safetensors``), ``optimizer.pt``, ``scheduler.pt``
    and the trainer state. With a ``MANIFEST`` (written at save) every file must have its recorded
    size and SHA-256; without one (older checkpoints) safetensors headers must parse and fit the
    file, and the pickles (optimizer, scheduler, RNG states) must load."""
    if not (ckpt / COMPLETE_MARKER).exists():
        return "incomplete (the run or the copy to Drive was interrupted)"
    weights = [f for f in ckpt.glob("*.safetensors") if f.name.startswith(("adapter_model", "model"))]
    if not weights:
        return "no weights in it (adapter_model.safetensors or model*.safetensors is missing)"
    for need in ("trainer_state.json", "optimizer.pt", "scheduler.pt"):
        if not (ckpt / need).exists():
            what = " (resuming would restart AdamW's state from zero)" if need == "optimizer.pt" else ""
            return f"{need} is missing{what}"
    manifest = ckpt / MANIFEST
    if manifest.exists():
        try:
            files = json.loads(manifest.read_text())["files"]
        except (ValueError, KeyError) as exc:
            return f"its {MANIFEST} is damaged ({type(exc).__name__})"
        for name, want in files.items():
            f = ckpt / name
            if not f.exists():
                return f"{name} is missing (listed in its {MANIFEST})"
            if f.stat().st_size != want["bytes"]:
                return f"{name} has {f.stat().st_size:,} bytes, {want['bytes']:,} when it was saved"
            if _sha256(f) != want["sha256"]:
                return f"{name} differs from the file saved (SHA-256 mismatch)"
        return None
    for f in weights:
        why = _check_safetensors(f)
        if why:
            return why
    try:
        json.loads((ckpt / "trainer_state.json").read_text())
    except ValueError as exc:
        return f"trainer_state.json does not parse ({exc})"
    import torch
    for f in [ckpt / "optimizer.pt", ckpt / "scheduler.pt"] + sorted(ckpt.glob("rng_state*.pth")):
        try:
            torch.load(f, map_location="cpu", weights_only=False)
        except Exception as exc:
            return f"{f.name} does not load ({type(exc).__name__}: {str(exc)[:80]})"
    return None


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("checkpoint-*") if p.is_dir() and step_of(p) >= 0), key=step_of)


def find_resume_checkpoint(local_dir: Path, durable_dir: Path, log=print) -> Path | None:
    """The newest checkpoint, local or durable (Drive), that verifies (``verify_checkpoint``);
    each newer one that does not is named with the reason, and the next older one is tried."""
    cands = list_checkpoints(local_dir) + (list_checkpoints(durable_dir)
                                           if durable_dir.resolve() != local_dir.resolve() else [])
    # newest step first; at one step the local copy first (faster), then the durable one
    cands.sort(key=lambda p: (-step_of(p), p.parent.resolve() != local_dir.resolve()))
    for ckpt in cands:
        why = verify_checkpoint(ckpt)
        if why is None:
            return ckpt
        log(f"Skipping {ckpt}: {why}; trying an older checkpoint.")
    return None


def copy_checkpoint(src: Path, dest_root: Path, keep: int, log=print) -> Path:
    """Copy a checkpoint folder completely (temporary name, then rename), keep the newest ``keep``,
    and remove the ``.partial`` leftovers of copies that were interrupted.

    A copy already there is kept only when it verifies (:func:`verify_checkpoint`); a damaged one
    (cut short, changed bytes, a file missing, though marked complete) is named and replaced: the new
    copy is written beside it and swapped in, so no half-written folder ever has the checkpoint's name."""
    dest_root.mkdir(parents=True, exist_ok=True)
    final = dest_root / src.name
    if final.exists() and is_complete_checkpoint(final):
        why = verify_checkpoint(final)
        if why is None:
            return final
        log(f"Replacing {final}: {why}; copying {src} in its place.")
    tmp = dest_root / f".{src.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    (tmp / COMPLETE_MARKER).write_text(json.dumps({"copied_at": time.time()}) + "\n")
    old = dest_root / f".{src.name}.replaced"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)  # a folder cannot be renamed over another: the damaged one steps aside first
    os.replace(tmp, final)
    for stale in [*dest_root.glob(".checkpoint-*.partial"), *dest_root.glob(".checkpoint-*.replaced")]:
        shutil.rmtree(stale, ignore_errors=True)  # a complete copy exists now: they are no use
    ckpts = [c for c in list_checkpoints(dest_root) if is_complete_checkpoint(c)]
    for old_ckpt in ckpts[:-keep] if keep > 0 else []:
        shutil.rmtree(old_ckpt, ignore_errors=True)
    return final


def keep_durable_copy(local: Path, durable: Path, keep: int, log=print) -> Path | None:
    """At the end of a run: the newest local checkpoint that verifies, also on the durable side
    (Drive), verified there, a damaged copy replaced (:func:`copy_checkpoint`). Checkpoints are
    copied as they are saved; this is for a run that saves nothing more (resumed at its last step),
    whose durable copy may be the damaged one. None when the trainer writes to the durable folder
    itself or no local checkpoint verifies."""
    if durable.resolve() == local.resolve():
        return None
    for ckpt in reversed(list_checkpoints(local)):
        if verify_checkpoint(ckpt) is None:
            return copy_checkpoint(ckpt, durable, keep, log)
    return None


def checkpoint_dirs(checkpoint_dir: str, run, in_shard: bool = False) -> tuple[Path, Path]:
    """(local, durable) checkpoint folders of a run (``run``: a :class:`helpers.common.run.RunDir`).

    On Colab checkpoints are written to the fast local disk (``checkpoint_dir``) and copied to
    the run's ``checkpoints/`` on Drive; elsewhere (``checkpoint_dir`` "") the durable folder is
    written directly."""
    durable = run.checkpoints
    if not checkpoint_dir:
        return durable, durable
    return Path(checkpoint_dir) / (run.name if in_shard else ""), durable


def resume_point(resume: str, local: Path, durable: Path, log=print) -> Path | None:
    """The checkpoint ``TrainConfig.resume`` asks for: "auto" the newest that verifies (None when
    there is none), "never"/"none"/"" none, else that folder, refused with the reason when it
    does not verify."""
    if resume == "auto":
        return find_resume_checkpoint(local, durable, log)
    if resume in ("never", "", "none"):
        return None
    ckpt = Path(resume)
    why = verify_checkpoint(ckpt) if ckpt.is_dir() else "no such folder"
    if why:
        raise ConfigError(f"RESUME={resume!r} cannot be resumed from: {why}. Use RESUME='auto' to take the "
                          "newest checkpoint that verifies.")
    return ckpt


def stage_locally(ckpt: Path, local: Path, log=print) -> Path:
    """Resume from the fast local disk: a checkpoint found on Drive is copied there first (unless
    a copy that verifies is there already)."""
    if ckpt.parent.resolve() == local.resolve():
        return ckpt
    local.mkdir(parents=True, exist_ok=True)
    dest = local / ckpt.name
    if not dest.exists() or verify_checkpoint(dest) is not None:
        log(f"Copying {ckpt} to the fast local disk ...")
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(ckpt, dest)
    return dest


def durable_checkpoints_callback(durable: Path, keep: int, log=print):
    """A TrainerCallback that, after each checkpoint, writes its manifest and completion marker
    and copies it to ``durable`` (when that is not where the trainer writes); ``log`` hears of a
    damaged durable copy replaced."""
    from transformers import TrainerCallback

    class DurableCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if not state.is_world_process_zero:
                return
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not ckpt.exists():
                return
            write_manifest(ckpt)
            (ckpt / COMPLETE_MARKER).write_text(json.dumps({"step": state.global_step, "time": time.time()}) + "\n")
            if durable.resolve() != Path(args.output_dir).resolve():
                copy_checkpoint(ckpt, durable, keep, log)

    return DurableCheckpoints()
