"""A3C (Mnih et al. 2016), as in the tutorials' A3C chapter — with worker processes (or Ray actors) instead of threads.

The tutorial ran its workers as Python threads around one TF1 session; the GIL kept the CPU from
ever being full, and its author moved to PyTorch multiprocessing to get there. Here every worker is
a separate process with its own environment, its own local copy of the Keras networks, and
TensorFlow limited to one thread, so N workers fill N cores. A pool (``tfrl.pools``) runs them:
``spawn``ed processes on this machine (``backend="process"``, the default) or Ray actors on any node
of a cluster (``backend="ray"``); the worker (``A3CWorker``) and everything below are the same code:

    parent (global networks + optimizers)              worker i (local networks, its envs)
    ───────────────────────────────────────            ─────────────────────────────────────────
    publish the global weights                          take the weights published last
                                                        act for ``update_every`` steps
                                                        gradients of the rollout (tf.GradientTape)
    apply them with the global optimizers  ◄─ pool ──   return them (one flat float32 array)
    (NumPy mirrors of the Keras ones)
    publish the new weights; let i go on   ── pool ─►   take the new weights, repeat

``A3CAgent.update_stream`` yields after each applied update; ``training.py`` logs every
episode the workers finish (one global episode count), evaluates the global networks, checkpoints
them and stops at the env's reward threshold, as for every algorithm. Each rollout's loss is the
advantage actor-critic one:

    G_t        = r_t + γ·r_{t+1} + … + γ^k·V(s_{t+k})   (n-step return within the rollout)
    actor loss = −mean( log π(a_t|s_t) · (G_t − V(s_t)) ) − β · mean( entropy π(·|s_t) )
    critic     = mean( (G_t − V(s_t))² )

Discrete spaces get a categorical actor, Box spaces a Gaussian one (mean × bound, scale softplus +
floor). With ``recurrent`` (registered as ``a3c-rnn``) a GRU cell is carried from step to step and
reset when an episode ends; gradients flow back through the rollout from the state it started in.

Faults: a worker that raises stops the run with ``WorkerError`` and its traceback (a new copy would
raise again). A worker that dies — its process killed, its actor or its node lost — is replaced by a
new one that starts from the current global weights, and the run's log says so; past
``max_worker_restarts`` replacements of one worker the run stops with ``WorkerError``. Ctrl-C
reaches only the parent, which stops every worker and checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfrl.agents.common import FlatOptimizer, make_optimizer
from tfrl.agents.config import AgentConfig, SeparateRates
from tfrl.agents.stochastic import (
    StochasticPolicy,
    action_distribution,
    action_spec,
    build_actor,
    distribution_of,
    n_step_returns,
    next_seed,
)
from tfrl.envs import check_spaces, make_env, network_inputs
from tfrl.nets import RecurrentActorCritic, ValueCritic
from tfrl.pools import available_cpus, make_pool

if TYPE_CHECKING:
    from tfrl.training import RunSettings


@dataclasses.dataclass(frozen=True)
class A3CConfig(AgentConfig, SeparateRates):
    """A3C hyperparameters.

    ``workers = 0`` starts one worker per ``worker_cpus`` CPUs (this machine's cores, or the Ray
    cluster's CPUs); on Ray each worker actor reserves ``worker_cpus`` CPUs. A worker that dies is
    replaced by a new one, at most ``max_worker_restarts`` times per worker; one more death stops the
    run. With ``pipeline`` a worker starts its next rollout as soon as it has sent its gradients,
    on the weights it has then, instead of waiting for the driver's answer: the round trip (1–4 ms
    through Ray here) overlaps its work, and its rollout misses only its own last update (A3C's
    rollouts miss the other workers' latest ones anyway); the other presets keep the classic
    lockstep, which learns Pendulum in fewer steps. Each worker steps ``envs_per_worker`` envs (the
    classic A3C has one; more amortise each TF call over several envs and average the gradient over
    ``update_every × envs_per_worker`` transitions) and sends gradients every ``update_every`` steps.
    ``normalize_advantage`` standardises the advantages of each rollout. Rewards are learned from as
    ``(r + reward_shift) · reward_scale`` (the tutorial's Pendulum uses (r + 8) / 8); logged returns
    stay in the env's units.
    ``hidden_sizes`` are the actor's layers, ``critic_hidden_sizes`` the critic's (``net_arch``'s ``pi``
    and ``vf`` win over them); with ``recurrent`` both sit on a GRU cell of ``rnn_units``. The scale
    fields only matter for Box action spaces. ``learning_rate`` is both networks' rate unless
    ``actor_learning_rate`` or ``critic_learning_rate`` sets one apart.
    """

    # configs saved before ``pipeline`` existed were trained in lockstep
    ADDED_FIELDS: ClassVar[dict[str, Any]] = {**AgentConfig.ADDED_FIELDS, "pipeline": False}

    workers: int = 0
    worker_cpus: float = 1.0
    max_worker_restarts: int = 3
    pipeline: bool = True
    envs_per_worker: int = 1
    update_every: int = 10
    gamma: float = 0.99
    ent_coef: float = 0.01
    normalize_advantage: bool = False
    learning_rate: float = 1e-3
    actor_learning_rate: float | None = None
    critic_learning_rate: float | None = None
    optimizer: str = "adam"
    max_grad_norm: float = 1.0
    reward_shift: float = 0.0
    reward_scale: float = 1.0
    hidden_sizes: tuple[int, ...] = (64, 64)
    critic_hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    state_dependent_scale: bool = False
    initial_scale: float = 1.0
    min_scale: float = 1e-3
    recurrent: bool = False
    rnn_units: int = 64

    NET_ARCH_ROLES: ClassVar[tuple[str, ...]] = ("pi", "vf")
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        # Pendulum-v1: short horizon (γ 0.9, as every tutorial uses for it), 8 envs per worker and
        # 8-step rollouts (64 transitions a push), rewards scaled into about [−1.6, 0], standardised
        # advantages, a learned state-independent scale: the setting of actor-critic's `pendulum` preset.
        # In lockstep: pipelined, 5 seeds needed a median 320k steps to −300 instead of 240k (3 seeds),
        # for 10% more env steps/s on a worker this busy.
        "pendulum": dict(
            pipeline=False,
            envs_per_worker=8,
            update_every=8,
            gamma=0.9,
            ent_coef=0.0,
            normalize_advantage=True,
            actor_learning_rate=1e-3,
            critic_learning_rate=2e-3,
            reward_scale=0.1,
            max_grad_norm=0.5,
        ),
        # A3C_discrete_action.py (CartPole): actor 200, critic 100 relu6 units, RMSProp 1e-3 for both,
        # push every 10 steps, γ 0.9, β 0.001. Its r = −5 on failure is not copied: `terminated` stops
        # the bootstrap there.
        "tutorial": dict(
            pipeline=False,
            update_every=10,
            gamma=0.9,
            ent_coef=0.001,
            learning_rate=1e-3,
            optimizer="rmsprop",
            max_grad_norm=0.0,
            hidden_sizes=(200,),
            critic_hidden_sizes=(100,),
            activation="relu6",
        ),
        # A3C_continuous_action.py (Pendulum): RMSProp 1e-4 actor, 1e-3 critic, β 0.01, (r + 8) / 8,
        # σ = softplus(·) + 1e-4 from its own head (starting at softplus(0)).
        "tutorial-continuous": dict(
            pipeline=False,
            update_every=10,
            gamma=0.9,
            ent_coef=0.01,
            actor_learning_rate=1e-4,
            critic_learning_rate=1e-3,
            optimizer="rmsprop",
            max_grad_norm=0.0,
            reward_shift=8.0,
            reward_scale=0.125,
            hidden_sizes=(200,),
            critic_hidden_sizes=(100,),
            activation="relu6",
            state_dependent_scale=True,
            initial_scale=0.6932472,
            min_scale=1e-4,
        ),
        # A3C_RNN.py (Pendulum): a 64-unit cell, actor 80 and critic 50 relu6 units on it, push every 5 steps.
        "tutorial-rnn": dict(
            pipeline=False,
            update_every=5,
            gamma=0.9,
            ent_coef=0.01,
            actor_learning_rate=1e-4,
            critic_learning_rate=1e-3,
            optimizer="rmsprop",
            max_grad_norm=0.0,
            reward_shift=8.0,
            reward_scale=0.125,
            hidden_sizes=(80,),
            critic_hidden_sizes=(50,),
            activation="relu6",
            state_dependent_scale=True,
            initial_scale=0.6932472,
            min_scale=1e-4,
            rnn_units=64,
        ),
    }
    PRESET_ENVS: ClassVar[dict[str, tuple[str, ...]]] = {"pendulum": ("Pendulum-v1",)}

    def validate(self) -> None:
        # Workers take only the trainable weights the driver publishes, and the driver's FlatOptimizer
        # steps every variable it lays end to end: statistics would need a merge protocol of their own.
        self._require(
            "normalize_observations",
            not self.normalize_observations,
            "False: A3C's workers do not share observation statistics yet (use ppo or actor-critic)",
        )
        self.require_positive(
            "envs_per_worker",
            "update_every",
            "reward_scale",
            "initial_scale",
            "min_scale",
            "rnn_units",
            "worker_cpus",
        )
        self.require_non_negative("workers", "max_worker_restarts", "ent_coef", "max_grad_norm")
        self.require_unit_interval("gamma")
        self.require_layer_sizes("hidden_sizes", "critic_hidden_sizes")
        self._require(
            "initial_scale", self.initial_scale > self.min_scale, f"a number above min_scale={self.min_scale}"
        )
        self.require_choice("optimizer", ("adam", "rmsprop"))
        affordable = available_memory_bytes() // WORKER_MEMORY_BYTES
        self._require(
            "workers",
            self.worker_count <= max(affordable, 1),
            f"at most {affordable} on this machine: each worker process holds TensorFlow "
            f"(about {WORKER_MEMORY_BYTES / 2**30:.1f} GiB) and {available_memory_bytes() / 2**30:.1f} GiB of memory is free",
        )

    def _shared_sizes(self, role: str) -> tuple[int, ...]:
        return self.critic_hidden_sizes if role == "vf" else self.hidden_sizes

    @property
    def worker_count(self) -> int:
        """Workers on this machine (the process backend)."""
        return self.workers_for(os.cpu_count() or 1)

    def workers_for(self, cpus: int) -> int:
        """Workers to start where ``cpus`` CPUs are free: ``workers``, or one per ``worker_cpus`` of them."""
        return self.workers or max(int(cpus // self.worker_cpus), 1)

    def warn_about_machine(self) -> None:
        """Warn when workers outnumber the cores: they then share them, and each update arrives later."""
        cores = os.cpu_count() or 1
        if self.worker_count > cores:
            warnings.warn(
                f"more A3C workers ({self.worker_count}) than CPU cores ({cores}): they will take turns on the cores",
                UserWarning,
                stacklevel=2,
            )


WORKER_MEMORY_BYTES = 700 * 2**20  # peak resident size of one CartPole worker process (TensorFlow, XLA, nets), measured


def available_memory_bytes() -> int:
    """Memory the machine can still give to new processes (MemAvailable), or all of it if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ------------------------------------------------------------------------------------------------
# One copy of the networks: the global one in the parent, a local one in every worker.
# ------------------------------------------------------------------------------------------------


def _flat(tensors: Iterable[tf.Tensor]) -> tf.Tensor:
    return tf.concat([tf.reshape(tensor, [-1]) for tensor in tensors], axis=0)


def _assign_flat(variables: list[tf.Variable], flat: tf.Tensor) -> None:
    """Assign ``flat`` (``_flat``'s layout) back to ``variables``."""
    pieces = tf.split(flat, [int(np.prod(variable.shape)) for variable in variables])
    for variable, piece in zip(variables, pieces, strict=True):
        variable.assign(tf.reshape(piece, variable.shape))


class A3CNetworks:
    """Actor and critic (or the recurrent actor-critic), with everything a worker runs as one concrete
    ``tf.function`` each: ``sample`` and ``mode`` (act), ``gradients`` (a rollout → one flat float32
    array, actor variables first) and ``set_weights`` / ``get_weights`` (flat arrays ↔ variables).

    A feed-forward copy takes a state of size 0, so one calling convention serves both kinds.
    """

    def __init__(
        self,
        config: A3CConfig,
        observation_space: gym.Space,
        action_space: gym.spaces.Discrete | gym.spaces.Box,
        seed: int = 0,
    ) -> None:
        self.config = config
        self.continuous = isinstance(action_space, gym.spaces.Box)
        self.action_low: np.ndarray | None
        self.action_high: np.ndarray | None
        self.action_low, self.action_high = (
            (action_space.low, action_space.high) if isinstance(action_space, gym.spaces.Box) else (None, None)
        )
        self.observation_shape = tuple(observation_space.shape or ())
        observation = np.zeros((1, *self.observation_shape), np.float32)
        if config.recurrent:
            space: dict[str, Any] = (
                dict(action_low=np.ravel(action_space.low), action_high=np.ravel(action_space.high))
                if isinstance(action_space, gym.spaces.Box)
                else dict(num_actions=int(action_space.n))
            )
            self.model = RecurrentActorCritic(
                config.rnn_units,
                actor_hidden_sizes=config.layer_sizes("pi"),
                critic_hidden_sizes=config.layer_sizes("vf"),
                activation=config.activation,
                initial_scale=config.initial_scale,
                min_scale=config.min_scale,
                **network_inputs(observation_space, config.torso),
                **space,
            )
            self.state_size = config.rnn_units
            self.model([observation, np.zeros((1, self.state_size), np.float32)])
            self.actor_variables, self.critic_variables = self.model.actor_variables, self.model.critic_variables
        else:
            self.actor = build_actor(
                action_space, observation_space, config, network_inputs(observation_space, config.torso)
            )
            self.critic = ValueCritic(
                config.layer_sizes("vf"), config.activation, **network_inputs(observation_space, config.torso)
            )
            self.critic(observation)
            self.state_size = 0
            self.actor_variables, self.critic_variables = (
                self.actor.trainable_variables,
                self.critic.trainable_variables,
            )
        self.variables = [*self.actor_variables, *self.critic_variables]
        self.size = sum(int(np.prod(variable.shape)) for variable in self.variables)
        self.generator = tf.random.Generator.from_seed(seed)

        observations = tf.TensorSpec([None, *self.observation_shape], tf.float32)
        states = tf.TensorSpec([None, self.state_size], tf.float32)
        self.sample = tf.function(self._sample, input_signature=[observations, states]).get_concrete_function()
        self.mode = tf.function(self._mode, input_signature=[observations, states]).get_concrete_function()
        shape = [config.update_every, config.envs_per_worker]  # fixed: XLA compiles the gradients once
        rollout_observations = tf.TensorSpec([*shape, *self.observation_shape], tf.float32)
        flags = tf.TensorSpec(shape, tf.float32)
        self.gradients = tf.function(
            self._gradients,
            jit_compile=True,
            input_signature=[
                rollout_observations,
                action_spec(action_space, shape),
                flags,
                rollout_observations,
                flags,
                flags,
                tf.TensorSpec([config.envs_per_worker, self.state_size], tf.float32),
            ],
        ).get_concrete_function()
        self.set_weights = tf.function(
            self._set_weights, input_signature=[tf.TensorSpec([self.size], tf.float32)]
        ).get_concrete_function()
        self.get_weights = tf.function(lambda: _flat(self.variables), input_signature=[]).get_concrete_function()

    def initial_state(self, batch_size: int) -> np.ndarray:
        return np.zeros((batch_size, self.state_size), np.float32)

    def step(self, observations: tf.Tensor, states: tf.Tensor) -> tuple[tfp.distributions.Distribution, tf.Tensor]:
        """π(·|s) for one step of a batch, and the state after it (unchanged when feed-forward)."""
        if self.config.recurrent:
            parameters, _, next_states = self.model([observations, states])
            return distribution_of(parameters, self.continuous), next_states
        return action_distribution(self.actor, observations), states

    def _sample(self, observations: tf.Tensor, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        distribution, next_states = self.step(observations, states)
        seed = next_seed(self.generator)
        return distribution.sample(seed=seed), next_states

    def _mode(self, observations: tf.Tensor, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        distribution, next_states = self.step(observations, states)
        actions = distribution.mode()
        if self.continuous:
            actions = tf.clip_by_value(actions, self.action_low, self.action_high)
        return actions, next_states

    def unroll(
        self, observations: tf.Tensor, next_observations: tf.Tensor, dones: tf.Tensor, initial_state: tf.Tensor
    ) -> tuple[tfp.distributions.Distribution, tf.Tensor, tf.Tensor]:
        """π, V(s_t) and V(s'_t) along a ``[T, envs]`` rollout, flattened step-major to ``[T·envs]``.

        A recurrent state starts from ``initial_state`` and restarts at zero in an env whose episode
        ended at the step before.
        """
        flat_observations = tf.reshape(observations, [-1, *self.observation_shape])
        flat_next_observations = tf.reshape(next_observations, [-1, *self.observation_shape])
        if not self.config.recurrent:
            return (
                action_distribution(self.actor, flat_observations),
                self.critic(flat_observations),
                self.critic(flat_next_observations),
            )
        state, parameters, values, states_after = initial_state, [], [], []
        for t in range(observations.shape[0]):
            if t > 0:
                state = state * (1.0 - dones[t - 1])[:, None]  # an episode ended at t − 1: the next starts afresh
            step_parameters, value, state = self.model([observations[t], state])
            parameters.append(step_parameters)
            values.append(value)
            states_after.append(state)
        parameters = tf.nest.map_structure(lambda *steps: tf.concat(steps, axis=0), *parameters)
        _, next_values, _ = self.model([flat_next_observations, tf.concat(states_after, axis=0)])
        return distribution_of(parameters, self.continuous), tf.concat(values, axis=0), next_values

    def _gradients(
        self,
        observations: tf.Tensor,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_observations: tf.Tensor,
        terminated: tf.Tensor,
        truncated: tf.Tensor,
        initial_state: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The flat gradients of one rollout's actor and critic losses, and [actor loss, critic loss, entropy]."""
        config = self.config
        rewards = (rewards + config.reward_shift) * config.reward_scale
        dones = tf.maximum(terminated, truncated)
        flat_actions = tf.reshape(actions, [-1, *actions.shape[2:]])
        with tf.GradientTape(persistent=True) as tape:
            distribution, values, next_values = self.unroll(observations, next_observations, dones, initial_state)
            returns = n_step_returns(
                rewards,
                tf.reshape(tf.stop_gradient(next_values), tf.shape(rewards)),
                terminated,
                truncated,
                config.gamma,
            )
            advantages = tf.reshape(returns, [-1]) - values
            critic_loss = tf.reduce_mean(tf.square(advantages))
            weights = tf.stop_gradient(advantages)
            if config.normalize_advantage:
                weights = (weights - tf.reduce_mean(weights)) / (tf.math.reduce_std(weights) + 1e-8)
            entropy = tf.reduce_mean(distribution.entropy())
            actor_loss = -tf.reduce_mean(distribution.log_prob(flat_actions) * weights) - config.ent_coef * entropy
        gradients = [
            *tape.gradient(actor_loss, self.actor_variables),
            *tape.gradient(critic_loss, self.critic_variables),
        ]
        del tape
        return _flat(gradients), tf.stack([actor_loss, critic_loss, entropy])

    def _set_weights(self, flat: tf.Tensor) -> tf.Tensor:
        _assign_flat(self.variables, flat)
        return tf.constant(True)


# ------------------------------------------------------------------------------------------------
# A worker: the same code whichever pool runs it (a process here, a Ray actor anywhere).
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to rebuild its env and local networks. ``send_rollouts`` adds each
    rollout to its message, so a test can recompute the gradients in the parent."""

    worker_id: int
    config: A3CConfig
    env_id: str
    discretize: int | None
    seed: int
    send_rollouts: bool = False
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


ROLLOUT_KEYS = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated", "initial_state")
Episode = tuple[float, int]  # (return, length) of an episode a worker finished
WorkerMessage = tuple[np.ndarray, int, list[Episode], float, np.ndarray, dict[str, np.ndarray] | None]


class A3CWorker:
    """One worker: its envs and local networks, TensorFlow limited to one thread.

    A call takes the global weights (one flat float32 array), acts ``update_every`` steps in every
    env and returns ``(gradients, env steps, finished episodes, seconds since the last call, losses,
    rollout or None)`` — the gradients of the rollout's loss as one flat float32 array. Its envs and
    recurrent state carry on from call to call. This class is the ``make_worker`` of a pool.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.spec, config = spec, spec.config
        self.envs = [
            make_env(spec.env_id, discretize=spec.discretize, indexed_actions=True, env_kwargs=spec.env_kwargs)
            for _ in range(config.envs_per_worker)
        ]
        observation_space, action_space = self.envs[0].observation_space, self.envs[0].action_space
        # The parent's A3CAgent ran check_spaces on this env id, so nothing else reaches a worker:
        assert isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box))
        self.local = A3CNetworks(config, observation_space, action_space, seed=spec.seed)
        shape = (config.update_every, config.envs_per_worker)
        action_shape = action_space.shape if isinstance(action_space, gym.spaces.Box) else ()  # Discrete: ()
        self.rollout = {
            "observations": np.zeros((*shape, *self.local.observation_shape), np.float32),
            "actions": np.zeros((*shape, *action_shape), np.float32 if self.local.continuous else np.int64),
            **{key: np.zeros(shape, np.float32) for key in ("rewards", "terminated", "truncated")},
        }
        self.rollout["next_observations"] = np.zeros_like(self.rollout["observations"])
        self.observations = np.stack(
            [env.reset(seed=spec.seed + index)[0] for index, env in enumerate(self.envs)]
        ).astype(np.float32)
        self.state = self.local.initial_state(len(self.envs))
        self.episode_returns, self.episode_lengths = np.zeros(len(self.envs)), np.zeros(len(self.envs), np.int64)
        self.last_return = time.perf_counter()

    def __call__(self, weights: np.ndarray) -> WorkerMessage:
        local, rollout = self.local, self.rollout
        local.set_weights(weights)
        initial_state, episodes = self.state, []
        for t in range(self.spec.config.update_every):
            actions, next_state = local.sample(self.observations, self.state)
            actions, self.state = actions.numpy(), next_state.numpy()
            rollout["observations"][t] = self.observations
            rollout["actions"][t] = actions
            for index, env in enumerate(self.envs):
                action = actions[index]
                action = np.clip(action, local.action_low, local.action_high) if local.continuous else int(action)
                next_observation, reward, terminated, truncated, _ = env.step(action)
                rollout["rewards"][t, index] = reward
                rollout["next_observations"][t, index] = next_observation
                rollout["terminated"][t, index], rollout["truncated"][t, index] = terminated, truncated
                self.episode_returns[index] += reward
                self.episode_lengths[index] += 1
                if terminated or truncated:
                    episodes.append((float(self.episode_returns[index]), int(self.episode_lengths[index])))
                    self.episode_returns[index], self.episode_lengths[index] = 0.0, 0
                    next_observation, _ = env.reset()
                    self.state[index] = 0.0  # a new episode starts from a fresh recurrent state
                self.observations[index] = next_observation
        gradients, losses = local.gradients(*(rollout[key] for key in ROLLOUT_KEYS[:-1]), initial_state)
        now, last = time.perf_counter(), self.last_return
        self.last_return = now
        sent = {**{key: value.copy() for key, value in rollout.items()}, "initial_state": initial_state}
        return (
            gradients.numpy(),
            rollout["rewards"].size,
            episodes,
            now - last,
            losses.numpy(),
            sent if self.spec.send_rollouts else None,
        )


# ------------------------------------------------------------------------------------------------
# The agent: global networks and optimizers in the parent, and the stream of updates its workers send.
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DriverState:
    """What the driver updates, as NumPy: the global weights (actor's first, as workers get them),
    each optimizer's slots (``FlatOptimizer.read_slots``: actor's, critic's), the global step and the
    env steps counted. An update makes a new one, so an interrupt finds each update applied whole
    or not at all."""

    weights: np.ndarray
    slots: tuple[list[np.ndarray], list[np.ndarray]]
    global_step: int
    env_steps: int


class A3CAgent:
    """The global actor-critic and its optimizers; ``updates`` trains it with a pool of workers."""

    algorithm = "a3c"
    action_spaces = (gym.spaces.Discrete, gym.spaces.Box)
    worker: Callable[[WorkerSpec], Callable[[np.ndarray], WorkerMessage]] = A3CWorker  # a benchmark swaps in a fake
    run_defaults: ClassVar[dict[str, int]] = {
        "total_steps": 500_000,
        "num_envs": 1,
        "eval_every": 10_000,
        "checkpoint_every": 50_000,
    }

    def __init__(
        self,
        config: A3CConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_id: str = "env",
        seed: int = 0,
    ) -> None:
        check_spaces(self.algorithm, env_id, observation_space, action_space, self.action_spaces)
        # check_spaces refused anything else:
        assert isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box))
        self.config = config
        self.observation_space, self.action_space = observation_space, action_space
        self.observation_shape = tuple(observation_space.shape or ())
        self.nets = A3CNetworks(config, observation_space, action_space, seed)
        self.actor_optimizer = make_optimizer(config.optimizer, config.actor_rate, config.max_grad_norm)
        self.actor_optimizer.build(self.nets.actor_variables)
        self.critic_optimizer = make_optimizer(config.optimizer, config.critic_rate, config.max_grad_norm)
        self.critic_optimizer.build(self.nets.critic_variables)
        self.counted_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="env_steps")
        # The driver updates in NumPy (see ``update_stream``), with these mirrors of the two optimizers.
        self.flat_optimizers = (FlatOptimizer(self.actor_optimizer), FlatOptimizer(self.critic_optimizer))
        self.actor_size = sum(int(np.prod(variable.shape)) for variable in self.nets.actor_variables)
        # What ``store`` writes, in ``DriverState``'s order: the networks, then each optimizer's slots.
        self.stored_variables = [
            *self.nets.variables,
            *(variable for optimizer in self.flat_optimizers for kind in optimizer.slot_variables for variable in kind),
        ]
        self._store: Any = None  # ``store``'s concrete function, traced on first use
        self.unstored: DriverState | None = None  # the stream's newest state, until something reads TF
        self.acting_state: np.ndarray | None = None  # a recurrent agent's state for each env it acts for

    @property
    def env_steps(self) -> int:
        """Env steps of every update applied so far, all workers together."""
        self.write_back()
        return int(self.counted_steps.numpy())

    @property
    def global_step(self) -> int:
        """Updates applied to the global networks (the optimizers' shared step count)."""
        self.write_back()
        return int(self.actor_optimizer.iterations.numpy())

    def write_back(self) -> None:
        """Store the update stream's newest state into TF, if it has not been: every method that reads
        the networks, optimizers or counts calls this first, so none of them ever sees an older state
        while the stream pays for the TF call only when something looks."""
        if self.unstored is not None:
            self.store(self.unstored)
            self.unstored = None

    def driver_state(self) -> DriverState:
        """The global networks' weights, their optimizers' slots and the counts, read from TF."""
        self.write_back()
        return DriverState(
            self.nets.get_weights().numpy(),
            (self.flat_optimizers[0].read_slots(), self.flat_optimizers[1].read_slots()),
            int(self.actor_optimizer.iterations.numpy()),
            int(self.counted_steps.numpy()),
        )

    def store(self, state: DriverState) -> None:
        """Write ``state`` into the networks, the optimizers and the step count, in one TF call."""
        if self._store is None:
            size = sum(int(np.prod(variable.shape)) for variable in self.stored_variables)
            self._store = tf.function(
                self._store_flat,
                input_signature=[tf.TensorSpec([size], tf.float32), tf.TensorSpec([2], tf.int64)],
            ).get_concrete_function()
        floats = np.concatenate([state.weights, *state.slots[0], *state.slots[1]])
        self._store(floats, np.array([state.global_step, state.env_steps], np.int64))

    def _store_flat(self, floats: tf.Tensor, counts: tf.Tensor) -> tf.Tensor:
        _assign_flat(self.stored_variables, floats)
        self.actor_optimizer.iterations.assign(counts[0])
        self.critic_optimizer.iterations.assign(counts[0])
        self.counted_steps.assign(counts[1])
        return tf.constant(True)

    def apply(
        self,
        state: DriverState,
        stacked_gradients: Sequence[np.ndarray] | np.ndarray,
        steps: Sequence[int] | np.ndarray,
    ) -> DriverState:
        """``state`` after the updates pushed by workers, in order: for each row of flat gradients each
        optimizer steps on its networks' share, and ``steps`` are added to the env-step count."""
        weights, slots, global_step = state.weights, state.slots, state.global_step
        split = self.actor_size
        for gradients in stacked_gradients:
            actor, actor_slots = self.flat_optimizers[0].step(weights[:split], slots[0], gradients[:split], global_step)
            critic, critic_slots = self.flat_optimizers[1].step(
                weights[split:], slots[1], gradients[split:], global_step
            )
            weights, slots, global_step = np.concatenate([actor, critic]), (actor_slots, critic_slots), global_step + 1
        return DriverState(weights, slots, global_step, state.env_steps + int(np.sum(steps)))

    def act(self, observations: np.ndarray, explore: bool = False) -> np.ndarray:
        """Actions of the global networks for a batch: sampled (clipped to the bounds) or the mode.

        A recurrent agent carries one state per row between calls; ``reset_state`` starts them afresh.
        """
        self.write_back()
        observations = np.asarray(observations, np.float32)
        if self.acting_state is None or len(self.acting_state) != len(observations):
            self.acting_state = self.nets.initial_state(len(observations))
        actions, next_state = (self.nets.sample if explore else self.nets.mode)(observations, self.acting_state)
        self.acting_state = next_state.numpy()
        actions = actions.numpy()
        return (
            np.clip(actions, self.nets.action_low, self.nets.action_high)
            if explore and self.nets.continuous
            else actions
        )

    def reset_state(self, batch_size: int) -> None:
        self.acting_state = self.nets.initial_state(batch_size)

    def update_stream(
        self, settings: RunSettings, start_step: int, on_event: Callable[[str], None]
    ) -> Iterator[tuple[int, list[Episode], dict[str, float]]]:
        """Start the workers on ``settings.backend`` and yield ``(env steps, finished episodes, metrics)``
        after the updates applied to the global networks, until the caller stops iterating (which, like
        an exception, stops every worker). ``training.py`` owns everything else: evaluation,
        checkpoints, the threshold, logging. ``on_event`` gets a line for each worker replaced.

        Each update: the driver applies the worker's gradients to its NumPy copy of the global networks
        and optimizers (``apply``: a TF call would cost ~10× more, and the driver's cost per update is
        what limits how many workers it keeps busy), publishes the new weights to every worker and lets
        that worker go on. Updates that arrive together are applied in the order they came and the
        weights after the last are published once. Such a batch is one yield, so the step yielded is
        always the count of what was applied; its losses are the batch's mean. The state goes into
        TF (``store``, ~1 ms) only when something reads the agent (``write_back``: evaluation,
        checkpoint, export), and when the stream stops for any reason.
        ``env_steps_per_second`` adds up each worker's rate over its last update.
        """
        config = self.config
        if settings.backend == "process":
            config.warn_about_machine()
        specs = [
            WorkerSpec(
                index,
                config,
                settings.env_id,
                settings.discretize,
                int(np.random.SeedSequence([settings.seed, index, start_step]).generate_state(1)[0]),
                env_kwargs=settings.env_kwargs,
            )
            for index in range(config.workers_for(available_cpus(settings.backend)))
        ]
        throughput: dict[str, float] = {}
        state = self.driver_state()
        pool = make_pool(
            settings.backend,
            self.worker,
            specs,
            state.weights,
            cpus_per_worker=config.worker_cpus,
            max_restarts=config.max_worker_restarts,
            pipelined=config.pipeline,
            on_event=on_event,
            name="A3C worker",
        )
        try:
            with pool:
                while True:
                    arrived = pool.results(timeout=1.0)
                    if not arrived:
                        continue
                    messages = [message for _, message in arrived]
                    state = self.apply(
                        state, [message[0] for message in messages], [message[1] for message in messages]
                    )
                    self.unstored = state
                    pool.publish(state.weights)
                    for worker_id, message in arrived:
                        pool.go_on(worker_id)
                        throughput[f"worker_{worker_id}/env_steps_per_second"] = message[1] / max(message[3], 1e-9)
                    actor_loss, critic_loss, entropy = np.mean([message[4] for message in messages], axis=0)
                    metrics = {
                        "actor_loss": float(actor_loss),
                        "critic_loss": float(critic_loss),
                        "entropy": float(entropy),
                        "global_step": float(state.global_step),
                        "env_steps_per_second": sum(throughput.values()),
                        **throughput,
                    }
                    yield state.env_steps, [episode for message in messages for episode in message[2]], metrics
        finally:
            self.write_back()  # whatever stops the stream, TF holds every update applied

    # What training.py, checkpoint.py and export.py use.
    def policy(self) -> tf.Module:
        self.write_back()
        if self.config.recurrent:
            return RecurrentPolicy(self.nets)
        return StochasticPolicy(self.nets.actor, self.observation_shape, self.nets.critic)

    def networks(self) -> dict[str, keras.Model]:
        self.write_back()
        if self.config.recurrent:
            return {"actor_critic": self.nets.model}
        return {"actor": self.nets.actor, "critic": self.nets.critic}

    def trackables(self) -> dict:
        self.write_back()
        return {
            **self.networks(),
            "actor_optimizer": self.actor_optimizer,
            "critic_optimizer": self.critic_optimizer,
            "env_steps": self.counted_steps,
            "sampler": self.nets.generator,
        }

    def numpy_state(self) -> dict:
        """Nothing beyond the TF checkpoint: workers start fresh episodes on resume."""
        self.write_back()
        return {}

    def weights_replaced(self) -> None:
        """Nothing to do: A3C acts through its Keras networks (see ``Agent``)."""

    def load_numpy_state(self, state: dict) -> None:
        """Everything was restored with the TF checkpoint."""


