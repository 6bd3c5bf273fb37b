"""leafsub build, end to end: run dirs -> zip -> what the platform does with it.

Three tiny models are exported with three different preprocessing modes (one of
them at 64x64 with logits, so the build adds a resize and a softmax), built into
ensembles, and the zip is then used by a standalone harness that is not leafsub:
unzip, put the folder on sys.path, import model.py, predict.
"""

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import leafsub
from leafsub.errors import CheckFailed, UsageError

from conftest import run_cli, tiny_keras_model

CLASSES_2022 = ["Species%d" % i for i in range(1, 9)]
MODELS = {  # name: (input size, preprocessing, activation, Rescaling layer)
    "a-caffe": (96, "caffe", "softmax", None),
    "b-tf-64-logits": (64, "tf", None, None),
    "c-none": (96, "none", "softmax", 1 / 255.0),
}

# What the platform does, and nothing of leafsub: stdlib + numpy + tensorflow.
HARNESS = textwrap.dedent(r'''
    import os, sys, zipfile
    import numpy as np
    import tensorflow as tf

    zip_path, folder, x_path, profile, out_path = sys.argv[1:6]
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(folder)
    X = np.load(x_path)
    sys.path.insert(0, folder)
    predictions = []
    if profile == "an2dl-2022":
        from model import model
        m = model(folder)
        for i in range(0, len(X), 32):
            y = m.predict(tf.constant(X[i:i + 32], dtype=tf.float32))
            predictions.append(np.asarray(y))
    else:  # an2dl-2024: Model() from the submission's working directory, numpy uint8 in
        os.chdir(folder)
        from model import Model
        m = Model()
        for i in range(0, len(X), 32):
            y = m.predict(X[i:i + 32].astype(np.uint8))
            assert isinstance(y, np.ndarray), type(y)
            predictions.append(y)
        # The models load relative to model.py, whatever the working directory.
        os.chdir(os.path.dirname(folder))
        again = Model().predict(X[:8].astype(np.uint8))
        assert np.array_equal(again, predictions[0][:8])
    # ... and the submission's own goldens file agrees.
    with np.load(os.path.join(folder, "leafsub-probe.npz")) as probe:
        images, labels = probe["images"], probe["labels"]
    x = tf.constant(images) if profile == "an2dl-2022" else images.astype(np.uint8)
    assert np.array_equal(np.asarray(m.predict(x)), labels)
    assert not any(name.split(".")[0] == "leafsub" for name in sys.modules), "imported leafsub"
    np.save(out_path, np.concatenate(predictions))
''')


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three exported run dirs (module scope: exported once, a few seconds)."""
    root = tmp_path_factory.mktemp("runs")
    probe = np.random.default_rng(7).integers(0, 256, size=(8, 96, 96, 3)).astype(np.uint8)
    out = {}
    for seed, (name, (size, mode, activation, rescaling)) in enumerate(sorted(MODELS.items())):
        model = tiny_keras_model((size, size, 3), n_classes=8, seed=seed + 1,
                                 activation=activation, rescaling=rescaling)
        leafsub.export(model, root / name, preprocess=mode, class_names=CLASSES_2022, probe=probe)
        out[name] = str(root / name)
    return out


def colour_batch(n, seed):
    """Images with a random colour each plus noise: random tiny CNNs tell these apart."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, size=(n, 1, 1, 3))
    return np.clip(base + rng.normal(0, 20, size=(n, 96, 96, 3)), 0, 255)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def tree_entries(saved_model, prefix):
    names = {prefix + "/"}
    for folder, dirs, files in os.walk(saved_model):
        rel = os.path.relpath(folder, saved_model).replace(os.sep, "/")
        base = prefix + "/" + ("" if rel == "." else rel + "/")
        names.add(base)
        names |= {base + f for f in files}
    return names


def leafsub_predict(run_dirs, X, views, method, weights):
    """leafsub's own computation: the runtime module on the run dirs, in-process."""
    from leafsub.card import read_card
    from leafsub.submission_template import runtime

    members = []
    for run in run_dirs:
        card = read_card(run)
        members.append(runtime.Member(os.path.join(run, "saved_model"), card["preprocess"],
                                      (card["input"]["height"], card["input"]["width"]),
                                      card["output"]))
    ensemble = runtime.Ensemble(members, views=views, method=method, weights=weights,
                                chunk_size=32)
    return ensemble.predict(X)


