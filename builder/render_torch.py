"""Render a torch submission's ``model.py``: ``render.py``'s assembly with the torch parts.

``runtime_torch.py`` verbatim instead of ``runtime.py``, the torch header and input
conversion of ``submission_template/adapters_torch.py``, and the same CONFIG and
adapter classes as a TensorFlow submission. Plain text; nothing here imports torch.
"""

import string
import textwrap

from .. import __version__
from . import render as R


def runtime_torch_source():
    """The torch runtime as ``model.py`` holds it: spec.py, then runtime_torch.py without
    its spec import (``render.runtime_source``)."""
    return R.runtime_source("runtime_torch.py")


def _x_doc(profile):
    inp = profile["input"]
    h, w, c = inp["shape"]
    container = "torch.Tensor" if inp["container"] == "tensor" else "numpy.ndarray"
    dims = "[batch, %d, %d, %d]" % ((c, h, w) if inp.get("layout") == "NCHW" else (h, w, c))
    return "%s, %s, %s (%s), %s %s-%s" % (
        container, inp["dtype"], dims, inp.get("layout", "NHWC"), inp.get("channel_order", "RGB"),
        R.number_text(inp["range"][0]), R.number_text(inp["range"][1]))


def _conversion_body(profile):
    inp = profile["input"]
    body = ""
    if inp.get("layout") == "NCHW":
        body += "    x = x.permute(0, 2, 3, 1)  # the platform feeds channels first\n"
    lo, hi = (float(v) for v in inp["range"])
    if (lo, hi) != (0.0, 255.0):
        body += "    x = (x - %r) * (255.0 / %r)  # the platform's values are in [%s, %s]\n" % (
            lo, hi - lo, R.number_text(lo), R.number_text(hi))
    if inp.get("channel_order", "RGB") == "BGR":
        body += "    x = x.flip(-1)  # the platform feeds BGR; the runtime expects RGB\n"
    return body


def _predict_body(profile, convert):
    out = profile["output"]
    x = "_as_rgb_0_255(X)" if convert else "X"
    if out["kind"] == "labels":
        lines = ["        labels = self.ensemble.predict(%s)  # int64 numpy array [batch]" % x]
        result = "labels"
    else:
        lines = ["        scores = self.ensemble.predict_proba(%s).astype(np.float32)" % x]
        result = "scores"
    if out.get("container", "any") == "tensor":
        lines.append("        return torch.from_numpy(%s)  # this platform expects a torch.Tensor"
                     % result)
    else:
        lines.append("        return %s" % result)
    return "\n".join(lines) + "\n"


def render_model_py_torch(profile, members, tta, combine, weights, chunk_size,
                          version=__version__):
    """The text of a torch submission's ``model.py`` (arguments of ``render_model_py``)."""
    from ..submission_template import adapters as A
    from ..submission_template import adapters_torch as AT

    iface = profile["interface"]
    for field in ("module", "class_name", "method"):
        R.check_identifier(iface[field], "interface." + field)
    config = {
        "profile": profile["name"],
        "members": [{"dir": m["dir"], "name": m["name"], "input_size": list(m["input_size"]),
                     "output": m["output"], "preprocess": dict(m["preprocess"])} for m in members],
        "tta": list(tta),
        "combine": combine,
        "weights": None if weights is None else [float(x) for x in weights],
        "chunk_size": int(chunk_size),
    }
    user_combiner = ":" in combine and len(members) > 1
    convert = _conversion_body(profile)
    dirs = textwrap.fill(", ".join(m["dir"] for m in members), 79, initial_indent=" " * 8,
                         subsequent_indent=" " * 8)
    usage = R.usage_doc(profile).replace(R.input_doc(profile), _x_doc(profile))
    header = string.Template(AT.HEADER).substitute(
        title=textwrap.fill(R.docsafe(profile.get("title", profile["name"])), 79),
        profile=R.docsafe(profile["name"]), version=version, usage=usage,
        method=iface["method"], steps=R.steps_doc(profile, members, tta, combine, weights))
    combine_note = " (here: your module:function)" if user_combiner else ""
    # The same order as a TensorFlow model.py: configuration and class first, runtime below.
    parts = [header, string.Template(A.PART_1).substitute(config=R.py_literal(config),
                                                          combine_note=combine_note),
             A.PART_1_CLASS]
    if user_combiner:
        parts.append(A.COMBINER_LOADER)
    parts.append(string.Template(A.LOAD_ENSEMBLE).substitute(
        method_expr="_combine_method(folder)" if user_combiner else 'CONFIG["combine"]'))
    if convert:
        parts.append(string.Template(AT.INPUT_CONVERSION).substitute(body=convert))
    template = A.ADAPTER_PATH if iface["constructor"] == "path" else A.ADAPTER_NONE
    parts.append(string.Template(template).substitute(
        class_name=iface["class_name"], method=iface["method"], dirs=dirs,
        x_doc=_x_doc(profile), returns_doc=R.output_doc(profile).replace("tf.Tensor",
                                                                      "torch.Tensor"),
        predict_body=_predict_body(profile, bool(convert))))
    parts += [AT.PART_2, runtime_torch_source().rstrip("\n") + "\n"]
    text = "".join(parts)
    compile(text, "model.py", "exec")  # a rendering bug must never reach a zip
    return text
