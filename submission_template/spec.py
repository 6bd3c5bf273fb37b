"""leafsub runtime core: preprocessing, TTA and ensembling, free of any framework.

What a preprocessing *is* (the modes, the Keras-applications constants, the presets by
architecture, ``validate_spec``), how the platform's input relates to RGB 0-255
(``platform_input``, ``to_platform``, ``Ops.from_platform``), how outputs become one answer
(``merge_views``, ``to_probabilities``, ``combine``), and the runtime itself (``Ops``,
``BaseMember``, ``Ensemble``): written once, over a small table of framework operations
that ``runtime.py`` (TensorFlow) and ``runtime_torch.py`` (torch) each fill in. It imports
only the standard library and numpy, so ``leafsub build`` and the evaluator import it
without a framework; a submission's ``model.py`` holds the parts of it that its build runs.

A preprocessing spec is a plain dict (stored in the model card and in ``model.py``)::

    {"mode": "caffe", "resize_method": "bilinear", "scale": None, "offset": None}

``mode`` is one of ``MODES``; ``scale``/``offset`` are per-channel (per-feature for an
input that is not an image) lists used only by ``mode="affine"`` (``y = x * scale +
offset``). Optional geometry, as torchvision's validation transforms apply it before the
value transform: ``"resize"`` (``[h, w]``, or an int: the shorter side), ``"crop"`` (a
centre crop ``[h, w]``), and ``"layout"`` (``"NCHW"`` or ``"NHWC"``: what a torch model
takes).
"""

__all__ = [
    "CAFFE_MEAN_BGR", "TORCH_MEAN_RGB", "TORCH_STD_RGB", "MODES", "RESIZE_METHODS", "PRESETS",
    "LAYOUTS", "TTA_VIEWS", "CROP_FRACTION", "MIN_CALL_BATCH", "COMBINERS",
    "preset", "validate_spec", "platform_input", "is_identity", "to_platform",
    "merge_views", "to_probabilities", "combine", "call_in_slices", "shorter_side",
    "Ops", "BaseMember", "Ensemble",
]

import numpy as np

# Keras-applications constants (keras/src/applications/imagenet_utils.py).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)

MODES = ("caffe", "tf", "torch", "rescale", "none", "affine")
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")
LAYOUTS = ("NCHW", "NHWC")

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
# TTA stacks k views of a batch into one batch of k x N images; one call that large is
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
      spec: a dict (see the module docstring); ``resize_method`` defaults to bilinear;
        the optional geometry (``resize``, ``crop``, ``layout``) is kept when given.
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
    if spec.get("layout") is not None:
        if spec["layout"] not in LAYOUTS:
            raise ValueError("layout %r is not one of %s" % (spec["layout"], ", ".join(LAYOUTS)))
        out["layout"] = spec["layout"]
    for key in ("resize", "crop"):
        if spec.get(key) is not None:
            out[key] = _size_pair(spec[key], key)
    return out


def _size_pair(value, field):
    """``[height, width]`` (or, for ``resize``, an int: the shorter side) from a spec field."""
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        raise ValueError("%s must be an integer or [height, width], got %r" % (field, value))
    if isinstance(value, int):
        if value < 1:
            raise ValueError("%s must be positive, got %r" % (field, value))
        return value
    if len(value) == 1:
        value = [value[0], value[0]]
    if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
        raise ValueError("%s must be an integer or [height, width], got %r" % (field, value))
    return [int(value[0]), int(value[1])]


def platform_input(profile_input):
    """How the platform's images differ from the runtime's RGB 0-255 channels last, as data.

    Args:
      profile_input: a profile's ``input`` dict (``range``, ``channel_order``, ``kind``,
        ``layout``).

    Returns:
      ``{"range": [lo, hi], "channel_order": "RGB"|"BGR"}`` (and ``"layout": "NCHW"`` for
      channels-first batches) for an image input, or None for an input that is not an
      image (fed as stored, no conversion).

    Example:
      >>> platform_input({"kind": "image", "range": [0, 1], "channel_order": "BGR"})
      {'range': [0.0, 1.0], 'channel_order': 'BGR'}
    """
    if profile_input.get("kind", "image") != "image":
        return None
    lo, hi = (float(v) for v in (profile_input.get("range") or (0, 255)))
    conv = {"range": [lo, hi], "channel_order": profile_input.get("channel_order", "RGB")}
    if profile_input.get("layout") == "NCHW":
        conv["layout"] = "NCHW"
    return conv


