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

from .config import env_flag, smoke

REPO_ROOT = Path(__file__).resolve().parent.parent
DRIVE_MOUNT = "/content/drive"
DRIVE_HOME = "/content/drive/MyDrive/llama-kit"
VERSIONED = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets", "rouge-score")


def in_colab() -> bool:
    return "google.colab" in sys.modules or os.path.isdir("/content") and "COLAB_RELEASE_TAG" in os.environ


def mount_drive(mount_point: str = DRIVE_MOUNT) -> bool:
    """Mount Google Drive on Colab, once. Returns whether Drive is available."""
    if not in_colab():
        return False
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
    """The GPU this process sees: name, memory in GiB, compute capability, bf16 support."""
    import torch
    if not torch.cuda.is_available():
        return {"gpu": None, "count": 0, "bf16": False, "memory_gib": 0.0}
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "count": torch.cuda.device_count(), "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "bf16": torch.cuda.is_bf16_supported()}


def describe_gpu(report: dict | None = None) -> str:
    r = report or gpu_report()
    if not r["gpu"]:
        return "No GPU: running on the CPU (fine for SMOKE=1 and the embedded model; on Colab choose Runtime > Change runtime type > GPU)."
    return (f"GPU: {r['gpu']} x{r['count']}, {r['memory_gib']} GiB, compute capability {r['capability']}, "
            f"{'bf16' if r['bf16'] else 'fp16 (no bf16 on this GPU)'}")


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


def workspace(use_drive: bool | None = None) -> Workspace:
    """The folders for this run; ``LLAMA_KIT_WORKDIR`` moves data, outputs and plots elsewhere."""
    is_smoke = smoke()
    colab = in_colab()
    use_drive = env_flag("USE_DRIVE", True) if use_drive is None else use_drive
    drive = colab and use_drive and mount_drive()
    base = os.environ.get("LLAMA_KIT_WORKDIR")
    if base:
        root = Path(base)
        data_dir, out_dir, plots_dir, local = root / "data", root / "outputs", root / "plots", root / "local"
    elif drive:
        root = Path(DRIVE_HOME)
        data_dir, out_dir, plots_dir, local = root / "data", root / "outputs", root / "plots", Path("/content/llama-kit-local")
    else:
        sub = ("smoke",) if is_smoke else ()
        data_dir = REPO_ROOT.joinpath("data", *sub)
        out_dir = REPO_ROOT.joinpath("outputs", *sub)
        plots_dir = REPO_ROOT.joinpath("plots", *sub)
        local = REPO_ROOT.joinpath("outputs", *sub, "local")
    for d in (data_dir, out_dir, plots_dir, local):
        d.mkdir(parents=True, exist_ok=True)
    return Workspace(REPO_ROOT, data_dir, out_dir, local, plots_dir, colab, drive, is_smoke)


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
        where = "Google Drive" if ws.drive else ("LLAMA_KIT_WORKDIR" if os.environ.get("LLAMA_KIT_WORKDIR") else "the repository")
        print(f"Data in {ws.data_dir}, outputs in {ws.out_dir}, plots in {ws.plots_dir} ({where})"
              + ("; SMOKE=1: tiny offline run" if ws.smoke else ""))
    return ws


def read_requirements(path: str | os.PathLike | None = None) -> dict[str, str]:
    """``{package: pinned spec}`` from requirements.txt (comments and blank lines skipped)."""
    path = Path(path or REPO_ROOT / "requirements.txt")
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        for op in ("==", ">=", "<=", "~="):
            if op in line:
                name, ver = line.split(op, 1)
                pins[name.strip().lower()] = op + ver.strip()
                break
        else:
            pins[line.lower()] = ""
    return pins
