"""Every gymnasium observation space: the encoder, the space checks, and each agent on integer observations."""

import gymnasium as gym
import keras
import numpy as np
import pytest

import tfrl
from tfrl.agents.a3c import A3CConfig, A3CNetworks
from tfrl.agents.ddpg import DDPGAgent, DDPGConfig
from tfrl.agents.dqn import DQNAgent, DQNConfig
from tfrl.envs import describe_space, make_env, make_vector_env, observation_encoding
from tfrl.errors import EnvError
from tfrl.mdp import MarkovDecisionProcess, horizon_values, value_iteration
from tfrl.nets import ObservationEncoder, QNetwork
from tfrl.training import evaluate


class ChainEnv(gym.Env):
    """Five cells in a row, starting in the middle; a positive action moves right, the right end pays 1.

    Its observation is the cell index (``Discrete``), its action a Box: what DDPG needs to be tested on.
    """

    observation_space = gym.spaces.Discrete(5)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cell = 2
        return self.cell, {}

    def step(self, action):
        self.cell = int(np.clip(self.cell + (1 if action[0] > 0 else -1), 0, 4))
        return self.cell, float(self.cell == 4), self.cell in (0, 4), False, {}


class DictEnv(gym.Env):
    """A Dict observation (a position index and a velocity) around ``ChainEnv``'s dynamics, Discrete actions."""

    observation_space = gym.spaces.Dict(
        {"cell": gym.spaces.Discrete(5), "velocity": gym.spaces.Box(-1.0, 1.0, (1,), np.float32)}
    )
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cell = 2
        return self._observation(0.0), {}

    def step(self, action):
        move = 1 if action == 1 else -1
        self.cell = int(np.clip(self.cell + move, 0, 4))
        return self._observation(move), float(self.cell == 4), self.cell in (0, 4), False, {}

    def _observation(self, velocity):
        return {"cell": self.cell, "velocity": np.array([velocity], np.float32)}


class TextEnv(gym.Env):
    """Observations a network cannot take (text), alone or inside a Dict."""

    action_space = gym.spaces.Discrete(2)

    def __init__(self, inside_dict: bool = False):
        text = gym.spaces.Text(8)
        self.observation_space = gym.spaces.Dict({"text": text}) if inside_dict else text

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


# Training and evaluation make envs from an id, so the test envs are registered. Non-slippery FrozenLake
# is deterministic: one evaluation episode tells whether the greedy policy reaches the goal (threshold 1).
NOT_SLIPPERY = "tfrl-test/FrozenLake-NotSlippery-v1"
for env_id, entry_point, kwargs, threshold in (
    (NOT_SLIPPERY, "gymnasium.envs.toy_text.frozen_lake:FrozenLakeEnv", {"is_slippery": False}, 1.0),
    ("tfrl-test/Chain-v0", ChainEnv, {}, None),
    ("tfrl-test/DictChain-v0", DictEnv, {}, None),
    ("tfrl-test/Text-v0", TextEnv, {}, None),
    ("tfrl-test/DictText-v0", TextEnv, {"inside_dict": True}, None),
):
    if env_id not in gym.envs.registry:
        gym.register(env_id, entry_point, reward_threshold=threshold, max_episode_steps=100, kwargs=kwargs)


# ------------------------------------------------------------------------------------------------
# The encoder and the space descriptions
# ------------------------------------------------------------------------------------------------


def test_box_observations_are_cast_with_their_shape_kept_for_the_torso():
    observations = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    features = ObservationEncoder(None)(observations)
    assert features.dtype == "float32" and tuple(features.shape) == (2, 3, 4)
    np.testing.assert_array_equal(features.numpy(), observations)


def test_uint8_frames_are_scaled_inside_the_network():
    space = gym.spaces.Box(0, 255, (10, 10, 4), np.uint8)
    frames = np.full((1, 10, 10, 4), 255, np.uint8)
    np.testing.assert_allclose(ObservationEncoder(observation_encoding(space))(frames).numpy(), 1.0)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float32])
def test_discrete_observations_become_one_hots_of_x_minus_start(dtype):
    space = gym.spaces.Discrete(5, start=-2)
    encoder = ObservationEncoder(observation_encoding(space))
    observations = np.array([-2, 2, 0, 1], dtype)
    features = encoder(observations).numpy()
    assert features.dtype == np.float32 and features.shape == (4, 5)
    np.testing.assert_array_equal(features, np.eye(5, dtype=np.float32)[[0, 4, 2, 3]])


