"""Observation normalisation (``normalize_observations``) and reward scaling (``normalize_rewards``).

The statistics are NumPy's over the same batches; every network of an agent shares them (targets are
never averaged toward them); the export and the ``.keras`` files carry them and take raw observations
where tfrl is not installed; checkpoints restore them and the scaler's state exactly; the same seed
gives the same run with both switched on.
"""

import keras
import numpy as np
import pytest
from test_own_networks import keras_outputs_without_tfrl

import tfrl
from tfrl.agents import ALGORITHMS, make_config
from tfrl.agents.stochastic import RewardScaler
from tfrl.errors import ConfigError
from tfrl.nets import GaussianActor, ObservationNormalizer, soft_update
from tfrl.training import RunSettings, build_agent, restore_run

# a few hundred env steps for each family, with small networks
FAMILY_RUNS = {
    "dqn": ("CartPole-v1", {"learning_starts": 64, "train_freq": 64, "gradient_steps": 2, "batch_size": 32}),
    "ppo": ("Pendulum-v1", {"n_steps": 32, "epochs": 2, "hidden_sizes": (16,)}),
    "sac": ("Pendulum-v1", {"learning_starts": 64, "batch_size": 32, "train_freq": 32, "gradient_steps": 4}),
    "reinforce": ("CartPole-v1", {"episodes_per_update": 2, "hidden_sizes": (16,)}),
}


def _train(tmp_path, algorithm, env, overrides, name="run", **settings):
    settings = dict(total_steps=400, num_envs=2, eval_every=400, eval_episodes=1) | settings
    return tfrl.train(
        algorithm,
        env,
        seed=0,
        overrides={"normalize_observations": True, **overrides},
        logdir=tmp_path / name,
        export_dir=tmp_path / f"{name}-exports",
        export_final=True,
        progress=False,
        **settings,
    )


def _statistics(normalizer):
    return [normalizer.mean.numpy(), normalizer.variance.numpy(), normalizer.count.numpy()]


