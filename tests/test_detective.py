"""The mismatch detective tells the truth: ties as ties, evidence from the model itself.

The stories: a hand-written model.py that forgot a caffe model's preprocessing is
restored equally by 'caffe' and by a plain channel swap (the colour model cannot tell
a missing mean from a swapped channel order): the verdict names both and says how to
decide; a double scaling is restored by x*255 alone: the verdict names one. The
model files tell which keras.applications base a model holds (ResNet50, MobileNetV2,
saved by tf.saved_model.save or model.export) and whether it scales its own inputs;
the user's statement (--expect-preprocess, --card) makes a verdict certain or is
contradicted. The pure parts (sequential stopping, ranking) are tested on labels.
"""

import json
import os
import re

import numpy as np
import pytest

import leafsub
from leafsub.evaluator import detective as D

from conftest import run_cli
from submissions import color_data, export_saved_model, model_py_2022, prototype_model, write_zip

CLASSES_2022 = ["Species%d" % i for i in range(1, 9)]
DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "docs", "verdicts.md")
# The end-to-end stories' verdicts, for the docs' detective section (see the last test).
VERDICTS = {}


# --------------------------------------------------------------------------- pure parts

def _fake_predict(truth, right, seen):
    """predict(transform, idx): right on the images where ``right[transform]`` is True."""
    def predict(transform, idx):
        seen.setdefault(transform, 0)
        seen[transform] += len(idx)
        ok = right[transform][idx]
        return np.where(ok, truth[idx], (truth[idx] + 1) % 8)
    return predict


def test_candidates_that_wreck_a_correct_submission_stop_after_16_images():
    truth = np.arange(400) % 8
    base = truth.copy()                                  # the submission is right
    rng = np.random.default_rng(0)
    right = {c["transform"]: rng.random(400) < 0.2 for c in D.CANDIDATES}
    seen = {}

    results = D.run(_fake_predict(truth, right, seen), truth, base)

    assert seen == {c["transform"]: 16 for c in D.CANDIDATES}
    assert all(r["stopped"] == "no better" for r in results["candidates"])
    assert results["ranked"] == [] and D.finding_check(results)["status"] == "pass"


def test_two_candidates_that_restore_the_score_equally_are_one_tied_finding():
    truth = np.arange(400) % 8
    rng = np.random.default_rng(1)
    base = np.where(rng.random(400) < 0.6, truth, (truth + 3) % 8)   # 60 % as submitted
    fixed = rng.random(400) < 0.93
    right = {c["transform"]: rng.random(400) < 0.1 for c in D.CANDIDATES}
    right["caffe"] = fixed
    right["BGR"] = fixed.copy()
    right["BGR"][np.flatnonzero(fixed)[:2]] = False      # two images apart: a tie
    seen = {}

    results = D.run(_fake_predict(truth, right, seen), truth, base)
    check = D.finding_check(results)

    assert results["tied"] == ["caffe", "BGR"] and not results["separable"]
    assert seen["caffe"] == seen["BGR"] == 256           # a tie is tested on every image
    assert check["status"] == "fail" and check["culprit"] is None
    assert "caffe or BGR each restore" in check["detail"]
    assert "cannot tell them apart" in check["detail"]
    assert "channel order" in check["detail"] and "--expect-preprocess" in check["detail"]


def test_a_candidate_clearly_better_than_the_others_is_named_alone():
    truth = np.arange(400) % 8
    rng = np.random.default_rng(2)
    base = np.where(rng.random(400) < 0.5, truth, (truth + 3) % 8)
    right = {c["transform"]: rng.random(400) < 0.1 for c in D.CANDIDATES}
    right["tf"] = rng.random(400) < 0.97
    right["torch"] = rng.random(400) < 0.70              # better than submitted, worse than tf
    results = D.run(_fake_predict(truth, right, {}), truth, base)
    check = D.finding_check(results)

    assert results["ranked"][0] == "tf" and results["separable"]
    assert check["culprit"] == "tf" and "'tf' preprocessing" in check["detail"]
    assert "separated from torch" in check["detail"]


