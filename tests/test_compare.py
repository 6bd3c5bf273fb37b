"""leafsub compare: the paired statistics by hand, the plumbing, and the real CLI on two zips."""

import json
import math
import os
import re
import zipfile

import numpy as np
import pytest

from conftest import run_cli
from leafsub.errors import CheckFailed, UsageError
from leafsub.evaluator import compare as C
from leafsub.evaluator.terminal import use_color

NAMES = ["healthy", "unhealthy"]


def paired(n_both_right, n_only_a, n_only_b, n_both_wrong):
    """Labels and two prediction vectors with a known 2x2 table of correctness (2 classes)."""
    n = n_both_right + n_only_a + n_only_b + n_both_wrong
    y = np.arange(n) % 2
    right_a = np.r_[np.ones(n_both_right), np.ones(n_only_a), np.zeros(n_only_b), np.zeros(n_both_wrong)]
    right_b = np.r_[np.ones(n_both_right), np.zeros(n_only_a), np.ones(n_only_b), np.zeros(n_both_wrong)]
    pred_a = np.where(right_a == 1, y, 1 - y)
    pred_b = np.where(right_b == 1, y, 1 - y)
    return y, pred_a, pred_b


def test_mcnemar_p_value_by_hand():
    # A right and B wrong on 7 images, the reverse on 1: p = 2 * (C(8,0) + C(8,1)) / 2^8
    y, a, b = paired(80, 7, 1, 12)
    d = C.compare_predictions(y, a, b, NAMES)
    assert (d["mcnemar"]["b"], d["mcnemar"]["c"]) == (7, 1)
    assert d["mcnemar"]["p_value"] == 2 * (1 + 8) / 256 == 0.0703125
    assert d["a"]["accuracy"] == 0.87 and d["b"]["accuracy"] == 0.81
    assert d["accuracy_diff"]["diff"] == pytest.approx((1 - 7) / 100)
    assert d["accuracy_diff"]["low"] < d["accuracy_diff"]["diff"] < d["accuracy_diff"]["high"]
    assert d["better"] is None and not d["significant"]
    assert d["verdict"] == "no evidence that A is better than B (p=0.07)"


@pytest.mark.parametrize("table, expected_p, better, verdict", [
    # b = 1, c = 12: p = 2 * (1 + 13) / 2^13
    ((50, 1, 12, 5), 2 * 14 / 8192, "b", "B is better than A (p=0.0034)"),
    # b = 12, c = 0: p = 2 / 2^12
    ((50, 12, 0, 5), 2 / 4096, "a", "A is better than B (p<0.001)"),
    # b = 3, c = 5: p = min(1, 2 * (1 + 8 + 28 + 56) / 256) = 0.7265625
    ((50, 3, 5, 5), 2 * 93 / 256, None, "no evidence that B is better than A (p=0.73)"),
    # identical correctness: no discordant pairs, p = 1
    ((50, 0, 0, 5), 1.0, None, "no evidence that B is better than A (p=1)"),
])
def test_verdicts(table, expected_p, better, verdict):
    d = C.compare_predictions(*paired(*table), class_names=NAMES)
    assert d["mcnemar"]["p_value"] == expected_p
    assert d["better"] == better
    assert d["verdict"] == verdict


def test_per_class_changes_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    a = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 0])   # recall 2/4, 2/2, 3/4
    b = np.array([0, 0, 0, 1, 1, 0, 2, 2, 2, 2])   # recall 3/4, 1/2, 4/4
    d = C.compare_predictions(y, a, b, ["x", "y", "z"])
    rows = {r["class"]: r for r in d["per_class"]}
    assert [rows[k]["support"] for k in "xyz"] == [4, 2, 4]
    assert [rows[k]["recall_delta"] for k in "xyz"] == pytest.approx([0.25, -0.5, 0.25])
    # F1 = 2TP/(2TP+FP+FN). A: x 4/(4+1+2)=4/7, y 4/(4+2+0)=2/3, z 6/(6+0+1)=6/7
    #                       B: x 6/(6+1+1)=3/4, y 2/(2+1+1)=1/2, z 8/(8+0+0)=1
    assert [rows[k]["f1_a"] for k in "xyz"] == pytest.approx([4 / 7, 2 / 3, 6 / 7])
    assert [rows[k]["f1_delta"] for k in "xyz"] == pytest.approx([3 / 4 - 4 / 7, 1 / 2 - 2 / 3, 1 / 7])
    assert (d["mcnemar"]["b"], d["mcnemar"]["c"]) == (1, 2)


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        C.compare_predictions([0, 1], [0, 1], [0])


