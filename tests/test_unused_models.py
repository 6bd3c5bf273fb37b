"""Verdicts real submissions need, with this Python (fast; no platform environment).

* A 2022 ensemble loaded 8 SavedModels and averaged 5: three members filled the upload
  for nothing, and the replay said nothing. The child now sees which loaded models
  ``predict`` calls (it loads them through the same ``keras.models.load_model`` /
  ``tf.keras.models.load_model`` / ``tf.saved_model.load`` the submission calls).
* A custom loss saved as ``Custom>SparseCategoricalFocalLoss`` was named 'Custom'.
"""

import json
import sys

import numpy as np
import pytest

from conftest import run_cli, tiny_keras_model
from leafsub.evaluator.checks import missing_custom_code
from submissions import export_saved_model, write_zip

ENSEMBLE = '''\
import os
import numpy as np
import keras
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))


class Model:
    def __init__(self):
        self.members = [keras.models.load_model("member%d.keras" % i) for i in range(3)]
        self.exported = tf.saved_model.load(os.path.join(HERE, "exported"))

    def predict(self, X):
        X = np.asarray(X, dtype=np.float32)
        # the team averaged its best two; member2 and the export stayed in the zip
        scores = sum(m(X, training=False) for m in self.members[:2]) / 2
        return np.argmax(np.asarray(scores), axis=-1)
'''


def test_loaded_models_that_predict_never_calls_are_named_with_their_size(tmp_path):
    files = {"model.py": ENSEMBLE}
    for i in range(3):
        path = tmp_path / ("member%d.keras" % i)
        tiny_keras_model((96, 96, 3), n_classes=8, seed=i).save(str(path))
        files[path.name] = path.read_bytes()
    exported = export_saved_model(tiny_keras_model((96, 96, 3), n_classes=8, seed=7),
                                  str(tmp_path / "exported"))
    zip_path = write_zip(str(tmp_path / "ensemble.zip"), files, {"exported": exported})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "test.npz", images=rng.integers(0, 256, (16, 96, 96, 3), np.uint8),
             labels=np.arange(16) % 8)

    proc = run_cli("evaluate", zip_path, "--data", tmp_path / "test.npz", "--profile",
                   "an2dl-2024", "--no-detective", "--json", tmp_path / "r.json")

    print(proc.stdout, proc.stderr[-2000:])
    result = json.loads((tmp_path / "r.json").read_text())
    unused, = [c for c in result["checks"] if c["name"] == "unused models"]
    assert unused["status"] == "warn" and proc.returncode == 0     # a warning, not a failure
    detail = unused["detail"]
    assert "model.py loads 4 models, but predict() never calls 2 of them" in detail
    assert "member2.keras (" in detail and "exported (" in detail
    assert "member0.keras" not in detail and "member1.keras" not in detail
    assert "MB to the zip" in detail and "of the 300 MB upload limit" in detail
    assert "unused models" in proc.stdout


def test_a_single_model_that_predict_calls_says_nothing(tmp_path):
    path = tmp_path / "weights.keras"
    tiny_keras_model((96, 96, 3), n_classes=8).save(str(path))
    body = ("import numpy as np\nimport keras\n\n\nclass Model:\n    def __init__(self):\n"
            "        self.m = keras.models.load_model('weights.keras')\n\n"
            "    def predict(self, X):\n"
            "        return np.argmax(self.m.predict(X, verbose=0), axis=-1)\n")
    zip_path = write_zip(str(tmp_path / "one.zip"), {"model.py": body,
                                                     "weights.keras": path.read_bytes()})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "test.npz", images=rng.integers(0, 256, (8, 96, 96, 3), np.uint8),
             labels=np.arange(8) % 8)
    proc = run_cli("evaluate", zip_path, "--data", tmp_path / "test.npz", "--profile",
                   "an2dl-2024", "--no-detective", "--json", tmp_path / "r.json")
    result = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 0, proc.stdout
    assert not [c for c in result["checks"] if c["name"] == "unused models"]


