"""Markov reward and decision processes held as dense float64 arrays.

``MarkovRewardProcess`` holds P[s, s'], R[s] and γ; ``MarkovDecisionProcess`` holds P[s, a, s'],
R[s, a], γ and a mask of the actions each state offers. Both validate on construction, so every
solver and sampler downstream can trust the arrays: rows are probability distributions, shapes
agree, γ lies in [0, 1], and γ = 1 is accepted only when every value is finite.

A state that offers no action (the book's s5) is terminal: it is treated as absorbing with reward
0, which is what makes the book's numbers come out. Hands-on RL writes its MDP as dictionaries keyed
``"s1-前往s2-s2"``; ``MarkovDecisionProcess.from_dicts`` reads that form directly, and
``from_gymnasium`` reads the model that FrozenLake, Taxi and CliffWalking expose as
``env.unwrapped.P``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfrl.errors import ConfigError

ROW_TOLERANCE = 1e-8
"""How far a row of P (or of a policy) may sum from 1 and still count as a distribution."""


def _names(names: Sequence[str] | None, count: int, prefix: str, what: str) -> tuple[str, ...]:
    """Return ``count`` distinct names, defaulting to ``prefix0, prefix1, ...``."""
    if names is None:
        return tuple(f"{prefix}{i}" for i in range(count))
    names = tuple(str(name) for name in names)
    if len(names) != count:
        raise ConfigError(f"{len(names)} {what} names given for {count} {what}s; give one name per {what}")
    if len(set(names)) != count:
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ConfigError(f"{what} names must be distinct; repeated: {duplicates}")
    return names


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"gamma={gamma} is outside [0, 1]; choose a discount factor 0 <= gamma <= 1")
    return gamma


def _check_distribution_rows(rows: np.ndarray, labels: list[str], what: str, hint: str = "") -> None:
    """Refuse negative entries and rows that do not sum to 1 (``labels`` name each row)."""
    flat = rows.reshape(-1, rows.shape[-1])
    negative = np.flatnonzero((flat < 0).any(axis=1))
    if negative.size:
        i = negative[0]
        j = int(np.argmax(flat[i] < 0))
        raise ConfigError(
            f"row {labels[i]} of {what} has a negative probability {flat[i, j]} at column {j}; "
            "probabilities must be >= 0"
        )
    sums = flat.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_TOLERANCE)
    if bad.size:
        i = bad[0]
        raise ConfigError(
            f"row {labels[i]} of {what} sums to {sums[i]:.12g}, expected 1 (within {ROW_TOLERANCE:g}){hint}"
        )


def _closure(adjacency: np.ndarray) -> np.ndarray:
    """Reflexive-transitive closure of a (batch of) boolean adjacency matrices by repeated squaring.

    Costs log2(n) matrix products, so it is meant for the γ = 1 checks on models of up to a few
    thousand states, not for every solve.
    """
    n = adjacency.shape[-1]
    reach = (adjacency | np.eye(n, dtype=bool)).astype(np.float32)
    for _ in range(max(1, int(np.ceil(np.log2(max(n, 2)))))):
        reach = np.minimum(reach @ reach, 1.0)
    return reach > 0


def recurrent_states(P: np.ndarray) -> np.ndarray:
    """Boolean mask of the recurrent states of a (batch of) Markov chains P[..., s, s'].

    A state is recurrent when every state it can reach can reach it back, i.e. it lies in a closed
    class that is never left once entered. An absorbing state is the one-state case.
    """
    reach = _closure(P > 0)
    can_return = ~reach | np.swapaxes(reach, -1, -2)
    return can_return.all(axis=-1)


def zero_value_states(P: np.ndarray, R: np.ndarray, names: Sequence[str] = ()) -> np.ndarray:
    """States whose value is 0 when γ = 1; refuse chains whose undiscounted values are infinite.

    With γ = 1 the sum of rewards is finite from every state exactly when every closed class
    (absorbing state or closed cycle) has reward 0; those recurrent states then have value 0 and the
    Bellman system on the other, transient, states has a unique solution.
    """
    recurrent = recurrent_states(P)
    paying = recurrent & (R != 0)
    if paying.any():
        index = np.argwhere(paying)[0]
        state = int(index[-1])
        label = names[state] if len(names) else str(state)
        batch = f" (policy {int(index[0])} of the batch)" if P.ndim == 3 else ""
        raise ConfigError(
            f"gamma=1 gives an infinite return: state {label} lies in a closed class that is never left "
            f"and pays reward {R[tuple(index)]:g}{batch}; with gamma=1 every state must end in absorbing "
            "states with reward 0 — use gamma < 1 or add a terminal state"
        )
    return recurrent


@dataclass(frozen=True, eq=False)
class MarkovRewardProcess:
    """A Markov reward process: transition matrix P[s, s'], reward R[s] and discount γ.

    R[s] is the reward received when leaving s (the book's convention: a chain's return starts with
    the reward of its first state). Arrays are stored as read-only float64 copies.
    """

    P: np.ndarray
    R: np.ndarray
    gamma: float
    state_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        P = np.array(self.P, dtype=np.float64)
        R = np.array(self.R, dtype=np.float64).reshape(-1)
        if P.ndim != 2 or P.shape[0] != P.shape[1]:
            raise ConfigError(f"P has shape {P.shape}; an MRP needs a square matrix P[s, s']")
        if R.shape != (P.shape[0],):
            raise ConfigError(f"R has {R.size} entries but P has {P.shape[0]} states; give one reward per state")
        if not np.isfinite(P).all() or not np.isfinite(R).all():
            raise ConfigError("P and R must be finite (no nan or inf)")
        names = _names(self.state_names or None, P.shape[0], "s", "state")
        _check_distribution_rows(P, list(names), "P")
        gamma = _check_gamma(self.gamma)
        if gamma == 1.0:
            zero_value_states(P, R, names)
        P.flags.writeable = False
        R.flags.writeable = False
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "state_names", names)

    @property
    def num_states(self) -> int:
        """Number of states."""
        return self.P.shape[0]

    def index(self, state: str | int) -> int:
        """Index of a state given by name or index."""
        return _lookup(state, self.state_names, "state")

    def __repr__(self) -> str:
        return f"MarkovRewardProcess(states={self.num_states}, gamma={self.gamma})"


def _lookup(item: str | int, names: tuple[str, ...], what: str) -> int:
    if isinstance(item, (int, np.integer)):
        if not 0 <= int(item) < len(names):
            raise ConfigError(f"{what} index {item} is out of range; valid indices are 0..{len(names) - 1}")
        return int(item)
    if item not in names:
        raise ConfigError(f"unknown {what} {item!r}; valid {what}s are {list(names)}")
    return names.index(item)


@dataclass(frozen=True, eq=False)
class MarkovDecisionProcess:
    """A Markov decision process: P[s, a, s'], R[s, a], γ and the actions each state offers.

    ``available[s, a]`` says whether state s offers action a (default: every action everywhere).
    Rows of P for offered actions must be distributions; rows and rewards of actions a state does
    not offer must be zero. A state offering no action is terminal, absorbing with reward 0.

    With γ = 1 the model must have terminal structure: from every state some policy reaches a
    terminal state (one with no actions, or whose actions all stay put with reward 0), and no action
    that lets a policy avoid the terminal states forever pays a positive reward. That second rule is
    sufficient, not necessary, for finite values: it refuses the book's MDP at γ = 1 (looping on
    s4's 概率前往 pays +1, although the loop loses on average), and accepts zero-reward loops such as
    FrozenLake's "keep pressing up in the top row" (value 0) and Taxi's costly ones.
    """

    P: np.ndarray
    R: np.ndarray
    gamma: float
    state_names: tuple[str, ...] = field(default=())
    action_names: tuple[str, ...] = field(default=())
    available: np.ndarray | None = None

    def __post_init__(self) -> None:
        P = np.array(self.P, dtype=np.float64)
        R = np.array(self.R, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise ConfigError(f"P has shape {P.shape}; an MDP needs P[s, a, s'] of shape (S, A, S)")
        S, A, _ = P.shape
        if R.shape != (S, A):
            raise ConfigError(f"R has shape {R.shape} but P has shape {P.shape}; R[s, a] must have shape ({S}, {A})")
        if not np.isfinite(P).all() or not np.isfinite(R).all():
            raise ConfigError("P and R must be finite (no nan or inf)")
        states = _names(self.state_names or None, S, "s", "state")
        actions = _names(self.action_names or None, A, "a", "action")
        available = np.ones((S, A), bool) if self.available is None else np.array(self.available, dtype=bool)
        if available.shape != (S, A):
            raise ConfigError(f"available has shape {available.shape}; expected ({S}, {A}) like R")
        labels = [f"({s}, {a})" for s in states for a in actions]
        offered = available.reshape(-1)
        if offered.any():
            hint = "; mark actions a state does not offer with `available`" if self.available is None else ""
            _check_distribution_rows(
                P.reshape(S * A, S)[offered], [label for label, o in zip(labels, offered, strict=True) if o], "P", hint
            )
        stray = np.flatnonzero(~offered & ((P.reshape(S * A, S) != 0).any(axis=1) | (R.reshape(-1) != 0)))
        if stray.size:
            raise ConfigError(
                f"action {labels[stray[0]]} is not available but has nonzero transitions or reward; "
                "set its row of P and its R to 0 or mark it available"
            )
        gamma = _check_gamma(self.gamma)
        for array in (P, R, available):
            array.flags.writeable = False
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "state_names", states)
        object.__setattr__(self, "action_names", actions)
        object.__setattr__(self, "available", available)
        if gamma == 1.0:
            self._check_terminal_structure()

    @property
    def num_states(self) -> int:
        """Number of states."""
        return self.P.shape[0]

    @property
    def num_actions(self) -> int:
        """Number of actions (the union over states; see ``available``)."""
        return self.P.shape[1]

    @property
    def action_mask(self) -> np.ndarray:
        """``available`` as the read-only boolean (S, A) array that ``__post_init__`` always stores."""
        assert self.available is not None  # __post_init__ replaces None by the all-true mask
        return self.available

    @property
    def terminal(self) -> np.ndarray:
        """Mask of the states that offer no action (absorbing, reward 0)."""
        return ~np.any(self.action_mask, axis=1)

    def index(self, state: str | int) -> int:
        """Index of a state given by name or index."""
        return _lookup(state, self.state_names, "state")

    def action_index(self, action: str | int) -> int:
        """Index of an action given by name or index."""
        return _lookup(action, self.action_names, "action")

    def __repr__(self) -> str:
        return (
            f"MarkovDecisionProcess(states={self.num_states}, actions={self.num_actions}, "
            f"terminal={int(self.terminal.sum())}, gamma={self.gamma})"
        )

    # -- γ = 1 ------------------------------------------------------------------------------------

    def _stopping_states(self) -> np.ndarray:
        """States where every policy stops: no action, or every action stays put with reward 0."""
        S = self.num_states
        stays = self.P[np.arange(S), :, np.arange(S)] == 1.0
        return ((stays & (self.R == 0)) | ~self.action_mask).all(axis=1)

    def attractor(self, every_policy: bool) -> tuple[np.ndarray, np.ndarray]:
        """States from which some (or, with ``every_policy``, every) policy reaches a stopping state.

        Returns the mask and, for each state in it, an action that moves with positive probability
        closer to the stopping states (−1 elsewhere); following those actions is a policy that stops
        with probability 1 from every state in the mask.
        """
        inside = self._stopping_states()
        witness = np.full(self.num_states, -1, np.int64)
        while True:
            enters = (self.P @ inside.astype(np.float64) > 0) & self.action_mask
            grows = (enters | ~self.action_mask).all(axis=1) if every_policy else enters.any(axis=1)
            new = grows & ~inside
            if not new.any():
                return inside, witness
            witness[new] = np.argmax(enters[new], axis=1)
            inside = inside | new

    def _check_terminal_structure(self) -> None:
        reaches, _ = self.attractor(every_policy=False)
        if not reaches.all():
            state = self.state_names[int(np.argmin(reaches))]
            raise ConfigError(
                f"gamma=1 needs terminal structure, but from state {state} no policy ever reaches a terminal "
                "state (one with no actions, or whose actions all stay put with reward 0); "
                "use gamma < 1 or add a terminal state"
            )
        stops_always, _ = self.attractor(every_policy=True)
        trap = ~stops_always
        keeps = self.action_mask & trap[:, None] & (self.P @ (~trap).astype(np.float64) == 0)
        paying = keeps & (self.R > 0)
        if paying.any():
            s, a = np.argwhere(paying)[0]
            raise ConfigError(
                f"gamma=1 needs that no policy can collect positive reward while avoiding the terminal states "
                f"forever, but action ({self.state_names[s]}, {self.action_names[a]}) pays {self.R[s, a]:g} and "
                "lets a policy stay away from them; use gamma < 1"
            )

    # -- policies ---------------------------------------------------------------------------------

    def check_policy(self, policy: np.ndarray) -> np.ndarray:
        """Validate a stochastic policy π[..., s, a] (a batch is allowed) and return it as float64.

        Each non-terminal state's row must be a distribution over the actions it offers; terminal
        rows must be zero.
        """
        pi = np.asarray(policy, dtype=np.float64)
        S, A = self.num_states, self.num_actions
        if pi.shape[-2:] != (S, A):
            raise ConfigError(f"policy has shape {pi.shape}; expected (..., {S}, {A}) = (states, actions)")
        off = np.argwhere((pi != 0) & ~self.action_mask)
        if off.size:
            *_, s, a = off[0]
            raise ConfigError(
                f"policy gives probability {pi[tuple(off[0])]:g} to action {self.action_names[a]} in state "
                f"{self.state_names[s]}, which does not offer it"
            )
        live = ~self.terminal
        rows = pi[..., live, :]
        labels = [f"{self.state_names[s]}" for s in np.flatnonzero(live)]
        batch = int(np.prod(pi.shape[:-2]))
        _check_distribution_rows(rows, labels * batch, "the policy")
        return pi

    def policy_from_dict(self, probabilities: Mapping[str, float], sep: str = "-") -> np.ndarray:
        """Policy matrix from the book's form ``{"s1-保持s1": 0.5, ...}``; missing pairs are 0."""
        pi = np.zeros((self.num_states, self.num_actions))
        for key, p in probabilities.items():
            s, a = _split(key, sep, 2, "policy")
            pi[self.index(s), self.action_index(a)] = p
        return self.check_policy(pi)

    def deterministic_policy(self, actions: Sequence[int] | np.ndarray) -> np.ndarray:
        """One-hot policy matrix (or a batch) from action indices per state; −1 for terminal states."""
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape[-1] != self.num_states:
            raise ConfigError(f"{actions.shape[-1]} actions given for {self.num_states} states; give one per state")
        pi = (actions[..., None] == np.arange(self.num_actions)).astype(np.float64)
        return self.check_policy(pi)

    def uniform_policy(self) -> np.ndarray:
        """Policy choosing uniformly among the actions each state offers."""
        available = self.action_mask
        counts = available.sum(axis=1, keepdims=True)
        return np.divide(available, counts, out=np.zeros(available.shape), where=counts > 0)

    def induced(self, policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P_π[..., s, s'] and R_π[..., s] of the Markov reward process a policy (or batch) induces.

        Terminal states become absorbing with reward 0.
        """
        pi = self.check_policy(policy)
        P_pi = np.einsum("...sa,sat->...st", pi, self.P)
        R_pi = np.einsum("...sa,sa->...s", pi, self.R)
        terminal = np.flatnonzero(self.terminal)
        P_pi[..., terminal, terminal] = 1.0
        return P_pi, R_pi

    def to_mrp(self, policy: np.ndarray) -> MarkovRewardProcess:
        """The Markov reward process that following ``policy`` (one S×A matrix) turns this MDP into."""
        pi = np.asarray(policy)
        if pi.ndim != 2:
            raise ConfigError(f"to_mrp takes one policy of shape (S, A), got {pi.shape}; use induced() for a batch")
        P_pi, R_pi = self.induced(pi)
        return MarkovRewardProcess(P_pi, R_pi, self.gamma, self.state_names)

    # -- constructors -----------------------------------------------------------------------------

    @classmethod
    def from_dicts(
        cls,
        states: Sequence[str],
        actions: Sequence[str],
        transitions: Mapping[str, float],
        rewards: Mapping[str, float],
        gamma: float,
        sep: str = "-",
    ) -> MarkovDecisionProcess:
        """Build from the book's dictionaries: ``{"s1-前往s2-s2": 1.0}`` and ``{"s1-前往s2": 0}``.

        An action is available in a state when some transition key names the pair; a pair with
        transitions but no reward key has reward 0 (as the book's ``R.get(..., 0)``).
        """
        states, actions = tuple(states), tuple(actions)
        S, A = len(states), len(actions)
        P = np.zeros((S, A, S))
        R = np.zeros((S, A))
        available = np.zeros((S, A), bool)
        for key, p in transitions.items():
            s, a, t = _split(key, sep, 3, "transition")
            i, j = _lookup(s, states, "state"), _lookup(a, actions, "action")
            P[i, j, _lookup(t, states, "state")] += p
            available[i, j] = True
        for key, r in rewards.items():
            s, a = _split(key, sep, 2, "reward")
            i, j = _lookup(s, states, "state"), _lookup(a, actions, "action")
            if not available[i, j]:
                raise ConfigError(
                    f"reward key {key!r} names a state-action pair with no transition; add its transitions"
                )
            R[i, j] = r
        return cls(P, R, gamma, states, actions, available)

    @classmethod
    def from_gymnasium(cls, env: Any, gamma: float = 1.0, terminal_name: str = "terminal") -> MarkovDecisionProcess:
        """Read the model of a gymnasium toy-text environment (FrozenLake, Taxi, CliffWalking).

        Those environments expose ``env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated),
        ...]``. A transition marked ``terminated`` leads to one extra absorbing state, appended last
        and named ``terminal_name``, so the model stops exactly where the environment does (in Taxi
        and CliffWalking the table's "next state" of a terminating move is an ordinary state).
        The returned MDP has ``observation_space.n + 1`` states; actions keep the env's indices.
        """
        unwrapped = getattr(env, "unwrapped", env)
        model = getattr(unwrapped, "P", None)
        n_states = getattr(getattr(env, "observation_space", None), "n", None)
        n_actions = getattr(getattr(env, "action_space", None), "n", None)
        if not isinstance(model, Mapping) or n_states is None or n_actions is None:
            raise ConfigError(
                f"{env!r} does not expose a tabular model; from_gymnasium needs Discrete observation and action "
                "spaces and env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...] "
                "(FrozenLake, Taxi, CliffWalking)"
            )
        S, A = int(n_states), int(n_actions)
        P = np.zeros((S + 1, A, S + 1))
        R = np.zeros((S + 1, A))
        for s in range(S):
            for a in range(A):
                for prob, next_state, reward, terminated in model[s][a]:
                    target = S if terminated else int(next_state)
                    P[s, a, target] += prob
                    R[s, a] += prob * float(reward)
        available = np.ones((S + 1, A), bool)
        available[S] = False
        names = [str(s) for s in range(S)] + [terminal_name]
        return cls(P, R, gamma, tuple(names), (), available)


def _split(key: str, sep: str, parts: int, what: str) -> list[str]:
    pieces = key.split(sep)
    if len(pieces) != parts:
        form = sep.join(["state", "action", "next_state"][:parts])
        raise ConfigError(f"{what} key {key!r} does not split into {parts} names by {sep!r}; expected {form!r}")
    return pieces
