"""Episode sampling, Monte Carlo evaluation and occupancy measures.

``sample_episodes`` draws many episodes in lock-step from a seeded ``numpy.random.Generator``
(a few array operations per time step, whatever the number of episodes). ``book_sample`` is a
faithful port of Hands-on RL's ``sample``: same start rule, same ``timestep_max`` semantics and the
same order of calls on a legacy ``numpy.random.RandomState``, so with ``RandomState(0)`` and the
chapter's call order it reproduces the book's printed episodes, Monte Carlo values and occupancy
numbers bit for bit.

Two occupancy estimators live here and they do not estimate the same thing:

* ``sampled_occupancy`` estimates the textbook occupancy measure
  ρ(s, a) = (1 − γ) Σ_t γ^t P(S_t = s, A_t = a), where an episode that has ended stays in its
  absorbing terminal state. It agrees with the exact ``occupancy_measure``.
* ``book_occupancy`` is the book's estimator (1 − γ) Σ_t γ^t occur_t / total_t, where total_t counts
  only the episodes still running at step t. That conditions on survival, so it estimates
  (1 − γ) Σ_t γ^t P(S_t = s, A_t = a | episode still running at t), computed exactly by
  ``alive_conditioned_occupancy``. For the book's MDP and (s4, 概率前往) this is 0.1156 under Pi_1
  and 0.2357 under Pi_2, against textbook occupancies of 0.0962 and 0.2006; the book prints the
  sampled 0.1126 and 0.2320.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfrl.errors import ConfigError
from tfrl.mdp.processes import MarkovDecisionProcess


@dataclass(frozen=True, eq=False)
class Episodes:
    """A batch of episodes as padded arrays [episode, step]; steps past ``lengths[e]`` are padding.

    Padding is −1 in the index arrays and 0 in ``rewards``. ``next_states`` is the state the step
    led to, so step t is the book's tuple (s, a, r, s').
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_states: np.ndarray
    lengths: np.ndarray
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]

    def __len__(self) -> int:
        return self.lengths.size

    @property
    def valid(self) -> np.ndarray:
        """Mask [episode, step] of the steps that happened."""
        return np.arange(self.states.shape[1]) < self.lengths[:, None]

    def transitions(self, episode: int) -> list[tuple[str, str, float, str]]:
        """Episode ``episode`` as the book prints it: [(s, a, r, s'), ...] with names."""
        return [
            (
                self.state_names[self.states[episode, t]],
                self.action_names[self.actions[episode, t]],
                float(self.rewards[episode, t]),
                self.state_names[self.next_states[episode, t]],
            )
            for t in range(self.lengths[episode])
        ]

    def returns(self, gamma: float) -> np.ndarray:
        """Discounted return G_t = r_t + γ G_{t+1} from every step (0 in the padding)."""
        G = np.zeros_like(self.rewards)
        running = np.zeros(len(self))
        for t in range(self.rewards.shape[1] - 1, -1, -1):
            running = self.rewards[:, t] + gamma * running
            G[:, t] = running
        return G


@dataclass(frozen=True, eq=False)
class Estimate:
    """A sampled estimate per state (or state-action pair) with its standard error and sample count.

    ``standard_errors`` are computed from the spread across episodes (episodes are independent,
    steps within one are not), so ``|estimate − truth| < 5 · standard_error`` is a fair test.
    """

    values: np.ndarray
    standard_errors: np.ndarray
    counts: np.ndarray


def _start_distribution(mdp: MarkovDecisionProcess, start: np.ndarray | str | int | None) -> np.ndarray:
    """Start distribution: uniform over non-terminal states, a named state, or a given vector."""
    S = mdp.num_states
    if start is None:
        live = (~mdp.terminal).astype(np.float64)
        return live / live.sum()
    if isinstance(start, (str, int, np.integer)):
        return np.eye(S)[mdp.index(start)]
    dist = np.asarray(start, dtype=np.float64)
    if dist.shape != (S,) or (dist < 0).any() or abs(dist.sum() - 1.0) > 1e-8:
        raise ConfigError(f"start must be a probability vector over the {S} states, a state name or an index")
    return dist


