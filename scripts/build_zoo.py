"""Train, evaluate, record and describe every policy shipped in ``saved_models/``.

    python scripts/build_zoo.py                      # all of them (an hour or more on 2 cores)
    python scripts/build_zoo.py dqn-CartPole-v1      # one, by name
    python scripts/build_zoo.py --list               # the names and how each is trained
    python scripts/build_zoo.py --cards              # rewrite the cards and tables, training nothing

For each entry: ``tfrl.train`` with the settings below (the export is the best-evaluated policy),
100 seeded evaluation episodes of the export (mean ± std), a GIF of one episode, and a model card
``saved_models/<name>/README.md`` with the score, the env steps and wall time it took, the command
that reproduces it, the config and the versions. ``saved_models/zoo.json`` collects the figures and
``saved_models/README.md`` (the table of every shipped policy) is written from it: never by hand.
"""

import tfrl.quiet  # first: silences TensorFlow's start-up lines

# isort: split
import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

import tfrl
from tfrl.export import check_export_target, load_policy
from tfrl.recording import record

ZOO_DIR = Path(__file__).resolve().parent.parent / "saved_models"
INDEX = ZOO_DIR / "zoo.json"
EVALUATION_EPISODES = 100
EVALUATION_SEED = 10_000  # far from every training and in-training evaluation seed
VALUE_ITERATION = "value-iteration-FrozenLake-v1"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One shipped policy: how to train it and how to film it."""

    algorithm: str
    env_id: str
    steps: int
    preset: str = "default"
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    discretize: int | None = None
    num_envs: int | None = None
    seed: int = 0
    eval_every: int | None = None
    early_stop: bool = True
    gif: dict[str, int] = dataclasses.field(default_factory=lambda: {"frame_skip": 2, "scale": 3, "max_frames": 150})
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.algorithm}-{self.env_id.replace('/', '-')}"

    def command(self) -> str:
        """The ``tfrl train`` line that trains this policy."""
        parts = [
            "tfrl train",
            self.algorithm,
            "--env",
            self.env_id,
            "--seed",
            str(self.seed),
            "--steps",
            str(self.steps),
        ]
        if self.preset != "default":
            parts += ["--preset", self.preset]
        if self.num_envs is not None:
            parts += ["--num-envs", str(self.num_envs)]
        parts += [f"--set {key}={_text(value)}" for key, value in self.overrides.items()]
        if self.discretize is not None:
            parts += ["--discretize", str(self.discretize)]
        if self.eval_every is not None:
            parts += ["--eval-every", str(self.eval_every)]
        if not self.early_stop:
            parts.append("--no-early-stop")
        return " ".join(parts)


def _text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value).lower()


# rl-zoo3's tuned DQN settings for MountainCar-v0 (hyperparams/dqn.yml), with prioritized replay on.
MOUNTAINCAR_PER = {
    "learning_rate": 4e-3,
    "batch_size": 128,
    "buffer_size": 10_000,
    "learning_starts": 1_000,
    "gamma": 0.98,
    "target_update_interval": 600,
    "train_freq": 16,
    "gradient_steps": 8,
    "exploration_steps": 24_000,
    "exploration_final_eps": 0.07,
    "prioritized": True,
}

ZOO = [
    Entry("dqn", "CartPole-v1", 50_000),
    Entry("dqn", "Acrobot-v1", 100_000, eval_every=5_000),
    Entry("double-dqn", "Pendulum-v1", 40_000, preset="hands-on", discretize=11, early_stop=False),
    Entry("dueling-dqn", "Pendulum-v1", 40_000, preset="hands-on", discretize=25, early_stop=False),
    Entry("dqn", "MountainCar-v0", 150_000, overrides=MOUNTAINCAR_PER, eval_every=5_000, note="prioritized replay"),
    Entry("reinforce", "CartPole-v1", 300_000),
    Entry("actor-critic", "CartPole-v1", 200_000),
    Entry("actor-critic", "Pendulum-v1", 400_000, preset="pendulum", early_stop=False),
    Entry("ddpg", "Pendulum-v1", 20_000, early_stop=False),
    Entry("td3", "Pendulum-v1", 20_000, early_stop=False),
    Entry("td3", "MountainCarContinuous-v0", 60_000, overrides={"noise_type": "ou", "exploration_noise": 0.5}),
    # trained before pipelined workers became A3C's default: in lockstep
    Entry("a3c", "CartPole-v1", 200_000, overrides={"pipeline": False}),
    Entry("a3c", "Pendulum-v1", 300_000, preset="pendulum", early_stop=False),
    Entry("a3c-rnn", "CartPole-v1", 300_000, overrides={"pipeline": False}),
    # trained with rl-zoo3's CartPole settings, PPO's default before it was retuned
    Entry("ppo", "CartPole-v1", 200_000, num_envs=8, overrides={"learning_rate": 1e-3, "gamma": 0.98, "gae_lambda": 0.8}),
    # trained with the pendulum preset before it was retuned (8 envs × 128 steps, 20 epochs, σ 2 from the start)
    Entry("ppo", "Pendulum-v1", 300_000, preset="pendulum", early_stop=False,
          overrides={"n_steps": 512, "minibatches": 64, "epochs": 10, "anneal_steps": 150_000, "initial_scale": 1.0}),
    Entry("sac", "Pendulum-v1", 20_000, early_stop=False),
    Entry("sac", "MountainCarContinuous-v0", 50_000, preset="mountaincar"),
    Entry("dqn", "MinAtar/Breakout-v1", 250_000, preset="minatar", eval_every=25_000, early_stop=False,
          gif={"frame_skip": 1, "scale": 1, "max_frames": 150}),
    Entry("dqn", "FrozenLake-v1", 100_000, preset="frozenlake", eval_every=5_000, early_stop=False,
          gif={"frame_skip": 1, "scale": 2, "max_frames": 150}),
]  # fmt: skip


def _size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def build(entry: Entry) -> dict[str, Any]:
    """Train ``entry``, ship its export in ``saved_models/<name>/``, and return its zoo figures."""
    with tempfile.TemporaryDirectory() as scratch:
        result = tfrl.train(
            entry.algorithm,
            entry.env_id,
            preset=entry.preset,
            overrides=entry.overrides,
            seed=entry.seed,
            total_steps=entry.steps,
            eval_every=entry.eval_every,
            stop_at_threshold=entry.early_stop,
            discretize=entry.discretize,
            num_envs=entry.num_envs,
            logdir=Path(scratch) / "runs",
            export_dir=ZOO_DIR,
            replace_export=True,  # the zoo's entry is the policy this build makes
            progress=False,
        )
    assert result.export_path is not None
    run = {"env_steps": result.env_steps, "best_step": result.best_step, "wall_seconds": round(result.wall_seconds, 1)}
    return describe(entry.name, entry.algorithm, entry.env_id, entry.note, run, entry.command(), entry.gif)


def build_value_iteration() -> dict[str, Any]:
    """The exact FrozenLake solution of ``tfrl.mdp`` (chapter 3), shipped beside DQN's learned one."""
    path = ZOO_DIR / VALUE_ITERATION
    check_export_target(path)
    if path.exists():
        shutil.rmtree(path)  # an earlier tfrl export (checked above): the script writes a fresh one
    command = f"python scripts/frozenlake_exact.py --out saved_models/{VALUE_ITERATION}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "scripts/frozenlake_exact.py", "--out", str(path)], check=True, cwd=ZOO_DIR.parent)
    run = {"env_steps": 0, "best_step": 0, "wall_seconds": round(time.perf_counter() - start, 1)}
    gif = {"frame_skip": 1, "scale": 2, "max_frames": 150}
    return describe(
        VALUE_ITERATION, "value-iteration", "FrozenLake-v1", "exact, from the env's model", run, command, gif
    )


