"""Print Hands-on RL chapter 3's results in the book's order, computed with tfrl.mdp.

The return of the chain s1→s2→s3→s6, the MRP's values, the MDP's values under Pi_1 and Pi_2, the
sampled episodes, the Monte Carlo estimate beside the exact values, the occupancy measures (the
book's estimator, its exact limit, and the textbook definition) and the optimal values and policy.
The sampled numbers use ``RandomState(0)`` in the book's call order, so they equal the book's.

Run: ``python scripts/mdp_chapter3.py``
"""

import tfrl.quiet  # noqa: F401 — first: silences TensorFlow's start-up lines

# isort: split


import numpy as np

from tfrl.mdp import (
    alive_conditioned_occupancy,
    book_occupancy,
    book_sample,
    chain_return,
    evaluate_policy,
    examples,
    monte_carlo_evaluation,
    occupancy_measure,
    policy_iteration,
    solve_mrp,
    value_iteration,
)


def table(names, **columns) -> str:
    """Rows of named states with one float column per keyword."""
    header = "  state " + "".join(f"{name:>14}" for name in columns)
    rows = [
        f"  {state:<6}" + "".join(f"{values[i]:>14.8f}" for values in columns.values()) for i, state in enumerate(names)
    ]
    return "\n".join([header, *rows])


def main() -> None:
    np.set_printoptions(precision=8, suppress=True)
    mrp = examples.book_mrp()
    G = chain_return(mrp, examples.CHAIN)
    print(f"1. Return of the chain {'→'.join(examples.CHAIN)} (γ = {mrp.gamma}): {G}")
    print("\n2. MRP state values, V = (I − γP)⁻¹R:")
    print(table(mrp.state_names, V=solve_mrp(mrp)))

    mdp = examples.book_mdp()
    pi_1, pi_2 = examples.book_policies(mdp)
    V_1, V_2 = evaluate_policy(mdp, np.stack([pi_1, pi_2]))
    print("\n3. MDP state values under Pi_1 and Pi_2 (MDP → MRP, then the analytic solution):")
    print(table(mdp.state_names, Pi_1=V_1, Pi_2=V_2))

    rng = np.random.RandomState(0)
    first = book_sample(mdp, pi_1, 20, 5, rng)
    print("\n4. Sampled episodes under Pi_1 (RandomState(0), the book's sampler):")
    for i, label in ((0, "first"), (1, "second"), (4, "fifth")):
        print(f"  {label:<7}{first.transitions(i)}")

    mc = monte_carlo_evaluation(book_sample(mdp, pi_1, 20, 1000, rng), mdp)
    print("\n5. Every-visit Monte Carlo from 1000 episodes beside the exact V under Pi_1:")
    print(table(mdp.state_names, MonteCarlo=mc.values, std_error=mc.standard_errors, exact=V_1))

    s, a = mdp.index("s4"), mdp.action_index("概率前往")
    sampled = [book_occupancy(book_sample(mdp, pi, 1000, 1000, rng), mdp.gamma)[s, a] for pi in (pi_1, pi_2)]
    limit = [alive_conditioned_occupancy(mdp, pi, 1001)[s, a] for pi in (pi_1, pi_2)]
    exact = [occupancy_measure(mdp, pi)[s, a] for pi in (pi_1, pi_2)]
    print("\n6. Occupancy of (s4, 概率前往):")
    print(f"  {'':<44}{'Pi_1':>12}{'Pi_2':>12}")
    print(f"  {'book estimator, 1000 episodes (printed)':<44}{sampled[0]:>12.8f}{sampled[1]:>12.8f}")
    print(f"  {'book estimator, exact limit':<44}{limit[0]:>12.8f}{limit[1]:>12.8f}")
    print(f"  {'textbook ρ(s,a) = (1−γ)Σγᵗ P(Sₜ=s, Aₜ=a)':<44}{exact[0]:>12.8f}{exact[1]:>12.8f}")
    print("  The book divides by the episodes still running at step t, so it estimates the occupancy")
    print("  conditioned on survival; the textbook measure keeps ended episodes in the absorbing s5.")

    vi, pi = value_iteration(mdp), policy_iteration(mdp)
    print(f"\n7. Optimal values (value iteration: {vi.sweeps} sweeps; policy iteration: {pi.sweeps} evaluations):")
    print(table(mdp.state_names, value_iter=vi.values, policy_iter=pi.values))
    greedy = ", ".join(f"{mdp.state_names[i]}: {mdp.action_names[a]}" for i, a in enumerate(vi.policy) if a >= 0)
    print(f"  greedy policy: {greedy} (s5 is terminal)")


if __name__ == "__main__":
    main()
