"""Gymnasium helpers: seeded envs and vector envs, and checks that an agent fits an env.

Always the gymnasium API: ``terminated`` stops bootstrapping, ``truncated`` (a time limit) does not.

Observations: agents take Box, Discrete, MultiDiscrete and MultiBinary spaces as the env gives them;
their networks encode them (``observation_encoding`` → ``tfrl.nets.ObservationEncoder``). Dict and
Tuple spaces of those are flattened into a Box by ``make_env`` and ``make_vector_env`` with
gymnasium's own ``FlattenObservation`` rather than by an encoder of ours: it already one-hot encodes
their Discrete and MultiDiscrete parts, in a fixed order (Dict keys sorted), and a Box is what the
export and every other tool downstream already handle. Any other space (Text, Graph, Sequence, or a
Dict or Tuple holding one) is refused with one clear ``EnvError``.

Pixels. ``ALE/<Game>-v5`` ids (extra ``atari``) get the standard DQN preprocessing from gymnasium's
own wrappers (Mnih et al. 2015; Machado et al. 2018 for the evaluation protocol): the base env is
made with ``frameskip=1`` so that ``AtariPreprocessing`` alone skips frames — up to 30 no-op starts,
4 frames per step with the last two max-pooled, 84×84 grey — then ``FrameStackObservation`` stacks 4
of them. Sticky actions stay at v5's default ``repeat_action_probability=0.25`` (Machado et al.'s
recommended protocol, and what Stable-Baselines3's rl-zoo trains v5 ids with): the agent cannot
memorise an open-loop sequence of actions. Training envs (``training=True``) also clip rewards to
their sign and end an episode at each life lost (without resetting the game: ``EpisodicLife``);
evaluation envs give the raw game score over whole games. ``MinAtar/<Game>-v1`` ids (extra
``minatar``) are MinAtar's own 10×10×C bool frames with its sticky actions (0.1), unstacked.
Any image env can stack frames with ``frame_stack=k``. Stacks come out **channels last**, the
oldest frame first: ``(84, 84, 4)`` uint8 for Atari, ``(H, W, k·C)`` for k frames of ``(H, W, C)``,
so the convolutional torso and the SavedModel take exactly what the env gives.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from tfrl.errors import EnvError, EnvFailed
from tfrl.nets import resolve_torso
from tfrl.references import imported, reference_of

ATARI_PREFIX = "ALE/"
MINATAR_PREFIX = "MinAtar/"
ATARI_FRAME_STACK = 4
# AtariPreprocessing's settings (its defaults, named here so run.json and the export record them).
ATARI_PREPROCESSING: dict[str, Any] = {
    "noop_max": 30,
    "frame_skip": 4,
    "screen_size": 84,
    "grayscale_obs": True,
    "terminal_on_life_loss": False,
}
_EXTRAS = {ATARI_PREFIX: ("atari", ("ale_py", "cv2")), MINATAR_PREFIX: ("minatar", ("minatar.gym",))}

ENCODED_OBSERVATIONS = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
_SUPPORTED_OBSERVATIONS = (
    "Box, Discrete, MultiDiscrete and MultiBinary observations, and Dict or Tuple ones made only of those "
    "(tfrl.make_env flattens them into a Box with gymnasium.wrappers.FlattenObservation)"
)


def _flattenable(space: gym.Space) -> bool:
    """Whether ``space`` is a Dict or Tuple made only of spaces the networks encode (nesting allowed)."""
    if not isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        return False
    parts = space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces
    return all(isinstance(part, ENCODED_OBSERVATIONS) or _flattenable(part) for part in parts)


def _flatten_observations(env: gym.Env) -> gym.Env:
    """``env`` seen through ``FlattenObservation`` when its observations are a Dict or Tuple we can flatten."""
    return gym.wrappers.FlattenObservation(env) if _flattenable(env.observation_space) else env


def _register_extra_envs(env_id: str) -> None:
    """Register ALE or MinAtar ids when one is asked for; a missing extra is one ``EnvError`` line.

    gymnasium 1.x loads neither plugin by itself: ALE ids exist after ``gym.register_envs(ale_py)``,
    MinAtar ones after ``minatar.gym.register_envs()``. cv2 is AtariPreprocessing's resize.
    """
    for prefix, (extra, modules) in _EXTRAS.items():
        if not env_id.startswith(prefix) or env_id in gym.envs.registry:
            continue
        try:
            imported = [importlib.import_module(module) for module in modules]
        except ImportError as error:
            raise EnvError(
                f'environment {env_id!r} needs the {extra} extra ({error.name} is missing): pip install -e ".[{extra}]"'
            ) from None
        if prefix == ATARI_PREFIX:
            gym.register_envs(imported[0])
        else:
            imported[0].register_envs()


def resolve_frame_stack(env_id: str, requested: int = 0) -> int:
    """How many frames ``make_env`` stacks: ``requested``, or for 0 the env's convention (4 for ALE ids,
    none — 1 — otherwise)."""
    if requested < 0:
        raise EnvError(f"frame_stack must be 0 (the env's convention) or a positive number, got {requested}")
    if requested:
        return requested
    return ATARI_FRAME_STACK if env_id.startswith(ATARI_PREFIX) else 1


def preprocessing(env_id: str, requested_stack: int = 0) -> dict[str, Any]:
    """What ``make_env`` does to ``env_id``'s observations and rewards, for run.json and the export."""
    described: dict[str, Any] = {"frame_stack": resolve_frame_stack(env_id, requested_stack), "channels_last": True}
    if env_id.startswith(ATARI_PREFIX):
        described["atari"] = {
            **ATARI_PREPROCESSING,
            "base_frameskip": 1,
            "repeat_action_probability": 0.25,  # v5's default, kept
            "training_only": ["reward clipped to its sign", "end of life is terminal"],
        }
    return described


