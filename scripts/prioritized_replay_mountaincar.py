"""DQN vs DQN with prioritized replay on MountainCar-v0, as in the Prioritized Replay tutorial.

    python scripts/prioritized_replay_mountaincar.py                 # 20 episodes per agent, seed 21 (~5 min)
    python scripts/prioritized_replay_mountaincar.py --episodes 10   # a quicker look

The tutorial's setting (Morvan, 5.2_Prioritized_Replay_DQN/run_MountainCar.py): one hidden layer of
20 units, RMSProp 5e-3, γ 0.9, memory 10,000, batch 32, a hard target copy every 500 updates, one
update per step once the memory is full, ε from 1 to 0.1 over the first 28,000 steps, reward 10 on
reaching the flag, episodes without a time limit (here capped by ``--max-episode-steps``). The
prioritized agent uses α 0.6, β from 0.4 to 1 over the first 10,600 steps and ε 0.01, as there.

Reaching the flag is rare at first, so the few transitions that carry the +10 are what the agent
must learn from; prioritized replay replays them far more often, and the tutorial's plot shows the
prioritized agent finishing its episodes in fewer total steps. Writes
``scripts/results/prioritized_replay_mountaincar.png`` (cumulative steps per episode) and ``.json``.
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
MEMORY = 10_000
TUTORIAL = dict(
    learning_rate=5e-3,
    gamma=0.9,
    batch_size=32,
    buffer_size=MEMORY,
    learning_starts=MEMORY,
    train_freq=1,
    gradient_steps=1,
    target_update_interval=500,
    tau=1.0,
    exploration_initial_eps=1.0,
    exploration_final_eps=0.1,
    exploration_steps=MEMORY + 18_000,
    hidden_sizes=(20,),
    optimizer="rmsprop",
    loss="mse",
    max_grad_norm=0.0,
    prioritized_alpha=0.6,
    prioritized_beta=0.4,
    prioritized_beta_steps=MEMORY + 600,
    prioritized_epsilon=0.01,
)
GOAL_REWARD = 10.0


def run(prioritized: bool, seed: int, episodes: int, max_episode_steps: int) -> dict:
    """Train one agent for ``episodes`` episodes; the length of each and whether it reached the flag."""
    config = make_config("dqn", overrides={**TUTORIAL, "prioritized": prioritized})
    keras.utils.set_random_seed(seed)
    env = make_env("MountainCar-v0", seed=seed, max_episode_steps=max_episode_steps)
    agent = DQNAgent(config, env.observation_space, env.action_space, "MountainCar-v0", seed)
    lengths, reached = [], []
    start = time.perf_counter()
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        for length in range(1, max_episode_steps + 1):  # noqa: B007 — read after the loop
            action = agent.act(observation[None], explore=True)
            next_observation, reward, terminated, truncated, _ = env.step(int(action[0]))
            reward = GOAL_REWARD if terminated else reward  # the tutorial's reward for reaching the flag
            agent.observe(observation[None], action, [reward], next_observation[None], [terminated], [truncated])
            observation = next_observation
            if terminated or truncated:
                break
        lengths.append(length)
        reached.append(bool(terminated))
        print(
            f"  {'prioritized' if prioritized else 'uniform':>11} seed {seed} episode {episode:2d}: "
            f"{length:5d} steps{'' if terminated else ' (cut off)'}",
            flush=True,
        )
    env.close()
    return {"lengths": lengths, "reached": reached, "seconds": time.perf_counter() - start}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"uniform": "tab:red", "prioritized": "tab:blue"}
    figure, axis = plt.subplots(figsize=(9, 5))
    for name, runs in results.items():
        for index, (seed, result) in enumerate(runs.items()):
            axis.plot(
                np.cumsum(result["lengths"]),
                np.arange(1, len(result["lengths"]) + 1),
                color=colours[name],
                alpha=1.0 - 0.25 * index,
                label=f"DQN, {name} replay (seed {seed})",
            )
    axis.set(xlabel="total env steps", ylabel="episode", title="MountainCar-v0: prioritized vs uniform replay")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[21])
    parser.add_argument(
        "--max-episode-steps",
        type=int,
        default=10_000,
        help="cap on one episode (the tutorial's unwrapped env has none)",
    )
    parser.add_argument(
        "--out", default=str(RESULTS / "prioritized_replay_mountaincar"), help="path of the .png and .json, no suffix"
    )
    args = parser.parse_args()

    results = {"uniform": {}, "prioritized": {}}
    summary = {}
    for seed in args.seeds:
        for name in results:
            result = results[name][seed] = run(name == "prioritized", seed, args.episodes, args.max_episode_steps)
            lengths = np.array(result["lengths"])
            summary[f"{name} seed {seed}"] = {
                "total_steps": int(lengths.sum()),
                "episodes_reaching_the_flag": int(np.sum(result["reached"])),
                "mean_length_last_5_episodes": round(float(lengths[-5:].mean()), 1),
                "episode_lengths": lengths.tolist(),
                "wall_seconds": round(result["seconds"], 1),
            }
            print(f"{name:>11} seed {seed}: {summary[f'{name} seed {seed}']}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, out.with_suffix(".png"))
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "episodes": args.episodes,
                "seeds": args.seeds,
                "max_episode_steps": args.max_episode_steps,
                "summary": summary,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
