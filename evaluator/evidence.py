"""What the model files say about the preprocessing the model was trained with.

Runs in the child harness (copied next to it as ``leafsub_evidence.py``), after
the submission was loaded, and imports only the standard library (plus, when
present, TensorFlow's protobuf classes and h5py, to read values): it reads the
model *files*, never imports or runs ``model.py``.

What it reads, under the submission folder:

* every ``saved_model.pb`` (and a Keras 2 ``keras_metadata.pb`` beside it): the
  names in its object graph and function library (layer, variable and model
  names such as ``resnet50/conv2_block1_1_conv`` or ``mobilenetv2_1.00_96``) and
  the constants of its ``rescaling`` layers;
* every ``.keras`` file (a zip whose ``config.json`` describes the layers) and
  ``.h5`` file (its ``model_config`` attribute, when h5py is installed).

It recognises keras.applications bases by their model name or, when the base was
renamed, by layer names only they have, and maps each to its keras preset; it
lists in-graph ``Rescaling`` and ``Normalization`` layers (a Rescaling layer that
belongs to a base, as in EfficientNet, is marked ``inside``).

    read(folder) -> {"read": [relpath, ...], "bases": [{"name", "key", "preset",
    "file"}], "layers": [{"layer", "scale", "offset", "inside", "file"}],
    "unreadable": [relpath: reason, ...]}
"""

import json
import os
import re
import zipfile

MAX_FILES = 64              # model files looked at
MAX_BYTES = 256 * 2 ** 20   # bytes of one .pb read (a graph far larger is not a CNN's)
MAX_DEPTH = 6

# keras.applications model names (as keras names the Model) -> (shown, preset key).
_NAME = r"(?<![a-z0-9])%s(?![a-z0-9])"
BASE_NAMES = [
    (_NAME % r"resnet(50|101|152)v2", "ResNet{0}V2", "resnet50v2"),
    (_NAME % r"resnet(50|101|152)", "ResNet{0}", "resnet50"),
    (_NAME % r"mobilenetv2_[0-9.]+_[0-9]+", "MobileNetV2", "mobilenet_v2"),
    (_NAME % r"mobilenet_[0-9.]+_[0-9]+", "MobileNet", "mobilenet"),
    (_NAME % r"mobilenetv3(small|large)", "MobileNetV3{0}", "mobilenet_v3"),
    (_NAME % r"efficientnetb([0-7])", "EfficientNetB{0}", "efficientnet"),
    (_NAME % r"efficientnetv2-(b[0-3]|s|m|l)", "EfficientNetV2-{0}", "efficientnet_v2"),
    (_NAME % r"convnext_(tiny|small|base|large|xlarge)", "ConvNeXt-{0}", "convnext"),
    (_NAME % r"densenet(121|169|201)", "DenseNet{0}", "densenet"),
    (_NAME % r"vgg(16|19)", "VGG{0}", "vgg16"),
    (_NAME % r"inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2"),
    (_NAME % r"inception_v3", "InceptionV3", "inception_v3"),
    (_NAME % r"xception", "Xception", "xception"),
    (_NAME % r"nasnet(mobile|large)?", "NASNet", "nasnet"),
    (_NAME % r"regnet[xy][0-9]{3}", "RegNet", "regnet"),
]
# Every BASE_NAMES pattern holds one of these: lines without any are not searched.
KEYWORDS = ("resnet", "mobilenet", "efficientnet", "convnext", "densenet", "vgg", "inception",
            "xception", "nasnet", "regnet")
# Layer names only one family has (for a base renamed by the user): all must be present.
BASE_LAYERS = [
    (("conv2_block1_preact_bn", "post_bn"), "ResNetV2", "resnet50v2"),
    (("conv5_block3_out", "conv2_block1_1_conv"), "ResNet", "resnet50"),
    (("pool2_conv", "conv2_block1_1_conv"), "DenseNet", "densenet"),
    (("block_16_project", "expanded_conv_project"), "MobileNetV2", "mobilenet_v2"),
    (("conv_pw_13", "conv_dw_13"), "MobileNet", "mobilenet"),
    (("block1a_project_conv", "stem_conv", "top_conv"), "EfficientNet", "efficientnet"),
]
# Layers whose preprocessing is part of the base (EfficientNet, ConvNeXt, MobileNetV3,
# RegNet carry their own Rescaling/Normalization): "none" presets.
LAYER = r"(?<![a-z0-9_])(%s)((?:_[0-9]+)*)(?=/)"
LAYERS = (("Rescaling", LAYER % "rescaling"), ("Normalization", LAYER % "normalization"))