def test_statistics_are_numpys_over_the_batches_and_the_output_is_standardised_and_clipped():
    rng = np.random.default_rng(0)
    batches = [(rng.normal(3.0, 5.0, (size, 3)) * [1, 10, 0.1]).astype(np.float32) for size in (7, 1, 30, 12)]
    normalizer = ObservationNormalizer(clip=2.0)
    normalizer.build((None, 3))
    np.testing.assert_allclose(normalizer(batches[0]), np.clip(batches[0], -2, 2), rtol=1e-6)  # before any update
    for batch in batches:
        normalizer.update(batch)
    seen = np.concatenate(batches).astype(np.float64)
    np.testing.assert_allclose(normalizer.mean.numpy(), seen.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(normalizer.variance.numpy(), seen.var(axis=0), rtol=1e-5)
    assert normalizer.count.numpy() == len(seen)
    expected = np.clip((seen - seen.mean(axis=0)) / np.sqrt(seen.var(axis=0) + 1e-8), -2.0, 2.0)
    outputs = normalizer(seen.astype(np.float32)).numpy()
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    assert (np.abs(outputs) == 2.0).any() and (np.abs(outputs) < 2.0).any()  # some clipped, some not


def test_a_network_and_its_plain_model_and_config_copy_normalise_alike():
    normalizer = ObservationNormalizer(clip=3.0, name="normalizer")
    actor = GaussianActor([-2.0], [2.0], (8,), normalizer=normalizer)
    observations = np.random.default_rng(1).normal(0.0, 4.0, (16, 3)).astype(np.float32)
    actor(observations)
    normalizer.update(observations * 2.0 + 1.0)
    expected = [np.asarray(output) for output in actor(observations)]
    for output, theirs in zip(expected, actor.plain()(observations), strict=True):
        np.testing.assert_array_equal(output, np.asarray(theirs))
    copy = GaussianActor.from_config(actor.get_config())
    copy(observations)
    copy.set_weights(actor.get_weights())
    assert copy.normalizer is not normalizer and copy.normalizer.clip == 3.0
    for output, theirs in zip(expected, copy(observations), strict=True):
        np.testing.assert_array_equal(output, np.asarray(theirs))


@pytest.mark.parametrize("algorithm", list(FAMILY_RUNS))
def test_a_normalised_export_acts_as_the_agent_on_raw_observations_without_tfrl(
    tmp_path, outputs_without_tfrl, algorithm
):
    env, overrides = FAMILY_RUNS[algorithm]
    result = _train(tmp_path, algorithm, env, overrides)
    agent = result.agent
    mean, variance, count = _statistics(agent.normalizer)
    assert count > 0 and not np.allclose(mean, 0.0) and not np.allclose(variance, 1.0)
    scale = np.asarray(agent.observation_space.high, np.float32)
    observations = np.random.default_rng(2).uniform(-1.0, 1.0, (32, *scale.shape)).astype(np.float32)
    observations *= np.minimum(scale, 3.0)
    saved = outputs_without_tfrl(result.export_path, observations, ("action",))
    np.testing.assert_allclose(saved["action"], agent.act(observations, explore=False), atol=1e-5)
    network_name = "q_network" if algorithm == "dqn" else "actor"
    network = agent.networks()[network_name]
    (outputs, *_), *_ = keras_outputs_without_tfrl(
        tmp_path, [result.export_path / f"{network_name}.keras"], [observations]
    )
    first = keras.tree.flatten(network(observations))[0]  # Q-values, logits or the Gaussian's mean
    np.testing.assert_allclose(outputs, np.asarray(first), atol=1e-5)


@pytest.mark.parametrize("algorithm", ["dqn", "td3"])
def test_targets_hold_the_online_statistics_exactly_after_updates(algorithm):
    env = "CartPole-v1" if algorithm == "dqn" else "Pendulum-v1"
    quick = {"learning_starts": 16, "batch_size": 8, "train_freq": 8, "gradient_steps": 3, "tau": 0.3}
    if algorithm == "dqn":
        quick["target_update_interval"] = 1
    config = make_config(algorithm, overrides={"normalize_observations": True, **quick})
    agent = build_agent(RunSettings(algorithm, env, seed=0), config)
    pairs = (
        [(agent.target_network, agent.q_network)]
        if algorithm == "dqn"
        else [(agent.actor_target, agent.actor), *zip(agent.critics.targets, agent.critics.online, strict=True)]
    )
    rng = np.random.default_rng(3)
    shape = agent.observation_shape
    for _ in range(20):
        actions = agent.act(rng.normal(size=(2, *shape)), explore=True)
        agent.observe(
            rng.normal(5.0, 3.0, (2, *shape)),
            actions,
            rng.normal(size=2),
            rng.normal(size=(2, *shape)),
            np.zeros(2),
            np.zeros(2, bool),
        )
    mean, variance, count = _statistics(agent.normalizer)
    assert count == 40 and np.all(mean > 3.0)
    for target, online in pairs:
        assert target.normalizer is online.normalizer is agent.normalizer
        soft_update(target, online, 0.005)  # statistics both hold are left as they are, not rounded by averaging
        for statistic, kept in zip(_statistics(target.normalizer), (mean, variance, count), strict=True):
            np.testing.assert_array_equal(statistic, kept)
        trainable = [
            np.array_equal(t, o) for t, o in zip(target.trainable_weights, online.trainable_weights, strict=True)
        ]
        assert not all(trainable)  # the trainable weights do follow softly


def test_the_same_seed_gives_the_same_normalised_run_and_a_checkpoint_restores_it_exactly(tmp_path):
    overrides = {"n_steps": 16, "epochs": 2, "normalize_rewards": True}
    first = _train(
        tmp_path, "ppo", "CartPole-v1", overrides, name="a", total_steps=640, eval_every=320, checkpoint_every=320
    )
    second = _train(
        tmp_path, "ppo", "CartPole-v1", overrides, name="b", total_steps=640, eval_every=320, checkpoint_every=320
    )
    for mine, theirs in zip(first.agent.actor.get_weights(), second.agent.actor.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert first.agent.reward_scaler.state() == second.agent.reward_scaler.state()
    assert first.agent.normalizer.count.numpy() == 640  # 20 full rollouts of 16 steps × 2 envs

    _, restored, best = restore_run(first.run_dir)
    for mine, theirs in zip(_statistics(restored.normalizer), _statistics(first.agent.normalizer), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert restored.reward_scaler.state() == first.agent.reward_scaler.state()
    assert restored.normalizer is restored.critic.normalizer
    # the best policy's weights hold the statistics it was evaluated with
    assert best.weights is not None and best.step in (320, 640)
    assert any(np.ndim(weight) == 0 and weight == best.step for weight in best.weights["actor"])

    resumed = tfrl.train(resume=first.run_dir, total_steps=960, export=False, progress=False)
    assert resumed.agent.normalizer.count.numpy() == 960  # went on from the restored count
    assert resumed.agent.reward_scaler.count > first.agent.reward_scaler.count


def test_reward_scaling_divides_by_numpys_std_of_the_discounted_returns():
    rng = np.random.default_rng(4)
    gamma, steps = 0.9, 50
    rewards = rng.normal(2.0, 3.0, (steps, 3))
    done = rng.random((steps, 3)) < 0.1
    scaler = RewardScaler(gamma)
    returns, seen = np.zeros(3), []
    for step in range(steps):
        returns = returns * gamma + rewards[step]
        seen.extend(returns)
        expected = np.clip(rewards[step] / np.sqrt(np.var(seen) + 1e-8), -10, 10)
        np.testing.assert_allclose(scaler.scale(rewards[step], done[step]), expected, rtol=1e-6)
        returns[done[step]] = 0.0
    np.testing.assert_allclose(scaler.variance, np.var(seen), rtol=1e-10)
    copy = RewardScaler(gamma)
    copy.load_state(scaler.state())
    assert copy.state() == scaler.state() and copy.count == 3 * steps


def test_every_config_has_the_switches_off_and_a3c_and_unscaled_spaces_refuse_them(tmp_path):
    for name in ALGORITHMS:
        config = make_config(name)
        assert config.normalize_observations is False and config.observation_clip == 10.0
        if name.startswith("a3c"):
            with pytest.raises(ConfigError, match=r"normalize_observations.*A3C"):
                make_config(name, overrides={"normalize_observations": True})
        else:
            assert make_config(name, overrides={"normalize_observations": "true"}).normalize_observations
    with pytest.raises(ConfigError, match="observation_clip"):
        make_config("ppo", overrides={"observation_clip": 0})
    for name in ("ppo", "actor-critic", "reinforce"):
        assert make_config(name, overrides={"normalize_rewards": True}).normalize_rewards
    saved = {key: value for key, value in make_config("ppo").to_dict().items() if not key.startswith("normalize")}
    assert not tfrl.get_agent("ppo")[1].from_saved(saved).normalize_observations
    with pytest.raises(ConfigError, match=r"FrozenLake-v1 has Discrete\(16\)"):
        _train(tmp_path, "dqn", "FrozenLake-v1", {})
