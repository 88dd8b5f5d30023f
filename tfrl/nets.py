"""Keras networks for every agent, each an encoder, a torso and a head.

    observations (as the env gives them)
      → ObservationEncoder   one-hot for Discrete / MultiDiscrete, float32 (uint8 frames scaled to [0, 1])
      → ObservationNormalizer  optional: running mean and variance of Box observations, clipped
      → torso                MLP, or ConvTorso for image observations (Nature-DQN or MinAtar sizes)
      → head                 QHead (optional dueling), CategoricalHead, GaussianHead, DeterministicHead, ValueHead

Every piece is a small Keras layer registered under the ``tfrl`` package with a ``get_config``, and
the networks the agents use (``QNetwork``, ``CategoricalActor``, …) are ``keras.Model`` subclasses
composed of them, so a convolutional network is one choice (``torso="nature"``) and not a copy, and
a saved ``.keras`` file of one loads in any Keras project that has tfrl installed. ``plain`` turns a
network into a functional model of Keras' own layers with the same weights, which loads without
tfrl: what an export writes beside its SavedModel. ``resolve_torso`` picks
the torso for an observation space: rank-3 Box observations (height, width, channels) get a
convolutional one, everything else an MLP.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
from keras import layers, ops

from tfrl.errors import ConfigError
from tfrl.references import imported, reference_of

ENCODED_SPACES = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")
TORSOS = ("mlp", "nature", "minatar")
CONV_TORSOS: dict[str, dict[str, Any]] = {
    # Mnih et al. 2015 (Nature): 32 8×8 stride 4, 64 4×4 stride 2, 64 3×3 stride 1, dense 512.
    "nature": {"filters": (32, 64, 64), "kernel_sizes": (8, 4, 3), "strides": (4, 2, 1), "units": 512},
    # Young & Tian 2019 (MinAtar): one 16-filter 3×3 stride-1 convolution, dense 128, for 10×10 frames.
    "minatar": {"filters": (16,), "kernel_sizes": (3,), "strides": (1,), "units": 128},
}
NATURE_MIN_SIZE = 36  # the Nature torso's three convolutions need frames at least this wide
TORSO_CHOICES = "auto, mlp, nature, minatar, 'module:builder', or a function or class that returns a new Keras layer"


def _flatten(tensor: Any) -> Any:
    """Flatten everything but the batch axis (whose size may be unknown: a ``keras.Input``'s)."""
    return ops.reshape(tensor, (-1, math.prod(tensor.shape[1:])))


class _Direct:
    """How a tfrl layer's ``compute`` applies its sublayers when it runs: as they are."""

    def __call__(self, layer: layers.Layer, *inputs: Any) -> Any:
        return layer(*inputs)

    def parameter(self, variable: Any, rows: Any) -> Any:
        """``variable`` (one value per output column) repeated for every row of ``rows``."""
        return ops.broadcast_to(variable, (ops.shape(rows)[0], variable.shape[0]))

    def standardize(self, features: Any, mean: Any, variance: Any) -> Any:
        """``(features − mean) / √variance``, computed as it runs."""
        return (features - mean) / ops.sqrt(variance)


class _Plain:
    """How a tfrl layer's ``compute`` applies its sublayers in ``plain``: fresh copies of Keras' own
    layers (named ``<prefix>_<name>``, unique within a network), holding the same weights."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, layer: layers.Layer, *inputs: Any) -> Any:
        twin = type(layer).from_config({**layer.get_config(), "name": f"{self.prefix}_{layer.name}"})
        outputs = twin(*inputs)
        twin.set_weights(layer.get_weights())
        return outputs

    def parameter(self, variable: Any, rows: Any) -> Any:
        """A Dense layer without bias on a column of ones: ``variable`` for every row, trainable by ``fit``."""
        twin = layers.Dense(variable.shape[0], use_bias=False, name=f"{self.prefix}_{variable.name}")
        outputs = twin(ops.ones_like(rows[:, :1]))
        twin.set_weights([ops.convert_to_numpy(variable)[None]])
        return outputs

    def standardize(self, features: Any, mean: Any, variance: Any) -> Any:
        """Keras' ``Normalization`` layer holding ``mean`` and ``variance`` as constants (they are in its
        config, so the saved model carries them): the same ``(features − mean) / √variance``."""
        twin = layers.Normalization(
            axis=tuple(range(1, len(mean.shape) + 1)),
            mean=ops.convert_to_numpy(mean),
            variance=ops.convert_to_numpy(variance),
            name=f"{self.prefix}_standardize",
        )
        return twin(features)


class _Part(layers.Layer):
    """A piece of a network (encoder, torso or head) whose computation is written once, as
    ``compute(features, apply)`` with ``apply`` running each sublayer: ``call`` runs it, and ``plain``
    replays it on a ``keras.Input`` from copies of Keras' own layers, so that an exported network is a
    functional model that loads where tfrl is not installed (``_Network.plain``)."""

    def compute(self, features: Any, apply: _Direct | _Plain) -> Any:
        raise NotImplementedError

    def call(self, features: Any) -> Any:
        return self.compute(features, _Direct())

    def plain(self, features: Any) -> Any:
        return self.compute(features, _Plain(self.name))


def resolve_torso(torso: str, observation_shape: Sequence[int]) -> str:
    """The torso a network gets: ``torso`` itself (a user's builder takes any observations), or for
    ``"auto"`` a convolutional one for rank-3 (height, width, channels) observations — Nature-DQN's for
    frames at least 36 wide, MinAtar's for smaller ones — and an MLP for everything else."""
    if is_user_torso(torso):
        return torso
    if torso != "auto":
        if torso not in TORSOS:
            raise ValueError(f"torso={torso!r} is not one of auto, {', '.join(TORSOS)}")
        if torso != "mlp" and len(observation_shape) != 3:
            raise ValueError(
                f"torso={torso!r} is convolutional and needs (height, width, channels) observations, "
                f"got shape {tuple(observation_shape)}"
            )
        return torso
    if len(observation_shape) != 3:
        return "mlp"
    return "nature" if min(observation_shape[:2]) >= NATURE_MIN_SIZE else "minatar"


# ------------------------------------------------------------------------------------------------
# Encoder and torsos.
# ------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfrl")
class ObservationEncoder(_Part):
    """Turns a batch of observations, as the env gives them, into float32 features.

    ``space`` describes the observation space (``tfrl.envs.observation_encoding`` writes it):

    - ``None``, a Box: cast to float32, shape kept (the torso flattens or convolves).
    - ``{"type": "Box", "scale": s}``: the same, times ``s`` — ``1/255`` for uint8 frames, so the
      network (and the SavedModel) takes frames as the env gives them and scales inside.
    - ``{"type": "Discrete", "n": n, "start": s}``: the one-hot of ``x − s``, width ``n``, from
      observations of shape ``[batch]``. A one-hot gives every state its own first-layer weights; the
      raw index would make the network's output a smooth function of an arbitrary numbering.
    - ``{"type": "MultiDiscrete", "nvec": [...], "start": [...]}``: the one-hots of the components
      (row-major), concatenated: width ``Σ nvec``.
    - ``{"type": "MultiBinary", ...}``: cast to float32, like a Box.

    Integer observations may arrive as integers or as float32 (how the agents store them: exact for
    any index below 2^24).
    """

    def __init__(self, space: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.space = None if space is None else dict(space)
        self.kind = None if space is None else space.get("type")
        self.scale = 1.0 if space is None else float(space.get("scale", 1.0))
        self.sizes: list[int] = []
        self.starts: list[int] = []
        if space is None:
            return
        if self.kind not in ENCODED_SPACES:
            raise ValueError(f"an observation encoder takes None or a {' / '.join(ENCODED_SPACES)} space, got {space}")
        if self.kind == "Discrete":
            self.sizes, self.starts = [int(space["n"])], [int(space.get("start", 0))]
        elif self.kind == "MultiDiscrete":
            self.sizes = [int(size) for size in space["nvec"]]
            self.starts = [int(start) for start in space.get("start", [0] * len(self.sizes))]
            if len(self.starts) != len(self.sizes):
                raise ValueError(f"MultiDiscrete needs one start per component, got {space}")

    def compute(self, observations: Any, apply: _Direct | _Plain) -> Any:
        if not self.sizes:
            features = ops.cast(observations, "float32")
            return features * self.scale if self.scale != 1.0 else features
        indices = ops.reshape(ops.cast(observations, "int32"), (-1, len(self.sizes)))
        one_hots = [
            ops.one_hot(indices[:, component] - start, size, dtype="float32")
            for component, (size, start) in enumerate(zip(self.sizes, self.starts, strict=True))
        ]
        return one_hots[0] if len(one_hots) == 1 else ops.concatenate(one_hots, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "space": self.space}


def merge_moments(mean: Any, variance: Any, count: Any, batch_mean: Any, batch_variance: Any, batch_count: Any) -> Any:
    """``(mean, variance, count)`` of two sets of samples from each one's moments: Chan, Golub and
    LeVeque's parallel algorithm (1979), Stable-Baselines3's ``RunningMeanStd.update_from_moments``.

        δ = m_b − m_a,   n = n_a + n_b,   m = m_a + δ·n_b/n,   v = (v_a·n_a + v_b·n_b + δ²·n_a·n_b/n) / n

    Plain arithmetic, so it merges NumPy arrays and tensors alike; ``n_a = 0`` gives the batch's own
    moments exactly.
    """
    delta = batch_mean - mean
    total = count + batch_count
    squares = variance * count + batch_variance * batch_count + delta * delta * count * batch_count / total
    return mean + delta * batch_count / total, squares / total, total


VARIANCE_EPSILON = 1e-8  # added to every variance a normaliser divides by, so a constant feature stays finite


@keras.saving.register_keras_serializable(package="tfrl")
class ObservationNormalizer(_Part):
    """Box observations standardised by running statistics and clipped:
    ``clip((x − mean) / √(var + 1e-8), −clip, clip)``.

    ``mean``, ``variance`` and ``count`` are non-trainable float64 variables (a float32 count stops
    counting at 2^24 observations) that only ``update`` changes, with the moments of each batch of raw
    training observations (``merge_moments``); before the first, ``count`` is 0 and the layer leaves
    observations as they are (mean 0, variance 1). One layer is shared by every network of an agent
    (actor, critics, target copies), so they all see the same statistics, and they travel with the
    weights: in checkpoints, the best policy's weights and the SavedModel, which therefore takes raw
    observations. Statistics change only when the agent updates them from collected training
    observations — never while evaluating or exporting. Without it, each observation feature's
    scale sets how fast its first-layer weights learn (MuJoCo's velocities dwarf its angles).
    """

    def __init__(self, clip: float = 10.0, **kwargs: Any):
        super().__init__(**kwargs)
        if not (math.isfinite(clip) and clip > 0):
            raise ValueError(f"clip={clip} must be a positive number")
        self.clip = float(clip)

    def build(self, input_shape: Sequence[int | None]) -> None:
        shape = tuple(input_shape[1:])
        self.mean = self.add_weight(shape=shape, initializer="zeros", dtype="float64", trainable=False, name="mean")
        self.variance = self.add_weight(
            shape=shape, initializer="ones", dtype="float64", trainable=False, name="variance"
        )
        self.count = self.add_weight(shape=(), initializer="zeros", dtype="float64", trainable=False, name="count")

    def compute(self, features: Any, apply: _Direct | _Plain) -> Any:
        mean = ops.cast(self.mean, features.dtype)
        variance = ops.cast(self.variance, features.dtype) + VARIANCE_EPSILON
        return ops.clip(apply.standardize(features, mean, variance), -self.clip, self.clip)

    def update(self, observations: Any) -> None:
        """Merge a batch of observations (``[batch, *shape]``) into the statistics."""
        batch = ops.reshape(ops.cast(observations, "float64"), (-1, *self.mean.shape))
        moments = merge_moments(
            self.mean,
            self.variance,
            self.count,
            ops.mean(batch, axis=0),
            ops.var(batch, axis=0),
            ops.cast(ops.shape(batch)[0], "float64"),
        )
        for variable, value in zip((self.mean, self.variance, self.count), moments, strict=True):
            variable.assign(value)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "clip": self.clip}


@keras.saving.register_keras_serializable(package="tfrl")
class MLP(_Part):
    """Flatten, then one Dense layer per entry of ``hidden_sizes`` (none: flatten only)."""

    def __init__(self, hidden_sizes: Sequence[int] = (64, 64), activation: str = "relu", **kwargs: Any):
        super().__init__(**kwargs)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.dense = [
            layers.Dense(size, activation=activation, name=f"hidden_{index}")
            for index, size in enumerate(self.hidden_sizes)
        ]

    def compute(self, features: Any, apply: _Direct | _Plain) -> Any:
        features = _flatten(features)
        for layer in self.dense:
            features = apply(layer, features)
        return features

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden_sizes": list(self.hidden_sizes), "activation": self.activation}


@keras.saving.register_keras_serializable(package="tfrl")
class ConvTorso(_Part):
    """Convolutions over (height, width, channels) frames, flattened into one Dense layer (ReLU
    throughout, valid padding, as in the Nature DQN and MinAtar networks: ``CONV_TORSOS``)."""

    def __init__(
        self,
        filters: Sequence[int],
        kernel_sizes: Sequence[int],
        strides: Sequence[int],
        units: int,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.filters = tuple(int(value) for value in filters)
        self.kernel_sizes = tuple(int(value) for value in kernel_sizes)
        self.strides = tuple(int(value) for value in strides)
        self.units = int(units)
        self.convolutions = [
            layers.Conv2D(count, size, strides=stride, activation="relu", name=f"conv_{index}")
            for index, (count, size, stride) in enumerate(
                zip(self.filters, self.kernel_sizes, self.strides, strict=True)
            )
        ]
        self.dense = layers.Dense(self.units, activation="relu", name="dense")

    def compute(self, frames: Any, apply: _Direct | _Plain) -> Any:
        for layer in self.convolutions:
            frames = apply(layer, frames)
        return apply(self.dense, _flatten(frames))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "kernel_sizes": list(self.kernel_sizes),
            "strides": list(self.strides),
            "units": self.units,
        }


def make_torso(torso: str, hidden_sizes: Sequence[int], activation: str) -> layers.Layer:
    """The torso layer ``torso`` names (``"mlp"`` uses ``hidden_sizes`` and ``activation``), or a new
    one from the user's builder that ``module:builder`` names (``torso_reference``)."""
    if torso == "mlp":
        return MLP(hidden_sizes, activation, name="torso")
    if torso in CONV_TORSOS:
        return ConvTorso(**CONV_TORSOS[torso], name="torso")
    return build_user_torso(torso)


# ------------------------------------------------------------------------------------------------
# A user's own torso: a function (or class) that builds a Keras layer, named by ``module:qualname``.
# ------------------------------------------------------------------------------------------------

# Builders a new process could not import (a lambda, a local function, one of ``__main__``, a layer
# instance's copier), by the reference ``torso_reference`` gave them: only this process can call them.
# Two lambdas of one function share a reference; the later one passed wins.
_LOCAL_TORSOS: dict[str, Callable[[], layers.Layer]] = {}
_HANDED_OUT: weakref.WeakSet[layers.Layer] = weakref.WeakSet()  # torso layers some network already has


def is_user_torso(torso: str) -> bool:
    """Whether ``torso`` is a reference to a user's builder (``module:qualname``) rather than a name."""
    return ":" in torso


def torso_reference(torso: Any) -> str:
    """The string a config holds for ``torso``: a name (``auto``, ``mlp``, …) or ``module:builder`` as
    given; for a function or class that returns a Keras layer, its ``module:qualname``; for a Keras
    layer instance, a builder of copies of it (``from_config(get_config())``, fresh weights), since
    every network — actor, critic, each target — needs a torso of its own.

    A builder a new process cannot import (a lambda, a local function, one of the script's
    ``__main__``, a layer instance) trains here; its runs resume where it is passed again
    (``tfrl.train(resume=RUN, torso=builder)``).
    """
    if isinstance(torso, str):
        return torso
    if isinstance(torso, layers.Layer):
        builder, reference = _copier(torso), f"{reference_of(type(torso))}.<instance {torso.name}>"
    elif callable(torso):
        builder, reference = torso, reference_of(torso)
    else:
        raise ConfigError(f"torso={torso!r} is invalid: expected {TORSO_CHOICES}")
    if imported(reference) is not builder:
        _LOCAL_TORSOS[reference] = builder
    return reference


def _copier(layer: layers.Layer) -> Callable[[], layers.Layer]:
    """A builder of fresh copies of ``layer``, tried once here so that a layer whose ``get_config``
    does not rebuild it is refused now rather than when the second network is built."""

    def copy() -> layers.Layer:
        return type(layer).from_config(layer.get_config())

    try:
        copy()
    except Exception as error:  # noqa: BLE001 — a user's get_config/from_config may raise anything
        cause = (str(error).strip().splitlines() or [type(error).__name__])[-1]  # Keras's last line says why
        raise ConfigError(
            f"torso={layer!r} cannot be copied from its get_config() ({cause}); every "
            f"network needs a torso of its own, so pass a function that builds one, e.g. "
            f"torso=lambda: {type(layer).__name__}(...)"
        ) from None
    return copy


def torso_builder(reference: str) -> Callable[[], layers.Layer]:
    """The function or class that ``reference`` (``module:qualname``) names, or a ``ConfigError``
    saying why this process cannot call it."""
    if reference in _LOCAL_TORSOS:
        return _LOCAL_TORSOS[reference]
    found = imported(reference)
    if callable(found):
        return found
    module_name, _, name = reference.partition(":")
    if "<" in name or module_name == "__main__":
        raise ConfigError(
            f"torso={reference!r} was built by something only the process that trained could call (a lambda, a "
            "local function, one of a script's __main__ or a layer instance): pass it again, e.g. "
            "tfrl.train(resume=RUN, torso=builder), or define the builder at the top level of an importable module"
        )
    raise ConfigError(
        f"torso={reference!r} names no function or class that can be imported (is the module {module_name!r} "
        f"installed or on PYTHONPATH, with {name!r} in it?); a torso is {TORSO_CHOICES}"
    )


def require_importable_torso(torso: str, why: str) -> None:
    """Refuse a torso only this process can build where another process must build it: ``why`` says which."""
    if torso in _LOCAL_TORSOS:
        raise ConfigError(
            f"{why}, but the torso {torso} cannot be imported there (a lambda, a local function, one of a "
            "script's __main__ or a layer instance): define its builder at the top level of an importable "
            "module and pass it (or 'module:builder')"
        )


def build_user_torso(reference: str) -> layers.Layer:
    """A new torso layer from the builder ``reference`` names, refused unless it is a Keras layer that
    no other network has (a builder returning one shared layer would tie the actor, the critic and the
    targets to the same weights)."""
    layer = torso_builder(reference)()
    if not isinstance(layer, layers.Layer):
        raise ConfigError(
            f"torso={reference!r} returned {layer!r}, not a Keras layer: a torso builder takes no arguments and "
            "returns a new keras.layers.Layer (e.g. keras.Sequential([...]))"
        )
    if layer in _HANDED_OUT:
        raise ConfigError(
            f"torso={reference!r} returned a layer another network already has ({layer.name!r}): a builder must "
            "return a new layer on every call, since each network (actor, critic, each target) trains its own"
        )
    _HANDED_OUT.add(layer)
    return layer


# ------------------------------------------------------------------------------------------------
# Heads.
# ------------------------------------------------------------------------------------------------


def dueling_aggregate(values: Any, advantages: Any) -> Any:
    """``Q = V + A − mean_a A``: subtracting the mean makes V and A identifiable (Wang et al. 2016)."""
    return values + advantages - ops.mean(advantages, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="tfrl")
class QHead(_Part):
    """One Q-value per discrete action; with ``dueling``, V(s) and advantages A(s, a) combined by
    ``dueling_aggregate``."""

    def __init__(self, num_actions: int, dueling: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_actions, self.dueling = int(num_actions), bool(dueling)
        if self.dueling:
            self.value = layers.Dense(1, name="value")
            self.advantages = layers.Dense(self.num_actions, name="advantages")
        else:
            self.q_values = layers.Dense(self.num_actions, name="q_values")

    def compute(self, features: Any, apply: _Direct | _Plain) -> Any:
        if self.dueling:
            return dueling_aggregate(apply(self.value, features), apply(self.advantages, features))
        return apply(self.q_values, features)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_actions": self.num_actions, "dueling": self.dueling}


@keras.saving.register_keras_serializable(package="tfrl")
class CategoricalHead(_Part):
    """The logits of a categorical policy over ``num_actions`` actions."""

    def __init__(self, num_actions: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_actions = int(num_actions)
        self.logits = layers.Dense(self.num_actions, name="logits")

    def compute(self, features: Any, apply: _Direct | _Plain) -> Any:
        return apply(self.logits, features)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_actions": self.num_actions}


class _Bounded(_Part):
    """A head whose outputs live inside Box bounds: ``centre + half_range · tanh(·)``."""

    def __init__(self, action_low: Iterable[float], action_high: Iterable[float], **kwargs: Any):
        super().__init__(**kwargs)
        self.action_low = [float(value) for value in action_low]
        self.action_high = [float(value) for value in action_high]
        if len(self.action_low) != len(self.action_high):
            raise ValueError(f"action bounds differ in length: {self.action_low} vs {self.action_high}")
        self.centre = [(high + low) / 2 for low, high in zip(self.action_low, self.action_high, strict=True)]
        self.half_range = [(high - low) / 2 for low, high in zip(self.action_low, self.action_high, strict=True)]

    def squash(self, raw: Any) -> Any:
        return ops.tanh(raw) * ops.convert_to_tensor(self.half_range) + ops.convert_to_tensor(self.centre)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "action_low": self.action_low, "action_high": self.action_high}


@keras.saving.register_keras_serializable(package="tfrl")
class GaussianHead(_Bounded):
    """Mean and scale of a diagonal Gaussian policy: the mean squashed inside the bounds, the scale
    ``softplus(·) + min_scale`` — from a Dense layer on the features (``state_dependent_scale``, the
    tutorials' design) or one learned parameter per action dimension, which keeps exploration from
    collapsing on states the critic happens to like. Both start at ``initial_scale``."""

    def __init__(
        self,
        action_low: Iterable[float],
        action_high: Iterable[float],
        state_dependent_scale: bool = False,
        initial_scale: float = 1.0,
        min_scale: float = 1e-3,
        **kwargs: Any,
    ):
        super().__init__(action_low, action_high, **kwargs)
        self.state_dependent_scale = bool(state_dependent_scale)
        self.initial_scale, self.min_scale = float(initial_scale), float(min_scale)
        if self.initial_scale <= self.min_scale:
            raise ValueError(f"initial_scale={initial_scale} must exceed min_scale={min_scale}")
        size = len(self.action_low)
        raw_initial = math.log(math.expm1(self.initial_scale - self.min_scale))  # softplus⁻¹
        self.mean = layers.Dense(size, name="mean")
        if self.state_dependent_scale:
            self.scale = layers.Dense(size, bias_initializer=keras.initializers.Constant(raw_initial), name="scale")
        else:
            self.raw_scale = self.add_weight(
                shape=(size,), initializer=keras.initializers.Constant(raw_initial), name="raw_scale"
            )

    def compute(self, features: Any, apply: _Direct | _Plain) -> Any:
        mean = self.squash(apply(self.mean, features))
        raw_scale = (
            apply(self.scale, features) if self.state_dependent_scale else apply.parameter(self.raw_scale, features)
        )
        return mean, ops.softplus(raw_scale) + self.min_scale

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "state_dependent_scale": self.state_dependent_scale,
            "initial_scale": self.initial_scale,
            "min_scale": self.min_scale,
        }


@keras.saving.register_keras_serializable(package="tfrl")
class SquashedGaussianHead(_Bounded):
    """Mean and log standard deviation of a Gaussian over pre-squash actions; the log standard
    deviation is clipped into ``[log_std_min, log_std_max]`` so a sample neither freezes nor explodes."""

    def __init__(
        self,
        action_low: Iterable[float],
        action_high: Iterable[float],
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        **kwargs: Any,
    ):
        super().__init__(action_low, action_high, **kwargs)
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)
        self.mean = layers.Dense(len(self.action_low), name="mean")
        self.log_std = layers.Dense(len(self.action_low), name="log_std")

    def compute(self, features: Any, apply: _Direct | _Plain) -> Any:
        return apply(self.mean, features), ops.clip(apply(self.log_std, features), self.log_std_min, self.log_std_max)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "log_std_min": self.log_std_min, "log_std_max": self.log_std_max}


