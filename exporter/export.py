"""``leafsub export``: a trained model -> a run dir the later steps can trust.

A run dir holds an inference-only SavedModel (no optimizer state: a submission
saved after Adam training carries ~3x its weights in optimizer slots, and those
objects are what a newer TensorFlow fails to restore), the model card
``leafsub.json`` and ``probe.npz``, the goldens: the exported model's outputs on
a small probe batch, computed through the user's real training preprocessing
when one is given. See docs/ARCHITECTURE.md for the exact layout.
"""

import dataclasses
import datetime
import os
import platform
import shutil
import tempfile

import numpy as np

from .. import __version__
from ..card import hash_tree, write_card
from ..errors import CheckFailed, UsageError

SAVED_MODEL_DIR = "saved_model"
PROBE_FILE = "probe.npz"
DEFAULT_PROBE_COUNT = 8
# Probabilities that differ by at most this much count as "the goldens are
# reproduced" in later steps (other processes, batch compositions, TF builds).
DEFAULT_TOLERANCE = 1e-4
# The export itself must be faithful to the in-memory model to this precision.
FIDELITY_TOLERANCE = 1e-5


@dataclasses.dataclass
class ExportResult:
    """What export wrote and measured."""

    run_dir: str
    card: dict
    max_fidelity_diff: float
    dropped_bytes: int = 0
    notes: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return {"run_dir": self.run_dir, "card": self.card,
                "max_fidelity_diff": self.max_fidelity_diff,
                "dropped_bytes": self.dropped_bytes, "notes": list(self.notes)}


@dataclasses.dataclass
class ProbeRun:
    """The probe batch and what the model in memory made of it: the goldens to be."""

    images: object  # as the platform feeds them (RGB 0-255 images, or raw samples)
    model_inputs: object  # after the training preprocessing
    reference: object  # the model's outputs on model_inputs (float64)
    source: str  # "user" or "synthetic"
    through: str  # "preprocess_fn" or "declared pipeline"


# --------------------------------------------------------------------------- inputs

