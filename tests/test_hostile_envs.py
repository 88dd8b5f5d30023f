"""Envs that declare unusual spaces, break, or return non-finite values, and run flags on --resume
(issue 25's probe): each is handled exactly or refused by name, and nothing non-finite is written."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import tfrl
from tfrl.agents import make_config
from tfrl.cli import main
from tfrl.errors import CheckpointError, ConfigError, EnvError, EnvFailed
from tfrl.export import load_policy
from tfrl.training import BestPolicy


class ShiftedActions(gym.Env):
    """``Discrete(3, start=-1)`` actions; reward 1 for action -1. Any action outside the space fails the step."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(3, start=-1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), f"action {action} is outside {self.action_space}"
        return np.zeros(2, np.float32), float(action == -1), False, False, {}


class Faulty(gym.Env):
    """A dummy env that, from its ``at``-th step on (counted over every instance), returns non-finite
    rewards or observations, or raises: in training envs, or with ``in_evaluation`` only in evaluation
    envs (tfrl seeds those from 1,000,000 on)."""

    steps = 0

    def __init__(self, fault="raise", at=10**9, shape=(2,), in_evaluation=False):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.fault, self.at, self.shape, self.in_evaluation = fault, at, shape, in_evaluation
        self.evaluating = False

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.evaluating = seed >= 1_000_000
        return np.zeros(self.shape, np.float32), {}

    def step(self, action):
        Faulty.steps += 1
        observation, reward = np.zeros(self.shape, np.float32), float(action)
        if Faulty.steps >= self.at and self.evaluating == self.in_evaluation:
            if self.fault == "raise":
                raise RuntimeError("the simulator lost its connection")
            if self.fault == "nan-observation":
                observation[0] = np.nan
            else:
                reward = {"inf-reward": math.inf, "nan-reward": math.nan}[self.fault]
        return observation, reward, False, False, {}


gym.register("ShiftedActions-v0", entry_point=ShiftedActions, max_episode_steps=20)
for name, options in {
    "Raises": dict(fault="raise", at=700),
    "InfReward": dict(fault="inf-reward", at=700),
    "NanReward": dict(fault="nan-reward", at=700),
    "NanEvaluationReward": dict(fault="nan-reward", at=700, in_evaluation=True),
    "NanObservation": dict(fault="nan-observation", at=700),
    "WrongShape": dict(shape=(3,)),
}.items():
    gym.register(f"Faulty{name}-v0", entry_point=Faulty, kwargs=options, max_episode_steps=20)


