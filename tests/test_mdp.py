"""Tests of tfrl.mdp against Hands-on RL chapter 3's printed numbers, brute force and FrozenLake.

Deterministic book numbers are checked to 1e-6; the book's sampled numbers exactly (same RNG
stream); Monte Carlo and occupancy estimates from a Generator within five standard errors that the
test computes from its own sample.
"""

import itertools
import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from tfrl.errors import ConfigError
from tfrl.mdp import (
    MarkovDecisionProcess,
    MarkovRewardProcess,
    alive_conditioned_occupancy,
    book_occupancy,
    book_sample,
    chain_return,
    evaluate_policy,
    examples,
    export_tabular_policy,
    horizon_values,
    iterative_evaluation,
    monte_carlo_evaluation,
    occupancy_measure,
    policy_iteration,
    q_from_v,
    recurrent_states,
    run_episodes,
    sample_episodes,
    sampled_occupancy,
    solve_mrp,
    value_iteration,
    wilson_interval,
)

V_PI_1 = [-1.22555411, -1.67666232, 0.51890482, 6.0756193, 0.0]


@pytest.fixture(scope="module")
def mdp():
    return examples.book_mdp()


@pytest.fixture(scope="module")
def policies(mdp):
    return examples.book_policies(mdp)


# -- the book's deterministic numbers --------------------------------------------------------------


def test_chain_return_is_minus_2_5():
    assert chain_return(examples.book_mrp(), examples.CHAIN) == pytest.approx(-2.5, abs=1e-6)


def test_mrp_values_match_the_book():
    expected = [-2.01950168, -2.21451846, 1.16142785, 10.53809283, 3.58728554, 0.0]
    np.testing.assert_allclose(solve_mrp(examples.book_mrp()), expected, atol=1e-6)


def test_mdp_under_pi_1_is_the_books_hand_written_mrp(mdp, policies):
    P_pi, R_pi = mdp.induced(policies[0])
    np.testing.assert_allclose(P_pi, examples.PI_1_MRP[0], atol=1e-12)
    np.testing.assert_allclose(R_pi, examples.PI_1_MRP[1], atol=1e-12)


def test_policy_values_match_the_book_and_batch_equals_single(mdp, policies):
    V_pi_2 = [-1.45585051, -2.09547678, -0.50599771, 1.97600915, 0.0]
    batch = evaluate_policy(mdp, np.stack(policies))
    np.testing.assert_allclose(batch, [V_PI_1, V_pi_2], atol=1e-6)
    np.testing.assert_allclose(evaluate_policy(mdp, policies[1]), batch[1], atol=1e-12)


def test_iterative_evaluation_and_q_from_v_agree_with_the_solve(mdp, policies):
    V, sweeps = iterative_evaluation(mdp.to_mrp(policies[0]), tol=1e-12)
    np.testing.assert_allclose(V, V_PI_1, atol=1e-6)
    assert 1 < sweeps < 100
    Q = q_from_v(mdp, V)
    np.testing.assert_allclose(np.nansum(policies[0] * np.nan_to_num(Q), axis=1), V, atol=1e-10)
    assert np.isnan(Q[mdp.index("s5")]).all() and np.isnan(Q[0, mdp.action_index("前往s5")])


