"""Render a submission's ``model.py`` from ``submission_template/``.

``model.py`` = a header docstring for the student + ``CONFIG = {...}`` (this
build's settings) + the profile's adapter class + the runtime (``spec.py`` and
``runtime.py``) verbatim. Nothing here imports TensorFlow; the output is plain
text and depends only on its arguments (same inputs, same bytes).
"""

import json
import keyword
import string
import textwrap
from importlib import resources

from .. import __version__

COMBINE_TEXT = {
    "mean": "mean of the models' probabilities",
    "weighted": "weighted mean of the models' probabilities",
    "geometric": "geometric mean of the models' probabilities (renormalised)",
    "vote": "majority vote of the models' top classes (ties go to the higher mean probability)",
}
MODE_TEXT = {
    "caffe": "caffe (RGB->BGR, minus the ImageNet mean)",
    "tf": "tf (scaled to [-1, 1])",
    "torch": "torch (scaled to [0, 1], ImageNet mean/std)",
    "rescale": "rescale (x / 255)",
    "none": "none (the model normalises inside)",
    "affine": "affine (x * scale + offset per channel)",
}


SPEC_IMPORT_START = "# --- leafsub: spec import ---"
SPEC_IMPORT_END = "# --- end of the spec import ---\n"


def _template_source(name):
    return resources.files("leafsub.submission_template").joinpath(name).read_text(
        encoding="utf-8")


def spec_source():
    """``submission_template/spec.py``'s source, exactly as shipped."""
    return _template_source("spec.py")


def runtime_source(ops_file="runtime.py"):
    """The runtime as ``model.py`` holds it: spec.py, then the framework's ops module
    (``runtime.py``, or ``runtime_torch.py`` for a torch profile) without its import of
    spec.py (the names are defined just above), both otherwise verbatim."""
    ops = _template_source(ops_file)
    start = ops.index(SPEC_IMPORT_START)
    end = ops.index(SPEC_IMPORT_END, start) + len(SPEC_IMPORT_END)
    return (spec_source().rstrip("\n") + "\n\n\n" + ops[:start].rstrip("\n") + "\n\n\n"
            + ops[end:].lstrip("\n"))


def _adapters():
    from ..submission_template import adapters

    return adapters


def py_literal(value, indent=0, width=88):
    """A readable Python literal for JSON-like data (dicts keep their order)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ",\n".join("%s    %s: %s" % (pad, json.dumps(str(k)), py_literal(v, indent + 4, width))
                           for k, v in value.items())
        return "{\n%s,\n%s}" % (items, pad)
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            text = "[%s]" % ", ".join(py_literal(v) for v in value)
            if len(text) + indent + 20 <= width:
                return text
        if not value:
            return "[]"
        items = ",\n".join("%s    %s" % (pad, py_literal(v, indent + 4, width)) for v in value)
        return "[\n%s,\n%s]" % (items, pad)
    if isinstance(value, str):
        return json.dumps(value)  # a valid Python string literal, escapes included
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    raise TypeError("cannot render %r into CONFIG" % (value,))


def docsafe(text):
    """Text that cannot end or break the surrounding docstring."""
    return str(text).replace("\\", "/").replace('"""', "'''").replace("\n", " ")


def check_identifier(value, field):
    """Raise ValueError unless the profile's ``field`` value can name a Python module or class."""
    if not isinstance(value, str) or not value.isidentifier() or keyword.iskeyword(value):
        raise ValueError("the profile's %s %r is not a Python identifier" % (field, value))


def input_doc(profile):
    """model.py's description of X, the batch the platform feeds predict()."""
    inp = profile["input"]
    container = "tf.Tensor" if inp["container"] == "tensor" else "numpy.ndarray"
    if inp.get("kind", "image") != "image":
        return "%s, %s, [batch, %s], %s" % (
            container, inp["dtype"], ", ".join(map(str, inp["shape"])),
            "values in %s-%s" % (number_text(inp["range"][0]), number_text(inp["range"][1]))
            if inp.get("range") else "any finite values")
    h, w, c = inp["shape"]
    return "%s, %s, [batch, %d, %d, %d], %s %s-%s" % (
        container, inp["dtype"], h, w, c, inp.get("channel_order", "RGB"),
        number_text(inp["range"][0]), number_text(inp["range"][1]))


