"""``leafsub bundle --check``: validate a competition bundle, run it as a compute worker
would, and compare its verdict and scores with ``leafsub evaluate``'s.

What a Codabench compute worker does (``compute_worker.py``), and what is done here
instead (docker cannot run here, so each program runs as a subprocess of the chosen
Python, in folders laid out as the container's mounts):

prediction run
    ``program/`` the submission zip extracted as it is (-> ``/app/ingested_program``),
    ``ingestion_program/`` (-> ``/app/program``, the working directory),
    ``input_data/`` (-> ``/app/input_data``), ``output/`` (-> ``/app/output``); the
    command of ``ingestion_program/metadata.yaml`` with the worker's ``$`` names
    replaced; then the worker's own ``output/metadata`` (exit code, elapsed time).
scoring run
    ``program/`` the scoring program (-> ``/app/program``), ``input/ref`` the reference
    data, ``input/res`` the prediction run's output, ``output/``; the command of
    ``scoring_program/metadata.yaml``; the worker then reads ``output/scores.json``
    (else ``scores.txt``, YAML).

The bundle passes when, for every task, the failures shared by both sides (load,
predict, the output contract) are the same and, without failures, the three scores
equal evaluate's. This process never imports TensorFlow.
"""

import concurrent.futures
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import zipfile

import numpy as np

from ..errors import UsageError
from ..evaluator.checks import check
from ..protocol import PROTOCOL_VERSION
from .bundle import DEFAULT_QUEUE_LIMIT_S, SCORE_KEYS

# Checks both sides make, with the same names and the same harness messages.
SHARED_CHECKS = ("loads", "predicts", "output: shape", "output: type", "output: no NaN",
                 "output: labels in range", "output: classes", "output: probabilities",
                 "output: container")
DEFAULT_IMAGE = "codalab/codalab-legacy"
LOG_TAIL = 40


# --------------------------------------------------------------------------- the worker

def worker_command(command, kind, is_scoring, mounts):
    """The worker's ``replace_legacy_metadata_command`` with local folders for /app/*."""
    pairs = [
        ("$input", "/app/input_data" if kind == "ingestion" else "/app/input"),
        ("$output", "/app/output"),
        ("$program", "/app/program"),
        ("$ingestion_program", "/app/program"),
        ("$hidden", "/app/input/ref"),
        ("$shared", "/app/shared"),
        ("$submission_program", "/app/ingested_program"),
        ("$tmp", "/app/output"),
        ("$predictions", "/app/input/res" if is_scoring else "/app/output"),
    ]
    for name, value in pairs:
        command = command.replace(name, value)
    # Longest mount first: /app/input_data before /app/input.
    for app in sorted(mounts, key=len, reverse=True):
        command = command.replace(app, mounts[app])
    return command


def read_metadata(folder):
    """``(file name, command or None, problem or None)`` as the worker reads a program folder."""
    import yaml

    for name in ("metadata.yaml", "metadata"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    data = yaml.load(f.read(), Loader=yaml.FullLoader)
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                return name, None, "%s is not YAML (%s)" % (name, e)
            command = data.get("command") if isinstance(data, dict) else None
            return name, command, None
    return None, None, "no metadata.yaml (nor metadata): the worker fails the run with " \
                       "\"Program directory missing 'metadata.yaml/metadata'\""


def _run(argv, cwd, python, timeout, env_extra=None):
    if argv and os.path.basename(argv[0]) in ("python", "python3"):
        argv = [python] + argv[1:]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "LEAFSUB_", "VIRTUAL_ENV"))}
    env.update(PYTHONUNBUFFERED="1", PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1",
               CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2")
    env.update(env_extra or {})
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        code = None
        out = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or "")
        err = "Execution Time Limit exceeded. Limit was %d seconds" % timeout
    except OSError as e:
        code, out, err = 127, "", "cannot start %s: %s" % (argv[0], e)
    return code, out, err, time.monotonic() - started


def _copy(src, dst):
    if os.path.isdir(src):
        shutil.copytree(src, dst)
    else:
        os.makedirs(dst, exist_ok=True)


