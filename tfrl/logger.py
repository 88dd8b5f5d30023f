"""What a run records: a progress bar, TensorBoard scalars, and JSONL files of every episode and evaluation.

``episodes.jsonl`` has one row per finished training episode, ``evaluations.jsonl`` one per
evaluation; both carry the env step, so a resumed run drops the rows written after its checkpoint.
``events.jsonl`` keeps what happened to the run besides learning (a worker that died and was
replaced), each also printed to stderr; it is never cut back, since those events did happen.

Every row is strict JSON (no NaN or Infinity). A last line cut short (a kill or a full disk in the
middle of a write) is a row that was never finished: readers drop it, and a resume writes the log
anew without it, through a temporary file and a rename, so the log is never emptied.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.scalar.metadata import create_summary_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util.tensor_util import make_tensor_proto

from tfrl.errors import CheckpointError, ConfigError, StorageError
from tfrl.rundir import replace_text

EPISODES_FILE = "episodes.jsonl"
EVALUATIONS_FILE = "evaluations.jsonl"
EVENTS_FILE = "events.jsonl"
SCALAR_METADATA = create_summary_metadata(display_name="", description="")


def read_jsonl(path: str | Path) -> list[dict]:
    """All complete rows of a JSONL file (a torn last line is dropped); an empty list when it does not exist."""
    return _read_rows(Path(path))[0]


def _read_rows(path: Path) -> tuple[list[dict], bool]:
    """The complete rows of ``path``, and whether its last line was torn (cut short while written).

    Only the last line can be torn: a row that does not parse before it means the file was damaged
    some other way, a ``CheckpointError`` naming the file and line.
    """
    if not path.exists():
        return [], False
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                return rows, True
            raise CheckpointError(f"{path} line {number} is not a JSON row ({error.msg}); the log is damaged") from None
    return rows, False


def _cut_back(path: Path, step: int) -> list[dict]:
    """Keep only rows logged at or before ``step`` (a killed run's lost tail goes, and a torn last line);
    the file is replaced by a rename, never emptied in place. Returns the rows kept."""
    rows, torn = _read_rows(path)
    kept = [row for row in rows if row["step"] <= step]
    if torn or len(kept) < len(rows):
        replace_text(path, "".join(_json_line(row) for row in kept))
    return kept


def _json_line(row: Mapping) -> str:
    """``row`` as one line of strict JSON: a NaN or infinity here is a bug upstream, never written."""
    return json.dumps(row, allow_nan=False) + "\n"


def _append(file: TextIO, row: Mapping) -> None:
    """Write ``row`` and flush it (a killed run's log shows how far it got); a full disk is a ``StorageError``."""
    try:
        file.write(_json_line(row))
        file.flush()
    except OSError as error:
        raise StorageError(f"cannot write {file.name}: {error.strerror or error}") from None


class RunLogger:
    """Writes a run's episodes, evaluations and training metrics, and draws its progress bar.

    TensorBoard scalars are written by TensorBoard's own event writer, as ``tf.summary.scalar``
    writes them, without a TensorFlow op: an eager summary call costs ~1 ms, as much as 50 CartPole
    steps, and every episode logs two. The writer buffers events: ``flush`` is when TensorBoard sees them.
    """

    def __init__(self, run_dir: Path, total_steps: int, start_step: int = 0, progress: bool = True):
        self.run_dir = Path(run_dir)
        episodes = _cut_back(self.run_dir / EPISODES_FILE, start_step)
        evaluations = _cut_back(self.run_dir / EVALUATIONS_FILE, start_step)
        self.episodes_file = (self.run_dir / EPISODES_FILE).open("a")
        self.evaluations_file = (self.run_dir / EVALUATIONS_FILE).open("a")
        self.writer = EventFileWriter(str(self.run_dir / "tensorboard"))
        self.episode_count = len(episodes)
        self.recent_returns: list[float] = [row["return"] for row in episodes[-20:]]
        self.last_evaluation: float | None = evaluations[-1]["mean"] if evaluations else None
        self.start_time = time.perf_counter()
        self.start_step = start_step
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("return {task.fields[recent]:>7}"),
            TextColumn("eval {task.fields[evaluation]:>7}"),
            TextColumn("{task.fields[speed]:>6} steps/s"),
            TimeElapsedColumn(),
            disable=not progress,
        )
        self._task = self._progress.add_task(
            self.run_dir.name, total=total_steps, completed=start_step, recent="-", evaluation="-", speed="-"
        )
        self._progress.start()

    def episode(self, step: int, episode_return: float, length: int) -> None:
        self.episode_count += 1
        self.recent_returns = ([*self.recent_returns, float(episode_return)])[-20:]
        row = {
            "step": step,
            "episode": self.episode_count,
            "return": float(episode_return),
            "length": int(length),
            "time": round(time.perf_counter() - self.start_time, 3),
        }
        _append(self.episodes_file, row)
        self._scalar("episode/return", episode_return, step)
        self._scalar("episode/length", length, step)

    def _scalar(self, tag: str, value: float, step: int) -> None:
        """One float32 scalar event, as ``tf.summary.scalar`` writes it."""
        tensor = make_tensor_proto(np.float32(value))
        summary = Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=SCALAR_METADATA)])
        self.writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def evaluation(self, step: int, returns: np.ndarray) -> None:
        self.last_evaluation = float(np.mean(returns))
        row = {
            "step": step,
            "mean": self.last_evaluation,
            "std": float(np.std(returns)),
            "min": float(np.min(returns)),
            "max": float(np.max(returns)),
            "returns": [float(value) for value in returns],
            "time": round(time.perf_counter() - self.start_time, 3),
        }
        _append(self.evaluations_file, row)
        self._scalar("evaluation/mean_return", self.last_evaluation, step)
        self.progress(step)

    def event(self, step: int, message: str) -> None:
        """Record ``message`` in ``events.jsonl`` and print it to stderr as ``tfrl: <message>``."""
        row = {"step": step, "message": message, "time": round(time.perf_counter() - self.start_time, 3)}
        with (self.run_dir / EVENTS_FILE).open("a") as events:
            _append(events, row)
        print(f"tfrl: {message}", file=sys.stderr, flush=True)

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self._scalar(f"train/{name}", value, step)

    def progress(self, step: int) -> None:
        elapsed = time.perf_counter() - self.start_time
        recent = f"{np.mean(self.recent_returns):.1f}" if self.recent_returns else "-"
        evaluation = f"{self.last_evaluation:.1f}" if self.last_evaluation is not None else "-"
        speed = f"{(step - self.start_step) / elapsed:.0f}" if elapsed > 0 else "-"
        self._progress.update(self._task, completed=step, recent=recent, evaluation=evaluation, speed=speed)

    def flush(self) -> None:
        self.episodes_file.flush()
        self.evaluations_file.flush()
        self.writer.flush()

    def close(self) -> None:
        self._progress.stop()
        self.flush()
        self.episodes_file.close()
        self.evaluations_file.close()
        self.writer.close()


