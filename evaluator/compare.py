"""``leafsub compare``: is submission B really better than A on this data, or is it noise?

Both submissions go through the evaluator's replay on the same images; the pure part,
:func:`compare_predictions`, then pairs their predictions image by image:

  * accuracy of each and the difference B - A with a paired percentile bootstrap interval;
  * McNemar's exact test on the images where exactly one of them is right (the verdict's
    p-value: it uses the pairing, so it is far more sensitive than comparing two
    independent intervals);
  * per-class recall and F1 of each and their change.

The verdict is plain language: "B is better than A (p=0.012)", "A is better than B
(p=0.004)" or "no evidence that B is better than A (p=0.42)". A comparison whose
outcome is "A is better" is not a failure: the exit code is 0 whenever the comparison
ran, 2 on bad input, 1 when a submission could not produce predictions at all.
"""

import os

import click
import numpy as np

from ..errors import CheckFailed, UsageError
from ..jsonfiles import dumps, write_atomic
from . import metrics as M

ALPHA = 0.05


def format_p(p):
    """p-values as people read them: 0.012, 0.42, 0.0703 -> 0.07, <0.001."""
    if p < 0.001:
        return "<0.001"
    text = "%.2g" % p
    return text if "e" not in text else "%.3f" % p


def p_text(p):
    """``p=0.012`` or ``p<0.001``."""
    text = format_p(p)
    return "p" + text if text.startswith("<") else "p=" + text


def _verdict(diff, p, alpha):
    if p < alpha and diff > 0:
        return "b", "B is better than A (%s)" % p_text(p)
    if p < alpha and diff < 0:
        return "a", "A is better than B (%s)" % p_text(p)
    if diff >= 0:
        return None, "no evidence that B is better than A (%s)" % p_text(p)
    return None, "no evidence that A is better than B (%s)" % p_text(p)


def compare_predictions(y_true, pred_a, pred_b, class_names=None, n_classes=None, n_boot=2000, seed=0,
                        level=0.95, alpha=ALPHA):
    """Compare two prediction vectors on the same labelled images.

    Args:
      y_true, pred_a, pred_b: integer class indices per image, same images in the same order.
      class_names: names of the classes (their number fixes ``n_classes``), optional.
      n_classes: number of classes when no names are given (default: largest label + 1).
      n_boot, seed, level: the paired bootstrap of the accuracy difference.
      alpha: significance level of the verdict (McNemar's exact test).

    Returns a JSON-ready dict: ``n_images``, ``class_names``, ``a`` and ``b`` (accuracy,
    balanced_accuracy, macro_f1), ``accuracy_diff`` {diff (B - A), low, high, level, n_boot},
    ``mcnemar`` {b: A right and B wrong, c: A wrong and B right, p_value}, ``per_class``
    [{class, index, support, recall_a, recall_b, recall_delta, f1_a, f1_b, f1_delta}],
    ``better`` ("a", "b" or None), ``significant``, ``alpha`` and ``verdict`` (a sentence).

    Raises:
      ValueError on mismatched lengths, empty or out-of-range labels.
    """
    y_true = np.asarray(y_true)
    pred_a = np.asarray(pred_a)
    pred_b = np.asarray(pred_b)
    if not (y_true.shape == pred_a.shape == pred_b.shape):
        raise ValueError("labels and the two prediction vectors differ in length: %d, %d, %d"
                         % (y_true.size, pred_a.size, pred_b.size))
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        n_classes = len(class_names)
    elif n_classes is None:
        n_classes = int(max(y_true.max(), pred_a.max(), pred_b.max())) + 1 if y_true.size else 1
    ma = M.classification_metrics(y_true, pred_a, n_classes, class_names)
    mb = M.classification_metrics(y_true, pred_b, n_classes, class_names)
    correct_a = pred_a == y_true
    correct_b = pred_b == y_true
    diff, low, high = M.paired_bootstrap_diff(correct_a, correct_b, n_boot=n_boot, seed=seed, level=level)
    test = M.mcnemar_exact(correct_a, correct_b)
    better, verdict = _verdict(diff, test["p_value"], alpha)
    per_class = []
    for ca, cb in zip(ma["per_class"], mb["per_class"]):
        per_class.append({
            "class": ca["class"], "index": ca["index"], "support": ca["support"],
            "recall_a": ca["recall"], "recall_b": cb["recall"], "recall_delta": cb["recall"] - ca["recall"],
            "f1_a": ca["f1"], "f1_b": cb["f1"], "f1_delta": cb["f1"] - ca["f1"],
        })
    summary = ("accuracy", "balanced_accuracy", "macro_f1")
    return {
        "n_images": int(y_true.size),
        "class_names": [p["class"] for p in ma["per_class"]],
        "a": {k: ma[k] for k in summary},
        "b": {k: mb[k] for k in summary},
        "accuracy_diff": {"diff": diff, "low": low, "high": high, "level": level, "n_boot": int(n_boot)},
        "mcnemar": test,
        "per_class": per_class,
        "better": better,
        "significant": better is not None,
        "alpha": alpha,
        "verdict": verdict,
    }


