"""A forecaster's runtime: crop the window, scale, call the model, unscale, roll out.

The one implementation of a forecasting submission's arithmetic (numpy only: the model
is any callable). ``leafsub.export`` computes a forecaster's goldens with it, and
``leafsub build`` copies this file verbatim into ``model.py`` below the platform's class,
so what was checked is what runs.

The steps, for a batch ``X`` of series ``[batch, T]`` (one feature) or ``[batch, T, F]``:

1. ``crop``: the last ``window`` steps (series shorter than the window are padded on
   the left with zeros, as the training series of AN2DL 2023 were);
2. ``scale``: ``x * scale + offset`` per feature (a StandardScaler, MinMaxScaler or
   RobustScaler fitted on the training set, written as an affine);
3. the model: ``[batch, window(, F)] -> [batch, steps(, F)]``;
4. ``unscale``: the inverse of 2 on the output, ``(y - offset) / scale``;
5. ``rollout``: when the phase asks for more steps than the model predicts, append the
   prediction to the window and predict again, until ``horizon`` steps are there (then
   cut to ``horizon``); with ``rollout`` off, a longer horizon is an error.

CONFIG keys (``FORECAST`` in model.py): ``window``, ``steps``, ``horizon``,
``features`` (None for one feature), ``scale``, ``offset`` (lists, one per feature, or
None), ``rollout`` (bool).

Example::

    y = forecast(lambda x: model(x).numpy(), X, {"window": 200, "steps": 9, "horizon": 18,
                 "features": None, "scale": [2.0], "offset": [-1.0], "rollout": True})
"""

import numpy as np


def crop(x, window):
    """The last ``window`` steps of each series (zeros on the left when shorter)."""
    x = np.asarray(x, dtype=np.float32)
    steps = x.shape[1]
    if steps >= window:
        return x[:, steps - window:]
    pad = np.zeros((x.shape[0], window - steps) + x.shape[2:], dtype=np.float32)
    return np.concatenate([pad, x], axis=1)


def _affine(config):
    scale, offset = config.get("scale"), config.get("offset")
    scale = np.float32(1) if scale is None else np.asarray(scale, dtype=np.float32)
    offset = np.float32(0) if offset is None else np.asarray(offset, dtype=np.float32)
    if config.get("features") is None:  # one feature: [batch, T], a scalar affine
        scale, offset = np.reshape(scale, ())[()], np.reshape(offset, ())[()]
    return scale, offset


def scale(x, config):
    """``x * scale + offset`` per feature (the last axis; one value for one feature)."""
    s, o = _affine(config)
    return (x * s + o).astype(np.float32)


def unscale(y, config):
    """The inverse of :func:`scale`: ``(y - offset) / scale``."""
    s, o = _affine(config)
    return ((np.asarray(y, dtype=np.float32) - o) / s).astype(np.float32)


def forecast(call, x, config):
    """The forecast of ``horizon`` steps for the batch ``x``, in the platform's units.

    Args:
      call: the model, ``[batch, window(, F)] float32 -> [batch, steps(, F)]`` (numpy).
      x: the platform's batch ``[batch, T]`` or ``[batch, T, F]``.
      config: the FORECAST configuration (see the module's docstring).

    Returns:
      float32 ``[batch, horizon]`` or ``[batch, horizon, F]``.

    Raises:
      ValueError when the model predicts fewer steps than the horizon and rollout is off,
      or returns an output of another shape than ``[batch, steps(, F)]``.
    """
    window, steps, horizon = int(config["window"]), int(config["steps"]), int(config["horizon"])
    if horizon > steps and not config.get("rollout"):
        raise ValueError("the model predicts %d steps and the phase asks for %d: enable the "
                         "rollout (leafsub build --rollout) or train for %d steps"
                         % (steps, horizon, horizon))
    inputs = scale(crop(x, window), config)
    pieces, done = [], 0
    while done < horizon:
        y = np.asarray(call(inputs), dtype=np.float32)
        y = y.reshape((len(inputs), steps) + inputs.shape[2:])
        pieces.append(y)
        done += steps
        if done < horizon:  # the prediction becomes the most recent part of the window
            inputs = np.concatenate([inputs, y], axis=1)[:, -window:]
    out = np.concatenate(pieces, axis=1)[:, :horizon]
    return unscale(out, config)
