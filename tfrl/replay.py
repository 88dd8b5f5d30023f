"""Replay memories: preallocated numpy ring buffers.

Everything is vectorised: a vector env adds one row per sub-env in one call, and sampling draws
``K`` batches at once so ``K`` gradient steps can run inside a single ``tf.function`` call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated", "bootstrap_steps")


class ReplayBuffer:
    """Uniform experience replay over (obs, action, reward, next_obs, terminated).

    ``terminated`` is stored as float32 (1.0 = the episode ended in a terminal state, so the
    target must not bootstrap). Truncated episodes are stored with ``terminated = 0``: their
    next observation is real and its value still counts. ``bootstrap_steps`` is the number of env
    steps from the observation to the next one: 1 for ordinary transitions, ``k ≤ n`` for n-step
    ones (see ``NStepCollector``), so the target discounts the bootstrap by ``γ^k``.
    """

    def __init__(
        self,
        capacity: int,
        observation_shape: tuple[int, ...],
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype | type = np.int64,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        self.capacity = int(capacity)
        self.observations = np.zeros((capacity, *observation_shape), np.float32)
        self.next_observations = np.zeros((capacity, *observation_shape), np.float32)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.bootstrap_steps = np.ones(capacity, np.int32)
        self.position = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        observations: npt.ArrayLike,
        actions: npt.ArrayLike,
        rewards: np.ndarray,
        next_observations: npt.ArrayLike,
        terminated: npt.ArrayLike,
        bootstrap_steps: npt.ArrayLike = 1,
    ) -> np.ndarray:
        """Append a batch of transitions (leading axis = one row per sub-env), overwriting the oldest.

        Returns the rows written, so a prioritized memory can give them their first priority.
        """
        count = len(rewards)
        rows = (self.position + np.arange(count)) % self.capacity
        self.observations[rows] = observations
        self.actions[rows] = actions
        self.rewards[rows] = rewards
        self.next_observations[rows] = next_observations
        self.terminated[rows] = terminated
        self.bootstrap_steps[rows] = bootstrap_steps
        self.position = int((self.position + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)
        return rows

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
        # Checkpoints written before n-step returns existed hold only one-step transitions.
        state = {"bootstrap_steps": np.ones(size, np.int32), **state}
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


def __getattr__(name: str) -> Any:
    """``n_step_returns`` moved to ``tfrl.agents.stochastic`` with the other on-policy return computations;
    A3C imports it from here until it switches to the shared module."""
    if name == "n_step_returns":
        from tfrl.agents.stochastic import n_step_returns

        return n_step_returns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------------
# Prioritized experience replay (Schaul et al. 2016) and n-step transitions for the DQN family.
# ------------------------------------------------------------------------------------------------


class SumTree:
    """A binary tree whose every node holds the sum of its two children; the leaves are priorities.

    Stored as one float64 array over a power-of-two number of leaves: node 1 is the root, node ``i``
    has children ``2i`` and ``2i + 1``, and leaf ``j`` is node ``leaf_count + j``. Both operations
    work on whole batches at once, one numpy operation per tree level (20 levels for 1M leaves):

    - ``update`` writes the leaves, then recomputes their parents level by level. Parents are
      recomputed from their children rather than patched by deltas, so the tree never drifts.
    - ``find`` descends from the root for every value at once: go left if the value is below the
      left child's sum, otherwise subtract it and go right.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        self.capacity = int(capacity)
        self.depth = (self.capacity - 1).bit_length()
        self.leaf_count = 1 << self.depth
        self.nodes = np.zeros(2 * self.leaf_count, np.float64)

    @property
    def total(self) -> float:
        """The sum of all priorities (the root)."""
        return float(self.nodes[1])

    def priorities(self, indices: np.ndarray | None = None) -> np.ndarray:
        """The leaves at ``indices`` (all ``capacity`` of them by default)."""
        leaves = self.nodes[self.leaf_count : self.leaf_count + self.capacity]
        return leaves if indices is None else leaves[indices]

    def update(self, indices: npt.ArrayLike, priorities: npt.ArrayLike) -> None:
        """Set the priorities of leaves ``indices`` (repeats allowed: the last one wins)."""
        nodes = np.asarray(indices, np.int64).ravel() + self.leaf_count
        self.nodes[nodes] = np.asarray(priorities, np.float64).ravel()
        for _ in range(self.depth):
            nodes = nodes >> 1
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]

    def rebuild(self, priorities: npt.ArrayLike) -> None:
        """Replace every leaf (missing ones become 0) and recompute the whole tree bottom up."""
        priorities = np.asarray(priorities, np.float64)
        self.nodes[:] = 0.0
        self.nodes[self.leaf_count : self.leaf_count + len(priorities)] = priorities
        for level in range(self.depth - 1, -1, -1):
            first = 1 << level
            parents = np.arange(first, 2 * first)
            self.nodes[parents] = self.nodes[2 * parents] + self.nodes[2 * parents + 1]

    def find(self, values: npt.ArrayLike) -> np.ndarray:
        """The leaf whose cumulative-sum interval holds each value in ``[0, total)``.

        Leaf ``j`` is returned for values in ``[sum(p[:j]), sum(p[:j + 1]))``, so a uniform value
        picks leaf ``j`` with probability ``p[j] / total``; a zero-priority leaf is never picked.
        """
        values = np.array(values, np.float64).ravel()
        nodes = np.ones(len(values), np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            left_sums = self.nodes[left]
            go_right = values >= left_sums
            values -= np.where(go_right, left_sums, 0.0)
            nodes = left + go_right
        return nodes - self.leaf_count


class PrioritizedReplayBuffer(ReplayBuffer):
    """Replay that samples transition ``i`` with probability ``p_i / Σ p``, ``p_i = (|δ_i| + ε)^α``.

    - New transitions get the largest priority seen so far, so each is replayed at least once soon.
    - ``sample`` draws each batch stratified: the total is cut into ``batch_size`` equal segments and
      one value is drawn in each, which lowers the variance of the batch's composition.
    - Importance weights ``w_i = (N · P(i))^(−β)`` undo the bias of non-uniform sampling; they are
      divided by their batch maximum so they only ever scale updates down. ``β`` is annealed to 1 by
      the agent: full correction by the end of training, when unbiased targets matter most.
    - ``update_priorities`` takes the |TD errors| the training call returns for the sampled rows.
    """

    def __init__(
        self,
        capacity: int,
        observation_shape: tuple[int, ...],
        alpha: float = 0.6,
        epsilon: float = 1e-6,
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype | type = np.int64,
    ) -> None:
        super().__init__(capacity, observation_shape, action_shape, action_dtype)
        if alpha < 0 or epsilon <= 0:
            raise ValueError(
                f"prioritized replay needs alpha >= 0 and epsilon > 0, got alpha={alpha}, epsilon={epsilon}"
            )
        self.alpha, self.epsilon = float(alpha), float(epsilon)
        self.tree = SumTree(capacity)
        self.max_priority = 1.0

    def add(
        self,
        observations: npt.ArrayLike,
        actions: npt.ArrayLike,
        rewards: np.ndarray,
        next_observations: npt.ArrayLike,
        terminated: npt.ArrayLike,
        bootstrap_steps: npt.ArrayLike = 1,
    ) -> np.ndarray:
        rows = super().add(observations, actions, rewards, next_observations, terminated, bootstrap_steps)
        self.tree.update(rows, np.full(len(rows), self.max_priority))
        return rows

    def sample(
        self, batch_size: int, num_batches: int, rng: np.random.Generator, beta: float = 1.0
    ) -> dict[str, np.ndarray]:
        """``num_batches`` stratified batches, plus ``indices`` (rows, for the priority update) and ``weights``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        total = self.tree.total
        segments = (np.arange(batch_size) + rng.random((num_batches, batch_size))) / batch_size
        values = np.minimum(segments * total, np.nextafter(total, 0.0))
        rows = self.tree.find(values).reshape(num_batches, batch_size)
        probabilities = self.tree.priorities(rows) / total
        weights = (self.size * probabilities) ** -beta
        weights /= weights.max(axis=1, keepdims=True)
        batch = {name: getattr(self, name)[rows] for name in _FIELDS}
        batch["indices"] = rows
        batch["weights"] = weights.astype(np.float32)
        return batch

    def update_priorities(self, indices: npt.ArrayLike, td_errors: npt.ArrayLike) -> None:
        """Priorities ``(|δ| + ε)^α`` for the rows ``indices`` from their latest TD errors."""
        priorities = (np.abs(np.asarray(td_errors, np.float64)) + self.epsilon) ** self.alpha
        self.tree.update(indices, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state(self) -> dict[str, np.ndarray]:
        arrays = super().state()
        arrays["priorities"] = self.tree.priorities()[: self.size].copy()
        arrays["max_priority"] = np.asarray(self.max_priority)
        return arrays

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        super().load_state(state)
        if "priorities" not in state:
            raise ValueError("saved buffer has no priorities: it was written by a uniform replay buffer")
        self.tree.rebuild(state["priorities"])
        self.max_priority = float(state["max_priority"])


class NStepCollector:
    """Turns each sub-env's stream of one-step transitions into n-step ones, as they arrive.

    For a window of ``k`` steps starting at ``s_t`` it emits
    ``(s_t, a_t, R = Σ_{j<k} γ^j r_{t+j}, s_{t+k}, terminated, k)``, so the target is
    ``R + γ^k (1 − terminated) max_a Q'(s_{t+k}, a)``. A window is emitted once it holds ``n``
    steps (``k = n``); when an episode ends every open window is flushed with ``k < n``: after a
    termination they do not bootstrap, after a truncation they bootstrap from the truncated
    episode's real last observation. Open windows are not checkpointed: a resumed run starts new
    episodes, so they could not be completed anyway.
    """

    def __init__(self, n: int, gamma: float) -> None:
        if n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        self.n, self.gamma = int(n), float(gamma)
        self.windows: list[list[tuple]] = []

    def add(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> dict[str, np.ndarray] | None:
        """Take one vector-env step; returns the n-step transitions completed by it (or None)."""
        if not self.windows:
            self.windows = [[] for _ in range(len(rewards))]
        completed = []
        for index, window in enumerate(self.windows):
            window.append((observations[index], actions[index], float(rewards[index])))
            ended = bool(terminated[index]) or bool(truncated[index])
            while len(window) == self.n or (ended and window):
                completed.append(self._transition(window, next_observations[index], terminated[index]))
                window.pop(0)
        if not completed:
            return None
        fields = ("observations", "actions", "rewards", "next_observations", "terminated", "bootstrap_steps")
        return {name: np.asarray(column) for name, column in zip(fields, zip(*completed, strict=True), strict=True)}

    def _transition(self, window: list[tuple], next_observation: np.ndarray, terminated: float) -> tuple:
        discounted = sum(self.gamma**offset * reward for offset, (_, _, reward) in enumerate(window))
        observation, action, _ = window[0]
        return observation, action, np.float32(discounted), next_observation, np.float32(terminated), len(window)
