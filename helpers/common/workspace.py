"""Notebook setup: Colab detection, Google Drive, versions, GPU report, and where files go.

Every notebook's first cell installs the pinned packages (on Colab only, before any heavy
import) and then calls ``setup_notebook()``, which

* mounts Google Drive once, and only on Colab (``USE_DRIVE=0`` turns that off);
* prints the versions of the packages that matter and the GPU (name, memory, bf16 support);
* returns a :class:`Workspace` with the folders for data, outputs and plots: on Colab the data
  and outputs live on Drive so they survive a disconnect, with checkpoints first written to the
  fast local disk; elsewhere they live in the repository (smoke runs in ``smoke/`` subfolders,
  so a smoke run never overwrites real results).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers.common.hardware import choose, gpu_caps
from helpers.common.run import RunDir
from helpers.core.config import env_flag, smoke
from helpers.core.files import SWEEP_RUN, ArxivFiles, CorpusFiles, DatasetFiles, SweepFiles

REPO_ROOT = Path(__file__).resolve().parents[2]


def colab_root() -> Path:
    """Colab's local disk, ``/content`` (``LLAMA_KIT_COLAB_ROOT`` moves it, for the Colab-path test)."""
    return Path(os.environ.get("LLAMA_KIT_COLAB_ROOT", "/content"))


def kit_root() -> Path:
    """The kit's folder (notebooks/, requirements.txt): the checkout that holds this package when it is
    installed editable or run from the repository; otherwise (``pip install`` of a clone, as on Colab)
    the clone the notebooks run from: the current folder or, inside ``notebooks/``, its parent."""
    if (REPO_ROOT / "notebooks").is_dir() and (REPO_ROOT / "requirements.txt").exists():
        return REPO_ROOT
    here = Path.cwd()
    return here.parent if here.name == "notebooks" else here


VERSIONED = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets", "rouge-score")


def in_colab() -> bool:
    return "google.colab" in sys.modules or os.path.isdir("/content") and "COLAB_RELEASE_TAG" in os.environ


def mount_drive(mount_point: str | os.PathLike | None = None) -> bool:
    """Mount Google Drive on Colab, once. Returns whether Drive is available."""
    if not in_colab():
        return False
    mount_point = str(mount_point or colab_root() / "drive")
    if os.path.isdir(os.path.join(mount_point, "MyDrive")):
        return True
    from google.colab import drive  # type: ignore
    drive.mount(mount_point)
    return os.path.isdir(os.path.join(mount_point, "MyDrive"))


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def gpu_report() -> dict:
    """The GPU this process sees (as the kit treats it: a T4 under ``LLAMA_KIT_EMULATE_T4=1``): name,
    memory in GiB, compute capability, bf16, and what the kit picks for it and why."""
    import torch
    caps = gpu_caps()
    if caps is None:
        return {"gpu": None, "count": 0, "bf16": False, "memory_gib": 0.0, "choice": choose(None).describe()}
    choice = choose(caps)
    return {"gpu": caps.name + (f" ({caps.emulated})" if caps.emulated else ""), "count": torch.cuda.device_count(),
            "memory_gib": caps.memory_gib, "capability": "%d.%d" % caps.capability,
            "bf16": choice.dtype == "bfloat16", "choice": choice.describe()}


def describe_gpu(report: dict | None = None) -> str:
    r = report or gpu_report()
    if not r["gpu"]:
        return ("No GPU: running on the CPU (fine for SMOKE=1 and the embedded model; "
                "on Colab choose Runtime > Change runtime type > GPU).")
    return (f"GPU: {r['gpu']} x{r['count']}, {r['memory_gib']} GiB, compute capability {r['capability']}, "
            f"{'bf16' if r['bf16'] else 'fp16 (no bf16 on this GPU)'}\nThe kit uses: {r['choice']}")