def usage_doc(profile):
    """model.py's usage lines: import the class, construct it, call its method on X."""
    iface, out = profile["interface"], profile["output"]
    x_doc = input_doc(profile)
    what = "labels" if out["kind"] == "labels" else "scores"
    if iface["constructor"] == "path":
        lines = ["    from %s import %s" % (iface["module"], iface["class_name"]),
                 "    m = %s(path_to_the_unzipped_submission)" % iface["class_name"]]
    else:
        lines = ["    from %s import %s        # run in the unzipped submission's folder"
                 % (iface["module"], iface["class_name"]),
                 "    m = %s()" % iface["class_name"]]
    lines.append("    %s = m.%s(X)   # X: %s" % (what, iface["method"], x_doc))
    return "\n".join(lines)


def number_text(x):
    """``255`` for an integer value, else ``%g``: how model.py's docs write a number."""
    return ("%d" % x) if float(x).is_integer() else ("%g" % x)


def output_doc(profile):
    """model.py's description of what predict() returns."""
    out = profile["output"]
    container = {"tensor": "a tf.Tensor", "numpy": "a numpy array", "any": "a numpy array"}[
        out.get("container", "any")]
    if out["kind"] == "labels":
        return "Class indices [batch] (int64), as %s." % container
    return "Scores [batch, classes] (float32), as %s." % container


def steps_doc(profile, members, tta, combine, weights):
    """model.py's numbered steps: what predict() does to X, member by member."""
    if profile["input"].get("kind", "image") != "image":
        return _sample_steps(profile, members, combine, weights)
    h, w = profile["input"]["shape"][:2]
    views = ", ".join(tta)
    lines = []
    first = ("Resize the batch to the model's input size (when it differs)" if len(members) == 1
             else "For each model: resize the batch to its input size (when it differs)")
    if list(tta) == ["identity"]:
        text = "1. %s, preprocess it, run it through the model and turn its outputs into " \
               "probabilities:" % first
    else:
        text = "1. %s, make the TTA views (%s), preprocess them, run all views through the " \
               "model in one call, and average its probabilities over the views:" % (first, views)
    lines.append(textwrap.fill(text, 79, initial_indent="  ", subsequent_indent="     "))
    for m in members:
        mh, mw = m["input_size"]
        size = "%dx%d" % (mh, mw)
        if (mh, mw) != (h, w):
            size += " (resized from %dx%d, %s)" % (h, w, m["preprocess"]["resize_method"])
        text = "%s (%s): %s, preprocessing %s%s" % (
            m["dir"], docsafe(m["name"]), size, MODE_TEXT[m["preprocess"]["mode"]],
            ", logits -> softmax" if m["output"] == "logits" else "")
        lines.append(textwrap.fill(text, 79, initial_indent=" " * 7,
                                   subsequent_indent=" " * 11))
    return "\n".join(lines + _final_steps(profile, members, combine, weights))


def _sample_steps(profile, members, combine, weights):
    """What predict() does with a batch that is not an image: no resize, no TTA."""
    lines = [textwrap.fill("1. %s, run it through the model and turn its outputs into "
                           "probabilities:" % ("Preprocess the batch" if len(members) == 1 else
                                               "For each model: preprocess the batch"),
                           79, initial_indent="  ", subsequent_indent="     ")]
    for m in members:
        spec = m["preprocess"]
        how = ("none (the model normalises inside)" if spec["mode"] == "none" else
               "affine per feature, x * scale + offset (the scaler fitted in training)")
        text = "%s (%s): samples %s, preprocessing %s%s" % (
            m["dir"], docsafe(m["name"]), list(m["input_shape"]), how,
            ", logits -> softmax" if m["output"] == "logits" else "")
        lines.append(textwrap.fill(text, 79, initial_indent=" " * 7, subsequent_indent=" " * 11))
    return "\n".join(lines + _final_steps(profile, members, combine, weights))


def _final_steps(profile, members, combine, weights):
    lines = []
    step = 2
    if len(members) > 1:
        if ":" in combine:
            module, function = combine.split(":", 1)
            text = "your function %s() from %s.py (next to this file)" % (function, module)
        else:
            text = COMBINE_TEXT[combine]
        if weights is not None:
            text += ", weights %s" % ", ".join(number_text(x) for x in weights)
        lines.append(textwrap.fill("%d. Combine the models: %s." % (step, docsafe(text)), 79,
                                   initial_indent="  ", subsequent_indent="     "))
        step += 1
    if profile["output"]["kind"] == "labels":
        lines.append("  %d. Return the index of the highest score for each %s." % (
            step, "image" if profile["input"].get("kind", "image") == "image" else "sample"))
    else:
        lines.append("  %d. Return the scores." % step)
    return lines


