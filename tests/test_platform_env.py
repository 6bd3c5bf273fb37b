"""leafsub evaluate replays in the platform's own environment by default.

The stories come from real AN2DL submissions, each evaluated with its built-in profile:

* 2023: a Keras 2 SavedModel loaded with ``tf.keras.models.load_model`` (the course
  template). The platform (TensorFlow 2.14.0, Keras 2) loads and scores it; Keras 3
  refuses it. The model is built *inside* the 2.14.0 environment, as the student did.
* 2024: a Keras 3.4.1 ``.keras`` with an in-model ``RandomRotation(value_range=...)``.
  The platform (TensorFlow 2.17.0, Keras 3.4.1) loads it; later Keras refuses the
  argument. Built inside the 2.17.0/3.4.1 environment.
* a predict that crashes, and one that returns 2*N labels: on the platform's environment
  they are what they are (a predict failure, a wrong-length output), not load failures.
* a loss registered as ``Custom>SparseCategoricalFocalLoss``: its real name, and
  compile=False as the fix.

Without ``--runtime`` (and without ``LEAFSUB_RUNTIME``, which conftest sets to ``local``
for the ordinary tests) evaluate gives the platform's verdict; ``--runtime local`` gives
this Python's and names the difference. The two environments are created once (about
1-3 minutes and 1.7 GB each) in the default cache and shared with ``test_runtimes.py`` and
``test_evaluate_runtime.py``: they are the ones the 2023 and 2024 profiles use.
"""

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest

import leafsub
from leafsub.evaluator.runtimes import resolve_runtime

from conftest import run_cli
from submissions import write_zip

pytestmark = [pytest.mark.runtime, pytest.mark.slow]

TF_2023 = "tensorflow==2.14.0"
TF_2024 = "tensorflow==2.17.0,keras==3.4.1"

BUILD_2023 = '''
import sys
import tensorflow as tf

tf.keras.utils.set_random_seed(0)


@tf.keras.utils.register_keras_serializable()
class SparseCategoricalFocalLoss(tf.keras.losses.Loss):
    def call(self, y_true, y_pred):
        return tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


inputs = tf.keras.Input((96, 96, 3))
x = tf.keras.layers.Rescaling(1 / 255.0)(inputs)
x = tf.keras.layers.Conv2D(4, 3, activation="relu")(x)
x = tf.keras.layers.GlobalAveragePooling2D()(x)
outputs = tf.keras.layers.Dense(2, activation="softmax")(x)
model = tf.keras.Model(inputs, outputs)
model.compile("adam", "sparse_categorical_crossentropy")
model.save(sys.argv[1])                      # a folder: Keras 2's SavedModel format
model.compile("adam", SparseCategoricalFocalLoss())
model.save(sys.argv[2])                      # .h5: the loss saved by its registered name
'''

BUILD_2024 = '''
import sys
import keras

keras.utils.set_random_seed(0)
inputs = keras.Input((96, 96, 3))
x = keras.layers.RandomRotation(0.1, value_range=(0, 255))(inputs)
x = keras.layers.Rescaling(1 / 255.0)(x)
x = keras.layers.Conv2D(4, 3, activation="relu")(x)
x = keras.layers.GlobalAveragePooling2D()(x)
outputs = keras.layers.Dense(8, activation="softmax")(x)
keras.Model(inputs, outputs).save(sys.argv[1])
'''

MODEL_2023 = '''\
import os
import tensorflow as tf


class model:
    def __init__(self, path):
        self.model = tf.keras.models.load_model(os.path.join(path, "SubmissionModel"))

    def predict(self, X):
        PREDICT
'''

MODEL_2024 = '''\
import numpy as np
import keras


class Model:
    def __init__(self):
        self.neural_network = keras.models.load_model("weights.keras")

    def predict(self, X):
        return np.argmax(self.neural_network.predict(X, verbose=0), axis=-1)
'''


def _python(spec):
    return resolve_runtime(runtime=spec, say=print).python


def _run(python, code, *args):
    proc = subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]


def _pack(path, n_classes, n=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)
    np.savez(path, images=images, labels=np.arange(n) % n_classes)
    return str(path)


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    """2023: the models, built in the platform's TensorFlow 2.14.0, and a pack."""
    root = tmp_path_factory.mktemp("plant")
    _run(_python(TF_2023), BUILD_2023, root / "SubmissionModel", root / "focal.h5")
    return {"root": root, "data": _pack(root / "test.npz", 2),
            "saved": str(root / "SubmissionModel"), "focal": str(root / "focal.h5")}


