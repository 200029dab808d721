"""The classes of command-line failures the bad-input probe found (issue 19), each tested as a class over every
command it can reach: abbreviated flags, empty paths, malformed seed lists, a GIF of more episodes than evaluated,
output folders that cannot be made, a benchmark onto a folder holding a run, --help without the exit statuses, and
the lines printed when every seed diverged. Every refusal: exit status 2, exactly one stderr line
`<prog>: error: ...` naming the bad value, and nothing written (`writes_nothing`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from scripttools import REPO, load_script, run_main, writes_nothing

import agents.run.cli as cli
from agents.run.aggregate import check_out_folder
from agents.run.cli import OneLineParser, parse_seeds, path_arg, suggest_flags
from agents.run.folder import RUN_FILE_NAMES
from agents.run.train import BATCH_FILE_NAMES
from dqn_np import gradcheck

TINY = ["--total-steps", "64", "--n-envs", "2", "--learning-starts", "32", "--batch-size", "16", "--hidden-sizes",
        "8", "--eval-freq", "0", "--buffer-size", "200", "--no-progress"]
BENCH = TINY[:-1]  # benchmark.py draws no progress bar
SCRIPTS = sorted(p.stem for p in (REPO / "scripts").glob("*.py") if not p.stem.startswith("_"))
SIGNAL_COMMANDS = {"train_cartpole", "train_seeds", "sweep"}  # the commands that catch SIGINT / SIGTERM
SPEC = 'env_id = "CartPole-v1"\nseeds = [0]\ntotal_steps = 64\n[grid]\ngamma = [0.9]\n'
LONG = "n" * 300  # longer than any file system's 255 bytes


@pytest.fixture
def script(monkeypatch, tmp_path):
    """`script(name)`: scripts/<name>.py as a module (dqn_np.gradcheck for "gradcheck"), run from an empty tmp_path
    so that anything a command writes by mistake lands where `writes_nothing(tmp_path)` sees it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(REPO / "scripts"))  # bench_update imports _reference_step from there
    return lambda name: gradcheck if name == "gradcheck" else load_script(name)


def refused(module, capsys, root: Path, *args) -> str:
    """The one stderr line of a refusal of `module.main(ARGS)` (status 2, nothing written under `root`)."""
    with writes_nothing(root):
        status, out, err = run_main(module, capsys, *args)
    lines = err.splitlines()
    assert status == 2, (status, out, err)
    assert len(lines) == 1, err
    assert re.match(r"[^:]+: error: ", lines[0]), lines[0]
    return lines[0]


# --- 1. one name per flag: no abbreviations, and a suggestion -----------------------------------------------------

# each command with arguments it needs to parse (required ones given), so `--hel` is the only thing wrong
PARSE_ARGS = {"aggregate_seeds": ["x", "--out", "o"], "sweep": ["spec.toml", "--out", "o"], "evaluate": ["m.npz"],
              "compare_runs": ["a", "b"]}


@pytest.mark.parametrize("name", [*SCRIPTS, "gradcheck"])
def test_no_command_takes_an_abbreviated_flag(name, script, capsys, tmp_path):
    """`--hel` would be `--help` (exit 0) with abbreviations on: every command's parser refuses it."""
    line = refused(script(name), capsys, tmp_path, *PARSE_ARGS.get(name, []), "--hel")
    assert "unrecognized arguments: --hel" in line
    if name != "gradcheck":  # dqn_np cannot import agents: its own parser refuses, without the suggestion
        assert "(did you mean --help?)" in line


@pytest.mark.parametrize(("given", "meant"), [(["--hidden", "16"], "--hidden-sizes"), (["--batch=16"], "--batch-size"),
                                              (["--learning-rat", "0.1"], "--learning-rate")])
def test_an_abbreviation_is_refused_naming_the_flag(given, meant, script, capsys, tmp_path):
    line = refused(script("train_cartpole"), capsys, tmp_path, *TINY, "--out", "r", *given)
    assert line == (f"train_cartpole.py: error: unrecognized arguments: {' '.join(given)} (did you mean {meant}?) "
                    "(see --help)")


