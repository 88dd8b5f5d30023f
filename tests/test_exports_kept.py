"""No run silently replaces a policy (issue 26, part 4): each run keeps its own export beside the
ones already there, says where it went and how both scored; replacing is asked for by name."""

import json

import pytest

from tfrl.cli import main
from tfrl.export import load_policy

SHORT = ["--steps", "500", "--eval-every", "500", "--eval-episodes", "2", "--no-progress"]


@pytest.fixture
def train(tmp_path, capsys):
    """``tfrl train dqn --env CartPole-v1`` into tmp_path's runs/ and exports/: its exit code and stdout."""

    def run(*extra):
        arguments = ["train", "dqn", "--env", "CartPole-v1", *SHORT, "--logdir", str(tmp_path / "runs")]
        code = main([*arguments, "--export-dir", str(tmp_path / "exports"), *map(str, extra)])
        return code, capsys.readouterr().out

    return run


def test_two_runs_in_a_row_keep_both_exports_and_say_so(train, tmp_path):
    assert train("--seed", "1")[0] == 0
    first = tmp_path / "exports" / "dqn-CartPole-v1"
    first_score = load_policy(first).metadata["evaluation"]["mean_return"]
    code, printed = train("--seed", "2")
    second = tmp_path / "exports" / "dqn-CartPole-v1-2"
    assert code == 0 and load_policy(second).metadata["seed"] == 2
    assert load_policy(first).metadata["seed"] == 1  # the first run's policy is as it was
    strict = json.loads((second / "assets" / "tfrl.json").read_text(), parse_constant=pytest.fail)
    assert strict["observation_space"]["high"][1] is None  # CartPole's unbounded velocity: null, not Infinity
    assert f"): {second}" in printed
    assert f"kept beside it: {first} (return {first_score:.1f} at env step 500)" in printed


def test_replacing_an_export_is_the_user_s_explicit_choice(train, tmp_path):
    train("--seed", "1")
    code, _ = train("--seed", "2", "--replace-export")
    assert code == 0 and sorted(path.name for path in (tmp_path / "exports").iterdir()) == ["dqn-CartPole-v1"]
    assert load_policy(tmp_path / "exports" / "dqn-CartPole-v1").metadata["seed"] == 2


def test_a_resumed_run_exports_to_its_own_place_again(train, tmp_path):
    train("--seed", "1")
    train("--seed", "2")
    run_dir = next(path for path in (tmp_path / "runs").iterdir() if "-2-" in path.name)
    assert json.loads((run_dir / "run.json").read_text())["settings"]["export_name"] == "dqn-CartPole-v1-2"
    assert main(["train", "--resume", str(run_dir), "--steps", "1000", "--no-progress"]) == 0
    assert sorted(path.name for path in (tmp_path / "exports").iterdir()) == ["dqn-CartPole-v1", "dqn-CartPole-v1-2"]
    assert load_policy(tmp_path / "exports" / "dqn-CartPole-v1-2").metadata["env_steps"] == 1_000