def synthetic_probe(count, size, seed=0):
    """A fixed batch of smooth random RGB images in 0-255 (float32 [count, h, w, 3]).

    Channels vary independently so that channel-order mistakes (RGB vs BGR) show.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.uniform(0, 255, size=(count, 4, 4, 3))
    yy = np.linspace(0, 3, h)
    xx = np.linspace(0, 3, w)
    y0, x0 = np.floor(yy).astype(int).clip(0, 2), np.floor(xx).astype(int).clip(0, 2)
    fy, fx = (yy - y0)[None, :, None, None], (xx - x0)[None, None, :, None]
    top = coarse[:, y0][:, :, x0] * (1 - fx) + coarse[:, y0][:, :, x0 + 1] * fx
    bottom = coarse[:, y0 + 1][:, :, x0] * (1 - fx) + coarse[:, y0 + 1][:, :, x0 + 1] * fx
    smooth = top * (1 - fy) + bottom * fy
    noise = rng.normal(0, 12, size=smooth.shape)
    return np.clip(smooth + noise, 0, 255).astype(np.float32)


def _resolve_spec(preprocess, arch):
    # The spec's checks and the presets are TensorFlow-free: a wrong argument is said
    # before TensorFlow's import (seconds), not after.
    from ..submission_template.spec import MODES, preset, validate_spec

    if preprocess is None and arch is None:
        return None, None
    if isinstance(preprocess, dict):
        try:
            return validate_spec(preprocess), "declared"
        except ValueError as e:
            raise UsageError("preprocess: %s." % e) from None
    name = preprocess if preprocess is not None else arch
    if name in MODES:
        if name == "affine":
            raise UsageError("preprocess 'affine' needs scale and offset: pass "
                             "{'mode': 'affine', 'scale': [...], 'offset': [...]}.")
        return validate_spec({"mode": name}), "declared"
    try:
        mode = preset(name)
    except ValueError as e:
        raise UsageError("preprocess %r is neither a mode (%s) nor a known architecture. %s"
                         % (name, ", ".join(MODES[:-1]), e)) from None
    return validate_spec({"mode": mode}), "preset:%s" % name


def check_class_names(class_names, n_outputs, source):
    """The class names as strings, one per output (two for a single sigmoid unit).

    Raises:
      UsageError naming ``source`` when they are missing, repeated or not one per output.
    """
    if class_names is None:
        raise UsageError("class_names is required (the model has %d outputs): pass the names in "
                         "label order, e.g. class_names=train_ds.class_names, or "
                         "--class-names a,b,c / --profile NAME on the command line." % n_outputs)
    names = [str(c) for c in class_names]
    if len(set(names)) != len(names):
        raise UsageError("class_names has duplicates: %s." % names)
    if n_outputs == 1 and len(names) == 2:
        return names  # a single sigmoid unit for a binary task
    if len(names) != n_outputs:
        raise UsageError("%s has %d outputs but %d class names were given (%s). Pass one name "
                         "per output, in label order." % (source, n_outputs, len(names),
                                                         ", ".join(names)))
    return names


# --------------------------------------------------------------------------- models

def _keras3_model(model):
    try:
        import keras
    except ImportError:
        return False
    return keras.__version__.startswith("3") and isinstance(model, keras.Model)


def _h5_info(path):
    """Keras version, optimizer bytes and weight bytes of an .h5 model file, via h5py only."""
    import h5py

    def nbytes(group):
        total = 0

        def visit(_, obj):
            nonlocal total
            if isinstance(obj, h5py.Dataset):
                total += obj.size * obj.dtype.itemsize
        group.visititems(visit)
        return total

    with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version", b"")
        version = version.decode() if isinstance(version, bytes) else str(version)
        if "model_config" not in f.attrs:
            raise UsageError("%s: an HDF5 file without a model config (saved with "
                             "save_weights?). Export needs the whole model: load the "
                             "architecture in Python, load these weights, and call "
                             "leafsub.export(model, ...)." % path)
        optimizer = nbytes(f["optimizer_weights"]) if "optimizer_weights" in f else 0
        weights = nbytes(f["model_weights"]) if "model_weights" in f else nbytes(f)
    return version, optimizer, weights


def _load_model_file(path, notes):
    """Load a .keras / .h5 file as a Keras model (Keras 3 first, tf_keras for Keras 2 files)."""
    loaders = []
    optimizer = 0
    import keras
    loaders.append(("keras %s" % keras.__version__, keras.models.load_model))
    try:
        import tf_keras
        loaders.append(("tf_keras %s" % tf_keras.__version__, tf_keras.models.load_model))
    except ImportError:
        pass
    if path.endswith(".h5"):
        version, optimizer, weights = _h5_info(path)
        notes.append("%s: saved by Keras %s; %.1f MB of weights, %.1f MB of optimizer state "
                     "(dropped)" % (path, version or "?", weights / 1e6, optimizer / 1e6))
        if version.startswith("2"):
            loaders.reverse()
    failures = []
    for name, load in loaders:
        try:
            return load(path, compile=False), optimizer
        except Exception as e:  # try the next loader, report all if none works
            failures.append("%s: %s: %s" % (name, type(e).__name__, str(e).splitlines()[0][:300]
                                            if str(e) else ""))
    raise UsageError(
        "%s: cannot load the model (%s). If it uses custom layers, losses or Lambda functions "
        "from your own code, call leafsub.export(model, run_dir, ...) from the training script "
        "with the model object instead of a file." % (path, "; ".join(failures)))


class _Model:
    """A uniform view of what export is given: ``call(x)``, input shape, a saver."""

    def __init__(self, source, notes):
        self.notes = notes
        self.dropped_bytes = 0
        if isinstance(source, (str, os.PathLike)):
            self.source = os.fspath(source)
            self._from_path(self.source)
        else:
            self.source = "<%s in memory>" % type(source).__name__
            self._from_keras(source)

    def _from_keras(self, model):
        self.keras_model = model
        self.serving = None
        shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
        if shape is not None and len(shape) in (2, 3) and None not in shape[1:]:
            pass  # not an image: a time series [batch, steps, features] or a feature vector
        elif shape is None or len(shape) != 4 or None in shape[1:]:
            raise UsageError("%s: the model's input shape %s is not a fixed [batch, height, "
                             "width, channels]. Build the model with a fixed input size "
                             "(keras.Input((h, w, 3)))." % (self.source, shape))
        self.input_shape = tuple(int(d) for d in shape[1:])
        self.kind = "keras3" if _keras3_model(model) else "keras2"

    def _from_path(self, path):
        if os.path.isdir(path):
            if not os.path.exists(os.path.join(path, "saved_model.pb")):
                raise UsageError("%s: a folder without saved_model.pb, so not a SavedModel. Pass "
                                 "a SavedModel folder, a .keras file or an .h5 file." % path)
            self.kind = "savedmodel"
            self.keras_model = None
            self._from_saved_model(path)
        elif path.endswith((".keras", ".h5", ".hdf5")):
            if not os.path.isfile(path):
                raise UsageError("%s: no such file." % path)
            model, self.dropped_bytes = _load_model_file(path, self.notes)
            self._from_keras(model)
            self.source = path
        elif path.endswith((".pt", ".pth", ".pt2")):
            raise UsageError("%s: a PyTorch file. Export a torch model from Python, where its "
                             "class is: leafsub.export(module, run_dir, preprocess=<your "
                             "validation transforms>, class_names=[...])." % path)
        else:
            raise UsageError("%s: not a model leafsub can read. Pass a SavedModel folder, a "
                             ".keras file or an .h5 file." % path)

    def _from_saved_model(self, path):
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:
            raise UsageError("%s: TensorFlow %s cannot load this SavedModel (%s: %s). Re-export "
                             "it from the training environment with leafsub.export(model, ...)."
                             % (path, tf.__version__, type(e).__name__, str(e)[:300])) from None
        if "serving_default" not in loaded.signatures:
            raise UsageError("%s: the SavedModel has no serving_default signature; leafsub needs "
                             "one image input and one output. Save it with model.export(...) "
                             "(Keras 3) or model.save(...) (Keras 2)." % path)
        fn = loaded.signatures["serving_default"]
        _, kwargs = fn.structured_input_signature
        if len(kwargs) != 1 or len(fn.structured_outputs) != 1:
            raise UsageError("%s: serving_default has %d inputs and %d outputs; leafsub supports "
                             "exactly one image input and one output."
                             % (path, len(kwargs), len(fn.structured_outputs)))
        (self._input_name, spec), = kwargs.items()
        self._output_name = next(iter(fn.structured_outputs))
        shape = tuple(spec.shape)
        if len(shape) in (2, 3) and None not in shape[1:]:
            pass  # not an image: a time series [batch, steps, features] or a feature vector
        elif len(shape) != 4 or None in shape[1:]:
            raise UsageError("%s: input shape %s is not a fixed [batch, height, width, channels]."
                             % (path, shape))
        self.input_shape = tuple(int(d) for d in shape[1:])
        self.serving = fn
        self._loaded = loaded
        total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
        self._source_bytes = total

    def __call__(self, x):
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        if self.serving is not None:
            return self.serving(**{self._input_name: x})[self._output_name].numpy()
        out = self.keras_model(x, training=False)
        return out.numpy() if hasattr(out, "numpy") else np.asarray(out)

    def save(self, directory):
        """Write an inference-only SavedModel with a serving_default signature."""
        import tensorflow as tf

        spec = tf.TensorSpec((None,) + self.input_shape, tf.float32, name="images")
        if self.kind in ("keras2", "keras3"):
            model = self.keras_model

            @tf.function(input_signature=[spec])
            def serve(images):
                return {"output_0": model(images, training=False)}

            # Keras 3's own model.export stores every weight twice (under variables/ and
            # _all_variables/: a ResNet50 is 189 MB instead of 94), which halves what fits
            # under CodaLab's 300 MB. The tf.Variables behind Keras 3 variables, once each.
            variables = [getattr(v, "value", v) if self.kind == "keras3" else v
                         for v in (model.variables if self.kind == "keras3" else model.weights)]
        else:
            fn, name, out = self.serving, self._input_name, self._output_name

            @tf.function(input_signature=[spec])
            def serve(images):
                return {"output_0": fn(**{name: images})[out]}

            variables = list(fn.variables)
        module = tf.Module()
        # Only the variables the forward pass reads: optimizer slots are left behind.
        module.model_variables = variables
        module.serve = serve
        tf.saved_model.save(module, directory, signatures={"serving_default": serve})


ModelSource = _Model   # the public name (exporter/forecast.py reads models through it)


# --------------------------------------------------------------------------- export

def output_kind(outputs, declared, model):
    """``declared`` when given, else "probabilities" or "logits" as the outputs look."""
    if declared is not None:
        if declared not in ("probabilities", "logits"):
            raise UsageError("output %r is not 'probabilities' or 'logits'." % declared)
        return declared
    y = np.asarray(outputs, dtype=np.float64)
    if y.shape[1] == 1:
        return "probabilities" if np.all((y >= 0) & (y <= 1)) else "logits"
    rows_sum_to_one = np.allclose(y.sum(axis=1), 1.0, atol=1e-3)
    return "probabilities" if rows_sum_to_one and np.all(y >= -1e-6) else "logits"


def _prepare_probe(probe, input_shape, spec, count, notes):
    from ..submission_template import runtime

    h, w, c = input_shape
    if probe is None:
        notes.append("probe: %d synthetic images (pass probe=<validation images> for goldens "
                     "on real data)" % count)
        return synthetic_probe(count, (h, w)), "synthetic"
    x = np.asarray(probe)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != c or x.shape[0] == 0:
        raise UsageError("probe must be images of shape [n, height, width, %d] with RGB values "
                         "in 0-255; got shape %s." % (c, x.shape))
    x = x[:count].astype(np.float32)
    if x.max() <= 1.0 + 1e-6:
        raise UsageError("probe images look scaled to 0-1 (max %.3f). Pass the raw images, RGB "
                         "0-255, exactly as the platform will feed them; preprocessing is "
                         "applied by leafsub." % float(x.max()))
    method = (spec or {}).get("resize_method", "bilinear")
    return np.asarray(runtime.resize(x, (h, w), method)), "user"


def export(model, run_dir, preprocess=None, class_names=None, probe=None, preprocess_fn=None,
           output=None, name=None, arch=None, probe_count=DEFAULT_PROBE_COUNT,
           tolerance=DEFAULT_TOLERANCE, force=False):
    """Export a trained model to ``run_dir`` with its card and goldens.

    Args:
      model: a Keras model (Keras 3 or tf_keras / Keras 2), or a path to a
        SavedModel folder, a ``.keras`` file or an ``.h5`` file.
      run_dir: the folder to write (must not exist or be empty, unless ``force``).
      preprocess: a mode (``"caffe"``, ``"tf"``, ``"torch"``, ``"rescale"``,
        ``"none"``), an architecture preset (``"resnet50"``), or a spec dict
        (``{"mode": "affine", "scale": [...], "offset": [...]}``).
      class_names: class names in label order.
      probe: a few validation images ``[n, h, w, 3]``, RGB 0-255 (else a fixed
        synthetic batch).
      preprocess_fn: the function training really applied (e.g.
        ``tf.keras.applications.resnet50.preprocess_input``). The goldens go
        through it; with ``preprocess`` too, export checks they agree; alone,
        export detects the pipeline.
      output: ``"probabilities"`` or ``"logits"``; detected when None.
      name: a name for the card (default: the run dir's name).
      arch: an architecture name, used as a preset when ``preprocess`` is None.
      probe_count: how many probe images to keep.
      tolerance: the probability difference later steps accept as reproduced.
      force: replace an existing run dir.

    Returns:
      ExportResult.

    Raises:
      UsageError (exit 2) for bad arguments or unreadable models; CheckFailed
      (exit 1) when the declared preprocessing does not reproduce
      ``preprocess_fn`` or the SavedModel does not reproduce the model.

    Example:
      >>> leafsub.export(model, "runs/resnet", preprocess="caffe",
      ...                class_names=train_ds.class_names, probe=x_val[:8])
    """
    from ..frameworks import require
    require("tensorflow", "Exporting a Keras model (%s)" % (
        model if isinstance(model, (str, os.PathLike)) else type(model).__name__))
    # What can be checked without TensorFlow is checked first (its import takes seconds);
    # _Model then reads a path that exists.
    if isinstance(model, (str, os.PathLike)) and not os.path.exists(model):
        raise UsageError("%s: no such file%s." % (
            model, "" if os.fspath(model).endswith((".keras", ".h5", ".hdf5")) else " or folder"))
    run_dir = check_run_dir(run_dir, force)
    spec, spec_source = _resolve_spec(preprocess, arch)
    if spec is None and preprocess_fn is None:
        raise UsageError("Say how the model's inputs were preprocessed in training: "
                         "preprocess='caffe'|'tf'|'torch'|'rescale'|'none' (or an architecture "
                         "name such as 'resnet50'), or pass preprocess_fn=<the function you "
                         "used> and leafsub will identify it.")
    from ..submission_template import runtime
    from . import detect as detect_mod

    notes = []
    wrapped = _Model(model, notes)
    if len(wrapped.input_shape) != 3:
        return _export_samples(wrapped, run_dir, preprocess, arch, preprocess_fn, class_names,
                               probe, output, name, probe_count, tolerance, notes)
    h, w, c = wrapped.input_shape
    if c != 3:
        raise UsageError("%s: the model takes %d-channel images; leafsub handles RGB (3 channels)."
                         % (wrapped.source, c))
    images, probe_source = _prepare_probe(probe, wrapped.input_shape, spec, probe_count, notes)

    if preprocess_fn is not None:
        report = None
        if spec is None:
            spec, report = detect_mod.detect(preprocess_fn, images)
            closest = dict(report)[spec["mode"]]
            spec_source = "detected (max relative difference %.2g)" % closest
            notes.append("preprocessing detected from preprocess_fn: %s" % spec["mode"])
        model_inputs = detect_mod.call_user_fn(preprocess_fn, images)
        through = "preprocess_fn"
    else:
        model_inputs = np.asarray(runtime.preprocess(images, spec))
        through = "declared pipeline"

    reference = np.asarray(wrapped(model_inputs), dtype=np.float64)
    if reference.ndim != 2:
        raise UsageError("%s: the model's output has shape %s; leafsub expects [batch, classes]."
                         % (wrapped.source, reference.shape))
    class_names = check_class_names(class_names, reference.shape[1], wrapped.source)
    kind = output_kind(reference, output, wrapped)

    if preprocess_fn is not None:
        # The declared (or detected) pipeline must give the model what training gave it.
        ours = np.asarray(wrapped(np.asarray(runtime.preprocess(images, spec))), dtype=np.float64)
        diff = float(np.max(np.abs(runtime.to_probabilities(ours, kind)
                                   - runtime.to_probabilities(reference, kind))))
        if diff > tolerance:
            try:
                guess, _ = detect_mod.detect(preprocess_fn, images)
                hint = " Your preprocess_fn looks like %r." % guess["mode"]
            except UsageError:
                hint = ""
            raise CheckFailed(
                "The declared preprocessing %r does not reproduce preprocess_fn: the model's "
                "probabilities differ by up to %.3g on the probe (tolerance %.g).%s Declare the "
                "preprocessing training really used." % (spec["mode"], diff, tolerance, hint))

    card = new_card(name, run_dir, class_names, {"height": h, "width": w, "channels": c}, kind,
                    spec, spec_source, SAVED_MODEL_DIR, wrapped.source, _keras_versions())
    probe_run = ProbeRun(images=images, model_inputs=model_inputs, reference=reference,
                         source=probe_source, through=through)
    return _write_run_dir(wrapped, run_dir, card, probe_run, tolerance, notes)


def _keras_versions():
    """The card's ``versions`` of a Keras export (``keras`` is "none" when no ``keras`` package imports)."""
    try:
        import keras
        keras_version = keras.__version__
    except ImportError:
        keras_version = "none"
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras_version}