def _write_worker_metadata(output, exit_code, elapsed, ingestion_code, ingestion_elapsed):
    import yaml

    path = os.path.join(output, "metadata")
    if os.path.exists(path):
        return ("the output folder already holds a file named 'metadata': the worker fails the "
                "run (\"do not write to this file manually\")")
    with open(path, "w", encoding="utf-8") as f:
        f.write(yaml.dump({"exitCode": exit_code, "elapsedTime": elapsed,
                           "ingestionExitCode": ingestion_code,
                           "ingestionElapsedTime": ingestion_elapsed},
                          default_flow_style=False))
    return None


def _tail(text, n=LOG_TAIL):
    rows = [r for r in (text or "").splitlines() if r.strip()]
    return "\n".join(rows[-n:])


def run_task(root, task, submission_root, work, python, time_limit):
    """One task through the worker's prediction and scoring runs. Returns a dict."""
    out = {"ingestion": None, "scoring": None, "scores": None, "problems": []}
    # ---- prediction run
    pred = os.path.join(work, "predict")
    os.makedirs(pred)
    shutil.copytree(submission_root, os.path.join(pred, "program"))
    ingestion_src = os.path.join(root, task["ingestion_program"])
    shutil.copytree(ingestion_src, os.path.join(pred, "ingestion_program"))
    _copy(os.path.join(root, task["input_data"]) if task.get("input_data") else "",
          os.path.join(pred, "input_data"))
    os.makedirs(os.path.join(pred, "output"))
    _, sub_command, _ = read_metadata(os.path.join(pred, "program"))
    if sub_command:
        out["problems"].append(check("submission metadata", "warn",
                                     "the submission's metadata has a command (%s): the worker "
                                     "would run it beside the ingestion" % sub_command))
    _, command, problem = read_metadata(os.path.join(pred, "ingestion_program"))
    if problem or not command:
        out["problems"].append(check("ingestion program", "fail", problem or
                                     "metadata has no 'command': the worker fails the run "
                                     "(\"Program directory missing 'command' in metadata\")"))
        return out
    mounts = {"/app/program": os.path.join(pred, "ingestion_program"),
              "/app/output": os.path.join(pred, "output"),
              "/app/input_data": os.path.join(pred, "input_data"),
              "/app/ingested_program": os.path.join(pred, "program"),
              "/app/data": os.path.join(pred, "data")}
    line = worker_command(command, "ingestion", False, mounts)
    code, stdout, stderr, elapsed = _run(shlex.split(line), mounts["/app/program"], python,
                                         time_limit)
    out["ingestion"] = {"command": line, "exit_code": code, "elapsed_s": round(elapsed, 3),
                        "log": _tail(stdout + ("\n" + stderr if stderr.strip() else ""))}
    result_path = os.path.join(mounts["/app/output"], "leafsub-ingestion.json")
    if os.path.isfile(result_path):
        with open(result_path, encoding="utf-8") as f:
            out["ingestion"]["result"] = json.load(f)
    problem = _write_worker_metadata(mounts["/app/output"], None, elapsed, code, elapsed)
    if problem:
        out["problems"].append(check("ingestion program", "fail", problem))
        return out
    # ---- scoring run
    score = os.path.join(work, "score")
    os.makedirs(os.path.join(score, "input"))
    shutil.copytree(os.path.join(root, task["scoring_program"]), os.path.join(score, "program"))
    _copy(os.path.join(root, task["reference_data"]) if task.get("reference_data") else "",
          os.path.join(score, "input", "ref"))
    shutil.copytree(mounts["/app/output"], os.path.join(score, "input", "res"))
    for sub in ("output", "shared"):
        os.makedirs(os.path.join(score, sub))
    _, command, problem = read_metadata(os.path.join(score, "program"))
    if problem or not command:
        out["problems"].append(check("scoring program", "fail", problem or
                                     "metadata has no 'command': the worker runs nothing and "
                                     "finds no scores"))
        return out
    mounts = {"/app/program": os.path.join(score, "program"),
              "/app/output": os.path.join(score, "output"),
              "/app/input": os.path.join(score, "input"),
              "/app/shared": os.path.join(score, "shared")}
    line = worker_command(command, "program", True, mounts)
    code, stdout, stderr, elapsed = _run(shlex.split(line), mounts["/app/program"], python,
                                         time_limit)
    out["scoring"] = {"command": line, "exit_code": code, "elapsed_s": round(elapsed, 3),
                      "log": _tail(stdout + ("\n" + stderr if stderr.strip() else ""))}
    output = mounts["/app/output"]
    scores = _read_scores(output)
    out["scores"] = scores
    detail_path = os.path.join(output, "leafsub-scores.json")
    if os.path.isfile(detail_path):
        with open(detail_path, encoding="utf-8") as f:
            out["scoring"]["result"] = json.load(f)
    return out


