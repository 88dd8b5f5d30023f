import json
import re
import subprocess
import sys

import pytest

import tfrl
from tfrl.agents import ALGORITHMS, get_agent
from tfrl.cli import main, note_tuned_presets
from tfrl.training import load_run


def _error(capsys, *argv: str) -> str:
    """Run the CLI, expect exit code 2, return the one-line error."""
    assert main(list(argv)) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("tfrl: error: ") and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "dqn", "--env", "CartPol-v1"], "unknown environment id 'CartPol-v1': did you mean CartPole-v1"),
        (["train", "dqn", "--env", "Pendulum-v1"], "dqn needs a Discrete action space, but Pendulum-v1 has Box"),
        (
            ["train", "dqn", "--env", "CartPole-v1", "--set", "learning_rate=-0.001"],
            "learning_rate=-0.001 is invalid: expected a positive number",
        ),
        (
            ["train", "dqn", "--env", "CartPole-v1", "--set", "gamma=2"],
            "gamma=2.0 is invalid: expected a number in [0, 1]",
        ),
        (["train", "dqn", "--env", "CartPole-v1", "--set", "learning_rate"], "--set expects KEY=VALUE"),
        (["train", "dqn", "--env", "CartPole-v1", "--set", "lr=0.1"], "unknown config field 'lr'"),
        (
            ["train", "dqn", "--env", "CartPole-v1", "--preset", "fastest"],
            "unknown preset 'fastest' for DQNConfig; choose one of: default, tutorial",
        ),
        (["train", "dqm", "--env", "CartPole-v1"], "unknown algorithm 'dqm'; did you mean dqn?"),
        (["train", "dqn"], "train needs an algorithm and --env"),
        (["train", "dqn", "--env", "CartPole-v1", "--num-envs", "0"], "num_envs must be a positive integer, got 0"),
        (["train", "dqn", "--env", "CartPole-v1", "--config", "missing.toml"], "config file not found: missing.toml"),
        (["evaluate", "no/such/policy"], "no such policy directory: no/such/policy"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    assert expected in _error(capsys, *argv)
    assert not (tmp_path / "runs").exists(), "a refused run must not leave a run directory behind"


def test_invalid_toml_and_foreign_resume_dir(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("learning_rate = = 1")
    assert "is not valid TOML" in _error(capsys, "train", "dqn", "--env", "CartPole-v1", "--config", str(bad))
    assert "is not a tfrl run directory" in _error(capsys, "train", "--resume", str(tmp_path))
    assert "is not a tfrl run directory" in _error(capsys, "export", str(tmp_path))
    assert "not a SavedModel" in _error(capsys, "evaluate", str(tmp_path))


def test_config_file_and_overrides_reach_the_run(capsys, tmp_path):
    config_file = tmp_path / "dqn.toml"
    config_file.write_text("[config]\nbatch_size = 32\nhidden_sizes = [16, 16]\nlearning_rate = 1e-3\n")
    argv = [
        "train",
        "dqn",
        "--env",
        "CartPole-v1",
        "--config",
        str(config_file),
        "--set",
        "learning_rate=5e-4",
        "--steps",
        "300",
        "--eval-every",
        "300",
        "--eval-episodes",
        "2",
        "--no-progress",
        "--no-export",
        "--logdir",
        str(tmp_path / "runs"),
    ]
    assert main(argv) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert config["batch_size"] == 32 and config["hidden_sizes"] == [16, 16] and config["learning_rate"] == 5e-4
    assert "finished after 300 env steps" in capsys.readouterr().out
    assert "--resume continues a run with its saved config" in _error(
        capsys, "train", "--resume", str(run_dir), "--set", "gamma=0.5"
    )
    assert "its algorithm is 'dqn', not 'dqn2'" in _error(capsys, "train", "dqn2", "--resume", str(run_dir))


def test_evaluate_and_export_commands(capsys, cartpole_run, tmp_path):
    assert main(["evaluate", str(cartpole_run.export_path), "--episodes", "3"]) == 0
    printed = capsys.readouterr().out
    assert "mean return" in printed and "over 3 episodes on CartPole-v1" in printed
    out = tmp_path / "exported"
    assert main(["export", str(cartpole_run.run_dir), "--out", str(out)]) == 0
    metadata = json.loads((out / "assets" / "tfrl.json").read_text())
    assert metadata["env_steps"] == cartpole_run.env_steps
    assert metadata["evaluation"]["policy"] == "best" and metadata["evaluation"]["env_step"] == cartpole_run.best_step
    assert main(["export", str(cartpole_run.run_dir), "--out", str(out), "--final"]) == 0  # replaces its own export
    assert json.loads((out / "assets" / "tfrl.json").read_text())["evaluation"] is None


def test_export_never_deletes_a_directory_it_did_not_write(capsys, cartpole_run, tmp_path, monkeypatch):
    mydata = tmp_path / "mydata"
    mydata.mkdir()
    (mydata / "notes.txt").write_text("mine")
    error = _error(capsys, "export", str(cartpole_run.run_dir), "--out", str(mydata))
    assert "is a directory that is not a tfrl export" in error and str(mydata) in error
    assert (mydata / "notes.txt").read_text() == "mine" and len(list(mydata.iterdir())) == 1
    monkeypatch.chdir(mydata)
    assert "is a directory that is not a tfrl export" in _error(
        capsys, "export", str(cartpole_run.run_dir), "--out", "."
    )
    assert [path.name for path in mydata.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "exists and is not a directory" in _error(capsys, "export", str(cartpole_run.run_dir), "--out", str(a_file))
    assert a_file.read_text() == "x"


def test_list_shows_algorithms_presets_and_defaults(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("dqn", "double-dqn", "ddpg", "td3", "reinforce", "actor-critic", "ppo", "sac"))
    assert main(["list", "dqn"]) == 0
    out = capsys.readouterr().out
    assert "tutorial" in out and "learning_rate" in out and "rmsprop" in out and "0.0023" in out
    assert main(["list", "td3"]) == 0
    assert "True" in capsys.readouterr().out  # the td3 entry's td3=True default is shown
    assert "unknown algorithm 'dqnn'" in _error(capsys, "list", "dqnn")
    assert main(["list", "ppo"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "--num-envs" in line)
    cells = [cell.strip() for cell in re.split("[│|]", row) if cell.strip()]
    assert cells == ["--num-envs", "4", "8", "16", "4"]  # default, pendulum and lunarlander (their own), tutorial


def test_a_presets_run_defaults_apply_unless_the_caller_gives_its_own(tmp_path):
    for name in ALGORITHMS:
        agent_class, config_class = get_agent(name)
        for preset, settings in config_class.PRESET_RUN_DEFAULTS.items():
            assert preset in config_class.PRESETS and set(settings) <= set(agent_class.run_defaults)
    runs = {}
    for preset, num_envs in (("pendulum", None), ("pendulum", 2), ("default", None)):
        result = tfrl.train(
            "ppo", "Pendulum-v1", preset=preset, num_envs=num_envs, total_steps=16, eval_every=16, eval_episodes=1,
            logdir=tmp_path / f"{preset}-{num_envs}", export=False, progress=False,
        )  # fmt: skip
        runs[preset, num_envs] = load_run(result.run_dir)[0].num_envs
    assert runs == {("pendulum", None): 8, ("pendulum", 2): 2, ("default", None): 4}


def test_each_preset_tuned_on_an_env_is_named_when_a_run_there_takes_the_defaults(capsys):
    for name in ALGORITHMS:
        config_class = get_agent(name)[1]
        for preset, env_ids in config_class.PRESET_ENVS.items():
            assert preset in config_class.PRESETS and env_ids, (name, preset)
            for env_id in env_ids:
                assert preset in config_class.presets_for(env_id)
    assert get_agent("dqn")[1].presets_for("Taxi-v4") == ["taxi"]
    assert get_agent("dqn")[1].presets_for("CartPole-v1") == []
    note_tuned_presets("sac", "MountainCarContinuous-v0")
    note_tuned_presets("sac", "Pendulum-v1")
    assert capsys.readouterr().err.splitlines() == [
        "note: sac has a preset tuned for MountainCarContinuous-v0 (--preset mountaincar); this run takes the defaults"
    ]


def test_console_script_reports_errors_without_a_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "tfrl.cli", "train", "dqn", "--env", "Pendulum-v1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert completed.returncode == 2
    # one line, no traceback and no TensorFlow start-up noise
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("tfrl: error: dqn needs a Discrete action space, but Pendulum-v1 has Box")


def test_plot_writes_a_png_of_the_learning_curves(capsys, cartpole_run, tmp_path):
    out = tmp_path / "curve.png"
    assert main(["plot", str(cartpole_run.run_dir), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert f"wrote {out}" in capsys.readouterr().out
    assert "has no episodes.jsonl or evaluations.jsonl to plot" in _error(capsys, "plot", str(tmp_path))