@keras.saving.register_keras_serializable(package="tfrl")
class DeterministicHead(_Bounded):
    """μ(s): a deterministic continuous action inside the bounds."""

    def __init__(self, action_low: Iterable[float], action_high: Iterable[float], **kwargs: Any):
        super().__init__(action_low, action_high, **kwargs)
        self.action = layers.Dense(len(self.action_low), name="action")

    def compute(self, features: Any, apply: _Direct | _Plain) -> Any:
        return self.squash(apply(self.action, features))


@keras.saving.register_keras_serializable(package="tfrl")
class ValueHead(_Part):
    """One value per row, shape ``[batch]``: V(s), or Q(s, a) on state-action features."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.value = layers.Dense(1, name="value")

    def compute(self, features: Any, apply: _Direct | _Plain) -> Any:
        return ops.squeeze(apply(self.value, features), axis=-1)


# ------------------------------------------------------------------------------------------------
# Networks: encoder → torso → head.
# ------------------------------------------------------------------------------------------------


def _run(layer: layers.Layer, *inputs: Any) -> Any:
    """How a network's ``compute`` applies its parts when it runs: as they are."""
    return layer(*inputs)


def _replay(layer: layers.Layer, *inputs: Any) -> Any:
    """How a network's ``compute`` applies its parts in ``plain``: tfrl's own as Keras' layers
    (``_Part.plain``), anything else (a user's torso, the GRU cell) as it is."""
    return layer.plain(*inputs) if isinstance(layer, _Part) else layer(*inputs)


