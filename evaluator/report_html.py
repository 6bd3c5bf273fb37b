"""The evaluation report as one self-contained HTML file.

No network, no JavaScript: inline CSS, images embedded as base64 PNG data URIs, so
the file can be mailed, attached to a course forum post or opened offline on a phone.
Every string that comes from the user (class names, paths, check details, profile
assumptions) goes through :func:`html.escape`.

The report reads a plain dict: the evaluator's ``result.to_dict()`` (keys in
docs/ARCHITECTURE.md, "Evaluate result"). Keys it does not find are left out of
the page rather than failing, so that the report of a submission that did not
even load still shows the checks that say why.
"""

import base64
import html
import io
import math
import os

import numpy as np

from ..jsonfiles import write_atomic

MAX_GALLERY = 60          # misclassified images shown at most
THUMB_MAX = 128           # thumbnail's longest side in pixels
GALLERY_OPEN = 14         # misclassified images shown before "N more" (two rows on a laptop)

_STATUS = {
    "pass": ("pass", "\u2713", "passed"),
    "warn": ("warn", "!", "warning"),
    "fail": ("fail", "\u2717", "failed"),
    "skip": ("skip", "\u2013", "skipped"),
}


def e(value):
    """HTML-escape any value (quotes included, so it is safe in attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


# --------------------------------------------------------------------------- numbers

def _num(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _pct(value, digits=2):
    value = _num(value)
    return "\u2013" if value is None else "%.*f\u202f%%" % (digits, 100.0 * value)


def _fixed(value, digits=4):
    value = _num(value)
    return "\u2013" if value is None else "%.*f" % (digits, value)


def _seconds(value):
    value = _num(value)
    if value is None:
        return "\u2013"
    if value < 1:
        return "%.0f ms" % (value * 1000)
    if value < 120:
        return "%.1f s" % value
    return "%d min %02d s" % divmod(int(round(value)), 60)


# --------------------------------------------------------------------------- reading the result

def _as_dict(result):
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if not isinstance(result, dict):
        raise TypeError("write_report expects the evaluator's result or its to_dict(), got %s"
                        % type(result).__name__)
    return result


def _ci(result, metrics, metric="accuracy"):
    """``(low, high, level)`` of a metric's bootstrap interval, from whichever shape the result uses."""
    candidates = [metrics.get(metric + "_ci"), (metrics.get("ci") or {}).get(metric)
                  if isinstance(metrics.get("ci"), dict) else None,
                  (metrics.get("bootstrap") or {}).get(metric)
                  if isinstance(metrics.get("bootstrap"), dict) else None,
                  result.get(metric + "_ci")]
    for ci in candidates:
        if isinstance(ci, dict):
            low, high = _num(ci.get("low")), _num(ci.get("high"))
            level = _num(ci.get("level")) or 0.95
        elif isinstance(ci, (list, tuple)) and len(ci) >= 2:
            low, high = _num(ci[0]), _num(ci[1])
            level = _num(ci[2]) if len(ci) > 2 and _num(ci[2]) else _num(metrics.get("ci_level")) or 0.95
        else:
            continue
        if low is not None and high is not None:
            return low, high, level
    return None


def _class_names(result, metrics):
    names = result.get("class_names")
    if not names:
        names = [p.get("class", str(i)) for i, p in enumerate(metrics.get("per_class") or [])]
    if not names and metrics.get("confusion_matrix"):
        names = [str(i) for i in range(len(metrics["confusion_matrix"]))]
    return [str(n) for n in names]


def _profile(result):
    profile = result.get("profile")
    if isinstance(profile, dict):
        name = profile.get("name") or ""
        title = profile.get("title") or ""
        assumptions = profile.get("assumptions") or []
    else:
        name, title, assumptions = profile or "", result.get("profile_title") or "", []
    assumptions = result.get("assumptions") or assumptions
    return name, title, [str(a) for a in assumptions]