def test_book_mdp_optimum(mdp):
    vi, pi = value_iteration(mdp), policy_iteration(mdp)
    np.testing.assert_allclose(vi.values, [-0.25, -0.5, 3.0, 10.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(pi.values, vi.values, atol=1e-9)
    names = [mdp.action_names[a] for a in vi.policy[:4]]
    assert names == ["前往s2", "前往s3", "前往s4", "前往s5"] and vi.policy[4] == -1
    assert vi.converged and vi.residual < 1e-10 and list(pi.policy) == list(vi.policy)


# -- the book's sampled numbers, same RNG stream ------------------------------------------------------


def test_book_sampler_reproduces_the_printed_episodes_mc_and_occupancy(mdp, policies):
    rng = np.random.RandomState(0)
    first = book_sample(mdp, policies[0], 20, 5, rng)
    assert first.transitions(0) == [
        ("s1", "前往s2", 0.0, "s2"),
        ("s2", "前往s3", -2.0, "s3"),
        ("s3", "前往s5", 0.0, "s5"),
    ]
    assert first.transitions(1) == [("s4", "概率前往", 1.0, "s4"), ("s4", "前往s5", 10.0, "s5")]
    assert first.transitions(4) == [
        ("s2", "前往s3", -2.0, "s3"),
        ("s3", "前往s4", -2.0, "s4"),
        ("s4", "前往s5", 10.0, "s5"),
    ]
    mc = monte_carlo_evaluation(book_sample(mdp, policies[0], 20, 1000, rng), mdp)
    printed = [-1.228923788722258, -1.6955696284402704, 0.4823809701532294, 5.967514743019431, 0]
    np.testing.assert_allclose(mc.values, printed, rtol=0, atol=1e-12)
    s, a = mdp.index("s4"), mdp.action_index("概率前往")
    rho_1 = book_occupancy(book_sample(mdp, policies[0], 1000, 1000, rng), mdp.gamma)[s, a]
    rho_2 = book_occupancy(book_sample(mdp, policies[1], 1000, 1000, rng), mdp.gamma)[s, a]
    assert rho_1 == pytest.approx(0.112567796310472, abs=1e-12)
    assert rho_2 == pytest.approx(0.23199480615618912, abs=1e-12)


def test_book_estimator_limit_differs_from_the_textbook_occupancy(mdp, policies):
    s, a = mdp.index("s4"), mdp.action_index("概率前往")
    book = [alive_conditioned_occupancy(mdp, pi, 1001)[s, a] for pi in policies]
    exact = [occupancy_measure(mdp, pi)[s, a] for pi in policies]
    np.testing.assert_allclose(book, [0.11557, 0.23574], atol=1e-5)
    np.testing.assert_allclose(exact, [0.09615, 0.20064], atol=1e-5)


# -- Generator sampling: Monte Carlo and occupancy within tolerances from the sample ----------------


@pytest.fixture(scope="module")
def episodes(mdp, policies):
    return sample_episodes(mdp, policies[0], 20_000, np.random.default_rng(7), max_steps=60)


@pytest.mark.parametrize("first_visit", [False, True])
def test_monte_carlo_within_five_standard_errors(mdp, episodes, first_visit):
    mc = monte_carlo_evaluation(episodes, mdp, first_visit=first_visit)
    live = ~mdp.terminal
    assert (mc.standard_errors[live] > 0).all() and (mc.standard_errors[live] < 0.05).all()
    assert (np.abs(mc.values - V_PI_1) <= 5 * mc.standard_errors + 1e-9).all()
    if first_visit:
        assert (mc.counts <= len(episodes)).all()


def test_sampled_occupancy_matches_exact_and_book_estimator_does_not(mdp, policies, episodes):
    sampled = sampled_occupancy(episodes, mdp.gamma)
    exact = occupancy_measure(mdp, policies[0])
    assert exact.sum() == pytest.approx(1 - occupancy_like_terminal_mass(mdp, policies[0]), abs=1e-12)
    assert (np.abs(sampled.values - exact) <= 5 * sampled.standard_errors + 1e-12).all()
    s, a = mdp.index("s4"), mdp.action_index("概率前往")
    book = book_occupancy(episodes, mdp.gamma)[s, a]
    limit = alive_conditioned_occupancy(mdp, policies[0], 60)[s, a]
    error = sampled.standard_errors[s, a]
    assert abs(book - limit) < 5 * error
    assert abs(book - exact[s, a]) > 5 * error


def occupancy_like_terminal_mass(mdp, pi):
    """Discounted mass (1 − γ) Σ_t γ^t P(S_t terminal), from the exact state distribution."""
    P_pi, _ = mdp.induced(pi)
    d = np.where(mdp.terminal, 0.0, 1.0) / (~mdp.terminal).sum()
    mass, weight = 0.0, 1 - mdp.gamma
    for _ in range(200):
        mass += weight * d[mdp.terminal].sum()
        d, weight = d @ P_pi, weight * mdp.gamma
    return mass


def test_sampler_is_seeded_and_respects_max_steps(mdp, policies):
    a = sample_episodes(mdp, policies[1], 50, 3, max_steps=4)
    b = sample_episodes(mdp, policies[1], 50, np.random.default_rng(3), max_steps=4)
    assert np.array_equal(a.states, b.states) and np.array_equal(a.rewards, b.rewards)
    assert a.lengths.max() <= 4 and a.states.shape == (50, a.lengths.max())
    ended = a.lengths < 4
    last = a.next_states[np.arange(50), a.lengths - 1]
    assert mdp.terminal[last[ended]].all()
    from_s1 = sample_episodes(mdp, policies[1], 20, 0, start="s1")
    assert (from_s1.states[:, 0] == mdp.index("s1")).all()


# -- value iteration, policy iteration, brute force -------------------------------------------------


def random_mdp(seed, S=4, A=3, gamma=0.9, terminal=False):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(S, 0.5), size=(S, A))
    R = rng.normal(size=(S, A))
    available = rng.random((S, A)) < 0.7
    available[np.arange(S), rng.integers(A, size=S)] = True
    if terminal:
        available[-1] = False
    P = np.where(available[..., None], P, 0.0)
    R = np.where(available, R, 0.0)
    return MarkovDecisionProcess(P, R, gamma, available=available)


@pytest.mark.parametrize(("seed", "terminal"), [(0, False), (1, True), (2, False), (3, True), (4, False)])
def test_value_and_policy_iteration_match_brute_force(seed, terminal):
    mdp = random_mdp(seed, terminal=terminal)
    choices = [np.flatnonzero(row) if row.any() else [-1] for row in mdp.available]
    every = np.array(list(itertools.product(*choices)))
    values = evaluate_policy(mdp, mdp.deterministic_policy(every))
    best = values.max(axis=0)
    vi, pi = value_iteration(mdp, tol=1e-12), policy_iteration(mdp)
    plain = value_iteration(mdp, tol=1e-12, extrapolate=False)
    for solution in (vi, pi, plain):
        assert solution.converged
        np.testing.assert_allclose(solution.values, best, atol=1e-9)
        np.testing.assert_allclose(evaluate_policy(mdp, mdp.deterministic_policy(solution.policy)), best, atol=1e-9)


def test_value_iteration_scales_to_hundreds_of_states():
    rng = np.random.default_rng(5)
    S, A = 300, 4
    P = rng.random((S, A, S))
    mdp = MarkovDecisionProcess(P / P.sum(axis=2, keepdims=True), rng.random((S, A)), 0.95)
    vi = value_iteration(mdp, tol=1e-9)
    assert vi.converged and vi.residual < 1e-8 and vi.sweeps < 30
    greedy = evaluate_policy(mdp, mdp.deterministic_policy(vi.policy))
    np.testing.assert_allclose(vi.values, greedy, atol=1e-7)


# -- γ = 1 and the gymnasium models ----------------------------------------------------------------


def test_gamma_one_mrp_uses_absorbing_and_zero_reward_loops():
    V = solve_mrp(examples.book_mrp(gamma=1.0))
    P, R = np.array(examples.MRP_P), np.array(examples.MRP_REWARDS)
    np.testing.assert_allclose(V, R + P @ V, atol=1e-10)
    looping = MarkovRewardProcess([[0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 0]], [1, 2, 0, 0], 1.0)
    assert list(recurrent_states(looping.P)) == [False, False, True, True]
    np.testing.assert_allclose(solve_mrp(looping), [4, 2, 0, 0], atol=1e-12)


@pytest.fixture(scope="module")
def frozen_lake():
    env = gym.make("FrozenLake-v1", is_slippery=True)
    mdp = MarkovDecisionProcess.from_gymnasium(env, gamma=1.0)
    return env, mdp, value_iteration(mdp, tol=1e-12)


def test_frozen_lake_is_solved_exactly(frozen_lake):
    _env, mdp, vi = frozen_lake
    assert mdp.num_states == 17 and mdp.terminal[-1] and mdp.state_names[-1] == "terminal"
    assert vi.converged and vi.values[0] == pytest.approx(14 / 17, abs=1e-9)
    pi = policy_iteration(mdp)
    np.testing.assert_allclose(pi.values, vi.values, atol=1e-9)
    assert list(pi.policy) == list(vi.policy)


def test_frozen_lake_exported_policy_succeeds_as_predicted(frozen_lake, tmp_path):
    env, mdp, vi = frozen_lake
    limit = env.spec.max_episode_steps
    predicted = horizon_values(mdp.to_mrp(mdp.deterministic_policy(vi.policy)), limit)[0]
    assert 0.7 < predicted < vi.values[0]
    path = export_tabular_policy(
        vi.policy[:16],
        tmp_path / "policy",
        {"algorithm": "value-iteration", "predicted_success": predicted},
        q_values=vi.q_values[:16],
    )
    loaded = tf.saved_model.load(str(path))
    states = tf.range(16, dtype=tf.float32)
    assert loaded.action(states).dtype == tf.int64
    assert list(loaded.action(states).numpy()) == list(vi.policy[:16])
    assert list(loaded.signatures["serving_default"](observation=states)["action"].numpy()) == list(vi.policy[:16])
    np.testing.assert_allclose(loaded.q_values(states).numpy(), vi.q_values[:16], rtol=1e-6)
    metadata = json.loads((path / "assets" / "tfrl.json").read_text())
    assert metadata["algorithm"] == "value-iteration"
    episodes = 1000
    returns = run_episodes(
        lambda: gym.make("FrozenLake-v1", is_slippery=True), lambda o: loaded.action(o).numpy(), episodes, seed=0
    )
    rate = returns.mean()
    sigma = np.sqrt(predicted * (1 - predicted) / episodes)
    assert abs(rate - predicted) < 4.5 * sigma
    low, high = wilson_interval(int(returns.sum()), episodes, z=4.5)
    assert low < predicted < high


def test_taxi_and_cliff_walking_models():
    cliff = MarkovDecisionProcess.from_gymnasium(gym.make("CliffWalking-v1"), gamma=1.0)
    assert value_iteration(cliff).values[36] == pytest.approx(-13.0)
    taxi = MarkovDecisionProcess.from_gymnasium(gym.make("Taxi-v4"), gamma=1.0)
    vi, pi = value_iteration(taxi), policy_iteration(taxi)
    assert vi.converged and np.allclose(vi.values, pi.values, atol=1e-9)
    assert np.isfinite(vi.values).all() and vi.values[:-1].max() == pytest.approx(20.0)


def test_importing_the_layer_does_not_import_gymnasium():
    code = "import sys, tfrl.mdp; print('gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- validation errors ------------------------------------------------------------------------------


def loop_or_stop(loop_reward, gamma=1.0):
    """Two states: s0 either loops on itself (a0, paying loop_reward) or stops (a1); s1 is terminal."""
    P = np.zeros((2, 2, 2))
    P[0, 0, 0] = P[0, 1, 1] = 1.0
    R = np.array([[loop_reward, 0.0], [0.0, 0.0]])
    return MarkovDecisionProcess(P, R, gamma, available=[[True, True], [False, False]])


def mdp_arrays():
    P = np.zeros((2, 2, 2))
    P[:, :, 1] = 1.0
    return P, np.zeros((2, 2))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MarkovRewardProcess([[0.5, 0.4], [0, 1]], [0, 0], 0.5), r"row s0 of P sums to 0.9, expected 1"),
        (lambda: MarkovRewardProcess([[1.2, -0.2], [0, 1]], [0, 0], 0.5), r"negative probability -0.2"),
        (lambda: MarkovRewardProcess([[1, 0, 0], [0, 1, 0]], [0, 0], 0.5), r"square matrix"),
        (lambda: MarkovRewardProcess([[1, 0], [0, 1]], [0, 0, 0], 0.5), r"R has 3 entries but P has 2 states"),
        (lambda: MarkovRewardProcess([[1, 0], [0, 1]], [0, 0], 1.5), r"gamma=1.5 is outside \[0, 1\]"),
        (lambda: MarkovRewardProcess([[1, 0], [0, 1]], [0, 0], -0.1), r"gamma=-0.1 is outside"),
        (lambda: MarkovRewardProcess([[0, 1], [1, 0]], [1, 1], 1.0), r"gamma=1 gives an infinite return: state s0"),
        (lambda: MarkovRewardProcess([[1, 0], [0, 1]], [np.nan, 0], 0.5), r"finite"),
        (lambda: MarkovRewardProcess([[1, 0], [0, 1]], [0, 0], 0.5, ["a", "a"]), r"distinct"),
        (lambda: MarkovDecisionProcess(np.ones((2, 2, 3)) / 3, np.zeros((2, 2)), 0.5), r"shape \(S, A, S\)"),
        (lambda: MarkovDecisionProcess(mdp_arrays()[0], np.zeros((2, 3)), 0.5), r"R has shape \(2, 3\)"),
        (
            lambda: MarkovDecisionProcess(mdp_arrays()[0] * 0.5, mdp_arrays()[1], 0.5),
            r"row \(s0, a0\) of P sums to 0.5, expected 1 .*available",
        ),
        (lambda: MarkovDecisionProcess(*mdp_arrays(), 0.5, available=np.ones((3, 2))), r"available has shape"),
        (
            lambda: MarkovDecisionProcess(*mdp_arrays(), 0.5, available=[[True, False], [True, True]]),
            r"action \(s0, a1\) is not available but has nonzero",
        ),
        (
            lambda: MarkovDecisionProcess(np.eye(2)[[[1, 1], [0, 0]]], np.zeros((2, 2)), 1.0),
            r"gamma=1 needs terminal structure, but from state s0",
        ),
        (lambda: loop_or_stop(1.0), r"no policy can collect positive reward .* action \(s0, a0\) pays 1"),
        (lambda: examples.book_mdp(gamma=1.0), r"action \(s4, 概率前往\) pays 1"),
    ],
)
def test_model_validation_errors(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_dict_policy_and_export_errors(mdp, policies, tmp_path):
    with pytest.raises(ConfigError, match=r"does not split into 3 names"):
        MarkovDecisionProcess.from_dicts(["s1"], ["a"], {"s1-a": 1.0}, {}, 0.5)
    with pytest.raises(ConfigError, match=r"unknown state 's9'"):
        MarkovDecisionProcess.from_dicts(["s1"], ["a"], {"s1-a-s9": 1.0}, {}, 0.5)
    with pytest.raises(ConfigError, match=r"reward key 's1-b' names a state-action pair with no transition"):
        MarkovDecisionProcess.from_dicts(["s1"], ["a", "b"], {"s1-a-s1": 1.0}, {"s1-b": 1}, 0.5)
    with pytest.raises(ConfigError, match=r"action 前往s5 in state s1, which does not offer it"):
        mdp.policy_from_dict({**examples.PI_1, "s1-前往s5": 0.1})
    with pytest.raises(ConfigError, match=r"row s4 of the policy sums to 0.6"):
        mdp.policy_from_dict({**examples.PI_2, "s4-概率前往": 0.5})
    with pytest.raises(ConfigError, match=r"expected \(\.\.\., 5, 7\)"):
        evaluate_policy(mdp, np.ones((5, 3)))
    with pytest.raises(ConfigError, match=r"needs gamma < 1"):
        occupancy_measure(loop_or_stop(0.0), np.array([[0.5, 0.5], [0, 0]]))
    with pytest.raises(ConfigError, match=r"does not expose a tabular model"):
        MarkovDecisionProcess.from_gymnasium(gym.make("CartPole-v1"))
    with pytest.raises(ConfigError, match=r"drop terminal states"):
        export_tabular_policy(np.array([0, -1]), tmp_path / "bad", {})
    negative_loop = loop_or_stop(-1.0)
    assert policy_iteration(negative_loop).values[0] == 0.0
    with pytest.raises(ConfigError, match=r"gamma=1 gives an infinite return: state s0"):
        evaluate_policy(negative_loop, negative_loop.deterministic_policy([0, -1]))
