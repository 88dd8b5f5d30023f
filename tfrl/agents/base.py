"""The agent contract: what ``training.py``, ``checkpoint.py`` and ``export.py`` ask of every agent.

``Agent`` is the contract as a ``Protocol``, so an agent is checked by what it has, not by what it
inherits; ``CollectingAgent`` adds ``observe`` (the shared collection loop feeds it) and
``UpdateProducer`` adds ``update_stream`` (A3C's workers produce updates; the shared loop does the rest). ``AgentBase`` is
the constructor preamble every agent shares: refuse spaces it cannot handle with a clear error, then
keep the config and the spaces, and make the observation normaliser its networks share.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from tfrl.envs import check_spaces, network_inputs
from tfrl.errors import ConfigError
from tfrl.nets import ObservationNormalizer

if TYPE_CHECKING:
    from tfrl.training import RunSettings


class Agent(Protocol):
    """What every agent has: acting, the exported policy, its networks and what a checkpoint holds.

    ``run_defaults`` are the run settings (``total_steps``, ``num_envs``, ``eval_every``,
    ``checkpoint_every``) a run of this agent gets unless told otherwise. ``policy()`` is the
    ``tf.Module`` that export writes; ``networks()`` the Keras models saved beside it (and whose
    weights best-policy tracking copies); ``trackables()`` the TensorFlow state of a checkpoint and
    ``numpy_state()`` the rest (counters, replay memory, numpy RNG).
    """

    algorithm: str
    run_defaults: ClassVar[dict[str, int]]
    observation_space: gym.Space

    @property
    def config(self) -> Any: ...

    @property
    def action_space(self) -> gym.Space: ...

    @property
    def env_steps(self) -> int: ...

    def act(self, observations: np.ndarray, explore: bool = False) -> np.ndarray: ...

    def policy(self) -> tf.Module: ...

    def networks(self) -> dict[str, keras.Model]: ...

    def trackables(self) -> dict: ...

    def numpy_state(self) -> dict: ...

    def load_numpy_state(self, state: dict) -> None: ...

    def weights_replaced(self) -> None:
        """Called after the networks' weights were set from outside the agent's own updates (the best
        policy put in for an export, a user's ``set_weights``): an agent that acts from a copy of
        them takes it again."""


@runtime_checkable
class CollectingAgent(Agent, Protocol):
    """An agent the shared loop drives: it acts, and ``observe`` gets each vector-env step (and trains
    when it decides to, returning its training metrics then)."""

    def observe(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> dict[str, float] | None: ...


@runtime_checkable
class UpdateProducer(Agent, Protocol):
    """An agent with workers of its own (A3C): ``update_stream`` yields ``(env steps, finished episodes,
    metrics)`` after each update it applies, and the shared loop does everything else."""

    def update_stream(
        self, settings: RunSettings, start_step: int, on_event: Callable[[str], None]
    ) -> Generator[tuple[int, list[tuple[float, int]], Mapping[str, float] | None], None, None]: ...


class AgentBase:
    """The constructor preamble: check the spaces, keep the config, the spaces and the observation shape.

    A subclass names its ``algorithm`` and the ``action_spaces`` it accepts (``space_hint`` says what
    to use instead) and calls ``_setup`` first thing in ``__init__``. Its networks take
    ``network_inputs``, which hold the agent's one ``ObservationNormalizer`` when the config asks for
    it, and it calls ``track_observations`` with each batch of training observations it collects.
    """

    algorithm: str
    action_spaces: ClassVar[tuple[type[gym.Space], ...]]
    space_hint: ClassVar[str] = ""
    config: Any
    action_space: Any  # one of ``action_spaces``; each agent declares which

    def _setup(self, config: Any, observation_space: gym.Space, action_space: gym.Space, env_id: str) -> None:
        check_spaces(self.algorithm, env_id, observation_space, action_space, self.action_spaces, self.space_hint)
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.observation_shape = tuple(observation_space.shape or ())
        # what every network of the agent takes: the observation encoder, the normaliser and the torso (tfrl.nets)
        self.normalizer = self._observation_normalizer(env_id)
        self.network_inputs = {**network_inputs(observation_space, config.torso), "normalizer": self.normalizer}

    def _observation_normalizer(self, env_id: str) -> ObservationNormalizer | None:
        """The normaliser every network shares (built, with its update compiled), or None when the
        config does not ask for one; refused for observations that are not numbers on a scale."""
        if not self.config.normalize_observations:
            return None
        space = self.observation_space
        if not isinstance(space, gym.spaces.Box) or space.dtype.kind not in "fiu" or space.dtype == np.uint8:
            raise ConfigError(
                f"normalize_observations=True standardises Box observations of numbers, but {env_id} has "
                f"{space}: indices are one-hot encoded and uint8 frames scaled to [0, 1] instead; "
                "set normalize_observations=False"
            )
        normalizer = ObservationNormalizer(self.config.observation_clip, name="normalizer")
        normalizer.build((None, *self.observation_shape))
        spec = tf.TensorSpec([None, *self.observation_shape], tf.float32)
        self._merge_observations = tf.function(normalizer.update, input_signature=[spec]).get_concrete_function()
        return normalizer

    def track_observations(self, observations: np.ndarray) -> None:
        """Merge a batch of collected training observations, as the env gave them, into the statistics
        the networks normalise with (nothing without a normaliser). Evaluation and export never call it."""
        if self.normalizer is not None:
            self._merge_observations(np.asarray(observations, np.float32).reshape(-1, *self.observation_shape))

    def weights_replaced(self) -> None:
        """Nothing to do for an agent that acts through its Keras networks (see ``Agent``)."""
