"""The examples of Hands-on RL chapter 3 (马尔可夫决策过程), with the book's exact data.

``book_mrp()`` is the six-state Markov reward process (s6 absorbing), ``book_mdp()`` the five-state
MDP whose s5 offers no action (terminal), and ``PI_1`` / ``PI_2`` the two policies in the book's
dictionary form. ``PI_1_MRP`` is the book's hand-written MRP for the MDP under Pi_1, which
``MarkovDecisionProcess.induced`` reproduces. All use γ = 0.5 as the book does.
"""

from __future__ import annotations

import numpy as np

from tfrl.mdp.processes import MarkovDecisionProcess, MarkovRewardProcess

GAMMA = 0.5

MRP_P = (
    (0.9, 0.1, 0.0, 0.0, 0.0, 0.0),
    (0.5, 0.0, 0.5, 0.0, 0.0, 0.0),
    (0.0, 0.0, 0.0, 0.6, 0.0, 0.4),
    (0.0, 0.0, 0.0, 0.0, 0.3, 0.7),
    (0.0, 0.2, 0.3, 0.5, 0.0, 0.0),
    (0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
)
MRP_REWARDS = (-1.0, -2.0, -2.0, 10.0, 1.0, 0.0)
MRP_STATES = ("s1", "s2", "s3", "s4", "s5", "s6")
CHAIN = ("s1", "s2", "s3", "s6")
"""The chain whose return the book computes (its 1-based ``[1, 2, 3, 6]``)."""

STATES = ("s1", "s2", "s3", "s4", "s5")
ACTIONS = ("保持s1", "前往s1", "前往s2", "前往s3", "前往s4", "前往s5", "概率前往")
TRANSITIONS = {
    "s1-保持s1-s1": 1.0,
    "s1-前往s2-s2": 1.0,
    "s2-前往s1-s1": 1.0,
    "s2-前往s3-s3": 1.0,
    "s3-前往s4-s4": 1.0,
    "s3-前往s5-s5": 1.0,
    "s4-前往s5-s5": 1.0,
    "s4-概率前往-s2": 0.2,
    "s4-概率前往-s3": 0.4,
    "s4-概率前往-s4": 0.4,
}
REWARDS = {
    "s1-保持s1": -1,
    "s1-前往s2": 0,
    "s2-前往s1": -1,
    "s2-前往s3": -2,
    "s3-前往s4": -2,
    "s3-前往s5": 0,
    "s4-前往s5": 10,
    "s4-概率前往": 1,
}
PI_1 = {
    "s1-保持s1": 0.5,
    "s1-前往s2": 0.5,
    "s2-前往s1": 0.5,
    "s2-前往s3": 0.5,
    "s3-前往s4": 0.5,
    "s3-前往s5": 0.5,
    "s4-前往s5": 0.5,
    "s4-概率前往": 0.5,
}
PI_2 = {
    "s1-保持s1": 0.6,
    "s1-前往s2": 0.4,
    "s2-前往s1": 0.3,
    "s2-前往s3": 0.7,
    "s3-前往s4": 0.5,
    "s3-前往s5": 0.5,
    "s4-前往s5": 0.1,
    "s4-概率前往": 0.9,
}
PI_1_MRP = (
    (
        (0.5, 0.5, 0.0, 0.0, 0.0),
        (0.5, 0.0, 0.5, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.5, 0.5),
        (0.0, 0.1, 0.2, 0.2, 0.5),
        (0.0, 0.0, 0.0, 0.0, 1.0),
    ),
    (-0.5, -1.5, -1.0, 5.5, 0.0),
)
"""The book's hand-written (P', R') of the MDP under Pi_1."""


def book_mrp(gamma: float = GAMMA) -> MarkovRewardProcess:
    """The chapter's six-state Markov reward process."""
    return MarkovRewardProcess(np.array(MRP_P), np.array(MRP_REWARDS), gamma, MRP_STATES)


def book_mdp(gamma: float = GAMMA) -> MarkovDecisionProcess:
    """The chapter's five-state MDP, built from its dictionaries (s5 is terminal)."""
    return MarkovDecisionProcess.from_dicts(STATES, ACTIONS, TRANSITIONS, REWARDS, gamma)


def book_policies(mdp: MarkovDecisionProcess) -> tuple[np.ndarray, np.ndarray]:
    """Pi_1 and Pi_2 as (S, A) policy matrices of ``mdp``."""
    return mdp.policy_from_dict(PI_1), mdp.policy_from_dict(PI_2)