def _confidences(result, predictions):
    for key in ("confidence", "confidences"):
        values = result.get(key)
        if values is not None and len(values) == len(predictions):
            return [_num(v) for v in values]
    for key in ("probabilities", "scores"):
        values = result.get(key)
        if values is not None and len(values) == len(predictions):
            try:
                arr = np.asarray(values, dtype=np.float64)
                if arr.ndim == 2:
                    return [_num(arr[i, int(p)]) for i, p in enumerate(predictions)]
            except (TypeError, ValueError, IndexError):
                pass
    return None


def _misclassified(result):
    """``[(index, true, predicted, confidence or None)]``, most confident mistakes first."""
    predictions = result.get("predictions")
    labels = result.get("labels")
    if predictions is None or labels is None or len(predictions) != len(labels):
        return []
    indices = result.get("misclassified")
    if indices is None:
        indices = [i for i, (p, t) in enumerate(zip(predictions, labels)) if int(p) != int(t)]
    conf = _confidences(result, predictions)
    rows = [(int(i), int(labels[i]), int(predictions[i]), conf[i] if conf else None) for i in indices]
    if conf:
        rows.sort(key=lambda r: (-(r[3] if r[3] is not None else -1.0), r[0]))
    return rows


# --------------------------------------------------------------------------- images

def _thumbnails(images, indices):
    """base64 PNG data URIs for ``indices`` (None where no image), and a note on failure."""
    if images is None or not indices:
        return [None] * len(indices), None
    try:
        if callable(images):
            batch = images(list(indices))
        else:
            batch = np.asarray(images)[np.asarray(indices, dtype=np.int64)]
        batch = np.asarray(batch)
    except (OSError, ValueError, IndexError, KeyError) as err:
        return [None] * len(indices), "The images could not be read (%s)." % err
    from PIL import Image

    uris = []
    for img in batch:
        img = np.asarray(img)
        if img.dtype != np.uint8:
            img = np.clip(img * (255.0 if img.size and float(img.max()) <= 1.0 else 1.0), 0, 255)
            img = img.astype(np.uint8)
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        pil = Image.fromarray(img)
        if max(pil.size) > THUMB_MAX:
            pil.thumbnail((THUMB_MAX, THUMB_MAX), Image.BILINEAR)
        buf = io.BytesIO()
        pil.save(buf, format="PNG", optimize=True)
        uris.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    return uris, None


# --------------------------------------------------------------------------- sections

def _section(id_, title, body, note="", after=""):
    note = '<p class="note">%s</p>' % note if note else ""
    after = '<p class="note after">%s</p>' % after if after else ""
    return '<section id="%s"><h2>%s</h2>%s%s%s</section>\n' % (id_, e(title), note, body, after)


def _status(check):
    return str(check.get("status", "")).lower()


def _check_item(check):
    cls, icon, word = _STATUS.get(_status(check), ("skip", "?", _status(check) or "unknown"))
    detail = check.get("detail") or ""
    return ('<li class="check %s"><span class="icon" aria-label="%s">%s</span>'
            '<div><div class="check-name">%s</div>%s</div></li>'
            % (cls, e(word), icon, e(check.get("name", "")),
               '<div class="detail">%s</div>' % e(detail) if detail else ""))


def _attention_html(checks):
    """What failed, then what warned, with the details: right under the metrics."""
    failed = [c for c in checks if _status(c) == "fail"]
    warned = [c for c in checks if _status(c) == "warn"]
    if not failed and not warned:
        return ""
    title = ("What failed" + (" and what warned" if warned else "")) if failed else "Warnings"
    counts = ", ".join(part for part in (
        "%d failed" % len(failed) if failed else "",
        "%d warning%s" % (len(warned), "" if len(warned) == 1 else "s") if warned else "") if part)
    return _section("attention", title, '<ul class="checks">%s</ul>'
                    % "".join(_check_item(c) for c in failed + warned), e(counts))


