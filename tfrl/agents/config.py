"""What every agent's ``Config`` shares: presets, typed overrides and field validation.

A config is a frozen dataclass. Users change it three ways, in this order of precedence: a named
preset, a TOML file, ``--set key=value`` overrides. Each override is converted to the field's
type, and every bad value is refused with a ``ConfigError`` that names the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import keras

from tfrl.errors import ConfigError
from tfrl.nets import TORSO_CHOICES, TORSOS, is_user_torso, torso_builder, torso_reference

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

_Config = TypeVar("_Config", bound="AgentConfig")


def _convert(field: dataclasses.Field, value: Any, hints: dict) -> Any:
    """Convert ``value`` (a string from the command line or a TOML value) to the field's type."""
    if "convert" in field.metadata:  # ``__post_init__`` converts it, from text or from a Python value
        return value
    kind = hints[field.name]
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind):
        # an optional field (``float | None``): None, or empty / none / null as text, is None
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
            return None
        (kind,) = (arg for arg in typing.get_args(kind) if arg is not type(None))
        origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError("expected true or false")
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if kind is float:
            return _finite(float(value))
        if kind is str:
            return str(value)
        if origin is tuple:
            item_type = typing.get_args(kind)[0]
            items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
            return tuple(_finite(item_type(item)) if item_type is float else item_type(item) for item in items)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{field.name}={value!r} is not a valid {_type_name(kind)}: {error}") from None
    raise ConfigError(f"field {field.name} has a type tfrl cannot set from text: {kind}")


def _finite(value: float) -> float:
    """Every float a config holds is a finite number: NaN and infinity train nothing, and are not JSON."""
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


class SeparateRates:
    """For a config with one ``learning_rate`` (Stable-Baselines3's name and meaning) and an optional
    rate for each of its two networks: ``actor_learning_rate`` or ``critic_learning_rate`` None (the
    default) means ``learning_rate``. The agents read ``actor_rate`` and ``critic_rate``."""

    learning_rate: float
    actor_learning_rate: float | None
    critic_learning_rate: float | None

    @property
    def actor_rate(self) -> float:
        return self.learning_rate if self.actor_learning_rate is None else self.actor_learning_rate

    @property
    def critic_rate(self) -> float:
        return self.learning_rate if self.critic_learning_rate is None else self.critic_learning_rate


NET_ARCH_EXAMPLE = '{"pi": [64, 64], "qf": [256, 256]}'
ROLES = {"pi": "the actor", "vf": "the value critic V(s)", "qf": "the Q-network or Q critics"}


