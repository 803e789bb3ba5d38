"""Build notebooks/NN_name.ipynb from their py:percent sources in notebooks/src/ (outputs empty), and
pyproject.toml's dependency lists and app/requirements.txt from requirements.txt (where pins live).

In the sources it writes the setup cell (one template) and each parameter's Colab form description,
the `# @markdown `NAME`: ...` line above `NAME = value  # @param ...`, from the config field's
trailing comment (a notebook's own sentence for a field: the config's notebook_comments()).

The .py files are what we edit and review (readable diffs); the .ipynb files are what Colab opens.
    python tools/sync_notebooks.py          # write every .ipynb
    python tools/sync_notebooks.py --check  # exit 1 if any .ipynb differs from its source
"""
import re
import textwrap
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this script runs from the checkout, before or without an install
from helpers.common.workspace import requirement_pins  # noqa: E402
from helpers.core.config import notebook_comments_for  # noqa: E402
from helpers.notebooks import notebook_configs  # noqa: E402
SRC = ROOT / "notebooks" / "src"
DST = ROOT / "notebooks"


NO_PIN_IN_PACKAGE = {"torch"}  # the package asks for any torch: Colab's preinstalled one is kept
EXTRAS = {"notebook": ("notebook",), "app": ("app",), "gpu": ("gpu",), "dev": ("dev", "notebook", "app")}
BEGIN, END = "# BEGIN dependencies (written by tools/sync_notebooks.py from requirements.txt)", "# END dependencies"


def pins():
    return requirement_pins(ROOT / "requirements.txt")


def package_spec(pin) -> str:
    return pin.name if pin.name in NO_PIN_IN_PACKAGE else pin.spec


def pyproject_dependencies() -> str:
    """pyproject.toml's dependency lists: requirements.txt's pins, by part."""
    ps = pins()
    lines = [BEGIN, "dependencies = ["]
    lines += [f'    "{package_spec(p)}",' for p in ps if p.part == "core"]
    lines += ["]", "", "[project.optional-dependencies]"]
    for extra, parts in EXTRAS.items():
        lines.append(f"{extra} = [" + ", ".join(f'"{package_spec(p)}"' for p in ps if p.part in parts) + "]")
    lines.append(END)
    return "\n".join(lines)


def synced_pyproject() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    a, b = text.index(BEGIN), text.index(END) + len(END)
    return text[:a] + pyproject_dependencies() + text[b:]


def app_requirements() -> str:
    """What a Hugging Face Space installs for app/app.py: the app's pins and the core ones it imports."""
    wanted = {"gradio", "transformers", "peft", "accelerate", "torch", "bitsandbytes"}
    body = "\n".join(package_spec(p) for p in pins() if p.name in wanted)
    return ("# Written by tools/sync_notebooks.py from requirements.txt: what a Hugging Face Space installs for\n"
            "# app.py (copy helpers/ next to app.py; see README.md). torch is the Space's own.\n" + body + "\n")


SETUP_CELL = """# %% cellView="form"
# @title Setup: on Colab, fetch the kit and install it with its pins (Colab's torch is kept)
import os, sys
if "google.colab" in sys.modules:
    KIT = os.path.join(os.environ.get("LLAMA_KIT_COLAB_ROOT", "/content"), "llama-notebook-kit")
    if not os.path.isdir(KIT):
        REPO = os.environ.get("LLAMA_KIT_REPO", "https://github.com/llama-kit/llama-notebook-kit")
        get_ipython().system(f"git clone -q --depth 1 {REPO} {KIT}")
    get_ipython().system(f"{sys.executable} {KIT}/scripts/install.py --colab")
    os.chdir(f"{KIT}/notebooks")
from helpers.common.workspace import setup_notebook
ws = setup_notebook(TITLE)

"""


def sync_setup_cell(text: str) -> str:
    """Replace the notebook's setup cell by the one template (keeping its title)."""
    start = text.find('# %% cellView="form"')
    if start < 0:
        raise SystemExit("a notebook source has no setup cell (# %% cellView=\"form\")")
    end = text.find("# %%", start + 5)
    m = re.search(r"setup_notebook\((\"[^\"]*\")", text[start:end])
    title = m.group(1) if m else '""'
    return text[:start] + SETUP_CELL.replace("TITLE", title) + text[end:]


