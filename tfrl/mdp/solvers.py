"""Exact and iterative solvers for Markov reward and decision processes.

Everything is float64 and vectorised: the analytic Bellman solution V = (I − γP)⁻¹R is one
``tf.linalg.solve`` (batched over policies when given a batch), and a value-iteration sweep is one
matrix-vector product over P[s, a, s'] reshaped to (S·A, S) followed by a max over actions.

With γ = 1 the system I − P is singular on states that are never left (absorbing states and closed
zero-reward loops); their value is 0 by definition, so their rows are replaced by "V[s] = 0" before
solving. The process classes have already refused models whose undiscounted values are infinite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfrl.errors import ConfigError
from tfrl.mdp.processes import MarkovDecisionProcess, MarkovRewardProcess, zero_value_states


@dataclass(frozen=True, eq=False)
class Solution:
    """Optimal values of an MDP and a greedy policy for them.

    ``q_values`` is nan for actions a state does not offer; ``policy`` holds one action index per
    state, −1 for terminal states. ``residual`` is the Bellman residual ‖T V − V‖∞ of the returned
    values; ``sweeps`` counts Bellman sweeps (value iteration) or policy evaluations (policy
    iteration).
    """

    values: np.ndarray
    q_values: np.ndarray
    policy: np.ndarray
    sweeps: int
    residual: float
    converged: bool


def chain_return(mrp: MarkovRewardProcess, chain: Sequence[str | int], start: int = 0) -> float:
    """Discounted return G = Σ_k γ^k R[chain[start + k]] of a sequence of states (book: −2.5)."""
    rewards = np.array([mrp.R[mrp.index(state)] for state in chain[start:]])
    G = 0.0
    for r in rewards[::-1]:
        G = mrp.gamma * G + r
    return float(G)


def _solve(P: np.ndarray, R: np.ndarray, gamma: float, names: Sequence[str]) -> np.ndarray:
    """Solve (I − γP)V = R for a batch of chains P[..., s, s'] with ``tf.linalg.solve``."""
    n = P.shape[-1]
    A = np.eye(n) - gamma * P
    b = np.array(R, dtype=np.float64)
    if gamma == 1.0:
        fixed = zero_value_states(P, R, names)
        A = np.where(fixed[..., None], np.eye(n), A)
        b = np.where(fixed, 0.0, b)
    V = tf.linalg.solve(tf.constant(A, tf.float64), tf.constant(b[..., None], tf.float64))
    return V.numpy()[..., 0]


def solve_mrp(mrp: MarkovRewardProcess) -> np.ndarray:
    """State values V = (I − γP)⁻¹R of a Markov reward process, by one linear solve."""
    return _solve(mrp.P, mrp.R, mrp.gamma, mrp.state_names)


def evaluate_policy(mdp: MarkovDecisionProcess, policy: np.ndarray) -> np.ndarray:
    """Exact V^π for one policy π[s, a] or a batch π[b, s, a] (one batched linear solve)."""
    P_pi, R_pi = mdp.induced(policy)
    return _solve(P_pi, R_pi, mdp.gamma, mdp.state_names)


def iterative_evaluation(
    mrp: MarkovRewardProcess, tol: float = 1e-10, max_sweeps: int = 100_000
) -> tuple[np.ndarray, int]:
    """Iterative policy evaluation V ← R + γPV from V = 0 until ‖ΔV‖∞ < tol.

    Returns the values and the number of sweeps; raises if ``max_sweeps`` is not enough.
    """
    V = np.zeros(mrp.num_states)
    for sweep in range(1, max_sweeps + 1):
        V_new = mrp.R + mrp.gamma * (mrp.P @ V)
        delta = np.max(np.abs(V_new - V))
        V = V_new
        if delta < tol:
            return V, sweep
    raise ConfigError(f"iterative evaluation did not reach tol={tol:g} in max_sweeps={max_sweeps}; raise max_sweeps")


def horizon_values(mrp: MarkovRewardProcess, horizon: int) -> np.ndarray:
    """Expected (discounted) sum of the first ``horizon`` rewards from each state.

    This is what an environment with a step limit measures: e.g. FrozenLake's success probability
    within its 100-step limit is ``horizon_values(mdp.to_mrp(pi), 100)`` at the start state.
    """
    if horizon < 0:
        raise ConfigError(f"horizon={horizon} must be >= 0")
    V = np.zeros(mrp.num_states)
    for _ in range(horizon):
        V = mrp.R + mrp.gamma * (mrp.P @ V)
    return V


def q_from_v(mdp: MarkovDecisionProcess, values: np.ndarray) -> np.ndarray:
    """Action values Q[s, a] = R[s, a] + γ Σ_s' P[s, a, s'] V[s'] (nan where a is not offered)."""
    V = np.asarray(values, dtype=np.float64)
    if V.shape[-1] != mdp.num_states:
        raise ConfigError(f"values have {V.shape[-1]} entries; the MDP has {mdp.num_states} states")
    Q = mdp.R + mdp.gamma * np.einsum("sat,...t->...sa", mdp.P, V)
    return np.where(mdp.action_mask, Q, np.nan)


def greedy_actions(mdp: MarkovDecisionProcess, q_values: np.ndarray) -> np.ndarray:
    """Greedy action per state from Q (first best offered action; −1 for terminal states)."""
    Q = np.where(mdp.action_mask, q_values, -np.inf)
    return np.where(mdp.terminal, -1, np.argmax(Q, axis=-1))


def _backup(
    mdp: MarkovDecisionProcess, V: np.ndarray, flat_P: np.ndarray, masked_R: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One Bellman optimality sweep: returns (T V, Q) with Q = −inf on actions not offered."""
    Q = masked_R + mdp.gamma * (flat_P @ V).reshape(masked_R.shape)
    TV = np.where(mdp.terminal, 0.0, Q.max(axis=1))
    return TV, Q


def value_iteration(
    mdp: MarkovDecisionProcess, tol: float = 1e-10, max_sweeps: int = 100_000, extrapolate: bool = True
) -> Solution:
    """Value iteration from V = 0 with a vectorised Bellman optimality sweep.

    Plain (``extrapolate=False``, and always when γ = 1): stop when ‖V_{k+1} − V_k‖∞ < tol.
    With ``extrapolate`` (γ < 1) the sweep also yields MacQueen's bounds
    V_{k+1} + γ/(1−γ)·min Δ ≤ V* ≤ V_{k+1} + γ/(1−γ)·max Δ (Δ = V_{k+1} − V_k); the midpoint is
    returned as soon as half their width is below ``tol``. On well-mixing MDPs the width shrinks far
    faster than γ^k, so this takes a handful of sweeps instead of log(tol)/log(γ).

    The residual reported is ‖T V − V‖∞ of the returned values, from one extra sweep that also
    gives Q and the greedy policy.
    """
    S, A = mdp.num_states, mdp.num_actions
    flat_P = mdp.P.reshape(S * A, S)
    masked_R = np.where(mdp.action_mask, mdp.R, -np.inf)
    gamma = mdp.gamma
    bounds = extrapolate and gamma < 1.0
    V = np.zeros(S)
    converged = False
    sweeps = 0
    while sweeps < max_sweeps and not converged:
        sweeps += 1
        TV, _ = _backup(mdp, V, flat_P, masked_R)
        delta = TV - V
        if bounds:
            lo, hi = delta.min(), delta.max()
            scale = gamma / (1.0 - gamma)
            converged = scale * (hi - lo) / 2 < tol
            V = np.where(mdp.terminal, 0.0, TV + scale * (lo + hi) / 2) if converged else TV
        else:
            converged = np.max(np.abs(delta)) < tol
            V = TV
    TV, Q = _backup(mdp, V, flat_P, masked_R)
    q_values = np.where(mdp.action_mask, Q, np.nan)
    return Solution(V, q_values, greedy_actions(mdp, Q), sweeps, float(np.max(np.abs(TV - V))), converged)


def _initial_policy(mdp: MarkovDecisionProcess) -> np.ndarray:
    """A deterministic policy to start policy iteration from; with γ = 1 one that surely stops."""
    first = np.argmax(mdp.action_mask, axis=1)
    if mdp.gamma == 1.0:
        _, witness = mdp.attractor(every_policy=False)
        first = np.where(witness >= 0, witness, first)
    return np.where(mdp.terminal, -1, first)


def policy_iteration(mdp: MarkovDecisionProcess, max_iterations: int = 1_000) -> Solution:
    """Policy iteration: exact evaluation (one linear solve) then greedy improvement, until stable.

    An action is replaced only when another is better by more than a relative 1e-12, so ties
    cannot make it cycle. With γ = 1 it starts from a policy that reaches a terminal state with
    probability 1, so the first evaluation is finite.
    """
    actions = _initial_policy(mdp)
    states = np.arange(mdp.num_states)
    live = ~mdp.terminal
    for iteration in range(1, max_iterations + 1):
        V = evaluate_policy(mdp, mdp.deterministic_policy(actions))
        Q = np.where(mdp.action_mask, q_from_v(mdp, V), -np.inf)
        best = np.argmax(Q, axis=1)
        best_value = np.where(live, Q.max(axis=1), 0.0)
        current = np.where(live, Q[states, np.maximum(actions, 0)], 0.0)
        better = best_value > current + 1e-12 * (1.0 + np.abs(current))
        residual = float(np.max(np.abs(best_value - V)))
        if not better.any():
            return Solution(V, np.where(mdp.action_mask, Q, np.nan), actions, iteration, residual, True)
        actions = np.where(better, best, actions)
    return Solution(V, np.where(mdp.action_mask, Q, np.nan), actions, max_iterations, residual, False)