class EpisodicLife(gym.Wrapper):
    """Atari training: a life lost is a terminal state, but the game only resets when it is over.

    ``AtariPreprocessing(terminal_on_life_loss=True)`` would restart the whole game at every lost
    life, so the agent would never see the later part of a game; this is the wrapper of the Nature
    DQN and Stable-Baselines3 (``EpisodicLifeEnv``): after a life lost, ``reset`` takes one no-op
    step and play goes on from there.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()  # type: ignore[attr-defined]
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return observation, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if self.game_over or seed is not None:
            observation, info = self.env.reset(seed=seed, options=options)
        else:
            observation, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op itself ended the game
                observation, info = self.env.reset(options=options)
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()  # type: ignore[attr-defined]
        return observation, info


def channels_last(stack: np.ndarray) -> np.ndarray:
    """A ``FrameStackObservation`` stack ``(k, *frame)`` with the stack axis moved last, oldest frame first:
    ``(H, W, k)`` for grey ``(H, W)`` frames, ``(H, W, k·C)`` for ``(H, W, C)`` ones (frame ``t`` is
    channels ``t·C … t·C + C − 1``), ``(d, k)`` for vectors."""
    if stack.ndim == 4:
        return np.moveaxis(stack, 0, 2).reshape(*stack.shape[1:3], -1)
    return np.moveaxis(stack, 0, -1)


def _stack_frames(env: gym.Env, stack: int) -> gym.Env:
    """``env`` seen through ``FrameStackObservation`` (its default padding: the first frame repeated)
    with the stack moved to the last axis."""
    env = gym.wrappers.FrameStackObservation(env, stack)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box)
    stacked = gym.spaces.Box(channels_last(space.low), channels_last(space.high), dtype=space.dtype)
    return gym.wrappers.TransformObservation(env, channels_last, stacked)


def _unknown_env_message(env_id: str) -> str:
    known = sorted(gym.envs.registry)
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "see gymnasium.pprint_registry() for the ids installed"
    return f"unknown environment id {env_id!r}: {hint}"


def action_grid(space: gym.Space, bins: int) -> np.ndarray:
    """The actions of a Box space discretised into ``bins`` evenly spaced values per dimension.

    Shape ``[bins ** d, d]`` for a ``d``-dimensional space, endpoints included, so 11 bins over
    Pendulum's [-2, 2] torque give -2.0, -1.6, ..., 2.0, the tutorials' grid.
    """
    if not isinstance(space, gym.spaces.Box):
        raise EnvError(f"only a Box action space can be discretised, not {space}")
    if bins < 2:
        raise EnvError(f"discretising needs at least 2 actions per dimension, got {bins}")
    low, high = np.asarray(space.low, np.float64).ravel(), np.asarray(space.high, np.float64).ravel()
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise EnvError(f"cannot discretise an action space with infinite bounds: {space}")
    if len(low) > 3 or bins ** len(low) > MAX_DISCRETE_ACTIONS:
        raise EnvError(
            f"discretising {len(low)} action dimension(s) into {bins} bins each gives {bins ** len(low)} actions; "
            f"at most {MAX_DISCRETE_ACTIONS} are allowed (e.g. --discretize "
            f"{int(MAX_DISCRETE_ACTIONS ** (1 / len(low)) + 1e-9)}), or use a continuous-action algorithm"
        )
    axes = [np.linspace(lo, hi, bins) for lo, hi in zip(low, high, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(low))
    return grid.astype(space.dtype)


MAX_SEED = 2**31 - 1  # a run's seed: numpy takes seeds below 2**32, with room for the offsets added to it
MAX_EPISODE_SEED = 2**32 - 1  # what numpy's legacy seeding (and so many envs' own) takes


def check_episode_seeds(seed: int, episodes: int) -> None:
    """Episodes are seeded ``seed``, ``seed + 1``, …: every one of them must be a seed the env takes."""
    if not 0 <= seed <= MAX_EPISODE_SEED - episodes:
        raise EnvError(
            f"seed must be an integer from 0 to {MAX_EPISODE_SEED - episodes} (episodes are seeded seed, "
            f"seed + 1, …), got {seed}"
        )


MAX_DISCRETE_ACTIONS = 10_000  # a Q-network's output layer, and the grid an export carries


class IndexedActions(gym.ActionWrapper):
    """A ``Discrete(n, start=s)`` env seen through ``Discrete(n)``: the agent's index ``i`` is the env's
    action ``s + i``. Agents act in indices 0..n-1 (a categorical head's rows, a Q-network's outputs);
    the export adds ``start`` back inside its graph (``tfrl.export.GridActionPolicy``), so it drives
    the env itself."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.action_space
        assert isinstance(space, gym.spaces.Discrete)
        self.start = int(space.start)
        self.action_space = gym.spaces.Discrete(int(space.n))

    def action(self, action: Any) -> Any:
        return np.int64(self.start + int(action))