def _strict_json(text):
    """JSON as every other language reads it: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=lambda constant: pytest.fail(f"{constant} is not JSON"))


@pytest.mark.parametrize("algorithm", ["dqn", "ppo"])
def test_discrete_actions_that_do_not_start_at_zero_are_the_env_s_own(algorithm, tmp_path):
    result = tfrl.train(
        algorithm,
        "ShiftedActions-v0",
        total_steps=2_000,
        eval_every=1_000,
        eval_episodes=2,
        logdir=tmp_path / "runs",
        export_dir=tmp_path / "exports",
        progress=False,
    )  # an action outside Discrete(3, start=-1) would fail the env's assertion
    assert result.best_return == 20.0  # it learned that -1 (index 0) pays
    policy = load_policy(result.export_path)
    assert policy.metadata["action_space"]["start"] == -1
    assert policy(np.zeros((4, 2), np.float32)).tolist() == [-1, -1, -1, -1]  # the env's action, not index 0
    assert tfrl.evaluate(policy, "ShiftedActions-v0", episodes=2).tolist() == [20.0, 20.0]


def test_a_nan_evaluation_never_replaces_the_best_policy():
    class Agent:
        def networks(self):
            return {}

    best = BestPolicy(Agent())
    assert best.consider(100, np.array([346.0]), 1)
    assert not best.consider(200, np.array([111.7, np.nan]), 2)
    assert not best.consider(300, np.array([np.inf]), 3)
    assert (best.score, best.step) == (346.0, 100)


@pytest.fixture(scope="module")
def faulty_runs(tmp_path_factory):
    """One short DQN run on each faulty env: the error it stopped with, and its directories."""
    root = tmp_path_factory.mktemp("faulty")
    runs = {}
    for name in FAULTS:
        Faulty.steps = 0
        with pytest.raises(EnvFailed) as stopped:
            tfrl.train(
                "dqn",
                f"Faulty{name}-v0",
                total_steps=5_000,
                eval_every=200,
                eval_episodes=2,
                checkpoint_every=10_000,
                logdir=root / name / "runs",
                export_dir=root / name / "exports",
                progress=False,
            )
        runs[name] = (str(stopped.value), root / name)
    return runs


FAULTS = {  # each env's fault, and where tfrl meets it
    "Raises": "raised RuntimeError: the simulator lost its connection in a training step",
    "InfReward": "returned a non-finite reward (inf) in a training step",
    "NanReward": "returned a non-finite reward (nan) in a training step",
    "NanObservation": "returned a non-finite observation (nan) in a training step",
    "NanEvaluationReward": "returned a non-finite reward (nan) in evaluation episode",
}


@pytest.mark.parametrize("name", FAULTS)
def test_a_failing_env_stops_the_run_naming_the_env_and_keeps_the_work(faulty_runs, name):
    message, root = faulty_runs[name]
    first_line = message.splitlines()[0]
    assert f"the env Faulty{name}-v0 {FAULTS[name]}" in first_line
    assert "learning rate" not in first_line  # the env is the cause, not the learning
    run_dir = next((root / "runs").iterdir())
    assert f"continue with: tfrl train --resume {run_dir}" in first_line
    assert list((run_dir / "checkpoints").glob("state-*.npz"))  # the work since the start is kept
    policy = load_policy(root / "exports" / f"dqn-Faulty{name}-v0")  # the best policy evaluated before
    assert math.isfinite(policy.metadata["evaluation"]["mean_return"])
    for path in [policy.path / "assets" / "tfrl.json", run_dir / "run.json"]:
        _strict_json(path.read_text())
    for path in [run_dir / "episodes.jsonl", run_dir / "evaluations.jsonl"]:
        for line in path.read_text().splitlines():
            _strict_json(line)


def test_an_env_that_raised_mid_run_resumes_from_the_kept_checkpoint(faulty_runs, capsys):
    _message, root = faulty_runs["Raises"]
    run_dir = next((root / "runs").iterdir())
    Faulty.steps = -(10**9)  # the simulator is back
    result = tfrl.train(resume=run_dir, total_steps=1_000, progress=False)
    assert f"resuming {run_dir} from its checkpoint at env step" in capsys.readouterr().err
    assert result.env_steps >= 1_000


def test_an_observation_of_another_shape_than_declared_is_refused_before_any_file(tmp_path):
    with pytest.raises(EnvError, match=r"declares observations of shape \(2,\).*returned one of shape \(3,\)"):
        tfrl.train("dqn", "FaultyWrongShape-v0", logdir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_box_action_spaces_that_no_actor_can_act_in_are_refused_by_name(tmp_path):
    class ZeroD(ShiftedActions):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.Box(-1.0, 1.0, (), np.float32)

    class Unbounded(ZeroD):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    gym.register("ZeroDActions-v0", entry_point=ZeroD, max_episode_steps=20)
    gym.register("UnboundedActions-v0", entry_point=Unbounded, max_episode_steps=20)
    with pytest.raises(EnvError, match=r"its shape is \(\), but a non-empty vector"):
        tfrl.train("sac", "ZeroDActions-v0", logdir=tmp_path, progress=False)
    with pytest.raises(EnvError, match="its bounds are not finite"):
        tfrl.train("td3", "UnboundedActions-v0", logdir=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())


def test_a_discretisation_too_large_to_allocate_is_refused(tmp_path):
    with pytest.raises(EnvError, match="gives 1000000000000 actions; at most 10000"):
        tfrl.make_env("Pendulum-v1", discretize=10**12)
    with pytest.raises(EnvError, match="at most 10000"):
        tfrl.train("dqn", "MountainCarContinuous-v0", discretize=20_000, logdir=tmp_path, progress=False)


def test_config_floats_must_be_finite():
    with pytest.raises(ConfigError, match="learning_rate='inf' is not a valid float: expected a finite number"):
        make_config("dqn", overrides={"learning_rate": "inf"})


def _error(capsys, *argv):
    assert main(list(argv)) == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("short")
    return tfrl.train(
        "dqn",
        "CartPole-v1",
        total_steps=1_000,
        eval_every=500,
        eval_episodes=2,
        checkpoint_every=500,
        logdir=root / "runs",
        export_dir=root / "exports",
        progress=False,
    )


def test_resume_honours_the_run_flags_it_can_change_and_records_them(short_run):
    main(
        [
            "train",
            "--resume",
            str(short_run.run_dir),
            "--steps",
            "1500",
            "--eval-every",
            "250",
            "--eval-episodes",
            "3",
            "--checkpoint-every",
            "700",
            "--no-early-stop",
            "--no-progress",
        ]
    )
    saved = json.loads((short_run.run_dir / "run.json").read_text())["settings"]
    assert (saved["eval_every"], saved["eval_episodes"], saved["checkpoint_every"]) == (250, 3, 700)
    assert saved["stop_at_threshold"] is False
    evaluations = [json.loads(line) for line in (short_run.run_dir / "evaluations.jsonl").read_text().splitlines()]
    resumed = [row for row in evaluations if row["step"] > 1_000]
    assert len(resumed) == 2 and 1_250 <= resumed[0]["step"] < 1_254 and resumed[1]["step"] == 1_500  # 4 envs a step
    assert all(len(row["returns"]) == 3 for row in resumed)


@pytest.mark.parametrize(("flag", "value"), [("--seed", "7"), ("--num-envs", "8")])
def test_resume_refuses_the_run_flags_its_checkpoint_cannot_follow(short_run, capsys, flag, value):
    error = _error(capsys, "train", "--resume", str(short_run.run_dir), flag, value)
    assert f"{flag} {value} cannot change on --resume" in error


def test_hand_edited_settings_in_run_json_are_refused_by_name(short_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(short_run.run_dir, copy)
    record = json.loads((copy / "run.json").read_text())
    record["settings"]["eval_every"] = 0
    (copy / "run.json").write_text(json.dumps(record))
    error = _error(capsys, "train", "--resume", str(copy))
    assert "run.json holds an invalid setting: eval_every must be a positive integer, got 0" in error
    record["settings"]["eval_every"] = "often"
    (copy / "run.json").write_text(json.dumps(record))
    assert "eval_every must be an integer, got 'often'" in _error(capsys, "train", "--resume", str(copy))
    with pytest.raises(CheckpointError):
        tfrl.train(resume=copy, progress=False)


def test_evaluate_and_record_refuse_a_negative_seed_and_record_a_directory(short_run, capsys, tmp_path):
    export = str(short_run.export_path)
    assert "seed must be an integer from 0 to" in _error(capsys, "evaluate", export, "--seed", "-1")
    assert "seed must be an integer from 0 to" in _error(capsys, "record", export, "--out", "x.gif", "--seed", "-1")
    folder = tmp_path / "videos.gif"
    folder.mkdir()
    assert "is a directory" in _error(capsys, "record", export, "--out", str(folder))


def test_plot_out_gets_a_suffix_or_a_clear_line(short_run, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["plot", str(short_run.run_dir), "--out", str(tmp_path / "curve")]) == 0
    assert f"wrote {tmp_path / 'curve.png'}" in capsys.readouterr().out
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert "does not exist" in _error(capsys, "plot", str(short_run.run_dir), "--out", str(tmp_path / "no" / "c.png"))
    assert "suffix must be one of" in _error(capsys, "plot", str(short_run.run_dir), "--out", str(tmp_path / "c.txt"))


def test_an_env_without_a_time_limit_has_its_evaluation_episodes_cut_and_said(tmp_path, capsys):
    # CliffWalking-v1 registers no max_episode_steps: an untrained greedy policy walks into a wall forever
    result = tfrl.train(
        "dqn", "CliffWalking-v1", total_steps=300, eval_every=300, eval_episodes=2, logdir=tmp_path, export=False
    )
    assert "tfrl: CliffWalking-v1 has no time limit, so its evaluation and recorded episodes end after 10,000" in (
        capsys.readouterr().err
    )
    assert math.isfinite(result.final_return) and result.final_return >= -100.0 * 10_000