@pytest.fixture(scope="module")
def blood(tmp_path_factory):
    """2024: the .keras, built in the platform's TensorFlow 2.17.0 with Keras 3.4.1."""
    root = tmp_path_factory.mktemp("blood")
    _run(_python(TF_2024), BUILD_2024, root / "weights.keras")
    return {"root": root, "data": _pack(root / "test.npz", 8),
            "weights": (root / "weights.keras").read_bytes()}


@pytest.fixture
def platform_default(monkeypatch):
    """No --runtime and no LEAFSUB_RUNTIME: what a user gets."""
    monkeypatch.delenv("LEAFSUB_RUNTIME", raising=False)


def _zip_2023(plant, name, predict="return tf.argmax(self.model(X), axis=-1)"):
    return write_zip(str(plant["root"] / name), {
        "model.py": MODEL_2023.replace("PREDICT", predict), "metadata": ""},
        {"SubmissionModel": plant["saved"]})


def _checks(result):
    return {c["name"]: c for c in result["checks"]}


def test_2023_keras2_saved_model_passes_on_the_platform_and_fails_only_locally(plant, tmp_path):
    zip_path = _zip_2023(plant, "template.zip")

    platform = run_cli("evaluate", zip_path, "--data", plant["data"], "--profile", "an2dl-2023",
                       "--json", tmp_path / "p.json", "--no-detective",
                       env={"LEAFSUB_RUNTIME": None})
    local = run_cli("evaluate", zip_path, "--data", plant["data"], "--profile", "an2dl-2023",
                    "--json", tmp_path / "l.json", "--no-detective", "--runtime", "local",
                    env={"LEAFSUB_RUNTIME": None})

    print(platform.stdout, platform.stderr[-2000:], local.stdout, sep="\n")
    assert platform.returncode == 0, platform.stdout
    p = json.loads((tmp_path / "p.json").read_text())
    assert p["child"]["tensorflow"] == "2.14.0" and p["child"]["keras"].startswith("2.14")
    env = p["environment"]
    assert env["replay"]["kind"] == "platform" and env["same"] and env["differs"] == []
    assert "replayed in the platform's environment: python " in platform.stdout
    assert "platform: tensorflow 2.14.0, keras 2.14.0 (the same)" in platform.stdout
    # the same zip in this Python (Keras 3): the local verdict, and why it may differ
    assert local.returncode == 1
    lo = json.loads((tmp_path / "l.json").read_text())
    assert lo["environment"]["replay"]["kind"] == "local"
    assert {d["package"] for d in lo["environment"]["differs"]} >= {"tensorflow", "keras"}
    loads = _checks(lo)["loads"]
    assert loads["status"] == "fail"
    assert "the failure may not happen on the platform" in loads["detail"]
    assert "Evaluate without --runtime local" in loads["detail"]
    assert "The platform's Keras 2.14.0 is Keras 2" in loads["detail"]     # keep model.py
    assert "platform: tensorflow 2.14.0" in local.stdout
    assert "differs: tensorflow, keras" in local.stdout
    assert _checks(lo)["environment"]["status"] == "warn"


def test_2023_predict_crash_and_wrong_length_are_reported_as_such_on_the_platform(
        plant, platform_default):
    crash = _zip_2023(plant, "crash.zip", "return list(map(lambda p: 1 if p > 0.5 else 0, "
                      "self.model(X)))")
    twice = _zip_2023(plant, "twice.zip", "y = tf.argmax(self.model(X), axis=-1)\n"
                      "        return tf.concat([y, y], axis=0)")

    crashed = leafsub.evaluate(crash, plant["data"], profile="an2dl-2023", progress=False,
                               detective=False).to_dict()
    doubled = leafsub.evaluate(twice, plant["data"], profile="an2dl-2023", progress=False,
                               detective=False).to_dict()

    for result in (crashed, doubled):
        assert result["environment"]["replay"]["kind"] == "platform"
        assert _checks(result)["loads"]["status"] == "pass"       # not a load failure
    predicts = _checks(crashed)["predicts"]
    assert predicts["status"] == "fail" and "truth value" in predicts["detail"].lower()
    shape = _checks(doubled)["output: shape"]
    assert shape["status"] == "fail" and "for a batch of" in shape["detail"]
    assert "[64]" in shape["detail"] or "[32]" in shape["detail"]