def test_a_framework_adds_a_family_as_one_table_entry():
    # What a torch platform adds: a channel-layout candidate (its own harness transform).
    layout = {"name": "NCHW", "transform": "NCHW", "family": "layout", "aspects": ("layout",),
              "mode": None, "consistent": (), "what": "NHWC pixels read as NCHW",
              "finding": "the channel layout is wrong: model.py reshapes instead of permuting"}
    truth = np.arange(400) % 8
    rng = np.random.default_rng(5)
    base = np.where(rng.random(400) < 0.4, truth, (truth + 3) % 8)
    right = {c["transform"]: rng.random(400) < 0.1 for c in D.CANDIDATES + [layout]}
    right["NCHW"] = rng.random(400) < 0.95
    results = D.run(_fake_predict(truth, right, {}), truth, base, table=D.CANDIDATES + [layout])
    check = D.finding_check(results)

    assert results["ranked"] == ["NCHW"] and check["culprit"] == "NCHW"
    assert "reshapes instead of permuting" in check["detail"]
    assert {c["candidate"]: c["family"] for c in results["candidates"]}["NCHW"] == "layout"


def test_the_statement_makes_a_tie_certain_or_is_contradicted():
    truth = np.arange(400) % 8
    rng = np.random.default_rng(3)
    base = np.where(rng.random(400) < 0.6, truth, (truth + 3) % 8)
    fixed = rng.random(400) < 0.93
    right = {c["transform"]: rng.random(400) < 0.1 for c in D.CANDIDATES}
    right["caffe"], right["BGR"] = fixed, fixed
    results = D.run(_fake_predict(truth, right, {}), truth, base, expected="caffe")

    agree = D.finding_check(results, expected="caffe", expected_from="--expect-preprocess")
    assert agree["culprit"] == "caffe" and "matches your statement" in agree["detail"]
    other = D.finding_check(results, expected="tf", expected_from="--expect-preprocess")
    assert other["culprit"] is None and "contradicts your statement" in other["detail"]


def test_the_models_base_breaks_a_tie_and_is_said():
    truth = np.arange(400) % 8
    rng = np.random.default_rng(4)
    base = np.where(rng.random(400) < 0.6, truth, (truth + 3) % 8)
    fixed = rng.random(400) < 0.93
    right = {c["transform"]: rng.random(400) < 0.1 for c in D.CANDIDATES}
    for name in ("caffe", "tf", "torch"):
        right[name] = fixed
    evidence = {"read": ["SubmissionModel/saved_model.pb"], "layers": [],
                "bases": [{"name": "ResNet50", "key": "resnet50", "preset": "caffe",
                           "file": "SubmissionModel/saved_model.pb"}]}
    results = D.run(_fake_predict(truth, right, {}), truth, base, evidence=evidence)
    check = D.finding_check(results, evidence=evidence)

    assert sorted(results["tied"]) == ["caffe", "tf", "torch"]
    assert "not centred" in check["detail"] and "caffe, tf or torch" in check["detail"]
    assert "most likely caffe" in check["detail"] and check["culprit"] == "caffe"
    assert "ResNet50 base, whose keras preprocessing is caffe" in check["detail"]


def test_a_leafsub_build_whose_card_the_model_confirms_is_vouched_for():
    manifest = {"members": [{"dir": "SubmissionModel", "card": {
        "preprocess": {"mode": "tf"}, "probe": {"through": "declared pipeline"}}}]}
    evidence = {"read": ["SubmissionModel/saved_model.pb"], "layers": [],
                "bases": [{"name": "MobileNetV2", "preset": "tf",
                           "file": "SubmissionModel/saved_model.pb"}]}
    assert "MobileNetV2" in D.vouched(manifest, True, evidence)
    assert D.vouched(manifest, False, evidence) is None          # goldens not reproduced
    assert D.vouched(manifest, True, evidence, expected="caffe") is None  # contradicted
    assert D.vouched(manifest, True, {"read": [], "bases": [], "layers": []}) is None
    # 'none' (the model scales its own inputs) is confirmed by an in-graph Rescaling layer.
    manifest["members"][0]["card"]["preprocess"]["mode"] = "none"
    scaling = {"read": ["SubmissionModel/saved_model.pb"], "bases": [], "layers": [
        {"layer": "Rescaling", "file": "SubmissionModel/saved_model.pb"}]}
    assert "own Rescaling layer" in D.vouched(manifest, True, scaling)
    assert D.vouched(manifest, True, evidence) is None           # MobileNetV2's preset is tf


