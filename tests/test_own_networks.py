"""Users' own networks (issue 26, part 2): a torso of their own — a function that builds a Keras layer,
a layer class, a layer instance to copy — for every algorithm, actor and critic sizes of their own
(``net_arch``), and exports whose SavedModel needs neither tfrl nor the user's code and whose ``.keras``
files load, and fine-tune, in plain Keras without tfrl."""

import inspect
import json
import subprocess
import sys
import textwrap

import gymnasium as gym
import keras
import numpy as np
import pytest

import tfrl
from tfrl import nets
from tfrl.agents import get_agent, make_config
from tfrl.errors import ConfigError

CARTPOLE = (gym.spaces.Box(-5.0, 5.0, (4,)), gym.spaces.Discrete(2))
PENDULUM = (gym.spaces.Box(-8.0, 8.0, (3,)), gym.spaces.Box(-2.0, 2.0, (1,)))


def small_torso() -> keras.layers.Layer:
    """A user's torso builder: a new small Sequential on every call."""
    return keras.Sequential(
        [keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(8, activation="relu")], name="small_torso"
    )


class GatedTorso(keras.layers.Layer):
    """A user's own layer class, passed as the builder: a Dense layer gated by another's sigmoid."""

    def __init__(self, units: int = 12, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.values = keras.layers.Dense(units, activation="tanh")
        self.gate = keras.layers.Dense(units, activation="sigmoid")

    def call(self, features):
        return self.values(features) * self.gate(features)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Uncopyable(keras.layers.Layer):
    """A layer whose get_config leaves out an argument its constructor needs."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(width)

    def call(self, features):
        return self.dense(features)

    def get_config(self):
        return super().get_config()


def _short_run(tmp_path, algorithm, env, **kwargs):
    settings = dict(total_steps=400, num_envs=2, eval_every=400, eval_episodes=2, checkpoint_every=200)
    return tfrl.train(
        algorithm,
        env,
        seed=0,
        logdir=tmp_path / "runs",
        export_dir=tmp_path / "exports",
        progress=False,
        **settings | kwargs,
    )


DQN_QUICK = {"learning_starts": 64, "train_freq": 64, "gradient_steps": 2, "batch_size": 32}
SAC_QUICK = {"learning_starts": 64, "batch_size": 32}


def keras_outputs_without_tfrl(tmp_path, files, inputs, source=""):
    """Each ``.keras`` file's outputs on ``inputs`` from a fresh Python in which ``import tfrl`` fails,
    after one ``fit`` step on it (which must change its weights). ``source`` is user code the script
    runs first (a layer class), handed to ``load_model`` as ``custom_objects``."""
    np.savez(tmp_path / "keras_inputs.npz", *inputs)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["tfrl"] = None  # import tfrl raises ImportError from here on
        import keras, numpy as np
        custom_objects = {{"keras": keras}}
        exec({source!r}, custom_objects)
        custom_objects = {{name: value for name, value in custom_objects.items() if isinstance(value, type)}}
        saved = np.load({str(tmp_path / "keras_inputs.npz")!r})
        inputs = [saved[f"arr_{{index}}"] for index in range(len(saved.files))]
        inputs = inputs[0] if len(inputs) == 1 else inputs
        for index, path in enumerate({[str(file) for file in files]!r}):
            model = keras.models.load_model(path, custom_objects=custom_objects)
            outputs = [np.asarray(output) for output in keras.tree.flatten(model(inputs))]
            np.savez(f"{tmp_path}/keras_{{index}}.npz", *outputs)
            before = [np.copy(weight) for weight in model.get_weights()]
            model.compile(optimizer="adam", loss="mse")
            targets = [output + 1.0 for output in outputs]
            model.fit(inputs, targets if len(targets) > 1 else targets[0], epochs=1, verbose=0)
            assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights())), "fit changed nothing"
        assert not any(name.startswith("tfrl") and sys.modules[name] is not None for name in sys.modules)
    """)
    completed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = [np.load(tmp_path / f"keras_{index}.npz") for index in range(len(files))]
    return [[result[f"arr_{position}"] for position in range(len(result.files))] for result in results]


# ------------------------------------------------------------------------------------------------
# Training, exporting and resuming with a user's torso
# ------------------------------------------------------------------------------------------------


