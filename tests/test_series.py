"""Beyond images: the AN2DL 2022 time-series challenge (float32 [batch, 36, 6], 12 classes).

The story: a team trained a small Conv1D network on standardised series. They export
it with the scaler they fitted (an affine per feature), build an ensemble of two, and
evaluate the zip as the platform would. Hand-written zips break the usual ways: a
model saved with a custom loss that the platform cannot load, a predict() that returns
the scores instead of the labels.

The models need no training: a moving-average Conv1D, a global average over time and a
Dense layer whose weights are set by hand, so that class k (feature k % 6 raised, or
lowered for k >= 6) is recognised from the series' mean.
"""

import json
import os
import textwrap
import zipfile

import numpy as np
import pytest

from conftest import run_cli
from submissions import write_zip

PROFILE = "an2dl-2022-ts"
STEPS, FEATURES, CLASSES = 36, 6, 12
# The raw sensor values: what the platform feeds. The team's scaler maps them to N(0, 1).
RAW_MEAN = np.array([10.0, -5.0, 0.5, 100.0, 3.0, -20.0], dtype=np.float32)
RAW_STD = np.array([2.0, 0.5, 0.1, 25.0, 1.0, 4.0], dtype=np.float32)


def series_data(per_class=6, seed=0, raw=True):
    """float32 [n, 36, 6] series and int64 labels; ``raw``: in sensor units, else standardised."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLASSES), per_class)
    x = rng.normal(0, 1, size=(labels.size, STEPS, FEATURES))
    sign = np.where(labels < FEATURES, 1.0, -1.0)
    x[np.arange(labels.size), :, labels % FEATURES] += 2.5 * sign[:, None]
    order = rng.permutation(labels.size)
    x, labels = x[order], labels[order]
    if raw:
        x = x * RAW_STD + RAW_MEAN
    return x.astype(np.float32), labels.astype(np.int64)


def series_model(seed=0, lstm=False):
    """A Keras 3 Conv1D classifier of standardised series, weights by hand (``lstm``: with an
    LSTM branch beside the average, as a second, different member of an ensemble)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((STEPS, FEATURES))
    conv = keras.layers.Conv1D(FEATURES, 3, use_bias=False)
    smooth = conv(inputs)
    x = keras.layers.GlobalAveragePooling1D()(smooth)
    width = FEATURES
    if lstm:  # an LSTM over the smoothed series, with a small (random) say in the scores
        x = keras.layers.Concatenate()([x, keras.layers.LSTM(8)(smooth)])
        width += 8
    dense = keras.layers.Dense(CLASSES, activation="softmax")
    model = keras.Model(inputs, dense(x))
    kernel = np.zeros((3, FEATURES, FEATURES), dtype=np.float32)
    for tap in range(3):
        kernel[tap] = np.eye(FEATURES) / 3.0  # a moving average of each feature
    conv.set_weights([kernel])
    w = np.zeros((width, CLASSES), dtype=np.float32)
    for k in range(CLASSES):
        w[k % FEATURES, k] = 3.0 if k < FEATURES else -3.0
    w[FEATURES:] = np.random.default_rng(seed + 100).normal(0, 0.1, (width - FEATURES, CLASSES))
    # seed-dependent, harmless: two members of an ensemble are not the same model
    bias = np.random.default_rng(seed).normal(0, 0.05, CLASSES).astype(np.float32)
    dense.set_weights([w, bias])
    return model


def scaler_spec():
    """The team's StandardScaler as leafsub's affine: (x - mean) / std = x * scale + offset."""
    return {"mode": "affine", "scale": (1.0 / RAW_STD).tolist(),
            "offset": (-RAW_MEAN / RAW_STD).tolist()}


def write_pack(path, x, y, keys=("x", "y")):
    np.savez(path, **{keys[0]: x, keys[1]: y})
    return str(path)


