"""leafsub bundle: the organizer's half of the protocol, written from the same profile.

The stories: course staff turn a profile and their hidden test set into a Codabench
bundle that validates against the competition.yaml schema (built-in and custom
profiles); the mistakes the platforms' trackers report (a program folder without
its metadata.yaml, leaderboard columns the scores do not fill, a bundle zipped with
its folder, an image without TensorFlow, a time limit the default queue ignores) are
caught by --check before upload; and --check runs a correct submission, one with a
preprocessing slip and one whose predict raises through the bundle's programs, laid
out as a compute worker does, with the scores and failures of leafsub evaluate.
"""

import json
import os
import subprocess
import sys
import zipfile

import jsonschema
import numpy as np
import pytest
import yaml

import leafsub
from leafsub.jsonfiles import schema
from leafsub.profiles import load_profile
from leafsub.organizer.check import worker_command

from conftest import run_cli
from submissions import color_data, export_saved_model, model_py_2022, prototype_model, write_zip


def read_bundle(path):
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        doc = yaml.safe_load(z.read("competition.yaml"))
        return z, names, doc


def as_json(doc):
    """competition.yaml as the schema reads it (YAML dates become ISO strings)."""
    return json.loads(json.dumps(doc, default=str))


def rewrite(src, dst, edit=None, drop=(), prefix=""):
    """A copy of bundle ``src`` with entries dropped, competition.yaml edited, a top folder."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if info.filename == "competition.yaml" and edit:
                doc = yaml.safe_load(data)
                edit(doc)
                data = yaml.safe_dump(doc, sort_keys=False).encode()
            zout.writestr(prefix + info.filename, data)
    return dst


@pytest.fixture(scope="module")
def hidden(tmp_path_factory):
    """A small hidden test set (8 colour classes, 96x96) as an .npz."""
    root = tmp_path_factory.mktemp("bundle-data")
    images, labels = color_data(per_class=4, seed=5)
    path = str(root / "test.npz")
    np.savez(path, images=images, labels=labels)
    return {"root": root, "path": path, "images": images, "labels": labels}


@pytest.fixture(scope="module")
def an2dl_bundle(hidden):
    path = str(hidden["root"] / "competition.zip")
    proc = run_cli("bundle", "--profile", "an2dl-2022", "--data", hidden["path"], "-o", path,
                   "--start", "2026-09-01")
    assert proc.returncode == 0, proc.stderr
    return path


def test_an2dl_2022_bundle_validates_and_splits_the_hidden_data(an2dl_bundle, hidden):
    z, names, doc = read_bundle(an2dl_bundle)
    jsonschema.validate(as_json(doc), schema("competition"))
    assert doc["version"] == 2
    assert doc["docker_image"] == "tensorflow/tensorflow:2.10.0"   # the profile's TensorFlow
    (phase,) = doc["phases"]
    assert phase["execution_time_limit"] == 1200 and phase["tasks"] == [0]
    task = doc["tasks"][0]
    # Every path competition.yaml names is in the zip; every program has its command.
    for rel in [doc["image"], doc["terms"]] + [p["file"] for p in doc["pages"]]:
        assert rel in names, rel
    with zipfile.ZipFile(an2dl_bundle) as z:
        for program in ("ingestion_program", "scoring_program"):
            meta = yaml.safe_load(z.read(task[program] + "/metadata.yaml"))
            assert meta["command"].startswith("python3 $")
        protocol = json.loads(z.read("scoring_program/protocol.json"))
        inputs = [n for n in names if n.startswith(task["input_data"] + "/") and
                  not n.endswith("/")]
        refs = [n for n in names if n.startswith(task["reference_data"] + "/") and
                not n.endswith("/")]
        images = np.load(z.open(task["input_data"] + "/images.npy"))
        labels = np.load(z.open(task["reference_data"] + "/labels.npy"))
        readme = z.read("README.md").decode()
    # The leaderboard reads exactly the keys the scoring program writes.
    columns = [c["key"] for c in doc["leaderboards"][0]["columns"]]
    assert columns == protocol["score_keys"] == ["accuracy", "balanced_accuracy", "macro_f1"]
    # Input data: the images only; reference data: the labels.
    assert inputs == [task["input_data"] + "/images.npy"]
    assert sorted(os.path.basename(n) for n in refs) == ["classes.json", "labels.npy"]
    assert images.dtype == np.uint8 and images.shape == hidden["images"].shape
    assert np.array_equal(images, hidden["images"]) and np.array_equal(labels, hidden["labels"])
    assert "Upload" in readme and "1200 s" in readme and "metadata.yaml" in readme


def test_the_same_profile_and_data_give_the_same_bundle_bytes(an2dl_bundle, hidden, tmp_path):
    again = str(tmp_path / "again.zip")
    proc = run_cli("bundle", "--profile", "an2dl-2022", "--data", hidden["path"], "-o", again,
                   "--start", "2026-09-01")
    assert proc.returncode == 0, proc.stderr
    with open(an2dl_bundle, "rb") as a, open(again, "rb") as b:
        assert a.read() == b.read()


def test_custom_profile_two_phases_and_a_limit_the_default_queue_caps(hidden, tmp_path):
    profile = load_profile("an2dl-2024")
    profile.update(name="cells-32", title="Cells, 32x32, three classes")
    profile.pop("tensorflow", None)
    profile["input"]["shape"] = [32, 32, 3]
    profile["classes"] = {"count": 3, "names": ["a", "b", "c"]}
    profile["limits"]["time_s"] = 3600
    path = tmp_path / "cells.json"
    path.write_text(json.dumps(profile))
    images, labels = color_data(per_class=3, size=40, seed=1, colors=np.array(
        [[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float32))
    for name in ("dev", "final"):
        np.savez(str(tmp_path / (name + ".npz")), images=images, labels=labels)
    out = str(tmp_path / "cells.zip")
    proc = run_cli("bundle", "--profile", str(path), "--data", str(tmp_path / "dev.npz"),
                   "--phase", "final=%s" % (tmp_path / "final.npz"), "-o", out,
                   "--start", "2027-01-04")
    assert proc.returncode == 0, proc.stderr
    _, names, doc = read_bundle(out)
    jsonschema.validate(as_json(doc), schema("competition"))
    dev, final = doc["phases"]
    assert (dev["name"], final["name"]) == ("dev", "final")
    assert str(dev["end"]) == str(final["start"]) == "2027-02-01"   # sequential, 28 days
    assert "end" not in final
    # 3600 s in the profile, but the default queue stops every run at 1200 s.
    assert dev["execution_time_limit"] == final["execution_time_limit"] == 1200
    with zipfile.ZipFile(out) as z:
        readme = z.read("README.md").decode()
        protocol = json.loads(z.read("ingestion_program/protocol.json"))
        shape = np.load(z.open("phases/final/input_data/images.npy")).shape
    assert "3600 s" in readme and "default queue" in readme
    assert protocol["interface"]["class_name"] == "Model" and protocol["input"]["dtype"] == "uint8"
    assert protocol["time_limit_s"] == 1200 - 30
    assert any("1200 s" in a for a in protocol["assumptions"])
    assert shape == (9, 32, 32, 3)                       # resized to the profile's input
    assert doc["docker_image"].startswith("tensorflow/tensorflow:")


def test_classic_codalab_bundle_has_the_same_programs_as_zips(an2dl_bundle, hidden, tmp_path):
    out = str(tmp_path / "classic.zip")
    proc = run_cli("bundle", "--profile", "an2dl-2022", "--data", hidden["path"], "-o", out,
                   "--start", "2026-09-01", "--format", "codalab")
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out) as z, zipfile.ZipFile(an2dl_bundle) as bench:
        doc = yaml.safe_load(z.read("competition.yaml"))
        assert "version" not in doc
        assert doc["competition_docker_image"] == "tensorflow/tensorflow:2.10.0"
        phase = doc["phases"][1]
        assert (phase["label"], phase["execution_time_limit"]) == ("test", 1200)
        for key in ("ingestion_program", "scoring_program", "input_data", "reference_data"):
            assert phase[key] in z.namelist()
        for page in doc["html"].values():
            assert z.read(page).startswith(b"<h1>")
        columns = doc["leaderboard"]["columns"]
        assert list(columns) == ["accuracy", "balanced_accuracy", "macro_f1"]
        assert all(c["leaderboard"] == doc["leaderboard"]["leaderboards"]["Results"]
                   for c in columns.values())
        for program, main in (("ingestion_program", "ingestion.py"),
                              ("scoring_program", "score.py")):
            with zipfile.ZipFile(z.open(phase[program])) as inner:
                assert "metadata" in inner.namelist() and "metadata.yaml" not in inner.namelist()
                assert yaml.safe_load(inner.read("metadata")) == yaml.safe_load(
                    bench.read(program + "/metadata.yaml"))
                assert inner.read(main) == bench.read(program + "/" + main)
        with zipfile.ZipFile(z.open(phase["input_data"])) as inner:
            assert inner.namelist() == ["images.npy"]
    submission = write_zip(str(tmp_path / "s.zip"), {"model.py": "x = 1\n", "metadata": ""})
    proc = run_cli("bundle", "--check", out, "--submission", submission, "-q")
    assert proc.returncode == 1 and "is a classic CodaLab bundle" in proc.stdout


def test_the_schema_refuses_what_the_unpacker_refuses(an2dl_bundle):
    _, _, doc = read_bundle(an2dl_bundle)
    validator = jsonschema.Draft202012Validator(schema("competition"))
    assert not list(validator.iter_errors(as_json(doc)))
    for field in ("terms", "image", "leaderboards", "pages"):
        broken = as_json(doc)
        del broken[field]
        assert list(validator.iter_errors(broken)), field
    broken = as_json(doc)
    del broken["tasks"][0]["scoring_program"]
    assert list(validator.iter_errors(broken))
    broken = as_json(doc)
    broken["version"] = 1.5
    assert list(validator.iter_errors(broken))


@pytest.mark.parametrize("case, expect", [
    ("no metadata.yaml", "FAIL  bundle: programs: ingestion_program: no metadata.yaml"),
    ("column not written", "FAIL  bundle: leaderboard columns: the leaderboard column "
                           "top1_accuracy is not among the keys"),
    ("zipped with its folder", "FAIL  bundle: competition.yaml: "),
    ("legacy image", "FAIL  bundle: docker image: docker_image codalab/codalab-legacy:py3 has "
                     "no TensorFlow"),
    ("empty page", "FAIL  bundle: files: pages/terms.md (empty"),
])
def test_check_refuses_the_bundles_the_trackers_report(an2dl_bundle, tmp_path, case, expect):
    def rename_column(doc):
        doc["leaderboards"][0]["columns"][0]["key"] = "top1_accuracy"

    def drop_image(doc):
        del doc["docker_image"]

    broken = str(tmp_path / "broken.zip")
    if case == "no metadata.yaml":
        rewrite(an2dl_bundle, broken, drop={"ingestion_program/metadata.yaml"})
    elif case == "column not written":
        rewrite(an2dl_bundle, broken, edit=rename_column)
    elif case == "zipped with its folder":
        rewrite(an2dl_bundle, broken, prefix="competition/")
    elif case == "legacy image":
        rewrite(an2dl_bundle, broken, edit=drop_image)
    else:
        with zipfile.ZipFile(an2dl_bundle) as zin, zipfile.ZipFile(broken, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, b"" if info.filename == "pages/terms.md"
                              else zin.read(info.filename))
    submission = write_zip(str(tmp_path / "s.zip"), {"model.py": "x = 1\n", "metadata": ""})
    proc = run_cli("bundle", "--check", broken, "--submission", submission, "-q")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert expect in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr
    if case == "zipped with its folder":
        assert "found competition/competition.yaml" in proc.stdout


def test_check_warns_about_a_time_limit_the_default_queue_ignores(an2dl_bundle, tmp_path):
    def longer(doc):
        doc["phases"][0]["execution_time_limit"] = 3600
        doc["docker_image"] = "codalab/codalab-legacy:py39"

    broken = rewrite(an2dl_bundle, str(tmp_path / "long.zip"), edit=longer)
    submission = write_zip(str(tmp_path / "s.zip"), {"model.py": "x = 1\n", "metadata": ""})
    proc = run_cli("bundle", "--check", broken, "--submission", submission, "-q")
    assert proc.returncode == 1
    assert "WARN  bundle: time limit: phase test sets execution_time_limit 3600 s" in proc.stdout


def test_check_gives_the_same_verdict_for_a_zip_without_model_py(an2dl_bundle, tmp_path):
    # Nothing to import: evaluate stops at the layout, the ingestion before the framework.
    submission = write_zip(str(tmp_path / "empty.zip"), {"metadata": "", "notes.txt": "hi"})
    report = str(tmp_path / "r.json")
    proc = run_cli("bundle", "--check", an2dl_bundle, "--submission", submission, "-q",
                   "--json", report)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS  test: same verdict: both failed loads: the submission has no model.py at its " \
           "top level" in proc.stdout
    with open(report) as f:
        task = json.load(f)["tasks"][0]
    assert task["scores"] is None and task["ingestion"]["exit_code"] == 1
    assert "FAIL layout: model.py" in task["ingestion"]["log"]


def test_the_ingestion_stops_itself_with_a_verdict_before_the_workers_limit(an2dl_bundle,
                                                                           tmp_path):
    # The worker's alarm kills the container with no word of why; the ingestion's own
    # watchdog (the phase's limit minus a margin; 2 s here) writes the verdict first.
    with zipfile.ZipFile(an2dl_bundle) as z:
        z.extractall(tmp_path / "bundle")
    program = tmp_path / "bundle" / "ingestion_program"
    protocol = json.loads((program / "protocol.json").read_text())
    protocol["time_limit_s"] = 2
    (program / "protocol.json").write_text(json.dumps(protocol))
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "metadata").write_text("")
    (submission / "model.py").write_text("import time\n\nclass model:\n    def __init__(self, "
                                         "path):\n        time.sleep(600)\n")
    output = tmp_path / "output"
    proc = subprocess.run([sys.executable, str(program / "ingestion.py"),
                           str(tmp_path / "bundle" / "phases" / "test" / "input_data"),
                           str(output), str(program), str(submission)],
                          cwd=str(program), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "FAIL loads: the submission was stopped at the time limit of 2 s while loading" \
        in proc.stdout
    result = json.loads((output / "leafsub-ingestion.json").read_text())
    assert result["passed"] is False and result["checks"][-1]["name"] == "loads"
    assert not (output / "metadata").exists()


def test_worker_command_maps_the_workers_names_to_the_local_layout():
    mounts = {"/app/program": "/w/ingestion_program", "/app/input_data": "/w/input_data",
              "/app/output": "/w/output", "/app/ingested_program": "/w/program"}
    line = worker_command("python3 $ingestion_program/ingestion.py $input $output "
                          "$ingestion_program $submission_program", "ingestion", False, mounts)
    assert line == ("python3 /w/ingestion_program/ingestion.py /w/input_data /w/output "
                    "/w/ingestion_program /w/program")
    mounts = {"/app/program": "/s/program", "/app/input": "/s/input", "/app/output": "/s/out"}
    assert worker_command("python3 $program/score.py $input $output", "program", True,
                          mounts) == "python3 /s/program/score.py /s/input /s/out"


def test_usage_errors_are_one_paragraph(tmp_path, hidden):
    proc = run_cli("bundle", "--check", str(tmp_path / "nope.zip"), "--submission",
                   str(tmp_path / "nope2.zip"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = run_cli("bundle", "--check", str(tmp_path / "nope.zip"))
    assert proc.returncode == 2 and "needs --submission" in proc.stderr
    proc = run_cli("bundle", "--data", hidden["path"], "--phase", "final", "-o",
                   str(tmp_path / "c.zip"))
    assert proc.returncode == 2 and "expected NAME=DATA" in proc.stderr
    assert not os.path.exists(tmp_path / "c.zip")
    proc = run_cli("bundle", "--profile", "an2dl-2023", "--data", hidden["path"], "-o",
                   str(tmp_path / "c.zip"))
    assert proc.returncode == 2 and "2 classes" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "c.zip")


# --------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def submissions(hidden):
    """A correct hand-written AN2DL 2022 zip, one that forgot caffe, one whose predict raises."""
    root = hidden["root"]
    saved = export_saved_model(prototype_model("caffe"), str(root / "sm"))
    raises = model_py_2022(body='''\
        class model:
            def __init__(self, path):
                self.path = path

            def predict(self, X):
                raise ValueError("the input is not what this model expects")
        ''')
    return {
        "correct": write_zip(str(root / "correct.zip"), {"model.py": model_py_2022("caffe"),
                                                         "metadata": ""},
                             {"SubmissionModel": saved}),
        "slip": write_zip(str(root / "slip.zip"), {"model.py": model_py_2022("raw"),
                                                   "metadata": ""}, {"SubmissionModel": saved}),
        "raises": write_zip(str(root / "raises.zip"), {"model.py": raises, "metadata": ""}),
        "saved": saved,
    }


@pytest.mark.slow
def test_check_gives_evaluates_scores_and_failures(an2dl_bundle, hidden, submissions, tmp_path):
    outcomes = {}
    for name in ("correct", "slip", "raises"):
        report = str(tmp_path / (name + ".json"))
        proc = run_cli("bundle", "--check", an2dl_bundle, "--submission", submissions[name],
                       "--json", report, "-q")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "verdict: the bundle agrees with leafsub evaluate" in proc.stdout
        assert "docker was not run" in proc.stdout
        with open(report) as f:
            outcomes[name] = json.load(f)["tasks"][0]
    # Independently of --check's own comparison: leafsub evaluate on the original data (the
    # slip, whose score is not known in advance; the correct one scores every image right).
    result = leafsub.evaluate(submissions["slip"], hidden["path"], progress=False,
                              detective=False, variants=False)
    assert outcomes["slip"]["scores"] == {k: result.metrics[k] for k in (
        "accuracy", "balanced_accuracy", "macro_f1")}
    assert outcomes["correct"]["scores"] == {"accuracy": 1.0, "balanced_accuracy": 1.0,
                                             "macro_f1": 1.0}
    assert outcomes["correct"]["evaluate"]["metrics"] == outcomes["correct"]["scores"]
    assert 0.25 < outcomes["slip"]["scores"]["accuracy"] < 0.9   # silent: runs, scores less
    raised = outcomes["raises"]
    assert raised["scores"] is None and raised["scoring"]["exit_code"] == 1
    assert raised["ingestion"]["exit_code"] == 1
    assert raised["evaluate"]["failed"] == ["predicts"]
    # The participant's log holds leafsub's verdict, with their own traceback line.
    log = raised["ingestion"]["log"]
    assert ("FAIL predicts: predict() raised ValueError on a batch of 32 images: the input is "
            "not what this model expects") in log
    assert 'model.py", line 6, in predict' in log
    assert "FAIL predicts" in raised["scoring"]["log"]


@pytest.mark.slow
def test_check_fails_a_hand_edited_ingestion_that_differs_and_runs_a_top_folder(
        an2dl_bundle, hidden, submissions, tmp_path):
    # The organizers' half differs from the students' replay: the ingestion feeds 0-1 values.
    edited = str(tmp_path / "edited.zip")
    with zipfile.ZipFile(an2dl_bundle) as zin, zipfile.ZipFile(edited, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "ingestion_program/protocol.json":
                protocol = json.loads(data)
                protocol["input"]["range"] = [0, 1]
                data = json.dumps(protocol).encode()
            zout.writestr(info.filename, data)
    # Through the Python API, in a process of its own: writing and checking a bundle never
    # imports TensorFlow (only the programs and evaluate's child do).
    code = ("import sys; from leafsub.organizer.bundle import make_bundle; "
            "from leafsub.organizer.check import check_bundle; "
            "make_bundle('an2dl-2022', %r, output=%r); "
            "r = check_bundle(%r, %r, progress=False); "
            "print([c['detail'] for c in r['checks'] if c['status'] == 'fail']); "
            "print('tensorflow' in sys.modules)"
            % (hidden["path"], str(tmp_path / "again.zip"), edited, submissions["correct"]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    failed, imported = proc.stdout.strip().splitlines()[-2:]
    assert imported == "False"
    assert "the bundle scored accuracy" in failed and "predictions differ" in failed
    # A zip of a folder: evaluate fails the layout, the bundle runs it and says so.
    top = write_zip(str(tmp_path / "top.zip"), {"mine/model.py": model_py_2022("caffe"),
                                                 "mine/metadata": ""},
                    {"mine/SubmissionModel": submissions["saved"]})
    proc = run_cli("bundle", "--check", an2dl_bundle, "--submission", top, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARN  test: top folder: leafsub evaluate fails this zip's top folder" in proc.stdout
    assert "PASS  test: same scores: accuracy 1.0000" in proc.stdout


def test_the_programs_parse_as_the_python_of_the_oldest_image_they_name(an2dl_bundle):
    # tensorflow/tensorflow:2.10.0 (an2dl-2022) has Python 3.8: the programs, and the
    # evaluator files copied beside them, must not use newer syntax.
    import ast

    with zipfile.ZipFile(an2dl_bundle) as z:
        for name in z.namelist():
            if name.endswith(".py"):
                ast.parse(z.read(name).decode("utf-8"), filename=name, feature_version=(3, 8))


# --------------------------------------------------------------------------- series profiles

@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """AN2DL 2022 time-series hidden data: float32 [72, 36, 6] in sensor units, and a float64
    phase, as a course might keep them; and the an2dl-2022-ts bundle written from them."""
    from test_series import series_data, write_pack

    root = tmp_path_factory.mktemp("bundle-series")
    x, y = series_data(seed=3)
    x64, y64 = series_data(per_class=2, seed=4)
    x64 = x64.astype(np.float64)
    data = write_pack(root / "series.npz", x, y)
    final = write_pack(root / "final.npz", x64, y64)
    bundle = str(root / "competition.zip")
    proc = run_cli("bundle", "--profile", "an2dl-2022-ts", "--data", data,
                   "--phase", "final=%s" % final, "-o", bundle, "--start", "2026-09-01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"root": root, "data": data, "x": x, "y": y, "x64": x64, "y64": y64,
            "bundle": bundle, "stdout": proc.stdout}


def test_a_series_bundle_stores_the_samples_as_the_pack_holds_them(series):
    z, names, doc = read_bundle(series["bundle"])
    jsonschema.validate(as_json(doc), schema("competition"))
    assert doc["docker_image"] == "tensorflow/tensorflow:2.10.0"   # the profile's TensorFlow
    assert [p["name"] for p in doc["phases"]] == ["series", "final"]
    assert "phase series: 72 hidden samples" in series["stdout"]
    with zipfile.ZipFile(series["bundle"]) as z:
        protocol = json.loads(z.read("ingestion_program/protocol.json"))
        stored = {}
        for task, x, y in zip(doc["tasks"], (series["x"], series["x64"]),
                              (series["y"], series["y64"])):
            inputs = sorted(n for n in names if n.startswith(task["input_data"] + "/")
                            and not n.endswith("/"))
            assert inputs == [task["input_data"] + "/samples.npy"]   # no images.npy
            samples = np.load(z.open(task["input_data"] + "/samples.npy"))
            labels = np.load(z.open(task["reference_data"] + "/labels.npy"))
            # As stored: the pack's dtype and shape, the raw sensor values (negative, > 255).
            assert samples.dtype == x.dtype and samples.shape == x.shape
            assert np.array_equal(samples, x) and np.array_equal(labels, y)
            stored[task["name"]] = samples.dtype
        evaluation = z.read("pages/evaluation.md").decode()
        overview = z.read("pages/overview.md").decode()
        readme = z.read("README.md").decode()
        assert json.loads(z.read("scoring_program/protocol.json")) == protocol
    assert sorted(str(d) for d in stored.values()) == ["float32", "float64"]
    assert series["x"].min() < 0 and series["x"].max() > 100
    # The protocol feeds series, not images: no range, no channel order; the harness is told.
    assert protocol["input"] == {"kind": "tensor", "shape": [36, 6], "container": "tensor",
                                 "dtype": "float32", "batch_size": 32, "range": None,
                                 "channel_order": None, "layout": "NHWC", "batched": True}
    assert protocol["framework"] == "tensorflow"
    assert protocol["images"] == "samples.npy"
    assert protocol["profile_contract"]["input"]["kind"] == "tensor"
    assert "shape [batch, 36, 6]" in evaluation and "RGB" not in evaluation
    assert "one class index per sample" in evaluation
    assert "Classify each sample into one of 12 classes" in overview
    assert "`input_data/samples.npy`" in readme and "no image conversion" in readme
    assert "Hidden test samples" in doc["tasks"][0]["description"]


def test_series_bundle_refusals_name_the_problem(series, hidden, tmp_path):
    out = tmp_path / "c.zip"
    # Series given to an image profile: not read as 6-pixel-wide grayscale images.
    proc = run_cli("bundle", "--profile", "an2dl-2022", "--data", series["data"], "-o", out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "grayscale images 6 pixels wide" in proc.stderr and "an2dl-2022-ts" in proc.stderr
    # Images given to the series profile: their shape is not the profile's.
    proc = run_cli("bundle", "--profile", "an2dl-2022-ts", "--data", hidden["path"], "-o", out)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "[96, 96, 3]" in proc.stderr and "[36, 6]" in proc.stderr
    # A folder of class sub-folders cannot hold series.
    folder = tmp_path / "classes"
    (folder / "a").mkdir(parents=True)
    proc = run_cli("bundle", "--profile", "an2dl-2022-ts", "--data", folder, "-o", out)
    assert proc.returncode == 2 and "not an image" in proc.stderr
    proc = run_cli("bundle", "--profile", "an2dl-2022-ts", "-o", out)
    assert proc.returncode == 2 and "labelled samples" in proc.stderr
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if "leafsub" in p]


def _score(bundle, tmp_path, outputs, labels, ingestion):
    """The bundle's own scoring program, run as the worker runs it, on a prediction output."""
    with zipfile.ZipFile(bundle) as z:
        z.extractall(tmp_path / "bundle")
    root = tmp_path / "run"
    (root / "input" / "res").mkdir(parents=True)
    (root / "output").mkdir()
    np.save(root / "input" / "res" / "predictions.npy", outputs)
    (root / "input" / "res" / "leafsub-ingestion.json").write_text(json.dumps(ingestion))
    (root / "input" / "ref").mkdir()
    np.save(root / "input" / "ref" / "labels.npy", labels)
    proc = subprocess.run([sys.executable, str(tmp_path / "bundle" / "scoring_program" /
                                               "score.py"), str(root / "input"),
                           str(root / "output")], capture_output=True, text=True, timeout=60)
    return proc, root / "output"


