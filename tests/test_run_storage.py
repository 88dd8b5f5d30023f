"""A run directory survives what disks and people do to it (issue 25, items 5, 6, 9, 10, 12): torn log
lines, kills while a log is rewritten, a full disk, damaged checkpoints, two processes at once."""

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tfrl
import tfrl.checkpoint
import tfrl.rundir
from tfrl.checkpoint import Checkpointer
from tfrl.cli import main
from tfrl.errors import CheckpointError, StorageError
from tfrl.export import load_policy
from tfrl.logger import RunLogger, plot_run, read_jsonl
from tfrl.training import RunSettings, _new_run_dir

SHORT = dict(total_steps=1_500, eval_every=500, eval_episodes=2, checkpoint_every=500, progress=False)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A 1,500-step DQN run on CartPole-v1 with a checkpoint every 500 steps; tests copy it before changing it."""
    root = tmp_path_factory.mktemp("short")
    return tfrl.train("dqn", "CartPole-v1", logdir=root / "runs", export=False, **SHORT).run_dir


@pytest.fixture
def run_copy(short_run, tmp_path):
    return shutil.copytree(short_run, tmp_path / short_run.name)


def test_a_torn_last_log_line_is_dropped_by_resume_and_plot(run_copy, capsys):
    rows = {name: read_jsonl(run_copy / name) for name in ("episodes.jsonl", "evaluations.jsonl")}
    for name in rows:
        with (run_copy / name).open("a") as log:
            log.write('{"step": 1500, "episode"')  # a kill (or a full disk) in the middle of a write
    assert [read_jsonl(run_copy / name) for name in rows] == list(rows.values())
    plot_run(run_copy)  # matplotlib is a test dependency
    result = tfrl.train(resume=run_copy, total_steps=2_000, progress=False)
    assert result.env_steps >= 2_000
    for name in rows:
        lines = (run_copy / name).read_text().splitlines()
        assert all(json.loads(line) for line in lines)  # the torn line went; nothing else was lost
        assert [json.loads(line) for line in lines][: len(rows[name])] == rows[name]


def test_a_damaged_row_before_the_last_is_named_not_skipped(run_copy):
    path = run_copy / "episodes.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(CheckpointError, match=r"episodes.jsonl line 2 is not a JSON row"):
        read_jsonl(path)


def test_a_kill_while_resume_cuts_a_log_back_leaves_the_whole_old_log(run_copy, monkeypatch):
    path = run_copy / "episodes.jsonl"
    before = path.read_text()

    def killed(*args):
        raise KeyboardInterrupt  # the instant between writing the new log and renaming it over the old

    monkeypatch.setattr(tfrl.rundir.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        RunLogger(run_copy, 2_000, start_step=500, progress=False)  # cuts the rows after step 500
    assert path.read_text() == before


def test_a_second_process_cannot_train_a_run_that_is_in_use(run_copy, capsys):
    holding = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from tfrl.rundir import RunLock; "
            f"RunLock({str(run_copy)!r}).acquire(); print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holding.stdout.readline().strip() == "held"
        episodes = (run_copy / "episodes.jsonl").read_text()
        assert main(["train", "--resume", str(run_copy), "--steps", "2000", "--no-progress"]) == 2
        message = capsys.readouterr().err
        assert f"{run_copy} is in use by tfrl process {holding.pid} on" in message
        assert "Traceback" not in message
        assert (run_copy / "episodes.jsonl").read_text() == episodes  # nothing written
    finally:
        holding.kill()
        holding.wait()
    result = tfrl.train(resume=run_copy, total_steps=2_000, progress=False)  # the dead holder's lock is gone
    assert result.env_steps >= 2_000


def test_a_full_disk_mid_run_stops_with_one_line_the_best_policy_exported_and_no_leftovers(tmp_path, monkeypatch):
    savez, calls = np.savez, []

    def full_disk(file, *args, **kwargs):
        calls.append(file)
        if len(calls) < 2:
            return savez(file, *args, **kwargs)
        with open(file, "wb") as partial:
            partial.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfrl.checkpoint.np, "savez", full_disk)
    with pytest.raises(StorageError) as stopped:
        tfrl.train("dqn", "CartPole-v1", logdir=tmp_path / "runs", export_dir=tmp_path / "exports", **SHORT)
    message = str(stopped.value)
    run_dir = next((tmp_path / "runs").iterdir())
    assert "cannot write the checkpoint at step 1000" in message and "No space left on device" in message
    assert "the last complete checkpoint is at step 500" in message
    assert f"continue with: tfrl train --resume {run_dir}" in message
    policy = load_policy(tmp_path / "exports" / "dqn-CartPole-v1")  # the best policy, exported
    assert policy.metadata["evaluation"]["env_step"] in (500, 1000)
    names = {path.name for path in (run_dir / "checkpoints").iterdir()}
    assert {name.split(".")[0] for name in names} == {"ckpt-500", "state-500"}  # no half, no temp


def test_a_log_write_on_a_full_disk_is_a_storage_error(tmp_path):
    logger = RunLogger(tmp_path, 100, progress=False)
    logger.episodes_file.close()
    logger.episodes_file = open("/dev/full", "w")  # a file whose writes fail as on a full disk
    with pytest.raises(StorageError, match="cannot write /dev/full: No space left on device"):
        logger.episode(10, 1.0, 10)


def test_damaged_checkpoints_do_not_count_toward_the_ones_kept(short_run, tmp_path):
    from tfrl.training import restore_run

    run_dir = shutil.copytree(short_run, tmp_path / "run")
    _settings, agent, _best = restore_run(run_dir)
    checkpointer = Checkpointer(run_dir / "checkpoints", agent, max_to_keep=3)
    assert checkpointer.steps() == [1500, 1000, 500]
    for step in (1600, 1700):  # complete by name, unreadable
        (run_dir / "checkpoints" / f"state-{step}.npz").write_bytes(b"not an archive")
        (run_dir / "checkpoints" / f"ckpt-{step}.index").write_bytes(b"not an index")
    checkpointer.save(1800)
    assert checkpointer.steps() == [1800, 1700, 1600, 1500, 1000]  # two good ones kept besides the new one
    assert checkpointer.restore() == 1800
    for name in ("state-1800.npz", "ckpt-1800.index"):
        (run_dir / "checkpoints" / name).unlink()
    assert checkpointer.restore() == 1500


def test_runs_started_in_the_same_second_take_suffixes(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda *args: "20261202-120000")
    exists = Path.exists

    def slow_exists(path, *args, **kwargs):  # a network filesystem: a look takes a while
        time.sleep(0.02)
        return exists(path, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", slow_exists)
    settings = RunSettings(algorithm="dqn", env_id="CartPole-v1", seed=0)
    made, failed = [], []
    start = threading.Barrier(30)

    def start_run():
        start.wait()
        try:
            made.append(_new_run_dir(tmp_path, settings))
        except Exception as error:  # noqa: BLE001 — any failure is the bug
            failed.append(error)

    threads = [threading.Thread(target=start_run) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    assert len(set(made)) == 30 and all(path.is_dir() for path in made)


def test_rewritten_files_never_leave_a_temporary_file_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    target.write_text("old")

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfrl.rundir.os, "fsync", full)
    with pytest.raises(StorageError, match=r"cannot write .*run.json: No space left on device"):
        tfrl.rundir.replace_text(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["run.json"]
