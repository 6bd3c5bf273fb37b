"""``leafsub.export`` for a PyTorch model: a ``torch.nn.Module`` -> a run dir.

The artefact is TorchScript (``torch.jit.trace``, saved as ``torchscript/model.pt``):
``torch.jit.load`` reads it with torch alone, without the model's Python class
(which lives in the student's training code, not in the zip) and without
torchvision, and a TorchScript file from one torch 2.x loads in later ones. That
is what a marking platform with "some torch 2.x" needs. ``torch.export``'s
``.pt2`` is the newer format, but an ExportedProgram is only guaranteed to load
in the torch version that wrote it, so a platform on an older torch could not
read it. Tracing records one path through ``forward``: export checks the traced
file against the module on the probe batch and on a batch of a different size.

Preprocessing is recorded as data, like the Keras path: a mode (``torch`` for
torchvision's ``ToTensor()`` + ImageNet ``Normalize``, ``rescale`` for
``ToTensor()`` alone, ``affine`` for any other ``Normalize``), plus the resize
(size, interpolation), centre crop and the model's channel layout. A torchvision
``transforms.Compose`` is identified by duck typing (class names and attributes:
torchvision itself is not imported), and when it can be called, the goldens go
through it, as they go through ``preprocess_fn`` for Keras.
"""

import os
import warnings

import numpy as np

from ..errors import CheckFailed, UsageError
from ..submission_template.spec import TORCH_MEAN_RGB as IMAGENET_MEAN
from ..submission_template.spec import TORCH_STD_RGB as IMAGENET_STD
from .export import (DEFAULT_PROBE_COUNT, DEFAULT_TOLERANCE, FIDELITY_TOLERANCE, ExportResult,
                     check_class_names, check_run_dir, new_card, output_kind, synthetic_probe,
                     write_run_dir)

TORCHSCRIPT_DIR = "torchscript"
SUPPORTED = ("ToTensor", "Normalize", "Resize", "CenterCrop")