def run_harness(tmp_path, zip_path, X, profile):
    np.save(tmp_path / "X.npy", X)
    folder = tmp_path / ("platform-" + profile)
    out = tmp_path / ("predictions-%s.npy" % profile)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", HARNESS, str(zip_path), str(folder),
                           str(tmp_path / "X.npy"), profile, str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out), folder


def test_an2dl_2022_ensemble_end_to_end(tmp_path, runs):
    order = ["a-caffe", "b-tf-64-logits", "c-none"]
    models = ",".join(runs[n] for n in order)
    args = ["build", "--models", models, "--weights", "0.5,0.3,0.2", "--tta",
            "identity,hflip,vflip", "--profile", "an2dl-2022"]
    first = run_cli(*args, "-o", tmp_path / "one.zip", "--json", tmp_path / "one.json",
                    cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, "-o", tmp_path / "two.zip", cwd=tmp_path)
    assert second.returncode == 0, second.stderr

    # Two builds from the same inputs: byte-identical.
    digest = sha256(tmp_path / "one.zip")
    assert digest == sha256(tmp_path / "two.zip")
    result = json.loads((tmp_path / "one.json").read_text())
    assert result["passed"] and result["sha256"] == digest
    assert result["size_bytes"] == os.path.getsize(tmp_path / "one.zip")
    assert digest in first.stdout and "self-check" in first.stdout
    print(first.stdout)

    # The layout is exactly what the profile says.
    with zipfile.ZipFile(tmp_path / "one.zip") as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("leafsub-manifest.json"))
        model_py = z.read("model.py").decode()
        assert z.testzip() is None
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    expected = {"model.py", "metadata", "leafsub-manifest.json", "leafsub-probe.npz"}
    for i, name in enumerate(order, start=1):
        expected |= tree_entries(os.path.join(runs[name], "saved_model"), "SubmissionModel%d" % i)
    assert names == expected

    # The manifest records what was built, with the files' hashes.
    assert manifest["profile"] == "an2dl-2022" and manifest["combine"] == "weighted"
    assert manifest["weights"] == [0.5, 0.3, 0.2]
    assert manifest["tta"] == ["identity", "hflip", "vflip"]
    assert set(manifest["versions"]) >= {"leafsub", "tensorflow", "keras"}
    assert [m["dir"] for m in manifest["members"]] == ["SubmissionModel1", "SubmissionModel2",
                                                       "SubmissionModel3"]
    for i, m in enumerate(manifest["members"]):
        card = json.loads(open(os.path.join(runs[order[i]], "leafsub.json")).read())
        assert m["card"] == card
        assert {k.split("/", 1)[1]: v for k, v in m["files"].items()} == {
            k.split("/", 1)[1]: v for k, v in card["files"].items()}
    assert manifest["probe"]["file"] == "leafsub-probe.npz" and manifest["probe"]["count"] == 8

    # model.py: the runtime + CONFIG + the class, importing only stdlib/numpy/tensorflow.
    imports = set()
    for node in ast.walk(ast.parse(model_py)):
        if isinstance(node, ast.Import):
            imports |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imports.add(node.module.split(".")[0])
    assert imports <= {"numpy", "tensorflow", "os", "importlib", "sys"}
    assert "tf.saved_model.load" in model_py and "class model:" in model_py

    # The platform's side: a harness that is not leafsub, float32 tf.Tensor batches.
    X = colour_batch(40, seed=3).astype(np.float32)
    predictions, _ = run_harness(tmp_path, tmp_path / "one.zip", X, "an2dl-2022")
    ours = leafsub_predict([runs[n] for n in order], X, ["identity", "hflip", "vflip"],
                           "weighted", [0.5, 0.3, 0.2])
    assert predictions.shape == (40,)
    assert np.array_equal(predictions, ours)
    assert len(set(ours.tolist())) > 1  # not a constant predictor


