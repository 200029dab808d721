"""agents/ is four rooms whose imports follow the data flow: data <- algo <- loop <- run, and no cycle.

Read from the source (no import is executed): every `import` at a module's top level, `if TYPE_CHECKING:` blocks
included, counts. Imports inside functions are listed too, and only the documented exceptions are allowed.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ROOT / "agents"
ROOMS = ("data", "algo", "loop", "run")
ALLOWED = {  # room -> the agents modules and rooms it may import
    "base": {"base"},  # agents/config.py, agents/validate.py
    "data": {"base", "data"},
    "algo": {"base", "data", "algo"},
    "loop": {"base", "data", "algo", "loop"},
    "run": {"base", "data", "algo", "loop", "run"},
}
LAZY_EXCEPTIONS = {
    # DQNAgent.save / DQNAgent.load are conveniences at the edge: they call the model-file functions at call time
    ("agents.algo.dqn", "agents.run.models"),
    # the one place where the loop meets Gymnasium
    ("agents.run.train", "envs"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "agents":
        return parts[0]
    if len(parts) == 1:
        return "package"
    return parts[1] if parts[1] in ROOMS else "base"


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of one file, as absolute module names."""
    tree = ast.parse(path.read_text())
    top, lazy = set(), set()

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            return [node.module]
        return []

    for node in tree.body:
        top.update(names(node))
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` and friends
            for sub in ast.walk(node):
                top.update(names(sub))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                lazy.update(names(sub))
    return top, lazy - top


FILES = sorted(p for p in AGENTS.rglob("*.py"))


def test_agents_is_four_rooms_and_a_small_base():
    rooms = sorted(p.name for p in AGENTS.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert rooms == sorted(ROOMS)
    flat = sorted(p.name for p in AGENTS.glob("*.py"))
    assert flat == ["__init__.py", "config.py", "validate.py"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_data_flow(path):
    module = module_name(path)
    mine = room(module)
    if mine == "package":
        return  # agents/__init__.py re-exports the public names of every room
    top, lazy = imports(path)
    for target in top:
        theirs = room(target)
        if target.startswith("agents"):
            assert theirs in ALLOWED[mine], f"{module} ({mine}) imports {target} ({theirs})"
        else:
            assert theirs not in ("envs", "gymnasium"), f"{module} imports {target} at import time"
    for target in lazy:
        theirs = room(target)
        if target.startswith("agents") and theirs not in ALLOWED[mine] or theirs in ("envs", "gymnasium"):
            assert (module, target) in LAZY_EXCEPTIONS, f"{module} ({mine}) imports {target} inside a function"


def test_no_import_cycle_between_modules():
    graph = {}
    for path in FILES:
        top, _ = imports(path)
        graph[module_name(path)] = {t for t in top if t in {module_name(p) for p in FILES} and t != "agents"}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_the_rule_checker_catches_a_wrong_import(tmp_path):
    """Negative control: a data module importing the loop is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from agents.loop.engine import Engine\n")
    top, _ = imports(bad)
    assert any(room(t) not in ALLOWED["data"] for t in top if t.startswith("agents"))


def test_dqn_np_imports_numpy_only():
    for path in sorted((ROOT / "dqn_np").rglob("*.py")):
        top, lazy = imports(path)
        for target in top | lazy:
            assert target.split(".")[0] in ("numpy", "dqn_np", "__future__", "math", "collections", "typing",
                                            "dataclasses", "argparse", "sys", "functools", "itertools",
                                            "abc", "signal"), f"{path.name} imports {target}"
