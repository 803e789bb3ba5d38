"""Every executed notebook as a person reads it: rendered to HTML with nbconvert's lab template (what
JupyterLab shows), opened in Debian's headless Chromium, screenshotted whole, and checked for what a
person should never have to read in an output: a pink stderr box, a library warning, a traceback, raw
chat-template tokens, a config or dict dump, a Trainer progress bar left behind; and in notebook 07,
one line per sweep run and no training log.

The executed notebooks are the ones ``scripts/demo.sh`` (``python -m helpers.pipeline``) wrote to
``runs/<time>/`` (CI runs the demo before the tests), or the folder ``$LLAMA_KIT_EXECUTED`` names;
a folder counts only when its code cells are today's notebooks'. Without one, the test runs the
pipeline itself (SMOKE=1, offline, in a scratch workspace): missing material is never a skip.
Screenshots go to ``<screenshots>/notebooks/`` (tests/browser/conftest.py)."""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser  # skipped without Debian's chromium + chromedriver (tests/conftest.py)

REPO = Path(__file__).resolve().parent.parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STDERR = "application/vnd.jupyter.stderr"

TEMPLATE_TOKEN = re.compile(r"<\|[A-Za-z_][\w.-]*\|>|\[/?INST\]|<</?SYS>>")
WARNING = re.compile(r"\b[A-Z]\w*Warning\b|\bwarn\(|\bwarnings\.warn\b|^\s*(WARNING|[Ww]arning)\b:?", re.M)
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*[A-Z]\w*(Error|Exception): ", re.M)
CONFIG_REPR = re.compile(r"\b[A-Z]\w*(Config|Arguments|Choices|Sources)\(\w+=")
DICT_DUMP = re.compile(r"(^\s*|:\s+)\{'[^'\n]+':\s", re.M)  # a Python dict's repr (a JSON example in a prompt is fine)
TQDM_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")
KIT_BARS = ("arXiv papers",)  # the kit's own live progress (notebook 01's downloads), not a library's
TRAINER_BAR = re.compile(r"\[\s*\d+/\d+\s+[\d:]+(\s*<\s*[\d:]+)?,\s*Epoch\s+[\d.]+/\d+")


