"""Metrics against values computed by hand (and against scikit-learn when it is installed)."""

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

from leafsub.evaluator import metrics

# 10 images, 5 classes: class 3 is only ever predicted, class 4 neither seen nor predicted.
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 3, 1, 1, 0, 2, 2, 1]
NAMES = ["apple", "bean", "cherry", "<dock>", "elm"]


def test_classification_metrics_by_hand():
    m = metrics.classification_metrics(Y_TRUE, Y_PRED, 5, NAMES)
    assert m["n"] == 10
    assert m["confusion_matrix"] == [[2, 1, 0, 1, 0],
                                     [1, 2, 0, 0, 0],
                                     [0, 1, 2, 0, 0],
                                     [0, 0, 0, 0, 0],
                                     [0, 0, 0, 0, 0]]
    assert m["accuracy"] == pytest.approx(6 / 10)
    # recall 2/4, 2/3, 2/3 over the classes present in y_true (0, 1, 2)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    # F1 = 2TP/(2TP+FP+FN): 4/7, 4/7, 4/5, and 0 for class 3 (predicted once, never right);
    # class 4 (absent from both) is left out of the mean: (4/7 + 4/7 + 4/5 + 0) / 4 = 17/35
    assert m["macro_f1"] == pytest.approx(17 / 35)
    pc = m["per_class"]
    assert [p["class"] for p in pc] == NAMES
    assert [p["index"] for p in pc] == [0, 1, 2, 3, 4]
    assert [p["support"] for p in pc] == [4, 3, 3, 0, 0]
    assert [p["precision"] for p in pc] == pytest.approx([2 / 3, 1 / 2, 1, 0, 0])
    assert [p["recall"] for p in pc] == pytest.approx([1 / 2, 2 / 3, 2 / 3, 0, 0])
    assert [p["f1"] for p in pc] == pytest.approx([4 / 7, 4 / 7, 4 / 5, 0, 0])
    # JSON-ready: plain Python numbers
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)
    assert type(m["accuracy"]) is float and type(pc[0]["support"]) is int


def test_class_names_default_to_indices_and_perfect_scores():
    m = metrics.classification_metrics([0, 1, 1], [0, 1, 1], 2)
    assert [p["class"] for p in m["per_class"]] == ["0", "1"]
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0


@pytest.mark.parametrize("args, message", [
    (([], [], 2), "no samples"),
    (([0, 1], [0], 2), "differ in length"),
    (([0, 2], [0, 1], 2), "outside"),
    (([0, 1], [0, -1], 2), "outside"),
    (([0.5, 1], [0, 1], 2), "integer"),
    (([[0, 1]], [[0, 1]], 2), "one-dimensional"),
])
def test_bad_inputs_raise(args, message):
    with pytest.raises(ValueError, match=message):
        metrics.classification_metrics(*args)


def test_wrong_number_of_names():
    with pytest.raises(ValueError, match="3 class names given for 2 classes"):
        metrics.classification_metrics([0], [0], 2, ["a", "b", "c"])


def test_mcnemar_exact_by_hand():
    # b = 7 (A right, B wrong), c = 1: p = 2 * (C(8,0) + C(8,1)) / 2^8 = 2 * 9 / 256
    a = np.array([True] * 7 + [False] * 1 + [True] * 5 + [False] * 3)
    b = np.array([False] * 7 + [True] * 1 + [True] * 5 + [False] * 3)
    r = metrics.mcnemar_exact(a, b)
    assert r == {"b": 7, "c": 1, "p_value": 0.0703125}
    assert metrics.mcnemar_exact(b, a) == {"b": 1, "c": 7, "p_value": 0.0703125}


@pytest.mark.parametrize("b, c, expected", [
    (0, 0, 1.0),                      # no discordant pairs
    (3, 3, 1.0),                      # 2 * 42/64 > 1, capped
    (10, 0, 2 / 1024),
    (5, 1, 2 * (1 + 6) / 64),
    (20, 8, float(2 * Fraction(sum(math.comb(28, k) for k in range(9)), 2 ** 28))),
])
def test_mcnemar_table(b, c, expected):
    a = [1] * b + [0] * c + [1, 0]
    bb = [0] * b + [1] * c + [1, 0]
    r = metrics.mcnemar_exact(a, bb)
    assert (r["b"], r["c"]) == (b, c)
    assert r["p_value"] == expected