def is_identity(conv):
    """True when ``conv`` (from ``platform_input``) changes nothing: RGB 0-255 channels last,
    or no image."""
    return conv is None or (tuple(conv["range"]) == (0.0, 255.0)
                            and conv["channel_order"] == "RGB" and "layout" not in conv)


def to_platform(images, conv):
    """RGB 0-255 float32 images -> the platform's range and channel order (what it feeds;
    the layout is the feeder's). ``Ops.from_platform`` is the inverse.

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


# --------------------------------------------------------------------------- outputs
# Pure numpy, whatever the framework: how the views' and the models' outputs become one
# answer.

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


# --------------------------------------------------------------------------- the runtime
# Written once for every framework: the framework's own operations are the few static
# methods an Ops subclass defines (runtime.py: TensorFlowOps, runtime_torch.py: TorchOps).

def call_in_slices(call, batch, size):
    """``call(batch)``, made ``size`` images at a time (outputs concatenated in order)."""
    n = int(batch.shape[0])
    if n <= size:
        return call(batch)
    return np.concatenate([call(batch[start:start + size]) for start in range(0, n, size)],
                          axis=0)


def shorter_side(shape, n):
    """torchvision's ``Resize(n)``: the shorter side becomes ``n``, the aspect ratio is kept."""
    h, w = int(shape[0]), int(shape[1])
    if h <= w:
        return n, max(1, int(n * w / h))
    return max(1, int(n * h / w)), n


