"""Judging what ``predict`` returned, as pure functions of arrays (no processes, no TF).

Every function returns :class:`Check` records ``{"name", "status": pass|warn|fail,
"detail"}`` whose detail says what the profile expects and what was received. This
module is also the ``Check`` type of the build, the bundle's programs (a copy beside
them) and ``bundle --check``: standard library and numpy only.
"""

import os

import numpy as np

STATUSES = ("pass", "warn", "fail")


class Check(dict):
    """One check record, the tool's unit of verdict: ``name``, ``status``, ``detail``.

    A dict (its own JSON, the keys every report and ``--json`` reads), built only here so
    that every record has the three keys and a known status; ``extra`` keys are for the
    few records that carry more (the mismatch detective's ``culprit``).

    Example::

        Check("loads", "pass", "Model loaded in 1.2 s")
        # {'name': 'loads', 'status': 'pass', 'detail': 'Model loaded in 1.2 s'}
    """

    def __init__(self, name, status, detail, **extra):
        if status not in STATUSES:
            raise ValueError("check %r: status %r, expected one of %s"
                             % (name, status, ", ".join(STATUSES)))
        dict.__init__(self, name=name, status=status, detail=detail, **extra)

    @classmethod
    def judged(cls, name, ok, detail, failing="fail"):
        """``pass`` when ``ok``, else ``failing`` (``"fail"`` or ``"warn"``)."""
        return cls(name, "pass" if ok else failing, detail)


check = Check  # the name the evaluator's modules call it by


def _expected(profile):
    one = "image" if profile["input"].get("kind", "image") == "image" else "sample"
    return ("class indices: integers in 0..%d, one per %s, shape [batch]"
            % (profile["classes"]["count"] - 1, one))


def _refused_array(outputs, method, expected):
    """The failed "output: type" check for an array no platform reads as labels, or None.

    Complex numbers (their imaginary part would be dropped silently), Python objects
    (a pickled array: never read), and subclasses of ndarray (a masked array's hidden
    values, a matrix's shape) are refused precisely.
    """
    if isinstance(outputs, np.ndarray) and type(outputs) is not np.ndarray:
        return check("output: type", "fail", "%s() returned a %s, a subclass of numpy.ndarray; "
                     "expected %s as a plain array." % (method, type(outputs).__name__, expected))
    dtype = np.asarray(outputs).dtype
    if dtype.kind == "c":
        return check("output: type", "fail", "%s() returned complex numbers (dtype %s); "
                     "expected %s. A class index is a real integer: drop the complex step."
                     % (method, dtype, expected))
    if dtype.kind == "O" and not all(isinstance(v, str) for v in np.asarray(outputs).flat):
        return check("output: type", "fail", "%s() returned Python objects (dtype object); "
                     "expected %s." % (method, expected))
    if dtype.kind == "V":
        return check("output: type", "fail", "%s() returned a structured array (dtype %s); "
                     "expected %s." % (method, dtype, expected))
    return None


