"""Command-line options generated from `DQNConfig`: a field added once appears in `--help` with its docstring."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, NoReturn

from agents.config import DQNConfig, field_docs


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
            group.add_argument(flag, type=parse_bool, default=None, metavar="BOOL", help=help_text)
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


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2, like every other error here."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see --help)")


def fail(prog: str, message: str) -> NoReturn:
    """Print one readable line to stderr and exit with status 2 (the command-line usage-error status)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_seeds(text: str) -> list[int]:
    """Seeds from `"0-9"`, `"0,3,7"`, `"0-4,10-14"` or `"0 3 7"`: non-negative, distinct, ranges inclusive.

    Raises:
        ValueError: an empty list, a malformed item (`a-b`, `3-1`, `-2`), or a seed given twice, naming it.
    """
    seeds: list[int] = []
    items = [item for item in text.replace(",", " ").split() if item]
    if not items:
        raise ValueError(f"--seeds must name at least one seed (e.g. 0-9 or 0,3,7), got {text!r}")
    for item in items:
        low, dash, high = item.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"--seeds item {item!r} is not a seed or a range of non-negative integers like 0-9")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"--seeds range {item!r} runs backwards; write {last}-{first}")
        seeds.extend(range(first, last + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"--seeds names seed(s) {repeated} more than once in {text!r}")
    return seeds