def describe(
    name: str, algorithm: str, env_id: str, note: str, run: dict[str, Any], command: str, gif: dict[str, int]
) -> dict[str, Any]:
    """Evaluate, film and card the export ``saved_models/<name>``; its zoo figures."""
    path = ZOO_DIR / name
    policy = load_policy(path)
    returns = tfrl.evaluate(policy, env_id, EVALUATION_EPISODES, EVALUATION_SEED)
    recording = record(path, path / "episode.gif", seed=EVALUATION_SEED, **gif)
    figures = {
        "name": name,
        "algorithm": algorithm,
        "env_id": env_id,
        "note": note,
        "mean_return": round(float(np.mean(returns)), 2),
        "std_return": round(float(np.std(returns)), 2),
        "evaluation_episodes": EVALUATION_EPISODES,
        "evaluation_seed": EVALUATION_SEED,
        **run,
        "command": command,
        "rebuild": f"python scripts/build_zoo.py {name}",
        "gif_frames": recording.frames,
        "tfrl_version": tfrl.__version__,
        "tensorflow_version": tf.__version__,
    }
    (path / "README.md").write_text(_card(figures, policy.metadata))
    figures["size_bytes"] = _size(path)
    return figures


def recard(figures: dict[str, Any], command: str) -> dict[str, Any]:
    """Rewrite a shipped policy's card with ``command``, keeping its export and figures."""
    path = ZOO_DIR / figures["name"]
    figures = {**figures, "command": command}
    metadata = json.loads((path / "assets" / "tfrl.json").read_text())
    (path / "README.md").write_text(_card(figures, metadata))
    return {**figures, "size_bytes": _size(path)}