def interpret_outputs(outputs, n_images, profile, method="predict"):
    """Turn the raw outputs of the main pass into labels, with the output checks.

    Args:
      outputs: the array ``predict`` returned, stacked over the batches.
      n_images: the number of images fed.
      profile: the challenge profile.

    Returns:
      ``(labels or None, checks)``: ``labels`` is an int64 ``[n]`` array when the
      outputs can be read as labels at all (even from a failed check, e.g. argmax of
      one-hot vectors, so that the report still shows what the score would be), and
      None when they cannot (strings, NaN, wrong length).
    """
    if profile["output"]["kind"] == "probabilities":
        return _interpret_probabilities(outputs, n_images, profile, method)
    n_classes = int(profile["classes"]["count"])
    expected = _expected(profile)
    out = np.asarray(outputs)
    refused = _refused_array(outputs, method, expected)
    if refused:
        return None, [refused]
    checks = []
    if out.shape[:1] != (n_images,):
        checks.append(check("output: shape", "fail",
                            "%s() returned %s values for %d images; expected %s."
                            % (method, out.shape[0] if out.ndim else 0, n_images, expected)))
        return None, checks
    if out.dtype.kind in "USO":
        sample = ", ".join(repr(str(v)) for v in out.reshape(-1)[:3])
        checks.append(check("output: type", "fail",
                            "%s() returned strings (%s, ...); expected %s. Return the index "
                            "of the class, not its name." % (method, sample, expected)))
        return None, checks
    if out.dtype.kind == "b":
        out = out.astype(np.int64)
    squeezed = out
    if out.ndim == 2 and out.shape[1] == 1:
        squeezed = out[:, 0]
    if out.ndim == 2 and out.shape[1] > 1:
        if out.dtype.kind == "f" and not np.all(np.isfinite(out)):
            checks.append(check("output: no NaN", "fail",
                                "%s() returned NaN or infinite scores; expected %s."
                                % (method, expected)))
            return None, checks
        row_sums = out.sum(axis=1) if out.size else np.zeros(0)
        one_hot = bool(out.size) and bool(np.all((out == 0) | (out == 1))) and \
            bool(np.all(row_sums == 1))
        what = "one-hot vectors" if one_hot else "a score per class"
        checks.append(check("output: shape", "fail",
                            "%s() returned shape [%d, %d] (%s); expected %s. Return "
                            "np.argmax(scores, axis=-1). The metrics below are computed from "
                            "that argmax, for information." % (method, out.shape[0], out.shape[1],
                                                               what, expected)))
        if out.shape[1] != n_classes:
            checks.append(check("output: classes", "fail",
                                "%s() scored %d classes; the profile has %d."
                                % (method, out.shape[1], n_classes)))
        return np.argmax(out, axis=1).astype(np.int64), checks
    if squeezed.ndim != 1:
        checks.append(check("output: shape", "fail",
                            "%s() returned shape %s; expected %s."
                            % (method, list(out.shape), expected)))
        return None, checks
    if squeezed.dtype.kind == "f":
        if not np.all(np.isfinite(squeezed)):
            checks.append(check("output: no NaN", "fail",
                                "%s() returned %d NaN or infinite values; expected %s."
                                % (method, int(np.sum(~np.isfinite(squeezed))), expected)))
            return None, checks
        integral = bool(np.all(np.mod(squeezed, 1) == 0))
        checks.append(check("output: type", "fail",
                            "%s() returned %s %s; expected %s. %s" % (
                                method, squeezed.dtype,
                                "values (whole numbers)" if integral else "values such as %g" %
                                squeezed[np.flatnonzero(np.mod(squeezed, 1))[0]],
                                expected,
                                "Cast them: .astype('int64')." if integral else
                                "Return the argmax of the scores, not the scores.")))
        if not integral:
            return None, checks
        labels = squeezed.astype(np.int64)
    else:
        labels = squeezed.astype(np.int64)
        checks.append(check("output: type", "pass", "%s() returned %s class indices, shape [%d]"
                            % (method, out.dtype, n_images)))
    if out.ndim == 2:
        checks.append(check("output: shape", "warn",
                            "%s() returned shape [%d, 1]; expected shape [%d]: flatten it "
                            "(the platform may not)." % (method, n_images, n_images)))
    else:
        checks.append(check("output: shape", "pass", "one label per image, shape [%d]" % n_images))
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = int(np.sum((labels < 0) | (labels >= n_classes)))
        checks.append(check("output: labels in range", "fail",
                            "%d of %d labels are outside 0..%d (min %d, max %d); the profile has "
                            "%d classes." % (bad, n_images, n_classes - 1, labels.min(),
                                             labels.max(), n_classes)))
    else:
        checks.append(check("output: labels in range", "pass",
                            "all labels within 0..%d" % (n_classes - 1)))
    return labels, checks