def env_actions(space: gym.Space) -> np.ndarray | None:
    """The env's actions by the index an agent picks, for a ``Discrete`` space that does not start at 0
    (``start`` … ``start + n - 1``); None where indices already are the env's actions."""
    if isinstance(space, gym.spaces.Discrete) and int(space.start) != 0:
        return np.arange(int(space.start), int(space.start) + int(space.n), dtype=np.int64)
    return None


class DiscretizeActions(gym.ActionWrapper):
    """A Box-action env seen through ``Discrete(bins ** d)``: action ``i`` is row ``i`` of ``action_grid``.

    This is how the Double DQN and Dueling DQN tutorials drive Pendulum with a Q-network (11 and 25
    torques). ``grid`` is kept on the wrapper so an export can map indices back to real actions.
    """

    def __init__(self, env: gym.Env, bins: int) -> None:
        super().__init__(env)
        self.bins = int(bins)
        self.grid = action_grid(env.action_space, self.bins)
        self.action_space = gym.spaces.Discrete(len(self.grid))

    def action(self, action: Any) -> np.ndarray:
        return self.grid[int(action)].reshape(self.env.action_space.shape)


# Factories a new process could not import (a lambda, a local function, a class of ``__main__``),
# by the reference ``env_reference`` gave them: only this process can make their envs.
_LOCAL_FACTORIES: dict[str, Callable[..., gym.Env]] = {}
_GYMNASIUM_MODULES = ("gymnasium.", "ale_py", "minatar")  # envs whose own checks gymnasium runs already


