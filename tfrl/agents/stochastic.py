"""What the policy-gradient agents share: the actor for a space, its distribution, acting, the exported
policy, the rollout they collect and the returns and advantages computed from it.

REINFORCE, actor-critic and PPO import these (A3C keeps private copies until it moves here). The
return computations are pure functions over time-major arrays (``[T]`` or ``[T, num_envs]``), written
with TensorFlow ops so the agents run them inside their compiled update steps; they accept numpy
arrays too. A reverse ``tf.scan`` walks back from the last step.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfrl.nets import VARIANCE_EPSILON, CategoricalActor, GaussianActor, merge_moments

tfd = tfp.distributions


class ActorSettings(Protocol):
    """The config fields ``build_actor`` reads; every stochastic-policy agent's config has them."""

    def layer_sizes(self, role: str) -> tuple[int, ...]: ...

    @property
    def activation(self) -> str: ...

    @property
    def state_dependent_scale(self) -> bool: ...

    @property
    def initial_scale(self) -> float: ...

    @property
    def min_scale(self) -> float: ...


def build_actor(
    action_space: gym.spaces.Discrete | gym.spaces.Box,
    observation_space: gym.Space,
    config: ActorSettings,
    inputs: Mapping[str, Any],
) -> keras.Model:
    """A built ``CategoricalActor`` for a Discrete action space, ``GaussianActor`` for a Box one,
    taking ``inputs`` (the agent's ``network_inputs``: encoder, torso and normaliser for ``observation_space``)."""
    if isinstance(action_space, gym.spaces.Discrete):
        actor = CategoricalActor(int(action_space.n), config.layer_sizes("pi"), config.activation, **inputs)
    else:
        actor = GaussianActor(
            np.ravel(action_space.low),
            np.ravel(action_space.high),
            config.layer_sizes("pi"),
            config.activation,
            state_dependent_scale=config.state_dependent_scale,
            initial_scale=config.initial_scale,
            min_scale=config.min_scale,
            **inputs,
        )
    actor(np.zeros((1, *(observation_space.shape or ())), np.float32))
    return actor


def action_distribution(actor: keras.Model, observations: tf.Tensor) -> tfp.distributions.Distribution:
    """π(·|s) for a batch: Categorical over logits, or a diagonal Normal whose log-prob sums the dimensions."""
    return distribution_from(actor, actor(observations))


def distribution_from(actor: keras.Model, outputs: Any) -> tfp.distributions.Distribution:
    """The distribution of ``actor``'s ``outputs`` (logits, or mean and scale), e.g. ones kept from before an update."""
    return distribution_of(outputs, continuous=not isinstance(actor, CategoricalActor))


def distribution_of(outputs: Any, continuous: bool) -> tfp.distributions.Distribution:
    """π from an actor head's outputs: a Categorical over logits, or a diagonal Normal of ``(mean, scale)``
    whose log-prob sums the dimensions — for heads that are not a whole actor (A3C's recurrent one)."""
    if not continuous:
        return tfd.Categorical(logits=outputs, dtype=tf.int64)
    mean, scale = outputs
    return tfd.Independent(tfd.Normal(mean, scale), reinterpreted_batch_ndims=1)


def next_seed(generator: tf.random.Generator) -> tf.Tensor:
    """A fresh stateless seed for a tensorflow-probability ``sample`` (which wants int32)."""
    return tf.cast(generator.make_seeds(1)[:, 0], tf.int32)


def clip_to_bounds(actor: keras.Model, actions: tf.Tensor) -> tf.Tensor:
    """Continuous actions clipped into the Box bounds; discrete actions unchanged."""
    if isinstance(actor, GaussianActor):
        return tf.clip_by_value(actions, actor.action_low, actor.action_high)
    return actions