class RecurrentPolicy(tf.Module):
    """The exported recurrent policy: every endpoint takes ``(observation, state)`` and returns its
    output and a state; ``initial_state(batch_size)`` gives the zeros an episode starts from.

    ``action`` is the mode (argmax, or the mean inside the bounds), ``sample_action`` a sample: both
    step, returning the next state. ``value`` (the critic's V(s)) only reads: it returns the state it
    was given, so a caller that threads every endpoint's state acts the same whether it reads values
    or not. ``state_shape`` goes into the export's metadata.
    """

    def __init__(self, nets: A3CNetworks) -> None:
        super().__init__(name="recurrent_policy")
        self.model = nets.model
        self.continuous = nets.continuous
        self.low: tf.Tensor | None
        self.high: tf.Tensor | None
        self.low, self.high = (
            (tf.constant(nets.action_low), tf.constant(nets.action_high)) if nets.continuous else (None, None)
        )
        self.state_shape = (nets.state_size,)
        self.generator = tf.random.Generator.from_seed(0)
        spec = [
            tf.TensorSpec([None, *nets.observation_shape], tf.float32, name="observation"),
            tf.TensorSpec([None, nets.state_size], tf.float32, name="state"),
        ]
        self.action = tf.function(self._action, input_signature=spec)
        self.sample_action = tf.function(self._sample_action, input_signature=spec)
        self.value = tf.function(self._value, input_signature=spec)
        self.initial_state = tf.function(
            lambda batch_size: tf.zeros([batch_size, nets.state_size]),
            input_signature=[tf.TensorSpec([], tf.int32, name="batch_size")],
        )

    def _clip(self, actions: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(actions, self.low, self.high) if self.continuous else actions

    def _action(self, observation: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parameters, _, next_state = self.model([observation, state])
        return self._clip(distribution_of(parameters, self.continuous).mode()), next_state

    def _sample_action(self, observation: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parameters, _, next_state = self.model([observation, state])
        seed = next_seed(self.generator)
        return self._clip(distribution_of(parameters, self.continuous).sample(seed=seed)), next_state

    def _value(self, observation: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        _, values, _ = self.model([observation, state])
        return values, state