class CompareResult:
    """The comparison of two submissions (``leafsub.compare``'s return value).

    Attributes:
      comparison: the dict of :func:`compare_predictions`.
      a, b: per submission {"submission", "passed", "failed_checks", "warned_checks"}.
      verdict: the sentence; better: "a", "b" or None.
    """

    exit_code = 0  # a comparison's outcome is never a failure

    def __init__(self, comparison, a, b, profile=None, data=None):
        self.comparison = comparison
        self.a = a
        self.b = b
        self.profile = profile
        self.data = data

    @property
    def verdict(self):
        return self.comparison["verdict"]

    @property
    def better(self):
        return self.comparison["better"]

    def to_dict(self):
        out = dict(self.comparison)
        out["submissions"] = {"a": self.a, "b": self.b}
        out["profile"] = self.profile
        out["data"] = self.data
        return out

    def __repr__(self):
        return "<CompareResult: %s>" % self.verdict

    def _repr_html_(self):  # notebooks
        import html
        return "<pre>%s</pre>" % html.escape(format_text(self.to_dict(), color=False))


# --------------------------------------------------------------------------- running the replay

def _summary(result, path):
    d = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    checks = d.get("checks") or []
    return d, {
        "submission": os.fspath(path),
        "passed": d.get("passed"),
        "failed_checks": [c.get("name") for c in checks if c.get("status") == "fail"],
        "warned_checks": [c.get("name") for c in checks if c.get("status") == "warn"],
    }


def _labels_of(d, data):
    labels = d.get("labels")
    if labels is None:
        from ..datasets import open_pack, open_tensor_pack
        tensor = (d.get("input") or {}).get("kind") == "tensor"  # a series: not an image pack
        labels = (open_tensor_pack(data) if tensor else open_pack(data)).labels
    return np.asarray(labels, dtype=np.int64)


def _class_names_of(d):
    names = d.get("class_names")
    if names:
        return [str(n) for n in names]
    per_class = (d.get("metrics") or {}).get("per_class") or []
    return [str(p.get("class")) for p in per_class] or None