class _Network(keras.Model):
    """What every network shares: the encoder, the torso and their config.

    A network's computation is written once, as ``compute(inputs, apply)``: ``call`` runs it, and
    ``plain`` replays it on ``keras.Input``s into a functional model of Keras' own layers with the
    same weights, which is what an export saves (Keras loads it without tfrl, and ``fit`` trains it).

    Args:
        hidden_sizes: units of each hidden layer of the MLP torso (unused by a convolutional torso).
        activation: any Keras activation name, used by every MLP hidden layer.
        observation_space: the observation space as ``tfrl.envs.observation_encoding`` describes it
            (None for a Box), which picks the ``ObservationEncoder``.
        torso: ``"mlp"``, ``"nature"`` or ``"minatar"`` (``resolve_torso`` picks one for a space).
        normalizer: an ``ObservationNormalizer`` between the encoder and the torso — the agent's one
            layer, shared by all its networks — or its config (a network loaded from its own), or None.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int],
        activation: str,
        observation_space: dict[str, Any] | None,
        torso: str,
        normalizer: ObservationNormalizer | dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.activation = activation
        self.observation_space = observation_space
        self.torso_kind = torso
        self.encoder = ObservationEncoder(observation_space, name="encoder")
        self.normalizer = ObservationNormalizer.from_config(normalizer) if isinstance(normalizer, dict) else normalizer
        self.torso = make_torso(torso, self.hidden_sizes, activation)

    def features(self, observations: Any, apply: Any = _run) -> Any:
        features = apply(self.encoder, observations)
        if self.normalizer is not None:
            features = apply(self.normalizer, features)
        return apply(self.torso, features)

    def compute(self, inputs: Any, apply: Any) -> Any:
        raise NotImplementedError

    def call(self, inputs: Any) -> Any:
        return self.compute(inputs, _run)

    def plain(self) -> keras.Model:
        """This (built) network as a functional model of Keras' own layers and ops — and the user's
        torso layer, if it has one — holding the same weights and giving the same outputs (flattened
        into a list where there are several: a Gaussian's mean and scale)."""
        shapes = self.get_build_config()["input_shape"]  # what the network was first called with
        several = isinstance(shapes, list | tuple) and isinstance(shapes[0], list | tuple)
        inputs = [keras.Input(shape[1:]) for shape in shapes] if several else keras.Input(shapes[1:])
        outputs = keras.tree.flatten(self.compute(inputs, _replay))
        return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=self.name)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "observation_space": self.observation_space,
            "torso": self.torso_kind,
            "normalizer": None if self.normalizer is None else self.normalizer.get_config(),
        }


