"""leafsub torch runtime: preprocessing, test-time augmentation (TTA) and ensembling.

The PyTorch twin of ``runtime.py``, with the same functions and the same
conventions, so that the build's self-check and the evaluator's checks drive it
the same way. ``leafsub build`` copies this file's source, unchanged, into a
torch submission's ``model.py``; leafsub's own checks import the very same module.

It imports only the standard library, numpy and torch (no torchvision: the
platform may not have it, and its preprocessing is a few lines of arithmetic).

Conventions:
  * Images enter as a batch ``[N, H, W, C]`` (channels last) of RGB values in the
    0-255 range, any numeric dtype, numpy array or ``torch.Tensor``. The adapter
    class of ``model.py`` turns the platform's layout into this one first.
  * Preprocessing and TTA work channels last; ``load_torchscript`` hands the model
    the layout it was exported with (``"NCHW"`` for a usual ``torch.nn`` CNN).
  * No function here mutates its input.
  * A preprocessing *spec* is the dict of ``runtime.py`` plus, optionally, the
    geometry torchvision applied before the value transform::

        {"mode": "torch", "resize_method": "bilinear", "scale": None, "offset": None,
         "resize": [h, w] | shorter_side | None, "crop": [h, w] | None,
         "layout": "NCHW"}

    ``mode="torch"`` is torchvision's ``ToTensor()`` then ``Normalize(ImageNet
    mean, std)``; ``rescale`` is ``ToTensor()`` alone; ``affine`` is ``y = x *
    scale + offset`` per channel on 0-255 values (any other ``Normalize``).
"""

import os
import warnings

import numpy as np
import torch

# --- leafsub: spec import --- (model.py holds spec.py's text just above instead)
try:
    from .spec import *  # noqa: F401,F403  (leafsub.submission_template.spec)
except ImportError:  # a copy beside leafsub_spec.py: the evaluator's child, the self-check
    from leafsub_spec import *  # noqa: F401,F403
# --- end of the spec import ---

LAYOUTS = ("NCHW", "NHWC")


def _size_pair(value, field):
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


_validate_common_spec = validate_spec  # spec.py's: mode, resize method, affine numbers


def validate_spec(spec):
    """Check a torch preprocessing spec and return a normalised copy: spec.py's
    ``validate_spec`` plus the torch fields (``layout``, ``resize``, ``crop``).

    Raises:
      ValueError naming the bad field and the allowed values.
    """
    out = _validate_common_spec(spec)
    layout = spec.get("layout", "NCHW")
    if layout not in LAYOUTS:
        raise ValueError("layout %r is not one of %s" % (layout, ", ".join(LAYOUTS)))
    out["layout"] = layout
    for key in ("resize", "crop"):
        if spec.get(key) is not None:
            out[key] = _size_pair(spec[key], key)
    return out


def _as_float_batch(images):
    """A float32 ``[N, H, W, C]`` torch.Tensor of ``images``; never writes to the input."""
    if isinstance(images, torch.Tensor):
        x = images.detach()
    else:
        x = torch.from_numpy(np.array(images, copy=True))
    if x.dtype != torch.float32:
        x = x.to(torch.float32)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError("expected images of shape [N, H, W, C], got shape %s" % (tuple(x.shape),))
    return x


def resize(images, size, method="bilinear"):
    """Resize a channels-last batch to ``size = (height, width)``.

    ``torch.nn.functional.interpolate`` with ``antialias=True`` for bilinear and
    bicubic, as torchvision's ``Resize`` does on tensors. Returns the input (as a
    float32 tensor) unchanged when it already has that size.
    """
    x = _as_float_batch(images)
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[1:3]) == size:
        return x
    if method not in RESIZE_METHODS:
        raise ValueError("resize method %r is not one of %s" % (method, ", ".join(RESIZE_METHODS)))
    kwargs = {}
    if method in ("bilinear", "bicubic"):
        kwargs = {"align_corners": False, "antialias": True}
    y = torch.nn.functional.interpolate(x.permute(0, 3, 1, 2), size=size, mode=method, **kwargs)
    return y.permute(0, 2, 3, 1).contiguous()


def shorter_side(shape, n):
    """torchvision's ``Resize(n)``: the shorter side becomes ``n``, the aspect ratio is kept."""
    h, w = int(shape[0]), int(shape[1])
    if h <= w:
        return n, max(1, int(n * w / h))
    return max(1, int(n * h / w)), n


def center_crop(images, size):
    """The central ``size = (height, width)`` of a channels-last batch (torchvision's rounding)."""
    x = _as_float_batch(images)
    h, w = int(x.shape[1]), int(x.shape[2])
    ch, cw = int(size[0]), int(size[1])
    if ch > h or cw > w:
        raise ValueError("center crop %dx%d is larger than the %dx%d images" % (ch, cw, h, w))
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return x[:, top:top + ch, left:left + cw, :]


def geometry(images, spec, size):
    """The spec's resize and centre crop, then a resize to the model's ``size`` if needed."""
    x = _as_float_batch(images)
    method = spec.get("resize_method", "bilinear")
    target = spec.get("resize")
    if target is not None:
        hw = shorter_side(x.shape[1:3], target) if isinstance(target, int) else target
        x = resize(x, hw, method)
    if spec.get("crop") is not None:
        x = center_crop(x, spec["crop"])
    if size is not None:
        x = resize(x, size, method)
    return x


