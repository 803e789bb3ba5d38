"""The house rules of helpers/ (CONTRIBUTING.md, "Layout"): rooms import only downward, at the top of
a module, without loops; no module over 600 lines and no function over 80, kernels aside."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "helpers"
# Each room may import itself and the rooms before it, never a later one.
ROOMS = ["core", "common", "scrape", "dataset", "train", "evaluation", "chat", "sweep", "pipeline", "notebooks"]
KERNELS = {"helpers.train.fast_lora", "helpers.train.private_kernels"}  # imported lazily, exempt from the sizes
MAX_MODULE, MAX_FUNCTION = 600, 80


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    return module.split(".")[1] if "." in module else "package"


def kit_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported helpers module, whether the import is at the module's top level) for each import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("helpers"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            out += [(n if n in MODULES else node.module, id(node) in top) for n in names]
        elif isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names if a.name.startswith("helpers")]
    return out


def test_every_module_sits_in_a_room():
    assert {room(m) for m in MODULES} <= set(ROOMS) | {"package"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_and_sit_at_the_top(module):
    mine = room(module)
    for target, at_top in kit_imports(MODULES[module]):
        theirs = room(target)
        assert theirs == "package" or ROOMS.index(theirs) <= ROOMS.index(mine) or mine == "package", \
            f"{module} imports {target}: room {mine!r} may not import the later room {theirs!r}"
        assert at_top or target in KERNELS, f"{module} imports {target} inside a function; move it to the top"


def test_no_import_loops():
    graph = {m: {t for t, at_top in kit_imports(p) if at_top and t in MODULES and t != m} for m, p in MODULES.items()}
    # a room package imports its own modules; a module importing its own room package would loop
    for m, targets in graph.items():
        assert not {t for t in targets if t == ".".join(m.split(".")[:2]) and m.count(".") > 1}, \
            f"{m} imports its own room's package; import the sibling module instead"
    state: dict[str, int] = {}

    def visit(m, trail):
        state[m] = 1
        for t in sorted(graph[m]):
            assert state.get(t) != 1, "import loop: " + " -> ".join(trail + [m, t])
            if t not in state:
                visit(t, trail + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize("module", sorted(set(MODULES) - KERNELS))
def test_modules_and_functions_stay_small(module):
    text = MODULES[module].read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE, f"{module} has {len(text.splitlines())} lines; split it"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            assert n <= MAX_FUNCTION, f"{module}.{node.name} has {n} lines; split it"


def test_each_module_has_its_test_file():
    """helpers/<room>/<module>.py is tested in tests/<room>/test_<module>.py; helpers/<module>.py in
    tests/test_<module>.py."""
    tests = Path(__file__).resolve().parent
    missing = []
    for m, path in MODULES.items():
        if path.name in ("__init__.py", "__main__.py"):
            continue
        parts = m.split(".")[1:]
        where = tests.joinpath(*parts[:-1], f"test_{parts[-1]}.py")
        if not where.exists():
            missing.append(f"{m} -> {where.relative_to(tests.parent)}")
    assert not missing, "modules without their test file:\n" + "\n".join(missing)