def env_reference(env: str | Callable[..., gym.Env]) -> str:
    """The string that makes ``env`` again, in any process: an env id (``CartPole-v1``), gymnasium's
    ``module:EnvId``, or ``module:factory`` for a class or function that returns an env.

    A factory a new process cannot import (a lambda, a local function, a class of the script's
    ``__main__``) still trains here; its runs resume and evaluate where it is passed again
    (``train(resume=RUN, env=factory)``). An env *instance* is refused: tfrl makes one env per
    vector slot and per evaluation episode, and again on resume.
    """
    if isinstance(env, str):
        return env
    if isinstance(env, gym.Env):
        raise EnvError(
            f"pass the env's class or a function that makes it, not an instance ({env!r}): tfrl makes several "
            f"copies (one per vector env and evaluation episode) and makes it again on resume, e.g. "
            f"tfrl.train(algorithm, {type(env).__name__}, env_kwargs={{...}})"
        )
    if not callable(env):
        raise EnvError(
            f"env must be an env id ('CartPole-v1'), 'module:EnvId', or a class or function returning a "
            f"gymnasium.Env; got {env!r}"
        )
    reference = reference_of(env)
    if imported(reference) is not env:
        _LOCAL_FACTORIES[reference] = env
    return reference


def require_importable(env_id: str, why: str) -> None:
    """Refuse an env that only this process can make (``env_reference`` of a lambda, a local function
    or a class of ``__main__``) where another process must make it: ``why`` says which."""
    if env_id in _LOCAL_FACTORIES:
        raise EnvError(
            f"{why}, but the env factory {env_id} cannot be imported there (a lambda, a local function or a "
            "class of the script's __main__): define it at the top level of an importable module and pass "
            "it (or 'module:name')"
        )


def _env_maker(env_id: str) -> str | gym.envs.registration.EnvSpec:
    """What ``gym.make`` is given for ``env_id``: a registered id, or a spec of the factory it names.

    ``module:name`` imports ``module`` first (gymnasium's own form); ``name`` is then an env id the
    module registered, or a class or function in it that returns an env.
    """
    if env_id in _LOCAL_FACTORIES:
        return _factory_spec(env_id, _LOCAL_FACTORIES[env_id])
    if ":" not in env_id:
        _register_extra_envs(env_id)
        if env_id not in gym.envs.registry:
            raise EnvError(_unknown_env_message(env_id))
        return env_id
    module_name, _, name = env_id.partition(":")
    if module_name == "__main__" or "<" in name:
        raise EnvError(
            f"the env {env_id} was made by a factory of the program that trained with it (a lambda, a local "
            "function or a class of its __main__), which cannot be imported here: pass that factory again, "
            "e.g. tfrl.train(resume=RUN, env=factory) or tfrl.evaluate(policy, factory)"
        )
    try:
        importlib.import_module(module_name)
    except ImportError as error:
        raise EnvError(
            f"--env {env_id}: cannot import the module {module_name!r} ({error}); is it installed or on PYTHONPATH?"
        ) from None
    if name in gym.envs.registry:
        return name
    factory = imported(env_id)
    if not callable(factory):
        raise EnvError(
            f"--env {env_id}: {module_name} registers no env id {name!r} and has no class or function of that "
            "name that makes an env"
        )
    return _factory_spec(env_id, factory)


def _factory_spec(env_id: str, factory: Callable[..., gym.Env]) -> gym.envs.registration.EnvSpec:
    """A gymnasium spec for ``factory``, so ``gym.make`` wraps its envs as it wraps registered ones."""
    name = re.sub(r"[^\w.-]", "_", env_id.rpartition(":")[2]) or "env"
    return gym.envs.registration.EnvSpec(id=name, entry_point=factory)