@dataclass
class Workspace:
    """Where a notebook reads and writes. All folders exist after ``setup_notebook``."""
    root: Path  # repository root (the code)
    data_dir: Path  # datasets, PDFs, manifests (Drive on Colab)
    out_dir: Path  # adapters, reports, checkpoints that must survive (Drive on Colab)
    local_dir: Path  # fast local disk for checkpoints before they are copied to out_dir
    plots_dir: Path  # figures
    on_colab: bool
    drive: bool
    smoke: bool

    def data(self, *parts) -> Path:
        return self.data_dir.joinpath(*parts)

    def out(self, *parts) -> Path:
        return self.out_dir.joinpath(*parts)

    def plot(self, name: str) -> Path:
        return self.plots_dir / name

    @property
    def arxiv(self) -> ArxivFiles:
        return ArxivFiles(self.data("arxiv"))

    @property
    def dataset(self) -> DatasetFiles:
        return DatasetFiles(self.data("dataset"))

    @property
    def corpus(self) -> CorpusFiles:
        return CorpusFiles(self.data("corpus"))

    def sweep(self, name: str = SWEEP_RUN) -> SweepFiles:
        return SweepFiles(self.out(name))

    def run(self, name: str) -> RunDir:
        """A training run's folder (notebooks 03 and 04 write it; 05, 06 and 07 read it)."""
        return RunDir(self.out(name))


def workspace(use_drive: bool | None = None) -> Workspace:
    """The folders for this run; ``LLAMA_KIT_WORKDIR`` moves data, outputs and plots elsewhere."""
    is_smoke = smoke()
    colab = in_colab()
    use_drive = env_flag("USE_DRIVE", True) if use_drive is None else use_drive
    drive = colab and use_drive and mount_drive()
    kit = kit_root()
    base = os.environ.get("LLAMA_KIT_WORKDIR")
    if base:
        root = Path(base)
        data_dir, out_dir, plots_dir, local = root / "data", root / "outputs", root / "plots", root / "local"
    elif drive:
        root = colab_root() / "drive" / "MyDrive" / "llama-kit"
        data_dir, out_dir, plots_dir, local = (
            root / "data",
            root / "outputs",
            root / "plots",
            colab_root() / "llama-kit-local",
        )
    else:
        sub = ("smoke",) if is_smoke else ()
        data_dir = kit.joinpath("data", *sub)
        out_dir = kit.joinpath("outputs", *sub)
        plots_dir = kit.joinpath("plots", *sub)
        local = kit.joinpath("outputs", *sub, "local")
    for d in (data_dir, out_dir, plots_dir, local):
        d.mkdir(parents=True, exist_ok=True)
    return Workspace(kit, data_dir, out_dir, local, plots_dir, colab, drive, is_smoke)


def setup_notebook(title: str = "", use_drive: bool | None = None, quiet: bool = False) -> Workspace:
    """Run once at the top of every notebook; see the module docstring."""
    if smoke():
        # Smoke runs are offline by definition: never wait on the Hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ws = workspace(use_drive)
    if not quiet:
        v = versions()
        print(f"{title + ': ' if title else ''}" + ", ".join(f"{k} {v[k]}" for k in v))
        print(describe_gpu())
        where = (
            "Google Drive"
            if ws.drive
            else ("LLAMA_KIT_WORKDIR" if os.environ.get("LLAMA_KIT_WORKDIR") else "the repository")
        )
        print(f"Data in {ws.data_dir}, outputs in {ws.out_dir}, plots in {ws.plots_dir} ({where})"
              + ("; SMOKE=1: tiny offline run" if ws.smoke else ""))
    return ws


@dataclass(frozen=True)
class Pin:
    """One line of requirements.txt: ``name==version  # part; why``."""
    name: str  # distribution name, lower case
    spec: str  # "name==version" as written
    part: str  # core, notebook, dev, app, gpu, or no-deps (installed with --no-deps)
    note: str = ""


PARTS = ("core", "notebook", "dev", "app", "gpu", "no-deps")


def requirement_pins(path: str | os.PathLike | None = None) -> list[Pin]:
    """Every pinned line of requirements.txt with the part of the package it belongs to (the first
    word of its comment), and the ``# no-deps: name==version  why`` comment lines."""
    path = Path(path or kit_root() / "requirements.txt")
    pins = []
    for line in path.read_text().splitlines():
        raw, _, comment = line.partition("#")
        raw, comment = raw.strip(), comment.strip()
        if not raw and comment.startswith("no-deps:"):
            raw, _, note = comment[len("no-deps:"):].strip().partition(" ")
            part, comment = "no-deps", note.strip()
        elif not raw or raw.startswith("-"):
            continue
        else:
            part, _, comment = comment.partition(";")
            part = part.strip() or "core"
            if part not in PARTS:
                raise ValueError(f"{path}: {raw!r} is marked {part!r}; the first word of the comment is one of {PARTS}")
        name = raw
        for op in ("==", ">=", "<=", "~="):
            name = name.split(op, 1)[0]
        pins.append(Pin(name.strip().lower(), raw, part, comment.strip()))
    return pins