def _checks_html(checks):
    """Every other check (passed, skipped), grouped and folded: proof, not news."""
    rest = [c for c in checks if _status(c) not in ("fail", "warn")]
    if not rest:
        return ""
    counts = {}
    for check in rest:
        word = _STATUS.get(_status(check), (None, None, _status(check) or "unknown"))[2]
        counts[word] = counts.get(word, 0) + 1
    summary = ", ".join("%d %s" % (n, w) for w, n in counts.items())
    names = ", ".join(str(c.get("name", "")) for c in rest[:6]) + (", \u2026" if len(rest) > 6 else "")
    body = ('<details class="checks"><summary><span class="sum">%s</span> '
            '<span class="names">%s</span></summary><ul class="checks">%s</ul></details>'
            % (e(summary), e(names), "".join(_check_item(c) for c in rest)))
    all_passed = len(rest) == len(checks) and all(_status(c) == "pass" for c in rest)
    title = "Checks that passed" if all_passed else "The other checks"
    return _section("checks", title, body)


def _metrics_html(result, metrics):
    if not metrics or metrics.get("accuracy") is None:
        return ""
    ci = _ci(result, metrics)
    cards = []
    sub = ""
    if ci:
        sub = '<div class="ci">%d%% CI %s \u2013 %s</div>' % (round(ci[2] * 100), _pct(ci[0]), _pct(ci[1]))
    cards.append('<div class="card main"><div class="label">Accuracy</div><div class="value">%s</div>%s</div>'
                 % (_pct(metrics.get("accuracy")), sub))
    for key, label in (("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro F1")):
        if metrics.get(key) is not None:
            cci = _ci(result, metrics, key)
            csub = ('<div class="ci">%d%% CI %s \u2013 %s</div>' % (round(cci[2] * 100), _pct(cci[0]), _pct(cci[1]))
                    if cci else "")
            cards.append('<div class="card"><div class="label">%s</div><div class="value">%s</div>%s</div>'
                         % (e(label), _pct(metrics.get(key)), csub))
    n = result.get("n_images") or metrics.get("n")
    if n is not None:
        cards.append('<div class="card"><div class="label">Images</div><div class="value">%s</div></div>'
                     % e("{:,}".format(int(n))))
    note = ""
    if ci:
        note = ("The interval is a percentile bootstrap over the test images: how much the accuracy "
                "could move on another test set of this size from the same distribution. Differences "
                "between submissions smaller than its width are likely noise; use "
                "<code>leafsub compare</code> to test one.")
    return _section("metrics", "Metrics", '<div class="cards">%s</div>' % "".join(cards), after=note)


def _bar(value, cls=""):
    v = _num(value)
    width = 0 if v is None else max(0.0, min(1.0, v)) * 100
    return ('<td class="num bar %s" style="--w:%.1f%%">%s</td>' % (cls, width, _fixed(value, 3)))


def _per_class_html(metrics):
    rows = metrics.get("per_class") or []
    if not rows:
        return ""
    body = []
    for i, row in enumerate(rows):
        support = row.get("support")
        recall = _num(row.get("recall"))
        weak = ' class="weak"' if support and recall is not None and recall < 0.5 else ""
        body.append("<tr%s><td class=\"idx\">%s</td><th scope=\"row\">%s</th><td class=\"num\">%s</td>%s%s%s</tr>"
                    % (weak, e(row.get("index", i)), e(row.get("class", i)), e(support if support is not None else "\u2013"),
                       _bar(row.get("precision")), _bar(row.get("recall")), _bar(row.get("f1"))))
    table = ('<div class="scroll"><table class="per-class"><thead><tr><th>#</th><th>Class</th>'
             '<th class="num">Support</th><th class="num">Precision</th><th class="num">Recall</th>'
             '<th class="num">F1</th></tr></thead><tbody>%s</tbody></table></div>' % "".join(body))
    return _section("per-class", "Per class", table,
                    "Recall: share of the class's images recognised. Precision: share of the "
                    "predictions of the class that are right. Rows with recall under 50 % are marked.")


def _cell_style(frac, diagonal):
    """Background and text colour for a confusion-matrix cell (share of its row)."""
    if frac <= 0:
        return "background:var(--zero);color:var(--muted)"
    hue, sat = (145, 55) if diagonal else (6, 78)
    light = 96 - 60 * min(1.0, frac) ** 0.7
    text = "#fff" if light < 58 else "#1a1a1a"
    return "background:hsl(%d,%d%%,%.0f%%);color:%s" % (hue, sat, light, text)


