"""leafsub runtime: the preprocessing spec, free of TensorFlow.

What a preprocessing *is* (the modes, the Keras-applications constants, the
presets by architecture, the TTA views and combiners, ``validate_spec``), how
the platform's input relates to the runtime's RGB 0-255 (``platform_input``,
``to_platform``, ``from_platform``), and how outputs become one answer (``merge_views``,
``to_probabilities``, ``combine``: numpy, the same for every framework). ``runtime.py`` (the TensorFlow ops)
imports this module; ``leafsub build`` imports it directly, which keeps TensorFlow
out of the build process; the evaluator's child imports a copy of it; the
submission's ``model.py`` holds its text verbatim. It imports only the standard
library and numpy.

A preprocessing spec is a plain dict (stored in the model card and in
``model.py``)::

    {"mode": "caffe", "resize_method": "bilinear", "scale": None, "offset": None}

``mode`` is one of ``MODES``; ``scale``/``offset`` are per-channel (per-feature for
an input that is not an image) lists used only by ``mode="affine"``
(``y = x * scale + offset``).
"""

__all__ = [
    "CAFFE_MEAN_BGR", "TORCH_MEAN_RGB", "TORCH_STD_RGB", "MODES", "RESIZE_METHODS", "PRESETS",
    "TTA_VIEWS", "CROP_FRACTION", "MIN_CALL_BATCH", "COMBINERS",
    "preset", "validate_spec", "platform_input", "is_identity", "to_platform", "from_platform",
    "merge_views", "to_probabilities", "combine",
]

import numpy as np

# Keras-applications constants (keras/src/applications/imagenet_utils.py).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)

MODES = ("caffe", "tf", "torch", "rescale", "none", "affine")
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")

# What keras.applications.<arch>.preprocess_input does, by architecture name.
# "none" means the model carries its own Rescaling/Normalization layers.
PRESETS = {
    "vgg16": "caffe", "vgg19": "caffe",
    "resnet50": "caffe", "resnet101": "caffe", "resnet152": "caffe",
    "resnet": "caffe",
    "resnet50v2": "tf", "resnet101v2": "tf", "resnet152v2": "tf",
    "resnet_v2": "tf",
    "inception_v3": "tf", "inception_resnet_v2": "tf", "xception": "tf",
    "mobilenet": "tf", "mobilenet_v2": "tf", "nasnet": "tf",
    "mobilenet_v3": "none",
    "densenet": "torch", "densenet121": "torch", "densenet169": "torch",
    "densenet201": "torch",
    "efficientnet": "none", "efficientnet_v2": "none",
    "convnext": "none", "regnet": "none",
}

TTA_VIEWS = (
    "identity", "hflip", "vflip", "rot90", "rot180", "rot270",
    "crop_center", "crop_tl", "crop_tr", "crop_bl", "crop_br",
)
# Crops keep this fraction of each side, then are resized back.
CROP_FRACTION = 0.875
# TTA stacks k views of a batch into one batch of k x N images; a call that large is
# slower per image than k calls on N for cheap models (MobileNetV2 at 96x96: one call on
# 256 images costs 1.23 x eight calls on 32, one on 64 the same as two on 32), so the
# stacked batch goes to the model in slices of N images, never fewer than this.
MIN_CALL_BATCH = 64

COMBINERS = ("mean", "weighted", "geometric", "vote")


def preset(arch):
    """Return the preprocessing mode keras.applications uses for ``arch``.

    Args:
      arch: an architecture name such as ``"resnet50"`` or ``"EfficientNetB4"``
        (case and a trailing size/variant suffix are ignored).

    Returns:
      One of ``MODES``.

    Example:
      >>> preset("ResNet50")
      'caffe'
    """
    key = str(arch).strip().lower().replace("-", "_")
    if key in PRESETS:
        return PRESETS[key]
    # EfficientNetB4 -> efficientnet, ConvNeXtTiny -> convnext, DenseNet121 -> densenet
    for name in sorted(PRESETS, key=len, reverse=True):
        if key.startswith(name):
            return PRESETS[name]
    raise ValueError(
        "Unknown architecture %r for a preprocessing preset; known: %s. "
        "Declare the mode explicitly instead." % (arch, ", ".join(sorted(PRESETS))))


def validate_spec(spec, features=None):
    """Check a preprocessing spec and return a normalised copy.

    Args:
      spec: a dict (see the module docstring); ``resize_method`` defaults to bilinear.
      features: when given, the number of channels (features) of the model's input: an
        affine ``scale``/``offset`` must then have 1 or that many numbers.

    Raises:
      ValueError naming the bad field and the allowed values.

    Example:
      >>> validate_spec({"mode": "tf"})
      {'mode': 'tf', 'resize_method': 'bilinear', 'scale': None, 'offset': None}
    """
    if not isinstance(spec, dict):
        raise ValueError("preprocessing spec must be a dict, got %r" % (spec,))
    mode = spec.get("mode")
    if mode not in MODES:
        raise ValueError("preprocessing mode %r is not one of %s" % (mode, ", ".join(MODES)))
    method = spec.get("resize_method", "bilinear")
    if method not in RESIZE_METHODS:
        raise ValueError("resize_method %r is not one of %s" % (method, ", ".join(RESIZE_METHODS)))
    out = {"mode": mode, "resize_method": method, "scale": None, "offset": None}
    if mode == "affine":
        allowed = "1 or 3" if features is None else "1 or %d" % features
        for key in ("scale", "offset"):
            value = spec.get(key)
            if not isinstance(value, (list, tuple)) or not value or not all(
                    isinstance(v, (int, float)) for v in value) or (
                    features is not None and len(value) not in (1, features)):
                raise ValueError(
                    "affine preprocessing needs %r as a list of %s numbers, got %r"
                    % (key, allowed, value))
            out[key] = [float(v) for v in value]
    return out