class StochasticPolicy(tf.Module):
    """The exported policy: ``action`` (the mode: argmax or mean, inside the bounds), ``sample_action``,
    and ``value`` when a critic is given. Batched float32 observations in."""

    def __init__(
        self, actor: keras.Model, observation_shape: tuple[int, ...], critic: keras.Model | None = None
    ) -> None:
        super().__init__(name="stochastic_policy")
        self.actor = actor
        self.generator = tf.random.Generator.from_seed(0)
        spec = [tf.TensorSpec([None, *observation_shape], tf.float32, name="observation")]
        self.action = tf.function(self._action, input_signature=spec)
        self.sample_action = tf.function(self._sample_action, input_signature=spec)
        if critic is not None:
            self.critic = critic
            self.value = tf.function(self._value, input_signature=spec)

    def _action(self, observation: tf.Tensor) -> tf.Tensor:
        return clip_to_bounds(self.actor, action_distribution(self.actor, observation).mode())

    def _sample_action(self, observation: tf.Tensor) -> tf.Tensor:
        return clip_to_bounds(
            self.actor, action_distribution(self.actor, observation).sample(seed=next_seed(self.generator))
        )

    def _value(self, observation: tf.Tensor) -> tf.Tensor:
        return self.critic(observation)


# The activations ``HostActor`` computes; an actor with another one acts through TensorFlow.
HOST_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda features: np.maximum(features, 0.0),
}


class HostActor:
    """An MLP actor's forward pass and sampling in NumPy, for exploring one vector-env step at a time.

    A TF call costs ~0.22 ms here whatever it computes, while a 64-unit MLP's forward pass and a sample
    take ~0.01 ms in NumPy: for the small actors of classic control, the call was most of every step.
    The weights are copied from the Keras actor at the first call after ``refresh()``, which the agent
    calls after each of its updates and whenever its weights are set from outside (``weights_replaced``:
    a restored checkpoint, the best policy put in for an export); reading them on every call would cost
    as much as the TF call. Samples come from a NumPy generator seeded from the run's seed and
    saved with the agent's counters, so the same seed still gives the same run. An actor with an
    ``ObservationNormalizer`` has its statistics copied with the weights and applied as the layer
    does; they change only between rollouts (``RolloutLearning``, REINFORCE), before the refresh.
    """

    def __init__(self, actor: CategoricalActor | GaussianActor, seed: int) -> None:
        self.actor = actor
        self.activation = HOST_ACTIVATIONS[actor.activation]
        self.rng = np.random.default_rng(seed)
        self.stale = True
        self.hidden: list[tuple[np.ndarray, np.ndarray]] = []
        self.output: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
        self.scale: tuple[np.ndarray, np.ndarray] | np.ndarray = np.zeros(0)
        self.statistics: tuple[np.ndarray, np.ndarray, float] | None = None  # the normaliser's mean, √(var + ε), clip
        bounds = actor.head if isinstance(actor, GaussianActor) else None
        self.centre = np.asarray(bounds.centre if bounds else [], np.float32)
        self.half_range = np.asarray(bounds.half_range if bounds else [], np.float32)
        self.low = np.asarray(actor.action_low if bounds else [], np.float32)
        self.high = np.asarray(actor.action_high if bounds else [], np.float32)

    @staticmethod
    def supports(actor: keras.Model) -> bool:
        """Whether ``actor`` is one this class computes: an MLP on raw Box observations."""
        return (
            isinstance(actor, (CategoricalActor, GaussianActor))
            and actor.torso_kind == "mlp"
            and actor.observation_space is None
            and actor.activation in HOST_ACTIVATIONS
        )

    def refresh(self) -> None:
        """Take the Keras actor's weights again before the next action."""
        self.stale = True

    def sample(self, observations: np.ndarray) -> np.ndarray:
        """A sampled action per row of ``observations`` (float32), from π."""
        outputs = self._current_outputs(observations)
        if isinstance(self.actor, CategoricalActor):
            # Gumbel-max: the argmax of logits plus Gumbel noise is an exact sample of Categorical(logits)
            return np.argmax(outputs + self.rng.gumbel(size=outputs.shape), axis=1)
        mean, scale = outputs
        return (mean + scale * self.rng.standard_normal(mean.shape)).astype(np.float32)

    def mode(self, observations: np.ndarray) -> np.ndarray:
        """π's most likely action per row, clipped to a Box's bounds, as the actor's TF mode computes it."""
        outputs = self._current_outputs(observations)
        if isinstance(self.actor, CategoricalActor):
            return np.argmax(outputs, axis=1)
        return np.clip(outputs[0], self.low, self.high)

    def _current_outputs(self, observations: np.ndarray) -> Any:
        if self.stale:
            self._copy_weights()
            self.stale = False
        return self.outputs(observations)

    def outputs(self, observations: np.ndarray) -> Any:
        """What the Keras actor's ``call`` returns (logits, or mean and scale), from the copied weights."""
        if self.statistics is not None:
            mean, deviation, clip = self.statistics
            observations = np.clip((observations - mean) / deviation, -clip, clip)
        features = observations.reshape(len(observations), -1)
        for kernel, bias in self.hidden:
            features = self.activation(features @ kernel + bias)
        outputs = features @ self.output[0] + self.output[1]
        if isinstance(self.actor, CategoricalActor):
            return outputs
        head = self.actor.head
        mean = self.centre + self.half_range * np.tanh(outputs)
        raw_scale = (
            features @ self.scale[0] + self.scale[1]
            if head.state_dependent_scale
            else np.broadcast_to(self.scale, mean.shape)
        )
        return mean, np.logaddexp(0.0, raw_scale) + head.min_scale  # softplus, as GaussianHead

    def _copy_weights(self) -> None:
        def dense(layer: keras.layers.Dense) -> tuple[np.ndarray, np.ndarray]:
            return layer.kernel.numpy(), layer.bias.numpy()

        head, normalizer = self.actor.head, self.actor.normalizer
        if normalizer is not None:  # float32 arithmetic, as ObservationNormalizer.compute
            variance = normalizer.variance.numpy().astype(np.float32) + np.float32(VARIANCE_EPSILON)
            self.statistics = normalizer.mean.numpy().astype(np.float32), np.sqrt(variance), normalizer.clip
        self.hidden = [dense(layer) for layer in self.actor.torso.dense]
        if isinstance(self.actor, CategoricalActor):
            self.output = dense(head.logits)
            return
        self.output = dense(head.mean)
        self.scale = dense(head.scale) if head.state_dependent_scale else head.raw_scale.numpy()


