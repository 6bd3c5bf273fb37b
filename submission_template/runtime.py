"""leafsub runtime: preprocessing, test-time augmentation (TTA) and ensembling (TF ops).

This module is the single source of truth for what happens to an image between
the platform's ``predict(X)`` call and the model. ``leafsub build`` copies this
file's source into the submission's ``model.py``, unchanged but for the spec
import (spec.py's text precedes it there); leafsub's own
checks (export goldens, build self-check, the evaluator's mismatch detective)
import the very same module. There is never a second implementation to drift.

It imports only the standard library, numpy and tensorflow, because that is all
a submission can count on having on the platform. The spec part (modes, constants,
presets, ``validate_spec``, the platform-input conversion) is ``spec.py``, free of
TensorFlow so that ``leafsub build`` can import it; this module re-exports it.

Conventions:
  * Images enter as a batch ``[N, H, W, C]`` of RGB values in the 0-255 range,
    any numeric dtype, numpy array or ``tf.Tensor``.
  * No function here mutates its input (keras' ``preprocess_input`` does, on
    numpy arrays; that is the wart we avoid).
  * A preprocessing *spec* is a plain dict (it is stored in the model card and in
    ``model.py``)::

        {"mode": "caffe", "resize_method": "bilinear",
         "scale": None, "offset": None}

    ``mode`` is one of ``MODES``; ``scale``/``offset`` are per-channel lists used
    only by ``mode="affine"`` (``y = x * scale + offset``).
"""

import numpy as np
import tensorflow as tf

# --- leafsub: spec import --- (model.py holds spec.py's text just above instead)
try:
    from .spec import *  # noqa: F401,F403  (leafsub.submission_template.spec)
except ImportError:  # a copy beside leafsub_spec.py: the evaluator's child, the self-check
    from leafsub_spec import *  # noqa: F401,F403
# --- end of the spec import ---


def _as_float_batch(images):
    """A float32 tf.Tensor view of ``images``; never writes to the input."""
    x = tf.convert_to_tensor(images)
    if x.dtype != tf.float32:
        x = tf.cast(x, tf.float32)
    if x.shape.rank == 3:
        x = x[tf.newaxis]
    if x.shape.rank != 4:
        raise ValueError("expected images of shape [N, H, W, C], got shape %s" % (x.shape,))
    return x


def resize(images, size, method="bilinear"):
    """Resize a batch to ``size = (height, width)`` the way tf.image.resize does.

    Returns the input (as a float32 tensor) unchanged when it already has that size.
    """
    x = _as_float_batch(images)
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[1:3]) == size:
        return x
    if method not in RESIZE_METHODS:
        raise ValueError("resize method %r is not one of %s" % (method, ", ".join(RESIZE_METHODS)))
    return tf.image.resize(x, size, method=method)


def normalize(images, spec):
    """Apply the spec's value transform (no resizing) to a 0-255 RGB batch."""
    x = _as_float_batch(images)
    mode = spec["mode"]
    if mode == "none":
        return x
    if mode == "rescale":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "caffe":
        return x[..., ::-1] - tf.constant(CAFFE_MEAN_BGR, tf.float32)
    if mode == "torch":
        return (x / 255.0 - tf.constant(TORCH_MEAN_RGB, tf.float32)) / tf.constant(
            TORCH_STD_RGB, tf.float32)
    if mode == "affine":
        return x * tf.constant(spec["scale"], tf.float32) + tf.constant(spec["offset"], tf.float32)
    raise ValueError("preprocessing mode %r is not one of %s" % (mode, ", ".join(MODES)))


def preprocess(images, spec, size=None):
    """Resize (when ``size`` is given and differs) then normalise a batch.

    Args:
      images: ``[N, H, W, C]`` RGB, 0-255, numpy array or tensor (not modified).
      spec: a preprocessing spec (see the module docstring).
      size: the model's ``(height, width)``, or None to keep the input size.

    Returns:
      A float32 ``tf.Tensor`` ready for the model.

    Example:
      >>> x = np.full((1, 4, 4, 3), 255, np.uint8)
      >>> float(preprocess(x, {"mode": "tf"})[0, 0, 0, 0])
      1.0
    """
    x = _as_float_batch(images)
    if size is not None:
        x = resize(x, size, spec.get("resize_method", "bilinear"))
    return normalize(x, spec)


def preprocess_samples(samples, spec):
    """Normalise a batch that is not an image (a time series ``[N, steps, features]``, ...).

    Only ``none`` and ``affine`` apply: ``affine`` is ``x * scale + offset`` per feature
    (the last axis), e.g. a StandardScaler fitted on the training set, with
    ``scale = 1 / std`` and ``offset = -mean / std``. Never resizes, never mutates.
    """
    x = tf.cast(tf.convert_to_tensor(samples), tf.float32)
    if x.shape.rank is not None and x.shape.rank < 2:
        raise ValueError("expected a batch of samples [N, ...], got shape %s" % (x.shape,))
    if spec["mode"] == "none":
        return x
    if spec["mode"] == "affine":
        return x * tf.constant(spec["scale"], tf.float32) + tf.constant(spec["offset"], tf.float32)
    raise ValueError("preprocessing mode %r is for images; a non-image input takes 'none' or "
                     "'affine'" % (spec["mode"],))


