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
from rich.progress import Progress, ProgressColumn, Task
from rich.text import Text
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
SCALARS_FILE = "scalars.jsonl"  # callbacks' own scalars (tfrl.callbacks.Run.log)
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
        """``progress``: a live line on a terminal (with one line per evaluation printed above it);
        without a terminal or with ``progress=False``, only the evaluation lines, as they happen."""
        self.run_dir = Path(run_dir)
        episodes = _cut_back(self.run_dir / EPISODES_FILE, start_step)
        evaluations = _cut_back(self.run_dir / EVALUATIONS_FILE, start_step)
        _cut_back(self.run_dir / SCALARS_FILE, start_step)
        self.episodes_file = (self.run_dir / EPISODES_FILE).open("a")
        self.evaluations_file = (self.run_dir / EVALUATIONS_FILE).open("a")
        self.writer = EventFileWriter(str(self.run_dir / "tensorboard"))
        self.episode_count = len(episodes)
        self.recent_returns: list[float] = [row["return"] for row in episodes[-20:]]
        self.last_evaluation: float | None = evaluations[-1]["mean"] if evaluations else None
        self.start_time = time.perf_counter()
        self.start_step = start_step
        self.total_steps = total_steps
        self.best_evaluation: float | None = max((row["mean"] for row in evaluations), default=None)
        self._progress = Progress(_FittedLine(self), disable=not (progress and sys.stdout.isatty()))
        self._task = self._progress.add_task(self.run_dir.name, total=total_steps, completed=start_step)
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
        if self.best_evaluation is None or self.last_evaluation > self.best_evaluation:
            self.best_evaluation = self.last_evaluation
        self._print(
            evaluation_line(step, self.total_steps, returns, self.best_evaluation, self._speed(step), self._elapsed())
        )
        self.progress(step)

    def event(self, step: int, message: str) -> None:
        """Record ``message`` in ``events.jsonl`` and print it to stderr as ``tfrl: <message>``."""
        row = {"step": step, "message": message, "time": round(time.perf_counter() - self.start_time, 3)}
        with (self.run_dir / EVENTS_FILE).open("a") as events:
            _append(events, row)
        print(f"tfrl: {message}", file=sys.stderr, flush=True)

    def custom_scalar(self, step: int, name: str, value: float) -> None:
        """A callback's own scalar: TensorBoard's ``custom/<name>`` and a row of ``scalars.jsonl``."""
        self._scalar(f"custom/{name}", value, step)
        with (self.run_dir / SCALARS_FILE).open("a") as scalars:
            _append(scalars, {"step": step, "name": name, "value": value})

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self._scalar(f"train/{name}", value, step)

    def progress(self, step: int) -> None:
        """Move the live line to ``step`` (nothing without a terminal)."""
        self._progress.update(self._task, completed=step)

    def line(self, step: int, width: int) -> str:
        """The live line at ``step`` for a console ``width`` columns wide (``progress_line``)."""
        recent = float(np.mean(self.recent_returns)) if self.recent_returns else None
        return progress_line(
            width, step, self.total_steps, recent, self.last_evaluation, self._speed(step), self._elapsed()
        )

    def _elapsed(self) -> float:
        return time.perf_counter() - self.start_time

    def _speed(self, step: int) -> float | None:
        elapsed = self._elapsed()
        return (step - self.start_step) / elapsed if elapsed > 0 and step > self.start_step else None

    def _print(self, text: str) -> None:
        """A line of the run's log: above the live line on a terminal, else straight to stdout."""
        if self._progress.disable:
            print(text, flush=True)
        else:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

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


class _FittedLine(ProgressColumn):
    """The whole live line as one column, fitted to the console's width by ``progress_line``."""

    def __init__(self, logger: RunLogger):
        super().__init__()
        self.logger = logger

    def render(self, task: Task) -> Text:
        width = self.logger._progress.console.width
        return Text(self.logger.line(int(task.completed), width - 1), no_wrap=True)


def progress_line(
    width: int,
    step: int,
    total: int,
    recent: float | None,
    evaluation: float | None,
    speed: float | None,
    elapsed: float,
) -> str:
    """``━━━━━━╸────  12,000/40,000  return 54.8  eval 162.5  960 steps/s  0:00:12`` in ``width`` columns.

    What does not fit goes, least useful first (speed, return, evaluation, time, then the bar); the
    step count always stays, since it is what a glance at a run looks for.
    """
    counted = f"{step:,}/{total:,}"
    shown = {  # in the order they print
        "return": None if recent is None else f"return {recent:.1f}",
        "eval": None if evaluation is None else f"eval {evaluation:.1f}",
        "speed": None if speed is None else f"{speed:,.0f} steps/s",
        "time": _clock(elapsed),
    }
    for dropped in ((), ("speed",), ("speed", "return"), ("speed", "return", "eval"), tuple(shown)):
        text = "  ".join([counted, *[part for name, part in shown.items() if part and name not in dropped]])
        if len(text) + 12 <= width:  # room for a bar of 10 and its gap
            break
    bar_width = min(40, width - len(text) - 2)
    if bar_width < 10:
        return text[:width] if len(counted) <= width else counted
    done = round(bar_width * min(step / total, 1.0)) if total else bar_width
    return "━" * done + "─" * (bar_width - done) + "  " + text


def evaluation_line(
    step: int, total: int, returns: np.ndarray, best: float | None, speed: float | None, elapsed: float
) -> str:
    """The log line of one evaluation: ``step 5,000/40,000  eval 162.5 ± 12.1  best 162.5  960 steps/s  0:00:12``."""
    rate = "" if speed is None else f"  {speed:,.0f} steps/s"
    best_text = "" if best is None else f"  best {best:.1f}"
    return (
        f"step {step:,}/{total:,}  eval {np.mean(returns):.1f} ± {np.std(returns):.1f}{best_text}{rate}  "
        f"{_clock(elapsed)}"
    )


def _clock(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{second:02d}"


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
