"""The Colab path of the notebooks, run here: each notebook's setup cell on a stand-in for Colab, and
notebook 04 trained, its "local disk" wiped, then resumed from the copy on "Drive".

What stands in for Colab, and why:
* a kernel whose Python has its own site-packages (where the setup cell installs the kit, as it does
  into Colab's Python) over this environment's packages (torch and the rest, preinstalled as on
  Colab) - but not this checkout's editable install, so the kit comes only from the setup cell;
* ``google.colab``, imported when the kernel starts as on Colab: ``drive.mount`` links the mount
  point's ``MyDrive`` to a folder outside the "local disk", ``userdata.get`` returns a token;
* ``LLAMA_KIT_COLAB_ROOT`` is the local disk (``/content`` on Colab) and ``LLAMA_KIT_REPO`` a git
  repository made from this working tree (GitHub on Colab), which the setup cell clones.
The only thing left out is the ``gpu`` extra (``LLAMA_KIT_EXTRAS=""``): Liger's kernels need CUDA's
Triton, which this CPU machine does not have.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TOKEN = "hf_colab_stand_in_token"

GOOGLE_COLAB = {
    "__init__.py": ('"""Stand-in for Colab\'s google.colab (tests/test_colab.py)."""\n'
                    'from . import drive, userdata  # noqa: F401\n'),
    "drive.py": '''import os

def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    """Like Colab's: afterwards mountpoint/MyDrive is the user's Drive (a folder that survives the runtime)."""
    store = os.environ["COLAB_STANDIN_DRIVE"]
    os.makedirs(store, exist_ok=True)
    os.makedirs(mountpoint, exist_ok=True)
    link = os.path.join(mountpoint, "MyDrive")
    if not os.path.exists(link):
        os.symlink(store, link)
    print("Mounted at " + mountpoint)
''',
    "userdata.py": """import os

class SecretNotFoundError(KeyError):
    pass

def get(key):
    if key == "HF_TOKEN":
        return os.environ["COLAB_STANDIN_HF_TOKEN"]
    raise SecretNotFoundError(key)
""",
}


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=kit-test", "-c", "user.email=kit-test@localhost", *args],
                   cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    base = tmp_path_factory.mktemp("colab")
    # The kit as GitHub would serve it: a repository of this working tree's files.
    origin = base / "origin"
    if (ROOT / ".git").exists():  # this working tree's files, committed or not
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                               check=True, capture_output=True).stdout.decode().split("\0")
        for f in filter(None, files):
            if (ROOT / f).is_file():
                (origin / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, origin / f)
    else:  # a copy without git history (an unpacked archive): everything but what runs make
        shutil.copytree(ROOT, origin, ignore=shutil.ignore_patterns(".venv", "runs", "outputs", "smoke", "__pycache__",
                                                                    ".pytest_cache", "*.egg-info", ".devcarry"))
    _git("init", "-q", cwd=origin)
    _git("add", "-A", cwd=origin)
    _git("commit", "-q", "-m", "kit", cwd=origin)
    # Colab's Python: an environment of its own that also sees this one's packages (not the editable kit).
    venv = base / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    own = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (own / "preinstalled.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )  # a path line: its .pth files are not run
    stub = base / "stub" / "google" / "colab"  # google/ stays a namespace package (protobuf lives there too)
    stub.mkdir(parents=True)
    for name, text in GOOGLE_COLAB.items():
        (stub / name).write_text(text)
    startup = base / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-google-colab.py").write_text("import google.colab  # as on Colab, imported before any cell\n")
    kernel = base / "jupyter" / "kernels" / "colab-standin"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python"}))
    content = base / "content"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_KIT_WORKDIR", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(
        SMOKE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        MPLBACKEND="Agg",
        TOKENIZERS_PARALLELISM="false",
        LLAMA_KIT_COLAB_ROOT=str(content),
        LLAMA_KIT_REPO=f"file://{origin}",
        LLAMA_KIT_EXTRAS="",
        PYTHONPATH=str(base / "stub"),
        IPYTHONDIR=str(base / "ipython"),
        JUPYTER_PATH=str(base / "jupyter"),
        COLAB_STANDIN_DRIVE=str(base / "drive"),
        COLAB_STANDIN_HF_TOKEN=TOKEN,
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return {"base": base, "content": content, "drive": base / "drive", "env": env, "own": own}


def _execute(nb, env, cwd: Path, timeout: int = 1200):
    """Run a notebook in the stand-in kernel with ``env`` as the kernel's environment; returns its outputs' text."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # JUPYTER_PATH (the kernel spec) and the kernel's environment
    try:
        client = NotebookClient(
            nb, kernel_name="colab-standin", timeout=timeout, resources={"metadata": {"path": str(cwd)}}
        )
        try:
            client.execute()
        except CellExecutionError as exc:
            pytest.fail(f"a cell failed on the Colab stand-in: {str(exc)[-3000:]}")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    text = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            text.append(o.get("text", "") or "".join(str(v) for v in o.get("data", {}).values()))
    return "\n".join(text)


def _setup_cells_only(path: Path):
    nb = nbformat.read(path, as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code")
    probe = nbformat.v4.new_code_cell(
        "import helpers, os\nfrom helpers.common.models import hf_token\n"
        "print('KIT FROM', os.path.dirname(helpers.__file__))\nprint('CWD', os.getcwd())\n"
        "print('WS', ws.data_dir, ws.out_dir, ws.local_dir, ws.drive)\n"
        "print('TOKEN OK', hf_token() == os.environ['COLAB_STANDIN_HF_TOKEN'])"
    )
    return nbformat.v4.new_notebook(cells=[setup, probe], metadata=nb.metadata)


def test_every_setup_cell_on_colab_clones_installs_mounts_drive_and_finds_the_kit(colab):
    content, env = colab["content"], colab["env"]
    content.mkdir(exist_ok=True)
    for path in NOTEBOOKS:
        out = _execute(_setup_cells_only(path), env, content)
        kit = content / "llama-notebook-kit"
        assert (kit / "notebooks" / path.name).exists(), f"{path.name}: the setup cell did not clone the kit"
        assert f"KIT FROM {colab['own'] / 'helpers'}" in out, (
            f"{path.name}: helpers is not the kit the cell installed:\n{out}"
        )
        assert f"CWD {kit / 'notebooks'}" in out
        drive_home = content / "drive" / "MyDrive" / "llama-kit"
        assert f"WS {drive_home / 'data'} {drive_home / 'outputs'} {content / 'llama-kit-local'} True" in out, out
        assert "TOKEN OK True" in out and TOKEN not in out  # the secret is read, never printed
        assert "(Google Drive)" in out
        assert ("Mounted at" in out) == (path == NOTEBOOKS[0]), "Drive is mounted once, by the first notebook"
    assert (colab["drive"] / "llama-kit" / "data").is_dir()


def test_notebook_04_on_colab_resumes_from_drive_after_the_local_disk_is_wiped(colab):
    content, env = colab["content"], colab["env"]
    nb04 = ROOT / "notebooks" / "04_finetune.ipynb"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir()
    nb = nbformat.read(nb04, as_version=4)
    upto = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "train(cfg)" in c.source)
    nb.cells = nb.cells[: upto + 1]  # the runtime is lost right after training: no plots, no comparison
    # Colab's time limit, as the kit's time budget: a checkpoint after the first step, then it stops.
    first = _execute(nb, dict(env, MAX_TIME_MINUTES="0.0001"), content)
    run = colab["drive"] / "llama-kit" / "outputs" / "sft"
    assert (run / "adapter" / "adapter_model.safetensors").exists(), first[-3000:]
    assert "Time budget" in first
    assert (run / "checkpoints" / "checkpoint-1").is_dir()  # written locally, then copied completely to Drive
    assert (content / "llama-kit-local" / "sft" / "checkpoint-1").is_dir()
    assert json.loads((run / "run.json").read_text())["metrics"]["steps"] == 1

    shutil.rmtree(content)  # a new runtime: the local disk, the clone and the installed kit are gone;
    shutil.rmtree(colab["own"] / "helpers")  # Drive is not
    content.mkdir()
    second = _execute(nbformat.read(nb04, as_version=4), env, content)
    on_drive = content / "drive" / "MyDrive" / "llama-kit" / "outputs" / "sft" / "checkpoints" / "checkpoint-1"
    assert f"Copying {on_drive} to the fast local disk" in second, second[-3000:]
    assert "Resuming from" in second and "(step 1)" in second
    metrics = json.loads((run / "run.json").read_text())["metrics"]
    assert metrics["steps"] == 6 and metrics["resumed_from"].endswith("checkpoint-1")  # the SMOKE run's 6 steps
    history = [json.loads(line) for line in (run / "log_history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4, 5, 6]  # one history across both sittings
