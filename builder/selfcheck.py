"""The build's self-check: the rendered model.py, imported in a fresh process, must
reproduce every member's goldens and leafsub's own computation of the ensemble.

The child is ``selfcheck_child.py`` driving a copy of ``evaluator/harness.py`` (the
platform's stand-in ``leafsub evaluate`` runs) with the request ``Protocol.child_request``
builds: stdlib + numpy + the profile's framework + the rendered submission, nothing of
leafsub, run with the staging folder (exactly the zip's files) as its working directory.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from .. import tflog
from ..errors import CheckFailed
from ..evaluator.checks import Check
from ..protocol import Protocol
from ..submission_template.spec import MODES

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "selfcheck_child.py")
HARNESS = os.path.join(HERE, os.pardir, "evaluator", "harness.py")
# The standard preprocessings the child tries on a member whose goldens fail (the hint).
HINT_MODES = tuple(mode for mode in MODES if mode != "affine")


@dataclasses.dataclass
class SelfCheckResult:
    checks: list                 # [Check]: pass or fail
    member_diffs: list           # max abs difference to the goldens, per member
    ensemble_diff: float         # max abs difference to leafsub's in-process scores
    tolerance: float             # for the ensemble comparison
    labels_equal: int
    count: int
    load_s: float = None
    predict_s: float = None
    failures: list = dataclasses.field(default_factory=list)

    @property
    def passed(self):
        return not self.failures

    def to_dict(self):
        return {"passed": self.passed, "checks": self.checks, "member_diffs": self.member_diffs,
                "ensemble_diff": self.ensemble_diff, "tolerance": self.tolerance,
                "labels_equal": self.labels_equal, "count": self.count,
                "load_s": self.load_s, "predict_s": self.predict_s}


def run_child(staging, profile, member_probes, probe_path, reference, timeout=None):
    """Run the child on ``staging``; returns ``(info dict, arrays dict)``.

    ``reference``: the build's settings for leafsub's own ensemble in the child
    (``members`` [{dir, preprocess, input_size, output}], ``views``, ``method``,
    ``weights``, ``chunk_size``).

    Raises:
      CheckFailed when the child cannot import, construct or call the submission.
    """
    protocol = Protocol.from_profile(profile)
    iface = protocol.interface
    work = tempfile.mkdtemp(prefix="leafsub-selfcheck-")
    try:
        script = os.path.join(work, "selfcheck_child.py")
        shutil.copyfile(CHILD, script)
        shutil.copyfile(HARNESS, os.path.join(work, "leafsub_harness.py"))
        from importlib import resources
        runtime_file = "runtime_torch.py" if protocol.framework == "torch" else "runtime.py"
        # leafsub_runtime (the framework's ops) imports leafsub_spec (TF-free constants,
        # the platform-input conversion), which the harness imports too.
        for name, target in ((runtime_file, "leafsub_runtime.py"), ("spec.py", "leafsub_spec.py")):
            with resources.as_file(resources.files("leafsub.submission_template").joinpath(
                    name)) as source:
                shutil.copyfile(source, os.path.join(work, target))
        result = os.path.join(work, "result")
        request = protocol.child_request(
            folder=os.path.abspath(staging),
            members=[{"probe": os.path.abspath(p)} for p in member_probes],
            probe=os.path.abspath(probe_path), result=result, reference=reference,
            # The image pipelines mean nothing to a time series: no hint to look for.
            hint_modes=list(HINT_MODES) if protocol.input.is_image else [])
        with open(os.path.join(work, "request.json"), "w", encoding="utf-8") as f:
            json.dump(request, f)
        # CPU only: the calling process (often the training notebook) may hold the whole GPU.
        env = tflog.quiet_env(dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                                   CUDA_VISIBLE_DEVICES="-1"))
        timeout = timeout or max(600.0, protocol.time_s)
        try:
            proc = subprocess.run([sys.executable, "-B", script, os.path.join(work, "request.json")],
                                  cwd=staging, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CheckFailed("Self-check: the rendered model.py did not finish loading and "
                              "predicting the probe batch within %.0f s in a fresh Python process; "
                              "no zip was written." % timeout) from None
        info_path = result + ".json"
        if not os.path.exists(info_path):
            tail = "\n".join(tflog.strip_startup(proc.stderr or "").strip().splitlines()[-8:])
            raise CheckFailed("Self-check: the Python process that imports the rendered model.py "
                              "died (exit code %s) before reporting; no zip was written. Its last "
                              "messages:\n%s" % (proc.returncode, tail))
        with open(info_path, "r", encoding="utf-8") as f:
            info = json.load(f)
        if not info.get("ok"):
            where = {"import": "importing model.py",
                     "construct": "constructing %s" % iface.call_text(),
                     "goldens": "running the members on their probe images",
                     "predict": "calling %s() on the probe batch" % iface.method,
                "reference": "running leafsub's runtime on the same batch"}.get(
                    info.get("stage"), info.get("stage"))
            tail = "\n".join(info.get("traceback", "").strip().splitlines()[-6:])
            raise CheckFailed("Self-check: the rendered model.py failed while %s in a fresh Python "
                              "process (%s); no zip was written. If this comes from your "
                              "combiner module, fix it; otherwise it is a bug in leafsub. "
                              "Traceback (last lines):\n%s" % (where, info.get("error"), tail))
        with np.load(result + ".npz") as data:
            arrays = {k: data[k] for k in data.files}
        return info, arrays
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare(info, arrays, profile, members, expected_scores, hint=None):
    """Judge the child's report against the goldens and leafsub's own computation.

    Args:
      members: dicts with ``label`` (how to name the member), ``goldens`` ([n, C]) and
        ``tolerance``.
      expected_scores: leafsub's in-process ensemble scores on the probe batch.
      hint: ``hint(i, diff) -> str`` explaining a member's mismatch (or None).
    """
    checks, failures, diffs = [], [], []  # Check records
    for i, m in enumerate(members):
        got = arrays["member%d" % i]
        want = np.asarray(m["goldens"], dtype=np.float64)
        if got.shape != want.shape:
            diff = float("inf")
            detail = "output shape %s, goldens %s" % (got.shape, want.shape)
        else:
            diff = float(np.max(np.abs(got - want))) if want.size else 0.0
            detail = "max abs difference %.3g on %d probe images (tolerance %.3g)" % (
                diff, want.shape[0], m["tolerance"])
        diffs.append(diff)
        ok = diff <= m["tolerance"]
        checks.append(Check.judged("goldens %s" % m["label"], ok, detail))
        if not ok:
            extra = hint(i, diff) if hint else ""
            failures.append("%s: the rendered model.py does not reproduce its goldens: %s.%s"
                            % (m["label"], detail, (" " + extra) if extra else ""))

    tolerance = max(m["tolerance"] for m in members)
    scores = arrays["scores"]
    expected_scores = np.asarray(expected_scores, dtype=np.float64)
    if scores.shape != expected_scores.shape:
        ens_diff = float("inf")
    else:
        ens_diff = float(np.max(np.abs(scores - expected_scores))) if scores.size else 0.0
    ok = ens_diff <= tolerance
    checks.append(Check.judged("ensemble scores", ok, "model.py vs leafsub's runtime.Ensemble on "
                               "%d probe images: max abs difference %.3g (tolerance %.3g)"
                               % (len(expected_scores), ens_diff, tolerance)))
    if not ok and not failures:
        failures.append("the ensemble's scores from model.py differ from leafsub's own "
                        "computation by up to %.3g (tolerance %.3g)" % (ens_diff, tolerance))

    out = profile["output"]
    predictions = arrays["predictions"]
    n = len(expected_scores)
    labels_equal = 0
    if out["kind"] == "labels":
        expected = np.argmax(expected_scores, axis=1)
        shape_ok = predictions.shape == (n,) and np.issubdtype(predictions.dtype, np.integer)
        if shape_ok:
            labels_equal = int(np.sum(predictions == expected))
        ok = shape_ok and labels_equal == n
        detail = ("%d/%d labels equal to leafsub's computation, %s %s"
                  % (labels_equal, n, "/".join(info.get("output_types", [])),
                     info.get("output_dtype")) if shape_ok else
                  "predict returned shape %s dtype %s; the profile expects integer labels of shape "
                  "[%d]" % (predictions.shape, predictions.dtype, n))
    else:
        shape_ok = predictions.shape == expected_scores.shape
        pdiff = float(np.max(np.abs(predictions - expected_scores))) if shape_ok and n else 0.0
        labels_equal = n if shape_ok and pdiff <= tolerance else 0
        ok = shape_ok and pdiff <= tolerance
        detail = "scores shape %s, max abs difference %.3g" % (predictions.shape, pdiff)
    protocol = Protocol.from_profile(profile)
    container = protocol.output.container
    types = info.get("output_types", [])
    torch = protocol.framework == "torch"
    if container == "tensor" and not all(("torch" if torch else "tensorflow") in t
                                         for t in types):
        ok = False
        detail += "; the profile expects a %s, got %s" % (
            "torch.Tensor" if torch else "tf.Tensor", ", ".join(types))
    if container == "numpy" and types != ["numpy.ndarray"]:
        ok = False
        detail += "; the profile expects a numpy array, got %s" % ", ".join(types)
    checks.append(Check.judged("predict() output", ok, detail))
    if not ok and not failures:
        failures.append("predict() on the probe batch: %s" % detail)
    return SelfCheckResult(checks=checks, member_diffs=diffs, ensemble_diff=ens_diff,
                           tolerance=tolerance, labels_equal=labels_equal, count=n,
                           load_s=info.get("load_s"), predict_s=info.get("predict_s"),
                           failures=failures)