def test_custom_prefix_is_not_the_objects_name():
    loss = missing_custom_code("ValueError: Unknown loss function: "
                               "'Custom>SparseCategoricalFocalLoss'. Please ensure you are using "
                               "a `keras.utils.custom_object_scope`")
    assert "custom object 'SparseCategoricalFocalLoss'" in loss
    assert "'Custom'" not in loss
    assert "compile=False" in loss and "Prediction needs no loss" in loss
    metric = missing_custom_code("Unknown metric function: 'Custom>F1Score'")
    assert "'F1Score'" in metric and "Prediction needs no metric" in metric
    keras3 = missing_custom_code(  # Keras 3's message, verbatim (keras 3.15)
        "TypeError: Could not locate class 'SparseCategoricalFocalLoss'. Make sure custom "
        "classes and functions are decorated with `@keras.saving.register_keras_serializable()"
        "`. Full object config: {'module': None, 'class_name': 'SparseCategoricalFocalLoss', "
        "'config': {'name': 'sparse_categorical_focal_loss', 'reduction': "
        "'sum_over_batch_size'}, 'registered_name': 'Custom>SparseCategoricalFocalLoss'}")
    assert "custom object 'SparseCategoricalFocalLoss' (its loss" in keras3
    assert "compile=False" in keras3
    layer = missing_custom_code("Could not locate class 'Custom>Scale'. Make sure custom "
                                "classes are decorated")
    assert "custom object 'Scale'" in layer and "Prediction needs no" not in layer
    assert "register_keras_serializable" in layer


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the story is Python 3.11's")
def test_the_nearest_tensorflow_standing_in_for_the_platforms_is_said_in_the_verdict(
        tmp_path, monkeypatch):
    """AN2DL 2022 ran TensorFlow 2.10.0, which has no wheel for Python 3.11: the replay uses
    the nearest that installs (2.12.0), and the verdict says so. The environment itself is
    stood in for by this Python here (creating it is test_platform_env.py's business)."""
    from leafsub.evaluator import runtimes

    asked = []
    monkeypatch.setattr(runtimes, "find_python", lambda lo, hi: None)   # no Python 3.10 here
    monkeypatch.setattr(runtimes, "_cached_runtime", lambda pins, say, base=None: (
        asked.append(pins) or runtimes.Runtime(sys.executable, "tensorflow==2.12.0 (cached "
                                               "venv)", False, kind="runtime")))
    monkeypatch.delenv("LEAFSUB_RUNTIME")
    model = tiny_keras_model((96, 96, 3), n_classes=8)
    folder = export_saved_model(model, str(tmp_path / "sm"))
    body = ("import os\nimport tensorflow as tf\n\n\nclass model:\n"
            "    def __init__(self, path):\n"
            "        self.m = tf.saved_model.load(os.path.join(path, 'SubmissionModel'))\n\n"
            "    def predict(self, X):\n"
            "        return tf.argmax(self.m.serve(X), axis=-1)\n")
    zip_path = write_zip(str(tmp_path / "s.zip"), {"model.py": body, "metadata": ""},
                         {"SubmissionModel": folder})
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "test.npz", images=rng.integers(0, 256, (8, 96, 96, 3), np.uint8),
             labels=np.arange(8) % 8)
    import leafsub

    result = leafsub.evaluate(zip_path, str(tmp_path / "test.npz"), profile="an2dl-2022",
                              progress=False, detective=False, variants=False).to_dict()

    assert asked == [(("tensorflow", "2.12.0"),)]
    env = result["environment"]
    assert env["replay"]["kind"] == "platform" and env["platform"]["packages"]["tensorflow"] \
        == "2.10.0"
    check, = [c for c in result["checks"] if c["name"] == "environment"]
    assert check["status"] == "warn"
    assert "2.10.0 has no wheel for Python 3.11" in check["detail"]
    assert "tensorflow 2.12.0, stands in for it" in check["detail"]