def _confusion_html(metrics, names):
    cm = metrics.get("confusion_matrix")
    if not cm:
        return ""
    k = len(cm)
    names = names if len(names) == k else [str(i) for i in range(k)]
    head = "".join('<th scope="col" title="%s">%d</th>' % (e(names[j]), j) for j in range(k))
    rows = []
    for i, row in enumerate(cm):
        total = sum(int(v) for v in row)
        cells = []
        for j, v in enumerate(row):
            v = int(v)
            frac = v / total if total else 0.0
            title = "true %s, predicted %s: %d%s" % (names[i], names[j], v,
                                                     " (%.1f %% of the row)" % (100 * frac) if total else "")
            cells.append('<td class="cm-cell%s" style="%s" title="%s">%d</td>'
                         % (" diag" if i == j else "", _cell_style(frac, i == j), e(title), v))
        rows.append('<tr><th scope="row"><span class="idx">%d</span> %s</th>%s<td class="num total">%d</td></tr>'
                    % (i, e(names[i]), "".join(cells), total))
    table = ('<div class="scroll"><table class="confusion" id="confusion-matrix">'
             '<thead><tr><th class="corner">true \u2193 \u2009/ predicted \u2192</th>%s<th class="num">n</th></tr></thead>'
             '<tbody>%s</tbody></table></div>' % (head, "".join(rows)))
    return _section("confusion", "Confusion matrix", table,
                    "Rows are the true class, columns the predicted class (numbered as in the rows). "
                    "Colour shows the share of the row: green on the diagonal (right), red off it (wrong).")


def _gallery_html(result, names, images, max_items):
    rows = _misclassified(result)
    if result.get("predictions") is None or result.get("labels") is None:
        return ""
    if not rows:
        return _section("misclassified", "Misclassified images", "<p>None: every image was classified correctly.</p>")
    shown = rows[:max_items]
    uris, problem = _thumbnails(images, [r[0] for r in shown])

    def name(k):
        return names[k] if 0 <= k < len(names) else str(k)

    figures = []
    for (index, true, pred, conf), uri in zip(shown, uris):
        img = ('<img src="%s" alt="image %d" loading="lazy">' % (uri, index) if uri
               else '<div class="noimg">no image</div>')
        conf_html = '<span class="conf">%s</span>' % _pct(conf, 0) if conf is not None else ""
        figures.append('<figure class="miss">%s<figcaption><span class="index">#%d</span>%s'
                       '<span class="truth">true: %s</span><span class="pred">predicted: %s</span>'
                       '</figcaption></figure>' % (img, index, conf_html, e(name(true)), e(name(pred))))
    note = "%d of %d images misclassified" % (len(rows), len(result.get("predictions")))
    if len(rows) > len(shown):
        note += "; showing %d%s" % (len(shown), ", the most confident mistakes first"
                                    if shown[0][3] is not None else "")
    elif shown[0][3] is not None:
        note += "; the most confident mistakes first (the percentage is the confidence in the predicted class)"
    note += "."
    if problem:
        note += " " + problem
    elif images is None:
        note += " (No images were given to the report.)"
    body = '<div class="gallery">%s</div>' % "".join(figures[:GALLERY_OPEN])
    if len(figures) > GALLERY_OPEN:  # the rest one click away, so the tables stay in reach
        body += ('<details class="more"><summary>%d more</summary><div class="gallery">%s</div>'
                 '</details>' % (len(figures) - GALLERY_OPEN, "".join(figures[GALLERY_OPEN:])))
    return _section("misclassified", "Misclassified images", body, e(note))