def test_multi_discrete_observations_concatenate_one_one_hot_per_component():
    space = gym.spaces.MultiDiscrete([3, 2], start=[1, 0])
    encoder = ObservationEncoder(observation_encoding(space))
    features = encoder(np.array([[1, 1], [3, 0]], np.float32)).numpy()
    np.testing.assert_array_equal(features, [[1, 0, 0, 0, 1], [0, 0, 1, 1, 0]])
    grid = gym.spaces.MultiDiscrete([[2, 3], [2, 2]])  # a 2-D nvec is encoded row-major
    features = ObservationEncoder(observation_encoding(grid))(np.array([[[1, 2], [0, 1]]])).numpy()
    np.testing.assert_array_equal(features, [[0, 1, 0, 0, 1, 1, 0, 0, 1]])


def test_multi_binary_observations_are_floats():
    space = gym.spaces.MultiBinary([2, 2])
    observations = np.array([[[1, 0], [0, 1]], [[1, 1], [0, 0]]], np.int8)
    features = ObservationEncoder(observation_encoding(space))(observations).numpy()
    assert features.dtype == np.float32
    np.testing.assert_array_equal(features, observations)


def test_encoder_refuses_a_space_it_cannot_encode():
    with pytest.raises(ValueError, match="Text"):
        ObservationEncoder({"type": "Text"})


def test_space_descriptions_keep_type_and_shape_for_every_kind():
    assert describe_space(gym.spaces.Discrete(16)) == {"type": "Discrete", "shape": [], "n": 16, "start": 0}
    multi = describe_space(gym.spaces.MultiDiscrete([3, 4], start=[0, 1]))
    assert multi["type"] == "MultiDiscrete" and multi["shape"] == [2] and multi["nvec"] == [3, 4]
    assert multi["start"] == [0, 1]
    assert describe_space(gym.spaces.MultiBinary(3)) == {"type": "MultiBinary", "shape": [3], "n": 3}
    assert describe_space(gym.spaces.Box(0.0, 1.0, (2, 3)))["shape"] == [2, 3]
    assert observation_encoding(gym.spaces.Box(0.0, 1.0, (2,))) is None


def test_q_network_with_a_discrete_encoder_survives_a_keras_round_trip(tmp_path):
    encoding = observation_encoding(gym.spaces.Discrete(16))
    network = QNetwork(4, (8,), observation_space=encoding)
    observations = np.arange(16, dtype=np.float32)
    expected = network(observations).numpy()
    network.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    assert isinstance(loaded, QNetwork) and dict(loaded.observation_space) == encoding
    np.testing.assert_allclose(loaded(observations).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(loaded(observations.astype(np.int64)).numpy(), expected, rtol=1e-6)


def test_a_config_without_observation_space_still_loads_as_a_box_network():
    """Networks saved before encoders existed have no ``observation_space`` in their config."""
    network = QNetwork(2, (8,))
    observations = np.random.default_rng(0).normal(size=(3, 2, 2)).astype(np.float32)
    network(observations)
    config = network.get_config()
    del config["observation_space"]
    rebuilt = QNetwork.from_config(config)
    rebuilt(observations)
    rebuilt.set_weights(network.get_weights())
    np.testing.assert_allclose(rebuilt(observations).numpy(), network(observations).numpy())


# ------------------------------------------------------------------------------------------------
# Which spaces the envs and agents take
# ------------------------------------------------------------------------------------------------


def test_dict_observations_are_flattened_by_make_env_and_the_vector_env():
    env = make_env("tfrl-test/DictChain-v0")
    assert isinstance(env.observation_space, gym.spaces.Box) and env.observation_space.shape == (6,)
    observation, _ = env.reset(seed=0)
    np.testing.assert_array_equal(observation, [0, 0, 1, 0, 0, 0])  # one-hot cell 2, then velocity 0
    envs = make_vector_env("tfrl-test/DictChain-v0", 3)
    observations, _ = envs.reset(seed=0)
    assert observations.shape == (3, 6)
    envs.close()


def test_a_dict_observation_env_trains(tmp_path):
    result = tfrl.train(
        "dqn",
        "tfrl-test/DictChain-v0",
        overrides={"hidden_sizes": (16,), "learning_starts": 32, "train_freq": 32, "gradient_steps": 1},
        total_steps=64,
        num_envs=2,
        eval_every=64,
        eval_episodes=2,
        logdir=tmp_path,
        export_dir=None,
        progress=False,
    )
    assert result.agent.observation_shape == (6,)
    assert int(result.agent.gradient_step_count.numpy()) > 0


@pytest.mark.parametrize("env_id", ["tfrl-test/Text-v0", "tfrl-test/DictText-v0"])
def test_an_unsupported_observation_space_gives_one_clear_error(env_id):
    env = make_env(env_id)
    with pytest.raises(EnvError, match="Text") as error:
        DQNAgent(DQNConfig(), env.observation_space, env.action_space, env_id)
    message = str(error.value)
    assert env_id in message and "Box, Discrete, MultiDiscrete and MultiBinary" in message
    assert "FlattenObservation" in message


# ------------------------------------------------------------------------------------------------
# Every agent on integer observations
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "overrides", "learned"),
    [
        (
            "dqn",
            {"hidden_sizes": (16,), "learning_starts": 64, "train_freq": 64, "gradient_steps": 2},
            "gradient_steps",
        ),
        ("reinforce", {"hidden_sizes": (16,), "episodes_per_update": 2}, "updates"),
        ("actor-critic", {"hidden_sizes": (16,), "n_steps": 4}, "updates"),
    ],
)
def test_agents_learn_and_act_on_frozenlake_integer_observations(tmp_path, algorithm, overrides, learned):
    result = tfrl.train(
        algorithm,
        "FrozenLake-v1",
        overrides=overrides,
        total_steps=256,
        num_envs=4,
        eval_every=256,
        eval_episodes=2,
        logdir=tmp_path,
        export_dir=None,
        progress=False,
    )
    agent = result.agent
    assert agent.observation_shape == ()
    counter = agent.gradient_step_count if learned == "gradient_steps" else agent.updates
    assert int(counter.numpy()) > 0
    actions = agent.act(np.arange(16), explore=False)
    assert actions.shape == (16,) and set(actions.tolist()) <= {0, 1, 2, 3}