def test_dqn_with_a_builder_torso_exports_files_that_need_no_tfrl(tmp_path, outputs_without_tfrl):
    result = _short_run(tmp_path, "dqn", "CartPole-v1", torso=small_torso, overrides=DQN_QUICK)
    network = result.agent.q_network
    assert network.torso.name == "small_torso" and network.torso is not result.agent.target_network.torso
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["config"]["torso"] == f"{__name__}:small_torso"
    observations = np.random.default_rng(0).uniform(-0.5, 0.5, (16, 4)).astype(np.float32)
    saved = outputs_without_tfrl(result.export_path, observations, ("action", "q_values"))
    (q_values,) = keras_outputs_without_tfrl(tmp_path, [result.export_path / "q_network.keras"], [observations])[0]
    np.testing.assert_allclose(q_values, saved["q_values"], atol=1e-5)
    np.testing.assert_array_equal(saved["action"], q_values.argmax(axis=1))
    resumed = tfrl.train(resume=result.run_dir, total_steps=600, progress=False)  # the builder is importable
    assert resumed.env_steps >= 600 and resumed.agent.q_network.torso.name == "small_torso"


def test_sac_with_a_layer_class_torso_exports_files_that_need_no_tfrl(tmp_path, outputs_without_tfrl):
    result = _short_run(tmp_path, "sac", "Pendulum-v1", torso=GatedTorso, overrides=SAC_QUICK)
    assert isinstance(result.agent.actor.torso, GatedTorso)
    observations = np.random.default_rng(1).uniform(-1.0, 1.0, (16, 3)).astype(np.float32)
    saved = outputs_without_tfrl(result.export_path, observations, ("action", "value"))
    (actor,) = keras_outputs_without_tfrl(
        tmp_path, [result.export_path / "actor.keras"], [observations], inspect.getsource(GatedTorso)
    )
    mean, _ = actor
    np.testing.assert_allclose(2.0 * np.tanh(mean), saved["action"], atol=1e-5)  # Pendulum's bounds: ±2
    critics = [result.export_path / "critic_1.keras", result.export_path / "critic_2.keras"]
    q_values = keras_outputs_without_tfrl(
        tmp_path, critics, [observations, saved["action"]], inspect.getsource(GatedTorso)
    )
    np.testing.assert_allclose(np.minimum(q_values[0][0], q_values[1][0]), saved["value"], atol=1e-5)


def test_a_lambda_torso_trains_and_resumes_only_when_passed_again(tmp_path):
    def torso():
        return keras.Sequential([keras.layers.Dense(6, activation="relu")], name="local")

    result = _short_run(tmp_path, "dqn", "CartPole-v1", torso=torso, overrides=DQN_QUICK)
    reference = json.loads((result.run_dir / "run.json").read_text())["config"]["torso"]
    assert "<locals>" in reference
    nets._LOCAL_TORSOS.pop(reference)  # as in a new process, which never saw the function
    with pytest.raises(ConfigError, match=r"only the process that trained could call .* torso=builder"):
        tfrl.train(resume=result.run_dir, total_steps=600, progress=False)
    resumed = tfrl.train(resume=result.run_dir, torso=torso, total_steps=600, progress=False)
    assert resumed.env_steps >= 600 and resumed.agent.q_network.torso.name == "local"


# ------------------------------------------------------------------------------------------------
# Every algorithm takes a torso; bad torsos are one clear line
# ------------------------------------------------------------------------------------------------


ALGORITHMS = {
    "dqn": CARTPOLE,
    "reinforce": CARTPOLE,
    "actor-critic": PENDULUM,
    "ppo": CARTPOLE,
    "ddpg": PENDULUM,
    "td3": PENDULUM,
    "sac": PENDULUM,
    "a3c": CARTPOLE,
    "a3c-rnn": PENDULUM,
}


def _agent(algorithm, spaces, **overrides):
    agent_class, _ = get_agent(algorithm)
    return agent_class(make_config(algorithm, overrides=overrides), *spaces)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_builds_each_network_its_own_torso_and_a_plain_twin(algorithm):
    agent = _agent(algorithm, ALGORITHMS[algorithm], torso=small_torso)
    networks = agent.networks()
    torsos = [network.torso for network in networks.values()]
    assert all(torso.name == "small_torso" for torso in torsos) and len({id(torso) for torso in torsos}) == len(torsos)
    rng = np.random.default_rng(0)
    observation_space, _ = ALGORITHMS[algorithm]
    observations = rng.uniform(-1.0, 1.0, (5, *observation_space.shape)).astype(np.float32)
    for network in networks.values():
        shape = network.get_build_config()["input_shape"]
        several = isinstance(shape[0], list | tuple)
        inputs = [observations, rng.normal(size=(5, *shape[1][1:])).astype(np.float32)] if several else observations
        for ours, plain in zip(
            keras.tree.flatten(network(inputs)), keras.tree.flatten(network.plain()(inputs)), strict=True
        ):
            np.testing.assert_allclose(np.asarray(plain), np.asarray(ours), atol=1e-6)