def _phases_html(result):
    phases = result.get("phases") or []
    if len(phases) < 2:  # one phase is the whole result shown above
        return ""
    rows = []
    for i, phase in enumerate(phases):
        m = phase.get("metrics") or {}
        status = phase.get("passed")
        mark = "" if status is None else ('<span class="pill %s">%s</span>'
                                          % ("pass" if status else "fail", "passed" if status else "failed"))
        n = phase.get("n_images", m.get("n"))
        rows.append('<tr><th scope="row">%s %s</th><td class="num">%s</td><td class="num">%s</td>'
                    '<td class="num">%s</td><td class="num">%s</td></tr>'
                    % (e(phase.get("name") or phase.get("data") or "phase %d" % (i + 1)), mark,
                       e(n if n is not None else "\u2013"), _pct(m.get("accuracy")),
                       _pct(m.get("balanced_accuracy")), _pct(m.get("macro_f1"))))
    table = ('<div class="scroll"><table><thead><tr><th>Phase</th><th class="num">Images</th>'
             '<th class="num">Accuracy</th><th class="num">Balanced acc.</th><th class="num">Macro F1</th>'
             '</tr></thead><tbody>%s</tbody></table></div>' % "".join(rows))
    return _section("phases", "Phases", table)


def _timing_html(result):
    timing = result.get("timing") or {}
    if not timing:
        return ""
    items = []
    for key, label in (("load_s", "Loading the submission"), ("predict_s", "Predicting"),
                       ("images_per_s", "Throughput"), ("total_s", "Total")):
        if key in timing and timing[key] is not None:
            value = (e("%.1f images/s" % _num(timing[key])) if key == "images_per_s" and _num(timing[key]) is not None
                     else _seconds(timing[key]))
            items.append("<dt>%s</dt><dd>%s</dd>" % (e(label), value))
    if not items:
        return ""
    return _section("timing", "Timing", '<dl class="timing">%s</dl>' % "".join(items))


def _assumptions_html(assumptions):
    if not assumptions:
        return ""
    return _section("assumptions", "What this replay assumes",
                    "<ul class=\"assumptions\">%s</ul>" % "".join("<li>%s</li>" % e(a) for a in assumptions),
                    "The platform's ingestion program is not fully public. The profile writes down what "
                    "it takes for granted; if one of these is wrong for your challenge, pass your own "
                    "profile with <code>--profile</code>.")


# --------------------------------------------------------------------------- page

