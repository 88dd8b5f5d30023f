"""What a run prints (issue 26, part 5): a live line that keeps the step count at 80 columns on a
terminal, one line per evaluation in a log file or with --no-progress, and where a resume continues from."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import numpy as np

from tfrl.cli import main
from tfrl.logger import evaluation_line, progress_line

RUN = ["train", "dqn", "--env", "CartPole-v1", "--steps", "3000", "--eval-every", "1000", "--eval-episodes", "2"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_the_live_line_drops_what_does_not_fit_but_never_the_step_count():
    full = progress_line(80, 12_000, 40_000, 54.8, 162.5, 960.0, 12.0)
    assert len(full) <= 80 and full.startswith("━")
    assert full.endswith("12,000/40,000  return 54.8  eval 162.5  960 steps/s  0:00:12")
    narrower = [progress_line(width, 12_000, 40_000, 54.8, 162.5, 960.0, 12.0) for width in (60, 50)]
    assert narrower[0].endswith("  12,000/40,000  return 54.8  eval 162.5  0:00:12")  # the speed went first
    assert narrower[1].endswith("  12,000/40,000  eval 162.5  0:00:12")  # then the training return
    assert progress_line(30, 12_000, 40_000, 54.8, 162.5, 960.0, 12.0).endswith("  12,000/40,000")
    assert progress_line(8, 12_000, 40_000, 54.8, 162.5, 960.0, 12.0) == "12,000/40,000"
    assert evaluation_line(5_000, 40_000, np.array([150.0, 174.2]), 174.0, 960.0, 72.0) == (
        "step 5,000/40,000  eval 162.1 ± 12.1  best 174.0  960 steps/s  0:01:12"
    )


def _on_a_terminal(arguments, cwd, columns=80):
    """Run ``tfrl ARGUMENTS`` with stdout on a pseudo-terminal ``columns`` wide; what it showed, line by line."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environment = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tfrl.cli", *arguments],
        cwd=cwd,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**environment, "TERM": "xterm-256color"},
    )
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:  # the terminal closed with the process
            chunk = b""
        if not chunk:
            break
        shown += chunk
    process.wait(timeout=60)
    os.close(leader)
    return process.returncode, [line for line in re.split(r"[\r\n]", ANSI.sub("", shown.decode())) if line.strip()]


def test_at_80_columns_the_terminal_shows_the_bar_and_the_step_count(tmp_path):
    code, lines = _on_a_terminal([*RUN, "--logdir", "runs", "--export-dir", "exports"], tmp_path)
    assert code == 0
    live = [line for line in lines if "━" in line or "─" in line]
    assert live and all(re.search(r"\d[\d,]*/3,000", line) for line in live)
    assert all(len(line) <= 80 for line in live)
    assert any(re.search(r"3,000/3,000 .*return .*eval .*\d:\d\d:\d\d", line) for line in live)
    assert sum(line.startswith("step ") for line in lines) == 3  # the evaluations, printed above it


def test_in_a_log_file_each_evaluation_is_one_line_as_it_happens(tmp_path):
    logged = subprocess.run(
        [sys.executable, "-m", "tfrl.cli", *RUN, "--logdir", "runs", "--export-dir", "exports"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert logged.returncode == 0, logged.stderr
    evaluations = [line for line in logged.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in evaluations] == ["1,000/3,000", "2,000/3,000", "3,000/3,000"]
    assert all(
        re.fullmatch(r"step \S+  eval -?[\d.]+ ± [\d.]+  best -?[\d.]+  [\d,]+ steps/s  \d:\d\d:\d\d", line)
        for line in evaluations
    )
    assert "━" not in logged.stdout and "\x1b[" not in logged.stdout  # no bar, no escape codes in a file
    assert "run: runs/dqn-CartPole-v1-0-" in logged.stdout


def test_a_resume_says_the_step_and_checkpoint_it_continues_from(tmp_path, capsys):
    arguments = [*RUN, "--no-progress", "--logdir", str(tmp_path / "runs"), "--no-export"]
    assert main(arguments) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--steps", "4000", "--no-progress"]) == 0
    printed = capsys.readouterr()
    checkpoint = run_dir / "checkpoints" / "ckpt-3000"
    assert f"tfrl: resuming {run_dir} from its checkpoint at env step 3000 ({checkpoint})" in printed.err
    assert [line.split()[1] for line in printed.out.splitlines() if line.startswith("step ")] == ["4,000/4,000"]
