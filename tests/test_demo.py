"""The README's first command, in its quick form: the whole flow on synthetic leaves.

Generates images, trains two small CNNs, exports, builds a TTA ensemble,
evaluates it, and shows the evaluator catching a model.py that forgot the caffe
preprocessing. About a minute and a half on 2 cores.
"""

import json
import os
import zipfile

import numpy as np
import pytest

from conftest import run_cli
from leafsub import tflog


@pytest.mark.slow
def test_quick_demo_runs_the_whole_flow_and_catches_the_mismatch(tmp_path):
    out = tmp_path / "demo"

    proc = run_cli("demo", "--quick", "--out", out, timeout=900)

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # A newcomer's first screen: leafsub's own lines only, nothing that reads as a crash.
    output = proc.stdout + proc.stderr
    noise = [line for line in output.splitlines() if tflog.is_startup_line(line)
             or "warn" in line.lower() or "cuda" in line.lower() or "error" in line.lower()]
    assert noise == [], "\n".join(noise)
    for name in ("submission.zip", "test.npz", "report.html", "evaluation.json",
                 "mismatched-submission.zip", "runs/a-caffe/leafsub.json",
                 "runs/b-rescaling/saved_model/saved_model.pb"):
        assert (out / name).exists(), name
    with zipfile.ZipFile(out / "submission.zip") as z:
        names = set(z.namelist())
    assert {"model.py", "metadata", "leafsub-manifest.json"} <= names
    assert any(n.startswith("SubmissionModel2/") for n in names)
    good = json.loads((out / "evaluation.json").read_text())
    bad = json.loads((out / "mismatched-evaluation.json").read_text())
    assert good["passed"] is True
    # A clean pass: the demo's data, models and profile agree, so nothing to warn about.
    assert [c for c in good["checks"] if c["status"] != "pass"] == []
    with np.load(out / "test.npz") as pack:
        assert pack["class_names"].tolist() == good["class_names"] == [
            "Species%d" % k for k in range(1, 9)]
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "checks passed." in report and 'class="check warn"' not in report
    assert good["metrics"]["accuracy"] > 0.25  # 8 classes: chance is 0.125
    detective = next(c for c in bad["checks"] if c["name"] == "mismatch detective")
    assert detective["status"] in ("warn", "fail") and "caffe" in detective["detail"]
    assert "caught by the mismatch detective" in proc.stdout
    assert "Ensemble on the held-out split: accuracy" in proc.stdout
    # Progress is visible while it works.
    assert "[1/6]" in proc.stderr and "[6/6]" in proc.stderr
    assert os.path.getsize(out / "report.html") > 10000