def _write_run_dir(wrapped, run_dir, card, probe_run, tolerance, notes):
    """Save the SavedModel, check it reproduces the model, write probe.npz and ``card``
    (``new_card``'s)."""
    from ..submission_template import runtime

    reference = probe_run.reference

    def save(folder):
        wrapped.save(folder)
        outputs = np.asarray(runtime.load_saved_model(folder)(probe_run.model_inputs),
                             dtype=np.float64)
        fidelity = float(np.max(np.abs(outputs - reference)))
        if fidelity > FIDELITY_TOLERANCE * max(1.0, float(np.max(np.abs(reference)))):
            raise CheckFailed("%s: the exported SavedModel does not reproduce the model: outputs "
                              "differ by up to %.3g. This usually means layers that behave "
                              "differently at inference (custom training flags)." %
                              (wrapped.source, fidelity))
        return outputs, fidelity

    card, fidelity = write_run_dir(run_dir, save, card, probe_run.images, probe_run.source,
                                   probe_run.through, tolerance)
    return ExportResult(run_dir=run_dir, card=card, max_fidelity_diff=fidelity,
                        dropped_bytes=wrapped.dropped_bytes, notes=notes)


def synthetic_samples(count, shape, seed=0):
    """A fixed batch of standard-normal samples (float32 [count, *shape]) for a non-image model."""
    return np.random.default_rng(seed).normal(0, 1, size=(count,) + tuple(shape)).astype(np.float32)


