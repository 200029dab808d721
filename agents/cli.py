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