class RewardScaler:
    """Rewards divided by the running standard deviation of the discounted return, clipped to ±``clip``:
    Stable-Baselines3's ``VecNormalize(norm_reward=True)``.

    Each vector env keeps its discounted return ``R ← γ·R + r`` (0 again after its episode ends); the
    returns of every step are merged into a running variance (``merge_moments``), and each reward
    becomes ``clip(r / √(var + 1e-8), −clip, clip)``. Dividing without centring keeps the sign of
    every reward, so a penalty stays a penalty. The statistics are checkpointed (``state``); the
    returns in progress are not, since a resumed run starts fresh episodes.
    """

    def __init__(self, gamma: float, clip: float = 10.0) -> None:
        self.gamma, self.clip = gamma, clip
        self.returns = np.zeros(0)
        self.mean, self.variance, self.count = 0.0, 1.0, 0.0

    def scale(self, rewards: np.ndarray, done: np.ndarray) -> np.ndarray:
        """One vector-env step's rewards, scaled (float32); ``done`` marks the envs whose episode ended."""
        rewards = np.asarray(rewards, np.float64)
        if len(self.returns) != len(rewards):
            self.returns = np.zeros(len(rewards))
        self.returns = self.returns * self.gamma + rewards
        self.mean, self.variance, self.count = merge_moments(
            self.mean, self.variance, self.count, float(self.returns.mean()), float(self.returns.var()), len(rewards)
        )
        scaled = np.clip(rewards / np.sqrt(self.variance + VARIANCE_EPSILON), -self.clip, self.clip)
        self.returns[np.asarray(done, bool)] = 0.0
        return scaled.astype(np.float32)

    def state(self) -> dict[str, float]:
        return {"mean": self.mean, "variance": self.variance, "count": self.count}

    def load_state(self, state: Mapping[str, float]) -> None:
        self.mean, self.variance, self.count = (float(state[key]) for key in ("mean", "variance", "count"))
        self.returns = np.zeros(0)


