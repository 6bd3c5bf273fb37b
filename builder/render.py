"""Render a submission's ``model.py`` from ``submission_template/``, for any framework.

``model.py`` = a header docstring for the student + ``CONFIG = {...}`` (this
build's settings) + the profile's adapter class + the runtime: the definitions of
``spec.py`` and the framework's runtime file (``adapters.FRAMEWORKS``) that this
build reaches, verbatim, in their files' order. Nothing here imports a framework;
the output is plain text and depends only on its arguments (same inputs, same bytes).
"""

import ast
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


def _template_source(name):
    return resources.files("leafsub.submission_template").joinpath(name).read_text(
        encoding="utf-8")


def spec_source():
    """``submission_template/spec.py``'s source, exactly as shipped."""
    return _template_source("spec.py")


def ops_source(ops_file):
    """A framework's runtime file (``runtime.py``, ``runtime_torch.py``), exactly as shipped."""
    return _template_source(ops_file)


def _adapters():
    from ..submission_template import adapters

    return adapters


def framework_text(profile):
    """The profile's framework's entry of ``adapters.FRAMEWORKS`` (TensorFlow by default)."""
    return _adapters().FRAMEWORKS[profile.get("framework", "tensorflow")]


# --------------------------------------------------------------------------- the runtime

class _Unit:
    """One top-level statement of a runtime file: what it defines, what it uses, its text."""

    def __init__(self, node, lines, is_method=False):
        self.node = node
        self.is_method = is_method
        self.defines = _defined_names(node)
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        while first > 1 and lines[first - 2].lstrip().startswith("#"):
            first -= 1  # the comment just above belongs to the definition
        self.first, self.last = first, node.end_lineno
        self.lines = lines
        self.members = []  # a class's methods and class-level statements (_Unit)
        if isinstance(node, ast.ClassDef):
            self.members = [_Unit(n, lines, True) for n in node.body]
            self.uses = _used_names(node.bases)
        else:
            self.uses = _used_names([node])

    def text(self, names, attrs):
        """The source, a class with only the methods in ``attrs`` (and its dunders)."""
        if not self.members:
            return "\n".join(self.lines[self.first - 1:self.last])
        body_start = self.members[0].first
        out = []
        for m in self.members:
            if m.kept(attrs):
                out.append("\n".join(self.lines[m.first - 1:m.last]))
        return "\n".join(self.lines[self.first - 1:body_start - 1]) + "\n" + "\n\n".join(out)

    def kept(self, attrs):
        """For a class member: a method only when reached (by name), anything else always."""
        if not isinstance(self.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return True
        return self.node.name.startswith("__") or self.node.name in attrs


def _defined_names(node):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, ast.Assign):
        return {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _used_names(nodes):
    """``(globals, attributes)`` a piece of code refers to."""
    names, attrs = set(), set()
    for node in nodes:
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                names.add(n.id)
            elif isinstance(n, ast.Attribute):
                attrs.add(n.attr)
    return names, attrs


def _units(source):
    """The definitions and imports of a runtime file (its docstring and spec import left out)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    return [_Unit(node, lines) for node in tree.body
            if not isinstance(node, ast.Try)  # the spec import: model.py holds spec.py's text
            and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]


def runtime_source(ops_file, roots, attrs, never=()):
    """The runtime as ``model.py`` holds it: the imports, then the definitions of spec.py
    and ``ops_file`` that ``roots`` (global names) and ``attrs`` (attribute names) reach,
    each verbatim with the comment just above it, in the files' order.

    ``never``: names (functions or methods) the build's configuration never calls, left out
    with whatever only they reach (``left_out`` says which and why).

    Returns:
      ``(imports, definitions)``, two texts.
    """
    files = [_units(spec_source()), _units(ops_source(ops_file))]
    names, attrs = set(roots) - set(never), set(attrs) - set(never)
    kept = set()

    def reach(unit):
        more, more_attrs = unit.uses
        names.update(more - set(never))
        attrs.update(more_attrs - set(never))

    while True:  # grow the set until nothing new is reached
        before = (len(names), len(attrs), len(kept))
        for units in files:
            for u in units:
                if u.defines & names and not isinstance(u.node, (ast.Import, ast.ImportFrom)):
                    kept.add(id(u))
                    reach(u)
                    for m in u.members:
                        if m.kept(attrs):
                            reach(m)
        if (len(names), len(attrs), len(kept)) == before:
            break
    imports, parts = [], []
    for units in files:
        for u in units:
            if isinstance(u.node, (ast.Import, ast.ImportFrom)):
                line = u.text(names, attrs)
                if u.defines & names and line not in imports:
                    imports.append(line)
            elif id(u) in kept:
                parts.append(u)
    def group(line):  # the standard library, numpy, the framework
        return (line.startswith("from"), ("numpy" in line) + 2 * ("numpy" not in line and (
            "tensorflow" in line or "torch" in line)), line)

    imports.sort(key=group)
    out = []
    for prev, u in zip([None] + parts, parts):
        if prev is not None:
            simple = not isinstance(u.node, (ast.FunctionDef, ast.ClassDef)) and not isinstance(
                prev.node, (ast.FunctionDef, ast.ClassDef))
            out.append("\n" if simple and u.first == prev.last + 1 else
                       "\n\n" if simple else "\n\n\n")
        out.append(u.text(names, attrs))
    return "\n".join(imports) + "\n", "".join(out) + "\n"


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
    container = framework_text(profile)["tensor"] if inp["container"] == "tensor" else (
        "numpy.ndarray")
    if inp.get("kind", "image") != "image":
        return "%s, %s, [batch, %s], %s" % (
            container, inp["dtype"], ", ".join(map(str, inp["shape"])),
            "values in %s-%s" % (number_text(inp["range"][0]), number_text(inp["range"][1]))
            if inp.get("range") else "any finite values")
    h, w, c = inp["shape"]
    layout = inp.get("layout", "NHWC")
    dims = "[batch, %d, %d, %d]" % ((c, h, w) if layout == "NCHW" else (h, w, c))
    if layout != "NHWC" or profile.get("framework") == "torch":
        dims += " (%s)" % layout
    return "%s, %s, %s, %s %s-%s" % (
        container, inp["dtype"], dims, inp.get("channel_order", "RGB"),
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
    container = {"tensor": "a " + framework_text(profile)["tensor"], "numpy": "a numpy array",
                 "any": "a numpy array"}[out.get("container", "any")]
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
        text = "1. %s, make the TTA views (%s), preprocess them, run them through the " \
               "model (in slices of at least MIN_CALL_BATCH images), and average its " \
               "probabilities over the views:" % (first, views)
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
        fw = framework_text(profile)
        lines.append("        return %s  # this platform expects a %s"
                     % (fw["to_tensor"] % result, fw["tensor"]))
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
    """What ``Ops.from_platform`` does with ``conv``, in the numbers of this platform."""
    lo, hi = conv["range"]
    steps = []
    if conv.get("layout") == "NCHW":
        steps.append("x = x.transpose(0, 2, 3, 1)  # the platform feeds channels first")
    if (lo, hi) != (0.0, 255.0):
        steps.append("x = (x - %r) * (255.0 / %r)  # the platform's values are in [%s, %s]" % (
            lo, hi - lo, number_text(lo), number_text(hi)))
    if conv["channel_order"] == "BGR":
        steps.append("x = x[..., ::-1]  # the platform feeds BGR; the runtime expects RGB")
    return "".join("        %s\n" % line for line in steps)


def left_out(members, tta):
    """``{name: why}``: the runtime's functions this configuration never calls."""
    out = {}
    if len(members) == 1:
        out["combine"] = "one model"
    if list(tta) == ["identity"]:
        out["predict_views"] = "no TTA"
    if not any(m.get("input_shape") for m in members):
        out["predict_samples"] = "an image input"
    if not any(m["preprocess"].get(k) is not None for m in members for k in ("resize", "crop")):
        out["resize_and_crop"] = "no resize or crop before the model's size"
    return out


def _left_out_note(never):
    """PART 2's comment on what is not there (``left_out``)."""
    if not never:
        return ""
    by_reason = {}
    for name, why in never.items():
        by_reason.setdefault(why, []).append(name)
    text = "Left out, as this build never calls them: %s." % "; ".join(
        "%s (%s)" % (", ".join(names), why) for why, names in by_reason.items())
    return textwrap.fill(text, 79, initial_indent="# ", subsequent_indent="# ") + "\n"


def config_dict(profile, members, tta, combine, weights, chunk_size):
    """model.py's CONFIG: the build's settings, as plain data."""
    return {
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


def render_model_py(profile, members, tta, combine, weights, chunk_size, version=__version__):
    """The text of ``model.py``, for the profile's framework.

    Args:
      profile: a loaded profile dict.
      members: dicts ``{"dir", "name", "input_size": [h, w], "output", "preprocess": spec}``
        (and ``"input_shape"`` for a model whose input is not an image) in ensemble order.
      tta: the list of view names.
      combine: a runtime combiner name or ``"module:function"``.
      weights: a list of floats or None.
      chunk_size: images per chunk.

    Raises:
      ValueError when the profile's module/class/method names are not identifiers.
    """
    a = _adapters()
    fw = framework_text(profile)
    iface = profile["interface"]
    for field in ("module", "class_name", "method"):
        check_identifier(iface[field], "interface." + field)
    config = config_dict(profile, members, tta, combine, weights, chunk_size)
    user_combiner = ":" in combine and len(members) > 1
    conv = _conversion(profile)
    dirs = textwrap.fill(", ".join(m["dir"] for m in members), 79, initial_indent=" " * 8,
                         subsequent_indent=" " * 8)
    header = string.Template(a.HEADER).substitute(
        title=textwrap.fill(docsafe(profile.get("title", profile["name"])), 79),
        profile=docsafe(profile["name"]), framework_title=fw["title"], version=version,
        usage=usage_doc(profile), method=iface["method"],
        samples="images" if profile["input"].get("kind", "image") == "image" else "samples",
        steps=steps_doc(profile, members, tta, combine, weights), runtime=fw["runtime"],
        ops_file=fw["ops_file"], imports=fw["imports"])
    combine_note = (" (here: your module:function)" if user_combiner else "")
    # Configuration and class first (what a student looks for), the runtime below: the
    # module-level code above the runtime only defines names, so it runs before them.
    parts = [string.Template(a.PART_1).substitute(config=py_literal(config),
                                                  combine_note=combine_note), a.PART_1_CLASS]
    if user_combiner:
        parts.append(a.COMBINER_LOADER)
    parts.append(string.Template(a.LOAD_ENSEMBLE).substitute(
        method_expr="_combine_method(folder)" if user_combiner else 'CONFIG["combine"]'))
    if conv:
        parts.append(string.Template(a.INPUT_CONVERSION).substitute(
            conversion=py_literal(conv), steps=_conversion_doc(conv), ops=fw["ops"]))
    constructor = a.CONSTRUCTORS[iface["constructor"]]
    parts.append(string.Template(a.ADAPTER).substitute(
        class_name=iface["class_name"], method=iface["method"], arg=constructor["arg"],
        where=string.Template(constructor["where"]).substitute(dirs=dirs),
        init=constructor["init"], x_doc=input_doc(profile), returns_doc=output_doc(profile),
        predict_body=_predict_body(profile, bool(conv))))
    # The runtime: what PART 1 calls, and the TTA views and preprocessing modes of CONFIG
    # (``Ops.tta_view`` and ``Ops.normalize`` find ``view_<name>`` and ``mode_<name>`` by
    # name), without what this configuration never calls.
    roots, attrs = _used_names([ast.parse("".join(parts))])
    never = left_out(members, tta)
    attrs |= {"mode_" + m["preprocess"]["mode"] for m in members}
    if "predict_views" not in never:
        attrs |= {"view_" + v for v in tta}
    imports, runtime = runtime_source(fw["ops_file"], roots, attrs, never)
    text = "".join([header] + parts + [string.Template(a.PART_2).substitute(
        ops_file=fw["ops_file"], imports=imports, left_out=_left_out_note(never)), "\n\n",
        runtime])
    compile(text, "model.py", "exec")  # a rendering bug must never reach a zip
    return text