# A hand-written model.py as the course template has it, with the team's scaler inside.
MODEL_PY = textwrap.dedent('''\
    import os
    import numpy as np
    import tensorflow as tf

    MEAN = np.array({mean}, dtype=np.float32)
    STD = np.array({std}, dtype=np.float32)


    class model:
        def __init__(self, path):
            self.model = tf.saved_model.load(os.path.join(path, "SubmissionModel"))
            self.serve = self.model.signatures["serving_default"]
            self.input_name = list(self.serve.structured_input_signature[1])[0]

        def predict(self, X):
            X = (tf.cast(X, tf.float32) - MEAN) / STD
            out = list(self.serve(**{{self.input_name: X}}).values())[0]
            return {ret}
    ''')


def model_py(ret="tf.argmax(out, axis=-1)"):
    return MODEL_PY.format(mean=RAW_MEAN.tolist(), std=RAW_STD.tolist(), ret=ret)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A saved Conv1D model and the test series, shared by the module's tests."""
    from submissions import export_saved_model

    root = tmp_path_factory.mktemp("series")
    saved = export_saved_model(series_model(), str(root / "saved"))
    x, y = series_data()
    return {"root": root, "saved": saved, "data": write_pack(root / "test.npz", x, y)}


def _evaluate(zip_path, data, tmp_path, *extra):
    out = tmp_path / "result.json"
    proc = run_cli("evaluate", zip_path, "--data", data, "--profile", PROFILE, "--json", out,
                   "-q", *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(out.read_text()) if out.exists() else None
    return proc, result


def _check(result, name):
    return next(c for c in result["checks"] if c["name"] == name)


# --------------------------------------------------------------------------- hand-written zips

def test_a_hand_written_series_submission_passes_every_check(work, tmp_path):
    zip_path = write_zip(tmp_path / "submission.zip", {"model.py": model_py(), "metadata": ""},
                         {"SubmissionModel": work["saved"]})
    proc, result = _evaluate(zip_path, work["data"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["passed"] and result["profile"] == PROFILE
    assert result["n_images"] == 72
    assert result["metrics"]["accuracy"] >= 0.95
    assert len(result["metrics"]["confusion_matrix"]) == CLASSES
    for name in ("loads", "predicts", "output: shape", "output: labels in range", "deterministic",
                 "variant: numpy input", "variant: float64 input", "variant: batch size 1",
                 "variant: batch size 7"):
        assert _check(result, name)["status"] == "pass", _check(result, name)
    detective = _check(result, "mismatch detective")
    assert detective["detail"].startswith("skipped: not an image profile")
    assert "values" in _check(result, "data: test.npz")["detail"]
    assert "profile an2dl-2022-ts, 72 samples\nreplayed in your Python" in proc.stdout


def test_the_series_reach_predict_as_stored_not_as_images(work, tmp_path):
    """No uint8 rounding, no 0-255 clipping, no channel swap: a model.py that forgets its
    scaler scores at chance, one that has it scores as in training."""
    zip_path = write_zip(tmp_path / "noscaler.zip", {
        "model.py": model_py().replace("(tf.cast(X, tf.float32) - MEAN) / STD",
                                       "tf.cast(X, tf.float32)"), "metadata": ""},
        {"SubmissionModel": work["saved"]})
    proc, result = _evaluate(zip_path, work["data"], tmp_path, "--no-detective")
    assert proc.returncode == 0  # nothing errors: the silent failure, seen in the score
    assert result["metrics"]["accuracy"] < 0.5


def test_a_predict_returning_scores_fails_naming_the_profiles_contract(work, tmp_path):
    zip_path = write_zip(tmp_path / "scores.zip", {"model.py": model_py(ret="out"),
                                                   "metadata": ""},
                         {"SubmissionModel": work["saved"]})
    proc, result = _evaluate(zip_path, work["data"], tmp_path)
    assert proc.returncode == 1, proc.stdout
    shape = _check(result, "output: shape")
    assert shape["status"] == "fail"
    assert "[72, 12]" in shape["detail"] and "integers in 0..11" in shape["detail"]
    assert "np.argmax" in shape["detail"]
    assert "FAIL  output: shape" in proc.stdout


def test_a_model_saved_with_a_custom_loss_gets_the_precise_load_verdict(work, tmp_path):
    import keras

    def focal_loss(y_true, y_pred):
        return keras.losses.categorical_crossentropy(y_true, y_pred) * 2.0

    m = series_model()
    m.compile(optimizer="adam", loss=focal_loss)
    folder = tmp_path / "SubmissionModel"
    folder.mkdir()
    m.save(str(folder / "model.keras"))
    body = textwrap.dedent('''\
        import os
        import tensorflow as tf
        import keras


        class model:
            def __init__(self, path):
                self.model = keras.models.load_model(
                    os.path.join(path, "SubmissionModel", "model.keras"))

            def predict(self, X):
                return tf.argmax(self.model(X), axis=-1)
        ''')
    zip_path = write_zip(tmp_path / "custom.zip", {"model.py": body, "metadata": ""},
                         {"SubmissionModel": str(folder)})
    proc, result = _evaluate(zip_path, work["data"], tmp_path)
    assert proc.returncode == 1, proc.stdout
    loads = _check(result, "loads")
    assert loads["status"] == "fail"
    assert "the custom object 'focal_loss'" in loads["detail"]
    for fix in ("leafsub export", "custom_objects", "register_keras_serializable"):
        assert fix in loads["detail"]


def test_a_pack_of_another_shape_is_the_callers_mistake(work, tmp_path):
    x, y = series_data(per_class=1)
    data = write_pack(tmp_path / "wide.npz", np.concatenate([x, x[..., :1]], axis=-1), y)
    zip_path = write_zip(tmp_path / "s.zip", {"model.py": model_py(), "metadata": ""},
                         {"SubmissionModel": work["saved"]})
    proc, _ = _evaluate(zip_path, data, tmp_path)
    assert proc.returncode == 2
    assert "samples have shape [36, 7] each" in proc.stderr and "[36, 6]" in proc.stderr


# --------------------------------------------------------------------------- export -> build -> evaluate

def test_export_records_the_scaler_and_goldens_on_the_teams_series(tmp_path):
    import leafsub

    x, _ = series_data(per_class=1, seed=3)
    result = leafsub.export(series_model(), tmp_path / "run", preprocess=scaler_spec(),
                            class_names=[str(i) for i in range(CLASSES)], probe=x[:5])
    card = json.loads((tmp_path / "run" / "leafsub.json").read_text())
    assert card["input"] == {"kind": "tensor", "shape": [STEPS, FEATURES]}
    assert card["preprocess"]["mode"] == "affine"
    assert np.allclose(card["preprocess"]["offset"], -RAW_MEAN / RAW_STD)
    assert card["probe"] == dict(card["probe"], source="user", count=5)
    with np.load(tmp_path / "run" / "probe.npz") as probe:
        assert probe["images"].shape == (5, STEPS, FEATURES)
        assert np.array_equal(probe["images"], x[:5])   # raw, as the platform feeds them
    assert result.max_fidelity_diff < 1e-5


def test_export_refuses_an_image_pipeline_for_a_series_model(tmp_path):
    import leafsub
    from leafsub.errors import UsageError

    with pytest.raises(UsageError, match="not an image .*preprocess='none'"):
        leafsub.export(series_model(), tmp_path / "run", preprocess="caffe",
                       class_names=[str(i) for i in range(CLASSES)])
    bad = dict(scaler_spec(), scale=[1.0, 2.0, 3.0])
    with pytest.raises(UsageError, match="affine scale has 3 numbers; .* 6 features"):
        leafsub.export(series_model(), tmp_path / "run", preprocess=bad,
                       class_names=[str(i) for i in range(CLASSES)])
    assert not (tmp_path / "run").exists()


def test_a_series_ensemble_is_exported_built_and_verified_like_an_image_one(tmp_path):
    import leafsub

    x_val, _ = series_data(per_class=1, seed=5)
    runs = []
    for seed, lstm in ((0, False), (1, True)):
        run = tmp_path / ("conv1d-lstm" if lstm else "conv1d")
        leafsub.export(series_model(seed=seed, lstm=lstm), run, preprocess=scaler_spec(),
                       class_names=load_names(), probe=x_val[:8])
        runs.append(str(run))
    zip_path = tmp_path / "submission.zip"
    built = run_cli("build", "--models", ",".join(runs), "--profile", PROFILE, "-o", zip_path,
                    "--json", tmp_path / "build.json", "-q")
    assert built.returncode == 0, built.stdout + built.stderr
    report = json.loads((tmp_path / "build.json").read_text())
    assert [m["dir"] for m in report["members"]] == ["SubmissionModel1", "SubmissionModel2"]
    assert all(c["status"] == "pass" for c in report["checks"]), report["checks"]
    tta = next(c for c in report["checks"] if c["name"] == "tta")
    assert tta["detail"].startswith("skipped: not an image profile")
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        text = z.read("model.py").decode()
        manifest = json.loads(z.read("leafsub-manifest.json"))
    assert {"model.py", "metadata", "leafsub-manifest.json", "leafsub-probe.npz"} <= names
    assert '"input_shape": [36, 6]' in text and "_as_rgb_0_255" not in text
    assert "x * scale + offset (the scaler fitted in training)" in text
    assert "does with a batch of samples:" in text
    assert manifest["members"][0]["card"]["preprocess"]["mode"] == "affine"

    proc, result = _evaluate(zip_path, write_pack(tmp_path / "test.npz", *series_data()),
                             tmp_path, "--html", tmp_path / "report.html")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _check(result, "goldens")["status"] == "pass"
    assert "probe" in _check(result, "goldens")["detail"]
    assert result["metrics"]["accuracy"] >= 0.95
    html = (tmp_path / "report.html").read_text()
    assert "Confusion matrix" in html and "Misclassified images" not in html


def test_build_refuses_tta_and_an_image_profile_for_series_models(tmp_path):
    import leafsub
    from leafsub.errors import UsageError
    from leafsub.profiles import load_profile

    run = tmp_path / "run"
    leafsub.export(series_model(), run, preprocess="none", class_names=load_names())
    with pytest.raises(UsageError, match="test-time augmentation views are image transforms"):
        leafsub.build([run], tta="identity,hflip", profile=PROFILE, output=tmp_path / "a.zip",
                      progress=False)
    images = load_profile("an2dl-2022")
    images["classes"] = {"count": CLASSES}
    with pytest.raises(UsageError, match="a model of \\[36, 6\\] samples, but profile an2dl-2022 "
                                         "feeds predict\\(\\) images"):
        leafsub.build([run], profile=images, output=tmp_path / "b.zip", progress=False)
    assert not list(tmp_path.glob("*.zip"))


def load_names():
    from leafsub.profiles import load_profile

    return load_profile(PROFILE)["classes"]["names"]


# --------------------------------------------------------------------------- the platform's TensorFlow

@pytest.mark.runtime
@pytest.mark.slow
def test_under_the_platforms_tensorflow_the_build_passes_and_a_keras2_custom_loss_does_not(
        work, tmp_path):
    """--runtime tensorflow==2.15.1 (Keras 2): the leafsub-built series zip passes there; a
    team's .h5 saved with its focal loss fails to load there, with the same precise verdict."""
    import subprocess

    import leafsub
    from leafsub.evaluator.runtimes import resolve_runtime

    run = tmp_path / "run"
    leafsub.export(series_model(), run, preprocess=scaler_spec(), class_names=load_names())
    built = tmp_path / "built.zip"
    leafsub.build([run], profile=PROFILE, output=built, progress=False)
    proc, result = _evaluate(built, work["data"], tmp_path, "--runtime", "tensorflow==2.15.1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["child"]["tensorflow"] == "2.15.1"
    assert _check(result, "goldens")["status"] == "pass"

    # Saved by the team under the platform's own TensorFlow (Keras 2), in the runtime's Python.
    folder = tmp_path / "SubmissionModel"
    folder.mkdir()
    save = textwrap.dedent('''\
        import sys
        import tensorflow as tf

        def focal_loss(y_true, y_pred):
            return tf.keras.losses.categorical_crossentropy(y_true, y_pred) * 2.0

        inputs = tf.keras.Input((36, 6))
        x = tf.keras.layers.Conv1D(8, 3, activation="relu")(inputs)
        x = tf.keras.layers.LSTM(8)(x)
        m = tf.keras.Model(inputs, tf.keras.layers.Dense(12, activation="softmax")(x))
        m.compile(optimizer="adam", loss=focal_loss)
        m.save(sys.argv[1])
        ''')
    python = resolve_runtime(runtime="tensorflow==2.15.1").python
    saved = subprocess.run([python, "-c", save, str(folder / "model.h5")], capture_output=True,
                           text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert saved.returncode == 0, saved.stderr
    body = textwrap.dedent('''\
        import os
        import tensorflow as tf


        class model:
            def __init__(self, path):
                self.model = tf.keras.models.load_model(
                    os.path.join(path, "SubmissionModel", "model.h5"))

            def predict(self, X):
                return tf.argmax(self.model(X), axis=-1)
        ''')
    zip_path = write_zip(tmp_path / "h5.zip", {"model.py": body, "metadata": ""},
                         {"SubmissionModel": str(folder)})
    proc, result = _evaluate(zip_path, work["data"], tmp_path, "--runtime", "tensorflow==2.15.1")
    assert proc.returncode == 1, proc.stdout
    loads = _check(result, "loads")
    assert loads["status"] == "fail"
    assert "the custom object 'focal_loss'" in loads["detail"], loads["detail"]


# --------------------------------------------------------------------------- the parts

def test_a_profile_of_any_rank_validates_and_image_fields_stay_with_images(tmp_path):
    from leafsub.errors import UsageError
    from leafsub.profiles import is_image, load_profile

    ts = load_profile(PROFILE)
    assert not is_image(ts) and ts["input"]["shape"] == [36, 6] and "range" not in ts["input"]
    assert "channel_order" not in ts["input"]
    assert is_image(load_profile("an2dl-2022"))
    own = load_profile("generic")
    del own["input"]["channel_order"], own["input"]["kind"]
    own["input"]["shape"] = [128]   # a feature vector: kind tensor by default
    assert load_profile(own)["input"]["kind"] == "tensor"
    own["input"]["channel_order"] = "BGR"
    with pytest.raises(UsageError, match="'input.channel_order' is for images"):
        load_profile(own)
    image = load_profile("generic")
    del image["input"]["range"]
    with pytest.raises(UsageError, match="'range' is a required property"):
        load_profile(image)


def test_tensor_packs_keep_values_and_dtype_and_refuse_what_cannot_be_fed(tmp_path):
    import h5py

    from leafsub.datasets import open_tensor_pack, write_tensor_npy
    from leafsub.errors import UsageError

    x, y = series_data(per_class=2)
    x[0, 0, 0] = -1234.5678   # no clipping to 0..255, no rounding
    pack = open_tensor_pack(write_pack(tmp_path / "a.npz", x, y, keys=("images", "labels")),
                            (36, 6))
    assert pack.sample_shape == (36, 6) and pack.dtype == np.float32 and pack.n == 24
    assert np.array_equal(np.concatenate(list(pack.iter_batches(5))), x)
    assert np.array_equal(pack.read([3, 0]), x[[3, 0]])
    write_tensor_npy(pack, tmp_path / "a.npy")
    assert np.array_equal(np.load(tmp_path / "a.npy"), x)

    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["x"] = (x * 100).astype(np.int32)
        f["y"] = y
    ints = open_tensor_pack(tmp_path / "b.h5")
    assert ints.dtype == np.int32 and np.array_equal(ints.read([1])[0], (x[1] * 100).astype(np.int32))

    x[5, 3, 2] = np.nan
    with pytest.raises(UsageError, match="sample 5 holds NaN"):
        list(open_tensor_pack(write_pack(tmp_path / "nan.npz", x, y)).iter_batches(8))
    with pytest.raises(UsageError, match="a folder, but this challenge's input is not an image"):
        open_tensor_pack(tmp_path)
    np.savez(tmp_path / "flat.npz", x=np.zeros(24), y=y)
    with pytest.raises(UsageError, match="expected \\[N, ...\\]"):
        open_tensor_pack(tmp_path / "flat.npz")


def test_the_runtime_feeds_series_members_as_they_are_with_the_scaler():
    import tensorflow as tf

    from leafsub.submission_template import runtime

    x, _ = series_data(per_class=1)
    before = x.copy()
    out = np.asarray(runtime.preprocess_samples(x, runtime.validate_spec(scaler_spec())))
    assert np.allclose(out, (x - RAW_MEAN) / RAW_STD, atol=1e-5)
    assert np.array_equal(x, before)
    assert np.array_equal(np.asarray(runtime.preprocess_samples(tf.constant(x), {"mode": "none"})), x)
    with pytest.raises(ValueError, match="'caffe' is for images"):
        runtime.preprocess_samples(x, runtime.validate_spec({"mode": "caffe"}))


def test_leafsub_export_on_the_command_line_takes_a_series_model_file_and_probe(tmp_path):
    series_model().save(str(tmp_path / "best.keras"))
    x, y = series_data(per_class=1)
    probe = write_pack(tmp_path / "val.npz", x, y)
    spec = scaler_spec()
    proc = run_cli("export", tmp_path / "best.keras", tmp_path / "run", "--preprocess", "affine",
                   "--scale", ",".join(map(repr, spec["scale"])),
                   "--offset", ",".join(map(repr, spec["offset"])),
                   "--profile", PROFILE, "--probe", probe)
    assert proc.returncode == 0, proc.stderr
    assert "input [36, 6], 12 classes" in proc.stdout
    card = json.loads((tmp_path / "run" / "leafsub.json").read_text())
    assert card["probe"]["source"] == "user" and card["class_names"] == load_names()
    assert card["preprocess"] == dict(spec, resize_method="bilinear")
    proc = run_cli("card", tmp_path / "run")
    assert proc.returncode == 0 and "input [36, 6]" in proc.stdout


def test_neither_build_nor_the_evaluators_parent_imports_tensorflow_for_series(work, tmp_path):
    import subprocess
    import sys

    import leafsub

    run = tmp_path / "run"
    leafsub.export(series_model(), run, preprocess="none", class_names=load_names())
    code = ("import sys, leafsub; leafsub.build([%r], profile=%r, output=%r, progress=False); "
            "r = leafsub.evaluate(%r, %r, profile=%r, progress=False); "
            "print(r.passed, 'tensorflow' in sys.modules)"
            % (str(run), PROFILE, str(tmp_path / "s.zip"), str(tmp_path / "s.zip"),
               work["data"], PROFILE))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the model normalises nothing and the test series are raw: it runs, scores badly, passes
    assert proc.stdout.strip().splitlines()[-1] == "True False"


def test_series_evaluated_with_an_image_profile_are_not_taken_for_tiny_images(work, tmp_path):
    zip_path = write_zip(tmp_path / "s.zip", {"model.py": model_py(), "metadata": ""},
                         {"SubmissionModel": work["saved"]})
    proc = run_cli("evaluate", zip_path, "--data", work["data"], "-q")   # the default profile
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "grayscale images 6 pixels wide" in proc.stderr
    assert "--profile an2dl-2022-ts" in proc.stderr
