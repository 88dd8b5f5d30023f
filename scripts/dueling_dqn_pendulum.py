"""Natural DQN vs Dueling DQN on Pendulum-v1 with 25 torques, as in the Dueling DQN tutorial.

    python scripts/dueling_dqn_pendulum.py                  # 18k steps per agent, seeds 1 2 3
    python scripts/dueling_dqn_pendulum.py --steps 8000 --seeds 1

The tutorial's setting (Morvan, 5.3_Dueling_DQN/run_Pendulum.py): Pendulum's torque cut into 25
actions, one hidden layer of 20 units, RMSProp 1e-3, γ 0.9, memory 3000, batch 32, a hard target copy
every 200 updates, learning once the memory is full, one update per step, ε from 1 to 0.1, rewards
divided by 10, 18,000 steps of one never-reset episode (the tutorial uses the unwrapped env). With
many actions of nearly equal value, the dueling head learns V(s) from every transition whatever
its action, so its accumulated reward should turn upward sooner than natural DQN's.

Writes ``scripts/results/dueling_dqn_pendulum.png`` (training loss and accumulated reward) and ``.json``.
"""

import tfrl.quiet  # noqa: F401 — first: silences TensorFlow's start-up lines

# isort: split


import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from tfrl.agents import make_config
from tfrl.agents.dqn import DQNAgent
from tfrl.envs import make_env

RESULTS = Path(__file__).parent / "results"
MEMORY = 3_000
TUTORIAL = dict(
    learning_rate=1e-3,
    gamma=0.9,
    batch_size=32,
    buffer_size=MEMORY,
    learning_starts=MEMORY,
    train_freq=1,
    gradient_steps=1,
    target_update_interval=200,
    tau=1.0,
    exploration_initial_eps=1.0,
    exploration_final_eps=0.1,
    exploration_steps=MEMORY + 900,
    hidden_sizes=(20,),
    optimizer="rmsprop",
    loss="mse",
    max_grad_norm=0.0,
)


def run(algorithm: str, seed: int, steps: int) -> dict:
    """One agent, one episode of ``steps`` steps: the loss of every update and the reward of every step."""
    config = make_config(algorithm, overrides=TUTORIAL)
    keras.utils.set_random_seed(seed)
    env = make_env("Pendulum-v1", seed=seed, discretize=25, max_episode_steps=steps)
    agent = DQNAgent(config, env.observation_space, env.action_space, "Pendulum-v1", seed)
    observation, _ = env.reset(seed=seed)
    rewards, losses = [], []
    start = time.perf_counter()
    for _ in range(steps):
        action = agent.act(observation[None], explore=True)
        next_observation, reward, terminated, truncated, _ = env.step(int(action[0]))
        metrics = agent.observe(
            observation[None], action, [reward / 10.0], next_observation[None], [terminated], [truncated]
        )
        if metrics is not None:
            losses.append(metrics["loss"])
        rewards.append(reward)
        observation = next_observation
    env.close()
    return {"rewards": np.array(rewards), "losses": np.array(losses), "seconds": time.perf_counter() - start}


def summarise(result: dict) -> dict:
    rewards = result["rewards"]
    last = rewards[-2_000:]
    return {
        "accumulated_reward": round(float(rewards.sum()), 1),
        "accumulated_reward_after_learning_starts": round(float(rewards[MEMORY:].sum()), 1),
        "mean_reward_last_2000_steps": round(float(last.mean()), 3),
        "fraction_of_last_2000_steps_near_upright": round(float(np.mean(last > -0.5)), 3),
        "mean_loss_last_1000_updates": round(float(result["losses"][-1_000:].mean()), 4),
        "wall_seconds": round(result["seconds"], 1),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"dqn": "tab:red", "dueling-dqn": "tab:blue"}
    figure, (loss_axis, reward_axis) = plt.subplots(2, 1, figsize=(10, 8))
    for algorithm, runs in results.items():
        for index, (seed, result) in enumerate(runs.items()):
            label = f"{algorithm} (seed {seed})"
            losses = result["losses"]
            window = min(200, len(losses))
            loss_axis.plot(
                np.convolve(losses, np.ones(window) / window, mode="valid"),
                color=colours[algorithm],
                alpha=1.0 - 0.25 * index,
                label=label,
            )
            reward_axis.plot(
                np.cumsum(result["rewards"]), color=colours[algorithm], alpha=1.0 - 0.25 * index, label=label
            )
    loss_axis.set(
        xlabel="update",
        ylabel="loss (moving average of 200)",
        yscale="log",
        title="Pendulum-v1, 25 torques: natural DQN vs Dueling DQN",
    )
    reward_axis.set(xlabel="env step", ylabel="accumulated reward")
    for axis in (loss_axis, reward_axis):
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=18_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--out", default=str(RESULTS / "dueling_dqn_pendulum"), help="path of the .png and .json, no suffix"
    )
    args = parser.parse_args()

    results = {algorithm: {} for algorithm in ("dqn", "dueling-dqn")}
    summary = {}
    for seed in args.seeds:
        for algorithm in results:
            results[algorithm][seed] = run(algorithm, seed, args.steps)
            summary[f"{algorithm} seed {seed}"] = summarise(results[algorithm][seed])
            print(f"{algorithm:>11} seed {seed}: {summary[f'{algorithm} seed {seed}']}", flush=True)
    for algorithm in results:
        summary[f"{algorithm} mean over seeds"] = {
            key: round(float(np.mean([summary[f"{algorithm} seed {seed}"][key] for seed in args.seeds])), 3)
            for key in summary[f"{algorithm} seed {args.seeds[0]}"]
        }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(
        json.dumps({"steps": args.steps, "seeds": args.seeds, "summary": summary}, indent=2)
    )
    print(f"\nwrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