def test_a_hand_written_model_py_is_vouched_for_by_what_its_model_is_fed():
    evidence = {"read": ["SubmissionModel/saved_model.pb"], "layers": [],
                "bases": [{"name": "MobileNetV2", "preset": "tf",
                           "file": "SubmissionModel/saved_model.pb"}]}
    fed = lambda **kw: [dict({"model": "SubmissionModel", "how": "tf.saved_model.load",
                              "calls": 1, "rows": 16, "modes": ["tf"], "agrees": 16}, **kw)]
    said = D.vouched_by_input(fed(), evidence, 16)
    assert "'tf'-preprocessed images" in said and "MobileNetV2" in said
    assert D.vouched_by_input(fed(modes=["rescale"]), evidence, 16) is None  # not its preset
    assert D.vouched_by_input(fed(modes=[]), evidence, 16) is None    # fed something else
    assert D.vouched_by_input(fed(agrees=15), evidence, 16) is None   # another path answers
    assert D.vouched_by_input(fed(rows=8), evidence, 16) is None      # fed a part only
    assert D.vouched_by_input(fed(), evidence, 16, expected="caffe") is None  # contradicted
    assert D.vouched_by_input(fed(model="other.keras"), evidence, 16) is None  # no evidence
    two = fed() + fed(model="Second")
    assert D.vouched_by_input(two, evidence, 16) is None              # an ensemble
    # A model file's own evidence: the file itself, not a folder of that name.
    keras_file = {"read": ["m.keras"], "bases": [], "layers": [
        {"layer": "Rescaling", "file": "m.keras"}]}
    assert "own Rescaling layer" in D.vouched_by_input(
        fed(model="m.keras", modes=["none"]), keras_file, 16)


def test_a_forged_fed_reply_is_refused():
    from leafsub.evaluator import untrusted

    good = {"model": "m", "how": "h", "calls": 1, "rows": 16, "modes": ["tf"], "agrees": 16}
    assert untrusted.check_fed([good], D.FED_SPECS) == [good]
    for bad in ({"modes": ["rm -rf"]}, {"agrees": True}, {"rows": "16"}, {"model": None}):
        with pytest.raises(untrusted.Untrusted):
            untrusted.check_fed([dict(good, **bad)], D.FED_SPECS)
    with pytest.raises(untrusted.Untrusted):
        untrusted.check_fed({"model": "m"}, D.FED_SPECS)


def test_a_model_that_answers_one_class_is_not_dropped_on_16_images():
    # No discordant pair at all (every image gets the same class, transformed or not):
    # 16 images cannot exclude a 5-point gain, 64 can.
    y = np.arange(64) % 8
    same = np.zeros(64, dtype=np.int64)
    assert D.look(D.judge("tf", y[:16], same[:16], same[:16])) is None
    assert D.look(D.judge("tf", y, same, same)) == "no better"


def test_sequential_bounds_are_exact_binomial_bounds():
    # P(X <= 0 | n=10, p) = 0.01 at p = 1 - 0.01 ** (1 / 10)
    assert D.upper_bound(0, 10, 0.01) == pytest.approx(1 - 0.01 ** 0.1, abs=1e-9)
    assert D.upper_bound(5, 10, 0.01) > 0.5 > D.upper_bound(0, 10, 0.01)


# --------------------------------------------------------------------------- the evidence

@pytest.fixture(scope="module")
def keras_applications(tmp_path_factory):
    """ResNet50 by tf.saved_model.save, MobileNetV2 by model.export, a .keras file."""
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("evidence")
    resnet = keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=8)
    tf.saved_model.save(resnet, str(root / "resnet" / "SubmissionModel"))
    mobile = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None,
                                            include_top=False, pooling="avg")
    inputs = keras.Input((96, 96, 3))
    outputs = keras.layers.Dense(8, activation="softmax")(mobile(inputs))
    wrapped = keras.Model(inputs, outputs)
    export_saved_model(wrapped, str(root / "mobile" / "SubmissionModel"))
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(8)(x)).save(str(root / "plain.keras"))
    return root


