"""Learning from pixels: DQN on MinAtar, and Atari throughput and replay memory against Stable-Baselines3.

Issue 12's targets, with the reference figures of ``../shared/reference/minatar-dqn.md`` (2 cores):

- MinAtar (``--minatar``): DQN with the ``minatar`` preset on ``MinAtar/<Game>-v1`` for each game and
  seed: the evaluation return (20 greedy episodes) against env steps, the running-average training
  return the MinAtar reference reports (0.99 · old + 0.01 · new), and env steps per second of training
  (evaluation excluded). Targets on Breakout: mean evaluation return ≥ 5 by 250k env steps and ≥ 10
  within 1M on 3/3 seeds (random play: ~0.25), at ≥ 2 × 365 frames/s, the MinAtar reference DQN's speed.
- Atari (``--atari``): DQN with the ``atari`` preset on ``ALE/Pong-v5`` (84×84×4 uint8 stacks): env steps
  per second while learning (``learning_starts=0`` so every measured step trains; one env, a gradient
  step every 4 env steps, batch 32, memory 100k), and the replay memory's bytes per transition
  (target ≤ 8 KB, with every frame stored once).
- Stable-Baselines3 (``--sb3``): its DQN ``CnnPolicy`` on ``ALE/Pong-v5`` with the same settings
  (``frameskip=1`` + its Atari wrappers, 4 stacked frames, the same hyperparameters, torch on
  ``--torch-threads`` threads as in the reference), from a virtual environment this script creates in
  ``benchmarks/.venv-peers/`` (never a dependency of tfrl). Target: tfrl ≥ 1.5 × its env steps/s.

With no part named, all three run. Each part's results replace that part's entry in
``results/pixels.json`` (MinAtar runs per game and seed), so the long MinAtar runs and the throughput
measurements can be made apart.

    python benchmarks/pixels.py --atari --sb3                            # minutes
    python benchmarks/pixels.py --minatar --games Breakout --seeds 0 --steps 250000
    python benchmarks/pixels.py --minatar --games Breakout SpaceInvaders --seeds 0 1 2 --steps 1000000
"""

from __future__ import annotations

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse
import json
import os
import subprocess
import tempfile
import venv
from pathlib import Path

from common import RESULTS

import tfrl
from tfrl.logger import read_jsonl

RESULT_FILE = RESULTS / "pixels.json"
PEERS = Path(__file__).parent / ".venv-peers"
PEER_PACKAGES = ("stable-baselines3", "torch==2.13.0", "ale-py==0.12.1", "opencv-python-headless")
ATARI_ENV = "ALE/Pong-v5"
REFERENCE_FRAMES_PER_SECOND = 365  # MinAtar's examples/dqn.py on this kind of machine (the reference file)
MILESTONES = (250_000, 1_000_000)

# Stable-Baselines3's DQN with the settings of tfrl's atari preset (rl-zoo's), timed after learning starts.
SB3_SCRIPT = f"""
import json, sys, time
import ale_py, gymnasium as gym, stable_baselines3, torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

steps, threads = int(sys.argv[1]), int(sys.argv[2])
gym.register_envs(ale_py)
torch.set_num_threads(threads)
env = VecFrameStack(make_atari_env("{ATARI_ENV}", n_envs=1, seed=0, env_kwargs={{"frameskip": 1}}), 4)
model = DQN("CnnPolicy", env, learning_rate=1e-4, buffer_size=100_000, learning_starts=0, batch_size=32,
            train_freq=4, gradient_steps=1, target_update_interval=1_000, exploration_fraction=0.1,
            exploration_final_eps=0.01, optimize_memory_usage=False, seed=0, device="cpu")

class Clock(BaseCallback):
    def _on_training_start(self):
        self.start = time.perf_counter()
    def _on_step(self):
        return True

clock = Clock()
model.learn(total_timesteps=steps, callback=clock)
seconds = time.perf_counter() - clock.start
print(json.dumps({{"env_steps": steps, "seconds": round(seconds, 1), "env_steps_per_second": round(steps / seconds, 1),
                  "torch_threads": threads, "sb3_version": stable_baselines3.__version__, "replay_bytes_per_transition":
                  round((model.replay_buffer.observations.nbytes + model.replay_buffer.next_observations.nbytes)
                        / model.replay_buffer.buffer_size)}}))
"""


