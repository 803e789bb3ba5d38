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


def build(src: Path) -> nbformat.NotebookNode:
    nb = jupytext.read(src, fmt="py:percent")
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "gpuType": "T4"},
        "accelerator": "GPU",
    }
    for cell in nb.cells:
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
            if not dst.exists() or dst.read_text() != text:
                stale.append(dst.name)
        else:
            dst.write_text(text)
            print("wrote", dst.relative_to(ROOT))
    if stale:
        print("out of date (run python tools/sync_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