def test_a_custom_loss_is_named_by_its_own_name_with_compile_false_as_the_fix(
        plant, platform_default):
    zip_path = write_zip(str(plant["root"] / "focal.zip"), {"model.py": MODEL_2023.replace(
        "PREDICT", "return tf.argmax(self.model(X), axis=-1)").replace(
        'os.path.join(path, "SubmissionModel")', 'os.path.join(path, "focal.h5")'),
        "metadata": "", "focal.h5": open(plant["focal"], "rb").read()})

    result = leafsub.evaluate(zip_path, plant["data"], profile="an2dl-2023", progress=False,
                              detective=False).to_dict()

    loads = _checks(result)["loads"]
    print(loads["detail"])
    assert loads["status"] == "fail" and "Custom>SparseCategoricalFocalLoss" in loads["detail"]
    assert "custom object 'SparseCategoricalFocalLoss'" in loads["detail"]
    assert "'Custom'" not in loads["detail"]
    assert "compile=False" in loads["detail"]


def test_2024_keras_3_4_file_loads_on_the_platform_and_not_under_later_keras(
        blood, platform_default, tmp_path):
    zip_path = write_zip(str(tmp_path / "blood.zip"), {"model.py": MODEL_2024,
                                                        "weights.keras": blood["weights"]})

    platform = leafsub.evaluate(zip_path, blood["data"], profile="an2dl-2024", progress=False,
                                detective=False).to_dict()
    local = leafsub.evaluate(zip_path, blood["data"], profile="an2dl-2024", progress=False,
                             detective=False, runtime="local").to_dict()

    assert platform["passed"], [c for c in platform["checks"] if c["status"] != "pass"]
    assert platform["child"]["tensorflow"] == "2.17.0" and platform["child"]["keras"] == "3.4.1"
    assert platform["environment"]["same"]
    loads = _checks(local)["loads"]
    print(loads["detail"])
    assert not local["passed"] and loads["status"] == "fail"
    assert "value_range" in loads["detail"]
    assert {d["package"]: d["platform"] for d in local["environment"]["differs"]}["keras"] \
        == "3.4.1"
    assert "the failure may not happen on the platform" in loads["detail"]


def test_the_html_report_says_where_it_ran_at_the_top(blood, platform_default, tmp_path):
    zip_path = write_zip(str(tmp_path / "blood.zip"), {"model.py": MODEL_2024,
                                                        "weights.keras": blood["weights"]})
    html = tmp_path / "r.html"
    leafsub.evaluate(zip_path, blood["data"], profile="an2dl-2024", progress=False,
                     detective=False, variants=False, html_path=str(html), runtime="local")
    text = html.read_text()
    header = text[:text.index("</header>")]
    assert "replayed in your Python" in header
    assert "platform: tensorflow 2.17.0, keras 3.4.1" in header
    assert "differs: " in header and "keras " in header


def test_explicit_pins_are_the_platforms_environment_and_runtimes_lists_it(blood, tmp_path):
    zip_path = write_zip(str(tmp_path / "blood.zip"), {"model.py": MODEL_2024,
                                                        "weights.keras": blood["weights"]})
    proc = run_cli("evaluate", zip_path, "--data", blood["data"], "--profile", "an2dl-2024",
                   "--runtime", "keras==3.4.1,tensorflow==2.17.0", "--no-detective", "--json",
                   tmp_path / "r.json")
    result = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 0, proc.stdout
    assert result["environment"]["replay"]["kind"] == "runtime" and result["environment"]["same"]
    assert "replayed in --runtime: python " in proc.stdout
    listed = run_cli("runtimes")
    assert listed.returncode == 0
    # Listed by its pins, framework first: what --runtime and --remove take.
    line, = [x for x in listed.stdout.splitlines() if "tensorflow==2.17.0,keras==3.4.1 " in x]
    assert "TensorFlow 2.17.0, Keras 3.4.1" in line and " MB)" in line


def test_2023_ensemble_member_never_called_is_named_on_the_platform(plant, platform_default):
    """Keras 2's tf.keras.models.load_model, as the real 2022/2023 ensembles used it."""
    body = MODEL_2023.replace(
        'self.model = tf.keras.models.load_model(os.path.join(path, "SubmissionModel"))',
        'self.models = [tf.keras.models.load_model(os.path.join(path, "SubmissionModel%d" % i))'
        ' for i in (1, 2)]').replace("PREDICT", "return tf.argmax(self.models[0](X), axis=-1)")
    zip_path = write_zip(str(plant["root"] / "ensemble.zip"), {"model.py": body, "metadata": ""},
                         {"SubmissionModel1": plant["saved"], "SubmissionModel2": plant["saved"]})

    result = leafsub.evaluate(zip_path, plant["data"], profile="an2dl-2023", progress=False,
                              detective=False, variants=False).to_dict()

    assert result["child"]["keras"].startswith("2.14")
    unused = _checks(result)["unused models"]
    assert unused["status"] == "warn" and result["passed"]
    assert "never calls it (directly): SubmissionModel2 (" in unused["detail"]
    assert "SubmissionModel1" not in unused["detail"]