def running_average(returns: list[float]) -> list[float]:
    """The MinAtar reference's training curve: ``avg ← 0.99 · avg + 0.01 · return``, from 0."""
    average, curve = 0.0, []
    for value in returns:
        average = 0.99 * average + 0.01 * value
        curve.append(average)
    return curve


def minatar(args: argparse.Namespace) -> dict:
    """DQN (``minatar`` preset) on each MinAtar game and seed: returns against env steps, and speed."""
    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        for game in args.games:
            for seed in args.seeds:
                result = tfrl.train(
                    "dqn",
                    f"MinAtar/{game}-v1",
                    preset="minatar",
                    seed=seed,
                    total_steps=args.steps,
                    num_envs=args.num_envs,
                    eval_every=args.eval_every,
                    eval_episodes=args.eval_episodes,
                    checkpoint_every=args.steps,
                    stop_at_threshold=False,
                    logdir=logdir,
                    export=False,
                    progress=False,
                )
                evaluations = read_jsonl(result.run_dir / "evaluations.jsonl")
                episodes = read_jsonl(result.run_dir / "episodes.jsonl")
                averages = running_average([row["return"] for row in episodes])
                row = {
                    "game": game,
                    "seed": seed,
                    "env_steps": result.env_steps,
                    "env_steps_per_second": round(result.train_steps_per_second),
                    "cores_allowed": len(os.sched_getaffinity(0)),  # fewer than the machine's under taskset
                    "wall_seconds": round(result.wall_seconds),
                    "curve": [[evaluation["step"], round(evaluation["mean"], 2)] for evaluation in evaluations],
                }
                for milestone in MILESTONES:
                    reached = [evaluation["mean"] for evaluation in evaluations if evaluation["step"] <= milestone]
                    trained = [
                        average
                        for average, episode in zip(averages, episodes, strict=True)
                        if episode["step"] <= milestone
                    ]
                    if milestone <= result.env_steps:
                        row[f"best_eval_by_{milestone // 1000}k"] = round(max(reached), 2) if reached else None
                        row[f"running_avg_at_{milestone // 1000}k"] = round(trained[-1], 2) if trained else None
                rows.append(row)
                print(" ".join(f"{key}={value}" for key, value in row.items() if key != "curve"), flush=True)
    return {
        "steps": args.steps,
        "seeds": args.seeds,
        "eval_episodes": args.eval_episodes,
        "reference_frames_per_second": REFERENCE_FRAMES_PER_SECOND,
        "runs": rows,
    }


def atari(args: argparse.Namespace) -> dict:
    """Env steps/s of DQN (``atari`` preset) on Pong while it learns, and its replay bytes per transition."""
    with tempfile.TemporaryDirectory() as logdir:
        result = tfrl.train(
            "dqn",
            ATARI_ENV,
            preset="atari",
            overrides={"learning_starts": 0},
            total_steps=args.atari_steps,
            num_envs=1,
            eval_every=args.atari_steps,
            eval_episodes=1,
            checkpoint_every=args.atari_steps,
            stop_at_threshold=False,
            logdir=logdir,
            export=False,
            progress=False,
        )
    agent = result.agent
    stored = agent.replay.nbytes + agent.frames.nbytes
    row = {
        "env_steps": result.env_steps,
        "env_steps_per_second": round(result.train_steps_per_second, 1),
        "replay_capacity": agent.replay.capacity,
        "replay_bytes_per_transition": round(stored / agent.replay.capacity),
        "frame_bytes": agent.frames.frames[0].nbytes,
        "frames_written_per_transition": round(agent.frames.count / agent.env_steps, 4),
    }
    print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    return row


