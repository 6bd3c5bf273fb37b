"""The values contract: ``predict`` returns a float array per sample (a forecast).

A profile's ``output.kind`` is ``values`` for a forecasting challenge (AN2DL 2021 and 2023,
challenge 2). What ``predict`` must return is a float array of ``output.shape`` per
sample, or, when the profile leaves it out, of the shape of the data's targets ``y``
(the horizon changes with the phase: 9 steps in phase 1, 18 in phase 2).

This module holds, in pure numpy (the evaluator's parent never imports TensorFlow):

* the output checks (:func:`interpret_values`): shape with the expected and received
  shapes, numbers, finite values;
* the agreement of two runs (:func:`compare_values`: deterministic, harness variants);
* the metrics (:func:`values_metrics`, :func:`pooled_metrics`, and the paired
  comparison of two forecasts on the same samples, :func:`paired_values_test`): MSE, RMSE, MAE overall, per horizon step, per
  feature and per category, percentile-bootstrap intervals over the samples;
* the main pass of a values replay (:func:`main_pass`), which ``replay.Replay`` hands
  over to for such a profile, and the terminal's lines (:func:`terminal_lines`).

Standalone: numpy and the standard library only (``leafsub bundle`` copies it into the
scoring program as ``leafsub_values.py``); the main pass imports leafsub's own modules
inside the function.

Conventions: the error is ``prediction - target``; an output ``[N, H]`` has H horizon
steps of one series; ``[N, H, F]`` has H steps of F features. MSE over all values is the
mean over every value (scikit-learn's ``mean_squared_error`` on the flattened arrays).
"""

import os

import numpy as np

METRICS = ("mse", "rmse", "mae")
RTOL = 1e-4          # two runs agree when |a - b| <= ATOL_SCALE * scale + RTOL * |b|
ATOL_SCALE = 1e-5
_BOOT_CHUNK = 64     # bootstrap resamples drawn at once (memory: 64 x N int64)


class C:
    """The check record, as ``checks.check`` makes it (this file is also copied alone)."""

    @staticmethod
    def check(name, status, detail):
        return {"name": name, "status": status, "detail": detail}


def expected_shape(profile, pack):
    """One sample's output shape: the profile's ``output.shape``, else the pack's targets'."""
    shape = profile["output"].get("shape")
    return tuple(int(d) for d in shape) if shape else tuple(pack.y.shape[1:])


def _shape_text(shape, batch="batch"):
    return "[%s]" % ", ".join([batch] + [str(int(d)) for d in shape])


