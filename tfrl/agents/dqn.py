"""Deep Q-Network (Mnih et al. 2015) and its family, as in the tutorials' DQN chapters.

The agent keeps an online Q-network and a target copy, stores transitions in a replay memory and,
every ``train_freq`` env steps, runs ``gradient_steps`` Q-learning updates in one compiled
``tf.function`` call:

    target = r + γ · (1 − terminated) · max_a' Q_target(s', a')
    loss   = Huber(Q(s, a) − target)

``terminated`` (a terminal state) cuts the bootstrap; a time-limit truncation does not, since the
state after it still has value. Exploration is ε-greedy with ε decaying linearly.

Four config switches give the improvements of the later chapters; any combination works:

- ``double`` (van Hasselt et al. 2016): the online net picks a' and the target net evaluates it,
  ``target = r + γ (1 − terminated) Q_target(s', argmax_a' Q(s', a'))``, which removes most of the
  overestimation that the max of noisy estimates causes.
- ``dueling`` (Wang et al. 2016): ``Q = V + A − mean A`` from two heads (see ``QNetwork``).
- ``prioritized`` (Schaul et al. 2016): replay transitions in proportion to their |TD error|^α and
  weight the loss by importance weights, β annealed to 1 (see ``PrioritizedReplayBuffer``). The K
  batches of one training call are drawn together before it runs, so batches later in the call
  use priorities up to K − 1 gradient steps old; priorities are updated after the call.
- ``n_step``: targets ``Σ_{j<k} γ^j r_{t+j} + γ^k (1 − terminated) max_a' Q'(s_{t+k}, a')`` with
  ``k = n`` except where an episode ended sooner (see ``NStepCollector``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from tfrl.agents.base import AgentBase
from tfrl.agents.common import OPTIMIZERS, make_optimizer, training_calls_due
from tfrl.agents.config import AgentConfig
from tfrl.envs import pixel_dtype, resolve_frame_stack
from tfrl.nets import QNetwork, soft_update
from tfrl.replay import FrameStore, NStepCollector, PrioritizedReplayBuffer, ReplayBuffer


@dataclasses.dataclass(frozen=True)
class DQNConfig(AgentConfig):
    """DQN hyperparameters. Names follow Stable-Baselines3 where it has the same knob.

    ``train_freq`` and ``learning_starts`` count env steps summed over all vector envs;
    ``target_update_interval`` counts gradient steps. The defaults are rl-zoo's tuned CartPole
    settings, with the target copied once per training call (after its 128 gradient steps):
    they solve CartPole-v1 on every seed benchmarked (seeds 0-4: 24k-36k env steps, 2 Dec 2026).

    ``double``, ``dueling``, ``prioritized`` and ``n_step`` switch on the DQN improvements (see the
    module docstring); ``prioritized_*`` are the prioritized replay's α, its β at the start (annealed
    linearly to 1 over ``prioritized_beta_steps`` env steps) and the ε added to every |TD error|.
    """

    learning_rate: float = 2.3e-3
    gamma: float = 0.99
    batch_size: int = 64
    buffer_size: int = 100_000
    learning_starts: int = 1_000
    train_freq: int = 256
    gradient_steps: int = 128
    target_update_interval: int = 128
    tau: float = 1.0
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.04
    exploration_steps: int = 8_000
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    optimizer: str = "adam"
    loss: str = "huber"
    max_grad_norm: float = 10.0
    double: bool = False
    dueling: bool = False
    prioritized: bool = False
    prioritized_alpha: float = 0.6
    prioritized_beta: float = 0.4
    prioritized_beta_steps: int = 100_000
    prioritized_epsilon: float = 1e-6
    n_step: int = 1

    NET_ARCH_ROLES: ClassVar[tuple[str, ...]] = ("qf",)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        # The original TF1 tutorial (run_CartPole.py): 10 hidden units, RMSProp 0.01, γ 0.9, memory
        # 2000, batch 32, a hard target copy every 100 learning steps, ε from 1 to 0.1 over 900
        # learning steps after 1000 random ones, one learning step per env step, squared error.
        # Unlike the original it masks terminal states and uses the env's own reward.
        "tutorial": dict(
            learning_rate=0.01,
            gamma=0.9,
            batch_size=32,
            buffer_size=2_000,
            learning_starts=1_000,
            train_freq=1,
            gradient_steps=1,
            target_update_interval=100,
            tau=1.0,
            exploration_initial_eps=1.0,
            exploration_final_eps=0.1,
            exploration_steps=1_900,
            hidden_sizes=(10,),
            activation="relu",
            optimizer="rmsprop",
            loss="mse",
            max_grad_norm=0.0,
        ),
        # Hands-on-RL chapter 8 (Double/Dueling DQN on Pendulum, 11 torques): one hidden layer of 128,
        # Adam 1e-2, γ 0.98, memory 5000, batch 64 once 1000 are stored, a hard target copy every 50
        # updates, one update per env step, ε fixed at 0.01, squared error.
        "hands-on": dict(
            learning_rate=1e-2,
            gamma=0.98,
            batch_size=64,
            buffer_size=5_000,
            learning_starts=1_000,
            train_freq=1,
            gradient_steps=1,
            target_update_interval=50,
            tau=1.0,
            exploration_initial_eps=0.01,
            exploration_final_eps=0.01,
            exploration_steps=1,
            hidden_sizes=(128,),
            activation="relu",
            optimizer="adam",
            loss="mse",
            max_grad_norm=0.0,
        ),
        # Slippery FrozenLake-v1 (one-hot Discrete(16) observations; benchmarks/frozenlake_dqn.py). The
        # only reward is a 1 that even the best policy earns in 74 % of episodes, so the greedy policy
        # hinges on small gaps between noisy Q-values: the defaults end 100k env steps at 0.74-0.75
        # success on seeds 0 and 1 but 0.66 on seed 2. A 4.6× lower learning rate and 4× larger batches
        # average over more outcomes: seeds 0-2 all end within 0.01 of value iteration's 0.740. γ stays
        # 0.99, whose optimal policy here is γ = 1's; 0.999 ended seed 2 at 0.55.
        "frozenlake": dict(learning_rate=5e-4, batch_size=256),
        # Taxi-v4: the +20 comes only after a pick-up and a drop-off in the right places, which random
        # moves seldom string together within the defaults' 8k steps of ε decay (40 episodes): greedy
        # from then on, seed 0 still scored −200 (every episode cut at 200 steps) after 50k env steps.
        # ε decayed over 25k steps instead, the same run reaches −34 by 35k steps.
        "taxi": dict(exploration_steps=25_000),
        # Atari from pixels (ALE/<Game>-v5; tfrl.envs preprocesses and stacks 4 frames): rl-zoo's
        # hyperparams/dqn.yml "atari" entry (Stable-Baselines3's tuning of the Nature DQN, Mnih et al.
        # 2015): Adam 1e-4, batch 32, memory 100k, learning from 100k steps, one gradient step every 4
        # env steps, ε from 1 to 0.01 over the first 10 % of 10M steps, a hard target copy every 1000
        # env steps (= 250 of our gradient steps), Huber loss, gradients clipped at norm 10, the
        # Nature convolutional torso (32 8×8/4, 64 4×4/2, 64 3×3/1, dense 512).
        "atari": dict(
            learning_rate=1e-4,
            batch_size=32,
            buffer_size=100_000,
            learning_starts=100_000,
            train_freq=4,
            gradient_steps=1,
            target_update_interval=250,
            tau=1.0,
            exploration_initial_eps=1.0,
            exploration_final_eps=0.01,
            exploration_steps=1_000_000,
            optimizer="adam",
            loss="huber",
            max_grad_norm=10.0,
            torso="nature",
        ),
        # MinAtar (MinAtar/<Game>-v1, 10×10×C bool frames, unstacked): the DQN of Young & Tian 2019
        # (arXiv:1903.03176, examples/dqn.py): conv 16 3×3/1 → dense 128, centred RMSProp lr 2.5e-4
        # (squared-gradient momentum 0.95, ε 0.01), Huber loss, batch 32, memory 100k, 5k random
        # steps first, one gradient step per env step, a hard target copy every 1000 steps, γ 0.99,
        # ε from 1 to 0.1. The paper decays ε over the 100k steps after the random ones; our schedule
        # starts at step 0, so it runs over 105k steps to end at the same step. One thread per
        # TensorFlow operation: a gradient step of this small network takes ~1.1 ms that way against
        # ~1.7 ms with each operation split over the 2 cores of the machine benchmarked.
        "minatar": dict(
            learning_rate=2.5e-4,
            batch_size=32,
            buffer_size=100_000,
            learning_starts=5_000,
            train_freq=1,
            gradient_steps=1,
            target_update_interval=1_000,
            tau=1.0,
            exploration_initial_eps=1.0,
            exploration_final_eps=0.1,
            exploration_steps=105_000,
            optimizer="rmsprop-centered",
            loss="huber",
            max_grad_norm=0.0,
            torso="minatar",
            intra_op_threads=1,
        ),
    }

    PRESET_ENVS: ClassVar[dict[str, tuple[str, ...]]] = {
        "frozenlake": ("FrozenLake-v1",),
        "taxi": ("Taxi-v4",),
        "minatar": tuple(
            f"MinAtar/{game}-v1" for game in ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
        ),
    }

    def validate(self) -> None:
        self.require_positive(
            "learning_rate",
            "batch_size",
            "buffer_size",
            "train_freq",
            "gradient_steps",
            "target_update_interval",
            "exploration_steps",
            "prioritized_beta_steps",
            "prioritized_epsilon",
            "n_step",
        )
        self.require_non_negative("learning_starts", "max_grad_norm", "prioritized_alpha")
        self.require_unit_interval("gamma", "exploration_initial_eps", "exploration_final_eps", "prioritized_beta")
        self._require("tau", 0.0 < self.tau <= 1.0, "a number in (0, 1]")
        self.require_layer_sizes("hidden_sizes")
        self.require_choice("optimizer", OPTIMIZERS)
        self.require_choice("loss", ("huber", "mse"))
        self.require_batch_fits()


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """``start`` moving linearly to ``end`` over ``duration`` steps, then staying there."""
    fraction = min(step / duration, 1.0)
    return start + fraction * (end - start)


def q_learning_targets(
    rewards: tf.Tensor, terminated: tf.Tensor, next_q_values: tf.Tensor, gamma: float | tf.Tensor
) -> tf.Tensor:
    """Q-learning targets ``r + γ (1 − terminated) max_a' Q(s', a')``.

    ``gamma`` is a number or one discount per row (``γ^k`` for k-step returns).
    """
    return rewards + gamma * (1.0 - terminated) * tf.reduce_max(next_q_values, axis=-1)


def double_q_learning_targets(
    rewards: tf.Tensor,
    terminated: tf.Tensor,
    next_q_online: tf.Tensor,
    next_q_target: tf.Tensor,
    gamma: float | tf.Tensor,
) -> tf.Tensor:
    """Double Q-learning targets ``r + γ (1 − terminated) Q_target(s', argmax_a' Q_online(s', a'))``."""
    best_actions = tf.argmax(next_q_online, axis=-1)
    return rewards + gamma * (1.0 - terminated) * tf.gather(next_q_target, best_actions, batch_dims=1)


class QPolicy(tf.Module):
    """The exported greedy policy: ``action`` (argmax Q) and ``q_values``, batched float32 in."""

    def __init__(self, q_network: QNetwork, observation_shape: tuple[int, ...]) -> None:
        super().__init__(name="q_policy")
        self.q_network = q_network
        spec = [tf.TensorSpec([None, *observation_shape], tf.float32, name="observation")]
        self.q_values = tf.function(self._q_values, input_signature=spec)
        self.action = tf.function(self._action, input_signature=spec)

    def _q_values(self, observation: tf.Tensor) -> tf.Tensor:
        return self.q_network(observation)

    def _action(self, observation: tf.Tensor) -> tf.Tensor:
        return tf.argmax(self.q_network(observation), axis=-1)


class DQNAgent(AgentBase):
    """Online and target Q-networks, their optimizer, the replay memory and the ε schedule."""

    algorithm = "dqn"
    action_spaces = (gym.spaces.Discrete,)
    space_hint = "discretise the actions (--discretize N, a Box action space) or use a continuous-action algorithm"
    config: DQNConfig
    action_space: gym.spaces.Discrete
    run_defaults: ClassVar[dict[str, int]] = {
        "total_steps": 100_000,
        "num_envs": 4,
        "eval_every": 2_000,
        "checkpoint_every": 10_000,
    }

    def __init__(
        self,
        config: DQNConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_id: str = "env",
        seed: int = 0,
    ) -> None:
        self._setup(config, observation_space, action_space, env_id)
        # Frames (uint8, bool) stay in their dtype everywhere up to the network, which scales them.
        self.observation_dtype = pixel_dtype(observation_space) or np.dtype(np.float32)
        self.num_actions = int(self.action_space.n)
        self.rng = np.random.default_rng(seed)

        self.q_network = self._build_network()
        self.target_network = self._build_network()
        soft_update(self.target_network, self.q_network, tau=1.0)
        self.optimizer = make_optimizer(config.optimizer, config.learning_rate, config.max_grad_norm)
        self.optimizer.build(self.q_network.trainable_variables)
        # Image frames go into a FrameStore once each, and the replay memory holds their ids.
        self.frames: FrameStore | None = None
        stored_shape, stored_dtype = self.observation_shape, self.observation_dtype
        if pixel_dtype(observation_space) is not None:
            stack = resolve_frame_stack(env_id, config.frame_stack)
            self.frames = FrameStore(config.buffer_size, self.observation_shape, self.observation_dtype, stack)
            stored_shape, stored_dtype = (stack,), np.dtype(np.int64)
        self.replay: ReplayBuffer
        if config.prioritized:
            self.replay = PrioritizedReplayBuffer(
                config.buffer_size,
                stored_shape,
                config.prioritized_alpha,
                config.prioritized_epsilon,
                observation_dtype=stored_dtype,
            )
        else:
            self.replay = ReplayBuffer(config.buffer_size, stored_shape, observation_dtype=stored_dtype)
        self.n_step = NStepCollector(config.n_step, config.gamma) if config.n_step > 1 else None
        self.env_steps = 0
        self.gradient_step_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="gradient_steps")

        observation_spec = tf.TensorSpec([None, *self.observation_shape], self.observation_dtype)
        batches_spec = tf.TensorSpec([None, None, *self.observation_shape], self.observation_dtype)
        # Concrete functions: half the per-call overhead of a tf.function, and no retracing possible.
        self._greedy = tf.function(self._greedy_actions, input_signature=[observation_spec]).get_concrete_function()
        self._q_values = tf.function(self._online_q_values, input_signature=[observation_spec]).get_concrete_function()
        # XLA compiles the gradients of convolutions on CPU into code far slower than TensorFlow's own
        # kernels (a Nature-torso step of batch 32: 1.4 s against 62 ms here), so only MLPs are compiled.
        self._train = tf.function(
            self._train_steps,
            jit_compile=self.q_network.torso_kind == "mlp",
            input_signature=[
                batches_spec,
                tf.TensorSpec([None, None], tf.int64),
                tf.TensorSpec([None, None], tf.float32),
                batches_spec,
                tf.TensorSpec([None, None], tf.float32),
                tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([None, None], tf.float32),
            ],
        ).get_concrete_function()

    def _build_network(self) -> QNetwork:
        network = QNetwork(
            self.num_actions,
            self.config.layer_sizes("qf"),
            self.config.activation,
            self.config.dueling,
            **self.network_inputs,
        )
        network(np.zeros((1, *self.observation_shape), self.observation_dtype))
        return network

    @property
    def epsilon(self) -> float:
        """Probability of a random action at the current env step."""
        config = self.config
        return linear_schedule(
            config.exploration_initial_eps, config.exploration_final_eps, config.exploration_steps, self.env_steps
        )

    def act(self, observations: np.ndarray, explore: bool = False) -> np.ndarray:
        """Actions for a batch of observations: greedy, or ε-greedy when ``explore``."""
        observations = np.asarray(observations, self.observation_dtype)
        count = len(observations)
        if not explore:
            return self._greedy(observations).numpy()
        random_mask = self.rng.random(count) < self.epsilon
        actions = self.rng.integers(0, self.num_actions, count)
        if not random_mask.all():
            greedy = self._greedy(observations).numpy()
            actions = np.where(random_mask, actions, greedy)
        return actions

    def q_values(self, observations: np.ndarray) -> np.ndarray:
        """Q-values of the online network for a batch of observations, shape ``[batch, num_actions]``."""
        return self._q_values(np.asarray(observations, self.observation_dtype)).numpy()

    @property
    def beta(self) -> float:
        """The prioritized replay's importance-sampling exponent at the current env step."""
        config = self.config
        return linear_schedule(config.prioritized_beta, 1.0, config.prioritized_beta_steps, self.env_steps)

    def observe(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> dict[str, float] | None:
        """Store one vector-env step and train if due; returns the training metrics when it trained.

        ``next_observations`` holds each finished episode's real last observation. A truncated
        transition is stored like any other and bootstraps; ``truncated`` only tells the n-step
        collector that the episode's open windows end here.
        """
        before = self.env_steps
        self.track_observations(observations)
        if self.frames is not None:
            observations, next_observations = self.frames.add(observations, next_observations)
        if self.n_step is None:
            self.replay.add(observations, actions, rewards, next_observations, terminated)
        else:
            transitions = self.n_step.add(observations, actions, rewards, next_observations, terminated, truncated)
            if transitions is not None:
                self.replay.add(**transitions)
        after = self.env_steps = before + len(rewards)
        config = self.config
        if after < config.learning_starts or len(self.replay) == 0:
            return None
        calls_due = training_calls_due(before, after, config.learning_starts, config.train_freq)
        if calls_due == 0:
            return None
        num_batches = calls_due * config.gradient_steps
        if isinstance(self.replay, PrioritizedReplayBuffer):  # config.prioritized
            batch = self.replay.sample(config.batch_size, num_batches, self.rng, self.beta)
            weights = batch["weights"]
        else:
            batch = self.replay.sample(config.batch_size, num_batches, self.rng)
            weights = np.ones((num_batches, config.batch_size), np.float32)
        kept = None
        if self.frames is not None:
            # A transition whose frames were overwritten counts for nothing (see FrameStore).
            kept = self.frames.valid(batch["observations"]) & self.frames.valid(batch["next_observations"])
            weights = weights * kept
            for name in ("observations", "next_observations"):
                batch[name] = self.frames.stacks(batch[name])
        loss, mean_q, td_errors = self._train(
            batch["observations"],
            batch["actions"],
            batch["rewards"],
            batch["next_observations"],
            batch["terminated"],
            batch["bootstrap_steps"],
            weights,
        )
        if isinstance(self.replay, PrioritizedReplayBuffer):
            self.replay.update_priorities(batch["indices"], td_errors.numpy())
            if kept is not None and not kept.all():
                self.replay.forget(batch["indices"][~kept])
        return {"loss": float(loss), "mean_q": float(mean_q)}

    def _greedy_actions(self, observations: tf.Tensor) -> tf.Tensor:
        return tf.argmax(self.q_network(observations), axis=-1)

    def _online_q_values(self, observations: tf.Tensor) -> tf.Tensor:
        return self.q_network(observations)

    def _train_steps(
        self,
        observations: tf.Tensor,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_observations: tf.Tensor,
        terminated: tf.Tensor,
        bootstrap_steps: tf.Tensor,
        weights: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Run one gradient step per leading index of the batches.

        Returns the last loss and mean Q, and the |TD error| of every sampled row (``[K, batch]``)
        for the prioritized replay's priorities; without prioritized replay nothing needs them, so
        they stay zeros and the default path does not pay for collecting them.
        """
        loss = tf.constant(0.0)
        mean_q = tf.constant(0.0)
        td_errors = tf.zeros_like(rewards)
        discounts = tf.pow(tf.constant(self.config.gamma, tf.float32), tf.cast(bootstrap_steps, tf.float32))
        for k in tf.range(tf.shape(rewards)[0]):
            loss, mean_q, step_td_errors = self._gradient_step(
                observations[k], actions[k], rewards[k], next_observations[k], terminated[k], discounts[k], weights[k]
            )
            if self.config.prioritized:
                td_errors = tf.tensor_scatter_nd_update(td_errors, [[k]], step_td_errors[None])
        return loss, mean_q, td_errors

    def _gradient_step(
        self,
        observations: tf.Tensor,
        actions: tf.Tensor,
        rewards: tf.Tensor,
        next_observations: tf.Tensor,
        terminated: tf.Tensor,
        discounts: tf.Tensor,
        weights: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        next_q_target = self.target_network(next_observations)
        if self.config.double:
            targets = double_q_learning_targets(
                rewards, terminated, self.q_network(next_observations), next_q_target, discounts
            )
        else:
            targets = q_learning_targets(rewards, terminated, next_q_target, discounts)
        targets = tf.stop_gradient(targets)
        with tf.GradientTape() as tape:
            q_taken = tf.gather(self.q_network(observations), actions, batch_dims=1)
            loss = tf.reduce_mean(weights * self._per_sample_loss(targets, q_taken))
        variables = self.q_network.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.gradient_step_count.assign_add(1)
        if self.gradient_step_count % self.config.target_update_interval == 0:
            soft_update(self.target_network, self.q_network, self.config.tau)
        return loss, tf.reduce_mean(q_taken), tf.abs(targets - q_taken)

    def _per_sample_loss(self, targets: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
        if self.config.loss == "huber":
            return keras.losses.huber(targets[:, None], predictions[:, None])
        return tf.square(targets - predictions)

    # What train.py, checkpoint.py and export.py use.
    def policy(self) -> QPolicy:
        return QPolicy(self.q_network, self.observation_shape)

    def networks(self) -> dict[str, keras.Model]:
        return {"q_network": self.q_network}

    def trackables(self) -> dict:
        return {
            "q_network": self.q_network,
            "target_network": self.target_network,
            "optimizer": self.optimizer,
            "gradient_steps": self.gradient_step_count,
        }

    def numpy_state(self) -> dict:
        state = {"env_steps": self.env_steps, "replay": self.replay.state(), "rng": self.rng.bit_generator.state}
        return state if self.frames is None else {**state, "frames": self.frames.state()}

    def load_numpy_state(self, state: dict) -> None:
        self.env_steps = int(state["env_steps"])
        self.replay.load_state(state["replay"])
        if self.frames is not None:
            self.frames.load_state(state["frames"])
        self.rng.bit_generator.state = state["rng"]