def _read_scores(output):
    import yaml

    path = os.path.join(output, "scores.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    path = os.path.join(output, "scores.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, yaml.SafeLoader)
    return None


# --------------------------------------------------------------------------- the bundle

def _extract(zip_path, dest):
    """The organizer's bundle, extracted with the names checked (no escapes, no links)."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UsageError("%s is not a readable zip (%s): pass the competition bundle `leafsub "
                         "bundle -o` wrote." % (zip_path, e))
    with zf:
        for info in zf.infolist():
            name = info.filename
            parts = name.replace("\\", "/").split("/")
            if name.startswith("/") or ".." in parts or (info.external_attr >> 16) & 0o170000 \
                    == 0o120000:
                raise UsageError("%s: the entry %r escapes the bundle or is a link; re-create the "
                                 "bundle with leafsub bundle." % (zip_path, name))
        zf.extractall(dest)


def _normalize(value):
    """YAML dates as ISO strings, so that the JSON Schema reads what the platform reads."""
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def _date(value):
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    for fmt in ("%Y-%m-%d", "%m-%d-%Y"):
        try:
            return datetime.datetime.strptime(str(value), fmt).date()
        except ValueError:
            continue
    return None


def validate_bundle(root, zip_path):
    """The checks of a bundle's files and competition.yaml; returns (doc or None, checks)."""
    import jsonschema
    import yaml

    from ..jsonfiles import schema

    checks = []
    path = os.path.join(root, "competition.yaml")
    if not os.path.isfile(path):
        found = [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
                 for f in fs if f in ("competition.yaml", "competition.yml")]
        checks.append(check("bundle: competition.yaml", "fail",
                            "%s has no competition.yaml at its root%s: Codabench reads it only "
                            "there. Zip the files of the bundle folder, not the folder."
                            % (zip_path, " (found %s)" % found[0] if found else "")))
        return None, checks
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        checks.append(check("bundle: competition.yaml", "fail", "competition.yaml is not valid "
                            "YAML: %s" % e))
        return None, checks
    doc = _normalize(doc)
    if isinstance(doc, dict) and "version" not in doc and isinstance(doc.get("phases"), dict):
        checks.append(check("bundle: format", "fail",
                            "%s is a classic CodaLab bundle (no 'version: 2', phases by number): "
                            "--check runs Codabench bundles. Write the same competition with "
                            "--format codabench (its programs and data are the same files) and "
                            "check that one." % zip_path))
        return None, checks
    errors = list(jsonschema.Draft202012Validator(schema("competition")).iter_errors(doc))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        checks.append(check("bundle: competition.yaml", "fail",
                            "competition.yaml, field %s: %s (%d problem%s; the schema is "
                            "leafsub/schemas/competition.schema.json)" % (
                                where, error.message, len(errors), "s" * (len(errors) > 1))))
        return None, checks
    checks.append(check("bundle: competition.yaml", "pass", "version 2, %d phase%s, %d task%s, "
                        "%d leaderboard column%s" % (
                            len(doc["phases"]), "s" * (len(doc["phases"]) > 1),
                            len(doc["tasks"]), "s" * (len(doc["tasks"]) > 1),
                            len(doc["leaderboards"][0]["columns"]),
                            "s" * (len(doc["leaderboards"][0]["columns"]) > 1))))
    missing = []
    for rel, must_have_text in [(doc["image"], False), (doc["terms"], True)] + \
            [(p["file"], True) for p in doc["pages"]]:
        full = os.path.join(root, rel)
        if not os.path.isfile(full):
            missing.append("%s (missing)" % rel)
        elif must_have_text and os.path.getsize(full) == 0:
            missing.append("%s (empty: the unpacker refuses empty pages)" % rel)
    task_index = {t["index"]: t for t in doc["tasks"]}
    for task in doc["tasks"]:
        for kind in ("ingestion_program", "input_data", "scoring_program", "reference_data"):
            if kind in task and not os.path.exists(os.path.join(root, task[kind])):
                missing.append("task %d %s: %s" % (task["index"], kind, task[kind]))
    for phase in doc["phases"]:
        for t in phase["tasks"]:
            if t not in task_index:
                missing.append("phase %s: task %d is not defined" % (phase["name"], t))
    checks.append(check("bundle: files", "fail" if missing else "pass",
                        "; ".join(missing) if missing else
                        "the logo, the terms, every page and every task's folders are there"))
    programs, seen = [], set()
    for task in doc["tasks"]:
        for kind in ("ingestion_program", "scoring_program"):
            rel = task.get(kind)
            if not rel or rel in seen or not os.path.isdir(os.path.join(root, rel)):
                continue
            seen.add(rel)
            name, command, problem = read_metadata(os.path.join(root, rel))
            if problem or not command:
                programs.append("%s: %s" % (rel, problem or "%s has no 'command'" % name))
    checks.append(check("bundle: programs", "fail" if programs else "pass",
                        "; ".join(programs) if programs else
                        "every program folder has its metadata.yaml with a command"))
    checks.append(_columns_check(root, doc))
    phases = sorted(doc["phases"], key=lambda p: p.get("index", 0))
    order = []
    for a, b in zip(phases, phases[1:]):
        end, start = _date(a.get("end")), _date(b.get("start"))
        if end is None:
            order.append("phase %s must end: a phase follows it" % a["name"])
        elif start is not None and start < end:
            order.append("phase %s starts before phase %s ends" % (b["name"], a["name"]))
    if order:
        checks.append(check("bundle: phases", "fail", "; ".join(order) + " (the unpacker "
                            "refuses overlapping phases)"))
    image = doc.get("docker_image") or "codalab/codalab-legacy:py3"
    protocols = _protocols(root, doc, "protocol.json")
    # The profile's framework (a protocol of version 1 did not say it).
    framework = next((p.get("framework", "tensorflow") for p in _protocols(root, doc,
                                                                        "profile.json")), None)
    stale = [p.get("leafsub_protocol") for p in protocols
             if p.get("leafsub_protocol") != PROTOCOL_VERSION]
    if stale:
        checks.append(check("bundle: protocol", "fail",
                            "the ingestion program's protocol.json has version %r, and this "
                            "leafsub reads version %d (with the framework and the layout): write "
                            "the bundle again with leafsub bundle" % (stale[0], PROTOCOL_VERSION)))
    wrong = {"torch": "tensorflow/", "tensorflow": "pytorch/"}.get(framework)
    if image.startswith(DEFAULT_IMAGE) or (wrong and image.startswith(wrong)):
        checks.append(check("bundle: docker image", "fail",
                            "docker_image %s has no %s: submissions fail at 'import %s'. Name an "
                            "image with the profile's framework (leafsub bundle writes %s)."
                            % (image, "torch" if framework == "torch" else "TensorFlow",
                               framework or "tensorflow", "pytorch/pytorch:<version>-..."
                               if framework == "torch" else "tensorflow/tensorflow:<version>")))
    else:
        checks.append(check("bundle: docker image", "pass", "%s (not pulled: docker does not run "
                            "here)" % image))
    limits = [p for p in phases if (p.get("execution_time_limit") or 0) > DEFAULT_QUEUE_LIMIT_S]
    if limits and not doc.get("queue"):
        checks.append(check("bundle: time limit", "warn",
                            "phase %s sets execution_time_limit %d s, but Codabench's default "
                            "queue stops every run at %d s whatever the YAML says: attach your own "
                            "compute worker (queue:) or lower the limit"
                            % (limits[0]["name"], limits[0]["execution_time_limit"],
                               DEFAULT_QUEUE_LIMIT_S)))
    return doc, checks


