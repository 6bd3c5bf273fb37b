"""leafsub evaluate --runtime: the same zip under the platform's older TensorFlow.

The story from the students' reports: a course template loads the model with
``tf.keras.models.load_model("SubmissionModel")``. With a Keras 2 SavedModel that
works on a Keras 2 platform (TensorFlow 2.14, AN2DL 2023) and fails under Keras 3
(TensorFlow >= 2.16, the default here), and the other way round for what works
locally. The evaluator must report the difference, with the reason.

Creates (once, cached in ~/.cache/leafsub/runtimes) a virtual environment with
tensorflow==2.14.0 (numpy<2 and scikit-learn beside it): about 2-4 minutes and 1.8 GB the
first time; test_platform_env.py and test_runtimes.py use the same one.
"""

import os

import numpy as np
import pytest

import leafsub

from submissions import color_data, export_saved_model, prototype_model
from submissions import model_py_2022, write_zip

pytestmark = [pytest.mark.runtime, pytest.mark.slow]

RUNTIME = "tensorflow==2.14.0"   # AN2DL 2023's platform (shared with test_platform_env.py)

LOAD_MODEL_PY = '''\
import os
import numpy as np
import tensorflow as tf


class model:
    def __init__(self, path):
        self.model = tf.keras.models.load_model(os.path.join(path, "SubmissionModel"))

    def predict(self, X):
        X = tf.cast(X, tf.float32)
        X = X[..., ::-1] - tf.constant([103.939, 116.779, 123.68])
        return tf.argmax(self.model(X), axis=-1)
'''


def keras2_saved_model(folder):
    """The caffe prototype classifier built with tf_keras (Keras 2) and saved with model.save."""
    import tf_keras

    model = prototype_model("caffe", keras=tf_keras)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(folder)  # a directory path: the SavedModel format of Keras 2
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime")
    images, labels = color_data(per_class=16, seed=5)
    path = str(root / "test.npz")
    np.savez(path, images=images, labels=labels)
    return root, path


def test_keras2_load_model_submission_fails_under_keras3_and_passes_under_tf_2_14(data):
    root, pack = data
    zip_path = write_zip(str(root / "load_model.zip"), {"model.py": LOAD_MODEL_PY, "metadata": ""},
                         {"SubmissionModel": keras2_saved_model(str(root / "k2"))})

    here = leafsub.evaluate(zip_path, pack, progress=False, detective=False)
    platform = leafsub.evaluate(zip_path, pack, progress=False, detective=False, runtime=RUNTIME)

    loads = {c["name"]: c for c in here.checks}["loads"]
    print("default runtime:", loads["detail"])
    assert loads["status"] == "fail" and not here.passed
    assert "load_model" in loads["detail"] and "tf.saved_model.load" in loads["detail"]
    d = platform.to_dict()
    print("tensorflow==2.14.0:", d["child"], d["metrics"]["accuracy"])
    assert platform.passed, [c for c in platform.checks if c["status"] != "pass"]
    assert d["child"]["tensorflow"] == "2.14.0"
    assert d["metrics"]["accuracy"] > 0.9


def test_keras3_export_loads_with_tf_saved_model_under_tf_2_14(data, tmp_path):
    root, pack = data
    folder = export_saved_model(prototype_model("caffe"), str(tmp_path / "sm"))
    zip_path = write_zip(str(tmp_path / "export.zip"),
                         {"model.py": model_py_2022("caffe"), "metadata": ""},
                         {"SubmissionModel": folder})

    result = leafsub.evaluate(zip_path, pack, progress=False, runtime=RUNTIME)

    assert result.passed, [c for c in result.checks if c["status"] != "pass"]
    assert result.to_dict()["child"]["tensorflow"] == "2.14.0"
    assert os.path.isfile(zip_path)


def test_leafsub_built_zip_reproduces_its_goldens_under_tf_2_14(data, tmp_path):
    root, pack = data
    images = color_data(per_class=1, seed=9)[0]
    run = str(tmp_path / "run")
    leafsub.export(prototype_model("caffe"), run, preprocess="caffe",
                   class_names=["Species%d" % i for i in range(1, 9)], probe=images)
    zip_path = str(tmp_path / "built.zip")
    leafsub.build([run], tta=["identity", "hflip"], profile="an2dl-2022", output=zip_path,
                  progress=False)

    result = leafsub.evaluate(zip_path, pack, progress=False, runtime=RUNTIME)

    checks = {c["name"]: c for c in result.checks}
    assert checks["goldens"]["status"] == "pass", checks["goldens"]
    assert result.passed and result.to_dict()["child"]["tensorflow"] == "2.14.0"
