"""The notebooks: in sync with their sources, no outputs, pins that match requirements.txt, and
every one runs top to bottom headless with SMOKE=1 on a CPU with no network (in pipeline order,
in one scratch workspace, so each notebook consumes what the previous one wrote)."""
import ast
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
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sync_notebooks.py"), "--check"], capture_output=True, text=True
    )
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


def _parameters(path):
    """The parameters cell of notebook ``path``: its source and the values it assigns."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params: dict = {}
    exec(compile(cell.source, path.name, "exec"), {}, params)
    return cell.source, params


def _owner(classes, name):
    return next((c for c in classes if name.lower() in c.field_names()), None)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_colab_form_fields_and_still_overridable(path):
    """Each parameter is a Colab form field (`# @param` with a type that fits its value, its
    description as `# @markdown` above), the cell keeps papermill's tag, and the step's
    from_params still reads it, with an environment variable of the same name winning."""
    import json
    import re
    from helpers.notebooks import notebook_configs
    source, params = _parameters(path)
    assert params, "empty parameters cell"
    lines = source.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Z][A-Z0-9_]*) = .*  # @param (.*)$", line)
        if not re.match(r"^[A-Z][A-Z0-9_]* = ", line):
            assert line.startswith("# @markdown "), f"{path.name}: not a form line: {line!r}"
            continue
        assert m, f"{path.name}: {line.split(' =')[0]} has no '# @param' annotation"
        name, ann = m.groups()
        above = _sync_tool().description_above(lines, i)
        assert above.startswith(f"`{name}`: "), f"{path.name}: {name} has no description above it"
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
    classes = notebook_configs(path.name)
    for cls in classes:
        fields = [n for n in params if n.lower() in cls.field_names()]
        assert fields, f"{path.name}: no parameter is a field of {cls.__name__}"
        name = next((n for n in fields if type(params[n]) is int), None)
        if name is None:  # notebook 06's ExportConfig: booleans and choices only; 03's PretrainSources: a string
            flags = [n for n in fields if type(params[n]) is bool]
            name = flags[-1] if flags else fields[-1]  # HUB_PRIVATE: either value is valid
        cfg = cls.from_params(params, environ={})
        assert getattr(cfg, name.lower()) == params[name] and cfg._sources[name.lower()] == "parameters"
        value = params[name]
        other = str(value + 1) if type(value) is int else value + "x" if type(value) is str else str(not value)
        overridden = cls.from_params(params, environ={name: other})
        assert str(getattr(overridden, name.lower())) == other and overridden._sources[name.lower()] == "environment"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_matches_its_config_dataclasses(path):
    """Every parameter is a field of the configs the notebook builds (helpers.core.config.NOTEBOOK_CONFIGS)
    with its one-line comment, and its form description is that comment (or the notebook's own
    sentence declared in the config's notebook_comments()); the cell's value is the dataclass
    default, or the notebook's own default declared in the config's notebook_defaults(); the form
    type fits the field's type."""
    import re
    import typing
    from helpers.core.config import (
        field_comments,
        coerce_field,
        field_types,
        notebook_comments_for,
        notebook_defaults_for,
    )
    from helpers.notebooks import notebook_configs
    source, params = _parameters(path)
    lines = source.splitlines()
    nb = path.name[:2]
    classes = notebook_configs(nb)
    for name, value in params.items():
        cls = _owner(classes, name)
        assert cls, (f"{path.name}: {name} is no field of {', '.join(c.__name__ for c in classes)}: add the field "
                     "(with its trailing comment) or drop the parameter")
        field = name.lower()
        assert field_comments(cls).get(field), f"{path.name}: {cls.__name__}.{field} has no trailing comment"
        above = _sync_tool().description_above(lines, next(i for i, line in enumerate(lines)
                                                            if line.startswith(f"{name} = ")))
        assert above == f"`{name}`: {notebook_comments_for(cls, nb)[field]}", (
            f"{path.name}: {name}'s form description {above!r} is not {cls.__name__}.{field}'s comment: "
            "the sync writes "
            f"it from the comment (a notebook's own sentence: {cls.__name__}.notebook_comments()); run "
            "tools/sync_notebooks.py"
        )
        expected = notebook_defaults_for(cls, nb)[field]
        assert coerce_field(cls, field, value) == expected, (
            f"{path.name}: {name} = {value!r} but {cls.__name__} says {expected!r} for notebook {nb}: change one, or "
            f"declare the notebook's own default in {cls.__name__}.notebook_defaults()")
        tp = field_types(cls)[field]
        origin = typing.get_origin(tp) or tp
        ann = re.search(rf"^{name} = .*  # @param (.*)$", source, re.M).group(1)
        kind = "choice" if ann.startswith("[") else re.match(r'\{type:"(\w+)"', ann).group(1)
        fits = {
            "boolean": (bool,),
            "integer": (int,),
            "number": (float,),
            "string": (str, dict, list),
            "raw": (list, dict),
            "choice": (str,),
        }[kind]
        assert origin in fits, f"{path.name}: {name} is a {kind} form field but {cls.__name__}.{field} is {tp}"
    for cls in classes:
        base = notebook_defaults_for(cls, "none")
        declared = cls.notebook_defaults()
        assert set(declared) <= {n for n in ("01", "02", "03", "04", "05", "06", "07") if cls in notebook_configs(n)}
        for field, value in declared.get(nb, {}).items():
            assert field.upper() in params, f"{cls.__name__}.notebook_defaults()[{nb!r}] names {field}, not in the cell"
            assert value != base[field], (
                f"{cls.__name__}.notebook_defaults()[{nb!r}][{field!r}] is the dataclass default"
            )
        comments = cls.notebook_comments()
        assert set(comments) <= {n for n in ("01", "02", "03", "04", "05", "06", "07") if cls in notebook_configs(n)}
        for field, text in comments.get(nb, {}).items():
            where = f"{cls.__name__}.notebook_comments()[{nb!r}][{field!r}]"
            assert field.upper() in params, f"{where} names {field}, not in the cell"
            assert text.strip() and "\n" not in text and text != field_comments(cls)[field], (
                f"{where} must be one line that differs from the field's comment")


def _sync_tool():
    """tools/sync_notebooks.py as a module (it is a script, not part of the package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "tools" / "sync_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sync_writes_each_form_description_from_its_field_comment():
    """tools/sync_notebooks.py writes the `# @markdown` line above each parameter from the config
    field's comment: a drifted description is rewritten, a missing one written, one for a parameter
    that is gone dropped; notebook 03's own sentence for LORA_R (TrainConfig.notebook_comments())
    is written there and only there; a parameter that is no field stops the sync, naming it."""
    from helpers.core.config import field_comments
    from helpers.train import TrainConfig
    sync = _sync_tool()
    src = ROOT / "notebooks" / "src" / "04_finetune.py"
    good = sync.synced_source(src)
    assert good == src.read_text()
    comment = field_comments(TrainConfig)["max_steps"]
    line = f"# @markdown `MAX_STEPS`: {comment}\n"
    assert line in good
    drifted = (good.replace(line, "")
               .replace(f"# @markdown `LORA_R`: {field_comments(TrainConfig)['lora_r']}", "# @markdown `LORA_R`: rank")
               .replace("# @markdown `LORA_ALPHA`:", "# @markdown `GONE`: an old parameter\n# @markdown `LORA_ALPHA`:"))
    assert drifted != good and "MAX_STEPS = -1" in drifted
    assert sync.sync_descriptions(drifted, "04") == good
    pretrain = sync.synced_source(ROOT / "notebooks" / "src" / "03_pretrain.py")
    own = TrainConfig.notebook_comments()["03"]["lora_r"]
    assert f"# @markdown `LORA_R`: {own}\nLORA_R = 64" in pretrain and own not in good
    with pytest.raises(SystemExit, match="parameter MAX_STEP is no field of TrainConfig"):
        sync.sync_descriptions(good.replace("MAX_STEPS = -1", "MAX_STEP = -1"), "04")
    long = "a description that goes on " * 10  # wrapped onto further form lines, read back whole
    wrapped = sync.description_lines("LONG_ONE", long.strip())
    assert len(wrapped) == 3 and all(len(line) <= 120 for line in wrapped)
    assert sync.description_above(wrapped + ["LONG_ONE = 1"], len(wrapped)) == f"`LONG_ONE`: {long.strip()}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_values_set_in_code_do_not_collide_with_a_smoke_preset(path):
    """Values a notebook sets in code (``from_params(..., x=...)``, ``cfg.replace(x=...)``) come after
    the SMOKE preset: none of them is a field the preset sets, so SMOKE=1 runs as it always did."""
    from helpers.notebooks import notebook_configs
    nb = nbformat.read(path, as_version=4)
    preset = {k for cls in notebook_configs(path.name) for k in cls.smoke_preset()}
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(c.source)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("from_params", "replace")
            ):
                names = {k.arg for k in node.keywords if k.arg}
                assert not names & preset, f"{path.name}: {sorted(names & preset)} set in code and by the SMOKE preset"


NOTEBOOK_CELLS = [
    ("markdown", "# A notebook"),
    ("code", 'MAX_STEPS = 5  # @param {type:"integer"}\nRUN_NAME = "sft"  # @param {type:"string"}', ["parameters"]),
    ("code", "SCRIPTED = [1, 2]  # a constant of a later cell, not a parameter"),
    (
        "code",
        "from helpers.train.loop import TrainConfig\ncfg = TrainConfig.from_params(globals(), environ={})\n"
        "cfg = TrainConfig.from_params(globals(), environ={})  # run again\n"
        "print('max_steps', cfg.max_steps, cfg.run_name)",
    ),
]


def test_a_misspelt_parameter_fails_the_notebook_with_the_near_miss(tmp_path):
    """A real kernel through papermill: the parameters are the names of the parameters cell and of
    papermill's injected cell (another UPPER_CASE global is none); a misspelt one stops the notebook."""
    from papermill.exceptions import PapermillExecutionError
    from helpers.pipeline import run_notebook
    nb = nbformat.v4.new_notebook()
    for kind, text, *tags in NOTEBOOK_CELLS:
        cell = nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        if tags:
            cell.metadata["tags"] = tags[0]
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    src = tmp_path / "params.ipynb"
    nbformat.write(nb, src)
    out = run_notebook(src, tmp_path / "ok", timeout=120, parameters={"MAX_STEPS": 7, "RUN_NAME": "other"})
    text = "".join(
        o.get("text", "") for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs
    )
    assert "max_steps 7 other" in text
    with pytest.raises(PapermillExecutionError, match="The parameters cell names 'MAX_STEP', which is not a "
                                                       "TrainConfig or PretrainSources or FinetuneChoices field; "
                                                       "did you mean 'MAX_STEPS'"):
        run_notebook(src, tmp_path / "bad", timeout=120, parameters={"MAX_STEP": 7})


def test_requirements_are_pinned_and_the_package_asks_for_those_pins():
    import tomllib
    from helpers.common.workspace import requirement_pins
    pins = requirement_pins(ROOT / "requirements.txt")
    assert pins and all("==" in p.spec for p in pins), [p.spec for p in pins if "==" not in p.spec]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {p.spec for p in pins if p.part == "core" and p.name != "torch"}
    assert core <= set(project["dependencies"]) and "torch" in project["dependencies"]  # any torch: Colab's is kept
    extras = project["optional-dependencies"]
    assert {p.spec for p in pins if p.part == "dev"} <= set(extras["dev"]) and extras["gpu"] == ["liger-kernel==0.8.5"]
    assert not any(
        "==" in d and d not in {p.spec for p in pins} for ds in [project["dependencies"], *extras.values()] for d in ds
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_dropdown_offers_every_choice_its_help_names(path):
    """A Colab dropdown (`# @param [...]`) holds every quoted choice its `# @markdown` help names:
    the help of QUANTIZATION said "8bit" where the dropdown of notebooks 03 and 05 lacked it."""
    import re
    lines = (ROOT / "notebooks" / "src" / (path.stem + ".py")).read_text().splitlines()
    dropdowns = 0
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Z][A-Z0-9_]*) = .*  # @param (\[.*\])$", line)
        if not m:
            continue
        dropdowns += 1
        options, j, help_lines = ast.literal_eval(m.group(2)), i - 1, []
        while j >= 0 and lines[j].startswith("# @markdown "):
            help_lines.insert(0, lines[j][len("# @markdown "):])
            j -= 1
        named = re.findall(r'"([\w.-]+)"', " ".join(help_lines))
        assert named, f"{path.name}: {m.group(1)}'s help names none of its choices"
        assert [n for n in named if n not in options] == [], f"{path.name}: {m.group(1)}'s dropdown {options}"
    assert dropdowns or path.stem == "00", path.name