def test_the_model_files_name_their_keras_applications_base(keras_applications):
    from leafsub.evaluator import evidence

    resnet = evidence.read(str(keras_applications / "resnet"))
    assert resnet["read"] == ["SubmissionModel/saved_model.pb"]
    assert [(b["name"], b["preset"]) for b in resnet["bases"]] == [("ResNet50", "caffe")]
    mobile = evidence.read(str(keras_applications / "mobile"))
    assert [(b["name"], b["preset"]) for b in mobile["bases"]] == [("MobileNetV2", "tf")]
    assert "MobileNetV2 base, whose keras preprocessing is tf" in D.evidence_sentence(mobile)


def test_a_keras_file_shows_its_rescaling_layer_and_nothing_is_said_as_nothing(
        keras_applications, tmp_path):
    from leafsub.evaluator import evidence

    plain = evidence.read(str(keras_applications))
    rescaling = [x for x in plain["layers"] if x["file"] == "plain.keras"]
    assert rescaling and rescaling[0]["scale"] == pytest.approx(1 / 127.5)
    assert rescaling[0]["offset"] == -1
    nothing = D.evidence_sentence(evidence.read(str(tmp_path)))
    assert "no model file was found" in nothing and "SavedModel, .keras or .h5" in nothing
    assert "TorchScript" in nothing   # both frameworks are named
    torch_zip = tmp_path / "torch" / "SubmissionModel"
    torch_zip.mkdir(parents=True)
    (torch_zip / "model.pt").write_bytes(b"PK")
    said = D.evidence_sentence(evidence.read(str(tmp_path / "torch")))
    assert "PyTorch model (SubmissionModel/model.pt)" in said and "SavedModel" not in said


# --------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    root = tmp_path_factory.mktemp("detective")
    images, labels = color_data(per_class=40, seed=5)
    data = str(root / "test.npz")
    np.savez(data, images=images, labels=labels)
    for mode in ("caffe", "rescaling"):
        export_saved_model(prototype_model(mode), str(root / ("sm-" + mode)))
    return {"root": root, "data": data, "images": images}


def _zip(colour, name, preprocess, mode):
    return write_zip(str(colour["root"] / name),
                     {"model.py": model_py_2022(preprocess), "metadata": ""},
                     {"SubmissionModel": str(colour["root"] / ("sm-" + mode))})


def _evaluate(colour, zip_path, tmp_path, *args):
    out = tmp_path / "r.json"
    proc = run_cli("evaluate", zip_path, "--data", colour["data"], "--json", out, "-q", *args)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return proc, json.loads(out.read_text())


def test_a_tie_is_named_as_a_tie_by_the_cli(colour, tmp_path):
    zip_path = _zip(colour, "raw.zip", "raw", "caffe")

    proc, result = _evaluate(colour, zip_path, tmp_path)

    det = result["detective"]
    print(det["verdict"])
    VERDICTS["tie"] = (proc.returncode, det)
    assert proc.returncode == 1
    assert set(det["tied"]) >= {"caffe", "BGR"} and det["separable"] is False
    assert "cannot tell them apart" in det["verdict"] and "caffe" in det["verdict"]
    ranked = {c["candidate"]: c for c in det["candidates"]}
    assert all(ranked[n]["p_value"] < D.ALPHA for n in det["tied"])
    assert det["evidence"]["read"] == ["SubmissionModel/saved_model.pb"]
    assert "no known keras.applications base" in det["verdict"]


def test_a_separated_finding_is_named_alone_by_the_cli(colour, tmp_path):
    zip_path = _zip(colour, "div.zip", "div255", "rescaling")

    proc, result = _evaluate(colour, zip_path, tmp_path)

    det = result["detective"]
    print(det["verdict"])
    VERDICTS["separated"] = (proc.returncode, det)
    assert proc.returncode == 1 and det["separable"] is True and det["culprit"] == "x*255"
    assert "double scaling" in det["verdict"]
    assert "Rescaling layer (x * 0.00392157 + 0)" in det["verdict"]