def _protocols(root, doc, name):
    """The ``name`` (protocol.json, profile.json) of every task's ingestion program that
    holds one, as dicts."""
    out = []
    for rel in sorted({t["ingestion_program"] for t in doc["tasks"]
                       if t.get("ingestion_program")}):
        try:
            with open(os.path.join(root, rel, name), encoding="utf-8") as f:
                out.append(json.load(f))
        except (OSError, ValueError):
            continue
    return out


def _columns_check(root, doc):
    """The leaderboard's column keys against the keys the scoring programs write."""
    columns = _column_keys(doc)
    problems = []
    for rel in sorted({t["scoring_program"] for t in doc["tasks"] if t.get("scoring_program")}):
        path = os.path.join(root, rel, "protocol.json")
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            written = json.load(f).get("score_keys") or []
        unfed = [k for k in columns if k not in written]
        if unfed:
            problems.append("the leaderboard column%s %s %s not among the keys %s writes to "
                            "scores.json (%s): the leaderboard would show n/a" % (
                                "s" * (len(unfed) > 1), ", ".join(unfed),
                                "are" if len(unfed) > 1 else "is", rel, ", ".join(written)))
    if problems:
        return check("bundle: leaderboard columns", "fail", "; ".join(problems))
    return check("bundle: leaderboard columns", "pass", "every column key (%s) is a key the "
                 "scoring program writes" % ", ".join(columns))