def _crop(x, where):
    h, w = int(x.shape[1]), int(x.shape[2])
    ch, cw = max(1, int(round(h * CROP_FRACTION))), max(1, int(round(w * CROP_FRACTION)))
    top = {"center": (h - ch) // 2, "tl": 0, "tr": 0, "bl": h - ch, "br": h - ch}[where]
    left = {"center": (w - cw) // 2, "tl": 0, "tr": w - cw, "bl": 0, "br": w - cw}[where]
    return tf.image.resize(x[:, top:top + ch, left:left + cw, :], (h, w), method="bilinear")


def tta_view(images, view):
    """One test-time-augmentation view of a batch (same shape as the input)."""
    x = _as_float_batch(images)
    if view == "identity":
        return x
    if view == "hflip":
        return x[:, :, ::-1, :]
    if view == "vflip":
        return x[:, ::-1, :, :]
    if view in ("rot90", "rot180", "rot270"):
        if view != "rot180" and x.shape[1] != x.shape[2]:
            raise ValueError("TTA view %r needs square images, got %dx%d"
                             % (view, x.shape[1], x.shape[2]))
        return tf.image.rot90(x, k={"rot90": 1, "rot180": 2, "rot270": 3}[view])
    if view.startswith("crop_") and view[5:] in ("center", "tl", "tr", "bl", "br"):
        return _crop(x, view[5:])
    raise ValueError("unknown TTA view %r; known: %s" % (view, ", ".join(TTA_VIEWS)))


def tta_batch(images, views):
    """All ``views`` of a batch stacked into one batch of ``len(views) * N`` images.

    View ``v`` of image ``i`` is at index ``v * N + i``; ``merge_views`` undoes it.
    """
    x = _as_float_batch(images)
    views = list(views) or ["identity"]
    if views == ["identity"]:
        return x
    return tf.concat([tta_view(x, v) for v in views], axis=0)


def load_saved_model(path):
    """Load a SavedModel for inference and return ``f(batch) -> np.ndarray``.

    Uses ``tf.saved_model.load`` and the ``serving_default`` signature, so it
    works under Keras 2 and Keras 3 alike and never touches optimizer state.
    """
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    _, kwargs = signature.structured_input_signature
    if len(kwargs) != 1:
        raise ValueError("%s: serving_default takes %d inputs; leafsub supports one image input"
                         % (path, len(kwargs)))
    (input_name, input_spec), = kwargs.items()
    outputs = sorted(signature.structured_outputs)
    if len(outputs) != 1:
        raise ValueError("%s: serving_default has %d outputs; leafsub supports one"
                         % (path, len(outputs)))
    output_name = outputs[0]

    def call(batch):
        x = tf.cast(batch, input_spec.dtype)
        return signature(**{input_name: x})[output_name].numpy()

    call.saved_model = loaded  # keep the trackable objects alive
    call.input_shape = tuple(input_spec.shape)
    return call


def call_in_slices(call, batch, size):
    """``call(batch)``, made ``size`` images at a time (outputs concatenated in order)."""
    n = int(batch.shape[0])
    if n <= size:
        return call(batch)
    return np.concatenate([call(batch[start:start + size]) for start in range(0, n, size)],
                          axis=0)


class Member:
    """One model of a submission: its SavedModel, preprocessing and output kind."""

    def __init__(self, path, preprocess_spec, input_size, output_kind, input_shape=None):
        self.path = path
        self.spec = validate_spec(preprocess_spec)
        self.input_size = None if input_size is None else tuple(input_size)
        self.output_kind = output_kind
        # Set for a model whose input is not an image (e.g. [steps, features]): no resize, no TTA.
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.call = load_saved_model(path)

    def predict_proba(self, images, views=("identity",)):
        """``[N, C]`` probabilities, TTA views averaged.

        The views are made on the whole batch at once, then fed to the model in slices
        of ``max(N, MIN_CALL_BATCH)`` images (see :data:`MIN_CALL_BATCH`). A non-image
        member (``input_shape`` set) is called on its preprocessed samples, no views.
        """
        if getattr(self, "input_shape", None) is not None:
            return to_probabilities(self.call(preprocess_samples(images, self.spec)),
                                    self.output_kind)
        views = list(views) or ["identity"]
        x = resize(images, self.input_size, self.spec["resize_method"])
        batch = normalize(tta_batch(x, views), self.spec)
        outputs = call_in_slices(self.call, batch, max(int(x.shape[0]), MIN_CALL_BATCH))
        return merge_views(to_probabilities(outputs, self.output_kind), len(views))


class Ensemble:
    """The submission's predictor: members, TTA views and a combiner.

    ``predict_proba(X)`` returns ``[N, C]`` scores; ``predict(X)`` their argmax.
    Large inputs are processed in chunks of ``chunk_size`` images.
    """

    def __init__(self, members, views=("identity",), method="mean", weights=None,
                 chunk_size=64):
        self.members = list(members)
        self.views = list(views) or ["identity"]
        self.method = method
        self.weights = weights
        self.chunk_size = int(chunk_size)

    def predict_proba(self, images):
        if getattr(self.members[0], "input_shape", None) is not None:
            x = tf.cast(tf.convert_to_tensor(images), tf.float32)  # not an image: any shape
        else:
            x = _as_float_batch(images)
        n = int(x.shape[0])
        if n == 0:
            return np.zeros((0, 0))
        chunks = []
        for start in range(0, n, self.chunk_size):
            part = x[start:start + self.chunk_size]
            probs = [m.predict_proba(part, self.views) for m in self.members]
            chunks.append(combine(probs, self.method, self.weights) if len(probs) > 1
                          else probs[0])
        return np.concatenate(chunks, axis=0)

    def predict(self, images):
        scores = self.predict_proba(images)
        if scores.shape[0] == 0:  # an empty batch: no labels (argmax would raise)
            return np.zeros((0,), dtype=np.int64)
        return np.argmax(scores, axis=1).astype(np.int64)
