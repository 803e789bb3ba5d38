"""Build notebooks/NN_name.ipynb from their py:percent sources in notebooks/src/ (outputs empty).

The .py files are what we edit and review (readable diffs); the .ipynb files are what Colab opens.
    python tools/sync_notebooks.py          # write every .ipynb
    python tools/sync_notebooks.py --check  # exit 1 if any .ipynb differs from its source
"""
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "notebooks" / "src"
DST = ROOT / "notebooks"


NO_PIN_ON_COLAB = {"torch"}  # Colab's preinstalled torch is kept


def colab_pins() -> str:
    """The PINS line of every setup cell: requirements.txt without torch."""
    lines = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        if "local-only" in line:
            continue
        if spec and not spec.startswith("-") and spec.split("==")[0].strip().lower() not in NO_PIN_ON_COLAB:
            lines.append(spec)
    return " ".join(lines)


def tagged(tag: str) -> str:
    """Specs listed in requirements.txt comments as ``# <tag>: name==version  why``."""
    out = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith(f"# {tag}:"):
            out.append(line.split(":", 1)[1].split()[0])
    return " ".join(out)


SETUP_CELL = '''# %% cellView="form"
# @title Setup: on Colab, fetch the kit and install pinned packages (nothing is installed elsewhere)
import os, sys
KIT_REPO = "https://github.com/llama-kit/llama-notebook-kit"
PINS = ""
NO_DEPS = ""
GPU_NO_DEPS = ""
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/llama-notebook-kit"):
        get_ipython().system(f"git clone --depth 1 {KIT_REPO} /content/llama-notebook-kit")
    os.chdir("/content/llama-notebook-kit/notebooks")
    get_ipython().system(f"pip install -q {PINS}")  # Colab's own torch is kept
    get_ipython().system(f"pip install -q --no-deps {NO_DEPS} {GPU_NO_DEPS}")
sys.path.insert(0, os.path.abspath(".."))
from helpers.setup import setup_notebook
ws = setup_notebook(TITLE)

'''


def sync_setup_cell(text: str) -> str:
    """Replace the notebook's setup cell by the one template (keeping its title)."""
    start = text.find('# %% cellView="form"')
    if start < 0:
        raise SystemExit("a notebook source has no setup cell (# %% cellView=\"form\")")
    end = text.find("# %%", start + 5)
    m = re.search(r"setup_notebook\((\"[^\"]*\")", text[start:end])
    title = m.group(1) if m else '""'
    return text[:start] + SETUP_CELL.replace("TITLE", title) + text[end:]


def sync_pins(src: Path) -> str:
    """The source text with its setup cell and ``PINS``/``NO_DEPS`` lines rewritten from requirements.txt."""
    out = []
    for line in sync_setup_cell(src.read_text()).splitlines(keepends=True):
        if line.startswith("PINS = "):
            line = f'PINS = "{colab_pins()}"\n'
        elif line.startswith("NO_DEPS = "):
            line = f'NO_DEPS = "{tagged("no-deps")}"\n'
        elif line.startswith("GPU_NO_DEPS = "):
            line = f'GPU_NO_DEPS = "{tagged("gpu-no-deps")}"\n'
        out.append(line)
    return "".join(out)


CPU_NOTEBOOKS = {"01"}  # scraping needs no GPU: Colab opens it on its default CPU runtime


def build(src: Path) -> nbformat.NotebookNode:
    nb = jupytext.reads(sync_pins(src), fmt="py:percent")
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    if src.stem[:2] not in CPU_NOTEBOOKS:  # Colab opens these on a T4 GPU runtime
        nb.metadata["colab"]["gpuType"] = "T4"
        nb.metadata["accelerator"] = "GPU"
    for i, cell in enumerate(nb.cells):
        cell.id = f"{src.stem[:2]}-{i:02d}"  # stable ids: no diff noise
        cell.metadata.pop("lines_to_next_cell", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def main(check: bool) -> int:
    stale = []
    for src in sorted(SRC.glob("[0-9][0-9]_*.py")):
        dst = DST / (src.stem + ".ipynb")
        text = nbformat.writes(build(src)) + "\n"
        if check:
            if not dst.exists() or dst.read_text() != text or src.read_text() != sync_pins(src):
                stale.append(dst.name)
        else:
            src.write_text(sync_pins(src))
            dst.write_text(text)
            print("wrote", dst.relative_to(ROOT))
    if stale:
        print("out of date (run python tools/sync_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