def _column_keys(doc):
    keys = []
    for board in doc["leaderboards"]:
        for column in board["columns"]:
            if not column.get("computation"):
                keys.append(column["key"])
    return keys


# --------------------------------------------------------------------------- comparing

def _failed(checks):
    """The shared checks that failed; "loads" also when the submission was never loaded.

    Evaluate stops before its child for a zip it cannot run (no model.py, a syntax error,
    no such class: its structure checks say so); the ingestion then fails at the import.
    Both are "loads" here, so that the same zip gives the same verdict on both sides.
    """
    failed = {c["name"] for c in checks if c["status"] == "fail"}
    out = {name for name in failed if name in SHARED_CHECKS}
    loaded = any(c["name"] == "loads" and c["status"] == "pass" for c in checks)
    if failed and not loaded:
        out.add("loads")
    return sorted(out)


# Sentences of evaluate's output checks that the scoring program drops (its log shows no
# metrics: organizer/scoring.py, REPORT_ONLY): not a difference between the two sides.
REPORT_ONLY = re.compile(r"\s*The metrics below [^.]*\.")


def _first_line(text):
    return REPORT_ONLY.sub("", (text or "").strip().split("\n")[0]).rstrip(". ")


def _first_failure(checks):
    return next((_first_line(c["detail"]) for c in checks if c["status"] == "fail"), "")


