"""Export: a trained model becomes a run dir whose goldens any TF 2.x can reproduce."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import leafsub
from leafsub.card import read_card, sha256_file
from leafsub.errors import CheckFailed, UsageError
from leafsub.submission_template import runtime

from conftest import run_cli, tiny_keras_model

CLASSES = ["oak", "maple", "birch"]
MODES = [
    "caffe", "tf", "torch", "rescale", "none",
    {"mode": "affine", "scale": [0.01, 0.02, 0.03], "offset": [-1.0, 0.0, 1.0]},
]


def probe_images(n=6, size=32, seed=1):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3)).astype(np.uint8)


@pytest.mark.parametrize("preprocess", MODES, ids=lambda m: m if isinstance(m, str) else m["mode"])
def test_export_each_mode_reproduces_goldens_with_plain_tf(tmp_path, preprocess):
    model = tiny_keras_model()
    result = leafsub.export(model, tmp_path / "run", preprocess=preprocess, class_names=CLASSES,
                            probe=probe_images())
    card = read_card(tmp_path / "run")
    assert card["class_names"] == CLASSES
    assert card["output"] == "probabilities"
    assert card["input"] == {"height": 32, "width": 32, "channels": 3}
    assert card["probe"]["source"] == "user" and card["probe"]["count"] == 6
    for rel, digest in card["files"].items():
        assert sha256_file(tmp_path / "run" / rel) == digest

    probe = np.load(tmp_path / "run" / "probe.npz")
    assert np.array_equal(probe["images"], probe_images().astype(np.float32))
    # What a submission does: plain tf.saved_model.load + the runtime's preprocessing.
    loaded = tf.saved_model.load(str(tmp_path / "run" / "saved_model"))
    serve = loaded.signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    x = runtime.preprocess(probe["images"], card["preprocess"])
    (out,) = serve(**{name: x}).values()
    diff = float(np.max(np.abs(out.numpy() - probe["probabilities"])))
    print("goldens reproduced, mode %s: max abs diff %.3g" % (card["preprocess"]["mode"], diff))
    assert diff <= 1e-5
    # ... and equal to the in-memory model fed the same preprocessing.
    assert np.allclose(probe["outputs"], model(x).numpy(), atol=1e-6)
    assert result.max_fidelity_diff <= 1e-5


def test_each_weight_is_stored_once(tmp_path):
    # Keras 3's model.export writes every weight twice (variables/ and _all_variables/).
    model = tiny_keras_model()
    leafsub.export(model, tmp_path / "run", preprocess="none", class_names=CLASSES)
    stored = tf.train.list_variables(str(tmp_path / "run" / "saved_model" / "variables" /
                                         "variables"))
    values = sum(int(np.prod(shape)) for name, shape in stored if "OPTIMIZER" not in name
                 and not name.startswith("_CHECKPOINTABLE"))
    print("stored values %d, model parameters %d" % (values, model.count_params()))
    assert values == model.count_params()


def test_logits_model_is_recorded_as_logits(tmp_path):
    model = tiny_keras_model(activation=None)
    leafsub.export(model, tmp_path / "run", preprocess="tf", class_names=CLASSES)
    card = read_card(tmp_path / "run")
    assert card["output"] == "logits"
    assert card["probe"]["source"] == "synthetic"
    probe = np.load(tmp_path / "run" / "probe.npz")
    assert np.allclose(probe["probabilities"].sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("app, mode", [
    ("resnet50", "caffe"), ("mobilenet_v2", "tf"), ("densenet", "torch"), ("efficientnet", "none"),
])
def test_detection_identifies_keras_applications_preprocessing(tmp_path, app, mode):
    fn = getattr(tf.keras.applications, app).preprocess_input
    leafsub.export(tiny_keras_model(), tmp_path / "run", preprocess_fn=fn, class_names=CLASSES,
                   probe=probe_images())
    card = read_card(tmp_path / "run")
    assert card["preprocess"]["mode"] == mode
    assert card["preprocess_source"].startswith("detected")
    assert card["probe"]["through"] == "preprocess_fn"


def test_detection_fits_a_custom_affine():
    from leafsub.exporter.detect import detect

    spec, _ = detect(lambda x: (x - 100.0) / 50.0, probe_images().astype(np.float32))
    assert spec["mode"] == "affine"
    assert np.allclose(spec["scale"], [0.02] * 3) and np.allclose(spec["offset"], [-2.0] * 3)


def test_detection_refuses_a_function_that_matches_nothing(tmp_path):
    def gamma(x):
        return (x / 255.0) ** 0.5

    with pytest.raises(UsageError) as err:
        leafsub.export(tiny_keras_model(), tmp_path / "run", preprocess_fn=gamma,
                       class_names=CLASSES, probe=probe_images())
    message = str(err.value)
    for candidate in ("none", "rescale", "tf", "torch", "caffe", "affine"):
        assert candidate in message
    assert "closest" in message
    assert not (tmp_path / "run").exists()


def test_declared_preprocessing_that_contradicts_training_fails(tmp_path):
    fn = tf.keras.applications.resnet50.preprocess_input
    with pytest.raises(CheckFailed, match=r"declared preprocessing 'tf'.*looks like 'caffe'"):
        leafsub.export(tiny_keras_model(), tmp_path / "run", preprocess="tf", preprocess_fn=fn,
                       class_names=CLASSES, probe=probe_images())
    assert not (tmp_path / "run").exists()


def test_keras2_model_after_adam_exports_without_optimizer_state(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([
        tf_keras.layers.Input((16, 16, 3)),
        tf_keras.layers.Conv2D(8, 3, activation="relu"),
        tf_keras.layers.GlobalAveragePooling2D(),
        tf_keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(0, 1, (16, 16, 16, 3)), np.arange(16) % 3, epochs=1, verbose=0)
    h5 = tmp_path / "trained.h5"
    model.save(h5)
    keras2_savedmodel = tmp_path / "keras2_savedmodel"
    model.save(keras2_savedmodel, save_format="tf")

    result = leafsub.export(model, tmp_path / "from_object", preprocess="rescale",
                            class_names=CLASSES)
    assert result.card["versions"]["tensorflow"] == tf.__version__
    weight_bytes = sum(w.numpy().nbytes for w in model.weights)
    for source in (h5, keras2_savedmodel):
        out = tmp_path / ("from_" + source.name.replace(".", "_"))
        proc = run_cli("export", source, out, "--preprocess", "rescale",
                       "--class-names", ",".join(CLASSES))
        assert proc.returncode == 0, proc.stderr
        if source == h5:  # the file kept Adam's slots: the export says it dropped them
            assert "optimizer state" in proc.stderr
        variables = out / "saved_model" / "variables" / "variables.data-00000-of-00001"
        # Adam keeps two slots per weight: with them the file would be ~3x the weights.
        assert os.path.getsize(variables) < 1.5 * weight_bytes + 4096
        loaded = tf.saved_model.load(str(out / "saved_model"))
        probe = np.load(out / "probe.npz")
        (name,) = loaded.signatures["serving_default"].structured_input_signature[1]
        (y,) = loaded.signatures["serving_default"](**{name: probe["images"] / 255.0}).values()
        assert np.max(np.abs(y.numpy() - probe["probabilities"])) <= 1e-5


def test_cli_export_of_a_keras3_file_with_profile_class_names(tmp_path):
    path = tmp_path / "model.keras"
    tiny_keras_model(n_classes=8).save(path)
    proc = run_cli("export", path, tmp_path / "run", "--preprocess", "ResNet50",
                   "--profile", "an2dl-2022", "--json", tmp_path / "export.json")
    assert proc.returncode == 0, proc.stderr
    assert "preprocessing caffe (preset:ResNet50)" in proc.stdout
    card = json.loads((tmp_path / "export.json").read_text())["card"]
    assert card["class_names"] == ["Species%d" % i for i in range(1, 9)]
    assert run_cli("card", tmp_path / "run").returncode == 0


def test_cli_refuses_to_overwrite_a_run_dir(tmp_path):
    path = tmp_path / "model.keras"
    tiny_keras_model().save(path)
    leafsub.export(str(path), tmp_path / "run", preprocess="tf", class_names=["a", "b", "c"])
    args = ("export", path, tmp_path / "run", "-p", "tf", "--class-names", "a,b,c")
    again = run_cli(*args)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert run_cli(*args, "--force").returncode == 0


@pytest.mark.parametrize("args, message", [
    (("missing.keras", "run", "-p", "tf", "--class-names", "a,b,c"), "no such file"),
    (("model.keras", "run", "--class-names", "a,b,c"), "Say how the model's inputs were"),
    (("model.keras", "run", "-p", "alexnet", "--class-names", "a,b,c"), "alexnet"),
    (("model.keras", "run", "-p", "tf", "--class-names", "a,b"), "3 outputs but 2 class names"),
])
def test_cli_usage_errors_exit_2_without_traceback(tmp_path, args, message):
    tiny_keras_model().save(tmp_path / "model.keras")
    proc = run_cli("export", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.fixture
def exported(tmp_path):
    leafsub.export(tiny_keras_model(), tmp_path / "run", preprocess="tf", class_names=CLASSES)
    return tmp_path / "run"


@pytest.mark.parametrize("edit, field", [
    (lambda c: c["preprocess"].update(mode="caffee"), "preprocess.mode"),
    (lambda c: c.pop("class_names"), "class_names"),
    (lambda c: c["input"].update(height="32"), "input.height"),
    (lambda c: c["probe"].update(tolerance=-1), "probe.tolerance"),
])
def test_schema_invalid_card_exits_2_naming_the_field(exported, edit, field):
    path = exported / "leafsub.json"
    card = json.loads(path.read_text())
    edit(card)
    path.write_text(json.dumps(card))
    proc = run_cli("card", exported)
    assert proc.returncode == 2
    assert "field '%s'" % field in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_corrupt_card_exits_2_naming_the_file(exported):
    path = exported / "leafsub.json"
    path.write_text(path.read_text()[:40])
    proc = run_cli("card", exported)
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_card_reports_a_model_file_changed_since_export(exported):
    variables = exported / "saved_model" / "variables" / "variables.index"
    variables.write_bytes(variables.read_bytes() + b"x")
    proc = run_cli("card", exported)
    assert proc.returncode == 1 and "changed since export" in proc.stderr
