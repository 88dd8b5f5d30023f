"""Watching an exported policy: ``record`` writes episodes to a GIF or MP4, ``enjoy`` shows them in a window.

Both rebuild the env the export was trained on (its ``assets/tfrl.json``), act with the export's
deterministic ``action`` (one state row per episode for a recurrent export; real actions for a
``--discretize``d one), and return each episode's undiscounted return. GIF and MP4 writing need
the ``record`` extra (``pip install -e ".[record]"``: imageio, and imageio-ffmpeg for MP4).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfrl.envs import check_episode_seeds, limited_for_playing, make_env
from tfrl.errors import ConfigError, EnvError, ExportError
from tfrl.export import Policy, load_policy

VIDEO_SUFFIXES = (".gif", ".mp4")


@dataclasses.dataclass
class Recording:
    """What ``record`` wrote: the file, the frames in it, and the return of each episode."""

    path: Path
    frames: int
    returns: list[float]


def _play(
    policy: Policy,
    env: Any,
    episodes: int,
    seed: int,
    on_step: Callable[[], None],
) -> list[float]:
    """Run ``episodes`` seeded episodes of ``policy`` in ``env``, calling ``on_step`` after the reset
    and after every step (to grab or show a frame); returns each episode's return."""
    check_episode_seeds(seed, episodes)
    returns = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        policy.reset_state(1)
        on_step()
        total, done = 0.0, False
        while not done:
            action = policy(np.asarray(observation)[None])[0]
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = bool(terminated or truncated)
            on_step()
        returns.append(total)
    return returns


def _writer(path: Path) -> Any:
    """imageio, or a clear line naming the install that gives it."""
    try:
        import imageio.v3 as iio
    except ImportError:
        raise ConfigError('writing a GIF or MP4 needs imageio: pip install -e ".[record]"') from None
    if path.suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ConfigError(
                'writing MP4 needs imageio-ffmpeg, which the record extra installs: pip install -e ".[record]"'
            ) from None
    return iio


SMALLEST_SIDE = 160  # frames smaller than this (MinAtar's 10×10) are enlarged, pixel by pixel


def _video_frame(rendered: Any, scale: int) -> np.ndarray:
    """A rendered frame as uint8 RGB for a video: floats in [0, 1] (MinAtar's palette) scaled to
    0–255, every ``scale``-th pixel kept, and tiny frames enlarged to at least ``SMALLEST_SIDE``."""
    frame = np.asarray(rendered)
    if frame.dtype != np.uint8:
        frame = np.clip(frame * 255.0 if frame.max() <= 1.0 else frame, 0, 255).astype(np.uint8)
    frame = frame[::scale, ::scale]
    grow = SMALLEST_SIDE // max(frame.shape[:2])
    return frame.repeat(grow, axis=0).repeat(grow, axis=1) if grow > 1 else frame


def record(
    path: str | os.PathLike,
    out: str | os.PathLike,
    episodes: int = 1,
    seed: int = 0,
    frame_skip: int = 1,
    fps: int = 30,
    scale: int = 1,
    max_frames: int | None = None,
) -> Recording:
    """Render ``episodes`` seeded episodes of the export at ``path`` into ``out`` (.gif or .mp4).

    Every ``frame_skip``-th frame is kept, each shrunk by the integer factor ``scale`` (every
    ``scale``-th pixel), at most ``max_frames`` of them; the video plays at ``fps``.
    """
    out = Path(out)
    if out.suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"--out {out} must end in {' or '.join(VIDEO_SUFFIXES)}")
    if out.is_dir() or (out.exists() and not out.is_file()):
        raise ConfigError(f"--out {out} is a directory (or not a regular file); name the video file to write")
    for name, value in (("episodes", episodes), ("frame_skip", frame_skip), ("fps", fps), ("scale", scale)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    check_episode_seeds(seed, episodes)
    iio = _writer(out)
    policy = load_policy(path)
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame-rendered envs need no sound to draw frames
    env_id = policy.metadata["env_id"]
    made = make_env(env_id, render_mode="rgb_array", env_kwargs=policy.metadata.get("env_kwargs"))
    [env] = limited_for_playing([made], env_id)
    modes = env.metadata.get("render_modes", [])
    if "rgb_array" not in modes:
        env.close()
        raise EnvError(f"{env_id} does not render rgb_array frames (its metadata's render_modes are {modes})")
    frames: list[np.ndarray] = []
    rendered = 0

    def grab() -> None:
        nonlocal rendered
        if rendered % frame_skip == 0 and (max_frames is None or len(frames) < max_frames):
            frames.append(_video_frame(env.render(), scale))
        rendered += 1

    try:
        returns = _play(policy, env, episodes, seed, grab)
    finally:
        env.close()
    if not frames:
        raise EnvError(f"{env_id} rendered no frames in rgb_array mode")
    out.parent.mkdir(parents=True, exist_ok=True)
    options = {"duration": 1000 / fps, "loop": 0} if out.suffix == ".gif" else {"fps": fps}
    iio.imwrite(out, np.stack(frames), **options)
    return Recording(out, len(frames), returns)


def has_display() -> bool:
    """Whether a window can open: always on macOS and Windows, with X11 or Wayland on Linux."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def enjoy(path: str | os.PathLike, episodes: int = 1, seed: int = 0) -> list[float]:
    """Show ``episodes`` seeded episodes of the export at ``path`` in a window; returns their returns."""
    if not has_display():
        raise ExportError(
            "no display to open a window on (DISPLAY is not set): use tfrl record PATH --out episode.gif instead"
        )
    policy = load_policy(path)
    env_id = policy.metadata["env_id"]
    made = make_env(env_id, render_mode="human", env_kwargs=policy.metadata.get("env_kwargs"))
    [env] = limited_for_playing([made], env_id)
    try:
        return _play(policy, env, episodes, seed, lambda: None)
    finally:
        env.close()