def _presets():
    """spec.preset (the one table of keras presets), from the copy beside the harness.

    The TF-free spec module, not the runtime: a torch child must not import TensorFlow.
    """
    try:
        import leafsub_spec
        return leafsub_spec.preset
    except ImportError:  # run from a source tree: the package's own module
        from leafsub.submission_template.spec import preset
        return preset


def _model_files(folder):
    """(relpath, kind) of the model files under ``folder``, a bounded walk, no links."""
    found = []
    top = os.path.abspath(folder)
    for where, dirs, files in os.walk(top):
        depth = os.path.relpath(where, top).count(os.sep)
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(where, d))
                         and depth < MAX_DEPTH and not d.startswith("."))
        for name in sorted(files):
            full = os.path.join(where, name)
            if os.path.islink(full):
                continue
            rel = os.path.relpath(full, top).replace(os.sep, "/")
            if name == "saved_model.pb":
                found.append((rel, "savedmodel"))
            elif name.endswith(".keras"):
                found.append((rel, "keras"))
            elif name.endswith((".h5", ".hdf5")):
                found.append((rel, "h5"))
            elif name.endswith((".pt", ".pth")):
                found.append((rel, "torch"))
            if len(found) >= MAX_FILES:
                return found
    return found


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read(MAX_BYTES)


def bases_in(text, where, preset):
    """The keras.applications bases named in ``text`` (lower-case names)."""
    out, keys = [], set()
    # The distinct name parts (between '/' and other separators) that hold a keyword.
    named = "\n".join(t for t in set(re.split(r"[^a-z0-9_.\-]+", text))
                      if any(k in t for k in KEYWORDS))
    for pattern, shown, key in BASE_NAMES:
        for groups in sorted(set(m.groups() for m in re.finditer(pattern, named))):
            label = shown.format(*(g.upper() if g and g.isalpha() and len(g) <= 2 else g
                                   for g in groups)) if groups else shown
            if (label, key) in keys:
                continue
            keys.add((label, key))
            out.append({"name": label, "key": key, "preset": _preset(preset, key),
                        "file": where})
    if not out:
        for names, shown, key in BASE_LAYERS:
            if all(n in text and re.search(_NAME % re.escape(n), text) for n in names):
                out.append({"name": shown, "key": key, "preset": _preset(preset, key),
                            "file": where, "by": "layer names"})
                break
    # resnet50 inside resnet50v2's text cannot match (the look-ahead), but a model
    # holding both a base and a same-family renamed copy would list one entry per name.
    return out


def _preset(preset, key):
    try:
        return preset(key)
    except ValueError:
        return None


def layers_in(text, where, consts=None):
    """Rescaling / Normalization layers named in ``text``; values from ``consts``."""
    out = []
    for kind, pattern in LAYERS:
        names = sorted({m.group(1) + (m.group(2) or "") for m in re.finditer(pattern, text)})
        for name in names:
            layer = {"layer": kind, "name": name, "file": where}
            if kind == "Rescaling" and consts and name in consts:
                layer.update(consts[name])
            out.append(layer)
    return out


def _strings(data):
    """The distinct printable ASCII runs of a binary file, lower-cased, one per line.

    A graph repeats each layer's name in hundreds of node names: distinct runs are a
    fraction of the text to search.
    """
    runs = set(re.findall(rb"[\x20-\x7e]{4,}", data.lower()))
    return "\n".join(sorted(r.decode("ascii") for r in runs))


