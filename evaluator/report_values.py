"""The HTML report's sections for a forecast (``output.kind`` values): pictures, not tables.

* the metric cards (MSE, RMSE, MAE, the leaderboard's first, with its interval);
* the error per horizon step, as a line chart (inline SVG);
* a few series with the forecast drawn over the truth (the best, the median and the worst
  by their error; the input's last steps before them when the caller gives the inputs);
* the error per category (when a categorical predict argument exists) and per feature,
  as horizontal bars.

Inline SVG only: no script, no network, no external file (the report is one file).
"""

import html

import numpy as np

W, H, PAD = 560, 180, 34


def _e(value):
    return html.escape(str(value), quote=True)


def _polyline(xs, ys, x0, x1, y0, y1, color, dash=""):
    sx = (W - 2 * PAD) / max(x1 - x0, 1e-12)
    sy = (H - 2 * PAD) / max(y1 - y0, 1e-12)
    points = " ".join("%.1f,%.1f" % (PAD + (x - x0) * sx, H - PAD - (y - y0) * sy)
                      for x, y in zip(xs, ys))
    return '<polyline fill="none" stroke="%s" stroke-width="1.6"%s points="%s"/>' % (
        color, ' stroke-dasharray="4 3"' if dash else "", points)


def line_chart(lines, title, x_label, legend=True):
    """An SVG chart of ``lines`` [(label, xs, ys, color, dashed)], axes from their range."""
    xs = np.concatenate([np.asarray(l[1], dtype=float) for l in lines])
    ys = np.concatenate([np.asarray(l[2], dtype=float) for l in lines])
    x0, x1 = float(xs.min()), float(xs.max())
    y0, y1 = float(ys.min()), float(ys.max())
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 1, y1 + 1
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" '
             'role="img" aria-label="%s">' % (W, H, W, H, _e(title)),
             '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888" '
             'stroke-width="0.5"/>' % (PAD, PAD, W - 2 * PAD, H - 2 * PAD),
             '<text x="%d" y="16" font-size="12" fill="currentColor">%s</text>' % (PAD, _e(title)),
             '<text x="%d" y="%d" font-size="10" fill="currentColor">%.4g</text>' % (2, PAD + 4, y1),
             '<text x="%d" y="%d" font-size="10" fill="currentColor">%.4g</text>' % (
                 2, H - PAD, y0),
             '<text x="%d" y="%d" font-size="10" fill="currentColor">%s %g..%g</text>' % (
                 PAD, H - 8, _e(x_label), x0, x1)]
    for i, (label, lx, ly, color, dashed) in enumerate(lines):
        parts.append(_polyline(lx, ly, x0, x1, y0, y1, color, dashed))
        if legend:
            parts.append('<text x="%d" y="16" font-size="11" fill="%s">%s</text>' % (
                W - PAD - 90 * (len(lines) - i), color, _e(label)))
    parts.append("</svg>")
    return "".join(parts)


def bar_rows(rows, key, label_key, title):
    """Horizontal SVG bars of ``rows[i][key]`` labelled by ``rows[i][label_key]``."""
    if not rows:
        return ""
    top = max(float(r[key]) for r in rows) or 1.0
    height = 22 * len(rows) + 28
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" '
             'role="img" aria-label="%s">' % (W, height, W, height, _e(title)),
             '<text x="4" y="14" font-size="12" fill="currentColor">%s</text>' % _e(title)]
    for i, r in enumerate(rows):
        y = 24 + 22 * i
        width = (W - 200) * float(r[key]) / top
        parts.append('<text x="4" y="%d" font-size="11" fill="currentColor">%s%s</text>' % (
            y + 13, _e(r[label_key]), " (n=%d)" % r["n"] if "n" in r else ""))
        parts.append('<rect x="110" y="%d" width="%.1f" height="16" fill="#4a7ebb"/>' % (y, width))
        parts.append('<text x="%.1f" y="%d" font-size="11" fill="currentColor">%.4g</text>' % (
            116 + width, y + 13, float(r[key])))
    parts.append("</svg>")
    return "".join(parts)


