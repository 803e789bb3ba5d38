"""The notebooks: in sync with their sources, no outputs, pins that match requirements.txt, and
every one runs top to bottom headless with SMOKE=1 on a CPU with no network (in pipeline order,
in one scratch workspace, so each notebook consumes what the previous one wrote)."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks_and_each_has_a_source():
    assert NOTEBOOKS, "no notebooks found"
    for nb in NOTEBOOKS:
        assert (ROOT / "notebooks" / "src" / (nb.stem + ".py")).exists(), nb.name


def test_notebooks_are_in_sync_with_their_sources():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_notebooks.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs must not be committed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shape_and_install_pins(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup = code[0].source
    assert '"google.colab" in sys.modules' in setup and "setup_notebook(" in setup, "first code cell is the setup cell"
    # On Colab the cell installs the kit with its pins through scripts/install.py (torch is kept);
    # elsewhere it installs nothing, and no cell edits sys.path: helpers is an installed package.
    assert "scripts/install.py --colab" in setup and "pip install" not in setup
    assert len(setup.splitlines()) <= 12, "the setup cell stays a few lines"
    assert not any("sys.path" in c.source for c in code), "notebooks import helpers as an installed package"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    for c in code:
        ast.parse(c.source)  # every cell is plain Python (no magics)
    assert nb.cells[0].cell_type == "markdown" and "colab.research.google.com" in nb.cells[0].source


STEP_CONFIGS = {"01": "helpers.arxiv:ScrapeConfig", "02": "helpers.dataset:DatasetConfig",
                "03": "helpers.train:TrainConfig", "04": "helpers.train:TrainConfig", "05": "helpers.evaluation:EvalConfig",
                "06": "helpers.chat:ChatConfig", "07": "helpers.sweep:SweepConfig"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_colab_form_fields_and_still_overridable(path):
    """Each parameter is a Colab form field (`# @param` with a type that fits its value, its
    description as `# @markdown` above), the cell keeps papermill's tag, and the step's
    from_params still reads it, with an environment variable of the same name winning."""
    import importlib
    import json
    import re
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params: dict = {}
    exec(compile(cell.source, path.name, "exec"), {}, params)
    assert params, "empty parameters cell"
    lines = cell.source.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Z][A-Z0-9_]*) = .*  # @param (.*)$", line)
        if not re.match(r"^[A-Z][A-Z0-9_]* = ", line):
            assert line.startswith("# @markdown `"), f"{path.name}: not a form line: {line!r}"
            continue
        assert m, f"{path.name}: {line.split(' =')[0]} has no '# @param' annotation"
        name, ann = m.groups()
        assert lines[i - 1].startswith(f"# @markdown `{name}`: "), f"{path.name}: {name} has no description above it"
        value = params[name]
        if ann.startswith("["):
            options = json.loads(ann.split("]")[0] + "]")
            assert value in options, f"{path.name}: {name}={value!r} is not among its options {options}"
        else:
            kind = re.match(r'\{type:"(\w+)"', ann).group(1)
            ok = {"boolean": lambda v: isinstance(v, bool), "integer": lambda v: type(v) is int,
                  "number": lambda v: isinstance(v, float), "string": lambda v: isinstance(v, str),
                  "raw": lambda v: isinstance(v, (list, dict, tuple))}[kind]
            assert ok(value), f"{path.name}: {name}={value!r} does not fit type {kind}"
    module, cls_name = STEP_CONFIGS[path.name[:2]].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    fields = [n for n in params if n.lower() in cls.field_names()]
    assert fields, f"{path.name}: no parameter is a field of {cls_name}"
    name = next(n for n in fields if type(params[n]) is int)
    cfg = cls.from_params(params, environ={})
    assert getattr(cfg, name.lower()) == params[name] and cfg._sources[name.lower()] == "parameters"
    overridden = cls.from_params(params, environ={name: str(params[name] + 1)})
    assert getattr(overridden, name.lower()) == params[name] + 1 and overridden._sources[name.lower()] == "environment"


def test_requirements_are_pinned_and_the_package_asks_for_those_pins():
    import tomllib
    from helpers.setup import requirement_pins
    pins = requirement_pins(ROOT / "requirements.txt")
    assert pins and all("==" in p.spec for p in pins), [p.spec for p in pins if "==" not in p.spec]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {p.spec for p in pins if p.part == "core" and p.name != "torch"}
    assert core <= set(project["dependencies"]) and "torch" in project["dependencies"]  # any torch: Colab's is kept
    extras = project["optional-dependencies"]
    assert {p.spec for p in pins if p.part == "dev"} <= set(extras["dev"]) and extras["gpu"] == ["liger-kernel==0.8.5"]
    assert not any("==" in d and d not in {p.spec for p in pins} for ds in [project["dependencies"], *extras.values()] for d in ds)


@pytest.fixture(scope="module")
def pipeline_env(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    saved = dict(os.environ)
    os.environ.update(SMOKE="1", LLAMA_KIT_WORKDIR=str(work / "ws"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      MPLBACKEND="Agg")
    yield work
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_headless_with_smoke(path, pipeline_env):
    from papermill.exceptions import PapermillExecutionError
    from helpers.pipeline import run_notebook
    try:
        out = run_notebook(path, pipeline_env / "executed", timeout=1200)
    except PapermillExecutionError as exc:
        pytest.fail(f"{path.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
