"""A3C (Mnih et al. 2016), as in the tutorials' A3C chapter — with worker processes instead of threads.

The tutorial ran its workers as Python threads around one TF1 session; the GIL kept the CPU from
ever being full, and its author moved to PyTorch multiprocessing to get there. Here every worker is
a separate process (``spawn``: TensorFlow is never forked) with its own environment, its own local
copy of the Keras networks, and TensorFlow limited to one thread, so N workers fill N cores:

    parent (global networks + optimizers)              worker i (local networks, one env)
    ───────────────────────────────────────            ─────────────────────────────────────────
                                                        copy the global weights (shared memory)
                                                        act for ``update_every`` steps
                                                        gradients of the rollout (tf.GradientTape)
    apply them with the global optimizers  ◄─ pipe ──   send them (one flat float32 array)
    write the new weights to shared memory
    answer "go on"                         ── pipe ─►   copy the new global weights, repeat

The parent sleeps in ``multiprocessing.connection.wait`` between updates; it also logs every episode
the workers finish (one global episode count), evaluates the global networks, checkpoints them and
stops at the env's reward threshold. Each rollout's loss is the advantage actor-critic one:

    G_t        = r_t + γ·r_{t+1} + … + γ^k·V(s_{t+k})   (n-step return within the rollout)
    actor loss = −mean( log π(a_t|s_t) · (G_t − V(s_t)) ) − β · mean( entropy π(·|s_t) )
    critic     = mean( (G_t − V(s_t))² )

Discrete spaces get a categorical actor, Box spaces a Gaussian one (mean × bound, scale softplus +
floor). With ``recurrent`` (registered as ``a3c-rnn``) a GRU cell is carried from step to step and
reset when an episode ends; gradients flow back through the rollout from the state it started in.

Faults: a worker that raises sends its traceback and exits; one that dies shows in its process
sentinel. Either way the parent stops every worker and raises ``WorkerError`` naming the worker and
the cause. Workers ignore SIGINT, so Ctrl-C reaches only the parent, which stops them and
checkpoints.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfrl.agents.config import AgentConfig
from tfrl.agents.dqn import make_optimizer
from tfrl.agents.reinforce import StochasticPolicy, action_spec, build_actor
from tfrl.envs import check_spaces, make_env, network_inputs
from tfrl.errors import EnvError, WorkerError
from tfrl.nets import RecurrentActorCritic, ValueCritic
from tfrl.replay import n_step_returns

if TYPE_CHECKING:
    from multiprocessing.synchronize import Lock

    from tfrl.checkpoint import Checkpointer
    from tfrl.logger import RunLogger
    from tfrl.training import Evaluator, RunSettings

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class A3CConfig(AgentConfig):
    """A3C hyperparameters.

    ``workers = 0`` starts one worker per CPU core. Each worker steps ``envs_per_worker`` envs (the
    classic A3C has one; more amortise each TF call over several envs and average the gradient over
    ``update_every × envs_per_worker`` transitions) and sends gradients every ``update_every`` steps.
    ``normalize_advantage`` standardises the advantages of each rollout. Rewards are learned from as
    ``(r + reward_shift) · reward_scale`` (the tutorial's Pendulum uses (r + 8) / 8); logged returns
    stay in the env's units.
    ``hidden_sizes`` are the actor's layers, ``critic_hidden_sizes`` the critic's; with ``recurrent``
    both sit on a GRU cell of ``rnn_units``. The scale fields only matter for Box action spaces.
    """

    workers: int = 0
    envs_per_worker: int = 1
    update_every: int = 10
    gamma: float = 0.99
    ent_coef: float = 0.01
    normalize_advantage: bool = False
    actor_learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-3
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

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        # Pendulum-v1: short horizon (γ 0.9, as every tutorial uses for it), 8 envs per worker and
        # 8-step rollouts (64 transitions a push), rewards scaled into about [−1.6, 0], standardised
        # advantages, a learned state-independent scale: the setting of actor-critic's `pendulum` preset.
        "pendulum": dict(
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
            update_every=10,
            gamma=0.9,
            ent_coef=0.001,
            actor_learning_rate=1e-3,
            critic_learning_rate=1e-3,
            optimizer="rmsprop",
            max_grad_norm=0.0,
            hidden_sizes=(200,),
            critic_hidden_sizes=(100,),
            activation="relu6",
        ),
        # A3C_continuous_action.py (Pendulum): RMSProp 1e-4 actor, 1e-3 critic, β 0.01, (r + 8) / 8,
        # σ = softplus(·) + 1e-4 from its own head (starting at softplus(0)).
        "tutorial-continuous": dict(
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

    def validate(self) -> None:
        self.require_positive(
            "envs_per_worker",
            "update_every",
            "actor_learning_rate",
            "critic_learning_rate",
            "reward_scale",
            "initial_scale",
            "min_scale",
            "rnn_units",
        )
        self.require_non_negative("workers", "ent_coef", "max_grad_norm")
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

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

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


def _distribution(
    parameters: tf.Tensor | tuple[tf.Tensor, tf.Tensor], continuous: bool
) -> tfp.distributions.Distribution:
    if continuous:
        mean, scale = parameters
        return tfd.Independent(tfd.Normal(mean, scale), reinterpreted_batch_ndims=1)
    return tfd.Categorical(logits=parameters, dtype=tf.int64)


def _flat(tensors: Iterable[tf.Tensor]) -> tf.Tensor:
    return tf.concat([tf.reshape(tensor, [-1]) for tensor in tensors], axis=0)


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
        if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) != 1:
            raise EnvError(f"A3C needs a 1-D Box action space (a vector of actions), got {action_space}")
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
                actor_hidden_sizes=config.hidden_sizes,
                critic_hidden_sizes=config.critic_hidden_sizes,
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
            self.actor = build_actor(action_space, observation_space, config)
            self.critic = ValueCritic(
                config.critic_hidden_sizes, config.activation, **network_inputs(observation_space, config.torso)
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
            return _distribution(parameters, self.continuous), next_states
        return _distribution(self.actor(observations), self.continuous), states

    def _sample(self, observations: tf.Tensor, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        distribution, next_states = self.step(observations, states)
        seed = tf.cast(self.generator.make_seeds(1)[:, 0], tf.int32)
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
                _distribution(self.actor(flat_observations), self.continuous),
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
        return _distribution(parameters, self.continuous), tf.concat(values, axis=0), next_values

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
        pieces = tf.split(flat, [int(np.prod(variable.shape)) for variable in self.variables])
        for variable, piece in zip(self.variables, pieces, strict=True):
            variable.assign(tf.reshape(piece, variable.shape))
        return tf.constant(True)


# ------------------------------------------------------------------------------------------------
# The worker process.
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to rebuild its env and local networks. ``send_rollouts`` adds each
    rollout to its message, so a test can recompute the gradients in the parent."""

    worker_id: int
    config: A3CConfig
    env_id: str
    discretize: int | None
    seed: int
    send_rollouts: bool = False


def worker_main(
    spec: WorkerSpec,
    connection: Connection,
    shared_weights: Any,  # a float32 RawArray (typeshed types RawArray as Any)
    lock: Lock,
) -> None:
    """A worker: pull the global weights, act ``update_every`` steps, push gradients, wait for "go on".

    Messages to the parent: ``("update", gradients, steps, episodes, seconds, losses, rollout)``
    and, if anything raises, ``("error", traceback)`` before exiting with code 1.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        config = spec.config
        envs = [make_env(spec.env_id, discretize=spec.discretize) for _ in range(config.envs_per_worker)]
        observation_space, action_space = envs[0].observation_space, envs[0].action_space
        # The parent's A3CAgent ran check_spaces on this env id, so nothing else reaches a worker:
        assert isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box))
        local = A3CNetworks(config, observation_space, action_space, seed=spec.seed)
        weights = np.frombuffer(shared_weights, np.float32)

        def pull() -> None:
            with lock:
                flat = weights.copy()
            local.set_weights(flat)

        shape = (config.update_every, config.envs_per_worker)
        action_shape = action_space.shape if isinstance(action_space, gym.spaces.Box) else ()  # Discrete: ()
        rollout = {
            "observations": np.zeros((*shape, *local.observation_shape), np.float32),
            "actions": np.zeros((*shape, *action_shape), np.float32 if local.continuous else np.int64),
            **{key: np.zeros(shape, np.float32) for key in ("rewards", "terminated", "truncated")},
        }
        rollout["next_observations"] = np.zeros_like(rollout["observations"])
        observations = np.stack([env.reset(seed=spec.seed + index)[0] for index, env in enumerate(envs)]).astype(
            np.float32
        )
        state = local.initial_state(len(envs))
        episode_returns, episode_lengths = np.zeros(len(envs)), np.zeros(len(envs), np.int64)
        pull()
        last_push = time.perf_counter()
        while True:
            initial_state, episodes = state, []
            for t in range(config.update_every):
                actions, next_state = local.sample(observations, state)
                actions, state = actions.numpy(), next_state.numpy()
                rollout["observations"][t] = observations
                rollout["actions"][t] = actions
                for index, env in enumerate(envs):
                    action = actions[index]
                    action = np.clip(action, local.action_low, local.action_high) if local.continuous else int(action)
                    next_observation, reward, terminated, truncated, _ = env.step(action)
                    rollout["rewards"][t, index] = reward
                    rollout["next_observations"][t, index] = next_observation
                    rollout["terminated"][t, index], rollout["truncated"][t, index] = terminated, truncated
                    episode_returns[index] += reward
                    episode_lengths[index] += 1
                    if terminated or truncated:
                        episodes.append((float(episode_returns[index]), int(episode_lengths[index])))
                        episode_returns[index], episode_lengths[index] = 0.0, 0
                        next_observation, _ = env.reset()
                        state[index] = 0.0  # a new episode starts from a fresh recurrent state
                    observations[index] = next_observation
            gradients, losses = local.gradients(
                *(
                    rollout[key]
                    for key in ("observations", "actions", "rewards", "next_observations", "terminated", "truncated")
                ),
                initial_state,
            )
            now = time.perf_counter()
            sent_rollout = (
                {**{key: value.copy() for key, value in rollout.items()}, "initial_state": initial_state}
                if spec.send_rollouts
                else None
            )
            connection.send(
                (
                    "update",
                    gradients.numpy(),
                    rollout["rewards"].size,
                    episodes,
                    now - last_push,
                    losses.numpy(),
                    sent_rollout,
                )
            )
            last_push = now
            connection.recv()  # "go on": the global weights now include this update
            pull()
    except (EOFError, BrokenPipeError):
        return  # the parent is gone or closed the pipe: nothing left to report to
    except BaseException:  # noqa: BLE001 — every failure goes to the parent, named
        try:
            connection.send(("error", traceback.format_exc()))
        finally:
            os._exit(1)


class WorkerPool:
    """The worker processes, the parent's ends of their pipes, and the shared weights buffer.

    A context manager: leaving it, however, terminates and joins every worker, so none outlives
    the run. ``updates`` raises ``WorkerError`` as soon as a worker raises or dies.
    """

    def __init__(
        self,
        specs: list[WorkerSpec],
        weight_count: int,
        target: Callable[..., None] = worker_main,
        join_timeout: float = 5.0,
    ) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that has run TensorFlow
        self.shared_weights = context.RawArray("f", weight_count)
        self.weights = np.frombuffer(self.shared_weights, np.float32)
        self.lock = context.Lock()
        self.join_timeout = join_timeout
        self.connections, self.processes, self._child_ends = [], [], []
        for spec in specs:
            parent_end, child_end = context.Pipe()
            self.connections.append(parent_end)
            self.processes.append(
                context.Process(
                    target=target,
                    args=(spec, child_end, self.shared_weights, self.lock),
                    name=f"a3c-worker-{spec.worker_id}",
                    daemon=True,
                )
            )
            self._child_ends.append(child_end)

    def __enter__(self) -> WorkerPool:
        for process, child_end in zip(self.processes, self._child_ends, strict=True):
            process.start()
            child_end.close()  # the worker holds it now: its death closes the pipe
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish(self, weights: np.ndarray) -> None:
        """Make ``weights`` the ones every worker copies next."""
        with self.lock:
            self.weights[:] = weights

    def go_on(self, worker_id: int) -> None:
        """Tell a worker that waits after its push to copy the new weights and play on."""
        try:
            self.connections[worker_id].send(True)
        except OSError:  # it died right after pushing
            self._raise_dead(worker_id)

    def updates(self, timeout: float) -> list[tuple[int, tuple]]:
        """The updates that arrive within ``timeout`` seconds, as ``(worker id, message)`` pairs."""
        sentinels = {process.sentinel: index for index, process in enumerate(self.processes)}
        pipes = {connection: index for index, connection in enumerate(self.connections)}
        owners: dict[object, int] = dict([*sentinels.items(), *pipes.items()])  # ints and Connections: no overlap
        arrived = []
        for ready in wait([*pipes, *sentinels], timeout):
            worker_id = owners[ready]
            connection = self.connections[worker_id]
            if ready in sentinels and not connection.poll():
                self._raise_dead(worker_id)
            try:
                message = connection.recv()
            except (EOFError, OSError):
                self._raise_dead(worker_id)
            if message[0] == "error":
                raise WorkerError(
                    f"A3C worker {worker_id} raised an exception; the run stopped.\n{message[1].rstrip()}"
                )
            arrived.append((worker_id, message[1:]))
        return arrived

    def _raise_dead(self, worker_id: int) -> NoReturn:
        process = self.processes[worker_id]
        process.join(self.join_timeout)
        code = process.exitcode
        if code is not None and code < 0:
            cause = f"was killed by {signal.Signals(-code).name}"
        else:
            cause = f"exited with code {code}" if code is not None else "closed its pipe"
        raise WorkerError(f"A3C worker {worker_id} (pid {process.pid}) {cause}; the run stopped")

    def close(self) -> None:
        """Terminate every worker still running, wait for each, kill any that ignores SIGTERM."""
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            if process.pid is None:
                continue
            process.join(self.join_timeout)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in self.connections:
            connection.close()


# ------------------------------------------------------------------------------------------------
# The agent: global networks and optimizers in the parent, and the runner that drives the workers.
# ------------------------------------------------------------------------------------------------


class A3CAgent:
    """The global actor-critic and its optimizers; ``run`` trains it with worker processes."""

    algorithm = "a3c"
    action_spaces = (gym.spaces.Discrete, gym.spaces.Box)
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
        self.actor_optimizer = make_optimizer(config.optimizer, config.actor_learning_rate, config.max_grad_norm)
        self.actor_optimizer.build(self.nets.actor_variables)
        self.critic_optimizer = make_optimizer(config.optimizer, config.critic_learning_rate, config.max_grad_norm)
        self.critic_optimizer.build(self.nets.critic_variables)
        # Counted in the same TF call that applies an update, so a Ctrl-C never splits the two.
        self.counted_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="env_steps")
        self.acting_state: np.ndarray | None = None  # a recurrent agent's state for each env it acts for
        self.apply = tf.function(
            self._apply,
            jit_compile=True,
            input_signature=[tf.TensorSpec([self.nets.size], tf.float32), tf.TensorSpec([], tf.int64)],
        ).get_concrete_function()

    @property
    def env_steps(self) -> int:
        """Env steps of every update applied so far, all workers together."""
        return int(self.counted_steps.numpy())

    @property
    def global_step(self) -> int:
        """Updates applied to the global networks (the optimizers' shared step count)."""
        return int(self.actor_optimizer.iterations.numpy())

    def _apply(self, flat_gradients: tf.Tensor, steps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One pushed update of ``steps`` env steps: each optimizer steps on its networks' share;
        returns the new flat weights and the env-step count (no second TF call to read it)."""
        sizes = [int(np.prod(variable.shape)) for variable in self.nets.variables]
        gradients = [
            tf.reshape(piece, variable.shape)
            for piece, variable in zip(tf.split(flat_gradients, sizes), self.nets.variables, strict=True)
        ]
        split = len(self.nets.actor_variables)
        self.actor_optimizer.apply_gradients(zip(gradients[:split], self.nets.actor_variables, strict=True))
        self.critic_optimizer.apply_gradients(zip(gradients[split:], self.nets.critic_variables, strict=True))
        return _flat(self.nets.variables), self.counted_steps.assign_add(steps)

    def act(self, observations: np.ndarray, explore: bool = False) -> np.ndarray:
        """Actions of the global networks for a batch: sampled (clipped to the bounds) or the mode.

        A recurrent agent carries one state per row between calls; ``reset_state`` starts them afresh.
        """
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

    def run(
        self,
        settings: RunSettings,
        logger: RunLogger,
        checkpointer: Checkpointer,
        evaluator: Evaluator,
        start_step: int,
        threshold: float | None,
    ) -> dict:
        """Train with ``config.workers`` processes until ``settings.total_steps`` or the threshold.

        Returns what ``training.train`` reports: env_steps, solved, final_return, wall_seconds and
        train_steps_per_second (evaluation time excluded).
        """
        self.config.warn_about_machine()
        specs = [
            WorkerSpec(
                index,
                self.config,
                settings.env_id,
                settings.discretize,
                int(np.random.SeedSequence([settings.seed, index, start_step]).generate_state(1)[0]),
            )
            for index in range(self.config.worker_count)
        ]
        step = self.env_steps
        next_eval = (step // settings.eval_every + 1) * settings.eval_every
        next_checkpoint = (step // settings.checkpoint_every + 1) * settings.checkpoint_every
        next_report = step + 2_000
        final_return, solved, eval_seconds = None, False, 0.0
        throughput: dict[int, float] = {}
        last_losses = np.zeros(3)
        greedy = _GreedyActing(self)
        start = time.perf_counter()
        with WorkerPool(specs, self.nets.size) as pool:
            pool.publish(self.nets.get_weights().numpy())
            while step < settings.total_steps:
                for worker_id, (gradients, steps, episodes, seconds, losses, _) in pool.updates(timeout=1.0):
                    weights, counted = self.apply(gradients, steps)
                    pool.publish(weights.numpy())
                    pool.go_on(worker_id)
                    step = int(counted)
                    for episode_return, length in episodes:
                        logger.episode(step, episode_return, length)
                    throughput[worker_id] = steps / max(seconds, 1e-9)
                    last_losses = losses
                if step >= next_report:
                    logger.metrics(
                        step,
                        {
                            "actor_loss": last_losses[0],
                            "critic_loss": last_losses[1],
                            "entropy": last_losses[2],
                            "global_step": self.global_step,
                            "env_steps_per_second": sum(throughput.values()),
                            **{
                                f"worker_{index}/env_steps_per_second": value
                                for index, value in sorted(throughput.items())
                            },
                        },
                    )
                    next_report = step + 2_000
                if step >= next_eval or step >= settings.total_steps:
                    eval_start = time.perf_counter()
                    returns = evaluator(greedy)
                    eval_seconds += time.perf_counter() - eval_start
                    logger.evaluation(step, returns)
                    final_return = float(np.mean(returns))
                    next_eval = (step // settings.eval_every + 1) * settings.eval_every
                    if threshold is not None and final_return >= threshold:
                        solved = True
                        break
                if step >= next_checkpoint:
                    checkpointer.save(step)
                    logger.flush()
                    next_checkpoint = (step // settings.checkpoint_every + 1) * settings.checkpoint_every
                logger.progress(step)
        checkpointer.save(step)
        logger.progress(step)
        wall = time.perf_counter() - start
        return {
            "env_steps": step,
            "solved": solved,
            "final_return": final_return,
            "wall_seconds": wall,
            "train_steps_per_second": (step - start_step) / max(wall - eval_seconds, 1e-9),
        }

    # What training.py, checkpoint.py and export.py use.
    def policy(self) -> tf.Module:
        if self.config.recurrent:
            return RecurrentPolicy(self.nets)
        return StochasticPolicy(self.nets.actor, self.observation_shape, self.nets.critic)

    def networks(self) -> dict[str, keras.Model]:
        if self.config.recurrent:
            return {"actor_critic": self.nets.model}
        return {"actor": self.nets.actor, "critic": self.nets.critic}

    def trackables(self) -> dict:
        return {
            **self.networks(),
            "actor_optimizer": self.actor_optimizer,
            "critic_optimizer": self.critic_optimizer,
            "env_steps": self.counted_steps,
            "sampler": self.nets.generator,
        }

    def numpy_state(self) -> dict:
        """Nothing beyond the TF checkpoint: workers start fresh episodes on resume."""
        return {}

    def load_numpy_state(self, state: dict) -> None:
        """Everything was restored with the TF checkpoint."""


class _GreedyActing:
    """The global networks' deterministic actions as the ``Evaluator`` calls them; its ``reset_state``
    tells the Evaluator to keep one row per episode, which a recurrent policy's state needs."""

    def __init__(self, agent: A3CAgent) -> None:
        self.agent = agent

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return self.agent.act(observations, explore=False)

    def reset_state(self, batch_size: int) -> None:
        self.agent.reset_state(batch_size)


class RecurrentPolicy(tf.Module):
    """The exported recurrent policy: every endpoint takes ``(observation, state)`` and returns its
    output and the next state; ``initial_state(batch_size)`` gives the zeros an episode starts from.

    ``action`` is the mode (argmax, or the mean inside the bounds), ``sample_action`` a sample,
    ``value`` the critic's V(s). ``state_shape`` goes into the export's metadata.
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
        return self._clip(_distribution(parameters, self.continuous).mode()), next_state

    def _sample_action(self, observation: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parameters, _, next_state = self.model([observation, state])
        seed = tf.cast(self.generator.make_seeds(1)[:, 0], tf.int32)
        return self._clip(_distribution(parameters, self.continuous).sample(seed=seed)), next_state

    def _value(self, observation: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        _, values, next_state = self.model([observation, state])
        return values, next_state
