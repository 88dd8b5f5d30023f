"""What an export may change: a recurrent policy's state only when it acts, and on disk only what
tfrl wrote (never the run it came from, a user's files, or another machine's export in progress)."""

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfrl
from tfrl.agents import make_config
from tfrl.agents.a3c import A3CAgent
from tfrl.cli import main
from tfrl.envs import make_env
from tfrl.export import LOCK_FILE, METADATA_FILE, _namespace_tag
from tfrl.training import RunSettings, export_run

ZOO_RECURRENT = Path(__file__).parent.parent / "saved_models" / "a3c-rnn-CartPole-v1"


@pytest.fixture(scope="module")
def recurrent_export(tmp_path_factory):
    """An untrained a3c-rnn policy on Pendulum-v1, exported by this tfrl."""
    root = tmp_path_factory.mktemp("recurrent")
    env = make_env("Pendulum-v1")
    agent = A3CAgent(make_config("a3c-rnn", overrides={"rnn_units": 8}), env.observation_space, env.action_space)
    return export_run(agent, RunSettings("a3c-rnn", "Pendulum-v1"), root / "run", root / "export")


def _rollout(policy, observations, read_value: bool) -> list[np.ndarray]:
    policy.reset_state(len(observations[0]))
    actions = []
    for observation in observations:
        if read_value:  # of the batch, and of one row (another batch size must not reset the state)
            policy.value(observation)
            policy.value(observation[0])
        actions.append(policy(observation))
    return actions


@pytest.mark.parametrize("source", ["new", "zoo"])
def test_reading_a_recurrent_value_leaves_the_state_alone(recurrent_export, source):
    # the zoo's export was written before value() kept the state: load_policy must not advance it either
    policy = tfrl.load_policy(recurrent_export if source == "new" else ZOO_RECURRENT)
    size = policy.observation_shape[0]
    observations = np.random.default_rng(0).normal(size=(6, 3, size)).astype(np.float32)  # 6 steps of 3 episodes
    policy(observations[0])
    np.testing.assert_array_equal(policy.value(observations[1]), policy.value(observations[1]))
    np.testing.assert_array_equal(_rollout(policy, observations, True), _rollout(policy, observations, False))


def test_the_raw_value_signature_returns_the_state_it_was_given(recurrent_export):
    loaded = tf.saved_model.load(str(recurrent_export))
    observation = tf.constant(np.ones((2, 3), np.float32))
    state = loaded.signatures["action"](observation=observation, state=tf.zeros((2, 8)))["state"]
    outputs = loaded.signatures["value"](observation=observation, state=state)
    np.testing.assert_array_equal(outputs["state"].numpy(), state.numpy())


def _refused(capsys, *argv: str) -> str:
    """Run the CLI, expect exit code 2, return the one-line error."""
    assert main(list(argv)) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("tfrl: error: ") and "\n" not in message
    return message


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture
def export_holding_a_run(cartpole_run, tmp_path):
    """An earlier export at ``tmp_path/dqn-CartPole-v1`` with a run directory inside it."""
    export = tmp_path / "dqn-CartPole-v1"
    shutil.copytree(cartpole_run.export_path, export)
    shutil.copytree(cartpole_run.run_dir, export / "runs" / "run")
    return export, export / "runs" / "run"


def test_a_new_runs_export_may_not_hold_its_logdir(capsys, export_holding_a_run, tmp_path):
    export, _ = export_holding_a_run
    before = _snapshot(tmp_path)
    logdir = export / "runs"
    error = _refused(
        capsys,
        "train",
        "dqn",
        "--env",
        "CartPole-v1",
        "--steps",
        "500",
        "--logdir",
        str(logdir),
        "--export-dir",
        str(tmp_path),
        "--replace-export",  # without it the new run's policy goes beside the old export, replacing nothing
        "--no-progress",
    )
    assert f"cannot export to {export}: it holds the log directory (--logdir) {logdir}" in error
    assert _snapshot(tmp_path) == before


def test_a_resumed_or_exported_run_may_not_be_inside_its_export(capsys, export_holding_a_run, tmp_path):
    export, run_dir = export_holding_a_run
    before = _snapshot(tmp_path)
    resumed = _refused(capsys, "train", "--resume", str(run_dir), "--export-dir", str(tmp_path), "--no-progress")
    exported = _refused(capsys, "export", str(run_dir), "--out", str(export))
    for error in (resumed, exported):
        assert f"cannot export to {export}: it holds the run directory {run_dir}" in error
    assert "holds the run directory" in _refused(capsys, "export", str(run_dir), "--out", str(run_dir / ".." / ".."))
    assert _snapshot(tmp_path) == before


def _user_files(export: Path) -> dict[str, bytes]:
    (export / "NOTES.txt").write_text("my notes")
    (export / "clips" / "best").mkdir(parents=True)
    (export / "clips" / "best" / "episode.gif").write_bytes(b"GIF89a\x00\x01")
    (export / "empty").mkdir()
    return {"NOTES.txt": b"my notes", "clips/best/episode.gif": b"GIF89a\x00\x01"}


