"""A run you can trust: the best policy is shipped, nothing foreign is deleted, damaged and
non-finite inputs are refused with one clear line. Each test here failed on the code before it."""

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tfrl
from tfrl.cli import main
from tfrl.errors import ConfigError, ExportError, TrainingDiverged
from tfrl.export import is_export, load_policy
from tfrl.logger import read_jsonl
from tfrl.training import load_run


def _error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("tfrl: error: ") and "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def collapsing_run(tmp_path_factory):
    """The issue's example: DQN on CartPole evaluates well at 2,000 steps and worse at 4,000."""
    root = tmp_path_factory.mktemp("collapse")
    return tfrl.train(
        "dqn",
        "CartPole-v1",
        seed=0,
        total_steps=4_000,
        eval_every=1_000,
        checkpoint_every=1_000,
        logdir=root / "runs",
        export_dir=root / "exports",
        progress=False,
    )


def test_the_export_is_the_best_evaluated_policy_not_the_last(collapsing_run):
    means = [row["mean"] for row in read_jsonl(collapsing_run.run_dir / "evaluations.jsonl")]
    best_index = int(np.argmax(means))
    assert means[-1] < means[best_index], f"this seed no longer collapses: {means}"
    metadata = json.loads((collapsing_run.export_path / "assets" / "tfrl.json").read_text())
    assert metadata["evaluation"]["mean_return"] == means[best_index] == collapsing_run.best_return
    assert metadata["evaluation"]["env_step"] == (best_index + 1) * 1_000 == collapsing_run.best_step
    # the shipped policy replays the best evaluation exactly: same seeds, same episodes
    settings, _ = load_run(collapsing_run.run_dir)
    returns = tfrl.evaluate(load_policy(collapsing_run.export_path), "CartPole-v1", 20, settings.seed + 1_000_000)
    assert float(np.mean(returns)) == means[best_index]


def _copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    return copy


def test_export_final_ships_the_last_weights(collapsing_run, tmp_path):
    run = _copy_run(collapsing_run.run_dir, tmp_path)
    result = tfrl.train(resume=run, export_dir=tmp_path / "final", export_final=True, progress=False)
    policy = load_policy(result.export_path)
    last_mean = read_jsonl(run / "evaluations.jsonl")[-1]["mean"]
    assert policy.metadata["evaluation"] == {"policy": "final", "mean_return": last_mean}


def test_a_resumed_run_keeps_its_best_and_its_export_place(collapsing_run, tmp_path):
    saved = json.loads((collapsing_run.run_dir / "run.json").read_text())["settings"]
    assert saved["export_dir"] == str(collapsing_run.export_path.parent)
    copy = _copy_run(collapsing_run.run_dir, tmp_path)
    result = tfrl.train(resume=copy, total_steps=4_500, eval_every=1_000, progress=False)
    assert result.export_path == collapsing_run.export_path  # not ./saved_models
    assert result.best_return >= collapsing_run.best_return and result.best_step >= collapsing_run.best_step


