"""Classification metrics, bootstrap intervals and paired tests, in pure numpy.

Used by the evaluator's parent process (which never imports TensorFlow) and by
``leafsub compare``. No scikit-learn, no scipy: everything here is a few lines of
numpy or exact integer arithmetic, and follows scikit-learn's conventions where
they matter (documented per function) so that numbers agree with what students
compute in their notebooks.

Conventions:
  * labels are integer class indices in ``[0, n_classes)``;
  * ``confusion_matrix[i][j]`` counts images of true class ``i`` predicted as ``j``;
  * a ratio whose denominator is zero is 0 (scikit-learn's ``zero_division=0``).
"""

import math
from fractions import Fraction

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")

# Largest number of int64 index cells a bootstrap chunk holds at once (16 MB):
# the evaluator's parent process has a 300 MB peak-RSS budget.
_CHUNK_CELLS = 1 << 21


def _labels(y, name):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError("%s must be one-dimensional, got shape %s" % (name, y.shape))
    if y.size and not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("%s must hold integer class indices, got dtype %s" % (name, y.dtype))
    return y.astype(np.int64)


def _pair(y_true, y_pred, n_classes=None):
    y_true = _labels(y_true, "y_true")
    y_pred = _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError("y_true and y_pred differ in length: %d vs %d" % (y_true.size, y_pred.size))
    if y_true.size == 0:
        raise ValueError("no samples: y_true and y_pred are empty")
    if n_classes is not None:
        for name, y in (("y_true", y_true), ("y_pred", y_pred)):
            if y.min() < 0 or y.max() >= n_classes:
                raise ValueError("%s has labels outside [0, %d): min %d, max %d"
                                 % (name, n_classes, y.min(), y.max()))
    return y_true, y_pred


def confusion_matrix(y_true, y_pred, n_classes):
    """``[n_classes, n_classes]`` int64 counts, rows = true class, columns = predicted."""
    y_true, y_pred = _pair(y_true, y_pred, n_classes)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def _safe_div(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _from_confusion(cm):
    """Per-class and summary metrics from one or a stack of confusion matrices.

    ``cm`` is ``[..., K, K]``. Returns a dict of arrays with leading shape ``[...]``.
    """
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    support = cm.sum(axis=-1).astype(np.float64)      # true count per class
    predicted = cm.sum(axis=-2).astype(np.float64)    # predicted count per class
    n = support.sum(axis=-1)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    # F1 = 2TP / (2TP + FP + FN): equal to 2PR/(P+R) and 0 when undefined (sklearn, zero_division=0).
    f1 = _safe_div(2 * tp, support + predicted)
    in_true = support > 0
    in_either = in_true | (predicted > 0)
    return {
        "accuracy": _safe_div(tp.sum(axis=-1), n),
        # sklearn's balanced_accuracy_score: mean recall over classes present in y_true.
        "balanced_accuracy": _safe_div((recall * in_true).sum(axis=-1), in_true.sum(axis=-1)),
        # sklearn's f1_score(average="macro", zero_division=0): the labels it averages over are
        # unique_labels(y_true, y_pred), i.e. classes present in either vector. A class never
        # seen and never predicted does not drag the mean down.
        "macro_f1": _safe_div((f1 * in_either).sum(axis=-1), in_either.sum(axis=-1)),
        "precision": precision, "recall": recall, "f1": f1, "support": support,
    }


def classification_metrics(y_true, y_pred, n_classes, class_names=None):
    """Accuracy, balanced accuracy, macro F1, per-class scores and the confusion matrix.

    Args:
      y_true, y_pred: integer class indices, same length, at least one sample.
      n_classes: number of classes K; labels must lie in ``[0, K)``.
      class_names: optional list of K names used in ``per_class``.

    Returns a JSON-ready dict (plain Python ints and floats):
      ``accuracy``; ``balanced_accuracy`` (mean recall over classes present in ``y_true``);
      ``macro_f1`` (mean F1 over classes present in ``y_true`` or ``y_pred``, F1 = 0 where
      undefined: scikit-learn's ``f1_score(average="macro", zero_division=0)``);
      ``per_class``: one ``{"class", "index", "precision", "recall", "f1", "support"}`` per
      class 0..K-1 (``class`` is the name, or ``str(index)`` without names);
      ``confusion_matrix``: K lists of K ints, rows = true class, columns = predicted;
      ``n``: number of samples.

    Raises:
      ValueError on empty, mismatched or out-of-range inputs, or a wrong number of names.
    """
    n_classes = int(n_classes)
    if n_classes < 1:
        raise ValueError("n_classes must be at least 1, got %d" % n_classes)
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(class_names) != n_classes:
            raise ValueError("%d class names given for %d classes" % (len(class_names), n_classes))
    cm = confusion_matrix(y_true, y_pred, n_classes)
    m = _from_confusion(cm)
    per_class = []
    for k in range(n_classes):
        per_class.append({
            "class": class_names[k] if class_names else str(k),
            "index": k,
            "precision": float(m["precision"][k]),
            "recall": float(m["recall"][k]),
            "f1": float(m["f1"][k]),
            "support": int(m["support"][k]),
        })
    return {
        "accuracy": float(m["accuracy"]),
        "balanced_accuracy": float(m["balanced_accuracy"]),
        "macro_f1": float(m["macro_f1"]),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "n": int(cm.sum()),
    }


def _check_boot(n_boot, level):
    n_boot = int(n_boot)
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1, got %d" % n_boot)
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1 (e.g. 0.95), got %r" % (level,))
    return n_boot


def _chunks(n_boot, n):
    rows = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, rows):
        yield min(rows, n_boot - start)