def evaluation_curve_text(run_dir: str | Path, width: int = 50) -> str:
    """The run's evaluations as text bars, for scripts that print their learning curve."""
    rows = read_jsonl(Path(run_dir) / EVALUATIONS_FILE)
    if not rows:
        return "(no evaluations yet)"
    means = [row["mean"] for row in rows]
    low, high = min(means), max(means)
    scale = (high - low) or 1.0
    lines = ["env step   mean return (20 deterministic episodes)"]
    for row in rows:
        bar = "#" * (1 + round((row["mean"] - low) / scale * (width - 1)))
        lines.append(f"{row['step']:>8}   {row['mean']:9.1f}  {bar}")
    return "\n".join(lines)


def plot_run(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Draw a run's learning curves to a PNG: episode returns, their moving average, evaluations.

    Needs matplotlib (``pip install "tfrl[plot]"``). Returns the path written, by default
    ``<run_dir>/learning_curve.png``; a ``path`` without a suffix gets ``.png``, and one of
    ``PLOT_FORMATS`` chooses that format.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory (runs live under runs/ by default)")
    target = _plot_target(run_dir, path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError('plotting needs matplotlib: pip install "tfrl[plot]"') from None
    episodes = read_jsonl(run_dir / EPISODES_FILE)
    evaluations = read_jsonl(run_dir / EVALUATIONS_FILE)
    if not episodes and not evaluations:
        raise CheckpointError(f"{run_dir} has no {EPISODES_FILE} or {EVALUATIONS_FILE} to plot")
    figure, axes = plt.subplots(figsize=(8, 4.5))
    if episodes:
        steps = np.array([row["step"] for row in episodes])
        returns = np.array([row["return"] for row in episodes])
        axes.plot(steps, returns, color="tab:blue", alpha=0.25, linewidth=0.8, label="training episode")
        window = max(1, min(20, len(returns) // 5))
        smoothed = np.convolve(returns, np.ones(window) / window, mode="valid")
        axes.plot(steps[window - 1 :], smoothed, color="tab:blue", label=f"moving average ({window})")
    if evaluations:
        steps = np.array([row["step"] for row in evaluations])
        means = np.array([row["mean"] for row in evaluations])
        spread = np.array([row["std"] for row in evaluations])
        axes.plot(steps, means, "o-", color="tab:orange", label="evaluation mean")
        axes.fill_between(steps, means - spread, means + spread, color="tab:orange", alpha=0.2)
    axes.set_xlabel("env steps")
    axes.set_ylabel("return")
    axes.set_title(run_dir.name)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.savefig(target, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return target


PLOT_FORMATS = ("png", "pdf", "svg")


def _plot_target(run_dir: Path, path: str | Path | None) -> Path:
    """Where ``plot_run`` writes, refused before anything is drawn if it cannot be written there."""
    target = Path(path) if path is not None else run_dir / "learning_curve.png"
    if not target.suffix:
        target = target.with_name(target.name + ".png")
    if target.suffix.lower().lstrip(".") not in PLOT_FORMATS:
        raise ConfigError(f"--out {path}: the plot's suffix must be one of .{', .'.join(PLOT_FORMATS)}")
    if not target.parent.is_dir():
        raise ConfigError(f"--out {path}: the directory {target.parent} does not exist; create it first")
    if target.exists() and not target.is_file():
        raise ConfigError(f"--out {path} exists and is not a file")
    return target