def interpret_values(outputs, n, expected, method="predict", batched=True):
    """The output checks of a values profile.

    Args:
      outputs: what ``predict`` returned, stacked over the calls (``[n, ...]``).
      n: the number of samples fed.
      expected: one sample's output shape, e.g. ``(18,)`` or ``(864, 7)``.
      batched: whether predict got batches (False: one series per call, no batch axis).

    Returns:
      ``(values or None, checks)``: float64 ``[n, *expected]`` when they can be scored
      (a ``[n, H, 1]`` output of a one-feature forecast ``[n, H]`` is read as such, with a
      warning); None otherwise.
    """
    out = np.asarray(outputs)
    per_call = "[%s]" % ", ".join(map(str, expected)) if not batched else \
        _shape_text(expected)
    got = list(out.shape[1:]) if batched else list(out.shape[1:])
    if out.dtype.kind in "USO":
        sample = ", ".join(repr(str(v)) for v in out.reshape(-1)[:3])
        return None, [C.check("output: type", "fail", "%s() returned strings (%s, ...); expected "
                              "float values of shape %s." % (method, sample, per_call))]
    if out.dtype.kind not in "biuf" or out.shape[:1] != (n,):
        return None, [C.check("output: shape", "fail", "%s() returned %s for %d samples; expected "
                              "float values of shape %s per call." % (
                                  method, list(out.shape), n, per_call))]
    checks = []
    if tuple(out.shape[1:]) != tuple(expected):
        squeezable = tuple(s for s in out.shape[1:] if s != 1) == tuple(
            s for s in expected if s != 1) and out.size == n * int(np.prod(expected))
        received = _shape_text(got) if batched else str(got)
        if not squeezable:
            hint = ""
            if len(expected) == len(got) and len(expected) >= 1 and got[0] != expected[0]:
                hint = (" The horizon is %d steps here, and predict returned %d: a model "
                        "trained for %d steps must be rolled out (or cropped) to the %d this "
                        "phase asks." % (expected[0], got[0], got[0], expected[0]))
            return None, [C.check("output: shape", "fail", "%s() returned shape %s; expected "
                                  "shape %s (the platform scores %s values per sample).%s" % (
                                      method, received, per_call,
                                      " x ".join(map(str, expected)), hint))]
        checks.append(C.check("output: shape", "warn", "%s() returned shape %s; expected %s: "
                              "reshape it (the platform may not)." % (method, received, per_call)))
        out = out.reshape((n,) + tuple(expected))
    else:
        checks.append(C.check("output: shape", "pass", "%s() returned %s values of shape %s "
                              "per sample" % (method, out.dtype, list(expected))))
    values = out.astype(np.float64)
    bad = int(np.sum(~np.isfinite(values)))
    if bad:
        checks.append(C.check("output: no NaN", "fail", "%s() returned %d NaN or infinite values "
                              "(of %d); the platform's MSE would be NaN." % (method, bad,
                                                                           values.size)))
        return None, checks
    checks.append(C.check("output: no NaN", "pass", "every value is finite"))
    return values, checks


def compare_values(name, reference, other, what, severity="warn", hint=""):
    """A check that two runs' values for the same samples agree (within float tolerance)."""
    reference = np.asarray(reference)
    other = np.asarray(other)
    if other.shape != reference.shape:
        return C.check(name, severity, "%s: outputs of shape %s, then %s" % (
            what, list(reference.shape), list(other.shape)))
    try:
        a, b = reference.astype(np.float64), other.astype(np.float64)
    except (TypeError, ValueError):
        return C.check(name, severity, "%s: outputs that are not numbers" % what)
    scale = float(np.max(np.abs(a[np.isfinite(a)]))) if np.any(np.isfinite(a)) else 1.0
    tol = ATOL_SCALE * max(scale, 1e-12) + RTOL * np.abs(a)
    same = (np.abs(a - b) <= tol) | ((a == b) & ~np.isfinite(a))
    differ = int(np.sum(~np.all(same.reshape(len(a), -1), axis=1))) if a.size else 0
    if differ:
        worst = float(np.nanmax(np.abs(a - b)))
        return C.check(name, severity, "%s: %d of %d samples differ (largest difference %.3g)%s"
                       % (what, differ, len(a), worst, (". " + hint) if hint else ""))
    return C.check(name, "pass", "%s: same values on %d samples" % (what, len(a)))


# --------------------------------------------------------------------------- metrics

def _errors(y_true, y_pred):
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError("y_true and y_pred differ in shape: %s vs %s" % (
            list(y_true.shape), list(y_pred.shape)))
    if y_true.ndim < 1 or y_true.shape[0] == 0:
        raise ValueError("no samples: y_true and y_pred are empty")
    return y_pred - y_true


def _trio(err, axis=None):
    mse = np.mean(err ** 2, axis=axis)
    return mse, np.sqrt(mse), np.mean(np.abs(err), axis=axis)


def per_sample_errors(y_true, y_pred):
    """``(squared, absolute)``: each sample's mean squared and mean absolute error, [N]."""
    err = _errors(y_true, y_pred).reshape(len(y_true), -1)
    return np.mean(err ** 2, axis=1), np.mean(np.abs(err), axis=1)