def env_name(env_id: str) -> str:
    """``env_id`` as one path component: the part after a module's colon, a namespace slash made a dash
    (``ALE/Pong-v5`` → ``ALE-Pong-v5``, ``my_pkg.envs:Reach-v0`` → ``Reach-v0``)."""
    return re.sub(r"[^\w.-]", "-", env_id.rpartition(":")[2])


def is_third_party(env: gym.Env) -> bool:
    """Whether ``env`` comes from outside gymnasium and the plugins tfrl knows (a user's own env)."""
    entry = env.spec.entry_point if env.spec is not None else None
    module = entry.partition(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", "") or ""
    return not module.startswith(_GYMNASIUM_MODULES)


def check_user_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> list[str]:
    """Run gymnasium's env checker (``gymnasium.utils.env_checker.check_env``) on an env from outside
    gymnasium, and print each distinct finding once as ``tfrl: env check of ...``. Returns the findings.

    The checker resets and steps a separate instance a few times. Its findings are warnings: what
    tfrl cannot handle is refused by tfrl's own checks, by name.
    """
    env = make_env(env_id, env_kwargs=env_kwargs)
    findings: list[str] = []
    try:
        if not is_third_party(env):
            return findings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                check_env(env.unwrapped, skip_render_check=True, skip_close_check=True)
            except Exception as error:  # noqa: BLE001 — the checker's assertion, or the env's own error
                findings.append(f"{type(error).__name__}: {error}")
        warned = [re.sub(r"\x1b\[[0-9;]*m", "", str(warning.message)).removeprefix("WARN: ") for warning in caught]
        findings = list(dict.fromkeys(warned + findings))  # each once, in the order found
        if not has_time_limit(env):
            findings.append(
                "it has no time limit, so an episode (an evaluation's too) ends only when the env terminates it; "
                "if it may not, give gymnasium's max_episode_steps (--env-kwargs max_episode_steps=N)"
            )
    finally:
        env.close()
    for finding in findings:
        print(
            f"tfrl: env check of {env_id} (gymnasium's env checker; --no-env-check skips it): {finding}",
            file=sys.stderr,
        )
    return findings


def has_time_limit(env: gym.Env) -> bool:
    """Whether a ``TimeLimit`` wraps ``env`` (a registered ``max_episode_steps``, or the factory's own)."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return True
        env = env.env
    return False


# Where an episode of an env without a time limit is cut when a greedy policy plays it (an evaluation,
# a recording): a deterministic policy can walk into a wall forever (CliffWalking-v1 has no limit).
PLAYING_STEP_LIMIT = 10_000


def limited_for_playing(envs: list[gym.Env], env_id: str) -> list[gym.Env]:
    """``envs`` (copies of one env) as a greedy policy plays them: those without a time limit get one
    of ``PLAYING_STEP_LIMIT`` steps, said once on stderr, so an evaluation always ends."""
    if not envs or has_time_limit(envs[0]):
        return envs
    print(
        f"tfrl: {env_id} has no time limit, so its evaluation and recorded episodes end after "
        f"{PLAYING_STEP_LIMIT:,} steps (a greedy policy may never end one); give max_episode_steps to choose",
        file=sys.stderr,
    )
    return [gym.wrappers.TimeLimit(env, max_episode_steps=PLAYING_STEP_LIMIT) for env in envs]


def _make(env_id: str, training: bool, stack: int, **kwargs: Any) -> gym.Env:
    """``gym.make`` and the observation wrappers: Atari preprocessing, Dict/Tuple flattening, frame stacking."""
    env: gym.Env
    maker = _env_maker(env_id)
    if env_id.startswith(ATARI_PREFIX):
        env = gym.wrappers.AtariPreprocessing(gym.make(maker, frameskip=1, **kwargs), **ATARI_PREPROCESSING)
        if training:
            env = gym.wrappers.TransformReward(EpisodicLife(env), lambda reward: float(np.sign(float(reward))))
    else:
        env = _flatten_observations(gym.make(maker, **kwargs))
    return env if stack == 1 else _stack_frames(env, stack)


def make_env(
    env_id: str,
    seed: int | None = None,
    discretize: int | None = None,
    *,
    training: bool = False,
    frame_stack: int = 0,
    indexed_actions: bool = False,
    env_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> gym.Env:
    """``gym.make`` with a clear ``EnvError`` for an unknown id or a missing extra; seeds its spaces.

    Dict and Tuple observations (of Box, Discrete, MultiDiscrete and MultiBinary parts) are flattened
    into one Box with gymnasium's ``FlattenObservation``, so every agent sees an array (see the module
    docstring for why). ALE and MinAtar ids get the preprocessing of the module docstring; ``training``
    adds what only training uses (Atari's clipped rewards and life-loss terminals), and
    ``frame_stack=k`` stacks ``k`` frames channels last (0: the env's convention, ``resolve_frame_stack``).
    ``discretize=N`` wraps a Box action space into N evenly spaced actions per dimension, and
    ``indexed_actions`` a ``Discrete(n, start=s)`` one into ``Discrete(n)`` (``IndexedActions``): both
    are what an agent acts in, while an export drives the env as it is. ``env_kwargs`` (the env's own
    arguments, recorded with the run) and ``kwargs`` go to ``gym.make`` (e.g. ``is_slippery=False``,
    ``max_episode_steps=50``). ``env_id`` is anything ``env_reference`` returns.
    """
    stack = resolve_frame_stack(env_id, frame_stack)
    try:
        env = _make(env_id, training, stack, **(env_kwargs or {}), **kwargs)
    except gym.error.DependencyNotInstalled as error:
        raise EnvError(f"environment {env_id!r} needs an extra dependency: {error}") from error
    except gym.error.Error as error:
        raise EnvError(f"cannot make environment {env_id!r}: {error}") from error
    except EnvError:
        raise
    except Exception as error:  # noqa: BLE001 — a user's env (or a keyword it does not take) may raise anything
        given = f" with env_kwargs {dict(env_kwargs)}" if env_kwargs else ""
        cause = f"{type(error).__name__}: {error}{_own_frames(error)}"
        raise EnvError(f"cannot make environment {env_id!r}{given}: {cause}") from None
    if discretize is not None:
        try:
            env = DiscretizeActions(env, discretize)
        except EnvError as error:
            env.close()
            raise EnvError(f"--discretize {discretize} on {env_id}: {error}") from None
    elif indexed_actions and env_actions(env.action_space) is not None:
        env = IndexedActions(env)
    if seed is not None:
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def _own_frames(error: BaseException) -> str:
    """The traceback lines of ``error`` inside the env's own code (not gymnasium's or tfrl's), if any."""
    library = (os.path.dirname(gym.__file__), os.path.dirname(__file__))
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith(library)]
    return "\n" + "".join(traceback.format_list(frames)).rstrip() if frames else ""


def make_vector_env(
    env_id: str,
    num_envs: int,
    discretize: int | None = None,
    *,
    training: bool = False,
    frame_stack: int = 0,
    indexed_actions: bool = False,
    env_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> gym.vector.SyncVectorEnv:
    """``num_envs`` copies in one process, reset in the same step an episode ends.

    Same-step reset puts each finished episode's last observation in ``info["final_obs"]``, which the
    training loop needs for correct targets. Seed it through ``reset(seed=...)``: sub-env ``i`` gets
    ``seed + i``. Every sub-env is wrapped as ``make_env`` wraps it (the same ``training`` and
    ``frame_stack``): Dict/Tuple observations flattened, pixels preprocessed, and with
    ``discretize=N`` its Box action space discretised.
    """
    if num_envs < 1:
        raise EnvError(f"num_envs must be at least 1, got {num_envs}")
    options = dict(
        discretize=discretize,
        training=training,
        frame_stack=frame_stack,
        indexed_actions=indexed_actions,
        env_kwargs=env_kwargs,
        **kwargs,
    )
    make_env(env_id, **options).close()  # fail early with a clear message, not inside the vector env
    return gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id, **options) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def final_observations(next_observations: np.ndarray, done: np.ndarray, info: dict) -> np.ndarray:
    """The real next observation of each sub-env: the episode's last one where it just ended."""
    if not np.any(done):
        return next_observations
    real = next_observations.copy()
    for index in np.flatnonzero(done):
        real[index] = info["final_obs"][index]
    return real


def _json_bounds(bounds: np.ndarray) -> Any:
    """A Box's bounds as JSON numbers, ``None`` (``null``) for an infinite one."""
    values = np.asarray(bounds, np.float64)
    listed = values.astype(object)
    listed[~np.isfinite(values)] = None
    return listed.tolist()


def describe_space(space: gym.Space) -> dict:
    """A JSON-friendly description of a space, for export metadata.

    Every kind has ``type`` and ``shape`` (the shape of one observation or action: ``[]`` for
    Discrete, whose values are single integers); Discrete adds ``n`` and ``start``, MultiDiscrete
    ``nvec`` and ``start``, MultiBinary ``n``, Box its bounds (``null`` where a bound is infinite:
    JSON has no infinity).
    """
    shape = None if space.shape is None else list(space.shape)
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "shape": shape, "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "shape": shape,
            "dtype": str(space.dtype),
            "nvec": space.nvec.tolist(),
            "start": space.start.tolist(),
        }
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": shape, "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": shape,
            "dtype": str(space.dtype),
            "low": _json_bounds(space.low),
            "high": _json_bounds(space.high),
        }
    return {"type": type(space).__name__, "shape": shape, "repr": repr(space)}