@keras.saving.register_keras_serializable(package="tfrl")
class QNetwork(_Network):
    """Maps a batch of observations to one Q-value per discrete action (``QHead``; with ``dueling``,
    V learns from every transition, whatever action it took, which helps when many actions have
    nearly the same value — the 25 torques of the dueling tutorial)."""

    def __init__(
        self,
        num_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        dueling: bool = False,
        observation_space: dict[str, Any] | None = None,
        torso: str = "mlp",
        **kwargs: Any,
    ):
        super().__init__(hidden_sizes, activation, observation_space, torso, **kwargs)
        self.num_actions, self.dueling = int(num_actions), bool(dueling)
        self.head = QHead(self.num_actions, self.dueling, name="head")

    def compute(self, observations: Any, apply: Any) -> Any:
        return apply(self.head, self.features(observations, apply))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_actions": self.num_actions, "dueling": self.dueling}


def soft_update(target: keras.Model, source: keras.Model, tau: float) -> None:
    """Move ``target``'s weights toward ``source``'s: ``t ← τ·s + (1 − τ)·t`` (τ = 1 copies).

    A variable both networks hold (the shared ``ObservationNormalizer``'s statistics) is left alone:
    it is already the source's, and ``τ·s + (1 − τ)·s`` would round it away from itself.
    """
    for target_weight, source_weight in zip(target.weights, source.weights, strict=True):
        if target_weight is not source_weight:
            target_weight.assign(tau * source_weight + (1.0 - tau) * target_weight)


