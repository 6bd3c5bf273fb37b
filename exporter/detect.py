"""Which known preprocessing pipeline does the user's own function implement?

Given only ``preprocess_fn`` (what the training script really called), export runs
every candidate pipeline of the shared runtime on the same probe images and keeps
the one that reproduces the function. This is pure numpy + the runtime module.
"""

import numpy as np

from ..errors import UsageError

# Named modes first, in the order they are tried; "affine" is fitted last.
CANDIDATES = ("none", "rescale", "tf", "torch", "caffe")

# Largest difference, relative to the function's output range, that still counts
# as "the same pipeline" (float32 arithmetic in a different order stays far below).
MATCH_TOLERANCE = 1e-4


def call_user_fn(preprocess_fn, images):
    """Run the user's function on a private copy (keras' preprocess_input mutates numpy input)."""
    try:
        out = preprocess_fn(np.array(images, dtype=np.float32, copy=True))
    except Exception as e:
        raise UsageError(
            "preprocess_fn raised %s: %s when called on a float32 batch of shape %s with RGB "
            "values in 0-255. Pass the function your training pipeline applies to such a "
            "batch." % (type(e).__name__, e, tuple(np.shape(images)))) from None
    out = np.asarray(out, dtype=np.float64)
    if out.shape != tuple(np.shape(images)):
        raise UsageError(
            "preprocess_fn changed the batch shape from %s to %s. leafsub records resizing "
            "separately: give a function that only transforms values (resizing is taken from "
            "the model's input size)." % (tuple(np.shape(images)), out.shape))
    return out


def _fit_affine(x, y):
    """Per-channel least-squares ``y = x * scale + offset``; returns (scale, offset, max_residual)."""
    channels = x.shape[-1]
    scale, offset, worst = [], [], 0.0
    for c in range(channels):
        xc, yc = x[..., c].ravel(), y[..., c].ravel()
        design = np.stack([xc, np.ones_like(xc)], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, yc, rcond=None)
        worst = max(worst, float(np.max(np.abs(xc * a + b - yc))))
        scale.append(float(a))
        offset.append(float(b))
    return scale, offset, worst


def detect(preprocess_fn, images):
    """Identify the pipeline ``preprocess_fn`` implements on ``images`` (RGB, 0-255).

    Returns:
      ``(spec, report)``: the preprocessing spec and a list of
      ``(candidate, relative max difference)`` for every candidate tried.

    Raises:
      UsageError listing what was tried and the closest distance when nothing matches.
    """
    from ..submission_template import runtime

    x = np.asarray(images, dtype=np.float32)
    target = call_user_fn(preprocess_fn, x)
    span = max(float(np.max(np.abs(target))), 1e-6)
    report = []
    for mode in CANDIDATES:
        ours = np.asarray(runtime.normalize(x, {"mode": mode}), dtype=np.float64)
        distance = float(np.max(np.abs(ours - target))) / span
        report.append((mode, distance))
        if distance <= MATCH_TOLERANCE:
            return {"mode": mode, "resize_method": "bilinear", "scale": None, "offset": None}, report
    scale, offset, residual = _fit_affine(x.astype(np.float64), target)
    report.append(("affine", residual / span))
    if residual / span <= MATCH_TOLERANCE:
        spec = {"mode": "affine", "resize_method": "bilinear",
                "scale": [round(v, 9) for v in scale], "offset": [round(v, 9) for v in offset]}
        return spec, report
    tried = ", ".join("%s (%.3g)" % (name, d) for name, d in report)
    best = min(report, key=lambda item: item[1])
    raise UsageError(
        "preprocess_fn matches none of the known preprocessing pipelines. Tried, with the "
        "largest difference relative to the function's output range: %s. The closest is %r. "
        "Declare the preprocessing explicitly (preprocess='caffe'|'tf'|'torch'|'rescale'|'none' "
        "or an affine {'mode': 'affine', 'scale': [...], 'offset': [...]}), or put the extra "
        "step inside the model so that the submission reproduces it." % (tried, best[0]))
