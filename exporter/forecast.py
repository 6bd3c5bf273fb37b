"""``leafsub.export_forecaster``: a Keras forecaster -> a run dir that ``leafsub build`` reads.

A forecaster's run dir holds what its submission must reproduce:

    RUN_DIR/
      leafsub-forecast.json   the card (schemas/forecast.schema.json): window, steps,
                              features, the input scaling (its inverse goes on the output)
      probe.npz               series: the raw probe series [n, T(, F)] (the platform's units)
                              forecast: their forecast of ``steps`` steps (no rollout)
                              rollout: their forecast of 2 x ``steps`` steps (one rollout)
      saved_model/            the inference SavedModel (serving_default, one input)

The goldens are computed by ``submission_template/forecast.py``, the same file that
``leafsub build`` copies into model.py, around the user's model.

Example::

    leafsub.export_forecaster(model, "runs/gru", scaler=fitted_robust_scaler,
                              probe=x_val[:8])
"""

import datetime
import os
import shutil

import numpy as np

from ..card import hash_tree
from ..errors import UsageError
from ..jsonfiles import dumps, read_json, validate, write_atomic
from ..submission_template import forecast as F

CARD_NAME = "leafsub-forecast.json"
PROBE_NAME = "probe.npz"
TOLERANCE = 1e-4


def _number_list(values, name, n):
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 1 and n > 1:
        values = np.repeat(values, n)
    if values.size != n or not np.all(np.isfinite(values)):
        raise UsageError("%s: %d finite values expected (one per feature), got %s."
                         % (name, n, values.tolist()))
    return values.tolist()


def scaler_affine(scaler, n_features):
    """``(scale, offset, source)`` so that ``x * scale + offset`` is ``scaler.transform(x)``.

    Accepts None (no scaling), ``{"scale": [...], "offset": [...]}``, or a fitted
    scikit-learn ``StandardScaler``, ``MinMaxScaler`` or ``RobustScaler`` (per feature:
    fitted on ``[n, F]``, or on ``[n, 1]`` for one feature).
    """
    if scaler is None:
        return None, None, None
    if isinstance(scaler, dict):
        return (_number_list(scaler["scale"], "scaler['scale']", n_features),
                _number_list(scaler.get("offset", 0.0), "scaler['offset']", n_features),
                "affine")
    kind = type(scaler).__name__
    if kind == "MinMaxScaler":
        scale, offset = scaler.scale_, scaler.min_
    elif kind == "StandardScaler":
        s = np.where(scaler.scale_ == 0, 1.0, scaler.scale_) if scaler.scale_ is not None else 1.0
        mean = scaler.mean_ if scaler.mean_ is not None else 0.0
        scale, offset = 1.0 / np.asarray(s), -np.asarray(mean) / np.asarray(s)
    elif kind == "RobustScaler":
        s = np.asarray(scaler.scale_ if scaler.scale_ is not None else 1.0)
        c = np.asarray(scaler.center_ if scaler.center_ is not None else 0.0)
        scale, offset = 1.0 / s, -c / s
    else:
        raise UsageError("scaler: a %s; leafsub reads a fitted StandardScaler, MinMaxScaler or "
                         "RobustScaler, or {'scale': [...], 'offset': [...]} (x * scale + "
                         "offset)." % kind)
    return (_number_list(scale, kind + " scale", n_features),
            _number_list(offset, kind + " offset", n_features), kind)