# Policy-gradient networks: a stochastic actor outputs the parameters of a distribution over actions
# (the agents build the tensorflow-probability distribution from them), a critic outputs V(s).


@keras.saving.register_keras_serializable(package="tfrl")
class CategoricalActor(_Network):
    """Maps a batch of observations to the logits of a categorical policy over discrete actions."""

    def __init__(
        self,
        num_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        observation_space: dict[str, Any] | None = None,
        torso: str = "mlp",
        **kwargs: Any,
    ):
        super().__init__(hidden_sizes, activation, observation_space, torso, **kwargs)
        self.num_actions = int(num_actions)
        self.head = CategoricalHead(self.num_actions, name="head")

    def compute(self, observations: Any, apply: Any) -> Any:
        return apply(self.head, self.features(observations, apply))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_actions": self.num_actions}


@keras.saving.register_keras_serializable(package="tfrl")
class GaussianActor(_Network):
    """Maps a batch of observations to the mean and scale of a diagonal Gaussian policy (``GaussianHead``).

    Args:
        action_low, action_high: the bounds of the Box action space (one value per dimension).
        state_dependent_scale, initial_scale, min_scale: see ``GaussianHead``.
    """

    def __init__(
        self,
        action_low: Iterable[float],
        action_high: Iterable[float],
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        state_dependent_scale: bool = False,
        initial_scale: float = 1.0,
        min_scale: float = 1e-3,
        observation_space: dict[str, Any] | None = None,
        torso: str = "mlp",
        **kwargs: Any,
    ):
        super().__init__(hidden_sizes, activation, observation_space, torso, **kwargs)
        self.head = GaussianHead(action_low, action_high, state_dependent_scale, initial_scale, min_scale, name="head")
        self.action_low, self.action_high = self.head.action_low, self.head.action_high

    def compute(self, observations: Any, apply: Any) -> Any:
        return apply(self.head, self.features(observations, apply))

    def get_config(self) -> dict[str, Any]:
        head = self.head.get_config()
        keys = ("action_low", "action_high", "state_dependent_scale", "initial_scale", "min_scale")
        return {**super().get_config(), **{key: head[key] for key in keys}}


