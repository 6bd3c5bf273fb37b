"""leafsub evaluate, end to end: real SavedModels, real zips, the real child harness.

The stories: a leafsub-built submission passes and its score is the one we
compute ourselves; hand-written AN2DL 2022 submissions with the usual
preprocessing slips are caught by the mismatch detective; a predict() that
hangs is killed; outputs in the wrong form fail with what the profile expects.
"""

import json

import numpy as np
import pytest

import leafsub
from leafsub.errors import UsageError

from conftest import run_cli
from submissions import (CAFFE_MEAN_BGR, color_data, export_saved_model, model_py_2022,
                         prototype_model, write_zip)

CLASSES_2022 = ["Species%d" % i for i in range(1, 9)]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The colour data set, and the caffe and Rescaling prototype models as SavedModels."""
    root = tmp_path_factory.mktemp("evaluate")
    images, labels = color_data(per_class=30, seed=3)
    data = str(root / "test.npz")
    np.savez(data, images=images, labels=labels)
    models = {}
    for mode in ("caffe", "rescaling"):
        model = prototype_model(mode)
        models[mode] = model
        export_saved_model(model, str(root / ("sm-" + mode)))
    return {"root": root, "data": data, "images": images, "labels": labels, "models": models}


def hand_written(work, name, model_py, mode="caffe", extra=None):
    files = {"model.py": model_py, "metadata": ""}
    files.update(extra or {})
    return write_zip(str(work["root"] / name), files,
                     {"SubmissionModel": str(work["root"] / ("sm-" + mode))})


def by_name(result):
    return {c["name"]: c for c in result.to_dict()["checks"]}


def test_leafsub_built_submission_passes_with_the_accuracy_we_compute(work, tmp_path):
    model = work["models"]["caffe"]
    run = str(tmp_path / "run")
    leafsub.export(model, run, preprocess="caffe", class_names=CLASSES_2022,
                   probe=work["images"][:8])
    zip_path = str(tmp_path / "submission.zip")
    leafsub.build([run], profile="an2dl-2022", output=zip_path, progress=False)
    json_path = str(tmp_path / "result.json")
    html_path = str(tmp_path / "report.html")

    proc = run_cli("evaluate", zip_path, "--data", work["data"], "--json", json_path,
                   "--html", html_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = json.loads(open(json_path).read())
    for key in ("passed", "profile", "n_images", "metrics", "checks", "timing"):
        assert key in d
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion_matrix"):
        assert key in d["metrics"]
    for key in ("load_s", "predict_s", "images_per_s"):
        assert d["timing"][key] is not None
    assert d["passed"] is True and d["profile"] == "an2dl-2022"
    assert d["n_images"] == len(work["labels"])
    statuses = {c["name"]: c["status"] for c in d["checks"]}
    assert statuses["goldens"] == "pass"
    assert statuses["deterministic"] == "pass"
    assert statuses["mismatch detective"] == "pass"
    assert all(s == "pass" for n, s in statuses.items() if n.startswith("variant:"))
    # The same predictions, made here by the Keras model itself with caffe preprocessing:
    x = work["images"].astype(np.float32)[..., ::-1] - CAFFE_MEAN_BGR
    ours = np.argmax(model.predict(x, verbose=0), axis=1)
    assert np.array_equal(np.asarray(d["predictions"]), ours)
    accuracy = float(np.mean(ours == work["labels"]))
    print("accuracy: evaluator %.6f, computed here %.6f" % (d["metrics"]["accuracy"], accuracy))
    assert d["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert accuracy > 0.9
    low, high = d["metrics"]["accuracy_ci"]["low"], d["metrics"]["accuracy_ci"]["high"]
    assert low <= accuracy <= high
    # The terminal, as pytest's: the passing checks on one line, the verdict last, short.
    lines = proc.stdout.splitlines()
    print(proc.stdout)
    assert len(lines) <= 15, proc.stdout
    assert lines[-1].startswith("verdict: PASSED: %d checks passed" % len(d["checks"]))
    folded = [line for line in lines if line.startswith("PASS  %d checks passed: " % len(d["checks"]))]
    assert len(folded) == 1 and folded[0].startswith("PASS  %d checks passed: archive, layout, "
                                                     "model.py" % len(d["checks"]))
    assert len(folded[0]) <= 80 and not any(line.startswith("PASS  goldens") for line in lines)
    assert sum(line.startswith("accuracy ") for line in lines) == 1
    assert "report written to %s" % html_path in proc.stdout
    from leafsub.evaluator.terminal import format_evaluation   # what --verbose prints
    verbose = "\n".join(format_evaluation(d, verbose=True))
    assert "PASS  goldens" in verbose and "PASS  deterministic" in verbose
    assert "checks passed:" not in verbose and verbose.count("\nPASS  ") == len(d["checks"])
    # The report: confusion matrix, and a gallery of the misclassified images, embedded.
    html = open(html_path, encoding="utf-8").read()
    assert 'id="confusion"' in html and 'id="misclassified"' in html
    wrong = int(np.sum(ours != work["labels"]))
    assert wrong > 0 and html.count('<img src="data:image/') == wrong


def test_raw_pixels_to_a_caffe_model_is_named_by_the_detective(work):
    zip_path = hand_written(work, "raw.zip", model_py_2022("raw"), mode="caffe")

    result = leafsub.evaluate(zip_path, work["data"], progress=False)

    detective = by_name(result)["mismatch detective"]
    print(detective["detail"])
    assert detective["status"] in ("warn", "fail")
    assert "caffe" in detective["detail"]
    # Far above chance (1/8): nothing crashes, the score is just lower.
    assert 0.3 < result.accuracy < 0.7
    assert by_name(result)["loads"]["status"] == "pass"


def test_double_scaling_is_named_by_the_detective(work):
    zip_path = hand_written(work, "div.zip", model_py_2022("div255"), mode="rescaling")

    result = leafsub.evaluate(zip_path, work["data"], progress=False)

    detective = by_name(result)["mismatch detective"]
    print(detective["detail"])
    assert detective["status"] == "fail" and not result.passed
    assert "double scaling" in detective["detail"] and "x*255" in detective["detail"]
    assert result.exit_code == 1
    # What the model is fed was read (x/255), and the model's own Rescaling layer says it
    # takes 0-255 pixels: nothing vouches, the candidates ran.
    entry = result.to_dict()["detective"]
    assert entry["fed"][0]["modes"] == ["rescale"] and entry["vouched"] is None


def test_a_hand_written_model_py_that_feeds_the_model_its_training_input_is_vouched_for(work):
    """Raw pixels to a model with its own Rescaling layer, read at the model's input: no
    candidate needs to run (the detective costs the 16 images it read)."""
    zip_path = hand_written(work, "raw-rescaling.zip", model_py_2022("raw"), mode="rescaling")

    result = leafsub.evaluate(zip_path, work["data"], progress=False)

    entry = result.to_dict()["detective"]
    assert result.passed and entry["candidates"] == []
    assert entry["fed"] == [{"model": "SubmissionModel", "how": "tf.saved_model.load",
                             "calls": 1, "rows": 16, "modes": ["none"], "agrees": 16}]
    assert "raw 0-255 pixels" in entry["vouched"] and "Rescaling layer" in entry["vouched"]


def test_correct_hand_written_submission_passes(work):
    zip_path = hand_written(work, "good.zip", model_py_2022("caffe"), mode="caffe")

    result = leafsub.evaluate(zip_path, work["data"], progress=False)

    assert result.passed, [c for c in result.checks if c["status"] != "pass"]
    assert result.accuracy > 0.9
    assert by_name(result)["mismatch detective"]["status"] == "pass"


OUTPUTS = {
    "one-hot": ("np.eye(8, dtype=np.float32)[np.arange(len(X)) % 8]", "output: shape",
                "one-hot"),
    "floats": ("np.arange(len(X)) % 8 * 1.0", "output: type", "float64"),
    "wrong-length": ("np.zeros(len(X) - 1, dtype=np.int64)", "output: shape",
                     "one prediction per image"),
    "strings": ("np.array(['Species1'] * len(X))", "output: type", "strings"),
    "out-of-range": ("np.full(len(X), 8)", "output: labels in range", "outside 0..7"),
}


@pytest.mark.parametrize("kind", sorted(OUTPUTS))
def test_outputs_in_the_wrong_form_fail_saying_what_the_profile_expects(work, kind):
    expr, check_name, words = OUTPUTS[kind]
    body = '''
import numpy as np
class model:
    def __init__(self, path):
        pass
    def predict(self, X):
        X = np.asarray(X)
        return %s
''' % expr
    zip_path = hand_written(work, kind + ".zip", model_py_2022(body=body))

    result = leafsub.evaluate(zip_path, work["data"], progress=False, detective=False,
                              variants=False)

    check = by_name(result)[check_name]
    print(kind, "->", check["detail"])
    assert check["status"] == "fail"
    assert words in check["detail"]
    if kind != "out-of-range":
        assert "class indices" in check["detail"] or "one prediction per image" in check["detail"]
    assert not result.passed


def test_several_data_packs_are_phases(work, tmp_path):
    second = str(tmp_path / "phase2.npz")
    np.savez(second, images=work["images"][:40], labels=work["labels"][:40])
    zip_path = hand_written(work, "phases.zip", model_py_2022("caffe"), mode="caffe")

    result = leafsub.evaluate(zip_path, [work["data"], second], progress=False, detective=False)

    d = result.to_dict()
    assert [p["n_images"] for p in d["phases"]] == [len(work["labels"]), 40]
    assert d["n_images"] == len(work["labels"]) + 40
    assert all(p["metrics"]["accuracy"] > 0.9 for p in d["phases"])


def test_bad_usage_is_exit_2_with_a_message(work, tmp_path):
    zip_path = hand_written(work, "usage.zip", model_py_2022("caffe"), mode="caffe")
    missing = run_cli("evaluate", str(tmp_path / "nope.zip"), "--data", work["data"])
    assert missing.returncode == 2 and "nope.zip does not exist" in missing.stderr
    no_data = run_cli("evaluate", zip_path, "--data", str(tmp_path / "none.npz"))
    assert no_data.returncode == 2 and "none.npz" in no_data.stderr
    assert "Traceback" not in missing.stderr + no_data.stderr
    for flag in ("--batch-size", "--time-limit", "--memory-limit"):
        zero = run_cli("evaluate", zip_path, "--data", work["data"], flag, "0")
        assert zero.returncode == 2 and flag in zero.stderr and "Traceback" not in zero.stderr
    with pytest.raises(UsageError, match="profile"):
        leafsub.evaluate(zip_path, work["data"], profile="an2dl-2099", progress=False)
    too_many = str(tmp_path / "labels.npz")
    np.savez(too_many, images=work["images"][:4], labels=np.array([0, 1, 2, 20]))
    with pytest.raises(UsageError, match="21|20"):
        leafsub.evaluate(zip_path, too_many, progress=False)


PROBABILITIES = '''
import os
import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))


class model:
    def __init__(self, path):
        assert os.getcwd() != HERE, "the profile runs the submission from a scratch folder"
        self.serve = tf.saved_model.load(os.path.join(HERE, "SubmissionModel")).signatures[
            "serving_default"]

    def predict(self, X):
        X = tf.cast(X, tf.float32)[..., ::-1] - tf.constant([103.939, 116.779, 123.68])
        return list(self.serve(X).values())[0].numpy()
'''


def test_a_custom_profile_with_probabilities_and_a_scratch_working_dir(work, tmp_path):
    from leafsub.profiles import load_profile

    profile = load_profile("generic")
    profile.update(name="my-challenge", classes={"count": 8})
    profile["output"]["kind"] = "probabilities"
    profile["interface"]["working_dir"] = "scratch"
    path = tmp_path / "my-challenge.json"
    path.write_text(json.dumps(profile))
    zip_path = hand_written(work, "probabilities.zip", model_py_2022(body=PROBABILITIES))

    proc = run_cli("evaluate", zip_path, "--data", work["data"], "--profile", path,
                   "--no-detective", "--json", tmp_path / "r.json")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = json.loads((tmp_path / "r.json").read_text())
    statuses = {c["name"]: c["status"] for c in d["checks"]}
    assert statuses["output: probabilities"] == "pass" and d["profile"] == "my-challenge"
    assert d["metrics"]["accuracy"] > 0.9