def test_an2dl_2024_model_from_working_dir_with_a_user_combiner(tmp_path, runs):
    (tmp_path / "mycombine.py").write_text(textwrap.dedent('''
        import numpy as np


        def most_confident(probabilities, weights):
            """Each image goes to the model that is most sure of it."""
            stack = np.stack(probabilities)  # [models, N, C]
            best = stack.max(axis=2).argmax(axis=0)
            return stack[best, np.arange(stack.shape[1])]
    '''))
    order = ["c-none", "a-caffe"]
    proc = run_cli("build", "-m", runs[order[0]], "-m", runs[order[1]], "--combine",
                   "mycombine:most_confident", "--tta", "identity,rot180", "--profile",
                   "an2dl-2024", "-o", tmp_path / "sub.zip", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(tmp_path / "sub.zip") as z:
        names = set(z.namelist())
    expected = {"model.py", "mycombine.py", "leafsub-manifest.json", "leafsub-probe.npz"}
    for i, name in enumerate(order, start=1):
        expected |= tree_entries(os.path.join(runs[name], "saved_model"), "SubmissionModel%d" % i)
    assert names == expected  # no metadata file in 2024

    X = np.round(colour_batch(40, seed=4)).astype(np.uint8)
    predictions, _ = run_harness(tmp_path, tmp_path / "sub.zip", X, "an2dl-2024")
    sys.path.insert(0, str(tmp_path))
    try:
        import mycombine
    finally:
        sys.path.remove(str(tmp_path))
    ours = leafsub_predict([runs[n] for n in order], X.astype(np.float32), ["identity", "rot180"],
                           mycombine.most_confident, None)
    assert predictions.dtype == np.int64
    assert np.array_equal(predictions, ours)
    assert len(set(ours.tolist())) > 1


def test_wrong_preprocessing_fails_the_build_naming_the_member(tmp_path, runs):
    out = tmp_path / "sub.zip"
    models = ",".join([runs["c-none"], runs["a-caffe"]])
    proc = run_cli("build", "--models", models, "--preprocess", "card,tf", "-o", out, "--json",
                   tmp_path / "r.json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr
    print(message)
    assert "member 2" in message and "a-caffe" in message
    assert "'caffe'" in message  # the preprocessing that does reproduce the goldens
    assert "max abs difference" in message and "tolerance" in message
    assert "member 1" not in message
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["r.json"]  # no zip, no temp files left
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["passed"] is False and result["exit_code"] == 1
    failed = [c for c in result["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failed][:1] == ["goldens member 2 (%s -> SubmissionModel2/)"
                                               % runs["a-caffe"]]


def test_a_card_declaring_the_wrong_preprocessing_fails_too(tmp_path, runs):
    run = tmp_path / "edited"
    shutil.copytree(runs["a-caffe"], run)
    card = json.loads((run / "leafsub.json").read_text())
    card["preprocess"]["mode"] = "torch"  # the goldens were recorded with caffe
    (run / "leafsub.json").write_text(json.dumps(card))
    with pytest.raises(CheckFailed) as info:
        leafsub.build([str(run)], output=tmp_path / "sub.zip", progress=False)
    assert "member 1" in str(info.value) and "edited" in str(info.value)
    assert "With 'caffe' the goldens are reproduced" in str(info.value)
    assert not (tmp_path / "sub.zip").exists()


def test_size_limit_stops_the_build_with_remedies(tmp_path, runs):
    # A run dir with 3 MB more of (incompressible) weights, recorded in its card.
    big = tmp_path / "big"
    shutil.copytree(runs["a-caffe"], big)
    weights = np.random.default_rng(0).bytes(3_000_000)
    (big / "saved_model" / "variables" / "more.bin").write_bytes(weights)
    card = json.loads((big / "leafsub.json").read_text())
    card["files"]["saved_model/variables/more.bin"] = hashlib.sha256(weights).hexdigest()
    (big / "leafsub.json").write_text(json.dumps(card))
    profile = json.loads(open(os.path.join(os.path.dirname(leafsub.__file__), "profiles",
                                           "an2dl-2022.json")).read())
    profile["name"] = "tiny-upload"
    profile["limits"]["zip_mb"] = 2
    (tmp_path / "tiny.json").write_text(json.dumps(profile))
    out = tmp_path / "sub.zip"
    proc = run_cli("build", "-m", runs["c-none"], "-m", big, "--profile", tmp_path / "tiny.json",
                   "-o", out, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr
    print(message)
    assert "above profile tiny-upload's limit of 2.0 MB" in message
    assert "Largest contributors: SubmissionModel2 (%s) 3.0 MB" % big in message
    assert "drop a member (the ensemble has 2; SubmissionModel2 (%s) is the largest)" % big \
        in message
    assert "float16" in message
    assert "--compression deflate" not in message  # random weights: would not help
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["big", "tiny.json"]


def test_custom_profile_with_bgr_0_1_inputs_and_probability_tensors(tmp_path, runs):
    """The self-check feeds what this platform feeds; a missing conversion would fail it."""
    profile = json.loads(open(os.path.join(os.path.dirname(leafsub.__file__), "profiles",
                                           "generic.json")).read())
    profile.update(name="bgr-unit-range")
    profile["input"].update(shape=[80, 80, 3], container="tensor", range=[0, 1],
                            channel_order="BGR", batch_size=3)
    profile["classes"]["count"] = 8
    profile["output"] = {"kind": "probabilities", "container": "tensor"}
    (tmp_path / "p.json").write_text(json.dumps(profile))
    result = leafsub.build([runs["a-caffe"], runs["b-tf-64-logits"]], combine="geometric",
                           weights=[2, 1], profile=str(tmp_path / "p.json"),
                           output=tmp_path / "sub.zip", progress=False)
    assert result.passed and os.path.exists(result.path)
    statuses = {c["name"]: c["status"] for c in result.checks}
    assert set(statuses.values()) == {"pass"} and "predict() output" in statuses
    with zipfile.ZipFile(result.path) as z:
        model_py = z.read("model.py").decode()
        assert z.read("leafsub-manifest.json").decode().count('"profile": "bgr-unit-range"') == 1
    assert "x = x[..., ::-1]" in model_py and "tf.convert_to_tensor(scores)" in model_py


def test_single_model_layout_sizes_and_stored_entries(tmp_path, runs):
    result = leafsub.build(runs["b-tf-64-logits"], profile="an2dl-2022", compression="store",
                           output=tmp_path / "sub.zip", json_path=tmp_path / "r.json",
                           progress=False)
    with zipfile.ZipFile(result.path) as z:
        infos = z.infolist()
        model_py = z.read("model.py").decode()
    names = {i.filename for i in infos}
    assert names == {"model.py", "metadata", "leafsub-manifest.json", "leafsub-probe.npz"} | \
        tree_entries(os.path.join(runs["b-tf-64-logits"], "saved_model"), "SubmissionModel")
    # A student reads a one-model model.py in five minutes: only what this build runs (a
    # resize, a softmax, no TTA, no combiner), and that exact file reproduced the goldens.
    assert len(model_py.splitlines()) <= 300
    assert "def combine(" not in model_py and "def tta_batch(" not in model_py
    assert "def mode_tf(" in model_py and "def mode_caffe(" not in model_py
    goldens = [c for c in result.checks if c["name"].startswith("goldens member 1 ")]
    assert len(goldens) == 1 and goldens[0]["status"] == "pass"
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
    (member,) = result.members
    assert member["dir"] == "SubmissionModel" and member["input_size"] == [64, 64]
    stored = sum(i.compress_size for i in infos if i.filename.startswith("SubmissionModel/"))
    assert member["zip_bytes"] == member["bytes"] == stored
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["passed"] and saved["size_bytes"] == os.path.getsize(result.path)
    assert saved["compression"]["policy"] == "store" and saved["members"][0]["bytes"] == stored


def test_existing_output_needs_force(tmp_path, runs):
    out = tmp_path / "sub.zip"
    out.write_bytes(b"keep me")
    proc = run_cli("build", "-m", runs["a-caffe"], "-o", out, cwd=tmp_path)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--force" in proc.stderr
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize("kwargs, message", [
    ({"weights": "0.5,0.3,0.2"}, "got 3 weights for 2 models"),
    ({"weights": [1, 1], "combine": "mean"}, "--combine mean ignores weights"),
    ({"combine": "weighted"}, "--combine weighted needs --weights"),
    ({"combine": "median"}, "'median' is not one of mean, weighted, geometric, vote"),
    ({"combine": "nosuchmodule:f"}, "cannot import f from nosuchmodule.py"),
    ({"tta": "identity,mirror"}, "'mirror' is not a view"),
    ({"preprocess": "caffe"}, "got 1 entry for 2 models"),
    ({"profile": "an2dl-2023"}, "has 8 classes but profile an2dl-2023 expects 2"),
    ({"profile": "an2dl-2099"}, "Unknown profile 'an2dl-2099'"),
    ({"compression": "zstd"}, "--compression 'zstd'"),
])
def test_bad_arguments_are_usage_errors(tmp_path, runs, kwargs, message):
    with pytest.raises(UsageError) as info:
        leafsub.build([runs["a-caffe"], runs["c-none"]], output=tmp_path / "sub.zip",
                      progress=False, **kwargs)
    assert message in str(info.value)
    assert os.listdir(tmp_path) == []


def test_members_must_agree_on_classes_and_files_must_match_their_cards(tmp_path, runs):
    other = tmp_path / "other-classes"
    shutil.copytree(runs["c-none"], other)
    card = json.loads((other / "leafsub.json").read_text())
    card["class_names"] = card["class_names"][::-1]
    (other / "leafsub.json").write_text(json.dumps(card))
    with pytest.raises(UsageError) as info:
        leafsub.build([runs["a-caffe"], str(other)], output=tmp_path / "sub.zip", progress=False)
    assert "other-classes" in str(info.value) and "class 0 is 'Species8'" in str(info.value)

    with pytest.raises(UsageError) as info:
        leafsub.build([runs["a-caffe"], str(tmp_path / "missing")], output=tmp_path / "s.zip",
                      progress=False)
    assert "missing" in str(info.value) and "leafsub export" in str(info.value)

    changed = tmp_path / "changed"
    shutil.copytree(runs["a-caffe"], changed)
    with open(changed / "saved_model" / "variables" / "variables.index", "ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckFailed) as info:
        leafsub.build([str(changed)], output=tmp_path / "sub.zip", progress=False)
    assert "changed since export" in str(info.value) and "variables.index" in str(info.value)
    assert not (tmp_path / "sub.zip").exists()


def test_build_help():
    proc = run_cli("build", "--help")
    assert proc.returncode == 0
    for option in ("--models", "--weights", "--combine", "--tta", "--profile", "--output",
                   "--json", "--force", "--compression", "--preprocess", "--classes"):
        assert option in proc.stdout
    # The profiles come from the registry (leafsub/profiles/), not from a hand list.
    from leafsub.profiles import builtin_names
    flat = " ".join(proc.stdout.split()).replace("- ", "-")   # click wraps at hyphens
    assert "torch-generic" in builtin_names()
    for name in builtin_names():
        assert name in flat, name
    assert "Keras" not in flat or "PyTorch" in flat
    listed = run_cli("profiles")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == len(builtin_names())
    assert "torch-generic (PyTorch)" in listed.stdout and "an2dl-2022 (TensorFlow)" in listed.stdout
    top = run_cli("--help")
    assert "Keras or PyTorch" in top.stdout and "profiles" in top.stdout


def test_the_build_process_never_imports_tensorflow(tmp_path, runs):
    # Models run only in the self-check child: the build's own memory stays flat.
    code = ("import sys, leafsub; leafsub.build([%r, %r], tta=['identity', 'hflip'], "
            "output=%r, progress=False); print('tensorflow' in sys.modules)"
            % (runs["a-caffe"], runs["b-tf-64-logits"], str(tmp_path / "s.zip")))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_a_generic_profile_takes_its_class_count_from_the_models_or_classes():
    from leafsub.profiles import load_profile, with_classes

    generic = load_profile("torch-generic")
    assert generic["classes"]["from_models"] and load_profile("generic")["classes"]["from_models"]
    assert with_classes(generic, 8, "--classes")["classes"]["count"] == 8
    assert generic["classes"]["count"] == 2   # the loaded profile itself is left alone
    with pytest.raises(UsageError, match="at least 2 classes"):
        with_classes(generic, 1, "--classes")
    challenge = load_profile("an2dl-2022")
    assert with_classes(challenge, 8, "--classes") is challenge
    with pytest.raises(UsageError, match="an2dl-2022 is a challenge's and has 8 classes"):
        with_classes(challenge, 5, "--classes")