@keras.saving.register_keras_serializable(package="tfrl")
class SquashedGaussianActor(_Network):
    """Maps a batch of observations to the mean and log standard deviation of a diagonal Gaussian over
    pre-squash actions ``u`` (Soft Actor-Critic's actor, Haarnoja et al. 2018; ``SquashedGaussianHead``).

    An action is ``squash(u) = centre + half_range · tanh(u)``, inside the bounds by construction; the
    agent adds the change of variables to the log-probability.
    """

    def __init__(
        self,
        action_low: Iterable[float],
        action_high: Iterable[float],
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        observation_space: dict[str, Any] | None = None,
        torso: str = "mlp",
        **kwargs: Any,
    ):
        super().__init__(hidden_sizes, activation, observation_space, torso, **kwargs)
        self.head = SquashedGaussianHead(action_low, action_high, log_std_min, log_std_max, name="head")
        self.action_low, self.action_high = self.head.action_low, self.head.action_high

    def compute(self, observations: Any, apply: Any) -> Any:
        return apply(self.head, self.features(observations, apply))

    def squash(self, pre_squash: Any) -> Any:
        """``centre + half_range · tanh(u)``: a pre-squash action in the env's units, inside the bounds."""
        return self.head.squash(pre_squash)

    def get_config(self) -> dict[str, Any]:
        head = self.head.get_config()
        keys = ("action_low", "action_high", "log_std_min", "log_std_max")
        return {**super().get_config(), **{key: head[key] for key in keys}}