def observation_encoding(space: gym.Space) -> dict | None:
    """How ``tfrl.nets.ObservationEncoder`` turns observations of ``space`` into features.

    None for a Box (cast to float32); uint8 frames are scaled by 1/255 too. Otherwise the JSON-friendly ``describe_space`` entries the
    encoder needs: ``n`` and ``start`` of a Discrete space (one-hot), ``nvec`` and ``start`` of a
    MultiDiscrete one, flattened to one entry per component (one one-hot each), the type of a
    MultiBinary one (cast and flatten).
    """
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "scale": 1 / 255} if space.dtype == np.uint8 else None
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.ravel().tolist(), "start": space.start.ravel().tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary"}
    raise EnvError(f"no observation encoding for {space}: supported are {_SUPPORTED_OBSERVATIONS}")


def pixel_dtype(space: gym.Space) -> np.dtype | None:
    """The dtype of image observations — a rank-3 (height, width, channels) Box of uint8 or bool frames,
    which replay memories keep as they are and one frame at a time — or None for any other space."""
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype in (np.uint8, np.bool_):
        return np.dtype(space.dtype)
    return None


def network_inputs(space: gym.Space, torso: str) -> dict[str, Any]:
    """The keyword arguments every ``tfrl.nets`` network takes for observations of ``space``: its
    encoder description and its torso (``torso="auto"`` resolved: convolutional for images)."""
    try:
        resolved = resolve_torso(torso, tuple(space.shape or ()))
    except ValueError as error:
        raise EnvError(f"{error} ({space})") from None
    return {"observation_space": observation_encoding(space), "torso": resolved}


