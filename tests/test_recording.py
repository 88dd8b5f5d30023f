"""tfrl record and tfrl enjoy."""

import math

import numpy as np
import pytest

from tfrl.cli import main


def test_record_writes_a_readable_gif_with_one_frame_per_kept_step(cartpole_run, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "cartpole.gif"
    argv = ["record", str(cartpole_run.export_path), "--out", str(out), "--frame-skip", "5", "--scale", "4"]
    assert main([*argv, "--fps", "20"]) == 0
    printed = capsys.readouterr().out
    episode_return = float(printed.rsplit("return ", 1)[1])
    # CartPole pays 1 a step: the episode rendered return + 1 frames (the reset's too), every 5th kept
    expected = math.ceil((episode_return + 1) / 5)
    assert f"{expected} frames" in printed
    with Image.open(out) as gif:
        assert gif.size == (150, 100)
        durations = []
        for index in range(gif.n_frames):  # the GIF writer merges identical frames, adding up their durations
            gif.seek(index)
            durations.append(gif.info["duration"])
            assert np.asarray(gif.convert("RGB")).std() > 0
    assert sum(durations) == expected * 50  # 20 fps


def test_record_refuses_an_unknown_format_and_enjoy_without_a_display_says_to_record(
    cartpole_run, tmp_path, capsys, monkeypatch
):
    assert main(["record", str(cartpole_run.export_path), "--out", str(tmp_path / "x.avi")]) == 2
    assert "must end in .gif or .mp4" in capsys.readouterr().err
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["enjoy", str(cartpole_run.export_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("tfrl: error: no display") and "tfrl record" in error and "\n" not in error


@pytest.mark.parametrize("bad", [["--fps", "0"], ["--episodes", "0"]])
def test_record_refuses_non_positive_options(cartpole_run, tmp_path, capsys, bad):
    assert main(["record", str(cartpole_run.export_path), "--out", str(tmp_path / "x.gif"), *bad]) == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_record_writes_an_mp4_with_the_record_extras_ffmpeg(tmp_path, capsys):
    # imageio-ffmpeg comes with the record extra, so .mp4 needs nothing more than .gif does
    import imageio_ffmpeg

    out = tmp_path / "cartpole.mp4"
    argv = ["record", "saved_models/dqn-CartPole-v1", "--out", str(out), "--scale", "4", "--max-frames", "12"]
    assert main(argv) == 0
    assert "12 frames" in capsys.readouterr().out
    frames = imageio_ffmpeg.read_frames(str(out))
    meta = next(frames)
    assert tuple(meta["size"]) == (160, 112)  # 600 × 400 / 4, which imageio pads to multiples of 16 for H.264
    assert sum(1 for _ in frames) == 12
