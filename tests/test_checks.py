"""The pure parts of the evaluator: reading predict()'s outputs, the detective's statistics."""

import copy

import numpy as np
import pytest

from leafsub.evaluator import checks as C
from leafsub.evaluator import detective as D
from leafsub.profiles import load_profile

P2022 = load_profile("an2dl-2022")
N = 10


def statuses(checks):
    return {c["name"]: c["status"] for c in checks}


def test_integer_labels_pass():
    labels, checks = C.interpret_outputs(np.arange(N) % 8, N, P2022)
    assert labels.tolist() == (np.arange(N) % 8).tolist()
    assert set(statuses(checks).values()) == {"pass"}


@pytest.mark.parametrize("outputs, name, words, usable", [
    (np.eye(8)[np.arange(N) % 8], "output: shape", "one-hot vectors", True),
    (np.random.default_rng(0).random((N, 8)), "output: shape", "a score per class", True),
    ((np.arange(N) % 8).astype(np.float32), "output: type", "whole numbers", True),
    (np.linspace(0, 1, N), "output: type", "argmax", False),
    (np.array(["Species1"] * N), "output: type", "strings", False),
    (np.full(N, np.nan), "output: no NaN", "NaN", False),
    (np.arange(N - 1), "output: shape", "9 values for 10 images", False),
    (np.full(N, 9), "output: labels in range", "outside 0..7", True),
    (np.zeros((N, 2, 2)), "output: shape", "shape [10, 2, 2]", False),
])
def test_wrong_outputs_fail_with_what_the_profile_expects(outputs, name, words, usable):
    labels, checks = C.interpret_outputs(outputs, N, P2022)
    failed = {c["name"]: c["detail"] for c in checks if c["status"] == "fail"}
    assert name in failed, checks
    assert words in failed[name]
    assert (labels is not None) == usable


def test_a_column_of_labels_is_a_warning():
    labels, checks = C.interpret_outputs((np.arange(N) % 8)[:, None], N, P2022)
    assert statuses(checks)["output: shape"] == "warn" and labels.shape == (N,)


def test_probability_profiles_expect_distributions():
    profile = copy.deepcopy(P2022)
    profile["output"]["kind"] = "probabilities"
    p = np.random.default_rng(1).dirichlet(np.ones(8), N)
    labels, checks = C.interpret_outputs(p, N, profile)
    assert labels.tolist() == np.argmax(p, axis=1).tolist()
    assert set(statuses(checks).values()) == {"pass"}
    _, checks = C.interpret_outputs(p * 3, N, profile)
    assert statuses(checks)["output: probabilities"] == "warn"
    labels, checks = C.interpret_outputs(np.arange(N) % 8, N, profile)
    assert labels is None and statuses(checks)["output: shape"] == "fail"


def test_numpy_profiles_warn_about_tensors():
    p2024 = load_profile("an2dl-2024")
    assert C.output_container(["numpy.ndarray"], p2024)["status"] == "pass"
    check = C.output_container(["tensorflow.python.framework.ops.EagerTensor"], p2024)
    assert check["status"] == "warn" and "numpy" in check["detail"]


def test_compare_labels_counts_differences():
    same = C.compare_labels("deterministic", [1, 2, 3], np.array([1, 2, 3]), "x", "fail")
    assert same["status"] == "pass"
    diff = C.compare_labels("deterministic", [1, 2, 3], np.array([1, 0, 0]), "x", "fail")
    assert diff["status"] == "fail" and "2 of 3 labels differ" in diff["detail"]


def test_sample_is_stratified_and_reproducible():
    labels = np.repeat(np.arange(4), [70, 20, 8, 2])
    s = D.sample(labels, 20)
    assert len(s) == 20 and len(set(s.tolist())) == 20
    assert np.array_equal(s, D.sample(labels, 20))
    counts = np.bincount(labels[s], minlength=4)
    assert counts.min() >= 1 and counts[0] >= 12  # every class, in proportion
    assert sorted(D.sample(labels, 500).tolist()) == list(range(100))


def test_judge_uses_the_exact_mcnemar_test():
    y = np.zeros(40, dtype=np.int64)
    base = np.zeros(40, dtype=np.int64)
    base[:12] = 1                       # wrong on 12
    cand = np.zeros(40, dtype=np.int64)
    cand[:2] = 1                        # wrong on 2 of those 12 only
    r = D.judge("caffe", y, base, cand)
    assert r["gain"] == pytest.approx(0.25)
    assert r["p_value"] == pytest.approx(2 * 1 / 1024)   # 10 discordant pairs, all one way
    assert r["significant"]
    check = D.finding_check([r, D.judge("tf", y, base, base)])
    assert check["status"] == "fail" and "caffe" in check["detail"] and "70.0 %" in check["detail"]


def test_small_gains_are_not_findings():
    y = np.zeros(200, dtype=np.int64)
    base = np.zeros(200, dtype=np.int64)
    base[:8] = 1
    cand = np.zeros(200, dtype=np.int64)
    cand[:1] = 1                       # +3.5 points: below MIN_GAIN
    r = D.judge("BGR", y, base, cand)
    assert not r["significant"]
    assert D.finding_check([r])["status"] == "pass"


def test_compare_labels_reads_scores_on_both_sides():
    scores = np.random.default_rng(2).random((6, 8))
    check = C.compare_labels("deterministic", scores, scores.copy(), "6 images", "fail")
    assert check["status"] == "pass" and "6 images" in check["detail"]
