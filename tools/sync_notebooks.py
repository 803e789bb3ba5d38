"""Build notebooks/NN_name.ipynb from their py:percent sources in notebooks/src/ (outputs empty).

The .py files are what we edit and review (readable diffs); the .ipynb files are what Colab opens.
    python tools/sync_notebooks.py          # write every .ipynb
    python tools/sync_notebooks.py --check  # exit 1 if any .ipynb differs from its source
"""
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
        if spec and not spec.startswith("-") and spec.split("==")[0].strip().lower() not in NO_PIN_ON_COLAB:
            lines.append(spec)
    return " ".join(lines)


def sync_pins(src: Path) -> str:
    """The source text with its ``PINS = "..."`` line rewritten from requirements.txt."""
    out = []
    for line in src.read_text().splitlines(keepends=True):
        if line.startswith("PINS = "):
            line = f'PINS = "{colab_pins()}"\n'
        out.append(line)
    return "".join(out)


def build(src: Path) -> nbformat.NotebookNode:
    nb = jupytext.reads(sync_pins(src), fmt="py:percent")
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "gpuType": "T4"},
        "accelerator": "GPU",
    }
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
