"""Replay memories: preallocated numpy ring buffers.

Everything is vectorised: a vector env adds one row per sub-env in one call, and sampling draws
``K`` batches at once so ``K`` gradient steps can run inside a single ``tf.function`` call.

Pixel observations are kept in their own dtype (uint8, bool) and, through ``FrameStore``, each frame
once: a transition holds the ids of its frames, not the frames, so 1M Atari transitions need about
7.6 GB instead of 56 GB of float32 pairs. Every preallocation is checked against the memory the
machine has available (``require_memory``), because numpy only reserves address space: a buffer too
large for the machine would otherwise swap or be killed hours into a run, once it fills.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from tfrl.errors import ConfigError

_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated", "bootstrap_steps")
MEMINFO = Path("/proc/meminfo")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation without swapping (Linux's ``MemAvailable``), or
    None where the kernel does not say."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def require_memory(nbytes: int, what: str) -> None:
    """Refuse, with a ``ConfigError`` naming the sizes, to preallocate more than the machine has available."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise ConfigError(
            f"{what} needs {nbytes / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB of memory is available; "
            "lower buffer_size (e.g. --set buffer_size=...) or free memory"
        )


class ReplayBuffer:
    """Uniform experience replay over (obs, action, reward, next_obs, terminated).

    ``terminated`` is stored as float32 (1.0 = the episode ended in a terminal state, so the
    target must not bootstrap). Truncated episodes are stored with ``terminated = 0``: their
    next observation is real and its value still counts. ``bootstrap_steps`` is the number of env
    steps from the observation to the next one: 1 for ordinary transitions, ``k ≤ n`` for n-step
    ones (see ``NStepCollector``), so the target discounts the bootstrap by ``γ^k``.

    Observations are stored as ``observation_dtype``: float32 by default, uint8 or bool for frames,
    int64 for the frame ids of a ``FrameStore``.
    """

    def __init__(
        self,
        capacity: int,
        observation_shape: tuple[int, ...],
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype | type = np.int64,
        observation_dtype: np.dtype | type = np.float32,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        self.capacity = int(capacity)
        row_bytes = 2 * np.dtype(observation_dtype).itemsize * int(np.prod(observation_shape))
        row_bytes += np.dtype(action_dtype).itemsize * int(np.prod(action_shape)) + 12
        require_memory(self.capacity * row_bytes, f"a replay memory of {self.capacity} transitions")
        self.observations = np.zeros((capacity, *observation_shape), observation_dtype)
        self.next_observations = np.zeros((capacity, *observation_shape), observation_dtype)
        self.actions = np.zeros((capacity, *action_shape), action_dtype)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.bootstrap_steps = np.ones(capacity, np.int32)
        self.position = 0
        self.size = 0

    @property
    def nbytes(self) -> int:
        """The bytes this memory's arrays hold once full."""
        return sum(getattr(self, name).nbytes for name in _FIELDS)

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


class FrameStore:
    """Image observations stored one frame at a time, each frame once; observations become frame ids.

    An observation of shape ``(H, W, k·C)`` is ``k`` frames of ``(H, W, C)`` stacked channels last,
    oldest first (``tfrl.envs.channels_last``; ``k = 1`` for unstacked frames such as MinAtar's).
    ``add`` turns a vector-env step's observations and next observations into rows of ``k`` frame ids
    and writes only the frames it has not stored yet, found by comparing contents:

    - a sub-env's observation that equals its previous next observation (the episode goes on) reuses
      that stack's ids; any other one (a new episode's first, padded stack) is written, repeats of a
      frame — ``FrameStackObservation`` pads with the first frame — once;
    - a next observation whose first ``k − 1`` frames are the observation's last ``k − 1`` (a stack that
      moved on by one frame) adds one frame, its newest; any other one is written whole. An episode's
      final observation is therefore stored like every other, and a truncated transition bootstraps
      from the real one.

    Reuse happens only where contents are equal, so ``stacks(ids)`` gives back exactly the stacks the
    env produced. The ids are absolute frame numbers in a ring of ``frames`` slots: one per
    transition plus 1/16 more and 64 spare for episode starts and the stacks' look-back. An id is
    valid while its frame has not been overwritten (``valid``); a transition that lost a frame (only
    possible for the oldest ones, when episodes average under ~16 steps) must count for nothing, which
    the agent ensures by weighting it 0 (and, in prioritized replay, ``forget``-ting it).

    The ids are what the ``ReplayBuffer`` stores as observations, so uniform, prioritized and n-step
    replay work on them unchanged: 2·k int64 ids per transition instead of two stacks.
    """

    def __init__(
        self, transitions: int, observation_shape: tuple[int, ...], dtype: np.dtype | type, stack: int
    ) -> None:
        channels = observation_shape[-1]
        if stack < 1 or channels % stack:
            raise ValueError(f"observations of shape {observation_shape} cannot be {stack} stacked frames")
        self.stack = int(stack)
        self.frame_shape = (*observation_shape[:-1], channels // stack)
        self.capacity = int(transitions) + int(transitions) // 16 + 64
        frame_bytes = np.dtype(dtype).itemsize * int(np.prod(self.frame_shape))
        require_memory(self.capacity * frame_bytes, f"{self.capacity} replay frames of shape {self.frame_shape}")
        self.frames = np.zeros((self.capacity, *self.frame_shape), dtype)
        self.count = 0  # frames written so far; frame id i lives in slot i % capacity
        self.latest: np.ndarray | None = None  # each sub-env's last next observation, and its ids
        self.latest_ids = np.zeros((0, self.stack), np.int64)

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes

    def _split(self, observations: np.ndarray) -> np.ndarray:
        """``[n, H, W, k·C]`` observations as ``[n, H, W, k, C]``: frame ``t`` is ``[..., t, :]``."""
        return observations.reshape(*observations.shape[:-1], self.stack, -1)

    def _write(self, frames: np.ndarray) -> np.ndarray:
        """Store ``frames`` (``[m, *frame_shape]``) in the ring; their ids."""
        ids = self.count + np.arange(len(frames), dtype=np.int64)
        self.frames[ids % self.capacity] = frames
        self.count += len(frames)
        return ids

    def _write_stack(self, frames: np.ndarray) -> np.ndarray:
        """Ids for one stack's frames (``[H, W, k, C]``), writing each run of repeated frames once."""
        ids = np.empty(self.stack, np.int64)
        for t in range(self.stack - 1, -1, -1):
            repeat = t < self.stack - 1 and np.array_equal(frames[..., t, :], frames[..., t + 1, :])
            ids[t] = ids[t + 1] if repeat else self._write(frames[None, ..., t, :])[0]
        return ids

    def add(self, observations: np.ndarray, next_observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame ids ``[n, k]`` of one vector-env step's observations and next observations (each
        finished episode's real last one), storing the frames not stored yet."""
        observations = np.asarray(observations, self.frames.dtype)
        next_observations = np.asarray(next_observations, self.frames.dtype)
        count = len(observations)
        previous, now, following = self.latest, self._split(observations), self._split(next_observations)
        ids = np.empty((count, self.stack), np.int64)
        next_ids = np.empty((count, self.stack), np.int64)
        continued = np.zeros(count, bool)
        if previous is not None and len(previous) == count:
            continued = (observations == previous).reshape(count, -1).all(axis=1)
            ids[continued] = self.latest_ids[continued]
        shifted = (following[..., :-1, :] == now[..., 1:, :]).reshape(count, -1).all(axis=1)
        for index in np.flatnonzero(~continued):
            ids[index] = self._write_stack(now[index])
        next_ids[shifted, :-1] = ids[shifted, 1:]
        next_ids[shifted, -1] = self._write(following[shifted, ..., -1, :])
        for index in np.flatnonzero(~shifted):
            next_ids[index] = self._write_stack(following[index])
        self.latest, self.latest_ids = next_observations.copy(), next_ids
        return ids, next_ids

    def valid(self, ids: np.ndarray) -> np.ndarray:
        """Whether every frame of each row of ``ids`` (``[..., k]``) is still stored."""
        return np.all(np.asarray(ids) >= self.count - self.capacity, axis=-1).astype(bool)

    def stacks(self, ids: np.ndarray) -> np.ndarray:
        """The observations of the frame ids ``[..., k]``: ``[..., H, W, k·C]``, as the env gave them."""
        frames = self.frames[np.asarray(ids) % self.capacity]  # [..., k, H, W, C]
        stacked = np.moveaxis(frames, -len(self.frame_shape) - 1, -2)  # [..., H, W, k, C]
        return stacked.reshape(*stacked.shape[:-2], -1)

    def state(self) -> dict[str, np.ndarray]:
        """The stored frames (slot order) and the frame count. The sub-envs' latest stacks are left out:
        a resumed run starts new episodes, whose first stacks are stored afresh."""
        return {"frames": self.frames[: min(self.count, self.capacity)], "count": np.asarray(self.count)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        frames = state["frames"]
        if frames.shape[1:] != self.frames.shape[1:] or len(frames) > self.capacity:
            raise ValueError(
                f"saved frames {frames.shape} do not fit this store's {self.capacity} frames of {self.frame_shape}"
            )
        self.frames[: len(frames)] = frames
        self.count = int(state["count"])
        self.latest, self.latest_ids = None, np.zeros((0, self.stack), np.int64)


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
        observation_dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__(capacity, observation_shape, action_shape, action_dtype, observation_dtype)
        if alpha < 0 or epsilon <= 0:
            raise ValueError(
                f"prioritized replay needs alpha >= 0 and epsilon > 0, got alpha={alpha}, epsilon={epsilon}"
            )
        self.alpha, self.epsilon = float(alpha), float(epsilon)
        self.tree = SumTree(capacity)
        self.max_priority = 1.0

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.tree.nodes.nbytes

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

    def forget(self, indices: npt.ArrayLike) -> None:
        """Priority 0 for the rows ``indices``: never sampled again until overwritten (a ``FrameStore``
        transition whose frames are gone)."""
        self.tree.update(indices, np.zeros(np.size(indices)))

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