def normalize(images, spec):
    """Apply the spec's value transform (no resizing) to a 0-255 RGB channels-last batch."""
    x = _as_float_batch(images)
    mode = spec["mode"]
    if mode == "none":
        return x
    if mode == "rescale":
        return x / 255.0
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "caffe":
        return x.flip(-1) - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32)
    if mode == "torch":
        return (x / 255.0 - torch.tensor(TORCH_MEAN_RGB, dtype=torch.float32)) / torch.tensor(
            TORCH_STD_RGB, dtype=torch.float32)
    if mode == "affine":
        return x * torch.tensor(spec["scale"], dtype=torch.float32) + torch.tensor(
            spec["offset"], dtype=torch.float32)
    raise ValueError("preprocessing mode %r is not one of %s" % (mode, ", ".join(MODES)))


def preprocess(images, spec, size=None):
    """Resize/crop (as the spec and ``size`` say) then normalise a channels-last batch.

    Returns a float32 ``[N, H, W, C]`` torch.Tensor; ``to_layout`` makes it NCHW.

    Example:
      >>> x = np.full((1, 4, 4, 3), 255, np.uint8)
      >>> float(preprocess(x, {"mode": "rescale"})[0, 0, 0, 0])
      1.0
    """
    x = _as_float_batch(images)
    if size is not None or spec.get("resize") is not None or spec.get("crop") is not None:
        x = geometry(x, spec, size)
    return normalize(x, spec)


def to_layout(batch, layout):
    """A channels-last batch in the model's layout (``"NCHW"`` or ``"NHWC"``)."""
    if layout == "NHWC":
        return batch
    if layout == "NCHW":
        return batch.permute(0, 3, 1, 2).contiguous()
    raise ValueError("layout %r is not one of %s" % (layout, ", ".join(LAYOUTS)))


def _crop(x, where):
    h, w = int(x.shape[1]), int(x.shape[2])
    ch, cw = max(1, int(round(h * CROP_FRACTION))), max(1, int(round(w * CROP_FRACTION)))
    top = {"center": (h - ch) // 2, "tl": 0, "tr": 0, "bl": h - ch, "br": h - ch}[where]
    left = {"center": (w - cw) // 2, "tl": 0, "tr": w - cw, "bl": 0, "br": w - cw}[where]
    return resize(x[:, top:top + ch, left:left + cw, :], (h, w), "bilinear")


def tta_view(images, view):
    """One test-time-augmentation view of a channels-last batch (same shape as the input)."""
    x = _as_float_batch(images)
    if view == "identity":
        return x
    if view == "hflip":
        return x.flip(2)
    if view == "vflip":
        return x.flip(1)
    if view in ("rot90", "rot180", "rot270"):
        if view != "rot180" and x.shape[1] != x.shape[2]:
            raise ValueError("TTA view %r needs square images, got %dx%d"
                             % (view, x.shape[1], x.shape[2]))
        # counter-clockwise, as tf.image.rot90
        return torch.rot90(x, k={"rot90": 1, "rot180": 2, "rot270": 3}[view], dims=(1, 2))
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
    return torch.cat([tta_view(x, v) for v in views], dim=0)


MODEL_FILE = "model.pt"


def load_torchscript(path, layout="NCHW"):
    """Load ``path/model.pt`` (TorchScript) for inference; return ``f(batch) -> np.ndarray``.

    ``f`` takes a preprocessed channels-last batch and hands the model ``layout``.
    ``torch.jit.load`` needs neither the model's Python class nor torchvision.
    """
    file = os.path.join(str(path), MODEL_FILE) if os.path.isdir(str(path)) else str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 nudges to torch.export
        module = torch.jit.load(file, map_location="cpu")
    module.eval()

    def call(batch):
        x = to_layout(_as_float_batch(batch), layout)
        with torch.inference_mode():
            y = module(x)
        return y.detach().cpu().numpy()

    call.module = module
    return call


class Member:
    """One model of a submission: its TorchScript file, preprocessing and output kind."""

    def __init__(self, path, preprocess_spec, input_size, output_kind, input_shape=None):
        # input_shape: the shared adapter passes it (set for a non-image Keras member); a
        # torch member takes images only (torch-generic), so it must be None here.
        if input_shape is not None:
            raise ValueError("a torch member takes image batches; input_shape=%r is for a "
                             "non-image (Keras) member" % (input_shape,))
        self.path = path
        self.spec = validate_spec(preprocess_spec)
        self.input_size = tuple(input_size)
        self.output_kind = output_kind
        self.call = load_torchscript(path, self.spec["layout"])

    def predict_proba(self, images, views=("identity",)):
        """``[N, C]`` probabilities, TTA views averaged, all views in one model call."""
        x = geometry(images, self.spec, self.input_size)
        batch = normalize(tta_batch(x, views), self.spec)
        probs = to_probabilities(self.call(batch), self.output_kind)
        return merge_views(probs, len(list(views) or ["identity"]))


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
        if scores.shape[0] == 0:
            return np.zeros((0,), dtype=np.int64)
        return np.argmax(scores, axis=1).astype(np.int64)