@keras.saving.register_keras_serializable(package="tfrl")
class ValueCritic(_Network):
    """Maps a batch of observations to state values V(s), shape ``[batch]``."""

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        observation_space: dict[str, Any] | None = None,
        torso: str = "mlp",
        **kwargs: Any,
    ):
        super().__init__(hidden_sizes, activation, observation_space, torso, **kwargs)
        self.head = ValueHead(name="head")

    def compute(self, observations: Any, apply: Any) -> Any:
        return apply(self.head, self.features(observations, apply))


@keras.saving.register_keras_serializable(package="tfrl")
class DeterministicActor(_Network):
    """μ(s): a deterministic continuous action inside the Box bounds (``DeterministicHead``)."""

    def __init__(
        self,
        action_low: Iterable[float],
        action_high: Iterable[float],
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        observation_space: dict[str, Any] | None = None,
        torso: str = "mlp",
        **kwargs: Any,
    ):
        super().__init__(hidden_sizes, activation, observation_space, torso, **kwargs)
        self.head = DeterministicHead(action_low, action_high, name="head")
        self.action_low, self.action_high = self.head.action_low, self.head.action_high

    def compute(self, observations: Any, apply: Any) -> Any:
        return apply(self.head, self.features(observations, apply))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "action_low": self.action_low, "action_high": self.action_high}