def test_a_layer_instance_is_copied_for_each_network_and_an_uncopyable_one_refused():
    instance = keras.Sequential([keras.layers.Dense(5)], name="given")
    agent = _agent("dqn", CARTPOLE, torso=instance)
    torsos = {id(agent.q_network.torso), id(agent.target_network.torso), id(instance)}
    assert len(torsos) == 3 and agent.q_network.torso.layers[0].units == 5
    with pytest.raises(ConfigError, match=r"cannot be copied from its get_config\(\).*pass a function that builds one"):
        make_config("dqn", overrides={"torso": Uncopyable(3)})


def test_bad_torsos_are_one_clear_line_before_any_file_is_written(tmp_path):
    shared = keras.layers.Dense(4)
    with pytest.raises(ConfigError, match=r"returned 42, not a Keras layer"):
        _agent("dqn", CARTPOLE, torso=lambda: 42)
    with pytest.raises(ConfigError, match=r"returned a layer another network already has"):
        _agent("dqn", CARTPOLE, torso=lambda: shared)
    with pytest.raises(ConfigError, match=r"torso='no_such_module:build' names no function .* nature, minatar"):
        _short_run(tmp_path, "dqn", "CartPole-v1", torso="no_such_module:build")
    with pytest.raises(ConfigError, match=r"torso='conv' is invalid: expected auto, mlp, nature, minatar"):
        make_config("dqn", overrides={"torso": "conv"})
    with pytest.raises(ConfigError, match=r"a3c's workers build their networks in their own processes, but the torso"):
        _short_run(tmp_path, "a3c", "CartPole-v1", torso=lambda: keras.layers.Dense(4))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "exports").exists()


# ------------------------------------------------------------------------------------------------
# Actor and critic sizes of their own: net_arch, as Stable-Baselines3 names it
# ------------------------------------------------------------------------------------------------


def _units(mlp):
    return [layer.units for layer in mlp.dense]


def test_net_arch_gives_actor_and_critics_their_own_sizes():
    sac = _agent("sac", PENDULUM, net_arch={"pi": [32], "qf": [48, 24]}, hidden_sizes=(7,))
    assert _units(sac.actor.torso) == [32]
    assert all(_units(critic.joint) == [48, 24] for critic in sac.critics.online + sac.critics.targets)
    ppo = _agent("ppo", CARTPOLE, net_arch={"vf": [24, 12]}, hidden_sizes=(16,))
    assert _units(ppo.actor.torso) == [16] and _units(ppo.critic.torso) == [24, 12]  # pi left out: hidden_sizes
    dqn = _agent("dqn", CARTPOLE, net_arch='{"qf": [20]}')  # as --set net_arch=... gives it
    assert _units(dqn.q_network.torso) == [20] and dqn.config.to_dict()["net_arch"] == {"qf": [20]}
    a3c = _agent("a3c", CARTPOLE, net_arch={"vf": [9]}, hidden_sizes=(5,), critic_hidden_sizes=(3,))
    assert _units(a3c.nets.actor.torso) == [5] and _units(a3c.nets.critic.torso) == [9]


def test_a_wrong_net_arch_names_the_roles_there_are():
    with pytest.raises(
        ConfigError, match=r"net_arch has 'vf', a network SACConfig does not have.*pi \(the actor\), qf"
    ):
        make_config("sac", overrides={"net_arch": {"vf": [64]}})
    with pytest.raises(ConfigError, match=r"net_arch\['pi'\]=\[64, 0\] is invalid: expected a list of positive"):
        make_config("ppo", overrides={"net_arch": {"pi": [64, 0]}})
    with pytest.raises(ConfigError, match=r"one list for every network is hidden_sizes"):
        make_config("ppo", overrides={"net_arch": [64, 64]})