def test_text_fits_80_columns_and_has_no_colour_codes():
    y, a, b = paired(300, 10, 25, 40)
    d = C.compare_predictions(y, a, b, ["a very long class name that would not fit", "short"])
    d["submissions"] = {"a": {"submission": "/home/student/" + "x" * 90 + "/a.zip", "passed": True,
                              "failed_checks": []},
                        "b": {"submission": "b.zip", "passed": False, "failed_checks": ["goldens"]}}
    d["profile"] = "an2dl-2023"
    text = C.format_text(d, color=False)
    assert "\x1b[" not in text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    # b = 10, c = 25: p = 2 * P[Bin(35, 1/2) <= 10] = 0.0167...
    p = 2 * sum(math.comb(35, k) for k in range(11)) / 2 ** 35
    assert d["mcnemar"]["p_value"] == pytest.approx(p, rel=1e-12) and round(p, 3) == 0.017
    assert "Verdict: B is better than A (p=0.017)." in text
    assert re.search("…x+/a.zip", text)  # long paths keep their end
    assert "1 check failed" in text
    coloured = C.format_text(d, color=True)
    assert "\x1b[" in coloured


def test_no_color_is_respected(monkeypatch):
    class Tty:
        def isatty(self):
            return True
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color(Tty())
    monkeypatch.setenv("NO_COLOR", "")
    assert not use_color(Tty())


def test_format_p():
    assert [C.format_p(p) for p in (0.0703125, 0.42, 0.012, 1.0, 0.0009, 0.001)] == \
        ["0.07", "0.42", "0.012", "1", "<0.001", "0.001"]


# --------------------------------------------------------------------------- compare() with a stand-in evaluate

class FakeResult:
    def __init__(self, d):
        self.d = d

    def to_dict(self):
        return self.d


@pytest.fixture
def fake_evaluate(monkeypatch, tmp_path):
    """Stand-in for the evaluator: predictions per zip name, as its result dict carries them."""
    import leafsub.evaluator.evaluate as ev

    y, pa, pb = paired(40, 1, 12, 3)
    outputs = {"a.zip": pa, "b.zip": pb}
    calls = []

    def evaluate(submission, data, profile=None, progress=True, **kwargs):
        calls.append((os.path.basename(submission), data, profile, kwargs))
        pred = outputs.get(os.path.basename(submission))
        checks = [{"name": "loads", "status": "pass" if pred is not None else "fail",
                   "detail": "ok" if pred is not None else "ImportError: no module named 'mine'"}]
        return FakeResult({"passed": pred is not None, "profile": "an2dl-2023", "checks": checks,
                           "n_images": len(y), "class_names": NAMES, "labels": y.tolist(),
                           "predictions": None if pred is None else pred.tolist()})

    monkeypatch.setattr(ev, "evaluate", evaluate, raising=False)
    for name in ("a.zip", "b.zip", "broken.zip"):
        (tmp_path / name).write_bytes(b"PK")
    return calls