@keras.saving.register_keras_serializable(package="tfrl")
class QCritic(_Network):
    """Q(s, a) for continuous actions, called as ``critic([observations, actions])``, one value per row.

    With an MLP torso the observation and the action enter the hidden layers together (the torso
    only flattens); a convolutional torso first turns frames into features, then the action joins
    them for the hidden layers.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        observation_space: dict[str, Any] | None = None,
        torso: str = "mlp",
        **kwargs: Any,
    ):
        super().__init__((), activation, observation_space, torso, **kwargs)
        self.hidden_sizes = tuple(int(size) for size in hidden_sizes)
        self.joint = MLP(self.hidden_sizes, activation, name="joint")
        self.head = ValueHead(name="head")

    def compute(self, inputs: Any, apply: Any) -> Any:
        observations, actions = inputs
        joined = ops.concatenate([_flatten(self.features(observations, apply)), _flatten(actions)], axis=-1)
        return apply(self.head, apply(self.joint, joined))


@keras.saving.register_keras_serializable(package="tfrl")
class RecurrentActorCritic(_Network):
    """A GRU cell whose state is carried from step to step, feeding an actor head and a critic head (A3C-RNN).

    Called as ``model([observations, state])`` with ``state`` of shape ``[batch, units]``; returns
    ``(policy, values, next_state)``. ``policy`` is the logits of a categorical policy when
    ``num_actions`` is given, else ``(mean, scale)`` of a diagonal Gaussian inside
    ``action_low``/``action_high`` with a state-dependent scale, as in the tutorial. The torso (a
    flatten, or convolutions for frames) and the cell belong to the critic's side, as in the
    tutorial's A3C_RNN.py: ``critic_variables`` are those and the value layers, ``actor_variables`` the rest.

    Args:
        units: size of the GRU state.
        num_actions: discrete action count, or None for a Box space.
        action_low, action_high: the Box bounds (one value per dimension), or None for a discrete space.
        actor_hidden_sizes, critic_hidden_sizes: Dense layers between the cell and each head.
        initial_scale, min_scale: the Gaussian scale before training, and its floor.
    """

    def __init__(
        self,
        units: int = 64,
        num_actions: int | None = None,
        action_low: Iterable[float] | None = None,
        action_high: Iterable[float] | None = None,
        actor_hidden_sizes: Sequence[int] = (80,),
        critic_hidden_sizes: Sequence[int] = (50,),
        activation: str = "relu6",
        initial_scale: float = 1.0,
        min_scale: float = 1e-3,
        observation_space: dict[str, Any] | None = None,
        torso: str = "mlp",
        **kwargs: Any,
    ):
        super().__init__((), activation, observation_space, torso, **kwargs)
        if (num_actions is None) == (action_low is None or action_high is None):
            raise ValueError("give num_actions for a discrete space or action_low/action_high for a Box, not both")
        self.units = int(units)
        self.num_actions = None if num_actions is None else int(num_actions)
        self.actor_hidden_sizes = tuple(int(size) for size in actor_hidden_sizes)
        self.critic_hidden_sizes = tuple(int(size) for size in critic_hidden_sizes)
        self.initial_scale, self.min_scale = float(initial_scale), float(min_scale)
        self.cell = layers.GRUCell(self.units, name="gru")
        self.actor_trunk = MLP(self.actor_hidden_sizes, activation, name="actor_trunk")
        self.critic_trunk = MLP(self.critic_hidden_sizes, activation, name="critic_trunk")
        self.value_head = ValueHead(name="value_head")
        self.policy_head: layers.Layer
        if action_low is not None and action_high is not None:
            self.policy_head = GaussianHead(
                action_low, action_high, True, self.initial_scale, self.min_scale, name="policy_head"
            )
        else:
            self.policy_head = CategoricalHead(int(num_actions or 0), name="policy_head")
        self.action_low = getattr(self.policy_head, "action_low", None)
        self.action_high = getattr(self.policy_head, "action_high", None)

    def compute(self, inputs: Any, apply: Any) -> Any:
        observations, state = inputs
        cell_output, next_state = apply(self.cell, self.features(observations, apply), state)
        values = apply(self.value_head, apply(self.critic_trunk, cell_output))
        return apply(self.policy_head, apply(self.actor_trunk, cell_output)), values, next_state

    @property
    def critic_variables(self) -> list:
        critic_layers = [self.encoder, self.torso, self.cell, self.critic_trunk, self.value_head]
        return [variable for layer in critic_layers for variable in layer.trainable_variables]

    @property
    def actor_variables(self) -> list:
        critic = {id(variable) for variable in self.critic_variables}
        return [variable for variable in self.trainable_variables if id(variable) not in critic]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["hidden_sizes"]
        return {
            **config,
            "units": self.units,
            "num_actions": self.num_actions,
            "action_low": self.action_low,
            "action_high": self.action_high,
            "actor_hidden_sizes": list(self.actor_hidden_sizes),
            "critic_hidden_sizes": list(self.critic_hidden_sizes),
            "initial_scale": self.initial_scale,
            "min_scale": self.min_scale,
        }