def _draw(probabilities: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row: the first index whose cumulative probability exceeds the uniform."""
    cdf = np.cumsum(probabilities, axis=-1)
    cdf /= cdf[:, -1:]
    return np.argmax(cdf > uniforms[:, None], axis=-1)


def sample_episodes(
    mdp: MarkovDecisionProcess,
    policy: np.ndarray,
    episodes: int,
    rng: np.random.Generator | int | None = None,
    max_steps: int = 1_000,
    start: np.ndarray | str | int | None = None,
) -> Episodes:
    """Sample ``episodes`` episodes under ``policy`` in lock-step.

    Each starts from ``start`` (default: uniform over non-terminal states) and runs until it
    reaches a terminal state or has taken ``max_steps`` steps. ``rng`` is a ``Generator`` or a seed.
    """
    pi = mdp.check_policy(policy)
    if pi.ndim != 2:
        raise ConfigError(f"sample_episodes takes one policy of shape (S, A), got {pi.shape}")
    if episodes < 1 or max_steps < 1:
        raise ConfigError(f"episodes={episodes} and max_steps={max_steps} must both be >= 1")
    rng = np.random.default_rng(rng)
    dist = _start_distribution(mdp, start)
    shape = (episodes, max_steps)
    states, actions, next_states = (np.full(shape, -1, np.int64) for _ in range(3))
    rewards = np.zeros(shape)
    lengths = np.zeros(episodes, np.int64)
    s = rng.choice(mdp.num_states, size=episodes, p=dist)
    running = np.flatnonzero(~mdp.terminal[s])
    for t in range(max_steps):
        if running.size == 0:
            break
        here = s[running]
        a = _draw(pi[here], rng.random(running.size))
        nxt = _draw(mdp.P[here, a], rng.random(running.size))
        states[running, t], actions[running, t], next_states[running, t] = here, a, nxt
        rewards[running, t] = mdp.R[here, a]
        lengths[running] += 1
        s[running] = nxt
        running = running[~mdp.terminal[nxt]]
    T = max(int(lengths.max()), 1)
    return Episodes(
        states[:, :T],
        actions[:, :T],
        rewards[:, :T],
        next_states[:, :T],
        lengths,
        mdp.state_names,
        mdp.action_names,
    )


def book_sample(
    mdp: MarkovDecisionProcess,
    policy: np.ndarray,
    timestep_max: int,
    number: int,
    rng: np.random.RandomState,
) -> Episodes:
    """Hands-on RL's ``sample(MDP, Pi, timestep_max, number)``, call for call on a RandomState.

    Start uniformly among the non-terminal states (``randint``), then while the state is not
    terminal and ``timestep <= timestep_max`` (so up to ``timestep_max + 1`` steps): one ``rand()``
    scanned against the cumulative policy over actions in order, one ``rand()`` scanned against the
    cumulative transition row. With ``RandomState(0)`` and the chapter's order of calls (5 episodes,
    then 1000 for Monte Carlo, then 1000 + 1000 for occupancy) the book's printed numbers come out.
    """
    pi = mdp.check_policy(policy)
    live_states = np.flatnonzero(~mdp.terminal)
    cum_pi = np.cumsum(pi, axis=1)
    cum_P = np.cumsum(mdp.P, axis=2)
    steps = []
    for _ in range(number):
        episode: list[tuple[int, int, float, int]] = []
        s = int(live_states[rng.randint(live_states.size)])
        while not mdp.terminal[s] and len(episode) <= timestep_max:
            a = int(np.argmax(cum_pi[s] > rng.rand()))
            nxt = int(np.argmax(cum_P[s, a] > rng.rand()))
            episode.append((s, a, mdp.R[s, a], nxt))
            s = nxt
        steps.append(episode)
    lengths = np.array([len(e) for e in steps], np.int64)
    T = max(int(lengths.max()), 1)
    states, actions, next_states = (np.full((number, T), -1, np.int64) for _ in range(3))
    rewards = np.zeros((number, T))
    for e, episode in enumerate(steps):
        if episode:
            s_col, a_col, r_col, next_col = (np.array(column) for column in zip(*episode, strict=True))
            n = s_col.size
            states[e, :n], actions[e, :n], rewards[e, :n], next_states[e, :n] = s_col, a_col, r_col, next_col
    return Episodes(states, actions, rewards, next_states, lengths, mdp.state_names, mdp.action_names)


def _per_episode(keys: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-episode sums of ``weights`` and counts, grouped by ``keys`` [episode, step] (−1: skip).

    ``weights`` lists the values of the non-negative keys in row-major order; both results have
    shape [episodes, size].
    """
    rows = np.nonzero(keys >= 0)[0]
    flat = rows * size + keys[keys >= 0]
    n = keys.shape[0] * size
    sums = np.bincount(flat, weights=weights, minlength=n).reshape(-1, size)
    counts = np.bincount(flat, minlength=n).reshape(-1, size)
    return sums, counts


def _ratio_estimate(sums: np.ndarray, counts: np.ndarray) -> Estimate:
    """Pooled mean Σ sums / Σ counts with the delta-method standard error over episodes."""
    total = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.sum(axis=0) / total
        spread = np.sqrt(((sums - mean * counts) ** 2).sum(axis=0)) / total
    return Estimate(mean, spread, total)


def monte_carlo_evaluation(episodes: Episodes, mdp: MarkovDecisionProcess, first_visit: bool = False) -> Estimate:
    """Monte Carlo state values: the mean return after every (or each episode's first) visit.

    The book's incremental update V += (G − V)/N is this every-visit mean. Terminal states get 0,
    states never visited nan.
    """
    G = episodes.returns(mdp.gamma)
    mask = episodes.valid
    if first_visit:
        S = mdp.num_states
        keys = np.where(mask, np.arange(len(episodes))[:, None] * S + episodes.states, -1).reshape(-1)
        _, first = np.unique(keys, return_index=True)
        first = first[keys[first] >= 0]
        mask = np.zeros(keys.size, bool)
        mask[first] = True
        mask = mask.reshape(G.shape)
    keys = np.where(mask, episodes.states, -1)
    sums, counts = _per_episode(keys, G[mask], mdp.num_states)
    estimate = _ratio_estimate(sums, counts)
    values = np.where(mdp.terminal, 0.0, estimate.values)
    errors = np.where(mdp.terminal, 0.0, estimate.standard_errors)
    return Estimate(values, errors, estimate.counts)