def test_compare_runs_both_and_writes_json(fake_evaluate, tmp_path):
    out = tmp_path / "cmp.json"
    r = C.compare(tmp_path / "a.zip", tmp_path / "b.zip", "val.npz", profile="an2dl-2023",
                  json_path=out, progress=False, runtime="tensorflow==2.15.1")
    assert [c[0] for c in fake_evaluate] == ["a.zip", "b.zip"]
    assert fake_evaluate[0][1:] == ("val.npz", "an2dl-2023", {"runtime": "tensorflow==2.15.1"})
    assert r.better == "b" and r.exit_code == 0
    assert r.verdict == "B is better than A (p=0.0034)"
    d = json.loads(out.read_text())
    assert d["mcnemar"] == {"b": 1, "c": 12, "p_value": 2 * 14 / 8192}
    assert d["submissions"]["a"]["passed"] is True and d["profile"] == "an2dl-2023"
    assert d["class_names"] == NAMES


def test_compare_without_predictions_is_a_failed_check(fake_evaluate, tmp_path):
    with pytest.raises(CheckFailed, match="broken.zip .B. produced no predictions.*no module named 'mine'"):
        C.compare(tmp_path / "a.zip", tmp_path / "broken.zip", "val.npz", progress=False)


def test_compare_bad_input(tmp_path):
    with pytest.raises(UsageError, match="no such submission zip"):
        C.compare(tmp_path / "nope.zip", tmp_path / "nope2.zip", "val.npz")


def test_cli_bad_input_exits_2(tmp_path):
    proc = run_cli("compare", tmp_path / "a.zip", tmp_path / "b.zip", "--data", tmp_path / "val.npz")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "no such submission zip" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("compare", tmp_path / "a.zip")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- end to end, real CLI

MODEL_PY = '''\
import numpy as np


class model:
    """Predicts 'unhealthy' when the mean of channel {channel} is above 127."""

    def __init__(self, path):
        self.path = path

    def predict(self, X):
        x = np.asarray(X, dtype=np.float32)
        return (x[..., {channel}].mean(axis=(1, 2)) > 127).astype(np.int64)
'''


def _zip(path, channel):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model.py", MODEL_PY.format(channel=channel))
        z.writestr("metadata", "")
        z.writestr("SubmissionModel/README.txt", "no weights: the rule is in model.py\n")


@pytest.mark.slow
def test_compare_two_real_zips_through_the_cli(tmp_path):
    # 2 classes (an2dl-2023). A reads the red channel, B the green one; the images set each
    # channel so that A is right and B wrong on 7 images, the reverse on 1, both right on 30.
    y, pa, pb = paired(30, 7, 1, 2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, (len(y), 96, 96, 3)).astype(np.uint8)
    images[..., 0] += np.where(pa == 1, 200, 0).astype(np.uint8)[:, None, None]
    images[..., 1] += np.where(pb == 1, 200, 0).astype(np.uint8)[:, None, None]
    np.savez(tmp_path / "val.npz", images=images, labels=y.astype(np.int64))
    _zip(tmp_path / "a.zip", 0)
    _zip(tmp_path / "b.zip", 1)

    proc = run_cli("compare", tmp_path / "a.zip", tmp_path / "b.zip", "--data", tmp_path / "val.npz",
                   "--profile", "an2dl-2023", "--json", tmp_path / "cmp.json", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = json.loads((tmp_path / "cmp.json").read_text())
    assert (d["mcnemar"]["b"], d["mcnemar"]["c"]) == (7, 1)
    assert d["mcnemar"]["p_value"] == 0.0703125
    assert d["a"]["accuracy"] == pytest.approx(37 / 40) and d["b"]["accuracy"] == pytest.approx(31 / 40)
    assert d["verdict"] == "no evidence that A is better than B (p=0.07)"
    assert "Verdict: No evidence that A is better than B (p=0.07)." in proc.stdout
    assert "\x1b[" not in proc.stdout  # NO_COLOR (set by run_cli) and not a terminal
    # Paths are printed whole (to be copied), so only they may pass 80 columns.
    assert max(len(line) for line in proc.stdout.splitlines() if "written to" not in line) <= 80
    assert re.search(r"healthy\s+\d+", proc.stdout)
