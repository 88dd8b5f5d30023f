"""A3C on the process backend: the gradients workers send, faults (replaced workers, the restart limit),
Ctrl-C, learning, and the recurrent variant (its export, on discretised actions too)."""

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from pool_workers import Broken, Echo, InstantGradients, assert_runs_one_step_ahead, collect_until, from_each

import tfrl
from tfrl.agents import make_config
from tfrl.agents.a3c import ROLLOUT_KEYS, A3CAgent, A3CWorker, WorkerSpec
from tfrl.agents.common import FlatOptimizer, make_optimizer
from tfrl.envs import action_grid, make_env
from tfrl.errors import ConfigError, WorkerError
from tfrl.logger import read_jsonl
from tfrl.pools import ProcessPool
from tfrl.training import Evaluator, GreedyActing, RunSettings, export_run, restore_run


def _agent(algorithm: str, env_id: str, **overrides) -> A3CAgent:
    env = make_env(env_id)
    return A3CAgent(make_config(algorithm, overrides=overrides), env.observation_space, env.action_space, env_id)


def _next_update(pool: ProcessPool, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        updates = pool.results(timeout=1.0)
        if updates:
            return updates[0]
    pytest.fail("no update from the worker in time")


def test_config_presets_registry_and_validation():
    assert make_config("a3c-rnn").recurrent and not make_config("a3c").recurrent
    assert make_config("a3c").worker_count == os.cpu_count()
    tutorial = make_config("a3c", "tutorial")
    assert (tutorial.update_every, tutorial.gamma, tutorial.optimizer, tutorial.hidden_sizes) == (
        10,
        0.9,
        "rmsprop",
        (200,),
    )
    assert make_config("a3c", "tutorial-rnn").update_every == 5
    with pytest.raises(ConfigError, match="update_every"):
        make_config("a3c", overrides={"update_every": 0})


@pytest.mark.parametrize(
    ("algorithm", "env_id", "envs", "steps"), [("a3c", "CartPole-v1", 1, 8), ("a3c-rnn", "Pendulum-v1", 2, 4)]
)
def test_worker_gradients_equal_the_parents_and_each_push_is_one_optimizer_step(algorithm, env_id, envs, steps):
    agent = _agent(algorithm, env_id, workers=1, update_every=steps, envs_per_worker=envs)
    spec = WorkerSpec(0, agent.config, env_id, None, seed=3, send_rollouts=True)
    with ProcessPool(A3CWorker, [spec], agent.nets.get_weights().numpy()) as pool:
        for update in range(2):  # the second rollout runs on the weights pulled after the first push
            worker_id, (gradients, pushed_steps, _, _, losses, rollout) = _next_update(pool)
            assert worker_id == 0 and pushed_steps == steps * envs and gradients.shape == (agent.nets.size,)
            expected, expected_losses = agent.nets.gradients(*(rollout[key] for key in ROLLOUT_KEYS))
            np.testing.assert_allclose(gradients, expected.numpy(), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(losses, expected_losses.numpy(), rtol=1e-4, atol=1e-6)
            assert np.abs(gradients).max() > 0

            moments = [variable.numpy().copy() for variable in agent.actor_optimizer.variables[1:]]
            assert agent.global_step == update
            state = agent.apply(agent.driver_state(), gradients[None], [pushed_steps])
            agent.store(state)
            pool.publish(state.weights)
            pool.go_on(worker_id)
            assert agent.global_step == state.global_step == update + 1
            assert agent.env_steps == state.env_steps == steps * envs * (update + 1)
            np.testing.assert_array_equal(agent.nets.get_weights().numpy(), state.weights)
            assert int(agent.critic_optimizer.iterations.numpy()) == update + 1
            assert any(
                not np.array_equal(before, after.numpy())
                for before, after in zip(moments, agent.actor_optimizer.variables[1:], strict=True)
            )
        if algorithm == "a3c-rnn":
            assert np.abs(rollout["initial_state"]).max() > 0  # the state carried into the second rollout
    assert not multiprocessing.active_children()


@pytest.mark.parametrize(("optimizer", "max_grad_norm"), [("adam", 0.05), ("adam", 0.0), ("rmsprop", 0.05)])
def test_the_drivers_numpy_updates_equal_the_keras_optimizers_steps(optimizer, max_grad_norm):
    numpy_agent, keras_agent = (
        _agent("a3c", "CartPole-v1", optimizer=optimizer, max_grad_norm=max_grad_norm) for _ in range(2)
    )
    keras_agent.nets.set_weights(numpy_agent.nets.get_weights())
    rows = np.random.default_rng(0).normal(0, 0.1, (3, numpy_agent.nets.size)).astype(np.float32)
    initial = numpy_agent.driver_state()
    applied = numpy_agent.apply(initial, rows, [5, 6, 7])
    numpy_agent.store(applied)
    stored = numpy_agent.driver_state()  # what TF holds now, read back
    assert (stored.global_step, stored.env_steps) == (applied.global_step, applied.env_steps) == (3, 18)
    for mine, read in zip(
        [applied.weights, *applied.slots[0], *applied.slots[1]],
        [stored.weights, *stored.slots[0], *stored.slots[1]],
        strict=True,
    ):
        np.testing.assert_array_equal(mine, read)
    for row in rows:
        pieces = np.split(row, np.cumsum([int(np.prod(v.shape)) for v in keras_agent.nets.variables])[:-1])
        gradients = [piece.reshape(v.shape) for piece, v in zip(pieces, keras_agent.nets.variables, strict=True)]
        split = len(keras_agent.nets.actor_variables)
        keras_agent.actor_optimizer.apply_gradients(
            zip(gradients[:split], keras_agent.nets.actor_variables, strict=True)
        )
        keras_agent.critic_optimizer.apply_gradients(
            zip(gradients[split:], keras_agent.nets.critic_variables, strict=True)
        )
    assert (numpy_agent.env_steps, numpy_agent.global_step, int(keras_agent.critic_optimizer.iterations)) == (18, 3, 3)
    assert int(numpy_agent.critic_optimizer.iterations) == 3
    assert not np.allclose(numpy_agent.nets.get_weights().numpy(), initial.weights)
    np.testing.assert_allclose(
        numpy_agent.nets.get_weights().numpy(), keras_agent.nets.get_weights().numpy(), rtol=1e-5, atol=1e-7
    )
    for optimizer_pair in zip(
        (numpy_agent.actor_optimizer, numpy_agent.critic_optimizer),
        (keras_agent.actor_optimizer, keras_agent.critic_optimizer),
        strict=True,
    ):
        for mine, theirs in zip(*(optimizer.variables for optimizer in optimizer_pair), strict=True):
            np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-7)


def test_the_numpy_optimizer_keeps_keras_centred_rmsprop_and_nan_rules():
    variable = keras.Variable(np.linspace(-1, 1, 6).astype(np.float32))
    keras_optimizer = make_optimizer("rmsprop-centered", 1e-2, max_grad_norm=0.5)
    keras_optimizer.build([variable])
    flat = FlatOptimizer(keras_optimizer)
    weights, slots = variable.numpy(), flat.read_slots()
    for iteration, gradient in enumerate(np.random.default_rng(1).normal(0, 1, (4, 6)).astype(np.float32)):
        weights, slots = flat.step(weights, slots, gradient, iteration)
        keras_optimizer.apply_gradients([(tf.constant(gradient), variable)])
    np.testing.assert_allclose(weights, variable.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.concatenate(slots), np.concatenate(flat.read_slots()), rtol=1e-5, atol=1e-7)
    nan_weights, _ = flat.step(weights, slots, np.full(6, np.inf, np.float32), 4)
    assert np.isnan(nan_weights).all()  # a non-finite gradient poisons the weights, as in Keras: the run stops
    with pytest.raises(ValueError, match="momentum"):
        FlatOptimizer(keras.optimizers.RMSprop(momentum=0.9))


def test_each_yield_of_the_update_stream_counts_exactly_the_updates_applied():
    agent = _agent("a3c", "CartPole-v1", workers=2)
    agent.worker = InstantGradients
    stream = agent.update_stream(RunSettings("a3c", "CartPole-v1"), 0, print)
    previous, batch_sizes = 0, []
    for index in range(300):
        if index % 50 == 49:
            time.sleep(0.2)  # the driver busy elsewhere (an evaluation): both workers' updates wait for it
        counted, episodes, metrics = next(stream)
        assert counted == agent.env_steps and metrics["global_step"] == agent.global_step
        batch_sizes.append((counted - previous) // agent.config.update_every)
        assert len(episodes) == batch_sizes[-1]  # every update's episodes, none twice
        previous = counted
    stream.close()
    assert not multiprocessing.active_children()
    assert max(batch_sizes) > 1  # updates did arrive together


def test_a_pipelined_process_pool_worker_runs_one_step_ahead():
    with ProcessPool(Echo, ["a"], np.ones(4, np.float32), pipelined=True) as pool:
        assert_runs_one_step_ahead(pool)
    assert not multiprocessing.active_children()


def test_process_pool_steps_on_the_published_array_and_replaces_a_killed_worker():
    events = []
    with ProcessPool(Echo, ["a", "b"], np.ones(4, np.float32), max_restarts=1, on_event=events.append) as pool:
        first = dict(collect_until(pool, from_each(0, 1)))
        assert [first[0][0], first[1][0]] == ["a", "b"]
        pool.publish(np.full(4, 2.0, np.float32))
        collect_until(pool, from_each(0, 1, where=lambda message: message[2] == 8.0))  # each saw the new array
        victim = first[1][1]
        os.kill(victim, signal.SIGKILL)
        replaced = collect_until(pool, from_each(1, where=lambda message: message[1] != victim))
        new = next(message for worker_id, message in replaced if worker_id == 1 and message[1] != victim)
        assert new[0] == "b" and new[2] == 8.0  # the same spec, starting from the array published last
        assert events == [
            f"worker 1 (pid {victim}) was killed by SIGKILL; replaced it with a new one starting from the current "
            "weights (restart 1 of 1)"
        ]
        os.kill(new[1], signal.SIGKILL)  # a second death of the same worker is one too many
        with pytest.raises(WorkerError, match=r"worker 1 \(pid \d+\) was killed by SIGKILL; it was replaced 1 time"):
            collect_until(pool, lambda messages: False, timeout=30)
    assert not multiprocessing.active_children()


def test_a_worker_that_raises_stops_the_pool_at_once_with_its_id_and_traceback():
    start = time.monotonic()
    with (
        pytest.raises(WorkerError, match=r"A3C worker \d raised an exception[\s\S]*NoSuchEnv-v0"),
        ProcessPool(Broken, [0, 1], np.zeros(3, np.float32), name="A3C worker") as pool,
    ):
        collect_until(pool, lambda messages: False)
    assert time.monotonic() - start < 60
    assert not multiprocessing.active_children()


def _start_cli(tmp_path: Path, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "tfrl.cli",
        "train",
        "a3c",
        "--env",
        "CartPole-v1",
        "--steps",
        "10000000",
        "--no-early-stop",
        "--no-progress",
        "--no-export",
        "--eval-every",
        "1000000",
        "--checkpoint-every",
        "1000000",
        "--logdir",
        str(tmp_path),
        "--set",
        "workers=2",
        *extra,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _workers(process: subprocess.Popen) -> list[int]:
    return [pid for pid in _children(process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _wait_until_training(tmp_path: Path, process: subprocess.Popen, timeout: float = 180.0) -> list[int]:
    """The worker pids, once the run has logged an episode (so both workers are running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training exited early with code {process.returncode}: {process.communicate()}")
        episodes = list(tmp_path.glob("*/episodes.jsonl"))
        if episodes and episodes[0].stat().st_size > 0:
            workers = _workers(process)
            if len(workers) == 2:
                return workers
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail("timed out waiting for the workers to train")


def _stop(process: subprocess.Popen, how: int = signal.SIGINT, timeout: float = 60) -> tuple[str, str]:
    os.killpg(process.pid, how)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the run did not stop")


def test_a_killed_worker_is_replaced_and_the_run_goes_on(tmp_path):
    process = _start_cli(tmp_path)
    workers = _wait_until_training(tmp_path, process)
    os.kill(workers[1], signal.SIGKILL)
    run_dir = next(tmp_path.iterdir())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        len(_workers(process)) == 2
        and workers[1] not in _workers(process)
        and (run_dir / "events.jsonl").exists()
        and read_jsonl(run_dir / "events.jsonl")
    ):
        time.sleep(0.2)
    episodes_at_replacement = len(read_jsonl(run_dir / "episodes.jsonl"))
    events = read_jsonl(run_dir / "events.jsonl")
    time.sleep(3)
    assert process.poll() is None, process.communicate()  # still training
    assert len(read_jsonl(run_dir / "episodes.jsonl")) > episodes_at_replacement
    _, stderr = _stop(process)
    assert process.returncode == 130, stderr
    line = f"A3C worker 1 (pid {workers[1]}) was killed by SIGKILL; replaced it with a new one"
    assert f"tfrl: {line}" in stderr
    # the workers, new ones too, import TensorFlow silenced as the command does: none of its start-up lines
    assert not [line for line in stderr.splitlines() if "absl" in line or re.match(r"[IWEF]\d{4} ", line)], stderr
    assert [row["message"] for row in events] == [
        f"{line} starting from the current weights (restart 1 of {make_config('a3c').max_worker_restarts})"
    ]


def test_past_max_worker_restarts_the_run_stops_with_one_error_line_and_a_checkpoint(tmp_path):
    process = _start_cli(tmp_path, "--set", "max_worker_restarts=0")
    workers = _wait_until_training(tmp_path, process)
    children = _children(process.pid)
    time.sleep(1)
    os.kill(workers[0], signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the run did not stop after its worker was killed")
    assert time.monotonic() - killed_at < 60
    assert process.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("tfrl: error:")]
    assert len(errors) == 1, stderr
    assert f"A3C worker 0 (pid {workers[0]}) was killed by SIGKILL" in errors[0]
    assert "max_worker_restarts=0" in errors[0] and "tfrl train --resume" in errors[0]
    time.sleep(1.0)
    assert not [pid for pid in children if _running(pid)]
    _settings, agent, _best = restore_run(next(tmp_path.iterdir()))
    assert agent.env_steps > 0


def test_ctrl_c_stops_every_worker_and_leaves_a_checkpoint_to_resume_from(tmp_path):
    process = _start_cli(tmp_path)
    workers = _wait_until_training(tmp_path, process)
    time.sleep(2)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("Ctrl-C did not stop the run")
    assert process.returncode == 130, stderr
    assert "continue with: tfrl train --resume" in stdout
    assert not [pid for pid in workers if _running(pid)]
    run_dir = next(tmp_path.iterdir())
    _settings, agent, _best = restore_run(run_dir)
    assert agent.env_steps > 0 and agent.global_step == agent.env_steps // agent.config.update_every
    assert json.loads((run_dir / "run.json").read_text())["config"]["workers"] == 2


def test_discrete_a3c_clearly_learns_cartpole(tmp_path):
    # Solves in 20k-80k steps (benchmarks/a3c.py); workers run asynchronously, so no run repeats
    # exactly: by 50k steps every run seen had a greedy mean of 150 or more (a random policy: ~20).
    result = tfrl.train(
        "a3c",
        "CartPole-v1",
        seed=0,
        total_steps=50_000,
        eval_every=10_000,
        overrides={"workers": 2},
        logdir=tmp_path / "runs",
        export_dir=tmp_path / "saved_models",
        progress=False,
    )
    evaluations = read_jsonl(result.run_dir / "evaluations.jsonl")
    assert max(row["mean"] for row in evaluations) >= 150, evaluations
    episodes = read_jsonl(result.run_dir / "episodes.jsonl")
    assert [row["episode"] for row in episodes] == list(range(1, len(episodes) + 1))
    assert result.agent.global_step == result.env_steps // result.agent.config.update_every
    assert not multiprocessing.active_children()
    policy = tfrl.load_policy(result.export_path)
    returns = tfrl.evaluate(policy, "CartPole-v1", episodes=5, seed=123)
    with result.best.applied():  # the export is the best-evaluated policy
        expected = tfrl.evaluate(GreedyActing(result.agent), "CartPole-v1", episodes=5, seed=123)
    np.testing.assert_array_equal(returns, expected)


def test_recurrent_state_restarts_at_episode_boundaries():
    agent = _agent("a3c-rnn", "CartPole-v1", update_every=6)
    nets = agent.nets
    observations = np.random.default_rng(0).normal(size=(6, 1, 4)).astype(np.float32)  # 6 steps of one env
    dones = np.array([[0], [0], [1], [0], [0], [0]], np.float32)  # an episode ends at step 2; the next starts at 3
    carried = np.random.default_rng(1).normal(size=(1, nets.state_size)).astype(np.float32)
    distribution, values, _ = nets.unroll(observations, observations, dones, carried)
    fresh, fresh_values, _ = nets.unroll(
        np.concatenate([observations[3:], observations[:3]]),
        observations,
        np.zeros((6, 1), np.float32),
        np.zeros((1, nets.state_size), np.float32),
    )
    np.testing.assert_allclose(distribution.logits_parameter()[3:], fresh.logits_parameter()[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values[3:], fresh_values[:3], rtol=1e-5, atol=1e-6)
    # Without the reset the carried state would still shape step 3.
    _, unreset_values, _ = nets.unroll(observations, observations, np.zeros((6, 1), np.float32), carried)
    assert not np.allclose(unreset_values[3:], fresh_values[:3])


def test_recurrent_policy_export_round_trip(tmp_path):
    agent = _agent("a3c-rnn", "Pendulum-v1", rnn_units=16)
    settings = RunSettings("a3c-rnn", "Pendulum-v1")
    path = export_run(agent, settings, tmp_path / "run", tmp_path / "export")
    metadata = json.loads((path / "assets" / "tfrl.json").read_text())
    assert metadata["state_shape"] == [16] and metadata["algorithm"] == "a3c-rnn"

    loaded = tf.saved_model.load(str(path))
    observations = np.random.default_rng(0).normal(size=(5, 3, 3)).astype(np.float32)  # 5 steps of 3 episodes
    state = loaded.initial_state(tf.constant(3)).numpy()
    agent.reset_state(3)
    for observation in observations:
        outputs = loaded.signatures["action"](observation=tf.constant(observation), state=tf.constant(state))
        np.testing.assert_allclose(
            outputs["action"].numpy(), agent.act(observation, explore=False), rtol=1e-5, atol=1e-6
        )
        assert np.all(np.abs(outputs["action"].numpy()) <= 2.0)
        state = outputs["state"].numpy()
    np.testing.assert_allclose(state, agent.acting_state, rtol=1e-5, atol=1e-6)

    policy = tfrl.load_policy(path)
    first = [policy(observation) for observation in observations]
    policy.reset_state(3)
    np.testing.assert_allclose([policy(observation) for observation in observations], first, rtol=1e-6)
    assert not np.allclose(first[0], first[1]) or not np.allclose(first[1], first[2])
    evaluator = Evaluator("Pendulum-v1", episodes=3, seed=7)
    try:
        np.testing.assert_allclose(evaluator(policy), evaluator(GreedyActing(agent)), rtol=1e-4)
    finally:
        evaluator.close()


def test_recurrent_policy_on_discretised_actions_exports_real_actions(tmp_path):
    env = make_env("Pendulum-v1", discretize=5)
    agent = A3CAgent(make_config("a3c-rnn", overrides={"rnn_units": 8}), env.observation_space, env.action_space)
    path = export_run(agent, RunSettings("a3c-rnn", "Pendulum-v1", discretize=5), tmp_path / "run", tmp_path / "export")
    metadata = json.loads((path / "assets" / "tfrl.json").read_text())
    assert metadata["state_shape"] == [8] and metadata["action_space"]["type"] == "Box"
    grid = action_grid(make_env("Pendulum-v1").action_space, 5)
    loaded = tf.saved_model.load(str(path))
    observations = np.random.default_rng(0).normal(size=(4, 3, 3)).astype(np.float32)  # 4 steps of 3 episodes
    state = loaded.initial_state(tf.constant(3)).numpy()
    agent.reset_state(3)
    for observation in observations:
        outputs = loaded.signatures["action"](observation=tf.constant(observation), state=tf.constant(state))
        np.testing.assert_array_equal(outputs["action"].numpy(), grid[agent.act(observation)])
        state = outputs["state"].numpy()
    np.testing.assert_allclose(state, agent.acting_state, rtol=1e-5, atol=1e-6)
    assert tfrl.evaluate(tfrl.load_policy(path), "Pendulum-v1", episodes=2).shape == (2,)  # drives the real env


@pytest.mark.slow
def test_continuous_a3c_learns_pendulum(tmp_path):
    result = tfrl.train(
        "a3c",
        "Pendulum-v1",
        preset="pendulum",
        seed=0,
        total_steps=300_000,
        eval_every=20_000,
        overrides={"workers": 2},
        logdir=tmp_path,
        export=False,
        progress=False,
    )
    evaluations = read_jsonl(result.run_dir / "evaluations.jsonl")
    assert max(row["mean"] for row in evaluations) >= -300, evaluations
