"""DQNConfig: every hyperparameter of a DQN run in one frozen, validated dataclass.

Each field has a one-line docstring under it; `field_docs()` reads them so the command line (`agents.cli`) and
the README table are generated from this one place.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agents.validate import is_plain_int, is_plain_real

OPTIMIZERS = ("adam", "sgd")
LOSSES = ("mse", "huber")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of the agent, its replay buffer, the training loop and evaluation."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the Q-network's hidden ReLU layers (the input and output widths come from the environment)."""
    dtype: str = "float32"
    """Floating-point type of the networks and replay buffer: float32 (fast) or float64."""
    optimizer: str = "adam"
    """Optimizer: adam or sgd."""
    learning_rate: float = 2.3e-3
    """Optimizer step size."""
    momentum: float = 0.0
    """SGD momentum in [0, 1); ignored by adam."""
    gamma: float = 0.99
    """Discount factor in [0, 1]."""
    n_step: int = 3
    """Steps per return: y = r_t + ... + gamma^(n-1) r_(t+n-1) + gamma^n Q'(s_(t+n), a'); 1 is plain DQN."""
    n_envs: int = 16
    """Environments stepped together (E); every cadence below counts transitions, whatever E is."""
    batch_size: int = 128
    """Transitions per gradient step."""
    buffer_size: int = 50_000
    """Replay capacity in transitions; the oldest are overwritten."""
    learning_starts: int = 1_000
    """Environment steps of experience collected before the first gradient step (>= batch_size)."""
    train_freq: int = 64
    """Take gradient steps every this many transitions (environment steps summed over the E envs)."""
    gradient_steps: int = 64
    """Gradient steps taken each time training happens."""
    target_update_interval: int = 128
    """Gradient steps between target-network updates."""
    tau: float = 1.0
    """Target update weight in (0, 1]: 1 copies the online network (hard update), less is a Polyak average."""
    double_dqn: bool = True
    """Double DQN: the online network picks a' and the target network evaluates it."""
    dueling: bool = False
    """Dueling head: Q = V + A - mean_a A from one linear map of the last hidden layer (dqn_np.layers.Dueling)."""
    prioritized: bool = False
    """Prioritized replay: draw transition i with probability p_i / sum p, p_i = (|TD error| + eps)^alpha."""
    prioritized_alpha: float = 0.6
    """Prioritized replay: how much the priorities count, in [0, 1] (0 is uniform sampling)."""
    prioritized_beta: float = 0.4
    """Prioritized replay: importance-sampling exponent at the start, in [0, 1], annealed linearly to 1 over the run."""
    prioritized_eps: float = 1e-6
    """Prioritized replay: added to each |TD error| (> 0), so every transition keeps a chance to be sampled."""
    loss: str = "huber"
    """TD loss: mse or huber."""
    huber_delta: float = 1.0
    """Where the Huber loss turns from quadratic to linear."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clipping threshold; 0 disables clipping."""
    epsilon_start: float = 1.0
    """Exploration probability at the first step."""
    epsilon_end: float = 0.04
    """Exploration probability after the decay."""
    epsilon_decay_steps: int = 8_000
    """Environment steps over which epsilon falls linearly (absolute, so a longer --total-steps keeps the schedule)."""
    eval_freq: int = 2_000
    """Greedy evaluation every this many environment steps; 0 disables evaluation during training."""
    eval_episodes: int = 20
    """Episodes per greedy evaluation (solving needs at least 20)."""
    stop_when_solved: bool = False
    """End a member's training at its first solving evaluation; in a batch it leaves the compute, the others go on."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "hidden_sizes":
                value = _check_sizes(value)
                object.__setattr__(self, f.name, value)
            else:
                _check_type(f.name, value, f.type)
        for name, ok, allowed in _RULES:
            value = getattr(self, name)
            if not ok(value):
                raise ValueError(f"DQNConfig.{name} must be {allowed}, got {value!r}")
        if self.batch_size > self.buffer_size:
            raise ValueError(
                f"DQNConfig.batch_size must be <= buffer_size ({self.buffer_size}), got {self.batch_size}"
            )
        if self.n_step > self.buffer_size:
            raise ValueError(
                f"DQNConfig.n_step must be <= buffer_size ({self.buffer_size}), got {self.n_step}"
            )
        if self.stop_when_solved and self.eval_freq == 0:
            raise ValueError("DQNConfig.stop_when_solved needs evaluations during training (eval_freq > 0), got "
                             "eval_freq=0")
        if self.learning_starts < self.batch_size:
            raise ValueError(
                f"DQNConfig.learning_starts must be >= batch_size ({self.batch_size}), got {self.learning_starts}"
            )

    def to_json(self) -> str:
        """The config as a JSON object (tuples become lists)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DQNConfig:
        """Rebuild (and re-validate) a config from `to_json()` output; unknown keys raise ValueError."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"config JSON must be an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"config JSON has unknown fields {unknown}; known fields are {sorted(names)}")
        if "hidden_sizes" in data and isinstance(data["hidden_sizes"], list):
            data["hidden_sizes"] = tuple(data["hidden_sizes"])
        return cls(**data)


def _check_type(name: str, value: Any, annotation: str) -> None:
    checks = {
        "int": (is_plain_int, "an integer"),
        "float": (is_plain_real, "a finite number"),
        "bool": (lambda v: isinstance(v, bool), "true or false"),
        "str": (lambda v: isinstance(v, str), "a string"),
    }
    ok, what = checks[annotation]
    if not ok(value):
        raise ValueError(f"DQNConfig.{name} must be {what}, got {value!r} ({type(value).__name__})")


def _check_sizes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"DQNConfig.hidden_sizes must be a sequence of positive integers, got {value!r}")
    sizes = tuple(value)
    if not sizes or not all(is_plain_int(n) and n >= 1 for n in sizes):
        raise ValueError(f"DQNConfig.hidden_sizes must be one or more positive integers, got {value!r}")
    return sizes


_RULES: tuple[tuple[str, Any, str], ...] = (
    ("dtype", lambda v: v in DTYPES, f"one of {DTYPES}"),
    ("optimizer", lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
    ("learning_rate", lambda v: v > 0, "> 0"),
    ("momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("gamma", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("n_step", lambda v: v >= 1, ">= 1 (1 is plain one-step DQN)"),
    ("n_envs", lambda v: v >= 1, ">= 1"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("buffer_size", lambda v: v >= 1, ">= 1"),
    ("learning_starts", lambda v: v >= 0, ">= 0"),
    ("train_freq", lambda v: v >= 1, ">= 1"),
    ("gradient_steps", lambda v: v >= 1, ">= 1"),
    ("target_update_interval", lambda v: v >= 1, ">= 1"),
    ("tau", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("prioritized_alpha", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("prioritized_beta", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("prioritized_eps", lambda v: v > 0, "> 0"),
    ("loss", lambda v: v in LOSSES, f"one of {LOSSES}"),
    ("huber_delta", lambda v: v > 0, "> 0"),
    ("max_grad_norm", lambda v: v >= 0, ">= 0 (0 disables clipping)"),
    ("epsilon_start", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("epsilon_end", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("epsilon_decay_steps", lambda v: v >= 0, ">= 0"),
    ("eval_freq", lambda v: v >= 0, ">= 0 (0 disables evaluation)"),
    ("eval_episodes", lambda v: v >= 1, ">= 1"),
)


@cache
def field_docs() -> dict[str, str]:
    """`{field name: the one-line docstring under it}`, read from this module's source."""
    tree = ast.parse(inspect.getsource(DQNConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value).strip()  # type: ignore[union-attr]
    return docs


PRESET_DIR = Path(__file__).resolve().parent / "presets"
"""The package's presets, one TOML file per environment: `<env_id>.toml` (see `preset_path`)."""


def preset_path(env_id: str) -> Path | None:
    """The package's preset for `env_id` (`agents/presets/<env_id>.toml`), or None if it has none."""
    if "/" in env_id or not env_id or len(env_id.encode()) > 200:  # namespaced, empty or no file name: no preset
        return None
    path = PRESET_DIR / f"{env_id}.toml"
    return path if path.is_file() else None


def preset_names() -> list[str]:
    """The env ids the package has a preset for."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def resolve_preset(env_id: str, preset: str | Path | Mapping[str, Any] | None) -> str | Path | Mapping[str, Any] | None:
    """What `preset="default"` means for `env_id`: the package's preset if it has one, else None; "none": None;
    anything else as given."""
    if isinstance(preset, str) and preset in ("default", "none"):
        return preset_path(env_id) if preset == "default" else None
    return preset


def config_for(env_id: str, overrides: Mapping[str, Any] | None = None,
               preset: str | Path | Mapping[str, Any] | None = None) -> DQNConfig:
    """The config a run of `env_id` trains with: the defaults, then the preset's fields, then `overrides`.

    Every command builds its config here, so a preset and the flags given combine the same way everywhere.

    Args:
        env_id: the environment the run trains (a preset written for another is refused).
        overrides: `DQNConfig` fields set explicitly (e.g. by command-line flags); they win over the preset.
        preset: None or "none" (the defaults), "default" (the package's preset for `env_id`, `preset_path`, if it
            has one), a mapping, or a TOML file: `DQNConfig` fields at the top level or under `[config]`, and
            optionally `env_id` (must match), `total_steps` (the budget the preset was verified with: read by
            `preset_total_steps`) and a `[source]` table (where the values came from; it is recorded, not read).

    Raises:
        ValueError: an unknown field, a value out of range, a preset of another env id, or a file that is not TOML.
    """
    fields: dict[str, Any] = {}
    preset = resolve_preset(env_id, preset)
    if preset is not None:
        fields.update(read_preset(preset, env_id))
    fields.update(overrides or {})
    names = {f.name for f in dataclasses.fields(DQNConfig)}
    unknown = sorted(set(fields) - names)
    if unknown:
        where = f"{preset}: " if isinstance(preset, (str, Path)) else ""
        raise ValueError(f"{where}unknown DQNConfig field(s) {unknown}; known fields are {sorted(names)}")
    if isinstance(fields.get("hidden_sizes"), list):
        fields["hidden_sizes"] = tuple(fields["hidden_sizes"])
    try:
        return DQNConfig(**fields)
    except ValueError as e:
        from_preset = sorted(set(fields) - set(overrides or {}))
        if isinstance(preset, (str, Path)) and from_preset:
            raise ValueError(f"{preset}: {e} (the preset sets {', '.join(from_preset)}; a flag overrides it)") from None
        raise


def _preset_data(preset: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The preset's top-level table and how to name it in messages."""
    if isinstance(preset, Mapping):
        return dict(preset), "preset"
    path = Path(preset)
    where = str(path)
    import tomllib  # the standard library's since Python 3.11, which the project requires

    try:
        return tomllib.loads(path.read_text()), where
    except OSError as e:
        raise ValueError(f"{where}: cannot read the preset: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{where}: not a TOML file ({e})") from None


def read_preset(preset: str | Path | Mapping[str, Any], env_id: str) -> dict[str, Any]:
    """The `DQNConfig` fields of a preset (see `config_for`), checked against `env_id`."""
    data, where = _preset_data(preset)
    written_for = data.pop("env_id", None)
    if written_for is not None and written_for != env_id:
        raise ValueError(f"{where}: this preset is written for {written_for}, not {env_id}")
    data.pop("source", None)
    data.pop("total_steps", None)
    table = data.pop("config", None)
    if table is not None:
        if not isinstance(table, Mapping):
            raise ValueError(f"{where}: [config] must be a table of DQNConfig fields, got {table!r}")
        data.update(table)
    return data


def read_preset_field(preset: str | Path | Mapping[str, Any] | None, env_id: str, name: str) -> Any:
    """The value a preset (after `resolve_preset`) gives field `name`, or None if it gives none."""
    preset = resolve_preset(env_id, preset)
    return None if preset is None else read_preset(preset, env_id).get(name)


def preset_total_steps(preset: str | Path | Mapping[str, Any] | None, env_id: str) -> int | None:
    """The `total_steps` a preset states (after `resolve_preset`), or None."""
    preset = resolve_preset(env_id, preset)
    if preset is None:
        return None
    data, where = _preset_data(preset)
    total = data.get("total_steps")
    if total is not None and not (is_plain_int(total) and total >= 1):
        raise ValueError(f"{where}: total_steps must be a positive integer, got {total!r}")
    return total


def preset_record(preset: str | Path | Mapping[str, Any] | None, env_id: str) -> dict[str, Any] | None:
    """What a run's config.json says of its preset: `{"path", "source"}` (None: no preset)."""
    preset = resolve_preset(env_id, preset)
    if preset is None:
        return None
    data, where = _preset_data(preset)
    return {"path": where, "source": data.get("source")}