def check_spaces(
    algorithm: str,
    env_id: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    action_spaces: Iterable[type[gym.Space]],
    hint: str = "",
) -> None:
    """Raise ``EnvError`` unless the env's observations can be encoded and its actions are one of ``action_spaces``."""
    allowed = tuple(action_spaces)
    if not isinstance(action_space, allowed):
        names = " or ".join(kind.__name__ for kind in allowed)
        message = f"{algorithm} needs a {names} action space, but {env_id} has {action_space}"
        raise EnvError(f"{message}; {hint}" if hint else message)
    if isinstance(action_space, gym.spaces.Box):
        _check_box_actions(algorithm, env_id, action_space)
    if isinstance(action_space, gym.spaces.Discrete) and int(action_space.n) > MAX_DISCRETE_ACTIONS:
        raise EnvError(
            f"{algorithm} on {env_id}: {action_space} has {action_space.n} actions; at most {MAX_DISCRETE_ACTIONS}"
        )
    if not isinstance(observation_space, ENCODED_OBSERVATIONS):
        raise EnvError(
            f"{algorithm} cannot take the observations of {env_id}, {observation_space}: "
            f"supported are {_SUPPORTED_OBSERVATIONS}"
        )


def _check_box_actions(algorithm: str, env_id: str, space: gym.spaces.Box) -> None:
    """Every continuous-action head squashes or clips into the bounds and outputs one float vector:
    a Box action space must be a non-empty vector of floats with finite bounds, low below high."""
    problem = None
    if len(space.shape) != 1 or space.shape[0] == 0:
        problem = (
            f"its shape is {space.shape}, but a non-empty vector of actions, shape (d,), is needed "
            "(wrap the env in a gymnasium ActionWrapper that takes a flat vector)"
        )
    elif not np.issubdtype(space.dtype, np.floating):
        problem = f"its dtype is {space.dtype}, but float actions are needed (or use a Discrete space)"
    elif not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        problem = "its bounds are not finite, but the actor squashes its actions into [low, high]"
    elif not np.all(space.low < space.high):
        problem = "low is not below high in every dimension"
    if problem is not None:
        raise EnvError(f"{algorithm} cannot act in the Box action space of {env_id}, {space}: {problem}")