def _predict_body(profile, convert):
    out = profile["output"]
    x = "_as_rgb_0_255(X)" if convert else "X"
    lines = []
    if out["kind"] == "labels":
        lines.append("        labels = self.ensemble.predict(%s)  # int64 numpy array [batch]" % x)
        result = "labels"
    else:
        lines.append("        scores = self.ensemble.predict_proba(%s).astype(np.float32)" % x)
        result = "scores"
    if out.get("container", "any") == "tensor":
        lines.append("        return tf.convert_to_tensor(%s)  # this platform expects a tf.Tensor"
                     % result)
    else:
        lines.append("        return %s" % result)
    return "\n".join(lines) + "\n"


def _conversion(profile):
    """``spec.platform_input`` of the profile, or None when the runtime takes the platform's
    values as they are (RGB 0-255, or not an image)."""
    from ..submission_template import spec

    conv = spec.platform_input(profile["input"])
    return None if spec.is_identity(conv) else conv


def _conversion_doc(conv):
    """What ``from_platform`` does with ``conv``, in the numbers of this platform."""
    lo, hi = conv["range"]
    steps = []
    if (lo, hi) != (0.0, 255.0):
        steps.append("x = (x - %r) * (255.0 / %r)  # the platform's values are in [%s, %s]" % (
            lo, hi - lo, number_text(lo), number_text(hi)))
    if conv["channel_order"] == "BGR":
        steps.append("x = x[..., ::-1]  # the platform feeds BGR; the runtime expects RGB")
    return "".join("        %s\n" % line for line in steps)


def render_model_py(profile, members, tta, combine, weights, chunk_size, version=__version__):
    """The text of ``model.py``.

    Args:
      profile: a loaded profile dict.
      members: dicts ``{"dir", "name", "input_size": [h, w], "output", "preprocess": spec}``
        in ensemble order.
      tta: the list of view names.
      combine: a runtime combiner name or ``"module:function"``.
      weights: a list of floats or None.
      chunk_size: images per model call.

    Raises:
      ValueError when the profile's module/class/method names are not identifiers.
    """
    if profile.get("framework") == "torch":
        from .render_torch import render_model_py_torch
        return render_model_py_torch(profile, members, tta, combine, weights, chunk_size, version)
    a = _adapters()
    iface = profile["interface"]
    for field in ("module", "class_name", "method"):
        check_identifier(iface[field], "interface." + field)
    config = {
        "profile": profile["name"],
        "members": [dict({"dir": m["dir"], "name": m["name"],
                          "input_size": None if m["input_size"] is None else list(m["input_size"]),
                          "output": m["output"], "preprocess": dict(m["preprocess"])},
                         **({"input_shape": list(m["input_shape"])} if m.get("input_shape")
                            else {})) for m in members],
        "tta": list(tta),
        "combine": combine,
        "weights": None if weights is None else [float(x) for x in weights],
        "chunk_size": int(chunk_size),
    }
    user_combiner = ":" in combine and len(members) > 1
    conv = _conversion(profile)
    dirs = textwrap.fill(", ".join(m["dir"] for m in members), 79, initial_indent=" " * 8,
                         subsequent_indent=" " * 8)
    header = string.Template(a.HEADER).substitute(
        title=textwrap.fill(docsafe(profile.get("title", profile["name"])), 79), profile=docsafe(profile["name"]),
        version=version, usage=usage_doc(profile), method=iface["method"],
        samples="images" if profile["input"].get("kind", "image") == "image" else "samples",
        steps=steps_doc(profile, members, tta, combine, weights))
    combine_note = (" (here: your module:function)" if user_combiner else "")
    # Configuration and class first (what a student looks for), the runtime below: the
    # module-level code above the runtime only defines names, so it runs before them.
    parts = [header, string.Template(a.PART_1).substitute(config=py_literal(config),
                                                          combine_note=combine_note),
             a.PART_1_CLASS]
    if user_combiner:
        parts.append(a.COMBINER_LOADER)
    parts.append(string.Template(a.LOAD_ENSEMBLE).substitute(
        method_expr="_combine_method(folder)" if user_combiner else 'CONFIG["combine"]'))
    if conv:
        parts.append(string.Template(a.INPUT_CONVERSION).substitute(
            conversion=py_literal(conv), steps=_conversion_doc(conv)))
    template = a.ADAPTER_PATH if iface["constructor"] == "path" else a.ADAPTER_NONE
    parts.append(string.Template(template).substitute(
        class_name=iface["class_name"], method=iface["method"], dirs=dirs,
        x_doc=input_doc(profile), returns_doc=output_doc(profile), predict_body=_predict_body(profile, bool(conv))))
    parts += [a.PART_2, runtime_source().rstrip("\n") + "\n"]
    text = "".join(parts)
    compile(text, "model.py", "exec")  # a rendering bug must never reach a zip
    return text