def is_torch_module(obj):
    """True for a ``torch.nn.Module`` (without importing torch when nobody has)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


# --------------------------------------------------------------------------- transforms

def _interpolation(transform):
    value = getattr(transform, "interpolation", "bilinear")
    name = str(getattr(value, "value", value)).lower().rsplit(".", 1)[-1]
    if name in ("bilinear", "nearest", "bicubic"):
        return name
    raise UsageError("transforms.Resize(interpolation=%s) cannot be represented: leafsub's runtime "
                     "resizes with bilinear, nearest or bicubic. Train with one of those, or "
                     "declare preprocess= yourself." % name)


def _size(value, what):
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and len(value) in (1, 2) and all(
            isinstance(v, int) for v in value):
        return [int(value[0]), int(value[-1])]
    raise UsageError("transforms.%s(size=%r) cannot be represented: use an integer or "
                     "(height, width)." % (what, value))


def _close(a, b):
    return len(a) == len(b) and all(abs(float(x) - float(y)) < 1e-6 for x, y in zip(a, b))


def identify_transforms(compose):
    """The preprocessing spec of a torchvision ``transforms.Compose`` (or one transform).

    Recognised, by class name and attributes: ``Resize(size, interpolation)``,
    ``CenterCrop(size)``, then ``ToTensor()`` and ``Normalize(mean, std)``.

    Returns:
      A spec dict (see ``runtime_torch``).

    Raises:
      UsageError naming the transform leafsub cannot represent.

    Example:
      >>> identify_transforms(T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]))
      {'mode': 'torch', 'resize_method': 'bilinear', 'scale': None, 'offset': None, ...}
    """
    steps = list(getattr(compose, "transforms", [compose]))
    spec = {"mode": "none", "resize_method": "bilinear", "scale": None, "offset": None,
            "resize": None, "crop": None}
    to_tensor = normalized = False
    for t in steps:
        kind = type(t).__name__
        if kind not in SUPPORTED:
            raise UsageError(
                "transforms.%s cannot be represented in the submission's preprocessing (leafsub "
                "records %s). Random augmentations belong to training only: pass the validation "
                "transform, or declare preprocess='torch'|'rescale'|{'mode': 'affine', ...} "
                "yourself." % (kind, ", ".join(SUPPORTED)))
        if kind in ("Resize", "CenterCrop") and (to_tensor or normalized):
            raise UsageError("transforms.%s after ToTensor/Normalize cannot be represented: "
                             "leafsub resizes and crops before the value transform." % kind)
        if kind == "Resize":
            if spec["crop"] is not None:
                raise UsageError("transforms.Resize after CenterCrop cannot be represented; put "
                                 "Resize first.")
            if getattr(t, "max_size", None) is not None:
                raise UsageError("transforms.Resize(max_size=%r) cannot be represented."
                                 % t.max_size)
            spec["resize"] = _size(t.size, "Resize")
            spec["resize_method"] = _interpolation(t)
        elif kind == "CenterCrop":
            crop = _size(t.size, "CenterCrop")
            spec["crop"] = [crop, crop] if isinstance(crop, int) else crop
        elif kind == "ToTensor":
            to_tensor = True
        else:
            if normalized:
                raise UsageError("two transforms.Normalize in one Compose cannot be represented.")
            if getattr(t, "inplace", False):
                pass  # in place or not, the values are the same
            mean, std = [float(v) for v in t.mean], [float(v) for v in t.std]
            if len(mean) not in (1, 3) or len(std) != len(mean) or any(s <= 0 for s in std):
                raise UsageError("transforms.Normalize(mean=%s, std=%s) cannot be represented: "
                                 "give 1 or 3 means and positive stds." % (mean, std))
            normalized = (mean, std)
    if normalized:
        mean, std = normalized
        unit = 255.0 if to_tensor else 1.0  # ToTensor divides by 255 first
        if to_tensor and _close(mean, IMAGENET_MEAN) and _close(std, IMAGENET_STD):
            spec["mode"] = "torch"
        else:
            spec.update(mode="affine", scale=[1.0 / (unit * s) for s in std],
                        offset=[-m / s for m, s in zip(mean, std)])
    elif to_tensor:
        spec["mode"] = "rescale"
    return {k: v for k, v in spec.items() if v is not None or k in ("scale", "offset")}


def _run_compose(compose, images):
    """The Compose applied to each probe image as torchvision would (a PIL image in, a CHW
    tensor out), as a channels-last float batch; None when it cannot be called so."""
    steps = list(getattr(compose, "transforms", [compose]))
    if not callable(compose) or not all(callable(t) for t in steps):
        return None
    from PIL import Image

    out = []
    for img in images:
        y = compose(Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8)))
        y = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y, np.float32)
        if y.ndim != 3 or y.shape[0] not in (1, 3):
            raise UsageError("the transforms.Compose returned shape %s for one image; leafsub "
                             "expects a [channels, height, width] tensor (end it with ToTensor() "
                             "and Normalize)." % (list(y.shape),))
        out.append(np.transpose(y, (1, 2, 0)))
    return np.stack(out)


# --------------------------------------------------------------------------- inputs

def _resolve(preprocess, rt):
    """``(spec, source, compose or None)``."""
    if preprocess is None:
        raise UsageError("Say how the model's inputs were preprocessed in training: pass "
                         "preprocess=<your validation transforms.Compose> (ToTensor, Normalize, "
                         "Resize, CenterCrop), or preprocess='torch'|'rescale'|'none', or "
                         "{'mode': 'affine', 'scale': [...], 'offset': [...]}.")
    if isinstance(preprocess, str):
        if preprocess not in rt.MODES or preprocess == "affine":
            raise UsageError("preprocess %r: for a torch model use a transforms.Compose, 'torch' "
                             "(ToTensor + ImageNet Normalize), 'rescale' (ToTensor), 'none', or "
                             "a spec dict." % preprocess)
        return rt.validate_spec({"mode": preprocess}), "declared", None
    if isinstance(preprocess, dict):
        try:
            return rt.validate_spec(preprocess), "declared", None
        except ValueError as e:
            raise UsageError("preprocess: %s." % e) from None
    spec = identify_transforms(preprocess)
    names = [type(t).__name__ for t in getattr(preprocess, "transforms", [preprocess])]
    return rt.validate_spec(spec), "transforms.Compose(%s)" % ", ".join(names), preprocess


def _probe_images(probe, size, count, notes):
    """Raw probe images, channels last, 0-255 float32, as given (any size)."""
    if probe is None:
        notes.append("probe: %d synthetic images (pass probe=<validation images> for goldens "
                     "on real data)" % count)
        return synthetic_probe(count, size), "synthetic"
    x = probe.detach().cpu().numpy() if hasattr(probe, "detach") else np.asarray(probe)
    if x.ndim == 3:
        x = x[None]
    if x.ndim == 4 and x.shape[-1] != 3 and x.shape[1] == 3:
        x = np.transpose(x, (0, 2, 3, 1))  # a torch-style [n, 3, h, w] batch
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
        raise UsageError("probe must be RGB images [n, height, width, 3] or [n, 3, height, "
                         "width] with values in 0-255; got shape %s." % (list(x.shape),))
    x = x[:count].astype(np.float32)
    if x.max() <= 1.0 + 1e-6:
        raise UsageError("probe images look scaled to 0-1 (max %.3f): that is after ToTensor(). "
                         "Pass the raw images, RGB 0-255, exactly as the platform will feed them; "
                         "preprocessing is applied by leafsub." % float(x.max()))
    return x, "user"


def _input_size(spec, input_size, probe, rt):
    if input_size is not None:
        if isinstance(input_size, int):
            return (input_size, input_size)
        return (int(input_size[0]), int(input_size[1]))
    if spec.get("crop") is not None:
        return tuple(spec["crop"])
    if isinstance(spec.get("resize"), list):
        return tuple(spec["resize"])
    if probe is not None:
        x = np.asarray(probe.detach().cpu().numpy() if hasattr(probe, "detach") else probe)
        if x.ndim == 4:
            hw = tuple(x.shape[1:3]) if x.shape[-1] == 3 else tuple(x.shape[2:4])
            if isinstance(spec.get("resize"), int):  # Resize(n): the shorter side becomes n
                hw = rt.shorter_side(hw, spec["resize"])
            return hw
    raise UsageError("The model's input size is not known: a torch.nn.Module does not declare "
                     "one. Pass input_size=(height, width), or a Compose ending in CenterCrop or "
                     "Resize((h, w)), or a probe batch at the model's size.")


# --------------------------------------------------------------------------- export

def export_torch(module, run_dir, preprocess=None, class_names=None, probe=None, output=None,
                 name=None, input_size=None, layout="NCHW", probe_count=DEFAULT_PROBE_COUNT,
                 tolerance=DEFAULT_TOLERANCE, force=False):
    """Export a trained ``torch.nn.Module`` to ``run_dir`` with its card and goldens.

    Args:
      module: the trained model (put in eval mode for the export; restored after).
      run_dir: the folder to write (must not exist or be empty, unless ``force``).
      preprocess: the validation ``transforms.Compose`` (ToTensor, Normalize, Resize,
        CenterCrop), a mode (``"torch"``, ``"rescale"``, ``"none"``) or a spec dict.
      class_names: class names in label order.
      probe: a few validation images, RGB 0-255, ``[n, h, w, 3]`` or ``[n, 3, h, w]``
        (numpy or tensor); else a fixed synthetic batch.
      output: ``"probabilities"`` or ``"logits"``; detected when None.
      input_size: ``(height, width)`` the model takes, when the Compose does not say.
      layout: what ``forward`` takes: ``"NCHW"`` (a usual CNN) or ``"NHWC"``.

    Returns:
      ExportResult.

    Example:
      >>> leafsub.export(net, "runs/cnn", preprocess=val_transforms,
      ...                class_names=train_set.classes, probe=x_val[:8])
    """
    import torch

    from ..submission_template import runtime_torch as rt

    run_dir = check_run_dir(run_dir, force)
    if layout not in rt.LAYOUTS:
        raise UsageError("layout %r is not one of %s." % (layout, ", ".join(rt.LAYOUTS)))
    notes = []
    spec, spec_source, compose = _resolve(preprocess, rt)
    spec["layout"] = layout
    size = _input_size(spec, input_size, probe, rt)
    images, probe_source = _probe_images(probe, size, probe_count, notes)
    source = "<%s in memory>" % type(module).__name__

    try:
        model_inputs = rt.preprocess(images, spec, size)
    except ValueError as e:
        raise UsageError("probe: %s." % e) from None
    through = "declared pipeline"
    real = _run_compose(compose, images) if compose is not None else None
    if real is not None:
        if real.shape != tuple(model_inputs.shape):
            raise CheckFailed("The transforms.Compose gives images of shape %s, leafsub's reading "
                              "of it %s: it is not what it seems (a subclass?). Declare "
                              "preprocess= explicitly." % (list(real.shape[1:]),
                                                           list(model_inputs.shape[1:])))
        through = "transforms.Compose"

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            ours = np.asarray(module(rt.to_layout(model_inputs, layout)).numpy(), np.float64)
            reference = ours if real is None else np.asarray(module(rt.to_layout(
                torch.from_numpy(real), layout)).numpy(), np.float64)
        if reference.ndim != 2:
            raise UsageError("%s: the model's output has shape %s; leafsub expects [batch, "
                             "classes]." % (source, list(reference.shape)))
        class_names = check_class_names(class_names, reference.shape[1], source)
        kind = output_kind(reference, output, None)
        if real is not None:
            diff = float(np.max(np.abs(rt.to_probabilities(ours, kind)
                                       - rt.to_probabilities(reference, kind))))
            if diff > tolerance:
                raise CheckFailed(
                    "leafsub's reading of the transforms.Compose (%s) does not reproduce it: the "
                    "model's probabilities differ by up to %.3g on the probe (tolerance %.g). "
                    "Declare preprocess= with what training really did." % (
                        spec["mode"], diff, tolerance))

        def save(folder):
            return _save_torchscript(module, folder, model_inputs, layout, source, ours,
                                     reference if real is not None else None, rt)

        card = new_card(name, run_dir, class_names,
                        {"height": int(size[0]), "width": int(size[1]), "channels": 3}, kind,
                        spec, spec_source, TORCHSCRIPT_DIR, source,
                        {"torch": torch.__version__}, framework="torch")
        card, fidelity = write_run_dir(run_dir, save, card, images, probe_source, through,
                                       tolerance)
    finally:
        module.train(was_training)
    notes.append("TorchScript (torch.jit.trace) written to %s/%s" % (TORCHSCRIPT_DIR,
                                                                     rt.MODEL_FILE))
    return ExportResult(run_dir=run_dir, card=card, max_fidelity_diff=fidelity, notes=notes)


def _save_torchscript(module, folder, model_inputs, layout, source, ours, real_outputs, rt):
    """The torch saver of ``export.write_run_dir``: trace ``module`` into ``folder/model.pt``,
    check the file against the module (on the probe, and on one image: a forward whose path
    depends on the batch shows there), return the goldens' outputs and the difference.

    The goldens are ``real_outputs`` (the model on the real transforms.Compose's images)
    when given, else the traced file's outputs on leafsub's preprocessing.
    """
    import torch

    os.makedirs(folder)
    example = rt.to_layout(model_inputs, layout)
    try:
        # torch >= 2.10 marks torch.jit deprecated in favour of torch.export; see the
        # module docstring for why TorchScript is still the artefact a platform reads.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False))
            torch.jit.save(traced, os.path.join(folder, rt.MODEL_FILE))
    except Exception as e:
        raise UsageError("%s: torch.jit.trace cannot record this model (%s: %s). leafsub "
                         "needs a forward(images) -> [batch, classes] that TorchScript "
                         "can trace." % (source, type(e).__name__, str(e)[:300])) from None
    served = rt.load_torchscript(folder, layout)
    outputs = np.asarray(served(model_inputs), dtype=np.float64)
    with torch.no_grad():
        one = rt.to_layout(model_inputs[:1], layout)
        single = float(np.max(np.abs(served(model_inputs[:1]) - module(one).numpy())))
    fidelity = max(float(np.max(np.abs(outputs - ours))), single)
    if fidelity > FIDELITY_TOLERANCE * max(1.0, float(np.max(np.abs(ours)))):
        raise CheckFailed("%s: the traced TorchScript does not reproduce the model: "
                          "outputs differ by up to %.3g (a forward() whose path depends "
                          "on the batch or on Python state?)." % (source, fidelity))
    return (real_outputs if real_outputs is not None else outputs), fidelity
