"""REINFORCE (Williams 1992), as in the tutorials' Policy Gradients chapter.

The policy plays whole episodes; once ``episodes_per_update`` of them are complete, one gradient
step in one ``tf.function`` call makes each action taken more likely in proportion to the return
that followed it:

    G_t  = r_t + γ·G_{t+1}                       (discounted return, restarting at each episode end)
    v_t  = (G_t − mean G) / (std G + ε)          (normalised over the batch, as the tutorial does)
    loss = −mean( log π(a_t|s_t) · v_t ) − β · mean( entropy π(·|s_t) )

With ``baseline`` a value network V(s) is fitted to G by least squares and ``G_t − V(s_t)`` (then
normalised) replaces ``v_t``: the same gradient in expectation, with less variance.

With several vector envs, an episode still running at an update finishes under the updated policy,
so its early steps are slightly off-policy: a small bias, and far cheaper than discarding them.
An episode ends on termination or truncation; a truncated episode's returns are cut-off Monte Carlo
returns (REINFORCE has no critic to bootstrap with). Actions come from a categorical policy for a
Discrete space, a Gaussian one (mean inside the bounds, scale softplus + floor) for a Box space.

The actor for a space, its distribution, acting and the exported policy come from
``stochastic.py``, which actor-critic and PPO share.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from tfrl.agents.base import AgentBase
from tfrl.agents.common import make_optimizer
from tfrl.agents.config import AgentConfig
from tfrl.agents.stochastic import (
    StochasticActing,
    StochasticPolicy,
    action_distribution,
    action_spec,
    build_actor,
    discounted_returns,
)
from tfrl.nets import ValueCritic


@dataclasses.dataclass(frozen=True)
class ReinforceConfig(AgentConfig):
    """REINFORCE hyperparameters.

    The defaults learn from batches of 8 episodes, normalise returns and use no baseline — the
    tutorial's algorithm with a larger batch and a bigger, slower-learning network: that solves
    CartPole-v1 on seeds 0-4 in 15k-45k env steps (``benchmarks/policy_gradient.py``). ``initial_scale``, ``min_scale`` and
    ``state_dependent_scale`` only matter for Box action spaces. ``normalize_rewards`` divides each
    reward by the running standard deviation of the discounted return (``stochastic.RewardScaler``)
    before the returns are computed.
    """

    learning_rate: float = 5e-3
    gamma: float = 0.99
    episodes_per_update: int = 8
    normalize_returns: bool = True
    normalize_rewards: bool = False
    epsilon: float = 1e-8
    baseline: bool = False
    critic_learning_rate: float = 1e-2
    ent_coef: float = 0.0
    hidden_sizes: tuple[int, ...] = (64,)
    activation: str = "tanh"
    optimizer: str = "adam"
    max_grad_norm: float = 0.0
    state_dependent_scale: bool = False
    initial_scale: float = 1.0
    min_scale: float = 1e-3

    # configs saved before ``normalize_rewards`` existed learned from the rewards as they were
    ADDED_FIELDS: ClassVar[dict[str, Any]] = {**AgentConfig.ADDED_FIELDS, "normalize_rewards": False}
    NET_ARCH_ROLES: ClassVar[tuple[str, ...]] = ("pi", "vf")
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        # The original TF1 tutorial (7_Policy_gradient_softmax): 10 tanh units, Adam 0.02, γ 0.99, one
        # episode per update, returns normalised (an epsilon is added here so a one-step episode works).
        # Keras' default initialisers replace its N(0, 0.3); MountainCar used γ = 0.995.
        "tutorial": dict(
            learning_rate=0.02,
            gamma=0.99,
            episodes_per_update=1,
            normalize_returns=True,
            baseline=False,
            ent_coef=0.0,
            hidden_sizes=(10,),
            activation="tanh",
            optimizer="adam",
            max_grad_norm=0.0,
        ),
    }

    def validate(self) -> None:
        self.require_positive(
            "learning_rate", "critic_learning_rate", "episodes_per_update", "epsilon", "initial_scale", "min_scale"
        )
        self.require_non_negative("ent_coef", "max_grad_norm")
        self.require_unit_interval("gamma")
        self.require_layer_sizes("hidden_sizes")
        self.require_above("initial_scale", "min_scale")
        self.require_choice("optimizer", ("adam", "rmsprop"))


class ReinforceAgent(StochasticActing, AgentBase):
    """A stochastic actor (and, with ``baseline``, a value network) learning from whole episodes."""

    algorithm = "reinforce"
    config: ReinforceConfig
    action_spaces = (gym.spaces.Discrete, gym.spaces.Box)
    run_defaults: ClassVar[dict[str, int]] = {
        "total_steps": 300_000,
        "num_envs": 8,
        "eval_every": 5_000,
        "checkpoint_every": 25_000,
    }

    def __init__(
        self,
        config: ReinforceConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_id: str = "env",
        seed: int = 0,
    ) -> None:
        self._setup(config, observation_space, action_space, env_id)
        self.actor = build_actor(self.action_space, self.observation_space, config, self.network_inputs)
        self.optimizer = make_optimizer(config.optimizer, config.learning_rate, config.max_grad_norm)
        self.optimizer.build(self.actor.trainable_variables)
        self.critic = None
        if config.baseline:
            self.critic = ValueCritic(config.layer_sizes("vf"), config.activation, **self.network_inputs)
            self.critic(np.zeros((1, *self.observation_shape), np.float32))
            self.critic_optimizer = make_optimizer(config.optimizer, config.critic_learning_rate, config.max_grad_norm)
            self.critic_optimizer.build(self.critic.trainable_variables)
        self._init_acting(self.observation_shape, seed)
        self.env_steps = 0
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")
        self.episodes: list[dict[str, list]] = []  # the episode in progress in each vector env
        self.finished: list[dict[str, np.ndarray]] = []  # complete episodes waiting for the next update

        # One update for any number of episodes of any lengths: the [None] signature never retraces.
        # No XLA: it compiles once per input shape, and nearly every batch of episodes has a new length.
        self._update = tf.function(
            self._update_step,
            input_signature=[
                tf.TensorSpec([None, *self.observation_shape], tf.float32),
                action_spec(self.action_space, [None]),
                tf.TensorSpec([None], tf.float32),
                tf.TensorSpec([None], tf.float32),
            ],
        ).get_concrete_function()

    def observe(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> dict[str, float] | None:
        """Extend each env's episode; when ``episodes_per_update`` are complete, learn from them."""
        if not self.episodes:
            self.episodes = [{"observations": [], "actions": [], "rewards": []} for _ in range(len(rewards))]
        actions = self._learning_actions(actions)
        rewards = self._learning_rewards(rewards, terminated, truncated)
        done = np.logical_or(terminated, truncated)
        for index, episode in enumerate(self.episodes):
            episode["observations"].append(observations[index])
            episode["actions"].append(actions[index])
            episode["rewards"].append(rewards[index])
            if done[index]:
                self.finished.append({key: np.asarray(value) for key, value in episode.items()})
                self.episodes[index] = {"observations": [], "actions": [], "rewards": []}
        self.env_steps += len(rewards)
        if len(self.finished) < self.config.episodes_per_update:
            return None
        batch = {key: np.concatenate([episode[key] for episode in self.finished]) for key in self.finished[0]}
        ends = np.zeros(len(batch["rewards"]), np.float32)
        ends[np.cumsum([len(episode["rewards"]) for episode in self.finished]) - 1] = 1.0
        self.finished = []
        self.track_observations(batch["observations"])
        metrics = self._update(
            batch["observations"].astype(np.float32), batch["actions"], batch["rewards"].astype(np.float32), ends
        )
        self.weights_replaced()
        return {name: float(value) for name, value in metrics.items()}

    def _update_step(
        self, observations: tf.Tensor, actions: tf.Tensor, rewards: tf.Tensor, episode_ends: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """One gradient step on a batch of complete episodes laid end to end."""
        config = self.config
        returns = discounted_returns(rewards, episode_ends, config.gamma)
        weights = returns
        metrics = {}
        if self.critic is not None:
            with tf.GradientTape() as tape:
                values = self.critic(observations)
                critic_loss = tf.reduce_mean(tf.square(returns - values))
            variables = self.critic.trainable_variables
            self.critic_optimizer.apply_gradients(zip(tape.gradient(critic_loss, variables), variables, strict=True))
            weights = returns - values
            metrics["critic_loss"] = critic_loss
        if config.normalize_returns:
            weights = (weights - tf.reduce_mean(weights)) / (tf.math.reduce_std(weights) + config.epsilon)
        weights = tf.stop_gradient(weights)
        with tf.GradientTape() as tape:
            distribution = action_distribution(self.actor, observations)
            entropy = tf.reduce_mean(distribution.entropy())
            loss = -tf.reduce_mean(distribution.log_prob(actions) * weights) - config.ent_coef * entropy
        variables = self.actor.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.updates.assign_add(1)
        return {"loss": loss, "entropy": entropy, "mean_return": tf.reduce_mean(returns), **metrics}

    # What training.py, checkpoint.py and export.py use.
    def policy(self) -> StochasticPolicy:
        return StochasticPolicy(self.actor, self.observation_shape, self.critic)

    def networks(self) -> dict[str, keras.Model]:
        return {"actor": self.actor, **({"critic": self.critic} if self.critic is not None else {})}

    def trackables(self) -> dict:
        trackables = {
            "actor": self.actor,
            "optimizer": self.optimizer,
            "updates": self.updates,
            "sampler": self.generator,
        }
        if self.critic is not None:
            trackables.update(critic=self.critic, critic_optimizer=self.critic_optimizer)
        return trackables

    def numpy_state(self) -> dict:
        """Counters and the sampler: episodes in progress are dropped, since a resumed run starts fresh ones."""
        return {"env_steps": self.env_steps, **self.acting_state()}

    def load_numpy_state(self, state: dict) -> None:
        self.env_steps = int(state["env_steps"])
        self.load_acting_state(state)
        self.episodes, self.finished = [], []