def occupancy_measure(
    mdp: MarkovDecisionProcess, policy: np.ndarray, start: np.ndarray | str | int | None = None
) -> np.ndarray:
    """Exact discounted occupancy ρ(s, a) = (1 − γ) Σ_t γ^t P(S_t = s, A_t = a), shape (S, A).

    The state part d solves (I − γ P_π)ᵀ d = (1 − γ) ν (one ``tf.linalg.solve``) and
    ρ(s, a) = d(s) π(a | s). Terminal states carry no action, so ρ sums to 1 minus the discounted
    mass absorbed in them. Needs γ < 1. ``start`` is as in ``sample_episodes``.
    """
    if mdp.gamma >= 1.0:
        raise ConfigError(f"the occupancy measure needs gamma < 1, got gamma={mdp.gamma}")
    pi = mdp.check_policy(policy)
    P_pi, _ = mdp.induced(pi)
    nu = _start_distribution(mdp, start)
    A = np.eye(mdp.num_states) - mdp.gamma * P_pi.T
    d = tf.linalg.solve(tf.constant(A), tf.constant((1.0 - mdp.gamma) * nu[:, None])).numpy()[:, 0]
    return d[:, None] * pi


def _discounted_visits(episodes: Episodes, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per step, the (state, action) key and the weight (1 − γ)γ^t, for valid steps only."""
    A = len(episodes.action_names)
    mask = episodes.valid
    keys = np.where(mask, episodes.states * A + episodes.actions, -1)
    weights = np.broadcast_to((1.0 - gamma) * gamma ** np.arange(keys.shape[1]), keys.shape)[mask]
    return keys, weights


def sampled_occupancy(episodes: Episodes, gamma: float) -> Estimate:
    """Monte Carlo estimate of the textbook occupancy measure, shape (S, A).

    Each episode contributes (1 − γ) Σ_t γ^t 1[S_t = s, A_t = a] and the estimate is their mean over
    all episodes (an episode that ended contributes nothing afterwards, as its absorbing state
    offers no action). Episodes cut at ``max_steps`` bias it by at most γ^max_steps.
    """
    S, A = len(episodes.state_names), len(episodes.action_names)
    keys, weights = _discounted_visits(episodes, gamma)
    sums, counts = _per_episode(keys, weights, S * A)
    n = len(episodes)
    mean = sums.mean(axis=0)
    error = sums.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(S * A, np.nan)
    return Estimate(mean.reshape(S, A), error.reshape(S, A), counts.sum(axis=0).reshape(S, A))


def book_occupancy(episodes: Episodes, gamma: float) -> np.ndarray:
    """Hands-on RL's ``occupancy`` estimator for every (s, a) at once, shape (S, A).

    ρ̂(s, a) = (1 − γ) Σ_t γ^t occur_t(s, a) / total_t, where total_t is the number of episodes
    still running at step t. Because it divides by the survivors rather than by all episodes, it
    estimates ``alive_conditioned_occupancy``, not the textbook ρ (see the module docstring).
    """
    S, A = len(episodes.state_names), len(episodes.action_names)
    mask = episodes.valid
    total = mask.sum(axis=0)
    T = mask.shape[1]
    occur = np.zeros((T, S * A))
    steps = np.broadcast_to(np.arange(T), mask.shape)[mask]
    np.add.at(occur, (steps, (episodes.states * A + episodes.actions)[mask]), 1.0)
    terms = (1.0 - gamma) * gamma ** np.arange(T)[:, None] * occur / total[:, None]
    return terms[::-1].sum(axis=0).reshape(S, A)


def alive_conditioned_occupancy(
    mdp: MarkovDecisionProcess,
    policy: np.ndarray,
    horizon: int,
    start: np.ndarray | str | int | None = None,
) -> np.ndarray:
    """Exact large-sample limit of ``book_occupancy``: conditioning each step on survival.

    (1 − γ) Σ_{t < horizon} γ^t P(S_t = s, A_t = a) / P(episode still running at t), computed by
    propagating the state distribution. ``horizon`` is the number of steps an episode may take
    (``timestep_max + 1`` for the book's sampler).
    """
    pi = mdp.check_policy(policy)
    P_pi, _ = mdp.induced(pi)
    d = _start_distribution(mdp, start)
    live = ~mdp.terminal
    rho = np.zeros(mdp.num_states)
    for t in range(horizon):
        alive = d[live].sum()
        if alive <= 0.0:
            break
        rho += (1.0 - mdp.gamma) * mdp.gamma**t * d / alive
        d = d @ P_pi
    return rho[:, None] * pi