CSS = """
:root{--bg:#fff;--fg:#1b1f24;--muted:#6a737d;--line:#e3e6ea;--card:#f6f8fa;--zero:#fbfbfc;
--pass:#1a7f37;--pass-bg:#dafbe1;--warn:#9a6700;--warn-bg:#fff8c5;--fail:#cf222e;--fail-bg:#ffebe9;
--bar:#7fa6e6;--accent:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#8d96a0;--line:#30363d;
--card:#161b22;--zero:#12161c;--pass:#3fb950;--pass-bg:#12261a;--warn:#d29922;--warn-bg:#2b2111;
--fail:#f85149;--fail-bg:#2d1417;--bar:#3b6fc4;--accent:#58a6ff}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:20px 16px 48px}
h1{font-size:1.35rem;margin:0 0 4px}
h2{font-size:1.1rem;margin:0 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
section{margin-top:28px}
code{font:0.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--card);padding:1px 4px;
border-radius:4px;overflow-wrap:anywhere}
.note{color:var(--muted);font-size:.88rem;margin:0 0 10px}
.note.after{margin:10px 0 0}
header .meta{color:var(--muted);font-size:.9rem;margin:0;overflow-wrap:anywhere}
header .meta span+span:before{content:" \\00b7  "}
.verdict{display:flex;align-items:center;gap:14px;margin:16px 0 0;padding:14px 18px;border-radius:10px;
border:1px solid}
.verdict.pass{background:var(--pass-bg);border-color:var(--pass);color:var(--pass)}
.verdict.fail{background:var(--fail-bg);border-color:var(--fail);color:var(--fail)}
.verdict.unknown{background:var(--card);border-color:var(--line)}
.verdict .big{font-size:1.6rem;font-weight:700;letter-spacing:.02em}
.verdict .why{color:var(--fg);font-size:.95rem}
ul.checks{list-style:none;margin:0;padding:0;display:grid;gap:6px}
li.check{display:flex;gap:10px;align-items:flex-start;padding:8px 10px;border-radius:8px;background:var(--card)}
li.check .icon{flex:0 0 22px;height:22px;border-radius:50%;display:inline-flex;align-items:center;
justify-content:center;font-weight:700;font-size:.85rem;color:#fff;margin-top:1px}
li.pass .icon{background:var(--pass)} li.warn .icon{background:var(--warn)}
li.fail .icon{background:var(--fail)} li.skip .icon{background:var(--muted)}
li.fail{background:var(--fail-bg)} li.warn{background:var(--warn-bg)}
.check-name{font-weight:600}
details.checks>summary{cursor:pointer;padding:8px 10px;border-radius:8px;background:var(--card);
list-style-position:inside}
details.checks>summary .sum{font-weight:600;color:var(--pass)}
details.checks>summary .names{color:var(--muted);font-size:.88rem;overflow-wrap:anywhere}
details.checks[open]>summary{margin-bottom:6px}
details.checks li.check{padding:4px 10px;background:none;border-bottom:1px solid var(--line);border-radius:0}
.detail{font-size:.9rem;white-space:pre-wrap;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:10px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .label{color:var(--muted);font-size:.85rem}
.card .value{font-size:1.6rem;font-weight:650;font-variant-numeric:tabular-nums}
.card.main .value{font-size:2rem;color:var(--accent)}
.card .ci{font-size:.85rem;color:var(--muted);font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:5px 9px;text-align:left;border-bottom:1px solid var(--line)}
thead th{font-size:.82rem;color:var(--muted);font-weight:600}
.num{text-align:right}
table.per-class{width:100%;min-width:480px}
table.per-class th[scope=row]{font-weight:500;overflow-wrap:anywhere}
td.bar{background:linear-gradient(var(--bar),var(--bar)) no-repeat left bottom 3px/var(--w) 4px;padding-bottom:10px;min-width:72px}
tr.weak th,tr.weak td:first-child{color:var(--fail)}
.idx{color:var(--muted);font-size:.85em}
table.confusion{border-collapse:separate;border-spacing:2px}
table.confusion th,table.confusion td{border:0}
table.confusion th[scope=row]{white-space:nowrap;font-weight:500;max-width:220px;overflow:hidden;
text-overflow:ellipsis}
table.confusion thead th{text-align:center}
table.confusion .corner{text-align:left;white-space:nowrap;font-weight:400}
td.cm-cell{min-width:42px;height:36px;text-align:center;border-radius:4px;font-weight:600}
td.cm-cell.diag{outline:1px solid rgba(0,0,0,.08)}
td.total{color:var(--muted)}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(128px,1fr));gap:10px}
figure.miss{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden;
display:flex;flex-direction:column}
figure.miss img,figure.miss .noimg{width:100%;aspect-ratio:1/1;object-fit:cover;display:block;
background:var(--zero)}
figure.miss .noimg{display:flex;align-items:center;justify-content:center;color:var(--muted);font-size:.8rem}
details.more{margin-top:10px}
details.more>summary{cursor:pointer;color:var(--accent);font-weight:600;margin-bottom:10px}
figcaption{padding:6px 8px;font-size:.8rem;line-height:1.35;display:grid;gap:1px;overflow-wrap:anywhere}
figcaption .index{color:var(--muted)}
figcaption .conf{float:right;justify-self:end;margin-top:-1.35em;font-weight:600}
figcaption .truth{color:var(--pass)} figcaption .pred{color:var(--fail)}
dl.timing{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0}
dl.timing dt{color:var(--muted)} dl.timing dd{margin:0;font-variant-numeric:tabular-nums}
p.env{margin:6px 0;font-size:.92em} p.env.differs{border-left:4px solid #c80;padding-left:8px}
ul.assumptions{margin:0;padding-left:20px} ul.assumptions li{margin:3px 0}
.pill{font-size:.75rem;padding:1px 7px;border-radius:10px;margin-left:6px;vertical-align:1px}
.pill.pass{background:var(--pass-bg);color:var(--pass)} .pill.fail{background:var(--fail-bg);color:var(--fail)}
footer{margin-top:40px;color:var(--muted);font-size:.8rem}
@media (max-width:600px){body{font-size:14px}main{padding:14px 10px 32px}.verdict .big{font-size:1.3rem}
.card .value{font-size:1.35rem}.card.main .value{font-size:1.6rem}td.cm-cell{min-width:34px;height:30px}
table.per-class{min-width:0}th,td{padding:5px 5px}td.bar{min-width:52px}
.gallery{grid-template-columns:repeat(auto-fill,minmax(100px,1fr))}}
@media print{.scroll{overflow:visible}}
"""