def test_exports_are_readable_by_other_users(collapsing_run):
    mode = stat.S_IMODE(collapsing_run.export_path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask
    assert not [path for path in collapsing_run.export_path.parent.iterdir() if path.name.startswith(".")]


def test_bad_export_targets_are_refused_before_training(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    common = ["train", "dqn", "--env", "CartPole-v1", "--steps", "100", "--logdir", str(tmp_path / "runs")]
    assert "is a file, not a directory" in _error(capsys, *common, "--export-dir", str(a_file))
    foreign = tmp_path / "exports" / "dqn-CartPole-v1"
    foreign.mkdir(parents=True)
    (foreign / "data.csv").write_text("1,2")
    assert "not a tfrl export" in _error(capsys, *common, "--export-dir", str(tmp_path / "exports"))
    assert a_file.read_text() == "keep me" and (foreign / "data.csv").exists()
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made


def test_a_diverging_run_stops_with_one_line_and_keeps_the_finite_checkpoint(capsys, tmp_path):
    argv = ["train", "dqn", "--env", "CartPole-v1", "--steps", "20000", "--no-progress", "--eval-every", "1000"]
    argv += ["--checkpoint-every", "1000", "--logdir", str(tmp_path / "runs"), "--export-dir", str(tmp_path / "out")]
    error = _error(capsys, *argv, "--set", "learning_rate=1e30", "--set", "learning_starts=500")
    assert "training diverged at env step" in error
    assert "the last finite checkpoint" in error or "no checkpoint was written" in error
    run_dir = next((tmp_path / "runs").iterdir())
    for evaluation in read_jsonl(run_dir / "evaluations.jsonl"):
        assert np.isfinite(evaluation["mean"])
    export = tmp_path / "out" / "dqn-CartPole-v1"
    if export.exists():  # the best policy evaluated before the divergence was shipped
        assert np.isfinite(load_policy(export).q_values(np.zeros(4, np.float32))).all()


def test_diverged_is_a_tfrl_error():
    assert issubclass(TrainingDiverged, tfrl.TfrlError)


def test_non_finite_observations_are_refused_by_load_policy_and_by_the_savedmodel(collapsing_run, tmp_path):
    policy = load_policy(collapsing_run.export_path)
    with pytest.raises(ExportError, match="NaN or infinite"):
        policy(np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ExportError, match=r"row\(s\) \[1\]"):
        policy(np.array([[0.0] * 4, [np.inf, 0, 0, 0]]))
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        policy = tf.saved_model.load({str(collapsing_run.export_path)!r})
        print(policy.action(np.zeros((1, 4), np.float32)).numpy())
        try:
            policy.action(np.array([[0, np.nan, 0, 0]], np.float32))
        except tf.errors.InvalidArgumentError as error:
            print("refused:", "NaN or infinite" in str(error))
    """)
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "refused: True" in output


@pytest.fixture
def damaged_copy(collapsing_run, tmp_path):
    copy = tmp_path / "export"
    subprocess.run(["cp", "-r", str(collapsing_run.export_path), str(copy)], check=True)
    return copy


def test_a_truncated_saved_model_is_one_clear_line(capsys, damaged_copy):
    graph = damaged_copy / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[:200])
    assert "is a damaged export" in _error(capsys, "evaluate", str(damaged_copy))


def test_missing_variables_is_one_clear_line(capsys, damaged_copy):
    subprocess.run(["rm", "-r", str(damaged_copy / "variables")], check=True)
    assert "variables/ directory is missing" in _error(capsys, "evaluate", str(damaged_copy))


def test_metadata_without_the_observation_space_is_one_clear_line(capsys, damaged_copy):
    metadata_path = damaged_copy / "assets" / "tfrl.json"
    metadata = json.loads(metadata_path.read_text())
    del metadata["observation_space"]
    metadata_path.write_text(json.dumps(metadata))
    assert "is damaged: it has no observation_space" in _error(capsys, "evaluate", str(damaged_copy))
    assert is_export(damaged_copy)  # still ours: a new export may replace it


def test_a_truncated_checkpoint_falls_back_and_says_so(collapsing_run, tmp_path, capsys):
    copy = _copy_run(collapsing_run.run_dir, tmp_path)
    newest = max((copy / "checkpoints").glob("state-*.npz"), key=lambda path: int(path.stem.split("-")[1]))
    newest.write_bytes(newest.read_bytes()[:100])
    (copy / "checkpoints" / "checkpoint").unlink(missing_ok=True)
    result = tfrl.train(resume=copy, total_steps=4_000, export=False, progress=False)
    assert "skipped checkpoint at step 4000" in capsys.readouterr().err
    assert result.env_steps == 4_000  # resumed from step 3,000 and trained the lost 1,000 again


def test_impossible_configs_are_refused():
    from tfrl.agents.ddpg import DDPGConfig
    from tfrl.agents.dqn import DQNConfig

    with pytest.raises(ConfigError, match=r"batch_size=512 .*buffer_size=100"):
        DQNConfig(batch_size=512, buffer_size=100)
    with pytest.raises(ConfigError, match=r"batch_size=128 .*buffer_size=10"):
        DDPGConfig(buffer_size=10)


def test_too_many_a3c_workers_are_refused_or_warned_about():
    from tfrl.agents.a3c import A3CConfig

    with pytest.raises(ConfigError, match=r"workers=500 .*memory"):
        A3CConfig(workers=500)
    cores = os.cpu_count() or 1
    with pytest.warns(UserWarning, match=f"more A3C workers \\({cores + 1}\\) than CPU cores"):
        A3CConfig(workers=cores + 1).warn_about_machine()


def test_entry_points_quiet_tensorflow_before_importing_it():
    root = Path(__file__).parent.parent
    for path in sorted([*root.glob("scripts/*.py"), *root.glob("benchmarks/*.py")]):
        source = path.read_text()
        if "import tensorflow" not in source and "from tfrl" not in source and "import tfrl" not in source:
            continue
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        first_import = next(line for line in imports if not line.startswith("from __future__"))
        assert first_import.startswith("import tfrl.quiet"), f"{path.name} imports {first_import!r} first"
    result = subprocess.run(
        [sys.executable, "-c", "import tfrl.quiet, tensorflow, tfrl.training"],
        capture_output=True,
        text=True,
        check=True,
        env={key: value for key, value in os.environ.items() if not key.startswith("TF_")},
    )
    assert result.stderr == ""


def test_a_negative_seed_and_an_unknown_activation_are_one_clear_line(capsys, tmp_path):
    common = ["train", "dqn", "--env", "CartPole-v1", "--steps", "100", "--logdir", str(tmp_path)]
    assert "seed must be an integer from 0 to" in _error(capsys, *common, "--seed", "-1")
    assert "activation='bogus' is invalid" in _error(capsys, *common, "--set", "activation=bogus")


def test_load_policy_refuses_ragged_and_float32_overflowing_observations(collapsing_run):
    policy = load_policy(collapsing_run.export_path)
    with pytest.raises(ExportError, match="not an array of numbers of one shape"):
        policy([[0.0, 0.0], [0.0]])
    with pytest.raises(ExportError, match=r"NaN or infinite values \(in float32\)"):
        policy(np.array([1e40, 0.0, 0.0, 0.0]))


def test_a_killed_tensorflow_checkpoint_write_leaves_nothing_behind(tmp_path):
    from tfrl.agents.dqn import DQNConfig
    from tfrl.checkpoint import Checkpointer
    from tfrl.training import RunSettings, build_agent

    agent = build_agent(RunSettings("dqn", "CartPole-v1"), DQNConfig())
    leftover = tmp_path / "ckpt-500_temp"
    leftover.mkdir()
    (leftover / "part-00000-of-00001.data-00000-of-00001.tempstate123").write_bytes(b"half")
    Checkpointer(tmp_path, agent).save(1_000)
    assert not leftover.exists() and Checkpointer(tmp_path, agent).steps() == [1_000]