def _export_samples(wrapped, run_dir, preprocess, arch, preprocess_fn, class_names, probe, output,
                    name, probe_count, tolerance, notes):
    """export() for a model whose input is not an image (a time series [steps, features], ...).

    Preprocessing is 'none' (the model normalises inside) or an affine per feature (the
    scaler the team fitted on its training set); it is recorded in the card. No resize, no
    detection among image pipelines: a given preprocess_fn is checked against the declared one.
    """
    from ..submission_template import runtime

    shape = tuple(wrapped.input_shape)
    features = shape[-1]
    if isinstance(preprocess, dict):
        try:
            spec = runtime.validate_spec(preprocess)
        except ValueError as e:
            raise UsageError("preprocess: %s." % e) from None
    elif preprocess == "none":
        spec = runtime.validate_spec({"mode": "none"})
    else:
        spec = None
    if spec is None or spec["mode"] not in ("none", "affine"):
        raise UsageError(
            "%s: the model's input is not an image (shape %s per sample), so the image "
            "pipelines (caffe, tf, torch, rescale, architecture presets) do not apply. Declare "
            "preprocess='none' when the model normalises inside, or your scaler as "
            "{'mode': 'affine', 'scale': [1/std per feature], 'offset': [-mean/std per "
            "feature]} (%d features)." % (wrapped.source, list(shape), features))
    if spec["mode"] == "affine":
        for key in ("scale", "offset"):
            if len(spec[key]) not in (1, features):
                raise UsageError("preprocess: affine %s has %d numbers; the model's samples have "
                                 "%d features (the last axis of %s): give 1 or %d."
                                 % (key, len(spec[key]), features, list(shape), features))
    if probe is None:
        notes.append("probe: %d synthetic standard-normal samples (pass probe=<validation "
                     "samples> for goldens on real data)" % probe_count)
        samples, probe_source = synthetic_samples(probe_count, shape), "synthetic"
    else:
        samples = np.asarray(probe)
        if samples.shape[1:] == shape[1:] and samples.ndim == len(shape):
            samples = samples[None]  # one sample
        if samples.ndim != len(shape) + 1 or tuple(samples.shape[1:]) != shape or not len(samples):
            raise UsageError("probe must be samples of shape [n, %s] as the platform feeds them "
                             "(before preprocessing); got shape %s."
                             % (", ".join(map(str, shape)), list(samples.shape)))
        samples = samples[:probe_count].astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise UsageError("probe: the samples hold NaN or infinite values.")
        probe_source = "user"
    model_inputs = np.asarray(runtime.preprocess_samples(samples, spec))
    through = "declared pipeline"
    if preprocess_fn is not None:
        theirs = np.asarray(preprocess_fn(np.array(samples, copy=True)), dtype=np.float32)
        if theirs.shape != model_inputs.shape or not np.allclose(theirs, model_inputs, rtol=1e-5,
                                                                  atol=1e-5):
            diff = float(np.max(np.abs(theirs - model_inputs))) if theirs.shape == \
                model_inputs.shape else float("inf")
            raise CheckFailed("The declared preprocessing %r does not reproduce preprocess_fn on "
                              "the probe (max difference %.3g): declare the scaler training "
                              "really used." % (spec["mode"], diff))
        model_inputs, through = theirs, "preprocess_fn"
    reference = np.asarray(wrapped(model_inputs), dtype=np.float64)
    if reference.ndim != 2:
        raise UsageError("%s: the model's output has shape %s; leafsub expects [batch, classes]."
                         % (wrapped.source, reference.shape))
    class_names = check_class_names(class_names, reference.shape[1], wrapped.source)
    kind = output_kind(reference, output, wrapped)
    card = new_card(name, run_dir, class_names, {"kind": "tensor", "shape": list(shape)}, kind,
                    spec, "declared", SAVED_MODEL_DIR, wrapped.source, _keras_versions())
    probe_run = ProbeRun(images=samples, model_inputs=model_inputs, reference=reference,
                         source=probe_source, through=through)
    return _write_run_dir(wrapped, run_dir, card, probe_run, tolerance, notes)


