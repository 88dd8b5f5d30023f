"""One Stable-Baselines3 run for ``ppo_sac.py``, in the peers' virtual environment (never imports tfrl).

Reads a JSON job from argv[1] (algorithm, env id, seed, env steps, evaluation cadence, target, whether
to stop there, rl-zoo3 hyperparameters), trains, and prints one JSON line: its evaluations as
``[env step, mean return, seconds since the start]`` and the totals. Evaluation is the same as tfrl's:
every ``eval_every`` env steps, 20 deterministic episodes side by side, seeded ``1_000_000 + seed + i``,
and its time counts in the wall time, as it does in tfrl's.
"""

import json
import sys
import time

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

EVALUATION_SEED_OFFSET = 1_000_000


def linear(start: float):
    """rl-zoo3's ``lin_<start>``: the value falls linearly from ``start`` to 0 over the run."""
    return lambda progress_remaining: progress_remaining * start


def evaluate(model, env_id: str, episodes: int, seed: int) -> float:
    envs = [gym.make(env_id) for _ in range(episodes)]
    observations = np.stack([env.reset(seed=seed + index)[0] for index, env in enumerate(envs)])
    returns, active = np.zeros(episodes), np.ones(episodes, bool)
    while active.any():
        indices = np.flatnonzero(active)
        actions, _ = model.predict(observations[indices], deterministic=True)
        for index, action in zip(indices, actions, strict=True):
            observation, reward, terminated, truncated, _ = envs[index].step(action)
            observations[index], returns[index] = observation, returns[index] + reward
            active[index] = not (terminated or truncated)
    return float(np.mean(returns))


class Evaluations(BaseCallback):
    def __init__(self, job: dict, start: float) -> None:
        super().__init__()
        self.job, self.start = job, start
        self.next_eval = job["eval_every"]
        self.rows: list[list[float]] = []
        self.evaluation_seconds = 0.0

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += self.job["eval_every"]
        began = time.perf_counter()
        mean = evaluate(self.model, self.job["env_id"], 20, EVALUATION_SEED_OFFSET + self.job["seed"])
        self.evaluation_seconds += time.perf_counter() - began
        self.rows.append([self.num_timesteps, mean, round(time.perf_counter() - self.start, 3)])
        return not (self.job["stop_at_target"] and mean >= self.job["target"])


def main() -> None:
    job = json.loads(sys.argv[1])
    settings = dict(job["hyperparams"])
    n_envs = settings.pop("n_envs", 1)
    for key in ("learning_rate", "clip_range"):
        if isinstance(settings.get(key), str) and settings[key].startswith("lin_"):
            settings[key] = linear(float(settings[key][4:]))
    algorithm = {"ppo": PPO, "sac": SAC}[job["algorithm"]]
    start = time.perf_counter()
    env = make_vec_env(job["env_id"], n_envs=n_envs, seed=job["seed"])
    model = algorithm("MlpPolicy", env, seed=job["seed"], device="cpu", **settings)
    callback = Evaluations(job, start)
    model.learn(total_timesteps=job["steps"], callback=callback)
    if not callback.rows or callback.rows[-1][0] < model.num_timesteps:
        mean = evaluate(model, job["env_id"], 20, EVALUATION_SEED_OFFSET + job["seed"])
        callback.rows.append([model.num_timesteps, mean, round(time.perf_counter() - start, 3)])
    wall = time.perf_counter() - start
    result = {
        "evaluations": callback.rows,
        "env_steps": model.num_timesteps,
        "wall_seconds": wall,
        "evaluation_seconds": callback.evaluation_seconds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
