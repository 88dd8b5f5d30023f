"""A user's own env, every way they have one (issue 26, part 1): gymnasium's ``module:EnvId``, a
factory with ``env_kwargs``, a factory only this process can make, and an instance (refused).
Trained, resumed, evaluated and recorded the way users do it: the CLI, in new processes too."""

import json
import os
import subprocess
import sys
from pathlib import Path

import custom_envs
import gymnasium as gym
import numpy as np
import pytest

import tfrl
from tfrl.cli import main, parse_env_kwargs
from tfrl.envs import check_user_env, env_reference
from tfrl.errors import ConfigError, EnvError
from tfrl.export import load_policy

TESTS = Path(__file__).parent
SHORT = ["--steps", "1500", "--eval-every", "500", "--eval-episodes", "4", "--no-progress"]


def _tfrl(*args, cwd):
    """``tfrl ARGS`` in a new process that finds the user's package (tests/ on PYTHONPATH)."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "tfrl.cli", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def module_run(tmp_path_factory):
    """``tfrl train dqn --env custom_envs:Reach-v0 --env-kwargs target=0.5`` in this process."""
    root = tmp_path_factory.mktemp("module-env")
    arguments = ["train", "dqn", "--env", "custom_envs:Reach-v0", "--env-kwargs", "target=0.5", *SHORT]
    assert main([*arguments, "--logdir", str(root / "runs"), "--export-dir", str(root / "exports")]) == 0
    return root, next((root / "runs").iterdir()), root / "exports" / "dqn-Reach-v0"


def test_module_env_id_trains_and_records_how_to_make_the_env_again(module_run):
    _root, run_dir, export = module_run
    settings = json.loads((run_dir / "run.json").read_text())["settings"]
    assert (settings["env_id"], settings["env_kwargs"]) == ("custom_envs:Reach-v0", {"target": 0.5})
    metadata = load_policy(export).metadata
    assert (metadata["env_id"], metadata["env_kwargs"]) == ("custom_envs:Reach-v0", {"target": 0.5})
    assert run_dir.name.startswith("dqn-Reach-v0-0-")  # a path component without the module's colon


def test_a_new_process_evaluates_records_and_resumes_the_custom_env(module_run):
    root, run_dir, export = module_run
    evaluated = _tfrl("evaluate", export, "--episodes", "3", cwd=root)  # Reach needs target: kwargs came along
    assert evaluated.returncode == 0, evaluated.stderr
    assert "over 3 episodes on custom_envs:Reach-v0" in evaluated.stdout
    assert main(["record", str(export), "--out", str(root / "reach.gif")]) == 0
    assert (root / "reach.gif").stat().st_size > 0
    resumed = _tfrl("train", "--resume", run_dir, "--steps", "2000", "--no-progress", cwd=root)
    assert resumed.returncode == 0, resumed.stderr
    assert "from its checkpoint at env step 1500" in resumed.stderr


def test_a_factory_with_kwargs_trains_from_python_and_learns(tmp_path):
    result = tfrl.train(
        "dqn",
        custom_envs.make_reach,
        env_kwargs={"target": 0.5},
        total_steps=3_000,
        eval_every=1_000,
        eval_episodes=10,
        logdir=tmp_path / "runs",
        export_dir=tmp_path / "exports",
        progress=False,
    )
    policy = load_policy(result.export_path)
    assert policy.metadata["env_id"] == "custom_envs:make_reach"
    returns = tfrl.evaluate(policy, custom_envs.make_reach, episodes=10, env_kwargs={"target": 0.5})
    random_play = tfrl.evaluate(
        lambda observations: np.random.default_rng(0).integers(0, 2, len(observations)),
        "custom_envs:make_reach",
        episodes=10,
        env_kwargs={"target": 0.5},
    )
    assert np.mean(returns) > np.mean(random_play) + 3  # it moved towards the target


def test_a_factory_only_this_process_knows_trains_here_and_is_named_elsewhere(tmp_path, capsys):
    def make(target):  # a local function: no other process can import it
        return custom_envs.make_reach(target)

    options = dict(logdir=tmp_path / "runs", export=False, progress=False, total_steps=500, eval_every=500)
    result = tfrl.train("dqn", make, env_kwargs={"target": 0.0}, eval_episodes=2, **options)
    reference = json.loads((result.run_dir / "run.json").read_text())["settings"]["env_id"]
    assert reference.endswith(
        ":test_a_factory_only_this_process_knows_trains_here_and_is_named_elsewhere.<locals>.make"
    )
    resumed = _tfrl("train", "--resume", result.run_dir, "--steps", "1000", cwd=tmp_path)
    assert resumed.returncode == 2
    assert "tfrl: error:" in resumed.stderr and "Traceback" not in resumed.stderr
    assert "was made by a factory of the program that trained with it" in resumed.stderr
    with pytest.raises(EnvError, match=r"a3c's workers make their envs in their own processes.*cannot be imported"):
        tfrl.train("a3c", make, env_kwargs={"target": 0.0}, logdir=tmp_path / "a3c", progress=False)
    assert not (tmp_path / "a3c").exists()


def test_an_env_instance_or_a_bad_env_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(EnvError, match=r"pass the env's class or a function that makes it, not an instance"):
        tfrl.train("ppo", custom_envs.Reach(0.5), logdir=tmp_path)
    with pytest.raises(EnvError, match=r"cannot import the module 'no_such_package.envs'"):
        tfrl.train("ppo", "no_such_package.envs:Reach-v0", logdir=tmp_path)
    with pytest.raises(EnvError, match=r"custom_envs registers no env id 'Missing-v0'"):
        tfrl.train("ppo", "custom_envs:Missing-v0", logdir=tmp_path)
    with pytest.raises(EnvError, match=r"with env_kwargs \{'target': 0.5, 'speed': 2\}: TypeError"):
        tfrl.train("ppo", "custom_envs:Reach-v0", env_kwargs={"target": 0.5, "speed": 2}, logdir=tmp_path)
    with pytest.raises(EnvError, match=r"cannot make environment 'custom_envs:Reach-v0': TypeError"):
        tfrl.train("ppo", "custom_envs:Reach-v0", logdir=tmp_path)  # target is required
    with pytest.raises(ConfigError, match="env_kwargs must be JSON values"):
        tfrl.train("ppo", "custom_envs:Reach-v0", env_kwargs={"target": object()}, logdir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_env_kwargs_are_typed_on_the_command_line_and_in_toml(tmp_path):
    assert parse_env_kwargs(["a=0.5", "b=3", "c=true", "d=hard", "e=[1, 2]", "f=None", 'g="7"']) == {
        "a": 0.5,
        "b": 3,
        "c": True,
        "d": "hard",
        "e": [1, 2],
        "f": None,
        "g": "7",
    }
    with pytest.raises(ConfigError, match="--env-kwargs expects KEY=VALUE"):
        parse_env_kwargs(["target"])
    config = tmp_path / "reach.toml"
    config.write_text("learning_starts = 100\n[env_kwargs]\ntarget = -0.5\n")
    arguments = ["train", "dqn", "--env", "custom_envs:Reach-v0", "--config", str(config), *SHORT[:2]]
    assert main([*arguments, "--steps", "600", "--no-progress", "--logdir", str(tmp_path), "--no-export"]) == 0
    saved = json.loads(next(tmp_path.glob("dqn-Reach-v0-*/run.json")).read_text())
    assert saved["settings"]["env_kwargs"] == {"target": -0.5} and saved["config"]["learning_starts"] == 100


def test_gymnasium_s_env_checker_runs_once_on_a_user_env_and_can_be_skipped(tmp_path, capsys):
    class Unbounded(custom_envs.Reach):
        def __init__(self):
            super().__init__(0.5)
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def unbounded():
        return gym.wrappers.TimeLimit(Unbounded(), max_episode_steps=20)

    options = dict(logdir=tmp_path, export=False, progress=False, total_steps=200, eval_every=200, eval_episodes=1)
    tfrl.train("dqn", unbounded, **options)
    printed = capsys.readouterr().err
    assert printed.count("env check of") == 2  # two findings, each once
    assert "observation space minimum value is -infinity" in printed
    assert any("it has no time limit, so an episode" in line for line in check_user_env(env_reference(Unbounded)))
    capsys.readouterr()
    tfrl.train("dqn", unbounded, env_check=False, **options)
    assert "env check of" not in capsys.readouterr().err
    tfrl.train("dqn", "CartPole-v1", **options)  # gymnasium's own envs are checked by gymnasium
    assert "env check of" not in capsys.readouterr().err
