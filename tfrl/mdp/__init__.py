"""Tabular Markov reward and decision processes (Hands-on RL chapter 3), on numpy and TensorFlow.

The models (``MarkovRewardProcess``, ``MarkovDecisionProcess``) are validated dense float64 arrays;
the solvers give exact values by linear solves and optimal policies by value or policy iteration;
the samplers give Monte Carlo values and occupancy measures, including a bit-for-bit port of the
book's sampler. ``tfrl.mdp.examples`` holds the chapter's MRP and MDP. Nothing here imports
gymnasium: ``MarkovDecisionProcess.from_gymnasium`` only reads the model an environment exposes.
"""

from tfrl.mdp.policy import TabularPolicy, export_tabular_policy, run_episodes, wilson_interval
from tfrl.mdp.processes import MarkovDecisionProcess, MarkovRewardProcess, recurrent_states
from tfrl.mdp.sampling import (
    Episodes,
    Estimate,
    alive_conditioned_occupancy,
    book_occupancy,
    book_sample,
    monte_carlo_evaluation,
    occupancy_measure,
    sample_episodes,
    sampled_occupancy,
)
from tfrl.mdp.solvers import (
    Solution,
    chain_return,
    evaluate_policy,
    greedy_actions,
    horizon_values,
    iterative_evaluation,
    policy_iteration,
    q_from_v,
    solve_mrp,
    value_iteration,
)

__all__ = [
    "Episodes",
    "Estimate",
    "MarkovDecisionProcess",
    "MarkovRewardProcess",
    "Solution",
    "TabularPolicy",
    "alive_conditioned_occupancy",
    "book_occupancy",
    "book_sample",
    "chain_return",
    "evaluate_policy",
    "export_tabular_policy",
    "greedy_actions",
    "horizon_values",
    "iterative_evaluation",
    "monte_carlo_evaluation",
    "occupancy_measure",
    "policy_iteration",
    "q_from_v",
    "recurrent_states",
    "run_episodes",
    "sample_episodes",
    "sampled_occupancy",
    "solve_mrp",
    "value_iteration",
    "wilson_interval",
]
