"""The competition's ingestion program, written by ``leafsub bundle`` (not leafsub).

It runs a participant's submission exactly as ``leafsub evaluate``'s child does:
the same harness (``harness.py``, copied unchanged from leafsub next to this file),
so the same import of the module, the same constructor, the same input container,
dtype, value range, channel order and batch size, read from ``protocol.json``
(written from the challenge profile). For a profile whose input is not an image
(``input.kind`` tensor: a time series, features) the samples are fed as stored, cast
to the profile's dtype only, exactly as the harness does for ``leafsub evaluate``. The
harness's request is built by ``leafsub_protocol.py`` (leafsub's ``protocol.py``, copied
unchanged), as ``leafsub evaluate`` builds it. Only the standard library, numpy and the
profile's framework are imported, so it runs in the bundle's docker image.

The compute worker starts it as (``metadata.yaml``)::

    python3 $ingestion_program/ingestion.py $input $output $ingestion_program $submission_program

that is, on Codabench, ``/app/input_data /app/output /app/program /app/ingested_program``.
It writes ``predictions.npy`` (what ``predict`` returned, stacked) and
``leafsub-ingestion.json`` (the checks, in leafsub's words) to the output folder, and
prints every verdict to the log the participant can read. Exit 1 when the submission
failed: the scoring program then reports the same verdict and writes no scores.
"""

import json
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# leafsub's own modules, copied unchanged beside this file: the evaluator's child (the
# platform's stand-in), the protocol (the one builder of its request), the check record.
sys.path.insert(0, HERE)
import harness  # noqa: E402
import leafsub_checks  # noqa: E402
import leafsub_protocol  # noqa: E402
sys.path.remove(HERE)
check = leafsub_checks.Check
# The worker's output folder must not hold a file named "metadata": the worker writes it.
RESULT = "leafsub-ingestion.json"
PREDICTIONS = "predictions.npy"
MACOS_JUNK = ("__MACOSX", ".DS_Store")


def say(text):
    sys.stdout.write("[leafsub ingestion] %s\n" % text)
    sys.stdout.flush()


def submission_root(folder, module):
    """The folder holding ``MODULE.py``, and the layout check a participant should read.

    The worker extracts the zip as it is: a zip made by compressing a folder puts
    everything one level down. The evaluator fails that layout (the challenge's
    original ingestion breaks on it); this one runs the folder anyway and says so.
    """
    if os.path.isfile(os.path.join(folder, module + ".py")):
        return folder, None
    names = [n for n in os.listdir(folder) if n not in MACOS_JUNK and n != "metadata"]
    if len(names) == 1 and os.path.isdir(os.path.join(folder, names[0])):
        top = names[0]
        return os.path.join(folder, top), check(
            "layout: top folder", "warn",
            "every file of the zip is inside the folder '%s/'; zip the files of the folder, "
            "not the folder (cd %s && zip -r ../submission.zip .). This competition's "
            "ingestion runs it from '%s/' anyway." % (top, top, top))
    return folder, None


class Watchdog:
    """Ends the run with a verdict before the platform's own limit kills it silently."""

    def __init__(self, seconds, result, output):
        self.seconds, self.result, self.output = seconds, result, output
        self.stage = "starting"
        self.timer = threading.Timer(seconds, self.fire)
        self.timer.daemon = True

    def fire(self):
        detail = ("the submission was stopped at the time limit of %.0f s while %s; the whole "
                  "ingestion may take %.0f s. A predict() that never returns is stopped the "
                  "same way by leafsub evaluate." % (self.seconds, self.stage, self.seconds))
        name = "loads" if self.stage == "loading" else "predicts"
        self.result["checks"].append(check(name, "fail", detail))
        self.result["passed"] = False
        finish(self.result, self.output)
        os._exit(1)


def finish(result, output):
    for c in result["checks"]:
        say("%-4s %s: %s" % (c["status"].upper(), c["name"], c["detail"]))
    say("verdict: %s" % ("PASSED" if result["passed"] else "FAILED"))
    path = os.path.join(output, RESULT)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)


def failure(reply):
    detail = reply.get("error", "").rstrip(". ") + "."
    trace = "\n".join(r for r in (reply.get("traceback") or "").splitlines() if r.strip())
    if trace:
        detail += "\n" + "\n".join(trace.splitlines()[-6:])
    return detail


