"""Helpers shared by the tests that run a script's `main` in-process (on pytest's pythonpath, like statecheck)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a fresh module, so a test can call its `main(argv)`."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(script: ModuleType, capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `script.main(ARGS)`, in-process (a SystemExit's code counts as its status)."""
    try:
        status = script.main([str(a) for a in args])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def tree(folder: Path) -> dict[Path, bytes | None]:
    """Every path under `folder` with its bytes (None for a folder): what a refusal must leave as it was."""
    return {p: (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}
