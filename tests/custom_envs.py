"""A user's own envs, as a package of theirs would define them: importable as ``custom_envs``
(tests/ on PYTHONPATH), registering ``custom_envs:Reach-v0`` on import, with a factory beside it."""

from typing import ClassVar

import gymnasium as gym
import numpy as np


class Reach(gym.Env):
    """Move a point on a line to ``target``: actions 0 (left) and 1 (right) by 0.1, reward −|distance|
    each step, 20 steps. ``target`` has no default: an env made without its kwargs fails loudly."""

    metadata: ClassVar = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, target, render_mode=None):
        self.target, self.render_mode = float(target), render_mode
        self.observation_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = float(self.np_random.uniform(-1.0, 1.0))
        return self._observation(), {}

    def step(self, action):
        self.position = float(np.clip(self.position + (0.1 if action == 1 else -0.1), -2.0, 2.0))
        return self._observation(), -abs(self.position - self.target), False, False, {}

    def render(self):
        frame = np.zeros((16, 64, 3), np.uint8)
        frame[:, int((self.position + 2.0) * 15.9)] = 255
        return frame

    def _observation(self):
        return np.array([self.position, self.target], np.float32)


def make_reach(target, render_mode=None):
    """A factory, as ``tfrl.train("dqn", make_reach, env_kwargs={"target": 0.5})`` takes it."""
    return gym.wrappers.TimeLimit(Reach(target, render_mode), max_episode_steps=20)


gym.register("Reach-v0", entry_point=Reach, max_episode_steps=20)