def run(input_dir, output_dir, program_dir, submission_dir):
    with open(os.path.join(program_dir, "protocol.json"), encoding="utf-8") as f:
        protocol = json.load(f)
    # A protocol.json of another format is refused here (ValueError), before any submission runs.
    leafsub_protocol.request_from_json(protocol)
    os.makedirs(output_dir, exist_ok=True)
    result = {"leafsub_ingestion": 1, "profile": protocol["profile"], "passed": False,
              "checks": [], "timing": {}}
    iface, inp = protocol["interface"], protocol["input"]
    watchdog = Watchdog(protocol["time_limit_s"], result, output_dir)
    watchdog.timer.start()

    root, layout = submission_root(submission_dir, iface["module"])
    if layout:
        result["checks"].append(layout)
        say("WARN %s: %s" % (layout["name"], layout["detail"]))
    if not os.path.isfile(os.path.join(root, iface["module"] + ".py")):
        result["checks"].append(check("layout: %s.py" % iface["module"], "fail",
                                      "the submission has no %s.py at its top level; the zip "
                                      "must hold %s" % (iface["module"], ", ".join(
                                          protocol["required_files"]))))
        finish(result, output_dir)
        return 1

    request = leafsub_protocol.request_from_json(protocol, folder=root, block_network=True)
    cwd = root
    if iface["working_dir"] == "scratch":
        cwd = tempfile.mkdtemp(prefix="scratch-")
    os.chdir(cwd)
    sys.path.insert(0, root)
    guard = harness.NetworkGuard(True)
    guard.install()
    worker = harness.Harness(request, sys.stdout)

    def call(op, command):
        try:
            reply = getattr(worker, op)(command)
            reply["ok"] = True
        except harness.SubmissionError as e:
            reply = {"ok": False, "kind": e.kind, "error": str(e), "traceback": e.trace}
        except Exception as e:  # the harness itself
            reply = {"ok": False, "kind": "harness", "error": "%s: %s" % (type(e).__name__, e),
                     "traceback": harness.short_traceback()}
        if guard.attempts and not reply["ok"] and "blocked by the replay" not in reply["error"]:
            reply["error"] = reply["error"].rstrip(". ") + "." + harness.network_note(
                guard.attempts)
        return reply

    say("loading the submission (%s%s)" % (iface["class_name"],
                                           "(path)" if iface["constructor"] == "path" else "()"))
    watchdog.stage = "loading"
    reply = call("load", {"op": "load"})
    if not reply["ok"]:
        result["checks"].append(check("loads", "fail", failure(reply)))
        finish(result, output_dir)
        return 1
    versions = reply.get("versions") or {}
    result["child"] = versions
    result["timing"]["load_s"] = round(float(reply["load_s"]), 3)
    framework = ("torch %s" % versions["torch"]) if versions.get("torch") else (
        "TensorFlow %s" % versions.get("tensorflow"))
    result["checks"].append(check("loads", "pass", "%s loaded in %.1f s (Python %s, %s)" % (
        iface["class_name"], reply["load_s"], versions.get("python"), framework)))
    watchdog.stage = "predicting"
    out = os.path.join(output_dir, PREDICTIONS)
    command = {"op": "predict", "images": os.path.join(input_dir, protocol["images"]),
               "out": out, "progress": False, "container": inp["container"],
               "dtype": inp["dtype"], "batch_size": int(inp["batch_size"]),
               # the extra predict arguments (categories, ...): input_data/<name>.npy
               "args": [os.path.join(input_dir, a + ".npy") for a in
                        iface["args"][1:]]}
    started = time.time()
    reply = call("predict", command)
    watchdog.timer.cancel()
    if not reply["ok"]:
        output_problem = reply.get("kind") == "output"
        detail = failure(reply) if not output_problem else reply.get("error", "")
        result["checks"].append(check("output: shape" if output_problem else "predicts", "fail",
                                      detail))
        if os.path.exists(out):
            os.remove(out)
        finish(result, output_dir)
        return 1
    result["timing"].update(predict_s=round(float(reply["predict_s"]), 3),
                            total_predict_s=round(time.time() - started, 3))
    result["n_images"] = int(reply["n"])
    result["types"] = reply["types"]
    result["checks"].append(check("predicts", "pass", "%d %s %s, %.1f s in %s()" % (
        reply["n"], "images" if inp["kind"] == "image" else "samples",
        "in batches of up to %d" % inp["batch_size"] if inp["batched"]
        else "one whole series per call", reply["predict_s"], iface["method"])))
    if guard.attempts:
        result["network"] = list(guard.attempts)
    result["passed"] = True
    finish(result, output_dir)
    return 0


def main(argv):
    if len(argv) != 4:
        sys.stderr.write("usage: ingestion.py INPUT_DIR OUTPUT_DIR PROGRAM_DIR SUBMISSION_DIR\n")
        return 2
    try:
        return run(*[os.path.abspath(a) for a in argv])
    except Exception as e:  # the bundle (not the submission): the organizers must see it
        import traceback
        traceback.print_exc()
        say("internal error of the ingestion program: %s: %s. This is the bundle's fault, not "
            "the submission's: check the input data and protocol.json, or rebuild the bundle "
            "with leafsub bundle." % (type(e).__name__, e))
        return 2


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # The submission may have started threads that never end: leave at once.
    os._exit(code)
