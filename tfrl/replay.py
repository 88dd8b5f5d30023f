"""Replay memories: preallocated numpy ring buffers.

Everything is vectorised: a vector env adds one row per sub-env in one call, and sampling draws
``K`` batches at once so ``K`` gradient steps can run inside a single ``tf.function`` call.
"""

from __future__ import annotations

import numpy as np

_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated")


class ReplayBuffer:
    """Uniform experience replay over (obs, action, reward, next_obs, terminated).

    ``terminated`` is stored as float32 (1.0 = the episode ended in a terminal state, so the
    target must not bootstrap). Truncated episodes are stored with ``terminated = 0``: their
    next observation is real and its value still counts.
    """

    def __init__(
        self,
        capacity: int,
        observation_shape: tuple[int, ...],
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype | type = np.int64,
    ):
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        self.capacity = int(capacity)
        self.observations = np.zeros((capacity, *observation_shape), np.float32)
        self.next_observations = np.zeros((capacity, *observation_shape), np.float32)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.position = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, observations, actions, rewards, next_observations, terminated) -> None:
        """Append a batch of transitions (leading axis = one row per sub-env), overwriting the oldest."""
        count = len(rewards)
        rows = (self.position + np.arange(count)) % self.capacity
        self.observations[rows] = observations
        self.actions[rows] = actions
        self.rewards[rows] = rewards
        self.next_observations[rows] = next_observations
        self.terminated[rows] = terminated
        self.position = int((self.position + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int, num_batches: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw ``num_batches`` batches uniformly with replacement, shaped ``[num_batches, batch_size, ...]``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rows = rng.integers(0, self.size, size=(num_batches, batch_size))
        return {name: getattr(self, name)[rows] for name in _FIELDS}

    def state(self) -> dict[str, np.ndarray]:
        """The stored rows and the write position, as arrays for ``np.savez``."""
        arrays = {name: getattr(self, name)[: self.size] for name in _FIELDS}
        arrays["position"] = np.asarray(self.position)
        return arrays

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state`` returned; the shapes must match this buffer's."""
        size = len(state["rewards"])
        if size > self.capacity:
            raise ValueError(f"saved buffer holds {size} rows, more than this buffer's capacity {self.capacity}")
        for name in _FIELDS:
            target = getattr(self, name)
            if state[name].shape[1:] != target.shape[1:]:
                raise ValueError(
                    f"saved buffer field {name!r} has rows of shape {state[name].shape[1:]}, "
                    f"this buffer expects {target.shape[1:]}"
                )
            target[:size] = state[name]
        self.size = size
        self.position = int(state["position"])