def compare(a, b, data, profile=None, n_boot=2000, seed=0, level=0.95, alpha=ALPHA, json_path=None,
            progress=True, **evaluate_kwargs):
    """Replay both submissions on ``data`` and compare them image by image.

    Args:
      a, b: the two submission zips (A is the reference, B the candidate).
      data: the labelled data (as for ``leafsub evaluate``).
      profile: the challenge profile name or JSON path (as for evaluate).
      n_boot, seed, level, alpha: see :func:`compare_predictions`.
      json_path: also write the comparison as JSON here.
      progress, **evaluate_kwargs: passed on to ``leafsub.evaluator.evaluate.evaluate``
        (runtime, python, batch_size, time_limit, memory_limit).

    Returns:
      a :class:`CompareResult`.

    Raises:
      UsageError (exit 2) on unreadable input; CheckFailed (exit 1) when a submission
      produced no predictions to compare (its evaluation says why).
    """
    for path in (a, b):
        if not os.path.isfile(path):
            raise UsageError("%s: no such submission zip. Give two zips: leafsub compare A.zip B.zip "
                             "--data DATA." % path)
    if not 0 < level < 1:
        raise UsageError("--level must be between 0 and 1 (e.g. 0.95), got %r." % (level,))
    if not 0 < alpha < 1:
        raise UsageError("--alpha must be between 0 and 1 (e.g. 0.05), got %r." % (alpha,))
    if int(n_boot) < 1:
        raise UsageError("--n-boot must be at least 1, got %r." % (n_boot,))
    from .evaluate import evaluate

    dicts, summaries = [], []
    for name, path in (("A", a), ("B", b)):
        if progress:
            click.echo("Replaying %s: %s" % (name, path), err=True)
        result = evaluate(path, data, profile=profile, progress=progress, **evaluate_kwargs)
        d, summary = _summary(result, path)
        if d.get("predictions") is None:
            why = "; ".join("%s: %s" % (c.get("name"), c.get("detail")) for c in d.get("checks") or []
                            if c.get("status") == "fail") or "no predictions in its result"
            raise CheckFailed("%s (%s) produced no predictions to compare: %s. Run 'leafsub evaluate %s "
                              "--data %s' to see its full report." % (path, name, why, path, data))
        dicts.append(d)
        summaries.append(summary)
    da, db = dicts
    if (da.get("output") or {}).get("kind") == "values":  # forecasts: per-sample errors
        from . import values as V
        targets, pa, pb = (V.phase_arrays(d) for d in (da["targets"], da["predictions"],
                                                         db["predictions"]))
        if [p.shape for p in pa] != [p.shape for p in pb]:
            raise UsageError("%s and %s returned forecasts of different shapes; compare needs "
                             "the same data and profile for both." % (a, b))
        comparison = V.paired_values_test(targets, pa, pb, da["output"]["metric"],
                                          n_boot=n_boot, seed=seed, level=level, alpha=alpha)
        result = CompareResult(comparison, summaries[0], summaries[1],
                               profile=da.get("profile") or profile, data=os.fspath(data)
                               if not isinstance(data, (list, tuple)) else
                               list(map(os.fspath, data)))
        if json_path:
            write_atomic(json_path, dumps(result.to_dict()))
        return result
    labels = _labels_of(da, data)
    pred_a = np.asarray(da["predictions"], dtype=np.int64).reshape(-1)
    pred_b = np.asarray(db["predictions"], dtype=np.int64).reshape(-1)
    if not (labels.size == pred_a.size == pred_b.size):
        raise UsageError("%s and %s were replayed on different numbers of images (%d and %d, %d labels); "
                         "compare needs the same data for both." % (a, b, pred_a.size, pred_b.size, labels.size))
    names_a, names_b = _class_names_of(da), _class_names_of(db)
    if names_a and names_b and len(names_a) != len(names_b):
        raise UsageError("%s and %s were evaluated with different numbers of classes (%d and %d): "
                         "use the same --profile for both." % (a, b, len(names_a), len(names_b)))
    names = names_a or names_b
    n_classes = len(names) if names else None
    top = int(max(labels.max(), pred_a.max(), pred_b.max())) if labels.size else 0
    if n_classes is not None and top >= n_classes:
        names, n_classes = None, top + 1  # predictions outside the profile's classes: index them
    try:
        comparison = compare_predictions(labels, pred_a, pred_b, class_names=names, n_classes=n_classes,
                                         n_boot=n_boot, seed=seed, level=level, alpha=alpha)
    except ValueError as err:
        raise UsageError("cannot compare %s and %s on %s: %s." % (a, b, data, err)) from None
    profile_name = da.get("profile")
    if isinstance(profile_name, dict):
        profile_name = profile_name.get("name")
    result = CompareResult(comparison, summaries[0], summaries[1], profile=profile_name or profile,
                           data=os.fspath(data) if not isinstance(data, (list, tuple)) else list(map(os.fspath, data)))
    if json_path:
        write_atomic(json_path, dumps(result.to_dict()))
    return result


