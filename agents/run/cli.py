"""The command line: options generated from `DQNConfig` (a field added once appears in `--help` with its docstring),
and the one `main` behind `train_cartpole.py` (a single run) and `train_seeds.py` (a batch of seeds).

Both commands take the same flags, but for which seeds: `--seed K` for the single run, `--seeds 0-9,12` for the
batch. Exit statuses: 0 done; 1 every seed diverged, or a file could not be written; 2 bad input (one line, nothing
written); 130 or 143 stopped by SIGINT or SIGTERM (the checkpoint is saved and the resume command printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import signal
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from agents.config import (
    DQNConfig,
    config_for,
    field_docs,
    preset_names,
    preset_record,
    preset_total_steps,
    read_preset_field,
)
from agents.loop.evaluation import MIN_SOLVE_EPISODES
from agents.loop.events import StopFlag
from agents.run.aggregate import check_out_folder, format_aggregate
from agents.run.checkpoint import CheckpointError, load_checkpoint
from agents.run.folder import RunFiles
from agents.run.tensorboard import check_tensorboard
from agents.run.train import (
    COMMANDS,
    DEFAULT_TOTAL_STEPS,
    ENV_BACKENDS,
    NO_PLOT,
    SIGNAL_EXIT,
    env_facts,
    stop_on_signals,
    train,
)
from agents.validate import MAX_SEED

DEFAULT_CHECKPOINT_EVERY = 10_000  # env steps per seed between a training command's checkpoints


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """Add one `--field-name` option per `DQNConfig` field, defaulting to None (= the config's default)."""
    docs = field_docs()
    group = parser.add_argument_group("DQN hyperparameters (DQNConfig)")
    for f in dataclasses.fields(DQNConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = f"{docs.get(f.name, '')} (default: {default})"
        if f.name == "hidden_sizes":
            group.add_argument(flag, type=int, nargs="+", default=None, metavar="N", help=help_text)
        elif f.type == "bool":
            # `--dueling` alone means true; `--dueling false` (or true) says it outright
            group.add_argument(flag, type=parse_bool, nargs="?", const=True, default=None, metavar="BOOL",
                               help=help_text)
        else:
            group.add_argument(flag, type={"int": int, "float": float, "str": str}[f.type], default=None,
                               metavar=f.type.upper(), help=help_text)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `DQNConfig` fields given on the command line (those left out are absent)."""
    out = {}
    for f in dataclasses.fields(DQNConfig):
        value = getattr(args, f.name)
        if value is not None:
            out[f.name] = tuple(value) if f.name == "hidden_sizes" else value
    return out


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written; option help wrapped at spaces only, so `--eval-episodes` is never split."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2, like every other error here;
    its help keeps the description's layout and never splits a flag's name (`HelpFormatter`).

    A flag has one name: abbreviations are off (`--hidden 16` is not `--hidden-sizes 16`, whatever the parser),
    and an unknown flag's error names the flag it most likely meant (`suggest_flags`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if kwargs.get("allow_abbrev", False):
            raise TypeError("OneLineParser takes no abbreviated flags: drop allow_abbrev=True")
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            hint = suggest_flags(extras, self._option_string_actions)
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see --help)")


def suggest_flags(given: list[str], known: Any) -> str:
    """` (did you mean --hidden-sizes?)` for the unknown flags among `given` that are close to a known flag (the
    only one it begins, else the closest by `difflib`), '' when none is.

    Args:
        given: the arguments the parser did not recognise.
        known: the parser's option strings.
    """
    flags = sorted(f for f in known if f.startswith("--"))
    hints = []
    for arg in given:
        name = arg.split("=", 1)[0]
        if not name.startswith("--") or name == "--" or name in known:
            continue
        starts = [f for f in flags if f.startswith(name)]
        close = starts if len(starts) == 1 else difflib.get_close_matches(name, flags, n=1, cutoff=0.7)
        if close:
            hints.append((name, close[0]))
    if not hints:
        return ""
    if len(hints) == 1:
        return f" (did you mean {hints[0][1]}?)"
    return f" (did you mean {', '.join(f'{right} for {wrong}' for wrong, right in hints)}?)"


def path_arg(text: str) -> str:
    """An argparse `type=` for every path-valued option and positional: the text as given, refused when it names no
    path (empty or blank, which `Path` would read as the current folder) or holds a NUL byte (no file system takes
    one)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a file or folder path, got {text!r}")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"expected a path without NUL bytes, got {text!r}")
    return text


def fail(prog: str, message: str) -> NoReturn:
    """Print one readable line to stderr and exit with status 2 (the command-line usage-error status)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


MAX_SEEDS = 100_000  # a batch of more members than this is no one-process job


def parse_seeds(text: str) -> list[int]:
    """Seeds from `"0-9"`, `"0,3,7"`, `"0-4, 10-14"` or `"0 3 7"`: non-negative, distinct, ranges inclusive.

    The items are separated by commas (spaces around them allowed) or, in a text with no comma, by spaces; each is
    `K` or `A-B` in ASCII digits, nothing inside.

    Raises:
        ValueError: an empty list, an empty item (`0,,1`, `0,1,`), a malformed item (`a-b`, `3-1`, `-2`, `1 2` between
            commas, `0 - 9`, a non-ASCII digit), or a seed given twice, naming it.
    """
    seeds: list[int] = []
    seen: set[int] = set()
    items = [item.strip() for item in text.split(",")] if "," in text else text.split()
    if not any(items):
        raise ValueError(f"--seeds must name at least one seed (e.g. 0-9 or 0,3,7), got {text!r}")
    for item in items:
        if not item:
            raise ValueError(f"--seeds {text!r} has an empty item (two commas in a row, or one at an end): write "
                             "seeds or ranges between commas, like 0-4,7")
        low, dash, high = item.partition("-")
        if not _ascii_digits(low) or (dash and not _ascii_digits(high)):
            raise ValueError(f"--seeds item {item!r} is not a seed or a range of non-negative integers like 0-9")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"--seeds range {item!r} runs backwards; write {last}-{first}")
        if last - first >= MAX_SEEDS or len(seeds) + last - first >= MAX_SEEDS:
            raise ValueError(f"--seeds names more than {MAX_SEEDS} seeds in {text!r}")
        span = range(first, last + 1)
        repeated = sorted(seen.intersection(span)) if len(span) < 1000 else [k for k in span if k in seen]
        if repeated:
            raise ValueError(f"--seeds names seed(s) {repeated[:10]} more than once in {text!r}")
        seen.update(span)
        seeds.extend(span)
    return seeds


def _ascii_digits(text: str) -> bool:
    return bool(text) and text.isascii() and text.isdigit()


def parse_args(argv: list[str] | None, layout: str, prog: str, doc: str) -> argparse.Namespace:
    """The flags of both training commands (`layout` "single" takes `--seed`, "batch" `--seeds`)."""
    p = OneLineParser(prog=prog, description=doc,
                      epilog="exit status: 0 done; 1 every seed diverged, or a file could not be written; 2 bad "
                             "input (nothing written); 130 / 143 stopped by SIGINT / SIGTERM (checkpoint saved)")
    if layout == "single":
        p.add_argument("--seed", type=int, default=None,
                       help=f"seeds weights, exploration, replay sampling and resets; 0 to {MAX_SEED} (default: 0)")
    else:
        p.add_argument("--seeds", default=None,
                       help=f"seeds to train (each 0 to {MAX_SEED}), as ranges and lists: 0-99, 0-9,12,20-29 "
                            "(default: 0-9; with --resume, "
                            "the batch's own, which you may repeat but not change)")
    p.add_argument("--env-id", default=None, help="Gymnasium env id (default: CartPole-v1)")
    p.add_argument("--env-backend", default=None, choices=ENV_BACKENDS,
                   help="auto: a NumPy vector env where one exists; numpy: require it; gymnasium: Gymnasium's "
                        "synchronous vector env, the reference path (default: auto; a resume: the run's own)")
    p.add_argument("--preset", type=path_arg, default=None, metavar="FILE",
                   help="a TOML file of DQNConfig fields (and total_steps) to start from; explicit flags override it; "
                        "none: DQNConfig's defaults (default: the package's preset for --env-id, agents/presets/"
                        f"<env_id>.toml, which exists for {', '.join(preset_names()) or 'no env'})")
    p.add_argument("--total-steps", type=int, default=None,
                   help=f"environment steps per seed (default: the preset's total_steps, else {DEFAULT_TOTAL_STEPS}; "
                        "with --resume, the run's own)")
    p.add_argument("--out", type=path_arg, default=None, help="run folder (default: runs/<env>-seed<seed>-<time>)" if
                   layout == "single" else "batch folder (default: runs/<env>-seeds<first>-<last>-<time>)")
    p.add_argument("--resume", type=path_arg, metavar="DIR", default=None,
                   help="continue the run in DIR from its checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="env steps per seed between checkpoints; 0: only at the end (default: 10000; a resume: the "
                        "run's own)")
    p.add_argument("--no-save-replay", action="store_true",
                   help="leave the replay buffers out of checkpoints (smaller; resume is then not bit-identical; a "
                        "resume keeps the run's own choice)")
    p.add_argument("--final-eval-episodes", type=int, default=None,
                   help="episodes of the final evaluation of each seed's final and best model (default: "
                        "--eval-episodes; a resume: the run's own)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", type=path_arg, metavar="DIR", default=None,
                   help="also write the logged scalars (training episodes and evaluations) as TensorBoard event "
                        "files into DIR" + (" (one TensorBoard run per seed: DIR/seed<k>/)" if layout == "batch" else
                                             "") + ", viewed with tensorboard --logdir DIR; needs tensorboardX; "
                        "allowed with --resume, whose curves continue without doubling (default: off)")
    add_config_args(p)
    return p.parse_args(argv)


def _checked(args: argparse.Namespace, layout: str) -> tuple[DQNConfig | None, str, list[int] | None, int | None,
                                                             str | Path]:
    """Every usage check that needs no run folder: config, env id, seeds, total steps and where to write.

    The folder itself (free, writable, not holding a run; for --resume, its checkpoint and the run's total) is
    checked by `train`, after it has locked the folder.
    """
    what = "run" if layout == "single" else "batch"
    if layout == "single":
        seeds = None if args.seed is None else [args.seed]
        seed_flag = ["seed"] if args.seed is not None else []
    else:
        seeds = None if args.seeds is None else parse_seeds(args.seeds)
        seed_flag = []
    overrides = config_overrides(args)
    fixed_by_run = sorted(overrides) + [f for f in ("env_id", "preset") if getattr(args, f) is not None] + seed_flag
    if args.resume and fixed_by_run:
        own = "environment, seed and hyperparameters" if layout == "single" else "environment and hyperparameters"
        raise ValueError(f"--resume continues with the {what}'s own {own}; "
                         f"drop {', '.join('--' + f.replace('_', '-') for f in fixed_by_run)}")
    if args.resume and args.out:
        raise ValueError(f"--resume writes into the {what}'s own folder {args.resume}; drop --out {args.out}")
    if seeds is not None and layout == "single" and not 0 <= seeds[0] <= MAX_SEED:
        raise ValueError(f"--seed must be an integer from 0 to {MAX_SEED}, got {seeds[0]}")
    if seeds is not None and seeds[-1] > MAX_SEED:  # parse_seeds gives them in order within each item
        raise ValueError(f"--seeds must be integers from 0 to {MAX_SEED}, got {max(seeds)}")
    if args.env_id is not None and not args.env_id.strip():
        raise ValueError(f"--env-id must name a Gymnasium environment (e.g. CartPole-v1), got {args.env_id!r}")
    if args.checkpoint_every is not None and args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.final_eval_episodes is not None and args.final_eval_episodes < 1:
        raise ValueError(f"--final-eval-episodes must be >= 1, got {args.final_eval_episodes}")
    if args.total_steps is not None and args.total_steps < 1:
        raise ValueError(f"--total-steps must be >= 1, got {args.total_steps}")
    if args.tensorboard is not None:  # the package and the folder; `train` checks the seeds' folders in it
        check_tensorboard(args.tensorboard)
        check_out_folder("--tensorboard", args.tensorboard)
    if args.resume:  # the run's own environment, and its own total unless told otherwise (train reads both)
        check_out_folder("--resume", args.resume)
        return None, "", seeds, args.total_steps, args.resume
    seeds = seeds or ([0] if layout == "single" else list(range(10)))
    env_id = args.env_id if args.env_id is not None else "CartPole-v1"
    preset = args.preset if args.preset is not None else "default"
    config = config_for(env_id, _without_impossible_stop(env_id, overrides, preset), preset)
    env_facts(env_id, args.env_backend or "auto")  # fail early on unknown ids, unsupported spaces and backends
    name = f"seed{seeds[0]}" if layout == "single" else f"seeds{seeds[0]}-{seeds[-1]}"
    out = args.out or Path("runs") / f"{env_id.replace('/', '_')}-{name}-{datetime.now():%Y%m%d-%H%M%S}"
    preset_total = preset_total_steps(preset, env_id)  # checked even when --total-steps overrides it
    total = args.total_steps or preset_total or DEFAULT_TOTAL_STEPS
    args.preset_record = preset_record(preset, env_id)
    check_out_folder("--out", out)  # creatable and writable; `train` checks, under its lock, that it holds no run
    return config, env_id, seeds, total, out


def _without_impossible_stop(env_id: str, overrides: dict[str, Any], preset: Any) -> dict[str, Any]:
    """`overrides`, plus `stop_when_solved=False` (said in one line) when the preset turns stopping on but the flags
    given leave no evaluation that can solve (`--eval-freq 0`, or fewer than 20 episodes): a user who asks for tiny
    evaluations gets them, not a refusal of a setting they never gave. Given as a flag, the contradiction is refused
    as usual."""
    if "stop_when_solved" in overrides or not read_preset_field(preset, env_id, "stop_when_solved"):
        return overrides
    freq, episodes = overrides.get("eval_freq"), overrides.get("eval_episodes")
    if freq == 0 or (episodes is not None and episodes < MIN_SOLVE_EPISODES):
        given = "--eval-freq 0" if freq == 0 else f"--eval-episodes {episodes}"
        print(f"the preset's stop_when_solved is off for this run: with {given} no evaluation can solve (that needs "
              f"evaluations of >= {MIN_SOLVE_EPISODES} episodes)")
        return {**overrides, "stop_when_solved": False}
    return overrides


def main(argv: list[str] | None, layout: str, prog: str, doc: str, early_signals: list[int] = ()) -> int:
    """The training command: parse, check, train, report; returns the exit status (see the module docstring)."""
    with stop_on_signals() as stop:  # for the command's whole life: a signal never raises mid-write
        if early_signals:
            stop.set(signal.Signals(early_signals[0]).name)
        try:
            return _main(argv, layout, prog, doc, stop)
        except BrokenPipeError:  # stdout closed by its reader (`| head`): the files are written; say nothing more
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
            return 1


def _main(argv: list[str] | None, layout: str, prog: str, doc: str, stop: StopFlag) -> int:
    args = parse_args(argv, layout, prog, doc)
    out = args.resume or args.out
    try:
        config, env_id, seeds, total, out = _checked(args, layout)
        if stop:
            print(f"Interrupted by {stop.reason} before training started; nothing was written.")
            return SIGNAL_EXIT[stop.reason]
        resume = bool(args.resume)  # a run option not given again is the run's own (recorded in its checkpoint)
        result = train(config, env_id, seeds, out, total, layout=layout, resume=resume,
                       save_replay=None if resume and not args.no_save_replay else not args.no_save_replay,
                       checkpoint_every=args.checkpoint_every if args.checkpoint_every is not None else
                       None if resume else DEFAULT_CHECKPOINT_EVERY,
                       final_eval_episodes=args.final_eval_episodes, progress=not args.no_progress, stop=stop,
                       plot=True, notify=print,
                       env_backend=args.env_backend,
                       tensorboard=args.tensorboard, preset=getattr(args, "preset_record", None))
    except (ValueError, CheckpointError) as e:  # EnvError and RunFolderError are ValueErrors
        fail(prog, str(e))
    except OSError as e:  # a file of the run could not be written: not a usage error
        print(f"{prog}: error: {_write_error(e, None if out is None else Path(out), layout)}", file=sys.stderr)
        return 1
    root = Path(result["out_dir"])
    for warning in result["warnings"]:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    diverged = result["status"] == "diverged"  # every seed: the one error line below names the count and a reason
    for seed, reason in result["stopped"].items():
        if not diverged:
            print(f"{prog}: warning: seed {seed} diverged and was stopped: {reason}", file=sys.stderr)
    if diverged:
        error = next(iter(result["stopped"].values()))
        what = "the run" if layout == "single" else f"every seed ({len(result['stopped'])})"
        print(f"{prog}: error: {what} diverged: {error}; the checkpoint holds the last good state, and best.npz "
              f"the best model, in {root}", file=sys.stderr)
        return 1
    if result["status"] == "interrupted" or stop:  # a signal after the summary was written: during the report
        steps = result["env_steps"]
        cut = result.get("pending")
        when = (f"at step {steps} of {result['total_steps']}" if steps < result["total_steps"] else
                f"in the last step ({steps})" if cut else
                f"after all {steps} steps (final evaluation, saving or plotting)")
        if cut:  # the step's gradient steps or evaluation were cut: the resume finishes that step first
            when += (f", before its {cut[1]} remaining gradient steps" if cut[1] else ", during its evaluation")
        print(f"Interrupted by {stop.reason} {when}. Checkpoint ({(result['checkpoint_bytes'] or 0) / 1e6:.1f} MB) "
              f"and summary are in {root}\nResume with: {COMMANDS[layout]} --resume {root}")
        return SIGNAL_EXIT[stop.reason]
    if layout == "single":
        summary = result["summaries"][0]
        print(f"learning curve: {summary['learning_curve']}" if summary["learning_curve"] else NO_PLOT)
        print(report_single(summary, root, args.no_save_replay))
    else:
        print(f"aggregate plot: {result['aggregate_plot']}" if result["aggregate_plot"] else NO_PLOT)
        print(report_batch(result, root))
    return 0


def _write_error(e: OSError, root: Path | None, layout: str) -> str:
    """One line: which file could not be written and why, and what is left to resume from."""
    what = f"cannot write {e.filename}: {e.strerror}" if e.filename else f"cannot write the run: {e}"
    if root is None:
        return what
    files = RunFiles(root)
    try:
        step = load_checkpoint(files.checkpoint).meta.get("env_steps")
    except (CheckpointError, OSError):
        return f"{what}; {files.root} holds no loadable checkpoint to resume"
    return (f"{what}; the last checkpoint (step {step}) is intact: make room, then resume with "
            f"{COMMANDS[layout]} --resume {files.root}")


def report_single(summary: dict, root: Path, no_replay: bool) -> str:
    """The closing lines of a single run: speed, whether and when it solved, best and final evaluations, files."""
    if summary["solved"]:
        solved = f"solved at step {summary['solved_at_step']} after {summary['solved_at_seconds']:.1f} s of training"
        if summary.get("stopped_solved"):
            solved += " (and stopped there: stop_when_solved)"
    elif summary["solve_threshold"] is None:
        solved = f"never counted as solved ({summary['env_id']} has no reward threshold)"
    elif summary["eval_episodes"] < 20:
        solved = ("not solved (solving needs evaluations over at least 20 episodes; these had "
                  f"{summary['eval_episodes']})")
    else:
        solved = "not solved"
    if summary["best_eval_step"] is None:
        why = ("--eval-freq 0" if not summary["eval_freq"] else
               f"the first was due at step {summary['eval_freq']}")
        best = f"no evaluation during training ({why}), so no best.npz"
    else:
        best = (f"best eval {summary['best_eval_mean']:.1f} at step {summary['best_eval_step']} (saved as best.npz), "
                f"{summary['best_model_eval_mean']:.1f} over the final evaluation's episodes")
    return (f"{summary['env_id']} seed {summary['seed']}: {summary['env_steps']} steps in "
            f"{summary['train_seconds']:.1f} s (+{summary['eval_seconds']:.1f} s evaluating); {solved}.\n"
            f"{best}; final eval {summary['final_eval_mean']:.1f} ± {summary['final_eval_std']:.1f} over "
            f"{summary['final_eval_episodes']} episodes.\nfiles in {root} (checkpoint "
            f"{(summary['checkpoint_bytes'] or 0) / 1e6:.1f} MB{', replay buffer not saved' if no_replay else ''})")


def report_batch(result: dict, root: Path) -> str:
    """The closing lines of a batch: time, seeds solved with their interval, scores, steps to solve, files."""
    notes = []
    if result["env_steps"] != result["total_steps"]:
        notes.append(f"the loop ran {result['env_steps']}")
    if result.get("stopped_solved"):
        notes.append(f"{len(result['stopped_solved'])} stopped when they solved")
    if result["stopped"]:
        notes.append(f"{len(result['stopped'])} diverged")
    steps = f"{result['total_steps']} steps" + (f" ({'; '.join(notes)})" if notes else "")
    return (f"{result['env_id']}: {result['n_seeds']} seeds x {steps} in "
            f"{result['train_seconds']:.1f} s (+{result['eval_seconds']:.1f} s evaluating)\n"
            f"{format_aggregate(result['aggregate'])}\n"
            f"files in {root} (per seed: {root}/seed<k>/; aggregate.json, aggregate.png)")