def _rescaling_constants(data):
    """{layer name: {"scale", "offset"}} from a SavedModel's function graphs."""
    try:
        from tensorflow.core.protobuf import saved_model_pb2
        from tensorflow.python.framework import tensor_util
    except ImportError:
        return {}
    model = saved_model_pb2.SavedModel()
    model.ParseFromString(data)
    found = {}
    pattern = re.compile(r"(?:^|/)(rescaling(?:_[0-9]+)*)/(cast|cast_1)/x$")
    for graph in model.meta_graphs:
        for function in graph.graph_def.library.function:
            for node in function.node_def:
                m = pattern.search(node.name.lower()) if node.op == "Const" else None
                if not m:
                    continue
                value = tensor_util.MakeNdarray(node.attr["value"].tensor)
                if value.size != 1:
                    continue
                key = "scale" if m.group(2) == "cast" else "offset"
                found.setdefault(m.group(1), {})[key] = float(value.reshape(-1)[0])
    return found


def _keras_config_layers(config, where, preset, inside=False):
    """Bases and layers from a Keras model config (a .keras config.json, an .h5 attribute)."""
    bases, layers = [], []

    def walk(node, inside):
        if isinstance(node, dict):
            cls = node.get("class_name")
            cfg = node.get("config") if isinstance(node.get("config"), dict) else {}
            if cls in ("Functional", "Model", "Sequential") and cfg.get("name"):
                found = bases_in(str(cfg["name"]).lower(), where, preset)
                bases.extend(found)
                inside = inside or bool(found)
            if cls == "Rescaling":
                layers.append({"layer": "Rescaling", "name": cfg.get("name"), "file": where,
                               "scale": _number(cfg.get("scale")),
                               "offset": _number(cfg.get("offset")), "inside": inside})
            elif cls == "Normalization":
                layers.append({"layer": "Normalization", "name": cfg.get("name"),
                               "file": where, "inside": inside})
            for value in node.values():
                walk(value, inside)
        elif isinstance(node, list):
            for value in node:
                walk(value, inside)

    walk(config, inside)
    return bases, layers


def _number(value):
    return float(value) if isinstance(value, (int, float)) else None


def read(folder):
    """What the model files under ``folder`` say (see the module docstring)."""
    preset = _presets()
    out = {"read": [], "bases": [], "layers": [], "unreadable": [], "torch": []}
    for rel, kind in _model_files(folder):
        full = os.path.join(folder, rel)
        if kind == "torch":   # TorchScript holds no keras preset to read: named, not parsed
            out["torch"].append(rel)
            continue
        try:
            if kind == "savedmodel":
                data = _read_bytes(full)
                text = _strings(data)
                meta = os.path.join(os.path.dirname(full), "keras_metadata.pb")
                if os.path.isfile(meta):
                    text += "\n" + _strings(_read_bytes(meta))
                try:  # parsing a large graph costs: only when there is a layer to read
                    consts = _rescaling_constants(data) if "rescaling" in text else {}
                except Exception as err:  # a truncated or foreign proto: names still count
                    consts = {}
                    out["unreadable"].append("%s: graph constants (%s)" % (rel, err))
                bases = bases_in(text, rel, preset)
                layers = layers_in(text, rel, consts)
            elif kind == "keras":
                with zipfile.ZipFile(full) as z:
                    config = json.loads(z.read("config.json").decode("utf-8"))
                bases, layers = _keras_config_layers(config, rel, preset)
            else:
                try:
                    import h5py
                except ImportError:
                    out["unreadable"].append("%s: HDF5, h5py not installed here" % rel)
                    continue
                with h5py.File(full, "r") as f:
                    raw = f.attrs.get("model_config")
                if raw is None:
                    out["unreadable"].append("%s: no model_config (weights only)" % rel)
                    continue
                raw = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                bases, layers = _keras_config_layers(json.loads(raw), rel, preset)
        except Exception as err:  # noqa: BLE001 - a damaged file is evidence of nothing
            out["unreadable"].append("%s: %s: %s" % (rel, type(err).__name__, err))
            continue
        if any(b["preset"] == "none" for b in bases):
            for layer in layers:  # the base's own preprocessing layers
                layer["inside"] = True
        out["read"].append(rel)
        out["bases"].extend(bases)
        out["layers"].extend(layers)
    return out