def peer_python() -> Path:
    """The peers' virtual environment's python, created with Stable-Baselines3 the first time."""
    python = PEERS / "bin" / "python"
    if not python.exists():
        print(f"creating {PEERS} with {', '.join(PEER_PACKAGES)} (once)", flush=True)
        venv.create(PEERS, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return python


def sb3(args: argparse.Namespace) -> dict:
    """Stable-Baselines3's DQN CnnPolicy on Pong with the same settings, run in the peers' environment."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run(
        [str(peer_python()), "-c", SB3_SCRIPT, str(args.atari_steps), str(args.torch_threads)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    row = json.loads(completed.stdout.strip().splitlines()[-1])
    print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    return row


def table(results: dict) -> str:
    """The Markdown tables of whatever ``results`` holds."""
    lines = []
    if "minatar" in results:
        lines += [
            f"\nDQN (minatar preset) on MinAtar, {results['minatar']['eval_episodes']} evaluation episodes\n",
            "| game | seed | env steps | env steps/s | best eval ≤250k | running avg @250k | best eval ≤1M |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in results["minatar"]["runs"]:
            cells = [row.get(key, "-") for key in ("best_eval_by_250k", "running_avg_at_250k", "best_eval_by_1000k")]
            lines.append(
                f"| {row['game']} | {row['seed']} | {row['env_steps']} | {row['env_steps_per_second']} | "
                + " | ".join(str(cell) for cell in cells)
                + " |"
            )
    if "atari" in results or "sb3" in results:
        lines += [f"\nDQN on {ATARI_ENV} while learning (one env)\n", "| | env steps/s | replay bytes/transition |"]
        lines.append("|---|---|---|")
        for name in ("atari", "sb3"):
            if name in results:
                row = results[name]
                label = "tfrl" if name == "atari" else f"Stable-Baselines3 (torch {row['torch_threads']} thread(s))"
                lines.append(f"| {label} | {row['env_steps_per_second']} | {row['replay_bytes_per_transition']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minatar", action="store_true", help="run the MinAtar learning curves")
    parser.add_argument("--atari", action="store_true", help="measure tfrl's Atari throughput and replay bytes")
    parser.add_argument("--sb3", action="store_true", help="measure Stable-Baselines3's Atari throughput")
    parser.add_argument("--games", nargs="+", default=["Breakout", "SpaceInvaders"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000, help="MinAtar env steps per run (%(default)s)")
    parser.add_argument("--eval-every", type=int, default=25_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--num-envs", type=int, default=4, help="MinAtar vector envs (%(default)s)")
    parser.add_argument("--atari-steps", type=int, default=3_000, help="Atari env steps timed (%(default)s)")
    parser.add_argument("--torch-threads", type=int, default=1, help="Stable-Baselines3's torch threads")
    args = parser.parse_args()
    measurements = {"minatar": minatar, "atari": atari, "sb3": sb3}
    parts = [name for name in measurements if getattr(args, name)] or list(measurements)

    measured = {
        name: {**measurements[name](args), "load_average_at_end": round(os.getloadavg()[0], 2)} for name in parts
    }
    # Read only now: another part may have been measured, and written, while these ran.
    results = json.loads(RESULT_FILE.read_text()) if RESULT_FILE.exists() else {"benchmark": "pixels"}
    if "minatar" in measured and "minatar" in results:  # keep the runs of other games and seeds
        ran = {(run["game"], run["seed"]) for run in measured["minatar"]["runs"]}
        kept = [run for run in results["minatar"]["runs"] if (run["game"], run["seed"]) not in ran]
        measured["minatar"]["runs"] = kept + measured["minatar"]["runs"]
    results.update(measured)
    if "atari" in results and "sb3" in results:
        ratio = results["atari"]["env_steps_per_second"] / results["sb3"]["env_steps_per_second"]
        results["atari_speed_ratio_to_sb3"] = round(ratio, 2)
    print(table(results))
    RESULTS.mkdir(exist_ok=True)
    RESULT_FILE.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
