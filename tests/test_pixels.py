"""Learning from pixels (issue 12): image envs, frames stored once, conv exports, ALE preprocessing."""

import subprocess
import sys
import textwrap
import warnings

import gymnasium as gym
import numpy as np
import pytest

import tfrl
from tfrl.agents import make_config
from tfrl.agents.dqn import DQNAgent
from tfrl.envs import final_observations, make_env, make_vector_env
from tfrl.errors import ConfigError, EnvError
from tfrl.replay import FrameStore


class PixelSide(gym.Env):
    """One bright pixel in a 10×10 uint8 frame; the reward is 1 for the action naming its half
    (0 left, 1 right). Each episode is one step, so only a network that looks at the picture beats
    the 0.5 of guessing."""

    observation_space = gym.spaces.Box(0, 255, (10, 10, 1), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.column = int(self.np_random.integers(0, 10))
        frame = np.zeros((10, 10, 1), np.uint8)
        frame[self.np_random.integers(0, 10), self.column] = 255
        return frame, {}

    def step(self, action):
        reward = float(int(action) == int(self.column >= 5))
        return np.zeros((10, 10, 1), np.uint8), reward, True, False, {}


class NoisyFrames(gym.Env):
    """Random 6×6 uint8 frames; episodes end at random (terminated) or at the 6-step limit (truncated)."""

    observation_space = gym.spaces.Box(0, 255, (6, 6, 1), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.integers(0, 256, (6, 6, 1), np.uint8), {}

    def step(self, action):
        frame = self.np_random.integers(0, 256, (6, 6, 1), np.uint8)
        return frame, 0.0, bool(self.np_random.random() < 0.2), False, {}


gym.register("tfrl-test/PixelSide-v0", PixelSide, reward_threshold=0.95)
gym.register("tfrl-test/NoisyFrames-v0", NoisyFrames, max_episode_steps=6)


def _stream(envs, steps, seed=0):
    """``steps`` random vector-env steps: (observations, real next observations, terminated, truncated)."""
    rng = np.random.default_rng(seed)
    observations, _ = envs.reset(seed=seed)
    for _ in range(steps):
        actions = rng.integers(0, 2, envs.num_envs)
        next_observations, _, terminated, truncated, info = envs.step(actions)
        real = final_observations(next_observations, terminated | truncated, info)
        yield observations, actions, real, terminated, truncated
        observations = next_observations


def test_conv_q_network_learns_a_task_only_the_picture_solves(tmp_path):
    result = tfrl.train(
        "dqn",
        "tfrl-test/PixelSide-v0",
        overrides={
            "learning_starts": 200,
            "train_freq": 64,
            "gradient_steps": 16,
            "exploration_steps": 1_500,
            "learning_rate": 1e-3,
            "buffer_size": 5_000,
        },
        total_steps=4_000,
        eval_every=500,
        eval_episodes=50,
        logdir=tmp_path,
        export=False,
        progress=False,
    )
    assert result.agent.q_network.torso_kind == "minatar"
    assert result.best_return >= 0.95, result


def test_frame_store_rebuilds_the_env_stacks_across_episode_ends_and_the_ring_wrap():
    envs = make_vector_env("tfrl-test/NoisyFrames-v0", 3, frame_stack=4)
    assert envs.single_observation_space.shape == (6, 6, 4)
    store = FrameStore(16, (6, 6, 4), np.uint8, stack=4)
    seen, ends = [], 0
    for observations, _, real, terminated, truncated in _stream(envs, 200):
        ids, next_ids = store.add(observations, real)
        seen.append((ids, next_ids, observations.copy(), real.copy()))
        ends += int(np.sum(terminated | truncated))
    assert store.count > 3 * store.capacity  # the ring wrapped several times
    assert ends > 50  # many episodes ended on the way, terminated and truncated
    checked = 0
    for ids, next_ids, observations, real in seen:
        for row in np.flatnonzero(store.valid(ids) & store.valid(next_ids)):
            np.testing.assert_array_equal(store.stacks(ids[row]), observations[row])
            np.testing.assert_array_equal(store.stacks(next_ids[row]), real[row])
            checked += 1
    recent = np.concatenate([np.concatenate([ids, next_ids]) for ids, next_ids, _, _ in seen[-6:]])
    assert store.valid(recent).all() and checked >= 16  # the 16 transitions it was sized for are all there
    assert not store.valid(seen[0][0]).any()  # the first frames were overwritten, and known to be


@pytest.mark.parametrize("options", [{}, {"prioritized": True, "n_step": 3}])
def test_dqn_replay_holds_frames_once_and_returns_the_stacks_it_was_given(options):
    overrides = {"frame_stack": 4, "buffer_size": 64, "learning_starts": 50, "batch_size": 8, "train_freq": 8}
    config = make_config("dqn", overrides={**overrides, "gradient_steps": 1, **options})
    envs = make_vector_env("tfrl-test/NoisyFrames-v0", 2, frame_stack=config.frame_stack)
    agent = DQNAgent(config, envs.single_observation_space, envs.single_action_space, "tfrl-test/NoisyFrames-v0")
    assert agent.replay.observations.dtype == np.int64 and agent.replay.observations.shape == (64, 4)
    fed, losses = [], []
    for observations, actions, real, terminated, truncated in _stream(envs, 150):
        metrics = agent.observe(observations, actions, np.zeros(2), real, terminated, truncated)
        fed.extend(zip(observations, real, strict=True))
        losses += [] if metrics is None else [metrics["loss"]]
    assert losses and np.isfinite(losses).all()
    rows = agent.replay.observations[: len(agent.replay)]
    assert agent.frames.valid(rows).all()
    stacks = {observation.tobytes() for observation, _ in fed}
    assert all(agent.frames.stacks(row).tobytes() in stacks for row in rows)
    if not options:  # one-step transitions sit in the ring in the order they were fed
        order = (agent.replay.position + np.arange(64)) % 64
        for (observation, real), row in zip(fed[-64:], order, strict=True):
            np.testing.assert_array_equal(agent.frames.stacks(agent.replay.observations[row]), observation)
            np.testing.assert_array_equal(agent.frames.stacks(agent.replay.next_observations[row]), real)

    restored = DQNAgent(config, envs.single_observation_space, envs.single_action_space, "tfrl-test/NoisyFrames-v0")
    restored.load_numpy_state(agent.numpy_state())
    np.testing.assert_array_equal(restored.frames.stacks(rows), agent.frames.stacks(rows))


def test_a_replay_memory_larger_than_the_machine_is_refused():
    space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    config = make_config("dqn", "atari", {"buffer_size": 10**9})
    with pytest.raises(ConfigError, match=r"GiB .* available; lower buffer_size"):
        DQNAgent(config, space, gym.spaces.Discrete(6), "ALE/Pong-v5")


def test_a_missing_extra_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(tfrl.envs._EXTRAS, "Fake/", ("fake", ("tfrl_no_such_module",)))
    with pytest.raises(EnvError, match=r'needs the fake extra .*pip install -e "\.\[fake\]"'):
        make_env("Fake/Game-v0")


@pytest.fixture(scope="module")
def pixel_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixels")
    result = tfrl.train(
        "dqn",
        "tfrl-test/PixelSide-v0",
        overrides={"learning_starts": 100, "train_freq": 64, "gradient_steps": 8},
        total_steps=600,
        eval_every=300,
        eval_episodes=5,
        logdir=root / "runs",
        export_dir=root / "saved_models",
        progress=False,
    )
    frames = np.stack([PixelSide().reset(seed=seed)[0] for seed in range(32)])
    with result.best.applied():
        actions = result.agent.act(frames, explore=False)
    return result, frames, actions


def test_uint8_export_round_trip_without_tfrl(pixel_export, tmp_path):
    result, frames, actions = pixel_export
    policy = tfrl.load_policy(result.export_path)
    assert policy.metadata["observation_dtype"] == "uint8"
    assert policy.metadata["preprocessing"]["frame_stack"] == 1
    np.save(tmp_path / "frames.npy", frames)
    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        policy = tf.saved_model.load({str(result.export_path)!r})
        frames = np.load({str(tmp_path / "frames.npy")!r})
        assert policy.signatures["serving_default"].structured_input_signature[1]["observation"].dtype == tf.uint8
        np.save({str(tmp_path / "actions.npy")!r}, policy.action(tf.constant(frames)).numpy())
        assert not any(name.startswith("tfrl") for name in sys.modules), "tfrl was imported"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    np.testing.assert_array_equal(np.load(tmp_path / "actions.npy"), actions)
    np.testing.assert_array_equal(policy(frames), actions)


def test_tflite_conversion_of_a_convolutional_export_gives_the_same_actions(pixel_export):
    import tensorflow as tf

    result, frames, actions = pixel_export
    converter = tf.lite.TFLiteConverter.from_saved_model(str(result.export_path), signature_keys=["action"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter announces its move to the ai-edge-litert package
        runner = tf.lite.Interpreter(model_content=converter.convert()).get_signature_runner("action")
    converted = [int(runner(observation=frame[None])["action"][0]) for frame in frames]
    np.testing.assert_array_equal(converted, actions)


def test_ale_preprocessing_on_a_real_game():
    """SpaceInvaders scores 5 to 30 points an alien and has 3 lives: a few hundred random steps show
    both the clipping and the life-loss terminals of training, and neither in evaluation."""
    pytest.importorskip("ale_py")
    training = make_env("ALE/SpaceInvaders-v5", training=True)
    evaluation = make_env("ALE/SpaceInvaders-v5")
    for env in (training, evaluation):
        assert env.observation_space == gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    rng = np.random.default_rng(0)
    clipped, raw, training_ends, evaluation_ends = set(), set(), 0, 0
    observation, _ = training.reset(seed=0)
    assert observation.shape == (84, 84, 4) and observation.dtype == np.uint8
    np.testing.assert_array_equal(observation[..., 0], observation[..., 3])  # padded with the first frame
    evaluation.reset(seed=0)
    lives = evaluation.unwrapped.ale.lives()
    for _ in range(600):
        observation, reward, terminated, truncated, _ = training.step(rng.integers(0, 6))
        clipped.add(reward)
        training_ends += terminated
        if terminated or truncated:
            training.reset()
        _, reward, terminated, truncated, _ = evaluation.step(rng.integers(0, 6))
        raw.add(reward)
        evaluation_ends += terminated or truncated
        if terminated or truncated:
            evaluation.reset()
    assert observation.shape == (84, 84, 4) and observation.dtype == np.uint8
    assert clipped <= {0.0, 1.0} and 1.0 in clipped
    assert max(raw) > 1  # the raw game score
    assert training_ends > evaluation_ends or evaluation.unwrapped.ale.lives() < lives
    assert training_ends >= 1  # a life lost ends a training episode