def test_expect_preprocess_agreeing_makes_the_verdict_certain(colour, tmp_path):
    zip_path = _zip(colour, "raw2.zip", "raw", "caffe")

    proc, result = _evaluate(colour, zip_path, tmp_path, "--expect-preprocess", "caffe")

    det = result["detective"]
    VERDICTS["stated"] = (proc.returncode, det)
    assert proc.returncode == 1 and det["culprit"] == "caffe"
    assert det["expected"] == {"mode": "caffe", "from": "--expect-preprocess"}
    assert "matches your statement that training used 'caffe'" in det["verdict"]


def test_a_card_that_disagrees_is_reported_as_contradicted(colour, tmp_path):
    run = str(tmp_path / "run-tf")   # a card that says 'tf' for the caffe model
    leafsub.export(prototype_model("caffe"), run, preprocess="tf", class_names=CLASSES_2022,
                   probe=colour["images"][:4])
    zip_path = _zip(colour, "raw3.zip", "raw", "caffe")

    proc, result = _evaluate(colour, zip_path, tmp_path, "--card", run)

    det = result["detective"]
    VERDICTS["contradicted"] = (proc.returncode, det)
    assert proc.returncode == 1 and det["culprit"] is None
    assert "contradicts your statement that training used 'tf'" in det["verdict"]
    assert "leafsub.json" in det["expected"]["from"]


def test_a_bad_statement_is_a_usage_error(colour, tmp_path):
    zip_path = _zip(colour, "raw4.zip", "raw", "caffe")
    proc = run_cli("evaluate", zip_path, "--data", colour["data"], "--expect-preprocess",
                   "bgr")
    assert proc.returncode == 2 and "not a preprocessing mode" in proc.stderr
    assert "caffe, tf, torch, rescale, none" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- the docs

STORIES = [
    ("tie", "a caffe model, model.py feeds raw pixels (`model_py_2022('raw')`)"),
    ("separated", "a model with its own Rescaling(1/255), model.py divides by 255 again"),
    ("stated", "the tie above, with `--expect-preprocess caffe`"),
    ("contradicted", "the tie above, with `--card RUN_DIR` whose card says 'tf'"),
]
MARKER = ("<!-- generated by tests/test_detective.py (LEAFSUB_WRITE_VERDICTS=1 pytest "
          "tests/test_detective.py); a test checks it -->")


def _doc_section():
    lines = [MARKER, "\n\n## The mismatch detective\n\n",
             "`leafsub evaluate` on a hand-written AN2DL 2022 zip of the colour-prototype "
             "models of `tests/submissions.py` (no training needed), with the JSON "
             "`detective` entry's verdict. A tie names every candidate it cannot separate "
             "and how to decide; one name only when it is separated from the rest.\n\n",
             "| story | tied / culprit | status | exit | verdict |\n|---|---|---|---|---|\n"]
    for key, story in STORIES:
        code, det = VERDICTS[key]
        lines.append("| %s | %s / %s | %s | %d | %s |\n" % (
            story, ", ".join(det["tied"]), det["culprit"] or "-", det["status"], code,
            re.sub(r"/\S*/leafsub.json", "RUN_DIR/leafsub.json", det["verdict"])
            .replace("|", "\\|")))
    return "".join(lines)


def _shape(text):
    return re.sub(r"[0-9]", "#", text)


def test_the_docs_show_a_tie_verdict_and_a_separated_one():
    if set(VERDICTS) != {k for k, _ in STORIES}:
        pytest.skip("run with the end-to-end stories above (the whole file)")
    section = _doc_section()
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    if os.environ.get("LEAFSUB_WRITE_VERDICTS"):
        head = text[:text.index(MARKER)] if MARKER in text else text.rstrip("\n") + "\n\n"
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(head + section)
        text = head + section
    assert MARKER in text, "docs/verdicts.md lacks the detective section: regenerate it"
    assert _shape(text[text.index(MARKER):]) == _shape(section), (
        "docs/verdicts.md's detective section is out of step: LEAFSUB_WRITE_VERDICTS=1 pytest "
        "tests/test_detective.py")