def describe_input(card_input):
    """'96x96x3' for an image model, '[36, 6]' for any other input."""
    if "shape" in card_input:
        return "%s" % list(card_input["shape"])
    return "%dx%dx%d" % (card_input["height"], card_input["width"], card_input["channels"])


def replace_dir(new, target):
    """Move ``new`` to ``target``; an old ``target`` is removed only once ``new`` is in place."""
    old = None
    if os.path.exists(target):
        old = target + ".leafsub-old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- the run dir
# What every framework's export shares: the run-dir check, the card, the staging folder
# and the goldens. Each framework brings its saver (export: a SavedModel, export_torch:
# TorchScript).

def check_run_dir(run_dir, force):
    """``run_dir`` as an absolute path, when it is free (or ``force`` lets it be replaced)."""
    run_dir = os.path.abspath(os.fspath(run_dir))
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UsageError("%s: exists and is not a folder; choose another run dir." % run_dir)
    if os.path.isdir(run_dir) and os.listdir(run_dir) and not force:
        raise UsageError("%s: the run dir already exists and is not empty. Choose a new run dir "
                         "or pass force=True (--force) to replace it." % run_dir)
    return run_dir


def new_card(name, run_dir, class_names, card_input, kind, spec, spec_source, model_dir,
             source_model, versions, framework=None):
    """The model card, but for what only the written run dir knows (files, probe)."""
    card = {"leafsub_card": 1}
    if framework is not None:
        card["framework"] = framework
    card.update({
        "name": name or os.path.basename(run_dir),
        "created": datetime.datetime.now(datetime.timezone.utc).replace(
            microsecond=0).isoformat(),
        "class_names": class_names,
        "input": card_input,
        "output": kind,
        "preprocess": spec,
        "preprocess_source": spec_source,
        "saved_model": model_dir,
        "source_model": source_model,
        "versions": dict(versions, leafsub=__version__, python=platform.python_version()),
    })
    return card