def _percentiles(stats, level):
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_stats(y_true, y_pred, metric="accuracy", n_boot=2000, seed=0):
    """The metric on ``n_boot`` bootstrap resamples of the (y_true, y_pred) pairs, float64 [n_boot].

    Resamples are drawn as ``[rows, n]`` index arrays, a bounded number of cells at a time.
    Per resample, balanced accuracy and macro F1 use the classes present in that resample
    (the same convention as :func:`classification_metrics`).
    """
    if metric not in METRICS:
        raise ValueError("unknown metric %r; expected one of %s" % (metric, ", ".join(METRICS)))
    y_true, y_pred = _pair(y_true, y_pred)
    n_boot = _check_boot(n_boot, 0.5)
    n = y_true.size
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot, dtype=np.float64)
    if metric == "accuracy":
        correct = (y_true == y_pred).astype(np.float64)
    else:
        if y_true.min() < 0 or y_pred.min() < 0:
            raise ValueError("labels must be non-negative class indices")
        k = int(max(y_true.max(), y_pred.max())) + 1
        codes = y_true * k + y_pred
    pos = 0
    for rows in _chunks(n_boot, n):
        idx = rng.integers(0, n, size=(rows, n))
        if metric == "accuracy":
            out[pos:pos + rows] = correct[idx].mean(axis=1)
        else:
            flat = codes[idx] + (np.arange(rows, dtype=np.int64) * (k * k))[:, None]
            cm = np.bincount(flat.ravel(), minlength=rows * k * k).reshape(rows, k, k)
            out[pos:pos + rows] = _from_confusion(cm)[metric]
        pos += rows
    return out


def bootstrap_ci(y_true, y_pred, metric="accuracy", n_boot=2000, seed=0, level=0.95):
    """Percentile bootstrap interval ``(low, high)`` for ``metric`` at confidence ``level``.

    ``metric`` is "accuracy", "balanced_accuracy" or "macro_f1". Deterministic for a
    given seed. The interval says how much the score could move on another test set of
    the same size drawn from the same distribution; it does not cover a shift in distribution.
    """
    _check_boot(n_boot, level)
    return _percentiles(bootstrap_stats(y_true, y_pred, metric, n_boot, seed), level)


def _correct_pair(correct_a, correct_b):
    a = np.asarray(correct_a)
    b = np.asarray(correct_b)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError("correctness vectors must be one-dimensional")
    if a.shape != b.shape:
        raise ValueError("correctness vectors differ in length: %d vs %d" % (a.size, b.size))
    if a.size == 0:
        raise ValueError("no samples: the correctness vectors are empty")
    if not (np.all((a == 0) | (a == 1)) and np.all((b == 0) | (b == 1))):
        raise ValueError("correctness vectors must be boolean (or 0/1)")
    return a.astype(bool), b.astype(bool)


def paired_bootstrap_diff(correct_a, correct_b, n_boot=2000, seed=0, level=0.95):
    """Accuracy of B minus accuracy of A on the same images, with a paired percentile interval.

    Args:
      correct_a, correct_b: booleans per image (prediction == label) for A and B, same images
        in the same order. Resampling picks images, keeping each image's pair together.

    Returns ``(diff, low, high)`` where ``diff = mean(correct_b) - mean(correct_a)``.
    """
    a, b = _correct_pair(correct_a, correct_b)
    n_boot = _check_boot(n_boot, level)
    d = b.astype(np.float64) - a.astype(np.float64)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot, dtype=np.float64)
    pos = 0
    for rows in _chunks(n_boot, d.size):
        stats[pos:pos + rows] = d[rng.integers(0, d.size, size=(rows, d.size))].mean(axis=1)
        pos += rows
    low, high = _percentiles(stats, level)
    return float(d.mean()), low, high


# Above this many discordant pairs the tail sum is computed in log space (relative
# error ~1e-12) instead of with exact integers, to bound the time.
_EXACT_LIMIT = 20000


def _binom_tail_exact(m, n):
    """P[X <= m] for X ~ Bin(n, 1/2) as a float, from exact integer arithmetic."""
    term, total = 1, 1  # C(n, 0)
    for k in range(m):
        term = term * (n - k) // (k + 1)
        total += term
    return float(Fraction(total, 1 << n))


def _binom_tail_log(m, n):
    ks = np.arange(m + 1, dtype=np.float64)
    logs = (math.lgamma(n + 1) - np.array([math.lgamma(k + 1) + math.lgamma(n - k + 1) for k in ks])
            - n * math.log(2.0))
    top = logs.max()
    return float(math.exp(top) * np.exp(logs - top).sum())


def mcnemar_exact(correct_a, correct_b):
    """McNemar's exact test on paired correctness (two-sided binomial test on discordant pairs).

    ``b`` counts images A got right and B got wrong, ``c`` images A got wrong and B got right.
    Under the null (A and B equally accurate) X ~ Bin(b + c, 1/2), and
    ``p = min(1, 2 * P[X <= min(b, c)])``; ``p = 1`` when there are no discordant pairs.
    Exact integer arithmetic up to 20000 discordant pairs, log space beyond.

    Returns ``{"b": int, "c": int, "p_value": float}``.
    """
    a, bb = _correct_pair(correct_a, correct_b)
    b = int(np.count_nonzero(a & ~bb))
    c = int(np.count_nonzero(~a & bb))
    n = b + c
    if n == 0:
        p = 1.0
    else:
        tail = _binom_tail_exact(min(b, c), n) if n <= _EXACT_LIMIT else _binom_tail_log(min(b, c), n)
        p = min(1.0, 2.0 * tail)
    return {"b": b, "c": c, "p_value": p}