def test_re_export_keeps_the_users_files_and_replaces_its_own(capsys, cartpole_run, tmp_path):
    out = tmp_path / "policy"
    assert main(["export", str(cartpole_run.run_dir), "--out", str(out)]) == 0
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert {"saved_model.pb", "q_network.keras", "assets/tfrl.json"} <= set(metadata["files"])
    assert all((out / name).is_file() for name in metadata["files"])
    (out / "stale.keras").write_text("a network tfrl wrote once")
    (out / METADATA_FILE).write_text(json.dumps({**metadata, "files": [*metadata["files"], "stale.keras"]}))
    users = _user_files(out)
    assert main(["export", str(cartpole_run.run_dir), "--out", str(out), "--final"]) == 0
    assert {name: (out / name).read_bytes() for name in users} == users and (out / "empty").is_dir()
    assert not (out / "stale.keras").exists()
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["evaluation"] is None and "NOTES.txt" not in metadata["files"]  # the new export, still the user's


def test_re_export_keeps_what_was_added_to_an_export_without_a_files_list(capsys, cartpole_run, tmp_path):
    out = tmp_path / "zoo-entry"
    shutil.copytree(cartpole_run.export_path, out)
    metadata = json.loads((out / METADATA_FILE).read_text())
    del metadata["files"]  # as tfrl wrote exports before it listed them, the shipped zoo's among them
    (out / METADATA_FILE).write_text(json.dumps(metadata))
    (out / "README.md").write_text("# a zoo card")
    users = {"README.md": b"# a zoo card", **_user_files(out)}
    assert main(["export", str(cartpole_run.run_dir), "--out", str(out)]) == 0
    assert {name: (out / name).read_bytes() for name in users} == users
    assert "files" in json.loads((out / METADATA_FILE).read_text())


def test_a_user_file_the_new_export_would_overwrite_is_refused(capsys, cartpole_run, tmp_path):
    out = tmp_path / "policy"
    shutil.copytree(cartpole_run.export_path, out)
    metadata = json.loads((out / METADATA_FILE).read_text())
    metadata["files"].remove("q_network.keras")  # so the q_network.keras there is someone else's
    (out / METADATA_FILE).write_text(json.dumps(metadata))
    before = _snapshot(tmp_path)
    error = _refused(capsys, "export", str(cartpole_run.run_dir), "--out", str(out))
    assert f"cannot export to {out}: tfrl did not write its q_network.keras" in error
    assert _snapshot(tmp_path) == before


def _holder(parent: Path, name: str, age_s: float = 0.0) -> Path:
    """A holder directory as an export elsewhere makes one: a lock file inside, last touched ``age_s`` ago."""
    holder = parent / name
    (holder / "export").mkdir(parents=True)
    (holder / LOCK_FILE).touch()
    os.utime(holder, (time.time() - age_s, time.time() - age_s))
    return holder


def test_an_export_removes_only_abandoned_holders_beside_it(capsys, cartpole_run, tmp_path):
    tag, foreign, day = _namespace_tag(), "0badf00d", 24 * 3600
    assert tag != foreign
    live = _holder(
        tmp_path, f".policy-new-{foreign}-99999997-abcdefgh", age_s=2 * day
    )  # a locked one of another container
    young = _holder(tmp_path, f".policy-new-{foreign}-99999998-abcdefgh")  # unlocked, but maybe just made
    stale = _holder(tmp_path, f".policy-old-{foreign}-3-abcdefgh", age_s=2 * day)  # unlocked and old
    dead = _holder(tmp_path, f".policy-new-{tag}-99999999-abcdefgh")  # this namespace's, its process gone
    with open(live / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert main(["export", str(cartpole_run.run_dir), "--out", str(tmp_path / "policy")]) == 0
        assert main(["export", str(cartpole_run.run_dir), "--out", str(tmp_path / "policy")]) == 0  # the swap too
    assert live.is_dir() and young.is_dir() and not stale.exists() and not dead.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["policy", live.name, young.name])


def test_an_export_name_near_the_file_name_limit(capsys, cartpole_run, tmp_path):
    out = tmp_path / ("p" * 250)
    for _ in range(2):  # a new export, then a swap
        assert main(["export", str(cartpole_run.run_dir), "--out", str(out)]) == 0
    assert tfrl.load_policy(out).metadata["env_id"] == "CartPole-v1" and os.listdir(tmp_path) == [out.name]
    error = _refused(capsys, "export", str(cartpole_run.run_dir), "--out", str(tmp_path / ("p" * 256)))
    assert "a name in it is 256 bytes long, and a file name may have at most 255" in error
    assert os.listdir(tmp_path) == [out.name]