def write_run_dir(run_dir, save, card, images, probe_source, through, tolerance):
    """Write a run dir in one step: staged next to ``run_dir``, moved there when complete.

    Args:
      save: ``save(folder) -> (outputs, fidelity)``, the framework's saver: writes the model
        into ``folder``, checks that the written model reproduces the one in memory, and
        returns the outputs to record as goldens (on ``images``) and the largest difference.
      card: ``new_card``'s card (its ``saved_model`` names the model's folder: ``saved_model``,
        ``torchscript``); the files' hashes and the probe are added here.

    Returns:
      ``(card, fidelity)``.
    """
    from ..submission_template.spec import to_probabilities

    parent = os.path.dirname(run_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".leafsub-export-", dir=parent)
    try:
        folder = os.path.join(staging, card["saved_model"])
        outputs, fidelity = save(folder)
        np.savez(os.path.join(staging, PROBE_FILE), images=images.astype(np.float32),
                 outputs=outputs.astype(np.float32),
                 probabilities=to_probabilities(outputs, card["output"]).astype(np.float32))
        card = dict(card, files=hash_tree(folder, staging), probe={
            "file": PROBE_FILE, "count": int(images.shape[0]), "source": probe_source,
            "tolerance": float(tolerance), "through": through})
        write_card(staging, card)
        replace_dir(staging, run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return card, fidelity
