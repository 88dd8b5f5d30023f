"""A run SIGKILLed at random moments (once while a checkpoint is being written, once while the final
export is) and resumed each time ends as if it had never been killed: exactly its env steps, a
replay memory of all of them, episodes numbered without gaps, and an export that loads."""

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfrl.export import load_policy
from tfrl.logger import read_jsonl
from tfrl.training import restore_run

ROOT = Path(__file__).resolve().parent.parent
STEPS = 8_000


def _start(tmp_path: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tfrl.cli", *argv],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "stderr.txt").open("a"),
    )


def _wait(condition, process: subprocess.Popen, limit: float = 120.0):
    """Poll ``condition`` every millisecond until it holds; the process must still be running."""
    deadline = time.monotonic() + limit
    while not (found := condition()):
        assert process.poll() is None, f"exited with {process.returncode} before the kill"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.001)
    return found


def _complete_checkpoints(directory: Path) -> list[int]:
    names = set(os.listdir(directory)) if directory.is_dir() else set()
    steps = [int(match.group(1)) for name in names if (match := re.fullmatch(r"ckpt-(\d+)\.index", name))]
    return sorted((step for step in steps if f"state-{step}.npz" in names), reverse=True)


def _writing_checkpoint(directory: Path, before: set[str]) -> bool:
    """A checkpoint's temporary file or directory is on disk that was not there ``before`` (a kill
    during TensorFlow's half leaves its ``ckpt-N_temp`` behind)."""
    return any(name.endswith((".tmp.npz", "_temp")) for name in set(os.listdir(directory)) - before)


def _logged_past(run_dir: Path, pid: int, step: int) -> bool:
    """This process's logger exists (its TensorBoard file names its pid; the stale tail of the
    episode log is cut by then) and it logged an episode past ``step``."""
    if not list((run_dir / "tensorboard").glob(f"events.out.tfevents.*.{pid}.*")):
        return False
    try:
        return any(row["step"] > step for row in read_jsonl(run_dir / "episodes.jsonl"))
    except ValueError:  # a line read while it was being written
        return False


def _await(moment: str, process: subprocess.Popen, run_dir: Path, after: int, rng: random.Random) -> None:
    """Return at the moment to kill: while the final export is written, while a checkpoint is, or at
    a random env step past the checkpoint the process resumed from (``after``). Random steps rather
    than random delays: a faster machine does not finish the run before the kills."""
    checkpoints, exports = run_dir / "checkpoints", run_dir.parent.parent / "exports"
    if moment == "final export":
        _wait(lambda: next(exports.glob(".dqn-CartPole-v1-new-*"), None), process)
        return
    target = after if moment == "checkpoint write" else after + rng.randrange(300, 1_500)
    _wait(lambda: _logged_past(run_dir, process.pid, target) and _complete_checkpoints(checkpoints), process)
    if moment == "checkpoint write":
        before = set(os.listdir(checkpoints))
        _wait(lambda: _writing_checkpoint(checkpoints, before), process)


@pytest.mark.slow
def test_a_run_killed_at_random_moments_resumes_to_the_same_end(tmp_path):
    rng = random.Random(0)
    argv = ["train", "dqn", "--env", "CartPole-v1", "--steps", str(STEPS), "--no-early-stop", "--no-progress"]
    argv += ["--checkpoint-every", "500", "--eval-every", "2000", "--logdir", "runs", "--export-dir", "exports"]
    process, resumed_from = _start(tmp_path, *argv), 0
    run_dir = _wait(lambda: next((tmp_path / "runs").glob("dqn-*"), None), process)
    for moment in ("random", "checkpoint write", "random", "final export"):
        _await(moment, process, run_dir, resumed_from, rng)
        assert process.poll() is None, f"the run ended before the kill during {moment}"
        process.send_signal(signal.SIGKILL)
        process.wait()
        resumed_from = _complete_checkpoints(run_dir / "checkpoints")[0]
        process = _start(tmp_path, "train", "--resume", str(run_dir), "--no-progress")
    assert process.wait(timeout=300) == 0, (tmp_path / "stderr.txt").read_text()

    _, agent, _ = restore_run(run_dir)
    assert agent.env_steps == STEPS and len(agent.replay) == STEPS
    numbers = [row["episode"] for row in read_jsonl(run_dir / "episodes.jsonl")]
    assert numbers == list(range(1, len(numbers) + 1))
    export = tmp_path / "exports" / "dqn-CartPole-v1"
    policy = load_policy(export)
    assert np.isfinite(policy.metadata["evaluation"]["mean_return"])
    assert policy(np.zeros(4, np.float32)) in (0, 1)
    assert not list(export.parent.glob(".dqn-CartPole-v1-*")), "a killed export left its staging directory"