# --------------------------------------------------------------------------- terminal output

def _style(text, color, fg=None, bold=False):
    return click.style(text, fg=fg, bold=bold) if color and (fg or bold) else text


def _cut(text, width):
    text = str(text)
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def _cut_left(text, width):
    text = str(text)
    return text if len(text) <= width else "\u2026" + text[len(text) - width + 1:]


def _pct(x):
    return "%.2f %%" % (100 * x)


def _points(x):
    return "%+.2f" % (100 * x)


def format_text(d, color=False, width=80):
    """The comparison as plain text lines that fit in ``width`` (80) columns."""
    if d.get("kind") == "values":
        from .values import compare_text
        return compare_text(d, width)
    lines = []
    sub = d.get("submissions") or {}
    head = "leafsub compare"
    extra = []
    if d.get("profile"):
        extra.append("profile %s" % d["profile"])
    extra.append("{:,} images".format(d["n_images"]))
    lines.append(_style(head, color, bold=True) + "  (" + ", ".join(extra) + ")")
    lines.append("")
    for key in ("a", "b"):
        s = sub.get(key) or {}
        path = _cut_left(s.get("submission", ""), width - 36)
        if s.get("failed_checks"):
            state = _style("%d check%s failed" % (len(s["failed_checks"]), "" if len(s["failed_checks"]) == 1
                                                   else "s"), color, fg="red")
        elif s.get("passed") is True:
            state = _style("checks passed", color, fg="green")
        else:
            state = ""
        lines.append("  %s  %-*s %9s  %s" % (key.upper(), width - 36, path, _pct(d[key]["accuracy"]), state))
    diff = d["accuracy_diff"]
    mc = d["mcnemar"]
    lines.append("")
    lines.append("  B - A       %s points   %d%% CI [%s, %s]"
                 % (_points(diff["diff"]), round(100 * diff["level"]), _points(diff["low"]), _points(diff["high"])))
    lines.append("  McNemar     B right where A wrong: %d, A right where B wrong: %d; %s"
                 % (mc["c"], mc["b"], p_text(mc["p_value"])))
    lines.append("  Balanced    A %s   B %s   Macro F1  A %s   B %s"
                 % (_pct(d["a"]["balanced_accuracy"]), _pct(d["b"]["balanced_accuracy"]),
                    _pct(d["a"]["macro_f1"]), _pct(d["b"]["macro_f1"])))
    lines.append("")
    name_w = max(10, min(24, width - 56))
    lines.append("  %-*s %7s %9s %9s %8s %9s" % (name_w, "class", "support", "recall A", "recall B", "change",
                                                 "F1 change"))
    for row in d["per_class"]:
        delta = row["recall_delta"]
        change = "%+8.3f" % delta
        if abs(delta) >= 0.005:
            change = _style(change, color, fg="green" if delta > 0 else "red")
        lines.append("  %-*s %7d %9.3f %9.3f %s %+9.3f" % (name_w, _cut(row["class"], name_w), row["support"],
                                                         row["recall_a"], row["recall_b"], change, row["f1_delta"]))
    lines.append("")
    fg = {"b": "green", "a": "yellow"}.get(d["better"])
    lines.append(_style("Verdict: ", color, bold=True) + _style(d["verdict"][0].upper() + d["verdict"][1:] + ".",
                                                                color, fg=fg, bold=True))
    if d["mcnemar"]["b"] + d["mcnemar"]["c"] == 0:
        lines.append("A and B are right on exactly the same images.")
    elif not d["significant"]:
        lines.append(_wrap("The difference is within what chance gives on %s images; more test "
                           "images, or a bigger change, are needed to tell them apart." % "{:,}".format(
                               d["n_images"]), width))
    return "\n".join(lines)


def _wrap(text, width):
    import textwrap
    return "\n".join(textwrap.wrap(text, width))
