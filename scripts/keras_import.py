"""A shipped tfrl policy inside your own Keras model, as a layer.

    python scripts/keras_import.py [--policy saved_models/dqn-CartPole-v1] [--episodes 5]

``keras.layers.TFSMLayer`` wraps the export's ``q_values`` endpoint; a softmax on top turns the
Q-values into action preferences, and the model plays CartPole by taking the most preferred action.
Only Keras, TensorFlow and gymnasium are used: the export needs no tfrl.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads; this script imports no tfrl

import argparse

import gymnasium as gym
import keras
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="saved_models/dqn-CartPole-v1")
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()

    observation = keras.Input((4,), name="observation")
    q_values = keras.layers.TFSMLayer(args.policy, call_endpoint="q_values")(observation)
    preferences = keras.layers.Softmax(name="preferences")(q_values)
    model = keras.Model(observation, preferences)
    model.summary()

    env = gym.make("CartPole-v1")
    returns = []
    for episode in range(args.episodes):
        state, _ = env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            action = int(np.argmax(model(state[None]).numpy()[0]))
            state, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    print(f"returns of the Keras model with the shipped policy inside: {returns} (mean {np.mean(returns):.1f})")


if __name__ == "__main__":
    main()