PARAMETERS_CELL = '# %% tags=["parameters"]'
DESCRIPTION = re.compile(r"# @markdown `([A-Z][A-Z0-9_]*)`: ")
FORM_TEXT = "# @markdown "
ASSIGNMENT = re.compile(r"([A-Z][A-Z0-9_]*) = ")
LINE_LENGTH = 120  # pyproject.toml [tool.ruff]


def description_lines(name: str, comment: str) -> list[str]:
    """The form description of parameter ``name``: ``# @markdown `NAME`: <comment>``, wrapped onto
    further ``# @markdown`` lines (Colab joins them into one paragraph) to stay within the line length."""
    return textwrap.wrap(comment, LINE_LENGTH, initial_indent=f"{FORM_TEXT}`{name}`: ", subsequent_indent=FORM_TEXT,
                         break_long_words=False, break_on_hyphens=False)


def description_above(lines: list[str], index: int) -> str:
    """The description written above ``lines[index]`` (a ``NAME = value`` line), its lines joined;
    "" when there is none."""
    parts, i = [], index - 1
    while i >= 0 and lines[i].startswith(FORM_TEXT):
        parts.insert(0, lines[i])
        if DESCRIPTION.match(lines[i]):
            return " ".join(p[len(FORM_TEXT):] for p in parts)
        i -= 1
    return ""


def sync_descriptions(text: str, notebook: str) -> str:
    """The source ``text`` of notebook ``notebook`` ("04") with each parameter's description line
    written from its config field's comment (helpers.core.config.notebook_comments_for), so that the Colab
    form and cfg.describe() say the same: the one line above each ``NAME = value`` of the parameters
    cell is ``# @markdown `NAME`: <comment>``. Other lines are kept as they are."""
    start = text.find(PARAMETERS_CELL)
    if start < 0:
        raise SystemExit(f"notebook {notebook}: no parameters cell ({PARAMETERS_CELL})")
    end = text.find("\n# %%", start + len(PARAMETERS_CELL))
    end = len(text) if end < 0 else end
    classes = notebook_configs(notebook)
    out: list[str] = []
    for line in text[start:end].split("\n"):
        if line.startswith(FORM_TEXT):
            continue  # written again above its parameter
        m = ASSIGNMENT.match(line)
        if m:
            name = m.group(1)
            owner = next((c for c in classes if name.lower() in c.field_names()), None)
            if owner is None:
                raise SystemExit(f"notebook {notebook}: parameter {name} is no field of "
                                 f"{' or '.join(c.__name__ for c in classes)}; add the field with its comment")
            comment = notebook_comments_for(owner, notebook).get(name.lower())
            if not comment:
                raise SystemExit(f"notebook {notebook}: {owner.__name__}.{name.lower()} has no trailing comment "
                                 "to describe it with")
            out += description_lines(name, comment)
        out.append(line)
    return text[:start] + "\n".join(out) + text[end:]


def synced_source(src: Path) -> str:
    """The notebook source as it should be: the one setup cell, descriptions from the field comments."""
    return sync_descriptions(sync_setup_cell(src.read_text()), src.stem[:2])


CPU_NOTEBOOKS = {"01"}  # scraping needs no GPU: Colab opens it on its default CPU runtime


def build(src: Path) -> nbformat.NotebookNode:
    nb = jupytext.reads(synced_source(src), fmt="py:percent")
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
            if src.read_text() != synced_source(src):  # its setup cell, or a description not its field's comment
                stale.append(str(src.relative_to(ROOT)))
            if not dst.exists() or dst.read_text() != text:
                stale.append(dst.name)
        else:
            src.write_text(synced_source(src))
            dst.write_text(text)
            print("wrote", dst.relative_to(ROOT))
    generated = {ROOT / "pyproject.toml": synced_pyproject(), ROOT / "app" / "requirements.txt": app_requirements()}
    for path, text in generated.items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        elif not path.exists() or path.read_text() != text:
            path.write_text(text)
            print("wrote", path.relative_to(ROOT))
    if stale:
        print("out of date (run python tools/sync_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