def test_mcnemar_log_space_agrees_with_exact():
    for m, n in [(1400, 3000), (10, 3000), (2900, 6000)]:
        exact = metrics._binom_tail_exact(m, n)
        assert metrics._binom_tail_log(m, n) == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_mcnemar_many_pairs_is_fast_and_sane():
    a = np.zeros(50000, bool)
    b = np.zeros(50000, bool)
    a[:25100] = True          # b = 25100
    b[25100:] = True          # c = 24900 -> log-space branch
    r = metrics.mcnemar_exact(a, b)
    assert (r["b"], r["c"]) == (25100, 24900)
    # normal approximation: z = 200 / sqrt(50000) = 0.894 -> p ~ 0.37
    assert 0.3 < r["p_value"] < 0.45


def test_bootstrap_accuracy_interval():
    rng = np.random.default_rng(1)
    n = 1000
    y_true = rng.integers(0, 4, n)
    y_pred = np.where(rng.random(n) < 0.8, y_true, (y_true + 1) % 4)
    acc = float(np.mean(y_true == y_pred))
    low, high = metrics.bootstrap_ci(y_true, y_pred, n_boot=2000, seed=0)
    assert low < acc < high
    # percentile interval close to the normal one: 2 * 1.96 * sqrt(p(1-p)/n)
    width = 2 * 1.96 * math.sqrt(acc * (1 - acc) / n)
    assert high - low == pytest.approx(width, rel=0.15)
    assert metrics.bootstrap_ci(y_true, y_pred, n_boot=2000, seed=0) == (low, high)
    assert metrics.bootstrap_ci(y_true, y_pred, n_boot=2000, seed=1) != (low, high)
    narrow = metrics.bootstrap_ci(y_true, y_pred, n_boot=2000, seed=0, level=0.5)
    assert low < narrow[0] < narrow[1] < high


def test_bootstrap_degenerate():
    assert metrics.bootstrap_ci([1, 2, 3], [1, 2, 3]) == (1.0, 1.0)
    assert metrics.bootstrap_ci([1, 2, 3], [0, 0, 0], metric="macro_f1") == (0.0, 0.0)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.bootstrap_ci([0], [0], metric="auc")
    with pytest.raises(ValueError, match="level"):
        metrics.bootstrap_ci([0], [0], level=95)


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "macro_f1"])
def test_vectorised_bootstrap_equals_a_plain_loop(metric):
    """Each resample's score equals classification_metrics on the same resampled indices."""
    rng = np.random.default_rng(2)
    n, k, n_boot = 60, 4, 50
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    stats = metrics.bootstrap_stats(y_true, y_pred, metric, n_boot=n_boot, seed=7)
    idx = np.random.default_rng(7).integers(0, n, size=(n_boot, n))  # one chunk at this size
    loop = [metrics.classification_metrics(y_true[i], y_pred[i], k)[metric] for i in idx]
    np.testing.assert_allclose(stats, loop, rtol=0, atol=1e-12)


def test_bootstrap_chunks_bound_memory(monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK_CELLS", 100)  # 100 cells / 30 images = 3 rows a chunk
    y_true = np.arange(30) % 3
    y_pred = np.where(np.arange(30) % 4 == 0, 0, y_true)
    stats = metrics.bootstrap_stats(y_true, y_pred, "macro_f1", n_boot=10, seed=0)
    assert stats.shape == (10,) and np.all((stats > 0) & (stats <= 1))


def test_paired_bootstrap_diff():
    rng = np.random.default_rng(3)
    a = rng.random(500) < 0.70
    b = a.copy()
    flip = rng.choice(500, 60, replace=False)
    b[flip[:45]] = True   # B fixes some of A's mistakes...
    b[flip[45:]] = False  # ...and makes a few new ones
    diff, low, high = metrics.paired_bootstrap_diff(a, b, n_boot=2000, seed=0)
    assert diff == pytest.approx(b.mean() - a.mean())
    assert low < diff < high
    # same data, roles swapped: the interval mirrors (same seed, same resamples)
    d2, l2, h2 = metrics.paired_bootstrap_diff(b, a, n_boot=2000, seed=0)
    assert (d2, l2, h2) == pytest.approx((-diff, -high, -low))
    # identical models: a point interval at 0
    assert metrics.paired_bootstrap_diff(a, a, n_boot=100) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="differ in length"):
        metrics.paired_bootstrap_diff(a, b[:-1])


def test_cross_check_with_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed; the hand-computed "
                             "values above are the reference")
    rng = np.random.default_rng(4)
    for _ in range(20):
        k = int(rng.integers(2, 7))
        n = int(rng.integers(1, 80))
        y_true = rng.integers(0, k, n)
        y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k, n))
        m = metrics.classification_metrics(y_true, y_pred, k)
        assert m["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true"
            warnings.simplefilter("ignore")
            assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
        assert m["macro_f1"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro", zero_division=0))
        assert m["confusion_matrix"] == sk.confusion_matrix(y_true, y_pred, labels=range(k)).tolist()