def _net_arch(value: Any) -> dict[str, tuple[int, ...]]:
    """``net_arch`` as role → layer sizes, from a mapping (Python, a TOML table) or its JSON text (``--set``)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise ConfigError(f"net_arch={value!r} is not JSON: expected e.g. {NET_ARCH_EXAMPLE}") from None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"net_arch={value!r} is invalid: expected layer sizes per network, e.g. {NET_ARCH_EXAMPLE} (one list "
            "for every network is hidden_sizes)"
        )
    for role, sizes in value.items():
        if not isinstance(sizes, list | tuple) or not all(
            isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in sizes
        ):
            raise ConfigError(f"net_arch[{role!r}]={sizes!r} is invalid: expected a list of positive layer sizes")
    return {str(role): tuple(sizes) for role, sizes in value.items()}


def _plain(value: Any) -> Any:
    """``value`` with its tuples made lists, also inside dicts: what JSON and TOML hold."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Base of every agent config. Subclasses add fields, ``PRESETS`` (with ``PRESET_RUN_DEFAULTS``
    where a preset needs, say, another number of envs) and ``validate``.

    ``torso`` is the networks' body, shared by every agent: ``auto`` (convolutional for image
    observations, an MLP of the config's hidden sizes otherwise), one of ``tfrl.nets.TORSOS``, or the
    user's own: a function or class that returns a new Keras layer (given as itself or as
    ``module:builder``; a layer instance is copied), called once per network (actor, critic, each
    target), whose layer replaces the MLP's hidden layers (``tfrl.nets.torso_reference``). ``net_arch``
    gives networks of one role their own MLP sizes, as Stable-Baselines3's ``net_arch`` names them:
    ``pi`` the actor, ``vf`` the value critic, ``qf`` the Q-network or Q critics (``NET_ARCH_ROLES``
    are the ones an agent has); a role it leaves out gets ``hidden_sizes`` (``layer_sizes``).
    ``frame_stack`` is how many frames the env maker stacks channels last (``tfrl.envs.make_env``):
    0 for the env's convention (4 for ALE ids, none otherwise). It sits in the config, not in the run
    settings, because the agent's replay memory stores stacks one frame at a time and needs to know it.
    ``intra_op_threads`` is how many threads TensorFlow splits one operation over (0: its default, one
    per core). Small networks trained one batch at a time, as MinAtar's, run faster with 1: splitting a
    32-row matrix product costs more than it saves, while independent operations still run side by side.
    It is set before the process's first TensorFlow operation (``tfrl.training.use_intra_op_threads``).
    ``normalize_observations`` puts an ``ObservationNormalizer`` at the input of every network: Box
    observations standardised by their running mean and variance over the training observations
    collected so far, clipped to ±``observation_clip`` (Stable-Baselines3's ``VecNormalize(norm_obs=True)``,
    but inside the networks, so the export carries the statistics and takes raw observations).
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}
    # run settings a preset was tuned with, where they differ from the agent's ``run_defaults``
    # (rl-zoo3's ``n_envs``, say); a value the caller gives still wins
    PRESET_RUN_DEFAULTS: ClassVar[dict[str, dict[str, int]]] = {}
    # the env ids a preset was tuned on: ``tfrl train`` names the preset when a run on one of them takes
    # the defaults, and benchmarks/defaults.py runs it beside the defaults there
    PRESET_ENVS: ClassVar[dict[str, tuple[str, ...]]] = {}
    # fields added after configs were first saved, with the value that keeps a saved config that lacks
    # them (an old run.json, a shipped export's tfrl.json) meaning what it meant: see ``from_saved``
    ADDED_FIELDS: ClassVar[dict[str, Any]] = {"normalize_observations": False}
    NET_ARCH_ROLES: ClassVar[tuple[str, ...]] = ()

    # fields with a ``convert`` take Python values as well as text; ``__post_init__`` converts them
    torso: str = dataclasses.field(default="auto", metadata={"convert": torso_reference})
    net_arch: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict, metadata={"convert": _net_arch})
    frame_stack: int = 0
    intra_op_threads: int = 0
    normalize_observations: bool = False
    observation_clip: float = 10.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if "convert" in field.metadata:
                object.__setattr__(self, field.name, field.metadata["convert"](getattr(self, field.name)))
        self._require_torso()
        self._require_net_arch()
        self.require_non_negative("frame_stack", "intra_op_threads")
        self.require_positive("observation_clip")
        if isinstance(self, SeparateRates):
            self.require_positive("learning_rate")
            for name in ("actor_learning_rate", "critic_learning_rate"):
                if getattr(self, name) is not None:
                    self.require_positive(name)
        if hasattr(self, "activation"):
            self._require_activation()
        self.validate()

    def _require_activation(self) -> None:
        """The networks' activation must be one Keras knows, checked here rather than deep in Keras."""
        try:
            keras.activations.get(self.activation)  # type: ignore[attr-defined]
        except ValueError:
            self._require("activation", False, "a Keras activation name, e.g. relu, tanh, relu6, elu, gelu")

    def _require_torso(self) -> None:
        """A torso name, or a reference to a builder this process can call (``torso_builder`` says why not)."""
        if is_user_torso(self.torso):
            torso_builder(self.torso)
        else:
            self._require("torso", self.torso in ("auto", *TORSOS), TORSO_CHOICES)

    def _require_net_arch(self) -> None:
        for role in self.net_arch:
            if role not in self.NET_ARCH_ROLES:
                roles = ", ".join(f"{name} ({ROLES[name]})" for name in self.NET_ARCH_ROLES)
                raise ConfigError(
                    f"net_arch has {role!r}, a network {type(self).__name__} does not have; its networks are: {roles}"
                )

    def layer_sizes(self, role: str) -> tuple[int, ...]:
        """The MLP hidden layers of the ``role`` network (``ROLES``): ``net_arch[role]``, else the shared ones."""
        return self.net_arch.get(role, self._shared_sizes(role))

    def _shared_sizes(self, role: str) -> tuple[int, ...]:
        """The sizes a role gets that ``net_arch`` leaves out: ``hidden_sizes``, which every agent's config has."""
        return self.hidden_sizes  # type: ignore[attr-defined]

    def validate(self) -> None:
        """Raise ``ConfigError`` for an invalid field; subclasses extend it."""

    @classmethod
    def from_preset(cls: type[_Config], preset: str = "default", overrides: Mapping[str, Any] | None = None) -> _Config:
        """The named preset with ``overrides`` (field name → value or text) applied on top."""
        if preset not in cls.PRESETS:
            raise ConfigError(f"unknown preset {preset!r} for {cls.__name__}; choose one of: {', '.join(cls.PRESETS)}")
        return cls().replace(**cls.PRESETS[preset]).replace(**dict(overrides or {}))

    @classmethod
    def presets_for(cls, env_id: str) -> list[str]:
        """The presets tuned on ``env_id`` (``PRESET_ENVS``), in the order ``PRESETS`` lists them."""
        return [preset for preset in cls.PRESETS if env_id in cls.PRESET_ENVS.get(preset, ())]

    @classmethod
    def from_saved(cls: type[_Config], saved: Mapping[str, Any]) -> _Config:
        """The config a saved dict (``run.json``'s or ``tfrl.json``'s ``config``) describes, also one
        written by an older tfrl: a field it lacks takes its ``ADDED_FIELDS`` value (else the default),
        and equal actor and critic rates saved without a ``learning_rate`` become that one rate."""
        saved = {**cls.ADDED_FIELDS, **saved}
        if issubclass(cls, SeparateRates) and "learning_rate" not in saved:
            actor, critic = saved.get("actor_learning_rate"), saved.get("critic_learning_rate")
            if actor is not None and actor == critic:
                saved.update(learning_rate=actor, actor_learning_rate=None, critic_learning_rate=None)
        return cls().replace(**saved)

    def replace(self: _Config, **overrides: Any) -> _Config:
        """A copy with some fields changed; values may be text, as from the command line."""
        fields = {field.name: field for field in dataclasses.fields(self)}
        hints = typing.get_type_hints(type(self))
        converted = {}
        for name, value in overrides.items():
            if name not in fields:
                close = difflib.get_close_matches(name, fields, n=3)
                hint = f"did you mean {', '.join(close)}?" if close else f"valid fields: {', '.join(fields)}"
                raise ConfigError(f"unknown config field {name!r} for {type(self).__name__}; {hint}")
            converted[name] = _convert(fields[name], value, hints)
        return dataclasses.replace(self, **converted)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (tuples become lists)."""
        return {key: _plain(value) for key, value in dataclasses.asdict(self).items()}

    # Validation helpers used by subclasses' ``validate``.
    def _require(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: expected {expected}")

    def require_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            self._require(name, math.isfinite(value) and value > 0, "a positive number")

    def require_non_negative(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            self._require(name, math.isfinite(value) and value >= 0, "a number >= 0")

    def require_unit_interval(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            self._require(name, 0.0 <= value <= 1.0, "a number in [0, 1]")

    def require_layer_sizes(self, *names: str) -> None:
        for name in names:
            self._require(name, all(size > 0 for size in getattr(self, name)), "positive layer sizes")

    def require_batch_fits(self, batch: str = "batch_size", buffer: str = "buffer_size") -> None:
        """A batch cannot be drawn from a replay memory smaller than itself."""
        self._require(batch, getattr(self, batch) <= getattr(self, buffer), f"at most {buffer}={getattr(self, buffer)}")

    def require_above(self, name: str, floor: str) -> None:
        """``name`` must exceed the field ``floor`` (a Gaussian's ``initial_scale`` its ``min_scale``)."""
        bound = getattr(self, floor)
        self._require(name, getattr(self, name) > bound, f"a number above {floor}={bound}")

    def require_choice(self, name: str, choices: tuple[str, ...]) -> None:
        self._require(name, getattr(self, name) in choices, f"one of {', '.join(choices)}")
