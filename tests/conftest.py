"""Shared test set-up: quiet TensorFlow, tiny models, and running the real CLI.

Helpers here are deliberately small; each test file builds what its story needs.
"""

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# leafsub evaluate replays in the platform's environment by default (a cached virtual
# environment per profile, ~1.7 GB each): the ordinary tests replay with this Python, and
# only the tests about that default (tests/test_platform_env.py, marked runtime) unset this.
os.environ.setdefault("LEAFSUB_RUNTIME", "local")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def tiny_keras_model(input_shape=(32, 32, 3), n_classes=3, seed=0, activation="softmax",
                     rescaling=None):
    """A small random-weight Keras 3 CNN (builds in well under a second)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = inputs
    if rescaling is not None:
        x = keras.layers.Rescaling(rescaling)(x)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(n_classes, activation=activation)(x)
    return keras.Model(inputs, outputs)


def run_cli(*args, cwd=None, timeout=600, env=None):
    """Run ``leafsub ARGS`` in a subprocess, as a user would; returns CompletedProcess.

    ``env``: variables to set, or to unset with None."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", NO_COLOR="1")
    for key, value in (env or {}).items():   # None: unset it (e.g. LEAFSUB_RUNTIME)
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run([sys.executable, "-m", "leafsub.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