def _verdict_html(result, checks):
    passed = result.get("passed")
    failed = [c for c in checks if str(c.get("status", "")).lower() == "fail"]
    warned = [c for c in checks if str(c.get("status", "")).lower() == "warn"]
    if passed is True:
        cls, big = "pass", "PASSED"
        why = ("All %d checks passed." % len(checks) if len(checks) > 1 else "Every check passed."
               ) if not warned else "No check failed; %d warning%s below." % (
            len(warned), "" if len(warned) == 1 else "s")
    elif passed is False:
        cls, big = "fail", "FAILED"
        why = ("%d check%s failed: %s." % (len(failed), "" if len(failed) == 1 else "s",
                                          ", ".join(str(c.get("name", "")) for c in failed))
               if failed else "The submission did not pass.")
        if warned:
            why = why[:-1] + "; %d warning%s." % (len(warned), "" if len(warned) == 1 else "s")
    else:
        cls, big, why = "unknown", "NO VERDICT", "The result carries no verdict."
    return ('<div class="verdict %s" id="verdict"><span class="big">%s</span><span class="why">%s</span></div>'
            % (cls, big, e(why)))


def _environment_html(env):
    """Where the replay ran and the platform's environment, at the top (escaped)."""
    from .terminal import environment_lines
    lines = environment_lines(env, width=10**6)
    if not lines:
        return ""
    cls = "env differs" if env.get("differs") or env.get("fallback") else "env"
    return "<p class=\"%s\">%s</p>" % (cls, "<br>".join(e(line) for line in lines))


def render_report(result, images=None, title=None, max_gallery=MAX_GALLERY, history=None):
    """The report's HTML text. See :func:`write_report` for the arguments (``history``: a
    forecast's inputs, ``history(indices)``, drawn before the forecasts)."""
    result = _as_dict(result)
    values = (result.get("output") or {}).get("kind") == "values"
    metrics = result.get("metrics") or {}
    checks = result.get("checks") or []
    names = _class_names(result, metrics)
    profile_name, profile_title, assumptions = _profile(result)
    from .. import __version__

    meta = []
    for label, key in (("submission", "submission"), ("data", "data")):
        if result.get(key):
            meta.append("<span>%s <code>%s</code></span>" % (label, e(result[key])))
    if profile_name:
        meta.append("<span>profile <b>%s</b>%s</span>" % (e(profile_name), " – %s" % e(profile_title)
                                                         if profile_title else ""))
    if result.get("n_images") is not None:
        meta.append("<span>%s images</span>" % e("{:,}".format(int(result["n_images"]))))
    if result.get("runtime") and not result.get("environment"):  # else the lines below say it
        meta.append("<span>runtime %s</span>" % e(result["runtime"]))
    title = title or "leafsub evaluation" + (": " + os.path.basename(str(result["submission"]))
                                             if result.get("submission") else "")
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<meta name=\"color-scheme\" content=\"light dark\">",
        "<title>%s</title><style>%s</style></head><body><main>" % (e(title), CSS),
        "<header><h1>%s</h1><p class=\"meta\">%s</p>%s%s</header>\n" % (
            e(title), "".join(meta), _environment_html(result.get("environment")),
            _verdict_html(result, checks)),
        # The answer first (verdict, metrics, what failed or warned), then where a person
        # looks next (the mistakes), then the detail; passing checks folded near the end.
        _metrics_html(result, metrics),
        _values_html(result, history) if values else "",
        _attention_html(checks),
        # A time series or feature vector has no picture to show.
        _gallery_html(result, names, images, max_gallery)
        if (result.get("input") or {}).get("kind", "image") == "image" else "",
        "" if values else _phases_html(result),   # a forecast's phases: in its sections
        _per_class_html(metrics),
        _confusion_html(metrics, names),
        _checks_html(checks),
        _timing_html(result),
        _assumptions_html(assumptions),
        "<footer>Made by leafsub %s. This file is self-contained: no network access, no scripts.</footer>"
        % e(__version__),
        "</main></body></html>\n",
    ]
    return "".join(parts)