def compare(task_name, ran, evaluation, column_keys):
    """The checks saying whether the bundle's run of one task agrees with evaluate's."""
    out = list(ran["problems"])
    if any(c["status"] == "fail" for c in out):
        return out
    ingestion = ran["ingestion"] or {}
    result = ingestion.get("result")
    if result is None:
        out.append(check("%s: ingestion" % task_name, "fail",
                         "the ingestion program wrote no leafsub-ingestion.json (exit code %s). "
                         "Its log:\n%s" % (ingestion.get("exit_code"), ingestion.get("log"))))
        return out
    bundle_checks = list(result["checks"])
    ev = evaluation.to_dict()
    top = next((c for c in bundle_checks if c["name"] == "layout: top folder"), None)
    if top and any(c["name"] == "layout: top folder" and c["status"] == "fail"
                   for c in ev["checks"]):
        out.append(check("%s: top folder" % task_name, "warn",
                         "leafsub evaluate fails this zip's top folder (the challenge's original "
                         "ingestion breaks on it); this bundle's ingestion runs it from the "
                         "folder and tells the participant: %s" % top["detail"]))
    scoring = (ran.get("scoring") or {}).get("result")
    if scoring:
        bundle_checks = list(scoring["checks"])
    b_fail, e_fail = _failed(bundle_checks), _failed(ev["checks"])
    if b_fail != e_fail:
        out.append(check("%s: same verdict" % task_name, "fail",
                         "the bundle's programs failed %s, leafsub evaluate failed %s" % (
                             ", ".join(b_fail) or "nothing", ", ".join(e_fail) or "nothing")))
        return out
    if b_fail:
        b_text = {c["name"]: _first_line(c["detail"]) for c in bundle_checks}
        e_text = {c["name"]: _first_line(c["detail"]) for c in ev["checks"]}
        differ = [n for n in b_fail if n in b_text and n in e_text and b_text[n] != e_text[n]]
        scores_written = ran.get("scores") is not None
        out.append(check("%s: same verdict" % task_name, "fail" if differ or scores_written
                         else "pass",
                         ("the failure of %s reads differently: bundle %r, evaluate %r" % (
                             differ[0], b_text.get(differ[0]), e_text.get(differ[0])))
                         if differ else ("scores were written for a failed submission"
                                         if scores_written else
                                         "both failed %s: %s (no scores: the platform marks it "
                                         "failed, and the participant's log says this)"
                                         % (", ".join(b_fail), _first_failure(bundle_checks)))))
        return out
    scores = ran.get("scores")
    if scores is None:
        out.append(check("%s: scores" % task_name, "fail",
                         "the scoring program wrote no scores.json nor scores.txt (exit code %s). "
                         "Its log:\n%s" % ((ran.get("scoring") or {}).get("exit_code"),
                                           (ran.get("scoring") or {}).get("log"))))
        return out
    missing = [k for k in column_keys if k not in scores]
    out.append(check("%s: scores keys" % task_name, "fail" if missing else "pass",
                     ("the leaderboard columns %s are not in scores.json (keys: %s): the "
                      "leaderboard shows n/a" % (", ".join(missing), ", ".join(sorted(scores))))
                     if missing else "scores.json has every column key: %s" % ", ".join(
                         column_keys)))
    metrics = ev.get("metrics") or {}
    keys = list(column_keys) or list(SCORE_KEYS)   # accuracy..., or mse, rmse, mae
    diffs = {k: (scores.get(k), metrics.get(k)) for k in keys
             if k in scores and (metrics.get(k) is None
                                 or abs(float(scores[k]) - float(metrics[k])) > 1e-12)}
    same_predictions = None
    if scoring and ev.get("predictions") is not None:
        same_predictions = int(np.sum(np.asarray(scoring["predictions"])
                                      != np.asarray(ev["predictions"])))
    if diffs or same_predictions:
        out.append(check("%s: same scores" % task_name, "fail", "the bundle scored %s, leafsub "
                         "evaluate %s%s" % (
                             ", ".join("%s %s" % (k, v[0]) for k, v in diffs.items()),
                             ", ".join("%s %s" % (k, v[1]) for k, v in diffs.items()),
                             "; %d predictions differ" % same_predictions
                             if same_predictions else "")))
    else:
        out.append(check("%s: same scores" % task_name, "pass", ", ".join(
            "%s %.4f" % (k, float(scores[k])) for k in keys if k in scores)
            + ", the same as leafsub evaluate's, with the same %d predictions"
            % len(ev.get("predictions") or [])))
    return out


