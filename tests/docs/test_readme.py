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


def _claims_single_run(ns: dict) -> None:  # 3000 steps in whole vector steps of 16 envs; "out_dir=None: writes nothing"
    assert ns["summary"]["env_steps"] == 3008 and set(ns["summary"]["phase_seconds"]) >= {"collect", "update"}
    assert list(Path(".").iterdir()) == []


def _claims_engine(ns: dict) -> None:  # the shapes its comments state, and the saved agent acting alike
    assert ns["returns"].shape == (5,) and ns["q"].shape == (2,) and ns["actions"].shape == (8,)
    assert type(ns["agent"]).__name__ == "DQNAgent" and ns["agent"].members is None  # "an unstacked DQNAgent"
    assert int(ns["loaded"].act(ns["np"].zeros(4), epsilon=0.0)) == int(ns["agent"].act(ns["np"].zeros(4),
                                                                                          epsilon=0.0))


def _claims_gradients(ns: dict) -> None:  # "delta2: (8, 2), zero outside the taken action"; the check passes
    delta2, actions = ns["delta2"], ns["actions"]
    assert delta2.shape == (8, 2)
    outside = ns["np"].ones_like(delta2, bool)
    outside[ns["np"].arange(8), actions] = False
    assert (delta2[outside] == 0).all() and (delta2[~outside] != 0).all()
    assert all(r.passed for r in ns["check_mlp"](ns["net"], ns["x"], lambda q: ns["td_loss"](q, actions, ns["y"])))


def _claims_batch(ns: dict) -> None:  # "one per seed, with exactly a single run's keys"
    summaries = ns["result"]["summaries"]
    assert [s["seed"] for s in summaries] == [0, 1, 2] and len({frozenset(s) for s in summaries}) == 1
    assert 0.0 <= ns["aggregate"]["fraction_solved"]["value"] <= 1.0


def _claims_sweep(ns: dict) -> None:  # two trials, each completed, in the folder the comment names
    assert [row["status"] for row in ns["table"]] == ["completed", "completed"]
    assert Path("runs/sweep-demo/trials.csv").exists() and Path("runs/sweep-demo/best.toml").exists()


CLAIMS = {"train_one(config": _claims_single_run, "Engine(make_vec_env": _claims_engine,
          "check_mlp(net": _claims_gradients, "train(config, \"CartPole-v1\", seeds=[0, 1, 2]": _claims_batch,
          "run_sweep(spec": _claims_sweep}
"""What each README example's comments say it does, checked on the names it leaves (keyed by a line it holds)."""


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_python_examples_do_what_their_comments_say(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write files (agent.npz, runs/)
    block = _python_blocks()[index]
    claims = [check for key, check in CLAIMS.items() if key in block]
    assert len(claims) == 1, "every README example has its claims checked here"
    namespace: dict = {}
    exec(compile(block, f"README block {index}", "exec"), namespace)
    assert capsys.readouterr().out.strip(), "each example prints its result"
    claims[0](namespace)


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


def test_each_defaults_study_spec_changes_one_field_the_table_shows() -> None:
    """docs/studies/defaults/*.toml, the SPECs behind the table's figures: each is DQNConfig's defaults (no preset)
    with one field swept to values other than its default (baseline.toml: only the default), as the table says."""
    from agents.run.sweep import SweepSpec

    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|", README, flags=re.M))
    defaults = dataclasses.asdict(DQNConfig())
    specs = sorted((ROOT / "docs" / "studies" / "defaults").glob("*.toml"))
    assert len(specs) >= 10 and "for f in docs/studies/defaults/*.toml; do python scripts/sweep.py $f" in README
    for path in specs:
        spec = SweepSpec.from_toml(path)
        assert spec.env_id == "CartPole-v1" and spec.metric == "median_steps_to_solve" and spec.search == "grid"
        trials = spec.planned()
        assert all(t.config().stop_when_solved for t in trials), path.name
        for trial in trials:
            changed = {k: v for k, v in dataclasses.asdict(trial.config()).items()
                       if k != "stop_when_solved" and v != defaults[k]}
            if path.stem == "baseline":
                assert changed == {}, changed
            else:
                assert list(changed) == [path.stem], (path.name, changed)  # the one field, named by the file
                assert path.stem in rows and "/20" in rows[path.stem], f"README's row for {path.stem} shows no figure"


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