class StochasticActing:
    """``act`` for an agent with ``self.actor``: sample (clipped to the bounds) or take the mode.

    Actors that ``HostActor`` supports act in NumPy, sampling and mode alike; others act through
    TensorFlow functions, traced only for them. The NumPy mode is the Keras actor's up to float32
    rounding (the same argmax and mean, as the exported SavedModel computes them on another CPU).
    The unclipped samples of the last exploring ``act`` are kept in ``self.raw_actions``: learning
    uses their log-probability, not that of the clipped action the env received. With the config's
    ``normalize_rewards`` the agent learns from rewards scaled by a ``RewardScaler``
    (``_learning_rewards``); logged returns stay the env's.
    """

    actor: keras.Model
    action_space: gym.spaces.Discrete | gym.spaces.Box
    config: Any

    def _init_acting(self, observation_shape: tuple[int, ...], seed: int) -> None:
        self.generator = tf.random.Generator.from_seed(seed)  # checkpointed: a resumed run samples on
        self.reward_scaler = RewardScaler(self.config.gamma) if self.config.normalize_rewards else None
        self.host_actor = HostActor(self.actor, seed) if HostActor.supports(self.actor) else None
        self.raw_actions: np.ndarray | None = None
        if self.host_actor is not None:
            return
        spec = [tf.TensorSpec([None, *observation_shape], tf.float32)]
        # no tensor-dependent Python control flow to convert: autograph would only cost start-up time
        acting = functools.partial(tf.function, input_signature=spec, autograph=False)
        self._sample = acting(self._sample_actions).get_concrete_function()
        self._mode = acting(self._mode_actions).get_concrete_function()

    def _sample_actions(self, observations: tf.Tensor) -> tf.Tensor:
        return action_distribution(self.actor, observations).sample(seed=next_seed(self.generator))

    def _mode_actions(self, observations: tf.Tensor) -> tf.Tensor:
        return clip_to_bounds(self.actor, action_distribution(self.actor, observations).mode())

    @property
    def continuous(self) -> bool:
        return isinstance(self.actor, GaussianActor)

    def act(self, observations: np.ndarray, explore: bool = False) -> np.ndarray:
        """Actions for a batch of observations: sampled when ``explore``, else the distribution's mode."""
        observations = np.asarray(observations, np.float32)
        host = self.host_actor
        if not explore:
            return host.mode(observations) if host else self._mode(observations).numpy()
        if host is not None:
            self.raw_actions = host.sample(observations)
        else:
            self.raw_actions = self._sample(observations).numpy()
        if self.continuous:
            assert isinstance(self.action_space, gym.spaces.Box)  # build_actor gives a Box a GaussianActor
            return np.clip(self.raw_actions, self.action_space.low, self.action_space.high)
        return self.raw_actions

    def weights_replaced(self) -> None:
        """The NumPy copy of the actor is taken again at the next ``act`` (see ``Agent``)."""
        if self.host_actor is not None:
            self.host_actor.refresh()

    def _learning_actions(self, actions: np.ndarray) -> np.ndarray:
        """What ``observe`` learns from: the unclipped samples behind ``actions`` when they are known."""
        if self.continuous and self.raw_actions is not None and len(self.raw_actions) == len(actions):
            return self.raw_actions
        return np.asarray(actions)

    def _learning_rewards(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        """What ``observe`` learns from: the rewards, scaled when the config normalises them."""
        if self.reward_scaler is None:
            return rewards
        return self.reward_scaler.scale(rewards, np.logical_or(terminated, truncated))

    def acting_state(self) -> dict:
        """The NumPy sampler's and the reward scaler's state, for the agent's ``numpy_state`` (TF's
        sampler is a trackable)."""
        state: dict[str, Any] = {}
        if self.host_actor is not None:
            state["host_sampler"] = self.host_actor.rng.bit_generator.state
        if self.reward_scaler is not None:
            state["reward_scaler"] = self.reward_scaler.state()
        return state

    def load_acting_state(self, state: dict) -> None:
        if self.host_actor is not None and "host_sampler" in state:
            self.host_actor.rng.bit_generator.state = state["host_sampler"]
        if self.reward_scaler is not None:
            self.reward_scaler.load_state(state["reward_scaler"])


def action_spec(action_space: gym.spaces.Discrete | gym.spaces.Box, leading: list) -> tf.TensorSpec:
    """The TensorSpec of a batch of actions with ``leading`` batch dimensions."""
    if isinstance(action_space, gym.spaces.Discrete):
        return tf.TensorSpec(leading, tf.int64)
    return tf.TensorSpec([*leading, *action_space.shape], tf.float32)


class Rollout:
    """The last ``steps`` steps of all vector envs, as time-major arrays ``[steps, num_envs, ...]``.

    Integer actions stay int64, everything else is stored as float32 (``terminated`` and ``truncated``
    as 0/1). The arrays are allocated on the first ``add``, when the number of envs is known.
    """

    FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated")

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.arrays: dict[str, np.ndarray] = {}
        self.position = 0

    def add(self, **step: np.ndarray) -> bool:
        """Store one vector-env step (one keyword per field); True when this step filled the rollout."""
        if not self.arrays:
            self.arrays = {
                key: np.zeros(
                    (self.steps, *np.shape(step[key])),
                    np.int64 if np.issubdtype(np.asarray(step[key]).dtype, np.integer) else np.float32,
                )
                for key in self.FIELDS
            }
        for key in self.FIELDS:
            self.arrays[key][self.position] = step[key]
        self.position = (self.position + 1) % self.steps
        return self.position == 0

    def batch(self) -> list[np.ndarray]:
        """The arrays in ``FIELDS`` order, as the agents' update steps take them."""
        return [self.arrays[key] for key in self.FIELDS]


class RolloutLearning(StochasticActing, ABC):
    """``observe`` for an agent that learns from fixed-length rollouts (actor-critic, PPO).

    The agent sets ``self.rollout`` and ``self.env_steps`` and defines ``learn``, called with the
    rollout's arrays each time it fills, after the rollout's observations were merged into the
    observation statistics (``AgentBase.track_observations``): so they change once per rollout, and
    the update's π_old and V_old see the same statistics as its gradient steps. The rollout in
    progress is not checkpointed: a resumed run starts fresh episodes, so ``load_numpy_state`` restarts it.
    """

    rollout: Rollout
    env_steps: int
    track_observations: Callable[[np.ndarray], None]

    @abstractmethod
    def learn(self, batch: list[np.ndarray]) -> dict[str, float]:
        """One update from a full rollout's arrays; its training metrics."""

    def observe(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> dict[str, float] | None:
        """Add one vector-env step to the rollout; when it is full, learn from it."""
        full = self.rollout.add(
            observations=observations,
            actions=self._learning_actions(actions),
            rewards=self._learning_rewards(rewards, terminated, truncated),
            next_observations=next_observations,
            terminated=terminated,
            truncated=truncated,
        )
        self.env_steps += len(rewards)
        if not full:
            return None
        self.track_observations(self.rollout.arrays["observations"])
        metrics = self.learn(self.rollout.batch())
        self.weights_replaced()
        return metrics

    def numpy_state(self) -> dict:
        """Counters and the sampler: the rollout in progress is dropped, since a resumed run starts fresh episodes."""
        return {"env_steps": self.env_steps, **self.acting_state()}

    def load_numpy_state(self, state: dict) -> None:
        self.env_steps = int(state["env_steps"])
        self.load_acting_state(state)
        self.rollout.position = 0


def flatten_time(batch: tf.Tensor) -> tf.Tensor:
    """``[T, N, ...]`` → ``[T·N, ...]``: a rollout's steps of all envs as one batch."""
    shape = tf.shape(batch)
    return tf.reshape(batch, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))


# ------------------------------------------------------------------------------------------------
# Returns and advantages of on-policy rollouts.
# ------------------------------------------------------------------------------------------------


def discounted_returns(
    rewards: tf.Tensor | np.ndarray, episode_ends: tf.Tensor | np.ndarray, gamma: float
) -> tf.Tensor:
    """Monte Carlo returns ``G_t = r_t + γ·G_{t+1}``, restarting after every episode end.

    ``episode_ends[t]`` is 1 where an episode finished at step ``t`` (terminated or truncated), so
    several episodes laid end to end get their own returns in one call. A truncated episode's
    returns are cut-off Monte Carlo returns: nothing is added for the steps it did not play.
    """
    rewards = tf.convert_to_tensor(rewards, tf.float32)
    continues = 1.0 - tf.cast(episode_ends, tf.float32)
    return tf.scan(
        lambda later, step: step[0] + gamma * step[1] * later,
        (rewards, continues),
        initializer=tf.zeros_like(rewards[0]),
        reverse=True,
    )


def n_step_returns(
    rewards: tf.Tensor | np.ndarray,
    next_values: tf.Tensor | np.ndarray,
    terminated: tf.Tensor | np.ndarray,
    truncated: tf.Tensor | np.ndarray,
    gamma: float,
) -> tf.Tensor:
    """Bootstrapped returns of a rollout: each step's return runs to its episode's end or the rollout's.

        G_t = r_t + γ · (1 − terminated_t) · B_t,   B_t = V(s'_t)  if truncated at t or t = T − 1
                                                    B_t = G_{t+1}  otherwise

    ``next_values[t]`` is V of the real next observation of step ``t`` (the episode's last one where it
    ended). A terminal state is worth nothing; a time-limit truncation bootstraps from V(s'), because
    the state it cut off still had a future. With ``T = 1`` this is the one-step TD target.
    """
    rewards = tf.convert_to_tensor(rewards, tf.float32)
    next_values = tf.convert_to_tensor(next_values, tf.float32)
    continues = 1.0 - tf.cast(terminated, tf.float32)
    truncated = tf.cast(truncated, tf.float32)

    def step_back(later: tf.Tensor, step: tuple[tf.Tensor, ...]) -> tf.Tensor:
        reward, next_value, keep, cut = step
        return reward + gamma * keep * (cut * next_value + (1.0 - cut) * later)

    # Seeding the scan with V(s'_{T-1}) makes the last step bootstrap whether or not it was truncated.
    return tf.scan(step_back, (rewards, next_values, continues, truncated), initializer=next_values[-1], reverse=True)


def generalized_advantages(
    rewards: tf.Tensor | np.ndarray,
    values: tf.Tensor | np.ndarray,
    next_values: tf.Tensor | np.ndarray,
    terminated: tf.Tensor | np.ndarray,
    truncated: tf.Tensor | np.ndarray,
    gamma: float,
    lam: float,
) -> tf.Tensor:
    """GAE(λ) of a rollout (Schulman et al. 2016, eq. 16), with gymnasium's two ways for an episode to end:

        δ_t = r_t + γ · (1 − terminated_t) · V(s'_t) − V(s_t)
        A_t = δ_t + γλ · (1 − terminated_t) · (1 − truncated_t) · A_{t+1},   A_T = 0

    ``next_values[t]`` is V of the real next observation of step ``t`` (the episode's last one where it
    ended), so a time-limit truncation bootstraps from the state it cut off and a termination does not;
    either way the sum stops at the episode's end. ``A_t + V(s_t)`` is the critic's target: with
    ``λ = 1`` it is ``n_step_returns``, with ``λ = 0`` the one-step TD target.
    """
    rewards = tf.convert_to_tensor(rewards, tf.float32)
    continues = 1.0 - tf.cast(terminated, tf.float32)
    deltas = rewards + gamma * continues * tf.convert_to_tensor(next_values, tf.float32) - values
    carries = gamma * lam * continues * (1.0 - tf.cast(truncated, tf.float32))
    return tf.scan(
        lambda later, step: step[0] + step[1] * later,
        (deltas, carries),
        initializer=tf.zeros_like(rewards[0]),
        reverse=True,
    )