def check_bundle(bundle, submission, runtime=None, python=None, progress=True,
                 keep_workdir=False):
    """Validate ``bundle`` and run it on ``submission`` as a compute worker would.

    Args:
      bundle: the competition zip ``make_bundle`` wrote (or one edited by hand).
      submission: a participant's submission zip.
      runtime, python: the interpreter for both programs and for evaluate's child
        (as ``leafsub evaluate``); default this Python.
      progress: print progress on stderr.

    Returns:
      dict: ``passed``, ``checks`` [{name, status, detail}], ``tasks`` [{name,
      ingestion, scoring, scores, evaluate: {metrics, checks}}], ``timing``.

    Raises:
      UsageError for a missing or unreadable zip.
    """
    import click

    from ..evaluator.evaluate import evaluate
    from ..evaluator.extract import extract_submission, require_zip_file
    from ..evaluator.runtimes import resolve_runtime

    def say(text):
        if progress:
            click.echo(text, err=True)

    bundle = os.fspath(bundle)
    if not os.path.isfile(bundle):
        raise UsageError("Bundle %s does not exist: pass the zip `leafsub bundle -o` wrote."
                         % bundle)
    submission = require_zip_file(submission)
    chosen = resolve_runtime(runtime=runtime, python=python, say=say)
    work = tempfile.mkdtemp(prefix="leafsub-bundle-check-")
    started = time.monotonic()
    report = {"passed": False, "bundle": os.path.abspath(bundle),
              "submission": os.path.abspath(submission), "runtime": chosen.label,
              "checks": [], "tasks": [], "timing": {}}
    try:
        root = os.path.join(work, "bundle")
        _extract(bundle, root)
        doc, checks = validate_bundle(root, bundle)
        report["checks"].extend(checks)
        if doc is None or any(c["status"] == "fail" for c in checks):
            return _done(report, work, keep_workdir)
        profile_path = None
        for task in doc["tasks"]:
            candidate = os.path.join(root, task.get("ingestion_program", ""), "profile.json")
            if os.path.isfile(candidate):
                profile_path = candidate
                break
        if profile_path is None:
            report["checks"].append(check("bundle: profile", "fail", "no ingestion program holds "
                                          "the profile.json leafsub bundle writes: --check "
                                          "compares leafsub-made bundles only"))
            return _done(report, work, keep_workdir)
        column_keys = _column_keys(doc)
        extracted = extract_submission(submission, os.path.join(work, "submission"))
        if not extracted.ok:
            report["checks"].append(check("submission", "fail", "; ".join(
                c["detail"] for c in extracted.checks if c["status"] == "fail")))
            return _done(report, work, keep_workdir)
        phase_of = {t: p for p in doc["phases"] for t in p["tasks"]}
        for task in sorted(doc["tasks"], key=lambda t: t["index"]):
            phase = phase_of.get(task["index"]) or {}
            name = phase.get("name") or task.get("name") or "task %d" % task["index"]
            limit = int(phase.get("execution_time_limit") or DEFAULT_QUEUE_LIMIT_S)
            say("%s: prediction and scoring runs as a compute worker (docker replaced by %s)"
                % (name, chosen.label))
            task_dir = os.path.join(work, "task%d" % task["index"])
            os.makedirs(task_dir)
            data = os.path.join(task_dir, "data.npz")
            inputs = os.path.join(root, task["input_data"], _input_name(root, task))
            if not os.path.isfile(inputs):
                report["checks"].append(check("%s: input data" % name, "fail", "%s has no %s, "
                                              "the file its ingestion program reads (protocol."
                                              "json): rebuild the bundle with leafsub bundle"
                                              % (task["input_data"], os.path.basename(inputs))))
                continue
            images = np.load(inputs, mmap_mode="r")
            targets = os.path.join(root, task["reference_data"], "targets.npy")
            if os.path.isfile(targets):  # a forecast: x, y and the extra predict arguments
                labels = np.load(targets)
                extras = {name[:-4]: np.load(os.path.join(root, task["input_data"], name))
                          for name in os.listdir(os.path.join(root, task["input_data"]))
                          if name.endswith(".npy") and name != os.path.basename(inputs)}
                np.savez(data, x=images, y=labels, **extras)
            else:
                labels = np.load(os.path.join(root, task["reference_data"], "labels.npy"))
                np.savez(data, images=images, labels=labels)
            say("%s: leafsub evaluate on the same %d %s, beside them" % (
                name, len(labels), "images" if images.ndim == 4 else "samples"))
            # The worker's runs and evaluate's child are independent processes: side by side.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                running = pool.submit(run_task, root, task, extracted.dest,
                                      os.path.join(task_dir, "worker"), chosen.python, limit)
                t0 = time.monotonic()
                evaluation = evaluate(submission, data, profile=profile_path,
                                      python=chosen.python, progress=False, detective=False,
                                      variants=False, time_limit=limit)
                evaluate_s = time.monotonic() - t0
                ran = running.result()
            report["checks"].extend(compare(name, ran, evaluation, column_keys))
            ev = evaluation.to_dict()
            report["tasks"].append({
                "name": name, "ingestion": ran["ingestion"], "scoring": ran["scoring"],
                "scores": ran["scores"],
                "evaluate": {"passed": ev["passed"], "metrics": {
                    k: (ev.get("metrics") or {}).get(k) for k in column_keys or SCORE_KEYS},
                    "failed": _failed(ev["checks"])},
                "timing": {"ingestion_s": (ran["ingestion"] or {}).get("elapsed_s"),
                           "scoring_s": (ran["scoring"] or {}).get("elapsed_s"),
                           "evaluate_s": round(evaluate_s, 3)}})
        return _done(report, work, keep_workdir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        report["timing"]["total_s"] = round(time.monotonic() - started, 3)


def _input_name(root, task):
    """The input data file the task's ingestion reads (protocol.json's ``images``)."""
    path = os.path.join(root, task.get("ingestion_program", ""), "protocol.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("images") or "images.npy"
    except (OSError, ValueError):
        return "images.npy"


def _done(report, work, keep_workdir):
    report["passed"] = not any(c["status"] == "fail" for c in report["checks"])
    if keep_workdir:
        report["workdir"] = work
    else:
        shutil.rmtree(work, ignore_errors=True)
    return report