def check_observation(env_id: str, space: gym.Space, observation: Any, when: str) -> None:
    """Raise ``EnvError`` unless ``observation`` has the shape and kind of values ``space`` declares.

    Run on the probe env's first observation before any file is written: an env that declares one
    space and returns another would otherwise fail deep inside TensorFlow, or train on garbage.
    """
    array = np.asarray(observation)
    expected = tuple(space.shape or ())
    if array.shape != expected:
        raise EnvError(
            f"{env_id} declares observations of shape {expected} ({space}) but {when} returned one of shape "
            f"{array.shape}; fix the env's observation_space or what it returns"
        )
    numeric = np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    integral = np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
    # integer spaces and frames (uint8 / bool Box) are stored and encoded as integers: floats would be cut
    needs_integers = not isinstance(space, gym.spaces.Box) or pixel_dtype(space) is not None
    if not numeric or (needs_integers and not integral):
        raise EnvError(
            f"{env_id} declares {space} but {when} returned an observation of dtype {array.dtype}; "
            f"expected {'integers' if needs_integers else 'numbers'}"
        )
    if not isinstance(space, gym.spaces.Box) and not space.contains(array.astype(space.dtype)):
        raise EnvError(f"{env_id} declares {space} but {when} returned {array.tolist()}, which is outside it")


def require_finite_from_env(env_id: str, values: Any, what: str, where: str) -> None:
    """Raise ``EnvFailed`` naming the env as the cause when ``values`` (rewards, float observations, a
    batch of either) hold NaN or infinity. Nothing learns from such a value, and a score made of one is
    no score: the run stops rather than record, checkpoint or export it."""
    values = np.asarray(values)
    if values.dtype.kind != "f" or np.isfinite(values).all():
        return
    rows = values.reshape(len(values), -1) if values.ndim else values.reshape(1, 1)
    bad_rows = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    sample = rows[bad_rows[0]][~np.isfinite(rows[bad_rows[0]])][0]
    which = f" (rows {bad_rows[:5].tolist()} of the batch)" if len(rows) > 1 else ""
    raise EnvFailed(
        f"the env {env_id} returned a non-finite {what} ({sample}) {where}{which}; "
        "tfrl cannot learn from or score it: fix the env (its reward or observation computation)"
    )