def test_the_scoring_log_speaks_of_no_metrics_it_does_not_write(series, tmp_path):
    y = series["y"]
    passed = {"passed": True, "types": ["EagerTensor"],
              "checks": [{"name": "loads", "status": "pass", "detail": "loaded"}]}
    # predict() returned the 12 scores per sample: failed, and no "metrics below" in the log.
    scores = np.eye(12, dtype=np.float32)[y] * 0.9 + 0.005
    proc, output = _score(series["bundle"], tmp_path / "scores", scores, y, passed)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL output: shape: predict() returned shape [72, 12] (a score per class)" \
        in proc.stdout and "integers in 0..11, one per sample" in proc.stdout
    assert "np.argmax(scores, axis=-1)" in proc.stdout
    assert "metrics below" not in proc.stdout and "for information" not in proc.stdout
    assert not (output / "scores.json").exists() and not (output / "scores.txt").exists()
    # Labels: scored (the sample contract reaches the copied checks).
    proc, output = _score(series["bundle"], tmp_path / "labels", y.astype(np.int64), y, passed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((output / "scores.json").read_text()) == {
        "accuracy": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0}


@pytest.mark.slow
def test_check_runs_a_series_submission_with_evaluates_scores(series, tmp_path):
    from submissions import export_saved_model
    from test_series import model_py, series_model

    saved = export_saved_model(series_model(), str(tmp_path / "saved"))
    zip_path = write_zip(str(tmp_path / "series.zip"), {"model.py": model_py(), "metadata": ""},
                         {"SubmissionModel": saved})
    # One phase (the fixture's two-phase bundle would double the TensorFlow runs).
    bundle = str(tmp_path / "competition.zip")
    proc = run_cli("bundle", "--profile", "an2dl-2022-ts", "--data", series["data"], "-o", bundle)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = tmp_path / "check.json"
    proc = run_cli("bundle", "--check", bundle, "--submission", zip_path, "--json", report, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: the bundle agrees with leafsub evaluate" in proc.stdout
    assert "PASS  series: same scores: accuracy" in proc.stdout
    (task,) = json.loads(report.read_text())["tasks"]
    # The same scores as leafsub evaluate's (--check compares the predictions one by one too)...
    assert task["scores"] == task["evaluate"]["metrics"], task
    assert task["scores"]["accuracy"] >= 0.95   # the raw series reached the team's scaler
    log = task["ingestion"]["log"]
    assert "PASS predicts: 72 samples in batches of up to 32" in log
    tasks = [task]
    # ... and as leafsub evaluate gives them on the original .npz, independently of --check.
    result = leafsub.evaluate(zip_path, series["data"], profile="an2dl-2022-ts",
                              progress=False, detective=False, variants=False)
    assert tasks[0]["scores"] == {k: result.metrics[k] for k in (
        "accuracy", "balanced_accuracy", "macro_f1")}


def test_a_profile_the_bundle_cannot_serve_is_refused_not_written():
    # A profile edited past the schema (another framework, an output kind no scoring program
    # scores): the bundle refuses it before writing anything. Forecasts (values) are served.
    from leafsub.errors import UsageError
    from leafsub.organizer.bundle import refuse_unserved

    prof = load_profile("an2dl-2022-ts")
    refuse_unserved(prof)  # labels: served
    refuse_unserved(load_profile("an2dl-2023-forecast"))  # values: served
    prof["output"] = dict(prof["output"], kind="ranking")
    with pytest.raises(UsageError, match="output kind 'ranking'.*no bundle is written"):
        refuse_unserved(prof)
    prof = load_profile("an2dl-2022-ts")
    prof["framework"] = "jax"
    with pytest.raises(UsageError, match="framework 'jax'"):
        refuse_unserved(prof)