def _interpret_probabilities(outputs, n_images, profile, method):
    """For a profile whose predict returns ``[N, classes]`` probabilities; labels = argmax."""
    n_classes = int(profile["classes"]["count"])
    expected = "probabilities of shape [batch, %d], rows summing to 1" % n_classes
    out = np.asarray(outputs)
    refused = _refused_array(outputs, method, expected)
    if refused:
        return None, [refused]
    if out.dtype.kind in "USO" or out.ndim != 2 or out.shape != (n_images, n_classes):
        checks = [check("output: shape", "fail", "%s() returned %s%s for %d images; expected %s."
                        % (method, "strings " if out.dtype.kind in "USO" else "shape ",
                           list(out.shape), n_images, expected))]
        return None, checks
    out = out.astype(np.float64)
    if not np.all(np.isfinite(out)):
        return None, [check("output: no NaN", "fail", "%s() returned NaN or infinite values; "
                            "expected %s." % (method, expected))]
    checks = [check("output: shape", "pass", "%s() returned [%d, %d] scores" % (
        method, n_images, n_classes))]
    sums = out.sum(axis=1)
    if out.min() < 0 or out.max() > 1 or np.max(np.abs(sums - 1)) > 1e-3:
        checks.append(check("output: probabilities", "warn",
                            "the scores are not probabilities (min %.3g, max %.3g, row sums "
                            "%.3g..%.3g); apply a softmax if the platform averages or "
                            "thresholds them." % (out.min(), out.max(), sums.min(), sums.max())))
    else:
        checks.append(check("output: probabilities", "pass", "every row is a distribution"))
    return np.argmax(out, axis=1).astype(np.int64), checks


def output_container(types, profile, method="predict"):
    """The Python type ``predict`` returned vs the profile's output container."""
    want = profile["output"].get("container", "any")
    names = ", ".join(types) or "nothing"
    if want == "numpy" and any(not t.startswith("numpy.") for t in types):
        return check("output: container", "warn",
                     "%s() returned %s; the profile expects a numpy array. Return y.numpy() "
                     "or np.asarray(y)." % (method, names))
    return check("output: container", "pass", "%s() returned %s" % (method, names))


def compare_labels(name, reference, other, what, severity="warn", hint=""):
    """A check that two label arrays for the same images agree."""
    reference, other = _flat_labels(reference), _flat_labels(other)
    if other.shape != reference.shape:
        return check(name, severity, "%s: %d outputs for %d images" % (what, other.size,
                                                                       reference.size))
    try:
        differ = int(np.sum(other.astype(np.float64) != reference.astype(np.float64)))
    except (TypeError, ValueError):
        differ = reference.size
    if differ:
        return check(name, severity, "%s: %d of %d labels differ%s" % (
            what, differ, reference.size, (". " + hint) if hint else ""))
    return check(name, "pass", "%s: same labels on %d images" % (what, reference.size))


def _flat_labels(outputs):
    """Labels from raw outputs: the argmax of ``[N, C]`` scores, else the values flattened."""
    outputs = np.asarray(outputs)
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return np.argmax(outputs, axis=1)
    return outputs.reshape(-1)


def verdict(checks):
    """``True`` when no check failed."""
    return not any(c["status"] == "fail" for c in checks)


# --------------------------------------------------------------------------- any input

def not_an_image(name, profile):
    """The record of an image-only check on a profile whose input is not an image."""
    return check(name, "pass", "skipped: not an image profile (%s feeds %s samples of shape %s; "
                 "the usual image slips, 0-1 vs 0-255, BGR, caffe/tf/torch, do not apply)"
                 % (profile["name"], profile["input"]["dtype"], list(profile["input"]["shape"])))