def _examples(predictions, targets, k=3):
    """Indices of the best, the median and the worst samples by their mean squared error."""
    err = np.mean((predictions - targets).reshape(len(targets), -1) ** 2, axis=1)
    order = np.argsort(err, kind="stable")
    picks = [order[0], order[len(order) // 2], order[-1]][:k]
    seen, out = set(), []
    for i, name in zip(picks, ("best", "median", "worst")):
        if int(i) not in seen:
            seen.add(int(i))
            out.append((int(i), name, float(err[i])))
    return out


def sections(result, history=None, section=None):
    """The HTML of a values result's sections.

    Args:
      result: the evaluation result (``metrics`` of kind values, ``predictions``, ``targets``).
      history: optional ``history(indices) -> [k, T(, F)]`` inputs, drawn before the forecast.
      section: ``report_html._section`` (the report's section markup).
    """
    m = result.get("metrics") or {}
    if m.get("kind") != "values":
        return ""
    section = section or (lambda id_, title, body, note="", after="":
                          "<section><h2>%s</h2>%s</section>" % (_e(title), body))
    ci = m.get("ci") or {}
    cards = "".join(
        '<div class="card"><div class="label">%s%s</div><div class="value">%.5g</div>'
        '<div class="sub">%s</div></div>' % (
            k.upper(), " (leaderboard)" if k == m.get("metric") else "", m[k],
            "95 %% CI %.4g-%.4g" % (ci[k]["low"], ci[k]["high"]) if k in ci else "")
        for k in ("mse", "rmse", "mae") if m.get(k) is not None)
    out = [section("metrics", "Metrics", '<div class="cards">%s</div>' % cards,
                   after="Over every forecast value of %d series; the intervals are a percentile "
                         "bootstrap over the series." % m.get("n", 0))]
    steps = m.get("per_step") or []
    if len(steps) > 1:
        xs = [s["step"] for s in steps]
        out.append(section("per-step", "Error per horizon step", line_chart(
            [("RMSE", xs, [s["rmse"] for s in steps], "#c0392b", False),
             ("MAE", xs, [s["mae"] for s in steps], "#4a7ebb", True)],
            "error per step ahead", "step")))
    pred, targ = result.get("predictions"), result.get("targets")
    try:
        pred = np.asarray(pred, dtype=np.float64)
        targ = np.asarray(targ, dtype=np.float64)
    except (TypeError, ValueError):  # phases of different horizons: no single picture
        pred = targ = None
    if pred is not None and targ is not None and pred.shape == targ.shape and pred.size:
        charts = []
        for i, name, err in _examples(pred, targ):
            p, t = pred[i], targ[i]
            if p.ndim == 2:  # [H, F]: the first feature
                p, t = p[:, 0], t[:, 0]
            h = np.arange(1, p.size + 1)
            lines = []
            if history is not None:
                past = np.asarray(history([i])[0], dtype=np.float64)
                past = past[:, 0] if past.ndim == 2 else past
                past = past[-min(past.size, 3 * p.size):]
                lines.append(("input", np.arange(-past.size + 1, 1), past, "#888", False))
            lines += [("truth", h, t, "#2e7d32", False), ("forecast", h, p, "#c0392b", True)]
            charts.append(line_chart(lines, "series %d (%s, MSE %.4g)%s" % (
                i, name, err, ", feature 0" if pred.ndim == 3 else ""), "step"))
        out.append(section("series", "Forecasts over the truth", "".join(charts),
                           note="The best, the median and the worst series by their error."))
    phases = [dict(p["metrics"], phase="%s [%s]" % (p["name"], ", ".join(
        map(str, p.get("output_shape") or [])))) for p in result.get("phases") or []
        if p.get("metrics")]
    if len(phases) > 1:
        out.append(section("phases", "Phases", bar_rows(
            phases, m.get("metric", "mse"), "phase", "%s per phase (horizon)" % m.get(
                "metric", "mse").upper())))
    bars = bar_rows(m.get("per_category") or [], "mse", "category", "MSE per category") + \
        bar_rows(m.get("per_feature") or [], "rmse", "feature", "RMSE per feature")
    if bars:
        out.append(section("groups", "Errors by category and feature", bars))
    return "".join(out)
