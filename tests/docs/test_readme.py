"""README promises that a test can check: its Python examples run, its defaults table is the config's, and CI runs
the commands it gives."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from agents.config import DQNConfig

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_python_examples_run(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write files (agent.npz)
    exec(compile(_python_blocks()[index], f"README block {index}", "exec"), {})
    assert capsys.readouterr().out.strip(), "each example prints its result"


def test_there_are_examples() -> None:
    assert len(_python_blocks()) >= 2


def test_defaults_table_matches_config() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", README, flags=re.M))
    fields = {f.name: f.default for f in dataclasses.fields(DQNConfig)}
    assert set(fields) <= set(rows), f"fields missing from README's table: {sorted(set(fields) - set(rows))}"
    for name, default in fields.items():
        shown = rows[name].strip()
        if isinstance(default, bool):
            assert shown == str(default).lower(), name
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            assert float(shown) == default, name
        else:
            assert shown == str(default), name


def test_ci_runs_readme_commands() -> None:
    commands = re.findall(r"^    (python -m pip install .*)$", README, flags=re.M)
    assert len(commands) == 2, commands
    test_cmd = commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    steps = [line.strip() for line in ci.splitlines()
             if line.strip() and not line.strip().startswith(("#", "set ", "cd "))]
    assert steps == test_cmd.split(" && "), f"CI runs {steps}, README says {test_cmd!r}"


def _quick_start() -> list[list[str]]:
    """Each command of README's "Quick start" block, as argv words (comments dropped)."""
    block = README.split("## Quick start", 1)[1].split("\n\n", 2)[1]
    return [line.split("#", 1)[0].split() for line in block.splitlines() if line.strip()]


def test_the_quick_start_commands_name_flags_their_scripts_have() -> None:
    import subprocess
    import sys

    commands = _quick_start()
    assert len(commands) >= 10 and all(words[0] == "python" for words in commands)
    helps: dict[str, str] = {}
    for words in commands:
        target = words[1:3] if words[1] == "-m" else words[1:2]
        key = " ".join(target)
        if key not in helps:
            proc = subprocess.run([sys.executable, *target, "--help"], cwd=ROOT, capture_output=True, text=True,
                                  timeout=60)
            assert proc.returncode == 0, (key, proc.stderr)
            helps[key] = proc.stdout
        for flag in (w for w in words if w.startswith("--")):
            assert re.search(rf"{re.escape(flag)}\b", helps[key]), f"{key} has no {flag} (README's Quick start)"