def other_dtype(inp):
    """The dtype a plausible other harness would feed instead of the profile's.

    Images: uint8 <-> float32. Any other input: float32 <-> float64 (a harness that
    passes np.load's arrays as they are), integers -> float32.
    """
    if inp.get("kind", "image") == "image":
        return "uint8" if inp["dtype"] == "float32" else "float32"
    return "float64" if inp["dtype"] == "float32" else "float32"


def tensor_data_checks(packs, profile):
    """What a tensor pack holds against what the profile says the platform feeds."""
    inp = profile["input"]
    out = []
    for pack in packs:
        lo = hi = None
        for batch in pack.iter_batches(4096):
            b_lo, b_hi = float(np.min(batch)), float(np.max(batch))
            lo = b_lo if lo is None else min(lo, b_lo)
            hi = b_hi if hi is None else max(hi, b_hi)
        name = "data: %s" % (pack.path.rstrip("/").split("/")[-1])
        shown = "%d samples of shape %s, %s, values %.4g..%.4g" % (
            pack.n, list(pack.sample_shape), pack.dtype, lo, hi)
        if inp.get("range") and (lo < inp["range"][0] or hi > inp["range"][1]):
            out.append(check(name, "warn", "%s: outside the profile's range %s; the platform "
                             "feeds values within it, so these samples are not what it sends"
                             % (shown, list(inp["range"]))))
        elif pack.dtype.kind == "f" and inp["dtype"].startswith(("int", "uint")):
            out.append(check(name, "warn", "%s: floats, and the profile feeds %s: they are cast "
                             "(truncated) to it" % (shown, inp["dtype"])))
        else:
            out.append(check(name, "pass", shown))
    return out


_MISSING_PATTERNS = (
    # (regex, what it is); group 1 the kind, group 2 the name. Keras saves a custom object
    # registered by its class as "Custom>Name" (register_keras_serializable's default
    # package): the name is what follows the ">".
    (r"[Uu]nknown (loss function|metric function|metric|loss|activation function|optimizer|"
     r"regularizer|initializer|constraint|layer|function)[:\s]+'?(?:[\w.]+>)?([\w.]+)'?",
     "custom object"),
    (r"Could not locate (function|class) '?(?:[\w.]+>)?([\w.]+)'?", "custom object"),
    (r"Unable to restore custom object of (type|class) '?(?:[\w.]+>)?([\w.]+)'?",
     "custom object"),
    (r"No module named '()([\w.]+)'", "module"),
)

# A custom object of these kinds is needed only for training.
_TRAINING_ONLY = ("loss", "metric")


def missing_custom_code(text):
    """The precise reason for a load failure caused by custom code, or "".

    Names the missing custom object (a loss, metric, layer or Lambda function saved by
    name with ``model.save``; ``Custom>FocalLoss`` is ``FocalLoss``) or module, and the
    fixes; where only a loss or a metric is custom, ``compile=False`` (prediction needs
    neither). The same for any input.
    """
    import re

    for pattern, what in _MISSING_PATTERNS:
        found = re.search(pattern, text or "")
        if not found:
            continue
        kind, name = found.group(1).lower(), found.group(2).strip(".")
        if what == "module":
            return ("The model or model.py needs the module %r, which the platform does not "
                    "have (only the standard library, numpy and tensorflow): put %s.py next "
                    "to model.py in the zip, or export the model inference-only with 'leafsub "
                    "export' (the saved graph then needs no Python code of yours)."
                    % (name, name.split(".")[0]))
        config = (text or "")[found.end():found.end() + 2000]
        if kind in ("class", "function") and "Full object config" in config \
                and "'reduction'" in config.split("registered_name")[0]:
            kind = "loss"          # Keras 3 names the class only; its config is a loss's
        if kind.startswith(_TRAINING_ONLY):
            what = "metric" if kind.startswith("metric") else "loss"
            return ("The model was saved with the custom object %r (its %s: your training code "
                    "defined it) and cannot be loaded without it. Prediction needs no %s: load "
                    "it with compile=False (tf.keras.models.load_model(path, compile=False)) "
                    "and it loads without %s. Or export it inference-only with 'leafsub "
                    "export', or pass custom_objects={%r: ...}." % (name, what, what, name,
                                                                   name))
        return ("The model was saved with the custom object %r (a custom loss, metric, layer "
                "or Lambda function your training code defined) and cannot be loaded without "
                "it. Fix it in one of three ways: export it inference-only with 'leafsub "
                "export' (needs no custom objects); load it with compile=False and "
                "custom_objects={%r: ...} in model.py; or register the class with "
                "@keras.saving.register_keras_serializable() in a module shipped in the zip."
                % (name, name))
    return ""