def platform_input(profile_input):
    """How the platform's images differ from the runtime's RGB 0-255, as data.

    Args:
      profile_input: a profile's ``input`` dict (``range``, ``channel_order``, ``kind``).

    Returns:
      ``{"range": [lo, hi], "channel_order": "RGB"|"BGR"}`` for an image input, or None
      for an input that is not an image (fed as stored, no conversion).

    Example:
      >>> platform_input({"kind": "image", "range": [0, 1], "channel_order": "BGR"})
      {'range': [0.0, 1.0], 'channel_order': 'BGR'}
    """
    if profile_input.get("kind", "image") != "image":
        return None
    lo, hi = (float(v) for v in (profile_input.get("range") or (0, 255)))
    return {"range": [lo, hi], "channel_order": profile_input.get("channel_order", "RGB")}


def is_identity(conv):
    """True when ``conv`` (from ``platform_input``) changes nothing: RGB 0-255 or no image."""
    return conv is None or (tuple(conv["range"]) == (0.0, 255.0)
                            and conv["channel_order"] == "RGB")


def to_platform(images, conv):
    """RGB 0-255 float32 images -> the platform's range and channel order (what it feeds).

    ``images`` is a float32 numpy array (not modified); so is the result.
    """
    x = images
    if conv is None:
        return x
    lo, hi = conv["range"]
    if (lo, hi) != (0.0, 255.0):
        x = x * np.float32((hi - lo) / 255.0) + np.float32(lo)
    if conv["channel_order"] == "BGR":
        x = np.ascontiguousarray(x[..., ::-1])
    return x


def from_platform(x, conv):
    """The platform's batch -> RGB 0-255, the inverse of ``to_platform``.

    ``x`` is a float array or tensor (numpy or ``tf.Tensor``: only arithmetic and slicing
    are used; not modified).
    """
    if conv is None:
        return x
    lo, hi = conv["range"]
    if (lo, hi) != (0.0, 255.0):
        x = (x - lo) * (255.0 / (hi - lo))
    if conv["channel_order"] == "BGR":
        x = x[..., ::-1]
    return x


# --------------------------------------------------------------------------- outputs
# Pure numpy, whatever the framework: how the views' and the models' outputs become one
# answer. runtime.py and runtime_torch.py both take them from here.

def merge_views(outputs, n_views):
    """Average per-view outputs ``[k * N, C]`` back to ``[N, C]``."""
    y = np.asarray(outputs)
    if n_views <= 1:
        return y
    return y.reshape((n_views, -1) + y.shape[1:]).mean(axis=0)


def to_probabilities(outputs, kind):
    """Turn a model's outputs into class probabilities.

    ``kind`` is ``"probabilities"`` (returned as float64 unchanged) or
    ``"logits"`` (a numerically stable softmax). A single sigmoid column
    ``[N, 1]`` becomes two columns ``[1 - p, p]``.
    """
    y = np.asarray(outputs, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if kind == "logits":
        if y.shape[1] == 1:
            y = 1.0 / (1.0 + np.exp(-y))
        else:
            y = np.exp(y - y.max(axis=1, keepdims=True))
            return y / y.sum(axis=1, keepdims=True)
    elif kind != "probabilities":
        raise ValueError("output kind %r is not 'probabilities' or 'logits'" % (kind,))
    if y.shape[1] == 1:
        y = np.concatenate([1.0 - y, y], axis=1)
    return y


def combine(probabilities, method="mean", weights=None):
    """Combine the members' ``[N, C]`` probabilities into one ``[N, C]`` score.

    Args:
      probabilities: a list of ``m`` arrays ``[N, C]``.
      method: ``"mean"``, ``"weighted"`` (needs ``weights``), ``"geometric"``,
        ``"vote"`` (majority of argmax, ties broken by the mean probability), or
        a callable ``f(probabilities, weights) -> [N, C]``.
      weights: ``m`` non-negative numbers (normalised here), or None.

    Returns:
      ``[N, C]`` float64 scores whose argmax is the ensemble's label.
    """
    probs = [np.asarray(p, dtype=np.float64) for p in probabilities]
    if not probs:
        raise ValueError("combine() needs at least one member's probabilities")
    shapes = {p.shape for p in probs}
    if len(shapes) != 1:
        raise ValueError("members disagree on the output shape: %s" % sorted(shapes))
    m = len(probs)
    if weights is None:
        w = np.full(m, 1.0 / m)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (m,) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError("need %d non-negative weights with a positive sum, got %r"
                             % (m, list(weights)))
        w = w / w.sum()
    if callable(method):
        return np.asarray(method(probs, list(w)), dtype=np.float64)
    stack = np.stack(probs)  # [m, N, C]
    if method in ("mean", "weighted"):
        if method == "weighted" and weights is None:
            raise ValueError("combine method 'weighted' needs weights")
        return np.tensordot(w, stack, axes=1)
    if method == "geometric":
        log = np.tensordot(w, np.log(np.clip(stack, 1e-12, 1.0)), axes=1)
        g = np.exp(log - log.max(axis=1, keepdims=True))
        return g / g.sum(axis=1, keepdims=True)
    if method == "vote":
        n_classes = stack.shape[2]
        votes = np.tensordot(w, np.eye(n_classes)[stack.argmax(axis=2)], axes=1)
        # Ties go to the higher mean probability; the tie-break term is < one vote.
        tie_break = np.tensordot(w, stack, axes=1) * (w.min() * 0.5)
        return votes + tie_break
    raise ValueError("combine method %r is not one of %s or a callable"
                     % (method, ", ".join(COMBINERS)))
