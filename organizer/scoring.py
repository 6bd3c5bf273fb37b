"""The competition's scoring program, written by ``leafsub bundle`` (not leafsub).

It reads what the ingestion program wrote (``res/predictions.npy`` and
``res/leafsub-ingestion.json``) and the hidden labels (``ref/labels.npy``), turns the
outputs into labels and scores them with leafsub's own code, copied unchanged next
to this file (``leafsub_checks.py``: the output contract; ``leafsub_metrics.py``:
accuracy, balanced accuracy, macro F1). Standard library and numpy only.

The compute worker starts it as (``metadata.yaml``)::

    python3 $program/score.py $input $output

that is, on Codabench, ``/app/input`` (holding ``ref/`` and ``res/``) and ``/app/output``.
It writes ``scores.json`` (Codabench reads it first) and ``scores.txt`` (the classic
CodaLab format, ``key: value`` lines) with exactly the keys of the leaderboard's
columns, and ``leafsub-scores.json`` (every metric and check). A failed submission
gets no scores file: the platform marks it failed, and this log says why.
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import leafsub_checks as C  # noqa: E402
import leafsub_metrics as M  # noqa: E402
import leafsub_values as V  # noqa: E402


# The copied checks are worded for leafsub evaluate's report, which shows metrics below a
# failed output check "for information"; this log shows none (a failure writes no scores).
REPORT_ONLY = re.compile(r"\s*The metrics below [^.]*\.")


def say(text):
    sys.stdout.write("[leafsub scoring] %s\n" % text)
    sys.stdout.flush()


def for_this_log(checks):
    """The checks with the sentences that only make sense in evaluate's report removed."""
    return [dict(c, detail=REPORT_ONLY.sub("", c["detail"])) for c in checks]


def fail(checks, reason, output_dir):
    with open(os.path.join(output_dir, "leafsub-scores.json"), "w", encoding="utf-8") as f:
        json.dump({"scores": None, "checks": checks}, f, indent=1)
    for c in checks:
        say("%-4s %s: %s" % (c["status"].upper(), c["name"], c["detail"]))
    say("verdict: FAILED (%s); no scores are written, so the platform marks the submission "
        "failed. The ingestion log above this one has the details." % reason)
    return 1


def main(input_dir, output_dir):
    with open(os.path.join(HERE, "protocol.json"), encoding="utf-8") as f:
        protocol = json.load(f)
    ref, res = os.path.join(input_dir, "ref"), os.path.join(input_dir, "res")
    os.makedirs(output_dir, exist_ok=True)
    result_path = os.path.join(res, "leafsub-ingestion.json")
    if not os.path.isfile(result_path):
        return fail([C.check("predicts", "fail", "the ingestion program wrote no result (it was "
                             "killed, or the platform's time limit stopped it before its own)")],
                    "no ingestion result", output_dir)
    with open(result_path, encoding="utf-8") as f:
        ingestion = json.load(f)
    checks = list(ingestion["checks"])
    if not ingestion.get("passed"):
        return fail(checks, "the submission failed in the ingestion", output_dir)
    outputs = np.load(os.path.join(res, "predictions.npy"), allow_pickle=False)
    profile = protocol["profile_contract"]
    method = protocol["interface"]["method"]
    if profile["output"]["kind"] == "values":
        return score_values(protocol, ref, outputs, ingestion, checks, output_dir)
    labels = np.load(os.path.join(ref, "labels.npy"), allow_pickle=False)
    predicted, out_checks = C.interpret_outputs(outputs, labels.size, profile, method)
    checks.extend(for_this_log(out_checks))
    checks.append(C.output_container(ingestion.get("types") or [], profile, method))
    if not C.verdict(checks) or predicted is None:
        return fail(checks, "the output contract", output_dir)
    n_classes = int(profile["classes"]["count"])
    metrics = M.classification_metrics(labels, predicted, n_classes,
                                       profile["classes"].get("names"))
    return write_scores(protocol, metrics, checks, predicted, output_dir)


def score_values(protocol, ref, outputs, ingestion, checks, output_dir):
    """A forecast: leafsub's values contract (``leafsub_values.py``) and MSE/RMSE/MAE."""
    profile = protocol["profile_contract"]
    method = protocol["interface"]["method"]
    targets = np.load(os.path.join(ref, "targets.npy"), allow_pickle=False)
    shape = profile["output"].get("shape") or targets.shape[1:]
    values, out_checks = V.interpret_values(outputs, len(targets), tuple(shape), method,
                                            protocol["input"].get("batched", True))
    checks.extend(out_checks)
    checks.append(C.output_container(ingestion.get("types") or [], profile, method))
    if not C.verdict(checks) or values is None:
        return fail(checks, "the output contract", output_dir)
    metrics = V.values_metrics(targets, values, metric=profile["output"].get("metric", "mse"))
    return write_scores(protocol, metrics, checks, values, output_dir)


def write_scores(protocol, metrics, checks, predicted, output_dir):
    scores = {key: float(metrics[key]) for key in protocol["score_keys"]}
    for c in checks:
        say("%-4s %s: %s" % (c["status"].upper(), c["name"], c["detail"]))
    say("scores: " + ", ".join("%s %.4f" % kv for kv in scores.items()))
    with open(os.path.join(output_dir, "scores.json"), "w", encoding="utf-8") as f:
        json.dump(scores, f)
    with open(os.path.join(output_dir, "scores.txt"), "w", encoding="utf-8") as f:
        f.write("".join("%s: %r\n" % kv for kv in scores.items()))
    with open(os.path.join(output_dir, "leafsub-scores.json"), "w", encoding="utf-8") as f:
        json.dump({"scores": scores, "metrics": metrics, "checks": checks,
                   "predictions": predicted.tolist()}, f, indent=1)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.stderr.write("usage: score.py INPUT_DIR OUTPUT_DIR\n")
        sys.exit(2)
    sys.exit(main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])))