OUTSIDE_READ = ("The platform will not have this file: put what the submission needs in the "
                "zip and open it relative to model.py (os.path.join(os.path.dirname(__file__), "
                "NAME)).")
PROC_READ = ("That is another process's /proc entry (the evaluator's): a submission sees only "
             "its own (/proc/self), here and on the platform.")
DATA_READ = ("%s is the labelled data the replay scores against: the submission never sees "
             "it, here or on the platform.")


def reads_of_data(paths, data_paths):
    """The refused reads that were of the labelled data (a file of it, or inside its folder)."""
    out = []
    for path in paths:
        real = os.path.realpath(path)
        if any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in data_paths):
            out.append(path)
    return out


def denied_reads(paths, data_paths):
    """The ``files`` check for reads the confinement refused and the submission got past.

    Reading the labelled data fails the replay (it is an attempt to see the answers);
    any other file outside the zip is a warning: the platform will not have it.
    """
    if not paths:
        return []
    labelled = reads_of_data(paths, data_paths)
    if labelled:
        return [check("files", "fail", "the submission tried to read %s and went on without "
                      "it. %s Submissions cannot read files outside the zip." % (
                          labelled[0], DATA_READ % labelled[0]))]
    more = " (and %d more)" % (len(paths) - 1) if len(paths) > 1 else ""
    return [check("files", "warn", "the submission tried to read %s%s, outside the zip, and "
                  "went on without it: submissions cannot read files outside the zip. %s"
                  % (paths[0], more, PROC_READ if paths[0].startswith("/proc/")
                     else OUTSIDE_READ))]


def unused_models(loaded, zip_mb=None, method="predict"):
    """The ``unused models`` warning: models model.py loads that ``predict`` never calls.

    ``loaded``: the child's report (``[{"how", "path", "mb", "used"}]``, hostile: only
    read). An ensemble that loads 8 members and averages 5 uploads (and loads) 3 for
    nothing. [] when every loaded model was called, or nothing was tracked.
    """
    rows = [r for r in (loaded or []) if isinstance(r, dict)][:100]
    if len(rows) < 1:
        return []
    unused = [r for r in rows if not r.get("used")]
    if not unused and len(rows) < 2:
        return []      # one model, called: nothing to say
    if not unused:
        return [check("unused models", "pass", "%s() calls every model model.py loads (%d)"
                      % (method, len(rows)))]

    def mb(r):
        try:
            return float(r.get("mb") or 0)
        except (TypeError, ValueError):
            return 0.0
    total = sum(mb(r) for r in unused)
    names = ", ".join("%s (%.1f MB)" % (str(r.get("path") or "?")[:80], mb(r))
                      for r in unused[:8])
    more = " and %d more" % (len(unused) - 8) if len(unused) > 8 else ""
    limit = " of the %g MB upload limit" % zip_mb if zip_mb else ""
    return [check("unused models", "warn", "model.py loads %d model%s, but %s() never calls %s (directly): "
                  "%s%s. They add %.1f MB to the zip%s and to the load time without changing a "
                  "prediction: remove them from the zip and from model.py (or use them)." % (
                      len(rows), "s" * (len(rows) != 1), method,
                      "it" if len(unused) == 1 else "%d of them" % len(unused), names, more,
                      total, limit))]