def _card(figures: dict[str, Any], metadata: dict[str, Any]) -> str:
    config = "\n".join(f"| `{key}` | `{value}` |" for key, value in metadata["config"].items())
    note = f" ({figures['note']})" if figures["note"] else ""
    return f"""# {figures["algorithm"]} on {figures["env_id"]}{note}

![one episode](episode.gif)

| | |
|---|---|
| mean return | **{figures["mean_return"]} ± {figures["std_return"]}** over {figures["evaluation_episodes"]} episodes (seeds {figures["evaluation_seed"]}…) |
| env steps trained | {figures["env_steps"]} (best evaluation at step {figures["best_step"]}) |
| wall time | {figures["wall_seconds"]} s on 2 CPU cores |
| tfrl / TensorFlow | {figures["tfrl_version"]} / {figures["tensorflow_version"]} |

Reproduce: `{figures["rebuild"]}`, which runs

```bash
{figures["command"]}
```

Use it: `tfrl evaluate saved_models/{figures["name"]} --episodes 100 --seed {figures["evaluation_seed"]}`, or in plain
TensorFlow `tf.saved_model.load("saved_models/{figures["name"]}").action(observations)`.

Written by `scripts/build_zoo.py`; do not edit by hand.

## Config

| field | value |
|---|---|
{config}
"""


def write_index(entries: list[dict[str, Any]]) -> None:
    """``zoo.json`` and the table in ``saved_models/README.md``, from every entry built so far."""
    INDEX.write_text(json.dumps(entries, indent=2) + "\n")
    rows = "\n".join(
        f"| [{entry['name']}]({entry['name']}/README.md) | {entry['algorithm']} | {entry['env_id']} | "
        f"{entry['mean_return']} ± {entry['std_return']} | {entry['env_steps']} | {entry['wall_seconds']} | "
        f"{entry['size_bytes'] / 1e6:.2f} | ![]({entry['name']}/episode.gif) |"
        for entry in entries
    )
    total = _size(ZOO_DIR) / 1e6
    template = (Path(__file__).parent / "zoo_readme.md").read_text()
    (ZOO_DIR / "README.md").write_text(template.format(rows=rows, total=f"{total:.1f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="entries to build (default: all)")
    parser.add_argument("--list", action="store_true", help="print the entries and their commands")
    parser.add_argument(
        "--cards", action="store_true", help="rewrite the cards, zoo.json and the table from the shipped exports"
    )
    args = parser.parse_args()
    if args.list:
        for entry in ZOO:
            print(f"{entry.name:<36} {entry.command()}")
        print(f"{VALUE_ITERATION:<36} python scripts/frozenlake_exact.py")
        return
    names = [entry.name for entry in ZOO] + [VALUE_ITERATION]
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"unknown entries {unknown}; see --list")
    built = {entry["name"]: entry for entry in json.loads(INDEX.read_text())} if INDEX.exists() else {}
    if args.cards:
        commands = {entry.name: entry.command() for entry in ZOO}
        for name, figures in built.items():
            built[name] = recard(figures, commands.get(name, figures["command"]))
        write_index([built[item] for item in names if item in built])
        return
    builders = {entry.name: (lambda entry=entry: build(entry)) for entry in ZOO}
    builders[VALUE_ITERATION] = build_value_iteration
    for name in names:
        if args.names and name not in args.names:
            continue
        start = time.perf_counter()
        figures = built[name] = builders[name]()
        print(
            f"{name}: {figures['mean_return']} ± {figures['std_return']} after {figures['env_steps']} steps "
            f"({time.perf_counter() - start:.0f} s with evaluation and recording)",
            flush=True,
        )
        write_index([built[item] for item in names if item in built])


if __name__ == "__main__":
    main()