def export_forecaster(model, run_dir, scaler=None, probe=None, name=None, overwrite=False):
    """Export a Keras forecaster with its input window and scaling, and record goldens.

    Args:
      model: a Keras model (or a SavedModel / .keras / .h5 path) mapping the scaled window
        ``[batch, window]`` (one feature) or ``[batch, window, F]`` to ``[batch, steps(, F)]``.
      run_dir: the folder to write (must not exist, unless ``overwrite``).
      scaler: None, a fitted scikit-learn scaler or ``{"scale", "offset"}``: what training
        applied to the series (the submission applies it, and its inverse on the output).
      probe: raw series in the platform's units, ``[n, T(, F)]`` with ``T >= 1`` (a longer
        series is cropped to the window, a shorter one zero-padded); default: 8 synthetic.
      name: the card's name (default: the folder's).

    Returns:
      the card (a dict).

    Raises:
      UsageError for a model whose input is not a fixed window, a scaler of the wrong size,
      or a probe of the wrong shape.
    """
    from .export import ModelSource

    run_dir = os.fspath(run_dir)
    if os.path.exists(run_dir):
        if not overwrite:
            raise UsageError("%s already exists: give a new folder, or overwrite=True." % run_dir)
        shutil.rmtree(run_dir)
    notes = []
    source = ModelSource(model, notes)
    shape = source.input_shape
    if len(shape) not in (1, 2):
        raise UsageError("the model's input is %s per sample; a forecaster reads a window "
                         "[steps] (one feature) or [steps, features]." % list(shape))
    window, features = int(shape[0]), (int(shape[1]) if len(shape) == 2 else None)
    scale, offset, scaler_source = scaler_affine(scaler, features or 1)
    if probe is None:
        rng = np.random.default_rng(0)
        probe = rng.uniform(0, 1, size=(8, window) + ((features,) if features else ()))
    probe = np.asarray(probe, dtype=np.float32)
    if probe.ndim != len(shape) + 1 or (features and probe.shape[2] != features):
        raise UsageError("probe: series of shape %s; expected [n, T%s] like the platform's."
                         % (list(probe.shape), ", %d" % features if features else ""))
    raw = source(F.scale(F.crop(probe[:1], window), {"features": features, "scale": scale,
                                                     "offset": offset}))
    steps = int(raw.shape[1]) if raw.ndim >= 2 else 1
    if raw.ndim != len(shape) + 1 or (features and raw.shape[2] != features):
        raise UsageError("the model returns %s for one window; a forecaster returns [1, steps%s]."
                         % (list(raw.shape), ", %d" % features if features else ""))
    config = {"window": window, "steps": steps, "horizon": steps, "features": features,
              "scale": scale, "offset": offset, "rollout": True}
    forecast = F.forecast(source, probe, config)
    rollout = F.forecast(source, probe, dict(config, horizon=2 * steps))

    os.makedirs(run_dir)
    saved = os.path.join(run_dir, "saved_model")
    source.save(saved)
    np.savez(os.path.join(run_dir, PROBE_NAME), series=probe, forecast=forecast, rollout=rollout)
    import tensorflow as tf
    card = {
        "leafsub_forecast": 1, "name": name or os.path.basename(os.path.abspath(run_dir)),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "window": window, "steps": steps, "features": features, "scale": scale,
        "offset": offset, "scaler_source": scaler_source, "saved_model": "saved_model",
        "files": hash_tree(saved, run_dir), "versions": {"tensorflow": tf.__version__},
        "probe": {"file": PROBE_NAME, "count": int(len(probe)), "tolerance": TOLERANCE},
    }
    validate(card, "forecast", os.path.join(run_dir, CARD_NAME), "forecaster card")
    write_atomic(os.path.join(run_dir, CARD_NAME), dumps(card))
    return card


def is_forecaster(run_dir):
    """Whether ``run_dir`` holds a forecaster's card (``leafsub-forecast.json``)."""
    return os.path.isfile(os.path.join(os.fspath(run_dir), CARD_NAME))


def read_forecast_card(run_dir):
    """The validated forecaster card of ``run_dir``, its files' hashes checked."""
    path = os.path.join(os.fspath(run_dir), CARD_NAME)
    card = validate(read_json(path, "forecaster card"), "forecast", path, "forecaster card")
    found = hash_tree(os.path.join(run_dir, card["saved_model"]), run_dir)
    if found != card["files"]:
        changed = sorted(set(found.items()) ^ set(card["files"].items()))
        raise UsageError("%s: the SavedModel's files differ from the card (%s): export again."
                         % (run_dir, changed[0][0] if changed else "?"))
    return card