def test_a_flag_close_to_none_gets_no_suggestion(script, capsys, tmp_path):
    line = refused(script("train_cartpole"), capsys, tmp_path, *TINY, "--zzz", "1")
    assert line == "train_cartpole.py: error: unrecognized arguments: --zzz 1 (see --help)"


def test_suggestions_name_each_unknown_flag_and_skip_values():
    known = {"--hidden-sizes": 0, "--batch-size": 0, "--seed": 0, "-h": 0}
    assert suggest_flags(["--hidden", "16", "--batch", "8"], known) == (
        " (did you mean --hidden-sizes for --hidden, --batch-size for --batch?)")
    assert suggest_flags(["16", "-x", "--"], known) == ""
    assert suggest_flags(["--sed"], known) == " (did you mean --seed?)"  # no prefix of any: the closest


def test_the_shared_parser_cannot_be_given_abbreviations():
    assert OneLineParser(prog="p").allow_abbrev is False
    with pytest.raises(TypeError, match="allow_abbrev"):
        OneLineParser(prog="p", allow_abbrev=True)


# --- 2. empty paths -----------------------------------------------------------------------------------------------

EMPTY_PATHS = [
    ("train_cartpole", ["--out", "{}"], "--out"), ("train_cartpole", ["--resume", "{}"], "--resume"),
    ("train_cartpole", ["--tensorboard", "{}"], "--tensorboard"), ("train_cartpole", ["--preset", "{}"], "--preset"),
    ("train_seeds", ["--out", "{}"], "--out"), ("aggregate_seeds", ["{}", "--out", "o"], "folders"),
    ("aggregate_seeds", ["x", "--out", "{}"], "--out"), ("sweep", ["{}", "--out", "o"], "spec"),
    ("sweep", ["s.toml", "--out", "{}"], "--out"), ("evaluate", ["{}"], "checkpoint"),
    ("evaluate", ["m.npz", "--json", "{}"], "--json"), ("evaluate", ["m.npz", "--gif", "{}"], "--gif"),
    ("benchmark", ["--out", "{}"], "--out"), ("benchmark", ["--json", "{}"], "--json"),
    *((name, ["--json", "{}"], "--json") for name in ("bench_envs", "bench_update", "bench_extensions",
                                                        "bench_seeds", "compare_sb3")),
]


@pytest.mark.parametrize("blank", ["", "  "], ids=["empty", "blank"])
@pytest.mark.parametrize(("name", "args", "flag"), EMPTY_PATHS, ids=[f"{n}-{f}" for n, _, f in EMPTY_PATHS])
def test_every_path_refuses_an_empty_value(name, args, flag, blank, script, capsys, tmp_path):
    line = refused(script(name), capsys, tmp_path, *(a.format(blank) for a in args))
    assert f"error: argument {flag}: expected a file or folder path, got {blank!r}" in line


class _ParsedError(Exception):
    """Raised by the patched parser with itself, so a test can look at the options a command declares."""


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_path_valued_option_uses_path_arg(name, script, monkeypatch, capsys):
    """The class, not the instances: every option whose value is a path (a FILE / DIR / PATH metavar, or a name
    that is one) is parsed by `path_arg`; a new option cannot forget it."""
    plain = argparse.ArgumentParser.parse_known_args

    def capture(self, args=None, namespace=None):
        if isinstance(self, OneLineParser):
            raise _ParsedError(self)
        return plain(self, args, namespace)  # train_seeds' pre-parser of the cluster flags

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    with pytest.raises(_ParsedError) as caught:
        script(name).main(PARSE_ARGS.get(name, []))
    names = {"out", "resume", "tensorboard", "preset", "json", "gif", "spec", "checkpoint", "folders", "a", "b"}
    paths = [a for a in caught.value.args[0]._actions
             if a.dest in names or str(a.metavar).split(".")[0] in ("FILE", "DIR", "PATH", "OUT")]
    wrong = [a.dest for a in paths if a.type is not path_arg]
    assert not wrong, f"{name}: {wrong} not parsed by path_arg"
    assert paths or name in {"backprop_demo", "bench_sweep", "gradcheck_td"}, name


def test_path_arg_keeps_any_real_name_as_typed():
    assert [path_arg(t) for t in ("a", " a", "./x/", "none")] == ["a", " a", "./x/", "none"]
    with pytest.raises(argparse.ArgumentTypeError, match="NUL"):
        path_arg("a\0b")


