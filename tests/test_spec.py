"""One source of truth: the spec part of the runtime (spec.py), free of TensorFlow.

The preprocessing constants, the modes, the presets and the resize the submission runs
exist in exactly one module of the source tree; the platform's input conversion is data
that the evaluator's harness applies one way and model.py undoes the other way; model.py
reads configuration and class first, the runtime below.
"""

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

from leafsub.builder import render
from leafsub.profiles import load_profile
from leafsub.submission_template import spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The installed source (bench/ scripts are not: bench_predict.py's bare baseline types the
# caffe mean on purpose, to time a predict() that owes nothing to leafsub).
SOURCE_DIRS = ("leafsub", "submission_template", "exporter", "builder", "evaluator", "organizer",
               "tools")
SPEC = os.path.join("submission_template", "spec.py")
RUNTIME = os.path.join("submission_template", "runtime.py")
# One resize (spec.Ops.resize) over one interpolation per framework: tf.image.resize in
# runtime.py, torch's interpolate in runtime_torch.py (the framework its submissions run).
RUNTIME_TORCH = os.path.join("submission_template", "runtime_torch.py")
# What checks a submission (and so must compute what it computes): no resize of its own.
CHECKERS = ("submission_template", "exporter", "builder", "evaluator", "organizer")
CONSTANTS = set(spec.CAFFE_MEAN_BGR) | set(spec.TORCH_MEAN_RGB) | set(spec.TORCH_STD_RGB)
# tools/demo.py shrinks its synthetic training set with tf.image.resize: training data for the
# demo's model, not a prediction of what a submission computes.
TF_RESIZE_ELSEWHERE = {os.path.join("tools", "demo.py")}


def _modules(root):
    for top in SOURCE_DIRS:
        for folder, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as f:
                        yield os.path.relpath(path, root), ast.parse(f.read(), path)


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def definitions(root):
    """Where each single-source concept appears: {concept: set of module paths}."""
    found = {"imagenet mean/std": set(), "modes table": set(), "presets table": set(),
             "resize function": set(), "tf.image.resize": set(), "torch interpolate": set(),
             "PIL resize in a check": set()}
    modes, presets = set(spec.MODES), set(spec.PRESETS)
    for path, tree in _modules(root):
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, float) and (
                    node.value in CONSTANTS):
                found["imagenet mean/std"].add(path)
            elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                strings = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if strings >= modes:  # the whole table (a subset in a try order is a policy)
                    found["modes table"].add(path)
            elif isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if len(keys & presets) >= 3:
                    found["presets table"].add(path)
            elif isinstance(node, ast.FunctionDef) and node.name == "resize":
                found["resize function"].add(path)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = _dotted(node.func)
                if name == "tf.image.resize" or name.endswith(".image.resize"):
                    found["tf.image.resize"].add(path)
                elif name.endswith("functional.interpolate") or name == "F.interpolate":
                    found["torch interpolate"].add(path)
                elif node.func.attr == "resize" and name not in ("runtime.resize", "cls.resize") and (
                        path.split(os.sep)[0] in CHECKERS):
                    found["PIL resize in a check"].add(path)
    return found


def test_preprocessing_constants_and_the_resize_exist_in_exactly_one_module():
    found = definitions(ROOT)
    assert found["imagenet mean/std"] == {SPEC}
    assert found["modes table"] == {SPEC}
    assert found["presets table"] == {SPEC}
    assert found["resize function"] == {SPEC}
    assert found["tf.image.resize"] - TF_RESIZE_ELSEWHERE == {RUNTIME}
    assert found["torch interpolate"] == {RUNTIME_TORCH}
    assert found["PIL resize in a check"] == set()


def test_the_scan_finds_a_second_copy(tmp_path):
    # The scan above must be able to fail: a module that re-types the constants, a modes
    # tuple, a preset table and its own resize is caught under every concept.
    (tmp_path / "builder").mkdir()
    (tmp_path / "builder" / "again.py").write_text(
        "MEAN = (103.939, 116.779, 123.68)\n"
        "MODES = ['none', 'rescale', 'tf', 'torch', 'caffe', 'affine']\n"
        "P = {'resnet50': 'caffe', 'vgg16': 'caffe', 'xception': 'tf'}\n"
        "def resize(x, size):\n    return Image.open(x).resize(size)\n"
        "def other(x):\n    return tf.image.resize(x, (2, 2))\n"
        "def third(x):\n    return torch.nn.functional.interpolate(x, (2, 2))\n", encoding="utf-8")
    found = definitions(str(tmp_path))
    where = {os.path.join("builder", "again.py")}
    assert all(found[concept] == where for concept in found), found