def _code(nb) -> list[str]:
    """A notebook's code cells as written (papermill's injected parameters cell left out)."""
    return [c.source for c in nb.cells
            if c.cell_type == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def _is_current(folder: Path) -> bool:
    """``folder`` holds every notebook, executed, from today's sources."""
    for src in NOTEBOOKS:
        done = folder / src.name
        if not done.exists():
            return False
        nb = nbformat.read(done, as_version=4)
        if _code(nb) != _code(nbformat.read(src, as_version=4)) or not any(
                c.get("outputs") for c in nb.cells if c.cell_type == "code"):
            return False
    return True


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> Path:
    """The folder of executed notebooks: $LLAMA_KIT_EXECUTED, else the newest current runs/<time>/,
    else the pipeline run here."""
    given = os.environ.get("LLAMA_KIT_EXECUTED")
    if given:
        assert _is_current(Path(given)), f"LLAMA_KIT_EXECUTED={given}: not every notebook executed from today's sources"
        return Path(given)
    runs = REPO / "runs"
    for folder in sorted((p for p in runs.glob("*") if p.is_dir() and p.name != "screenshots"), reverse=True):
        if _is_current(folder):
            return folder
    work = tmp_path_factory.mktemp("executed")
    env = dict(os.environ, SMOKE="1", LLAMA_KIT_WORKDIR=str(work / "ws"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-m", "helpers.pipeline", "--out", str(work / "out")], cwd=str(REPO),
                       env=env, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work / "out"


@pytest.fixture(scope="module")
def pages(executed, tmp_path_factory) -> dict[str, Path]:
    """Each executed notebook as the HTML page nbconvert's lab template makes of it."""
    from nbconvert import HTMLExporter
    out = tmp_path_factory.mktemp("html")
    exporter = HTMLExporter(template_name="lab")
    found = {}
    for src in NOTEBOOKS:
        body, _ = exporter.from_notebook_node(nbformat.read(executed / src.name, as_version=4))
        page = out / (src.stem + ".html")
        page.write_text(body, encoding="utf-8")
        found[src.stem] = page
    return found


# what the page shows: each output's kind and visible text, and the progress bars left in it
READ_PAGE = """
const cells = Array.from(document.querySelectorAll('.jp-CodeCell'));
const outs = [];
cells.forEach((cell, i) => cell.querySelectorAll('.jp-OutputArea-output').forEach(o => outs.push(
    {cell: i + 1, mime: o.getAttribute('data-mime-type') || '', text: o.innerText || ''})));
const bars = Array.from(document.querySelectorAll('.jp-OutputArea-output progress')).map(p => (
    {cell: cells.findIndex(c => c.contains(p)) + 1, value: p.value, max: p.max,
     text: (p.parentElement.innerText || '').trim()}));
return {outs: outs, bars: bars, height: Math.ceil(document.documentElement.scrollHeight),
        width: Math.ceil(document.documentElement.scrollWidth)};
"""


def _screenshot(browser, page: Path, shot: Path) -> dict:
    """Open ``page``, read it, and save a screenshot of the whole page (beyond the window)."""
    browser.get(page.as_uri())
    seen = browser.execute_script(READ_PAGE)
    clip = {"x": 0, "y": 0, "width": max(seen["width"], 1200), "height": min(seen["height"], 30000), "scale": 1}
    png = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": clip})
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.write_bytes(base64.b64decode(png["data"]))
    return seen


def _snippet(text: str, m: re.Match) -> str:
    line_start = text.rfind("\n", 0, m.start()) + 1
    line_end = text.find("\n", m.end())
    return text[line_start: line_end if line_end >= 0 else None].strip()[:160]


def problems(seen: dict) -> list[str]:
    """What a person should not have to read, one entry per finding: ``cell N: what: the line``."""
    found = []
    for o in seen["outs"]:
        text, where = o["text"], f"cell {o['cell']}"
        if o["mime"] == STDERR and text.strip():
            found.append(f"{where}: a stderr box: {text.strip().splitlines()[0][:160]}")
        for what, pattern in (("raw template token", TEMPLATE_TOKEN), ("library warning", WARNING),
                              ("traceback", TRACEBACK), ("config dump", CONFIG_REPR), ("dict dump", DICT_DUMP),
                              ("Trainer progress bar", TRAINER_BAR)):
            m = pattern.search(text)
            if m:
                found.append(f"{where}: {what}: {_snippet(text, m)}")
    for b in seen["bars"]:
        if b["value"] < b["max"]:
            found.append(f"cell {b['cell']}: a frozen progress bar ({b['value']:g} of {b['max']:g}): {b['text'][:80]}")
    return sorted(set(found))


def widget_bars(nb_path: Path) -> list[str]:
    """A library's progress bar saved as a widget ("Loading weights: 0%|...| 0/272"): the page shows
    it blank or stuck, and the kit's own line says what happened."""
    nb = nbformat.read(nb_path, as_version=4)
    found = []
    for i, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        for o in cell.get("outputs", []):
            text = str(o.get("data", {}).get("text/plain", ""))
            if ("application/vnd.jupyter.widget-view+json" in o.get("data", {}) and TQDM_BAR.search(text)
                    and not text.strip().startswith(KIT_BARS)):
                found.append(f"cell {i}: a library progress bar (widget): {text.strip()[:80]}")
    return sorted(set(found))


def sweep_problems(seen: dict) -> list[str]:
    """Notebook 07: one line per planned run as it finished, no training log, the settings whole,
    the table without an index or empty markers, the best configuration once."""
    text = "\n".join(o["text"] for o in seen["outs"])
    found = []
    planned = re.search(r"^(\d+) runs? planned", text, re.M)
    trials = re.findall(r"^trial (\d+) \(", text, re.M)
    if not planned:
        found.append("no 'N runs planned' line")
    elif sorted(trials) != sorted({*trials}) or len(trials) != int(planned.group(1)):
        found.append(f"{planned.group(1)} runs planned but these trial lines: {trials}")
    for log in ("Done:", "Trainable", "Epoch", "tokens/s train"):
        if log in text:
            found.append(f"a training log line ({log!r}) in the notebook")
    grid = [ln for ln in text.splitlines() if re.search(r"\bgrid\b", ln) and "{" in ln]
    if not grid or any("..." in ln for ln in grid):
        found.append(f"the grid is not shown whole: {grid}")
    table = next((o["text"] for o in seen["outs"] if o["text"].lstrip().startswith("trial\t")), None)
    if table is None:
        found.append("no results table starting with its 'trial' column (an index column?)")
    elif re.search(r"\b(None|nan|NaN)\b", table):
        found.append("the results table shows None or nan")
    if text.count("Best run:") != 1:
        found.append(f"the best configuration is shown {text.count('Best run:')} times")
    found += [f"the best configuration as a dict: {ln[:160]}" for ln in text.splitlines()
              if "Best run:" in ln and "{" in ln]
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_notebook_reads_cleanly_in_chromium(path, executed, pages, browser, screenshots):
    browser.set_window_size(1200, 900)
    shot = screenshots / "notebooks" / f"{path.stem}.png"
    seen = _screenshot(browser, pages[path.stem], shot)
    print(f"screenshot of {path.name}: {shot}")
    assert seen["outs"], f"{path.name}: no outputs rendered"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    found = problems(seen) + widget_bars(executed / path.name) + (
        sweep_problems(seen) if path.name.startswith("07_") else [])
    assert not found, f"{path.name} ({shot}):\n" + "\n".join(found)
