"""DQN vs Double DQN on Pendulum-v1 with 11 torques: the Q-value overestimation experiment.

    python scripts/double_dqn_pendulum.py                 # 40k steps (200 episodes) per agent, seed 0
    python scripts/double_dqn_pendulum.py --steps 10000 --seeds 0 1

Hands-on-RL chapter 8's setting (the ``hands-on`` preset): Pendulum's torque in [-2, 2] cut into
11 actions, one update per env step, ε = 0.01. Both agents run the same seeds. At every step the
script records the smoothed max Q of the current state, ``q ← 0.995 q + 0.005 max_a Q(s, a)``, and,
once each episode is over, the same smoothing of the discounted return that actually followed each
state, ``G_t = Σ_k γ^k r_{t+k}``. Pendulum's rewards are never positive, so every true value is ≤ 0:
a Q estimate above 0 is an overestimate for sure, and one above G_t most likely is (G_t is cut off
at the episode's end, which can only raise it). The book shows DQN's smoothed max Q often above 0
and at times above 10, Double DQN's rarely above 0.

Writes ``scripts/results/double_dqn_pendulum.png`` (Q curves and returns) and ``.json`` (the numbers).
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
SMOOTHING = 0.995


def smoothed(values: np.ndarray) -> np.ndarray:
    """The book's running average ``x ← 0.995 x + 0.005 v``, started at 0."""
    out, running = np.empty(len(values)), 0.0
    for index, value in enumerate(values):
        running = SMOOTHING * running + (1 - SMOOTHING) * value
        out[index] = running
    return out


def returns_to_go(rewards: list[float], gamma: float) -> np.ndarray:
    """``G_t = r_t + γ G_{t+1}`` over one episode."""
    out, running = np.empty(len(rewards)), 0.0
    for index in range(len(rewards) - 1, -1, -1):
        running = rewards[index] + gamma * running
        out[index] = running
    return out


def run(algorithm: str, seed: int, steps: int) -> dict:
    """Train one agent for ``steps`` env steps; per-step max Q and G_t, per-episode returns."""
    config = make_config(algorithm, "hands-on")
    keras.utils.set_random_seed(seed)
    env = make_env("Pendulum-v1", seed=seed, discretize=11)
    agent = DQNAgent(config, env.observation_space, env.action_space, "Pendulum-v1", seed)
    max_q, discounted, episode_returns = [], [], []
    observation, _ = env.reset(seed=seed)
    episode_rewards = []
    start = time.perf_counter()
    for _ in range(steps):
        max_q.append(float(agent.q_values(observation[None]).max()))
        action = agent.act(observation[None], explore=True)
        next_observation, reward, terminated, truncated, _ = env.step(int(action[0]))
        agent.observe(observation[None], action, [reward], next_observation[None], [terminated], [truncated])
        episode_rewards.append(reward)
        observation = next_observation
        if terminated or truncated:
            discounted.extend(returns_to_go(episode_rewards, config.gamma))
            episode_returns.append(float(np.sum(episode_rewards)))
            episode_rewards = []
            observation, _ = env.reset()
    env.close()
    if episode_rewards:  # a last, unfinished episode: its G_t are cut off like a truncated one's
        discounted.extend(returns_to_go(episode_rewards, config.gamma))
    return {
        "max_q": np.array(max_q),
        "discounted_return": np.array(discounted),
        "episode_returns": episode_returns,
        "seconds": time.perf_counter() - start,
    }


def summarise(result: dict, learning_starts: int) -> dict:
    """The figures the report quotes, over the steps after learning started."""
    q = smoothed(result["max_q"])[learning_starts:]
    g = smoothed(result["discounted_return"])[learning_starts:]
    returns = result["episode_returns"]
    return {
        "fraction_of_steps_with_smoothed_max_q_above_0": round(float(np.mean(q > 0)), 3),
        "fraction_of_steps_with_smoothed_max_q_above_10": round(float(np.mean(q > 10)), 3),
        "highest_smoothed_max_q": round(float(q.max()), 2),
        "mean_smoothed_max_q": round(float(q.mean()), 2),
        "mean_smoothed_discounted_return": round(float(g.mean()), 2),
        "mean_overestimate_q_minus_return": round(float(np.mean(q - g)), 2),
        "mean_return_last_10_episodes": round(float(np.mean(returns[-10:])), 1),
        "mean_returns_per_20_episodes": [
            round(float(np.mean(returns[i : i + 20])), 1) for i in range(0, len(returns), 20)
        ],
        "wall_seconds": round(result["seconds"], 1),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"dqn": "tab:red", "double-dqn": "tab:blue"}
    figure, (q_axis, return_axis) = plt.subplots(2, 1, figsize=(10, 8))
    for algorithm, runs in results.items():
        for seed, result in runs.items():
            label = f"{algorithm} (seed {seed})"
            q_axis.plot(smoothed(result["max_q"]), color=colours[algorithm], label=f"{label}: smoothed max Q")
            q_axis.plot(
                smoothed(result["discounted_return"]),
                color=colours[algorithm],
                linestyle=":",
                label=f"{label}: smoothed discounted return",
            )
            returns = np.array(result["episode_returns"])
            average = np.convolve(returns, np.ones(9) / 9, mode="valid") if len(returns) >= 9 else returns
            return_axis.plot(
                np.arange(len(average)) + len(returns) - len(average), average, color=colours[algorithm], label=label
            )
    for level in (0, 10):
        q_axis.axhline(level, color="grey", linewidth=0.8, linestyle="--")
    q_axis.set(
        xlabel="env step",
        ylabel="Q / discounted return",
        title="Pendulum-v1, 11 torques: DQN overestimates Q, Double DQN much less",
    )
    q_axis.legend(fontsize=7)
    return_axis.set(xlabel="episode", ylabel="return (moving average of 9)")
    return_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40_000, help="env steps per agent (200 per episode)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--out", default=str(RESULTS / "double_dqn_pendulum"), help="path of the .png and .json, no suffix"
    )
    args = parser.parse_args()

    results = {algorithm: {} for algorithm in ("dqn", "double-dqn")}
    summary = {}
    learning_starts = make_config("dqn", "hands-on").learning_starts
    for seed in args.seeds:
        for algorithm in results:
            results[algorithm][seed] = run(algorithm, seed, args.steps)
            summary[f"{algorithm} seed {seed}"] = summarise(results[algorithm][seed], learning_starts)
            print(f"{algorithm:>10} seed {seed}: {summary[f'{algorithm} seed {seed}']}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(
        json.dumps({"steps": args.steps, "seeds": args.seeds, "summary": summary}, indent=2)
    )
    print(f"\nwrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
