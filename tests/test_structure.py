"""Static structure checks of an extracted submission, against the built-in profiles."""

import zipfile

import pytest

from leafsub.errors import UsageError
from leafsub.evaluator.extract import extract_submission
from leafsub.evaluator.structure import check_structure
from leafsub.profiles import load_profile

MODEL_2022 = '''\
import os

import numpy as np
import tensorflow as tf


class model:
    def __init__(self, path):
        self.model = tf.saved_model.load(os.path.join(path, "SubmissionModel"))

    def predict(self, X):
        return np.argmax(self.model.serve(X), axis=-1)
'''

MODEL_2024 = '''\
import numpy as np
import tensorflow as tf


class Model:
    def __init__(self):
        self.model = tf.saved_model.load("SubmissionModel")

    def predict(self, X):
        return np.argmax(self.model.serve(X), axis=-1)
'''

ALL_CHECKS = ["layout: required files", "model.py: syntax", "model.py: class",
              "model.py: constructor", "model.py: method", "model.py: imports", "layout: models"]


@pytest.fixture(scope="module")
def p2022():
    return load_profile("an2dl-2022")


@pytest.fixture(scope="module")
def p2024():
    return load_profile("an2dl-2024")


def write(root, files):
    """Create ``files`` ({relative path: str or bytes}) below ``root``; returns root."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def saved_model(folder):
    return {folder + "/saved_model.pb": b"pb", folder + "/variables/variables.index": b"i"}


def submission(tmp_path, model_py=MODEL_2022, extra=None, metadata=True):
    files = {"model.py": model_py, **saved_model("SubmissionModel")}
    if metadata:
        files["metadata"] = ""
    files.update(extra or {})
    return write(tmp_path / "sub", files)


def by_name(checks):
    names = [c["name"] for c in checks]
    assert len(names) == len(set(names))
    return {c["name"]: c for c in checks}


def test_good_submissions_pass_every_check(tmp_path, p2022, p2024):
    checks = check_structure(submission(tmp_path), p2022)
    assert [c["name"] for c in checks] == ALL_CHECKS
    assert [c["status"] for c in checks] == ["pass"] * len(ALL_CHECKS)
    details = by_name(checks)
    required = details["layout: required files"]["detail"]
    assert "model.py and metadata at the top of the zip" in required
    assert "os, numpy, tensorflow" not in details["model.py: imports"]["detail"]
    assert "numpy, os, tensorflow" in details["model.py: imports"]["detail"]
    assert "SubmissionModel/ is a TensorFlow SavedModel" in details["layout: models"]["detail"]
    checks = check_structure(submission(tmp_path / "b", MODEL_2024, metadata=False), p2024)
    assert [c["status"] for c in checks] == ["pass"] * len(ALL_CHECKS)


def test_missing_metadata(tmp_path, p2022):
    check = by_name(check_structure(submission(tmp_path, metadata=False), p2022))[
        "layout: required files"]
    assert check["status"] == "fail"
    for words in ("an2dl-2022 profile expects model.py and metadata", "metadata is missing",
                  "create an empty file named metadata", "at the top of the zip"):
        assert words in check["detail"]


def test_metadata_with_an_extension(tmp_path, p2022):
    root = submission(tmp_path, metadata=False, extra={"metadata.txt": ""})
    check = by_name(check_structure(root, p2022))["layout: required files"]
    assert check["status"] == "fail"
    assert "found metadata.txt instead" in check["detail"]
    assert "'metadata' exactly" in check["detail"]


def test_model_py_only_in_a_sub_folder(tmp_path, p2022):
    root = write(tmp_path / "sub", {"code/model.py": MODEL_2022, "metadata": "",
                                    **saved_model("SubmissionModel")})
    checks = by_name(check_structure(root, p2022))
    assert list(checks) == ["layout: required files", "layout: models"]
    check = checks["layout: required files"]
    assert check["status"] == "fail"
    assert "model.py is only in code/model.py, not at the top of the zip" in check["detail"]
    assert "move it up" in check["detail"]


def test_syntax_error_stops_the_model_checks(tmp_path, p2022):
    broken = MODEL_2022.replace("def predict(self, X):", "def predict(self X):")
    checks = by_name(check_structure(submission(tmp_path, broken), p2022))
    assert list(checks) == ["layout: required files", "model.py: syntax", "layout: models"]
    check = checks["model.py: syntax"]
    assert check["status"] == "fail"
    assert check["detail"].startswith("model.py line 11: ")
    assert "def predict(self X):" in check["detail"] and "py_compile" in check["detail"]


def test_model_py_not_utf8(tmp_path, p2022):
    source = ("# coding: utf-8\n# r\xe9sum\xe9\n" + MODEL_2022).encode("latin-1")
    check = by_name(check_structure(submission(tmp_path, source), p2022))["model.py: syntax"]
    assert check["status"] == "fail"
    assert "model.py is not valid UTF-8 (line 2, byte 0xe9)" in check["detail"]
    assert "save it as UTF-8" in check["detail"]


def test_wrong_class_name(tmp_path, p2022):
    checks = by_name(check_structure(submission(tmp_path, MODEL_2024), p2022))
    assert "model.py: constructor" not in checks and "model.py: method" not in checks
    check = checks["model.py: class"]
    assert check["status"] == "fail"
    assert ("found class Model; the an2dl-2022 profile expects `class model` (lower-case), "
            "with __init__(self, path)") in check["detail"]


def test_no_class_at_all(tmp_path, p2024):
    root = submission(tmp_path, "def predict(X):\n    return X\n")
    check = by_name(check_structure(root, p2024))["model.py: class"]
    assert check["status"] == "fail"
    assert "found no top-level class" in check["detail"] and "`class Model`" in check["detail"]


def test_class_bound_by_assignment_is_a_warning(tmp_path, p2022):
    source = MODEL_2022.replace("class model:", "class Inner:") + "\nmodel = Inner\n"
    checks = by_name(check_structure(submission(tmp_path, source), p2022))
    assert checks["model.py: class"]["status"] == "warn"
    assert "binds model with an assignment on line 14" in checks["model.py: class"]["detail"]
    assert "model.py: constructor" not in checks


@pytest.mark.parametrize("signature, status", [
    ("self, path", "pass"),
    ("self, submission_dir", "pass"),
    ("self, path, verbose=False", "pass"),
    ("self, *args, **kwargs", "pass"),
    ("self, path, /", "pass"),
    ("self", "fail"),
    ("self, path, n_models", "fail"),
    ("self, *, path", "fail"),
    ("path", "fail"),
])
def test_constructor_for_the_path_profile(tmp_path, p2022, signature, status):
    source = MODEL_2022.replace("def __init__(self, path):", "def __init__(%s):" % signature)
    check = by_name(check_structure(submission(tmp_path, source), p2022))["model.py: constructor"]
    assert check["status"] == status
    if status == "fail":
        assert "class model has __init__(%s) (line 8)" % signature in check["detail"]
        assert "expects __init__(self, path)" in check["detail"]
        assert "the platform calls model(path)" in check["detail"]


@pytest.mark.parametrize("signature, status", [
    ("self", "pass"),
    ("self, verbose=False", "pass"),
    ("self, path", "fail"),
])
def test_constructor_for_the_no_argument_profile(tmp_path, p2024, signature, status):
    source = MODEL_2024.replace("def __init__(self):", "def __init__(%s):" % signature)
    check = by_name(check_structure(submission(tmp_path, source), p2024))["model.py: constructor"]
    assert check["status"] == status
    if status == "fail":
        assert "has __init__(self, path)" in check["detail"]
        assert "expects __init__(self)" in check["detail"] and "calls Model()" in check["detail"]


def test_missing_constructor(tmp_path, p2022, p2024):
    source = "class model:\n    def predict(self, X):\n        return X\n"
    check = by_name(check_structure(submission(tmp_path, source), p2022))["model.py: constructor"]
    assert check["status"] == "fail"
    assert "has no __init__, but the platform calls model(path)" in check["detail"]
    root = submission(tmp_path / "b", source.replace("class model", "class Model"))
    assert by_name(check_structure(root, p2024))["model.py: constructor"]["status"] == "pass"
    inherited = source.replace("class model:", "class model(Base):")
    check = by_name(check_structure(submission(tmp_path / "c", inherited), p2022))[
        "model.py: constructor"]
    assert check["status"] == "warn" and "base class" in check["detail"]


@pytest.mark.parametrize("method, status", [
    ("    def predict(self, X):", "pass"),
    ("    def predict(self, X, batch_size=32):", "pass"),
    ("    @staticmethod\n    def predict(X):", "pass"),
    ("    def predict(self):", "fail"),
    ("    def predict(self, X, y):", "fail"),
    ("    def forward(self, X):", "fail"),
])
def test_method(tmp_path, p2022, method, status):
    source = MODEL_2022.replace("    def predict(self, X):", method)
    check = by_name(check_structure(submission(tmp_path, source), p2022))["model.py: method"]
    assert check["status"] == status
    if "forward" in method:
        assert "class model has no method predict" in check["detail"]
        assert "add `def predict(self, X):`" in check["detail"]
    elif status == "fail":
        assert "expects predict(self, X)" in check["detail"]


def test_imports_the_platform_may_not_have(tmp_path, p2022):
    source = "import tqdm\nfrom google.colab import drive\n" + MODEL_2022
    check = by_name(check_structure(submission(tmp_path, source), p2022))["model.py: imports"]
    assert check["status"] == "warn"
    assert ("model.py imports tqdm (line 1) and google.colab (line 2), which the platform may "
            "not have; they are not in the zip") in check["detail"]
    source = "import leafsub\n" + MODEL_2022
    check = by_name(check_structure(submission(tmp_path / "b", source), p2022))["model.py: imports"]
    assert "model.py imports leafsub (line 1), which the platform may not have; it is not in the " \
           "zip" in check["detail"]


def test_imports_provided_by_the_zip_guarded_or_relative_are_fine(tmp_path, p2022):
    source = ("import helpers\nfrom utils.images import resize\nfrom . import sibling\n"
              "try:\n    import tqdm\nexcept ImportError:\n    tqdm = None\n"
              "import scipy.special, PIL.Image, cv2, sklearn, h5py, pandas, keras, tf_keras\n"
              + MODEL_2022)
    root = submission(tmp_path, source, extra={"helpers.py": "", "utils/images.py": ""})
    check = by_name(check_structure(root, p2022))["model.py: imports"]
    assert check["status"] == "pass"
    assert "helpers" in check["detail"] and "utils" in check["detail"]


def test_model_folder_holding_a_keras_file(tmp_path, p2022):
    root = write(tmp_path / "sub", {"model.py": MODEL_2022, "metadata": "",
                                    "SubmissionModel/model.keras": b"zip"})
    check = by_name(check_structure(root, p2022))["layout: models"]
    assert check["status"] == "fail"
    for words in ("SubmissionModel/ is not a TensorFlow SavedModel (no saved_model.pb); it holds "
                  "model.keras", "Keras 3 .keras files cannot be read by TF 2.15 and older",
                  "leafsub export"):
        assert words in check["detail"]


def test_savedmodel_one_level_too_deep_and_empty_member(tmp_path, p2022):
    root = write(tmp_path / "sub", {"model.py": MODEL_2022, "metadata": "",
                                    **saved_model("SubmissionModel1/best_model"),
                                    **saved_model("SubmissionModel2")})
    (root / "SubmissionModel3").mkdir()
    check = by_name(check_structure(root, p2022))["layout: models"]
    assert check["status"] == "fail"
    assert ("SubmissionModel1/ is not a TensorFlow SavedModel (no saved_model.pb); it is one level "
            "down, in SubmissionModel1/best_model/") in check["detail"]
    assert "SubmissionModel3/ is not a TensorFlow SavedModel (no saved_model.pb); it is empty" \
        in check["detail"]
    assert "SubmissionModel2/ is a TensorFlow SavedModel" in check["detail"]


def test_ensemble_of_savedmodels(tmp_path, p2022):
    root = write(tmp_path / "sub", {"model.py": MODEL_2022, "metadata": "",
                                    **saved_model("SubmissionModel1"),
                                    **saved_model("SubmissionModel2")})
    check = by_name(check_structure(root, p2022))["layout: models"]
    assert check["status"] == "pass"
    assert "SubmissionModel1/, SubmissionModel2/ are TensorFlow SavedModels" in check["detail"]


def test_keras_weights_beside_a_savedmodel_is_a_warning(tmp_path, p2022):
    root = submission(tmp_path, extra={"weights/best.h5": b"h5"})
    check = by_name(check_structure(root, p2022))["layout: models"]
    assert check["status"] == "warn"
    assert "weights/best.h5: loading it depends on the platform's Keras version" in check["detail"]


def test_no_model_at_all(tmp_path, p2022):
    root = write(tmp_path / "sub", {"model.py": MODEL_2022, "metadata": ""})
    check = by_name(check_structure(root, p2022))["layout: models"]
    assert check["status"] == "warn"
    assert "No SubmissionModel/ folder and no model file found" in check["detail"]


def test_savedmodel_under_another_name(tmp_path, p2022):
    root = write(tmp_path / "sub", {"model.py": MODEL_2022, "metadata": "",
                                    **saved_model("my_model")})
    check = by_name(check_structure(root, p2022))["layout: models"]
    assert check["status"] == "pass"
    assert "SavedModel in my_model/" in check["detail"]


def test_root_must_be_a_folder(tmp_path, p2022):
    with pytest.raises(UsageError, match="does not exist or is not a folder"):
        check_structure(tmp_path / "missing", p2022)


def test_extracted_top_folder_is_checked_as_the_submission(tmp_path, p2022):
    zip_path = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("my_submission/model.py", MODEL_2022)
        zf.writestr("my_submission/metadata", "")
        zf.writestr("my_submission/SubmissionModel/saved_model.pb", b"pb")
    extracted = extract_submission(zip_path, tmp_path / "out")
    assert extracted.top_folder == "my_submission"
    checks = check_structure(extracted.root, p2022)
    assert [c["status"] for c in checks] == ["pass"] * len(ALL_CHECKS)