def test_the_spec_module_never_imports_tensorflow():
    code = ("import sys; from leafsub.submission_template import spec; "
            "from leafsub.builder import build, render; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_runtime_reexports_the_spec():
    runtime = pytest.importorskip("leafsub.submission_template.runtime")
    for name in spec.__all__:
        assert getattr(runtime, name) is getattr(spec, name), name


@pytest.mark.parametrize("framework", ["runtime", "runtime_torch"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("value_range", [(0, 255), (0, 1), (-1, 1)])
def test_platform_conversion_round_trips(order, value_range, layout, framework):
    # The harness feeds to_platform's batches (numpy); model.py undoes them with its
    # framework's Ops.from_platform (the same core over TensorFlow or torch).
    runtime = pytest.importorskip("leafsub.submission_template." + framework)
    ops = runtime.Member.ops
    conv = spec.platform_input({"kind": "image", "range": list(value_range),
                                "channel_order": order, "shape": [4, 4, 3], "layout": layout})
    images = np.random.default_rng(1).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    kept = images.copy()
    fed = spec.to_platform(images, conv)
    assert np.array_equal(images, kept)  # never mutates
    assert float(fed.min()) >= value_range[0] - 1e-5 and float(fed.max()) <= value_range[1] + 1e-5
    if order == "BGR":
        assert np.allclose(fed[..., 0], spec.to_platform(images[..., 2:3], dict(
            conv, channel_order="RGB"))[..., 0])
    if layout == "NCHW":
        fed = np.ascontiguousarray(fed.transpose(0, 3, 1, 2))
    assert np.allclose(np.asarray(ops.from_platform(fed, conv)), images, atol=1e-3)
    assert spec.is_identity(conv) == (value_range == (0, 255) and order == "RGB"
                                      and layout == "NHWC")


def test_a_non_image_input_is_not_converted():
    conv = spec.platform_input({"kind": "tensor", "shape": [36, 6]})
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    assert conv is None and spec.is_identity(conv)
    assert spec.to_platform(x, conv) is x


def test_affine_length_is_checked_against_the_features():
    ok = spec.validate_spec({"mode": "affine", "scale": [1.0] * 6, "offset": [0.0]}, features=6)
    assert ok["scale"] == [1.0] * 6 and ok["offset"] == [0.0]
    with pytest.raises(ValueError, match="'scale' as a list of 1 or 6 numbers"):
        spec.validate_spec({"mode": "affine", "scale": [1.0] * 3, "offset": [0.0]}, features=6)


MEMBERS = [{"dir": "SubmissionModel", "name": "resnet", "input_size": [96, 96],
            "output": "probabilities",
            "preprocess": {"mode": "caffe", "resize_method": "bilinear", "scale": None,
                           "offset": None}}]


def undefined_names(text):
    """Global names model.py reads but never binds (nor does Python)."""
    import builtins

    tree = ast.parse(text)
    bound, read = set(dir(builtins)) | {"__file__"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return read - bound


def runtime_pieces(text):
    """PART 2's top-level definitions (a class: each of its statements), as source texts."""
    tree = ast.parse(text)
    lines = text.splitlines()
    start = text[:text.index("# PART 2: leafsub's runtime")].count("\n")
    pieces = []
    for node in tree.body:
        if node.lineno <= start or isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for part in (node.body if isinstance(node, ast.ClassDef) else [node]):
            pieces.append("\n".join(lines[part.lineno - 1:part.end_lineno]))
    return pieces


@pytest.mark.parametrize("members, tta", [(MEMBERS, ["identity"]), (MEMBERS * 2, ["hflip", "crop_tl"])])
@pytest.mark.parametrize("name", ["an2dl-2022", "an2dl-2024", "torch-generic"])
def test_model_py_holds_the_runtime_it_runs_verbatim_and_nothing_it_lacks(name, members, tta):
    profile = load_profile(name)
    if name == "torch-generic":
        profile["classes"]["count"] = 8
    text = render.render_model_py(profile, members, tta, "mean", None, 8)
    framework = render.framework_text(profile)
    sources = render.spec_source() + render.ops_source(framework["ops_file"])
    pieces = runtime_pieces(text)
    assert pieces and all(piece in sources for piece in pieces)
    # What it reads and does not define is exactly what this configuration never calls.
    never = set(render.left_out(members, tta))
    assert undefined_names(text) <= never
    assert ("def combine(" in text) == (len(members) > 1)
    assert ("def view_crop_tl(" in text) == ("crop_tl" in tta)
    assert "def view_vflip(" not in text and "def mode_tf(" not in text
    assert "PRESETS" not in text and "def validate_spec" not in text


@pytest.mark.parametrize("name", ["an2dl-2022", "an2dl-2024"])
def test_model_py_reads_configuration_then_class_then_the_runtime(name, tmp_path):
    profile = load_profile(name)
    profile["input"]["range"], profile["input"]["channel_order"] = [0, 1], "BGR"
    text = render.render_model_py(profile, MEMBERS, ["identity"], "mean", None, 8)
    cls = "class %s:" % profile["interface"]["class_name"]
    part_2 = text.index("# PART 2: leafsub's runtime, verbatim")
    assert text.index("CONFIG = {") < text.index(cls) < part_2
    assert text.index("class Ensemble:") > part_2
    # Everything model.py runs at import, above the runtime, only uses names defined above
    # it: run that part alone (no numpy, no TensorFlow needed yet).
    (tmp_path / "part1.py").write_text(text[:part_2], encoding="utf-8")
    proc = subprocess.run([sys.executable, "-I", "-c",
                           "import runpy, sys; ns = runpy.run_path(sys.argv[1]); "
                           "print(sorted(k for k in ('np', 'tf', 'Member') if k in ns))",
                           str(tmp_path / "part1.py")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"  # the runtime's names really are not defined yet
