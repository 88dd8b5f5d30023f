import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfrl.errors import ExportError
from tfrl.export import load_policy


@pytest.fixture(scope="module")
def observations():
    return np.random.default_rng(0).uniform(-0.5, 0.5, size=(64, 4)).astype(np.float32)


def test_export_layout_and_metadata(cartpole_run):
    path = cartpole_run.export_path
    assert (path / "saved_model.pb").exists() and (path / "q_network.keras").exists()
    metadata = json.loads((path / "assets" / "tfrl.json").read_text())
    assert metadata["algorithm"] == "dqn" and metadata["env_id"] == "CartPole-v1"
    assert metadata["observation_space"]["shape"] == [4] and metadata["action_space"] == {
        "type": "Discrete",
        "shape": [],
        "n": 2,
        "start": 0,
    }
    assert metadata["env_steps"] == cartpole_run.env_steps
    evaluation = metadata["evaluation"]
    assert evaluation["policy"] == "best" and evaluation["episodes"] == 20
    assert evaluation["mean_return"] == cartpole_run.best_return and evaluation["env_step"] == cartpole_run.best_step
    # the run stopped at its first solving evaluation, which is therefore its best one
    assert cartpole_run.best_step == cartpole_run.env_steps and cartpole_run.best_return == cartpole_run.final_return
    assert set(metadata["endpoints"]) == {"action", "q_values"}


def test_savedmodel_loads_without_tfrl_and_matches_the_agent(cartpole_run, observations, tmp_path):
    np.save(tmp_path / "observations.npy", observations)
    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        policy = tf.saved_model.load({str(cartpole_run.export_path)!r})
        observations = np.load({str(tmp_path / "observations.npy")!r})
        np.save({str(tmp_path / "actions.npy")!r}, policy.action(observations).numpy())
        np.save({str(tmp_path / "q.npy")!r}, policy.q_values(observations).numpy())
        served = policy.signatures["serving_default"](observation=tf.constant(observations))
        np.save({str(tmp_path / "served.npy")!r}, served["action"].numpy())
        assert not any(name.startswith("tfrl") for name in sys.modules), "tfrl was imported"
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    agent = cartpole_run.agent
    np.testing.assert_array_equal(np.load(tmp_path / "actions.npy"), agent.act(observations, explore=False))
    np.testing.assert_array_equal(np.load(tmp_path / "served.npy"), np.load(tmp_path / "actions.npy"))
    np.testing.assert_allclose(np.load(tmp_path / "q.npy"), agent.q_network(observations).numpy(), rtol=1e-5, atol=1e-6)


def test_tfsmlayer_inside_another_keras_model(cartpole_run, observations):
    import keras

    inputs = keras.Input((4,))
    q_values = keras.layers.TFSMLayer(str(cartpole_run.export_path), call_endpoint="q_values")(inputs)
    model = keras.Model(inputs, keras.layers.Softmax()(q_values))
    probabilities = model(observations).numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), cartpole_run.agent.act(observations, explore=False))


def test_keras_file_reloads_for_fine_tuning(cartpole_run, observations):
    import keras

    network = keras.models.load_model(cartpole_run.export_path / "q_network.keras")
    np.testing.assert_allclose(
        network(observations).numpy(), cartpole_run.agent.q_network(observations).numpy(), rtol=1e-6
    )
    hidden = [layer.units for layer in network.layers if layer.name.startswith("torso_hidden")]
    assert tuple(hidden) == cartpole_run.agent.q_network.hidden_sizes and network.trainable_weights


def test_load_policy_takes_one_observation_or_a_batch(cartpole_run, observations):
    policy = load_policy(cartpole_run.export_path)
    batch_actions = policy(observations)
    assert batch_actions.shape == (64,)
    assert int(policy(observations[3])) == batch_actions[3]
    assert policy.q_values(observations[:2]).shape == (2, 2)
    with pytest.raises(AttributeError, match="no 'sample_action' endpoint"):
        policy.sample_action(observations)


def test_load_policy_refuses_a_wrong_observation_shape(cartpole_run):
    policy = load_policy(cartpole_run.export_path)
    with pytest.raises(ExportError, match=r"observation has shape \(3,\).*expects \(4,\) or a batch \(N, 4\)"):
        policy(np.zeros(3))
    with pytest.raises(ExportError, match=r"shape \(2, 5\)"):
        policy(np.zeros((2, 5)))


def test_load_policy_refuses_missing_and_foreign_paths(tmp_path):
    with pytest.raises(ExportError, match="no such policy directory"):
        load_policy(tmp_path / "missing")
    with pytest.raises(ExportError, match="not a SavedModel"):
        load_policy(tmp_path)
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "foreign"))
    with pytest.raises(ExportError, match="not a tfrl export"):
        load_policy(tmp_path / "foreign")


def test_tflite_conversion_gives_the_same_actions(cartpole_run, observations):
    import warnings

    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(cartpole_run.export_path), signature_keys=["action"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter announces its move to the ai-edge-litert package
        runner = tf.lite.Interpreter(model_content=converter.convert()).get_signature_runner("action")
    actions = [int(runner(observation=row[None])["action"][0]) for row in observations[:16]]
    np.testing.assert_array_equal(actions, cartpole_run.agent.act(observations[:16], explore=False))