def test_ddpg_learns_and_acts_on_integer_observations():
    env = make_env("tfrl-test/Chain-v0")
    config = DDPGConfig(hidden_sizes=(16,), batch_size=8, learning_starts=8, train_freq=8, gradient_steps=2)
    agent = DDPGAgent(config, env.observation_space, env.action_space, "tfrl-test/Chain-v0", seed=0)
    critic_before = [weight.copy() for weight in agent.critics.online[0].get_weights()]
    observations = np.array([2, 2], np.int64)
    metrics = None
    for _ in range(8):
        actions = agent.act(observations, explore=True)
        next_observations = np.clip(observations + np.where(actions[:, 0] > 0, 1, -1), 0, 4)
        terminated = np.isin(next_observations, (0, 4))
        metrics = agent.observe(
            observations,
            actions,
            (next_observations == 4).astype(np.float32),
            next_observations,
            terminated,
            terminated,
        )
        observations = np.where(terminated, 2, next_observations)
    assert metrics is not None and np.isfinite(metrics["critic_loss"])
    assert any(not np.allclose(a, b) for a, b in zip(critic_before, agent.critics.online[0].get_weights(), strict=True))
    actions = agent.act(np.arange(5), explore=False)
    assert actions.shape == (5, 1) and np.all(np.abs(actions) <= 1.0)


@pytest.mark.parametrize("recurrent", [False, True])
def test_a3c_networks_act_on_integer_observations(recurrent):
    env = make_env("FrozenLake-v1")
    config = A3CConfig(recurrent=recurrent, hidden_sizes=(8,), critic_hidden_sizes=(8,), rnn_units=8)
    nets = A3CNetworks(config, env.observation_space, env.action_space)
    actions, states = nets.mode(np.arange(16, dtype=np.float32), nets.initial_state(16))
    assert actions.shape == (16,) and set(actions.numpy().tolist()) <= {0, 1, 2, 3}
    assert states.shape == (16, nets.state_size)


# ------------------------------------------------------------------------------------------------
# Learning
# ------------------------------------------------------------------------------------------------


def test_dqn_defaults_solve_non_slippery_frozenlake(tmp_path):
    result = tfrl.train(
        "dqn",
        NOT_SLIPPERY,
        total_steps=8_000,
        eval_every=1_000,
        eval_episodes=1,
        logdir=tmp_path,
        export_dir=None,
        progress=False,
    )
    returns = evaluate(lambda batch: result.agent.act(batch, explore=False), NOT_SLIPPERY, episodes=10)
    assert returns.mean() == 1.0


def _value_iteration_success() -> float:
    """The optimal success rate on slippery FrozenLake-v1 within its 100-step limit, exactly (γ = 1)."""
    env = gym.make("FrozenLake-v1")
    mdp = MarkovDecisionProcess.from_gymnasium(env, gamma=1.0)
    policy = mdp.deterministic_policy(value_iteration(mdp, tol=1e-12).policy)
    return float(horizon_values(mdp.to_mrp(policy), env.spec.max_episode_steps)[0])


@pytest.mark.slow
def test_dqn_reaches_the_optimal_success_rate_on_slippery_frozenlake(tmp_path):
    optimum = _value_iteration_success()
    assert 0.72 < optimum < 0.76
    result = tfrl.train(
        "dqn",
        "FrozenLake-v1",
        preset="frozenlake",
        total_steps=100_000,
        eval_every=100_000,
        stop_at_threshold=False,
        logdir=tmp_path,
        export_dir=None,
        progress=False,
    )
    returns = evaluate(lambda batch: result.agent.act(batch, explore=False), "FrozenLake-v1", episodes=1_000, seed=7)
    assert returns.mean() >= optimum - 0.05