# --- 3. seed lists ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "named"), [
    ("0,,1", "'0,,1'"), ("0,1,", "'0,1,'"), (",0", "',0'"), ("0, ,1", "'0, ,1'"), ("0,1 2", "'1 2'"),
    ("0 - 9", "'-'"), ("0-", "'0-'"), ("-1", "'-1'"), ("\u0663", "'\u0663'"), ("\u00b2", "'\u00b2'"),
    ("\uff11", "'\uff11'"), ("", "''"), ("  ", "'  '"), (",", "at least one seed"), ("1.0", "'1.0'"), ("+1", "'+1'"),
    ("0-3,2", "[2]"),
])
def test_parse_seeds_refuses_malformed_lists_naming_the_text(text, named):
    with pytest.raises(ValueError) as e:
        parse_seeds(text)
    assert named in str(e.value)


@pytest.mark.parametrize(("text", "seeds"), [("0-3", [0, 1, 2, 3]), ("0,3,7", [0, 3, 7]),
                                             ("0-1, 10-11", [0, 1, 10, 11]), ("0 3 7", [0, 3, 7]), (" 5 ", [5]),
                                             ("2\t4", [2, 4]), ("007", [7])])
def test_parse_seeds_takes_the_documented_forms(text, seeds):
    assert parse_seeds(text) == seeds


def test_a_seed_list_with_an_empty_item_is_refused_by_the_command(script, capsys, tmp_path):
    line = refused(script("train_seeds"), capsys, tmp_path, *TINY, "--seeds", "0,,1", "--out", "r")
    assert line.startswith("train_seeds.py: error: --seeds '0,,1' has an empty item")


# --- 4. a GIF of more episodes than evaluated ---------------------------------------------------------------------

def test_a_gif_of_more_episodes_than_the_evaluation_is_refused(script, capsys, tmp_path):
    evaluate = script("evaluate")
    line = refused(evaluate, capsys, tmp_path, "m.npz", "--episodes", "1", "--gif", "a.gif", "--gif-episodes", "5")
    assert "--gif-episodes 5 is more than --episodes 1" in line
    args = evaluate.parse_args(["m.npz", "--episodes", "5", "--gif", "a.gif", "--gif-episodes", "5"])  # as many
    assert (args.episodes, args.gif_episodes) == (5, 5)


# --- 5. output folders that cannot be created: refused before any work --------------------------------------------

UNWRITABLE = [
    ("train_cartpole", [*TINY, "--out", "/proc/x/o"], "/proc"), ("train_seeds", [*TINY, "--out", "/proc/x/o"], "/proc"),
    ("train_cartpole", [*TINY, "--tensorboard", "/proc/x/tb", "--out", "r"], "/proc"),
    ("train_cartpole", [*TINY, "--out", f"runs/{LONG}"], "300 bytes"),
    ("aggregate_seeds", ["x", "--out", "/proc/x/o"], "/proc"), ("aggregate_seeds", ["x", "--out", LONG], "300 bytes"),
    ("sweep", ["spec.toml", "--out", LONG, "--workers", "1"], "300 bytes"),
    ("sweep", ["spec.toml", "--out", "/proc/x/o", "--workers", "1"], "/proc"),
    ("benchmark", [*BENCH, "--seeds", "0", "--out", "/proc/x/o"], "/proc"),
    ("benchmark", [*BENCH, "--seeds", "0", "--out", LONG], "300 bytes"),
    ("evaluate", ["m.npz", "--json", "/proc/r.json"], "/proc"),
    ("evaluate", ["m.npz", "--gif", "/proc/a.gif"], "/proc"),
    ("bench_envs", ["--quick", "--json", "/proc/r.json"], "/proc"),
]


@pytest.mark.parametrize(("name", "args", "reason"), UNWRITABLE, ids=[f"{n}-{i}" for i, (n, _, _) in
                                                                       enumerate(UNWRITABLE)])
