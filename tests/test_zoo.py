"""The shipped policies in saved_models/: each loads without tfrl and plays as its card says."""

import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tfrl
from tfrl.export import load_policy

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "saved_models"
ENTRIES = json.loads((ZOO / "zoo.json").read_text())
SHORT_EPISODES = 5

PLAY_WITHOUT_TFRL = textwrap.dedent("""
    import json, sys
    import gymnasium as gym, numpy as np, tensorflow as tf
    zoo, episodes = sys.argv[1], int(sys.argv[2])
    means = {}
    for entry in json.load(open(f"{zoo}/zoo.json")):
        path = f"{zoo}/{entry['name']}"
        metadata = json.load(open(f"{path}/assets/tfrl.json"))
        if entry["env_id"].startswith("MinAtar/"):
            import minatar.gym
            minatar.gym.register_envs()
        policy = tf.saved_model.load(path)
        env = gym.make(entry["env_id"])
        dtype = np.dtype(metadata.get("observation_dtype", "float32"))
        returns = []
        for episode in range(episodes):
            observation, _ = env.reset(seed=entry["evaluation_seed"] + episode)
            state = np.zeros((1, *metadata["state_shape"]), np.float32) if "state_shape" in metadata else None
            total, done = 0.0, False
            while not done:
                batch = tf.constant(np.asarray(observation, dtype)[None])
                if state is None:
                    action = policy.action(batch).numpy()[0]
                else:
                    action, state = policy.action(batch, tf.constant(state))
                    action, state = action.numpy()[0], state.numpy()
                observation, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        means[entry["name"]] = float(np.mean(returns))
    assert not any(name.startswith("tfrl") for name in sys.modules), "tfrl was imported"
    print(json.dumps(means))
""")


@pytest.fixture(scope="module")
def played_without_tfrl():
    """Each shipped policy's mean return over its card's first few evaluation seeds, from plain TensorFlow."""
    done = subprocess.run(
        [sys.executable, "-c", PLAY_WITHOUT_TFRL, str(ZOO), str(SHORT_EPISODES)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["name"] for entry in ENTRIES])
def test_a_shipped_policy_plays_as_its_card_says_without_tfrl(entry, played_without_tfrl):
    # the mean of a few of the card's own episodes lies within 3 standard errors of the card's mean
    tolerance = 3 * entry["std_return"] / math.sqrt(SHORT_EPISODES) + 1e-6
    assert abs(played_without_tfrl[entry["name"]] - entry["mean_return"]) <= tolerance, entry


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["name"] for entry in ENTRIES])
def test_every_card_agrees_with_its_export(entry):
    path = ZOO / entry["name"]
    metadata = json.loads((path / "assets" / "tfrl.json").read_text())
    assert (metadata["algorithm"], metadata["env_id"], metadata["env_steps"]) == (
        entry["algorithm"],
        entry["env_id"],
        entry["env_steps"],
    )
    card = (path / "README.md").read_text()
    assert f"{entry['mean_return']} ± {entry['std_return']}" in card and entry["command"] in card
    assert (path / "episode.gif").stat().st_size > 0
    assert entry["size_bytes"] < 2_000_000 and f"[{entry['name']}]" in (ZOO / "README.md").read_text()


def test_the_zoo_stays_small():
    assert sum(file.stat().st_size for file in ZOO.rglob("*") if file.is_file()) < 25_000_000


@pytest.mark.parametrize("name", ["dqn-CartPole-v1", "ddpg-Pendulum-v1"])
def test_tfrl_evaluate_reproduces_the_cards_score_exactly(name):
    entry = next(entry for entry in ENTRIES if entry["name"] == name)
    returns = tfrl.evaluate(load_policy(ZOO / name), entry["env_id"], 100, entry["evaluation_seed"])
    assert round(float(np.mean(returns)), 2) == entry["mean_return"]


def test_keras_import_script_plays_a_shipped_policy_inside_a_keras_model():
    done = subprocess.run(
        [sys.executable, "scripts/keras_import.py", "--episodes", "2"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    mean = float(done.stdout.rsplit("(mean ", 1)[1].split(")")[0])
    assert mean >= 400  # the shipped CartPole policy averages 500


# Where a card's command may build another value than the shipped config holds, and why. Nothing else may differ.
ALLOWED_DIFFERENCES = {
    # the minatar preset now runs TensorFlow with one thread per operation; the shipped policy was trained
    # before that field existed, with TensorFlow's default (0). It changes speed, not what is learned.
    ("dqn-MinAtar-Breakout-v1", "intra_op_threads"),
}


def _card_command(name):
    """The ``tfrl train`` line of a card's Reproduce block."""
    card = (ZOO / name / "README.md").read_text()
    block = card.split("Reproduce:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    (line,) = [line for line in block.splitlines() if line.startswith("tfrl train ")]
    return line


@pytest.mark.parametrize(
    "entry",
    [entry for entry in ENTRIES if entry["command"].startswith("tfrl train ")],
    ids=lambda entry: entry["name"],
)
def test_a_cards_reproduce_command_builds_the_shipped_config(entry):
    # the command as tfrl's own parser reads it, built into a config without training
    from tfrl.agents import get_agent, make_config
    from tfrl.cli import _build_parser, parse_overrides

    command = _card_command(entry["name"])
    assert command == entry["command"]
    args = _build_parser().parse_args(shlex.split(command)[1:])
    built = make_config(args.algorithm, args.preset, parse_overrides(args.overrides)).to_dict()
    metadata = json.loads((ZOO / entry["name"] / "assets" / "tfrl.json").read_text())
    shipped = get_agent(metadata["algorithm"])[1].from_saved(metadata["config"]).to_dict()
    differences = {field: (built[field], shipped[field]) for field in built if built[field] != shipped[field]}
    allowed = {field for name, field in ALLOWED_DIFFERENCES if name == entry["name"]}
    assert {field: pair for field, pair in differences.items() if field not in allowed} == {}
    assert (args.algorithm, args.env_id, args.seed, args.discretize) == (
        metadata["algorithm"],
        metadata["env_id"],
        metadata["seed"],
        metadata.get("discretize"),
    )
    # without early stop a run trains its --steps (A3C's workers finish their rollouts: a few more)
    if args.no_early_stop:
        assert args.steps <= metadata["env_steps"] < args.steps + 1_000
    else:
        assert metadata["env_steps"] <= args.steps


def test_build_zoo_trains_what_the_cards_say():
    # scripts/build_zoo.py's entries are where the cards' commands come from: a rebuild trains what they say
    spec = importlib.util.spec_from_file_location("build_zoo", ROOT / "scripts" / "build_zoo.py")
    build_zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_zoo)
    commands = {entry.name: entry.command() for entry in build_zoo.ZOO}
    assert commands == {entry["name"]: entry["command"] for entry in ENTRIES if entry["name"] in commands}
    assert set(commands) | {build_zoo.VALUE_ITERATION} == {entry["name"] for entry in ENTRIES}


def test_every_shipped_policy_the_readmes_name_is_shipped():
    # a README that names saved_models/<name> (to evaluate, record or load it) names one that is there
    for readme in (ROOT / "README.md", ZOO / "README.md"):
        named = set(re.findall(r"saved_models/([A-Za-z0-9_.-]+)", readme.read_text())) - {"README.md"}
        assert named, readme
        assert {name for name in named if not (ZOO / name / "saved_model.pb").exists()} == set(), readme