def bootstrap_values_ci(sq, ab, n_boot=1000, seed=0, level=0.95):
    """Percentile-bootstrap intervals of MSE, RMSE and MAE over the samples.

    ``sq``, ``ab``: each sample's mean squared / absolute error (every sample has the same
    number of values, so the mean of theirs is the metric). Returns
    ``{"mse": {"low", "high", "level"}, "rmse": ..., "mae": ...}``.
    """
    sq, ab = np.asarray(sq, dtype=np.float64), np.asarray(ab, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = sq.size
    boots_sq, boots_ab = [], []
    for start in range(0, n_boot, _BOOT_CHUNK):
        idx = rng.integers(0, n, size=(min(_BOOT_CHUNK, n_boot - start), n))
        boots_sq.append(sq[idx].mean(axis=1))
        boots_ab.append(ab[idx].mean(axis=1))
    bs, ba = np.concatenate(boots_sq), np.concatenate(boots_ab)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    lo_sq, hi_sq = np.percentile(bs, q)
    lo_ab, hi_ab = np.percentile(ba, q)
    return {"mse": {"low": float(lo_sq), "high": float(hi_sq), "level": level},
            "rmse": {"low": float(np.sqrt(lo_sq)), "high": float(np.sqrt(hi_sq)), "level": level},
            "mae": {"low": float(lo_ab), "high": float(hi_ab), "level": level}}


def values_metrics(y_true, y_pred, categories=None, feature_names=None, metric="mse",
                   n_boot=1000, seed=0):
    """MSE, RMSE and MAE of a forecast: overall, per horizon step, per feature, per category.

    Args:
      y_true, y_pred: ``[N, H]`` (H steps) or ``[N, H, F]`` (H steps of F features), or
        ``[N]`` (one value per sample).
      categories: optional ``[N]`` labels (e.g. the series' category 'A'..'F').
      feature_names: optional names of the F features.
      metric: the leaderboard's metric; its value is also under ``score``.

    Returns:
      a JSON-ready dict: ``kind`` ("values"), ``metric``, ``score``, ``mse``, ``rmse``,
      ``mae``, ``ci`` ({metric: {low, high, level}}), ``n``, ``shape`` (one sample's),
      ``per_step`` [{step, mse, rmse, mae}], ``per_feature`` [{feature, ...}] (3-D outputs),
      ``per_category`` [{category, n, mse, rmse, mae}] (when categories are given).

    Example:
      >>> m = values_metrics([[0.0, 1.0]], [[0.5, 1.0]])
      >>> m["mse"], m["per_step"][0]["mae"]
      (0.125, 0.5)
    """
    err = _errors(y_true, y_pred)
    mse, rmse, mae = _trio(err)
    out = {"kind": "values", "metric": metric, "mse": float(mse), "rmse": float(rmse),
           "mae": float(mae), "n": int(len(err)), "shape": list(err.shape[1:])}
    out["score"] = out[metric]
    sq, ab = per_sample_errors(y_true, y_pred)
    out["ci"] = bootstrap_values_ci(sq, ab, n_boot=n_boot, seed=seed)
    if err.ndim >= 2:
        axes = tuple(a for a in range(err.ndim) if a != 1)
        s_mse, s_rmse, s_mae = _trio(err, axis=axes)
        out["per_step"] = [{"step": i + 1, "mse": float(a), "rmse": float(b), "mae": float(c)}
                           for i, (a, b, c) in enumerate(zip(s_mse, s_rmse, s_mae))]
    if err.ndim == 3:
        f_mse, f_rmse, f_mae = _trio(err, axis=(0, 1))
        names = list(feature_names) if feature_names is not None and \
            len(feature_names) == err.shape[2] else [str(i) for i in range(err.shape[2])]
        out["per_feature"] = [{"feature": names[i], "mse": float(a), "rmse": float(b),
                               "mae": float(c)} for i, (a, b, c) in
                              enumerate(zip(f_mse, f_rmse, f_mae))]
    if categories is not None:
        cats = np.asarray(categories).reshape(-1)
        if cats.size == len(err):
            rows = []
            for value in np.unique(cats):
                mask = cats == value
                c_mse, c_rmse, c_mae = _trio(err[mask])
                rows.append({"category": str(value), "n": int(mask.sum()), "mse": float(c_mse),
                             "rmse": float(c_rmse), "mae": float(c_mae)})
            out["per_category"] = rows
    return out


def pooled_metrics(pairs, metric="mse"):
    """MSE, RMSE, MAE over every value of several phases whose shapes differ (9 and 18 steps)."""
    total_sq = total_ab = count = 0.0
    for y_true, y_pred in pairs:
        err = _errors(y_true, y_pred)
        total_sq += float(np.sum(err ** 2))
        total_ab += float(np.sum(np.abs(err)))
        count += err.size
    mse = total_sq / count
    out = {"kind": "values", "metric": metric, "mse": mse, "rmse": float(np.sqrt(mse)),
           "mae": total_ab / count, "n": int(sum(len(t) for t, _ in pairs)),
           "note": "pooled over every value of every phase (their horizons differ)"}
    out["score"] = out[metric]
    return out


# --------------------------------------------------------------------------- the main pass

def _category_arg(pack):
    """The first extra argument holding strings or a few integers: the series' category."""
    for name, a in pack.extras.items():
        if a.ndim == 1 and (a.dtype.kind == "U" or len(np.unique(a)) <= 32):
            return name, a
    return None, None


def main_pass(replay):
    """Every sample of every phase, as the platform feeds them; score the values.

    The values counterpart of ``Replay.main_pass``, over the same phase loop
    (``replay.phase_outputs``) and after-pass checks (``replay.pass_checks``): the output
    checks, metrics and phases are this module's. Returns ``(values per phase, raw outputs
    of phase 0)``.
    """
    prof, method = replay.prof, replay.iface["method"]
    batched = prof["input"]["batched"]
    metric = prof["output"].get("metric", "mse")
    phases, pairs, all_values, totals = [], [], [], {}
    for i, name, pack, reply, outputs in replay.phase_outputs(totals):
        expected = expected_shape(prof, pack)
        values, out_checks = interpret_values(outputs, pack.n, expected, method, batched)
        if len(replay.packs) > 1:
            for c in out_checks:
                c["detail"] = "%s: %s" % (name, c["detail"])
        if i == 0 or any(c["status"] != "pass" for c in out_checks):
            replay.checks.extend(out_checks)
        phase = {"name": name, "data": os.path.abspath(pack.path), "n_images": pack.n,
                 "predict_s": round(float(reply["predict_s"]), 3),
                 "output_shape": list(expected)}
        if values is not None:
            _, cats = _category_arg(pack)
            phase["metrics"] = values_metrics(pack.y, values, categories=cats, metric=metric,
                                              feature_names=prof["output"].get("feature_names"))
            pairs.append((pack.y, values))
        all_values.append(values)
        phases.append(phase)
    n = replay.result["n_images"]
    calls = sum(-(-p.n // replay.batch_size) if batched else p.n for p in replay.packs)
    totals["predicts"]["detail"] = "%d samples in %d calls%s, %.1f s in %s()" % (
        n, calls, " of up to %d" % replay.batch_size if batched else " (one whole series each)",
        totals["predict_s"], method)
    replay.pass_checks(totals)
    if len(pairs) == len(replay.packs):
        shapes = {tuple(t.shape[1:]) for t, _ in pairs}
        if len(shapes) == 1:
            y_true = np.concatenate([t for t, _ in pairs])
            y_pred = np.concatenate([p for _, p in pairs])
            cats = [_category_arg(p)[1] for p in replay.packs]
            cats = np.concatenate(cats) if all(c is not None for c in cats) else None
            metrics = values_metrics(y_true, y_pred, categories=cats, metric=metric,
                                     feature_names=prof["output"].get("feature_names"))
            replay.result.update(predictions=y_pred.tolist(), targets=y_true.tolist())
        else:
            metrics = pooled_metrics(pairs, metric)
            replay.result.update(predictions=[p.tolist() for _, p in pairs],
                                 targets=[t.tolist() for t, _ in pairs])
        replay.result["metrics"] = metrics
    replay.result["output"] = {"kind": "values", "metric": metric}
    if len(replay.packs) > 1:
        replay.result["phases"] = phases
    return all_values, totals["raw_first"]


def terminal_lines(result):
    """The metrics lines of a values result, for the terminal."""
    m = result.get("metrics")
    if not m:
        return ["no metrics: the submission did not produce usable forecasts"]
    ci = (m.get("ci") or {}).get(m["metric"]) or {}
    lines = ["%s %.6g%s   MSE %.6g   RMSE %.6g   MAE %.6g" % (
        m["metric"].upper(), m["score"], " (95 %% CI %.6g-%.6g)" % (ci["low"], ci["high"])
        if ci else "", m["mse"], m["rmse"], m["mae"])]
    for phase in result.get("phases") or []:
        pm = phase.get("metrics")
        lines.append("  %-20s %5d samples  horizon %s  %s %s" % (
            phase["name"][:20], phase["n_images"], phase.get("output_shape"),
            m["metric"].upper(), "%.6g" % pm["score"] if pm else "n/a"))
    steps = m.get("per_step") or []
    if len(steps) > 1:
        lines.append("per step RMSE: first %.4g, last %.4g (worst at step %d)" % (
            steps[0]["rmse"], steps[-1]["rmse"], max(steps, key=lambda r: r["rmse"])["step"]))
    return lines


# --------------------------------------------------------------------------- two forecasts

def score_keys(metric="mse"):
    """The leaderboard's columns for a values challenge: its metric first, then the others."""
    return [metric] + [k for k in METRICS if k != metric]


def phase_arrays(values):
    """A result's targets or predictions: one array, or a list of per-phase arrays (ragged)."""
    try:
        return [np.asarray(values, dtype=np.float64)]
    except ValueError:  # phases whose horizons differ: [[...9 steps...], [...18 steps...]]
        return [np.asarray(v, dtype=np.float64) for v in values]


def paired_values_test(y_true, pred_a, pred_b, metric="mse", n_boot=2000, n_perm=10000, seed=0,
                       level=0.95, alpha=0.05):
    """Is forecast B better than A on the same samples? A paired test on per-sample errors.

    Each sample's error (its mean squared error for MSE/RMSE, its mean absolute error for
    MAE) under A and under B are paired: the p-value is a two-sided sign-flip permutation
    test of their mean difference (``n_perm`` random flips; exact enough for p >= 1e-4),
    the interval a paired percentile bootstrap of the metric's difference B - A.
    Lower is better: B is better when the difference is negative and significant.

    Args:
      y_true, pred_a, pred_b: arrays ``[N, ...]`` of the same shape, or lists of them (one
        per phase, their shapes may differ: every sample weighs as its number of values).

    Returns:
      a JSON-ready dict: ``kind`` "values", ``metric``, ``n_images``, ``a`` and ``b``
      ({mse, rmse, mae}), ``diff`` {diff, low, high, level}, ``p_value``, ``better``
      ("a", "b" or None), ``significant``, ``verdict`` (a sentence).
    """
    phases_t, phases_a, phases_b = (p if isinstance(p, list) else [p]
                                    for p in (y_true, pred_a, pred_b))
    sq_a, ab_a, sq_b, ab_b, weights = [], [], [], [], []
    for t, a, b in zip(phases_t, phases_a, phases_b):
        for sq, ab, pred in ((sq_a, ab_a, a), (sq_b, ab_b, b)):
            s, m = per_sample_errors(t, pred)
            sq.append(s)
            ab.append(m)
        weights.append(np.full(len(t), np.asarray(t[0]).size, dtype=np.float64))
    sq_a, ab_a, sq_b, ab_b, w = (np.concatenate(v) for v in (sq_a, ab_a, sq_b, ab_b, weights))
    n = w.size
    if metric == "mae":
        e_a, e_b = ab_a, ab_b
    else:
        e_a, e_b = sq_a, sq_b

    def value(e, idx=None):
        e_, w_ = (e, w) if idx is None else (e[idx], w[idx])
        mean = np.sum(e_ * w_, axis=-1) / np.sum(w_, axis=-1)
        return np.sqrt(mean) if metric == "rmse" else mean

    summary = {}
    for key, sq, ab in (("a", sq_a, ab_a), ("b", sq_b, ab_b)):
        mse = float(np.sum(sq * w) / np.sum(w))
        summary[key] = {"mse": mse, "rmse": float(np.sqrt(mse)),
                        "mae": float(np.sum(ab * w) / np.sum(w))}
    diff = float(value(e_b) - value(e_a))
    rng = np.random.default_rng(seed)
    boots = []
    for start in range(0, n_boot, _BOOT_CHUNK):
        idx = rng.integers(0, n, size=(min(_BOOT_CHUNK, n_boot - start), n))
        boots.append(value(e_b, idx) - value(e_a, idx))
    boots = np.concatenate(boots)
    low, high = np.percentile(boots, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    d = (e_b - e_a) * w
    observed = abs(float(np.sum(d)))
    extreme = 0
    for start in range(0, n_perm, _BOOT_CHUNK):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(_BOOT_CHUNK, n_perm - start), n))
        extreme += int(np.sum(np.abs(signs @ d) >= observed - 1e-12 * max(observed, 1.0)))
    p = 1.0 if observed == 0 else (extreme + 1) / (n_perm + 1)
    name = metric.upper()
    if p < alpha and diff < 0:
        better, verdict = "b", "B is better than A (%s %+.4g, p=%.2g)" % (name, diff, p)
    elif p < alpha and diff > 0:
        better, verdict = "a", "A is better than B (%s %+.4g, p=%.2g)" % (name, diff, p)
    else:
        better = None
        verdict = "no evidence that %s is better than %s (p=%.2g)" % (
            (("B", "A") if diff <= 0 else ("A", "B")) + (p,))
    return {"kind": "values", "metric": metric, "n_images": int(n), "a": summary["a"],
            "b": summary["b"], "diff": {"diff": diff, "low": float(low), "high": float(high),
                                        "level": level},
            "p_value": float(p), "test": "paired sign-flip permutation test on per-sample "
            "errors (%d flips)" % n_perm, "better": better, "significant": bool(p < alpha),
            "verdict": verdict}


def compare_text(d, width=80):
    """The lines of ``leafsub compare`` for two forecasts."""
    name = d["metric"].upper()
    lines = ["leafsub compare  (%sforecasts, %d samples)" % (
        "profile %s, " % d["profile"] if d.get("profile") else "", d["n_images"]), ""]
    for key in ("a", "b"):
        s = (d.get("submissions") or {}).get(key) or {}
        path = str(s.get("submission", ""))[-(width - 50):]
        m = d[key]
        lines.append("  %s  %-*s MSE %.5g  RMSE %.5g  MAE %.5g" % (
            key.upper(), width - 50, path, m["mse"], m["rmse"], m["mae"]))
    diff = d["diff"]
    lines += ["", "  B - A  %s %+.4g   %d%% CI [%+.4g, %+.4g]   p=%.2g (%s)" % (
        name, diff["diff"], round(100 * diff["level"]), diff["low"], diff["high"],
        d["p_value"], d["test"]), "", "Verdict: %s." % (d["verdict"][0].upper()
                                                         + d["verdict"][1:])]
    return "\n".join(lines)


# --------------------------------------------------------------------------- a build's goldens

FORECAST_MANIFEST = "leafsub-forecast.json"   # written by leafsub build for a forecaster


def read_forecast_manifest(root):
    """A forecaster build's manifest and probe (``leafsub-forecast.json`` and its ``.npz`` in
    the zip), read once from the extracted zip before the child starts (the child may write
    in the submission's folder), by descriptor and without pickle.

    Returns None when the zip holds no forecaster manifest, ``{"unreadable": why}`` when it
    cannot be read, else ``{"config", "series", "golden", "tolerance"}``.
    """
    from . import untrusted

    path = os.path.join(root, FORECAST_MANIFEST)
    if not os.path.lexists(path):
        return None
    try:
        manifest = untrusted.read_json_file(path, what="the forecaster's manifest")
        config, probe = manifest["forecast"], manifest["probe"]
        name = probe["file"]
        if not isinstance(name, str) or os.path.isabs(name) or ".." in name.split("/"):
            raise ValueError("its probe file %r is not a name inside the zip" % str(name)[:80])
        z = untrusted.load_npz(os.path.join(root, name), what="the forecaster's probe")
        series = np.asarray(z["series"])
        golden = np.asarray(z["forecast"] if int(config["horizon"]) <= int(config["steps"])
                            else z["rollout"], dtype=np.float64)
        return {"config": config, "series": series, "golden": golden,
                "tolerance": float(probe["tolerance"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError,
            untrusted.Untrusted) as err:
        return {"unreadable": "%s: %s" % (type(err).__name__, err)}


def golden_check(replay, forecast):
    """The goldens of a forecaster built by ``leafsub build`` (``forecast`` from
    :func:`read_forecast_manifest`), through ``predict`` as the platform calls it, in this
    runtime. Returns the ``goldens`` check, or None when the zip holds no forecaster manifest.
    """
    from . import untrusted

    if forecast is None:
        return None
    if "unreadable" in forecast:
        return C.check("goldens", "warn", "%s is unreadable (%s): the goldens cannot be "
                       "checked" % (FORECAST_MANIFEST, forecast["unreadable"]))
    config, series, golden = forecast["config"], forecast["series"], forecast["golden"]
    tolerance = forecast["tolerance"]
    shape = replay.prof["input"]["shape"]
    if len(shape) != series.ndim - 1 or any(d is not None and int(d) != s
                                            for d, s in zip(shape, series.shape[1:])):
        return C.check("goldens", "warn", "the build's probe series have shape %s, the profile "
                       "feeds %s: the goldens cannot be fed as the platform does"
                       % (list(series.shape[1:]), list(shape)))
    images = os.path.join(replay.workdir, "forecast-probe.npy")
    untrusted.save_npy(images, series.astype(replay.prof["input"]["dtype"]))
    args = []
    for k, _ in enumerate(replay.prof["interface"]["args"][1:]):
        args.append(os.path.join(replay.workdir, "forecast-probe-arg%d.npy" % k))
        untrusted.save_npy(args[-1], np.array(["A"] * len(series)))  # leafsub's model.py ignores it
    if args:
        replay.arg_files[images] = args
    reply, out = replay.predict(images, os.path.join(replay.workdir, "forecast-probe-out.npy"))
    if not reply.get("ok") or out is None:
        return C.check("goldens", "fail", "predict() failed on the build's probe series: %s"
                       % reply.get("error"))
    k = min(int(config["horizon"]), golden.shape[1])
    out = np.asarray(out, dtype=np.float64)
    if out.shape[:2] != (len(golden), int(config["horizon"])):
        return C.check("goldens", "fail", "predict() returned %s on the build's %d probe series; "
                       "the build checked [%d, %d]" % (list(out.shape), len(golden), len(golden),
                                                       int(config["horizon"])))
    diff = float(np.max(np.abs(out[:, :k] - golden[:, :k])))
    tol = tolerance * max(1.0, float(np.max(np.abs(golden[:, :k]))))
    if diff > tol:
        return C.check("goldens", "fail", "on the build's %d probe series, predict() differs "
                       "from the export's forecasts by up to %.3g (tolerance %.3g): this runtime "
                       "does not reproduce what leafsub build checked (a TensorFlow version "
                       "difference, or an edited model.py)" % (len(golden), diff, tol))
    return C.check("goldens", "pass", "the build's %d probe series: the export's forecasts over "
                   "%d steps, reproduced (max difference %.2g)" % (len(golden), k, diff))