def test_an_output_folder_that_cannot_be_made_is_bad_input(name, args, reason, script, capsys, tmp_path):
    """/proc takes no new entry whatever its permission bits say (and root ignores them): only a probe can tell."""
    (tmp_path / "spec.toml").write_text(SPEC)
    line = refused(script(name), capsys, tmp_path, *args)
    assert reason in line and ("/proc" in line or LONG[:30] in line), line


def test_the_folder_probe_leaves_nothing_and_refuses_what_it_should(tmp_path):
    (tmp_path / "f").write_text("")
    with writes_nothing(tmp_path):
        assert check_out_folder("--out", tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
        assert check_out_folder("--out", tmp_path) == tmp_path  # an existing folder: probed inside
        for bad, why in ((tmp_path / "f", "it is a file"), (tmp_path / "f" / "x", "is not a folder"),
                         (tmp_path / LONG, "300 bytes")):
            with pytest.raises(ValueError, match=why):
                check_out_folder("--out", bad)


# --- 6. a benchmark onto a folder holding a run -------------------------------------------------------------------

@pytest.mark.parametrize("held", sorted({*RUN_FILE_NAMES, *BATCH_FILE_NAMES, "seed3/config.json"}))
def test_a_benchmark_refuses_a_folder_holding_any_run(held, script, capsys, tmp_path):
    (tmp_path / "old" / held).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "old" / held).write_text("{}")
    line = refused(script("benchmark"), capsys, tmp_path, *BENCH, "--seeds", "0", "--out", "old")
    of = " (a run of seed 3)" if held.startswith("seed3/") else ""
    assert f"--out old: old/{held} exists{of}: the folder already holds a run" in line


def test_a_benchmark_uses_a_folder_holding_no_run(script, capsys, tmp_path):
    """Negative control: other files are no run; the benchmark trains into OUT/seed0/ beside them."""
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    status, _, err = run_main(script("benchmark"), capsys, *BENCH, "--seeds", "0", "--out", "old")
    assert status == 0, err
    assert (tmp_path / "old" / "seed0" / "summary.json").is_file()
    assert (tmp_path / "old" / "notes.txt").read_text() == "mine"


# --- 7. every --help documents the exit statuses ------------------------------------------------------------------

@pytest.mark.parametrize("name", [*SCRIPTS, "gradcheck"])
def test_every_help_documents_the_exit_statuses(name, script, capsys):
    status, out, _ = run_main(script(name), capsys, "--help")
    assert status == 0
    flat = " ".join(out.split())
    assert re.search(r"(?i)exit status", flat), out
    assert re.search(r"\b0\b[^;]*;", flat) and re.search(r"\b2 bad input", flat), out
    if name in SIGNAL_COMMANDS:
        assert "130" in flat and "143" in flat, out


# --- 8. every seed diverged: one error line -----------------------------------------------------------------------

DIVERGE = ["--learning-rate", "1e30", "--max-grad-norm", "0"]


@pytest.mark.parametrize(("name", "seeds"), [("train_seeds", ["--seeds", "0-2"]), ("train_cartpole", [])])
def test_when_every_seed_diverged_only_the_error_line_is_printed(name, seeds, script, capsys):
    status, _, err = run_main(script(name), capsys, *TINY, *DIVERGE, *seeds, "--out", "r")
    assert status == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    what = "every seed (3)" if seeds else "the run"
    assert lines[0].startswith(f"{name}.py: error: {what} diverged: non-finite"), lines[0]


def test_with_seeds_left_each_diverged_seed_keeps_its_warning(script, monkeypatch, capsys):
    """Negative control: a batch where seed 1 diverged and seed 0 did not still warns about seed 1, once."""
    real = cli.train

    def one_diverged(*args, **kwargs):
        result = real(*args, **kwargs)
        assert result["status"] == "completed"
        result["stopped"] = {1: "non-finite loss, Q-value or gradient at update 2 (env step 48)"}
        return result

    monkeypatch.setattr(cli, "train", one_diverged)
    status, out, err = run_main(script("train_seeds"), capsys, *TINY, "--seeds", "0-1", "--out", "r")
    assert status == 0
    assert err.splitlines() == ["train_seeds.py: warning: seed 1 diverged and was stopped: non-finite loss, Q-value "
                                "or gradient at update 2 (env step 48)"]
    assert "1 diverged" in out