def _values_html(result, history):
    from .report_values import sections
    return sections(result, history=history, section=_section)


def write_report(result, html_path, images=None, title=None, max_gallery=MAX_GALLERY,
                 history=None):
    """Write the evaluation report as one self-contained HTML file (atomically).

    Args:
      result: the evaluator's result, or its ``to_dict()``.
      html_path: where to write.
      images: for the gallery of misclassified images, either a callable
        ``images(indices) -> uint8 [k, H, W, 3]`` (e.g. ``pack.read``) or an array
        ``[n, H, W, 3]`` indexed by image. None: the gallery shows captions only.
      title: the page title (default from the submission's file name).
      max_gallery: at most this many misclassified images (most confident first).

    Returns the path written.
    """
    text = render_report(result, images=images, title=title, max_gallery=max_gallery,
                         history=history)
    write_atomic(html_path, text)
    return os.fspath(html_path)


# --------------------------------------------------------------------------- notebook

NOTEBOOK_SCOPE = "leafsub-report"
NOTEBOOK_GALLERY = 12


def scoped_css(css, scope):
    """``css`` with every rule confined to elements under ``.scope``: a notebook page keeps
    its own look (``:root``, ``body``, ``main`` become the scope itself)."""
    def rules(text):
        out, pos = [], 0
        while True:
            brace = text.find("{", pos)
            if brace < 0:
                return "".join(out)
            selector = text[pos:brace].strip()
            if selector.startswith("@"):   # @media (...){ rules }: scope the rules inside
                depth, end = 1, brace + 1
                while depth:
                    depth += {"{": 1, "}": -1}.get(text[end], 0)
                    end += 1
                out.append("%s{%s}" % (selector, rules(text[brace + 1:end - 1])))
                pos = end
                continue
            end = text.find("}", brace)
            out.append("%s{%s}" % (",".join(one(s) for s in selector.split(",")),
                                   text[brace + 1:end]))
            pos = end + 1

    def one(selector):
        selector = selector.strip()
        if selector in (":root", "html", "body", "main"):
            return "." + scope
        return ".%s %s" % (scope, selector)

    return rules(css)


def render_fragment(result, images=None, max_gallery=NOTEBOOK_GALLERY):
    """The report as one ``<div>`` for a notebook cell (``EvaluationResult._repr_html_``):
    the verdict, the metrics, what failed or warned (in full), the misclassified images,
    then the passing checks folded. Styles scoped to the div; no scripts; user strings
    escaped as in the file report."""
    result = _as_dict(result)
    metrics = result.get("metrics") or {}
    checks = result.get("checks") or []
    names = _class_names(result, metrics)
    meta = []
    if result.get("profile"):
        meta.append("<span>profile <b>%s</b></span>" % e(result["profile"]))
    if result.get("n_images") is not None:
        meta.append("<span>%s images</span>" % e("{:,}".format(int(result["n_images"]))))
    if result.get("runtime") and not result.get("environment"):  # else the lines below say it
        meta.append("<span>runtime %s</span>" % e(result["runtime"]))
    title = "leafsub evaluation" + (": " + os.path.basename(str(result["submission"]))
                                    if result.get("submission") else "")
    image_input = (result.get("input") or {}).get("kind", "image") == "image"
    return "".join([
        '<div class="%s"><style>%s</style>' % (NOTEBOOK_SCOPE, scoped_css(CSS, NOTEBOOK_SCOPE)),
        '<header><h1>%s</h1><p class="meta">%s</p>%s</header>' % (
            e(title), "".join(meta), _verdict_html(result, checks)),
        _metrics_html(result, metrics),
        _attention_html(checks),
        _gallery_html(result, names, images, max_gallery) if image_input else "",
        _phases_html(result),
        _checks_html(checks),
        "</div>",
    ])