class Ops:
    """Preprocessing and TTA views over batches channels last, RGB 0-255 (never mutated);
    a subclass supplies the framework's operations (``as_batch``, ``interpolate``, ...)."""

    @classmethod
    def from_platform(cls, X, conv):
        """The platform's batch as RGB 0-255 channels last: ``conv`` (``platform_input``) undone."""
        x = cls.as_batch(X)
        if conv.get("layout") == "NCHW":
            x = cls.channels_last(x)
        lo, hi = conv["range"]
        if (lo, hi) != (0.0, 255.0):
            x = (x - lo) * (255.0 / (hi - lo))
        if conv["channel_order"] == "BGR":
            x = cls.flip(x, 3)
        return x

    @classmethod
    def resize(cls, images, size, method="bilinear"):
        """A batch at ``size = (height, width)``, unchanged when it already has that size."""
        x = cls.as_batch(images)
        size = (int(size[0]), int(size[1]))
        if tuple(x.shape[1:3]) == size:
            return x
        return cls.interpolate(x, size, method)

    @classmethod
    def center_crop(cls, images, size):
        """The central ``size = (height, width)`` of a batch (torchvision's rounding)."""
        x = cls.as_batch(images)
        h, w = int(x.shape[1]), int(x.shape[2])
        ch, cw = int(size[0]), int(size[1])
        if ch > h or cw > w:
            raise ValueError("center crop %dx%d is larger than the %dx%d images" % (ch, cw, h, w))
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        return x[:, top:top + ch, left:left + cw, :]

    @classmethod
    def geometry(cls, images, spec, size):
        """The spec's resize and centre crop (if any), then a resize to the model's ``size``."""
        x = cls.as_batch(images)
        if spec.get("resize") is not None or spec.get("crop") is not None:
            x = cls.resize_and_crop(x, spec)
        return x if size is None else cls.resize(x, size, spec.get("resize_method", "bilinear"))

    @classmethod
    def resize_and_crop(cls, x, spec):
        """torchvision's ``Resize`` (``spec["resize"]``) then ``CenterCrop`` (``spec["crop"]``)."""
        if spec.get("resize") is not None:
            target = spec["resize"]
            x = cls.resize(x, shorter_side(x.shape[1:3], target) if isinstance(target, int)
                           else target, spec.get("resize_method", "bilinear"))
        if spec.get("crop") is not None:
            x = cls.center_crop(x, spec["crop"])
        return x

    @classmethod
    def normalize(cls, images, spec):
        """Apply the spec's value transform, the method ``mode_<mode>``, to a 0-255 RGB batch
        (``validate_spec`` checked the mode)."""
        return getattr(cls, "mode_" + spec["mode"])(cls.as_batch(images), spec)

    @staticmethod
    def mode_none(x, spec):  # the model normalises inside
        return x

    @staticmethod
    def mode_rescale(x, spec):
        return x / 255.0

    @staticmethod
    def mode_tf(x, spec):
        return x / 127.5 - 1.0

    @classmethod
    def mode_caffe(cls, x, spec):
        return cls.flip(x, 3) - cls.constant(CAFFE_MEAN_BGR)

    @classmethod
    def mode_torch(cls, x, spec):
        return (x / 255.0 - cls.constant(TORCH_MEAN_RGB)) / cls.constant(TORCH_STD_RGB)

    @classmethod
    def mode_affine(cls, x, spec):
        return x * cls.constant(spec["scale"]) + cls.constant(spec["offset"])

    @classmethod
    def preprocess(cls, images, spec, size=None):
        """Resize/crop (as the spec and ``size`` say) then normalise a batch."""
        return cls.normalize(cls.geometry(images, spec, size), spec)

    @classmethod
    def preprocess_samples(cls, samples, spec):
        """Normalise a batch that is not an image (a time series ``[N, steps, features]``, ...).

        Only ``none`` and ``affine`` apply: ``affine`` is ``x * scale + offset`` per feature
        (the last axis), e.g. a StandardScaler fitted on the training set, with
        ``scale = 1 / std`` and ``offset = -mean / std``. Never resizes, never mutates.
        """
        x = cls.as_samples(samples)
        if len(x.shape) < 2:
            raise ValueError("expected a batch of samples [N, ...], got shape %s"
                             % (tuple(x.shape),))
        if spec["mode"] == "none":
            return x
        if spec["mode"] == "affine":
            return x * cls.constant(spec["scale"]) + cls.constant(spec["offset"])
        raise ValueError("preprocessing mode %r is for images; a non-image input takes 'none' "
                         "or 'affine'" % (spec["mode"],))

    @classmethod
    def tta_batch(cls, images, views):
        """All ``views`` of a batch stacked into one batch of ``len(views) * N`` images.

        View ``v`` of image ``i`` is at index ``v * N + i``; ``merge_views`` undoes it.
        """
        x = cls.as_batch(images)
        views = list(views) or ["identity"]
        if views == ["identity"]:
            return x
        return cls.concat([cls.tta_view(x, v) for v in views])

    @classmethod
    def tta_view(cls, images, view):
        """One test-time-augmentation view of a batch (same shape as the input): the method
        ``view_<name>`` below."""
        if view not in TTA_VIEWS:
            raise ValueError("unknown TTA view %r; known: %s" % (view, ", ".join(TTA_VIEWS)))
        return getattr(cls, "view_" + view)(cls.as_batch(images))

    @staticmethod
    def view_identity(x):
        return x

    @classmethod
    def view_hflip(cls, x):
        return cls.flip(x, 2)

    @classmethod
    def view_vflip(cls, x):
        return cls.flip(x, 1)

    @classmethod
    def view_rot90(cls, x):
        return cls.rotate(x, 1)

    @classmethod
    def view_rot180(cls, x):
        return cls.rotate(x, 2)

    @classmethod
    def view_rot270(cls, x):
        return cls.rotate(x, 3)

    @classmethod
    def rotate(cls, x, k):
        """``k`` quarter turns counter-clockwise (as tf.image.rot90); 90 and 270 need a square."""
        if k % 2 and x.shape[1] != x.shape[2]:
            raise ValueError("TTA view 'rot%d' needs square images, got %dx%d"
                             % (90 * k, x.shape[1], x.shape[2]))
        return cls.rot90(x, k)

    @classmethod
    def view_crop_center(cls, x):
        return cls.crop(x, "center")

    @classmethod
    def view_crop_tl(cls, x):
        return cls.crop(x, "tl")

    @classmethod
    def view_crop_tr(cls, x):
        return cls.crop(x, "tr")

    @classmethod
    def view_crop_bl(cls, x):
        return cls.crop(x, "bl")

    @classmethod
    def view_crop_br(cls, x):
        return cls.crop(x, "br")

    @classmethod
    def crop(cls, x, where):
        """A CROP_FRACTION crop at ``where`` (centre or a corner), resized back to full size."""
        h, w = int(x.shape[1]), int(x.shape[2])
        ch, cw = max(1, int(round(h * CROP_FRACTION))), max(1, int(round(w * CROP_FRACTION)))
        top = {"center": (h - ch) // 2, "tl": 0, "tr": 0, "bl": h - ch, "br": h - ch}[where]
        left = {"center": (w - cw) // 2, "tl": 0, "tr": w - cw, "bl": 0, "br": w - cw}[where]
        return cls.interpolate(x[:, top:top + ch, left:left + cw, :], (h, w), "bilinear")


class BaseMember:
    """One model of a submission: its file, preprocessing and output kind (``ops``: the
    framework's operations)."""

    def __init__(self, path, preprocess_spec, input_size, output_kind, input_shape=None):
        self.path = path
        self.spec = dict(preprocess_spec)
        self.input_size = None if input_size is None else tuple(input_size)
        self.output_kind = output_kind
        # Set for a model whose input is not an image (e.g. [steps, features]): no resize, no TTA.
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.call = self.ops.load(path, self.spec)

    def predict_proba(self, images, views=("identity",)):
        """``[N, C]`` probabilities, averaged over the TTA ``views``."""
        if self.input_shape is not None:
            return self.predict_samples(images)
        views = list(views) or ["identity"]
        x = self.ops.geometry(images, self.spec, self.input_size)
        if views != ["identity"]:
            return self.predict_views(x, views)
        return to_probabilities(self.call(self.ops.normalize(x, self.spec)), self.output_kind)

    def predict_views(self, x, views):
        """The views are made on the whole batch at once, then fed to the model in slices
        of ``max(N, MIN_CALL_BATCH)`` images (see ``MIN_CALL_BATCH``)."""
        batch = self.ops.normalize(self.ops.tta_batch(x, views), self.spec)
        outputs = call_in_slices(self.call, batch, max(int(x.shape[0]), MIN_CALL_BATCH))
        return merge_views(to_probabilities(outputs, self.output_kind), len(views))

    def predict_samples(self, samples):
        """A model whose input is not an image: its preprocessed samples, no views."""
        return to_probabilities(self.call(self.ops.preprocess_samples(samples, self.spec)),
                                self.output_kind)


class Ensemble:
    """The submission's predictor: members, TTA views and a combiner. ``predict_proba(X)``
    returns ``[N, C]`` scores, ``predict(X)`` their argmax, in chunks of ``chunk_size``."""

    def __init__(self, members, views=("identity",), method="mean", weights=None,
                 chunk_size=64):
        self.members = list(members)
        self.views = list(views) or ["identity"]
        self.method = method
        self.weights = weights
        self.chunk_size = int(chunk_size)

    def predict_proba(self, images):
        first = self.members[0]  # a model whose input is not an image takes any shape
        x = first.ops.as_batch(images) if first.input_shape is None else first.ops.as_samples(images)
        n = int(x.shape[0])
        if n == 0:
            return np.zeros((0, 0))
        chunks = []
        for start in range(0, n, self.chunk_size):
            # One chunk (the usual platform batch): the batch itself, not a sliced copy.
            part = x if n <= self.chunk_size else x[start:start + self.chunk_size]
            probs = [m.predict_proba(part, self.views) for m in self.members]
            chunks.append(combine(probs, self.method, self.weights) if len(probs) > 1
                          else probs[0])
        return np.concatenate(chunks, axis=0)

    def predict(self, images):
        scores = self.predict_proba(images)
        if scores.shape[0] == 0:  # an empty batch: no labels (argmax would raise)
            return np.zeros((0,), dtype=np.int64)
        return np.argmax(scores, axis=1).astype(np.int64)
