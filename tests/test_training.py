import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfrl
from tfrl.checkpoint import Checkpointer
from tfrl.logger import read_jsonl
from tfrl.training import build_agent, evaluate, load_run, use_intra_op_threads

RANDOM_CARTPOLE_RETURN = 22.0  # mean return of uniformly random actions


def test_dqn_learns_cartpole_within_a_small_budget(cartpole_run):
    evaluations = read_jsonl(cartpole_run.run_dir / "evaluations.jsonl")
    assert len(evaluations) >= 3
    assert cartpole_run.final_return >= 10 * RANDOM_CARTPOLE_RETURN, (
        f"evaluation return {cartpole_run.final_return:.1f} after {cartpole_run.env_steps} steps"
    )
    # the exported greedy policy plays as well on fresh seeds as the last evaluation said
    policy = tfrl.load_policy(cartpole_run.export_path)
    returns = evaluate(policy, "CartPole-v1", episodes=10, seed=123)
    assert returns.mean() >= 0.8 * cartpole_run.final_return


def test_run_directory_records_every_episode_and_evaluation(cartpole_run):
    episodes = read_jsonl(cartpole_run.run_dir / "episodes.jsonl")
    assert [row["episode"] for row in episodes] == list(range(1, len(episodes) + 1))
    assert sum(row["length"] for row in episodes) <= cartpole_run.env_steps
    assert all(row["return"] == row["length"] for row in episodes)  # CartPole pays 1 per step
    assert list((cartpole_run.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    settings, config = load_run(cartpole_run.run_dir)
    assert settings.algorithm == "dqn" and config == cartpole_run.agent.config.to_dict()
    # building the agent comes before the run's clock, and is short beside the training it precedes
    assert 0 < cartpole_run.setup_seconds < cartpole_run.wall_seconds


def _short_run(tmp_path, name):
    return tfrl.train(
        "dqn",
        "CartPole-v1",
        seed=7,
        total_steps=3_000,
        eval_every=1_500,
        eval_episodes=5,
        overrides={"learning_starts": 500, "train_freq": 64, "gradient_steps": 16},
        logdir=tmp_path / name,
        export=False,
        progress=False,
    )


def test_same_seed_gives_the_same_evaluation_returns(tmp_path):
    first, second = _short_run(tmp_path, "a"), _short_run(tmp_path, "b")
    first_evals = read_jsonl(first.run_dir / "evaluations.jsonl")
    assert [row["returns"] for row in first_evals] == [
        row["returns"] for row in read_jsonl(second.run_dir / "evaluations.jsonl")
    ]
    for a, b in zip(first.agent.q_network.weights, second.agent.q_network.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def _start_training(tmp_path: Path, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "tfrl.cli",
        "train",
        "dqn",
        "--env",
        "CartPole-v1",
        "--steps",
        "200000",
        "--no-early-stop",
        "--no-progress",
        "--no-export",
        "--logdir",
        str(tmp_path),
        *extra,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"training exited early with code {process.returncode}: {process.stdout.read()}")
        time.sleep(0.2)
    process.kill()
    pytest.fail("timed out waiting for the training process")


def _checkpoint_steps(run_root: Path) -> list[int]:
    return sorted(int(path.stem.split("-")[1]) for path in run_root.glob("*/checkpoints/state-*.npz"))


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    process = _start_training(tmp_path, "--checkpoint-every", "2000")
    _wait_for(lambda: len(list(tmp_path.glob("*/checkpoints/ckpt-*.index"))) >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run_dir = next(tmp_path.iterdir())
    settings, config_dict = load_run(run_dir)
    config = tfrl.get_agent("dqn")[1]().replace(**config_dict)

    restored = build_agent(settings, config)
    step = Checkpointer(run_dir / "checkpoints", restored).restore()
    assert step >= 4_000 and step % 2_000 == 0
    assert restored.env_steps == step and len(restored.replay) == step

    result = tfrl.train(resume=run_dir, total_steps=step + 1_000, progress=False, export=False)
    assert result.env_steps == step + 1_000
    assert len(result.agent.replay) == step + 1_000
    np.testing.assert_array_equal(result.agent.replay.observations[:step], restored.replay.observations[:step])
    episodes = read_jsonl(run_dir / "episodes.jsonl")
    steps = [row["step"] for row in episodes]
    assert steps == sorted(steps) and steps[-1] <= step + 1_000 and any(s > step for s in steps)
    assert [row["episode"] for row in episodes] == list(range(1, len(episodes) + 1))


@pytest.mark.parametrize(
    ("sent", "code", "said"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_and_sigterm_leave_a_checkpoint_to_resume_from(tmp_path, sent, code, said):
    process = _start_training(tmp_path, "--checkpoint-every", "100000")
    _wait_for(lambda: list(tmp_path.glob("*/run.json")), process)
    time.sleep(4)  # the run directory exists once the agent is built: let it train a while
    process.send_signal(sent)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == code, output
    assert f"{said} at step" in output and "continue with: tfrl train --resume" in output
    steps = _checkpoint_steps(tmp_path)
    assert len(steps) == 1 and steps[0] > 0
    run_dir = next(tmp_path.iterdir())
    assert json.loads((run_dir / "run.json").read_text())["settings"]["total_steps"] == 200_000


def test_tensorboard_gets_training_metrics_evaluations_and_episodes(cartpole_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(cartpole_run.run_dir / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    assert {"train/loss", "train/mean_q", "evaluation/mean_return", "episode/return"} <= set(tags)
    loss_steps = [event.step for event in events.Tensors("train/loss")]
    # at most one point per 1,000 env steps, and one for (nearly) every 1,000 steps trained
    assert all(later - earlier >= 1_000 for earlier, later in itertools.pairwise(loss_steps))
    assert len(loss_steps) >= (cartpole_run.env_steps - 1_000) // 1_300
    # every episode of episodes.jsonl, at its step, though they are written in batches
    episodes = read_jsonl(cartpole_run.run_dir / "episodes.jsonl")
    for tag, field in (("episode/return", "return"), ("episode/length", "length")):
        logged = [(event.step, float(tf.make_ndarray(event.tensor_proto))) for event in events.Tensors(tag)]
        assert logged == [(row["step"], pytest.approx(row[field])) for row in episodes]


def test_intra_op_threads_applies_in_a_fresh_process_and_is_left_alone_after(tmp_path, capsys):
    # The command line runs no TensorFlow operation before the agent is built, so the setting takes.
    script = f"""
import tensorflow as tf
from tfrl.cli import main
main(["train", "dqn", "--env", "CartPole-v1", "--set", "intra_op_threads=1", "--steps", "200", "--eval-every", "200",
      "--eval-episodes", "1", "--logdir", {str(tmp_path)!r}, "--no-export", "--no-progress"])
print(tf.config.threading.get_intra_op_parallelism_threads())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1] == "1"
    assert "not applied" not in done.stderr
    # This process has run TensorFlow: another setting is reported and the current one kept.
    assert float(tf.constant(1.0) + 1.0) == 2.0
    before = tf.config.threading.get_intra_op_parallelism_threads()
    use_intra_op_threads(before + 3)
    assert tf.config.threading.get_intra_op_parallelism_threads() == before
    assert f"intra_op_threads={before + 3} not applied" in capsys.readouterr().err
