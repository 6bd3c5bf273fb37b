"""What the evaluator shows on a terminal: colour or not, progress, the result's lines.

One small module that ``leafsub evaluate`` and ``leafsub compare`` share, so that the
NO_COLOR / terminal rule is one rule; it holds no evaluation logic.
"""

import os
import sys
import textwrap
import time

import click


def use_color(stream=None):
    """Colour on ``stream`` (stdout): a terminal, not ``TERM=dumb``, no ``NO_COLOR``."""
    stream = stream or sys.stdout
    if "NO_COLOR" in os.environ:   # https://no-color.org: present, whatever its value
        return False
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"


class Progress:
    """Progress on stderr: a bar on a terminal, a few lines elsewhere."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.started = None
        self.last_pct = -1

    def say(self, message):
        if self.enabled:
            click.echo(message, err=True)

    def bar(self, label):
        self.started = time.monotonic()
        self.last_pct = -1
        self.label = label

        def update(done, total):
            if not self.enabled or not total:
                return
            rate = done / max(time.monotonic() - self.started, 1e-9)
            if self.tty:
                width = 24
                fill = int(width * done / total)
                sys.stderr.write("\r  %s [%s%s] %d/%d images, %.0f img/s " % (
                    self.label, "#" * fill, "." * (width - fill), done, total, rate))
                if done >= total:
                    sys.stderr.write("\n")
                sys.stderr.flush()
            else:
                pct = int(100 * done / total) // 25 * 25
                if pct > max(self.last_pct, 0):
                    self.last_pct = pct
                    click.echo("  %s: %d/%d images (%d %%), %.0f img/s" % (
                        self.label, done, total, pct, rate), err=True)
        return update


MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


def format_evaluation(d, width=80, color=False, verbose=False):
    """The result as lines of at most ``width`` columns."""
    def style(text, status):
        if not color:
            return text
        return click.style(text, fg={"pass": "green", "warn": "yellow", "fail": "red"}.get(status),
                           bold=status == "fail")

    lines = []
    data = d.get("data")
    data_text = ", ".join(map(os.path.basename, data)) if isinstance(data, list) else \
        os.path.basename(str(data))
    lines.append("leafsub evaluate: %s on %s" % (os.path.basename(d["submission"]), data_text))
    lines.append("profile %s, %d %s, %s" % (
        d["profile"], d["n_images"], "images" if (d.get("input") or {}).get("kind", "image")
        == "image" else "samples", d.get("runtime", "")))
    lines.append("")
    name_w = min(28, max([len(c["name"]) for c in d["checks"]] + [8]))
    indent = " " * (6 + name_w + 1)
    for c in d["checks"]:
        if c["status"] == "pass" and not verbose and c["name"].startswith(("data:", "variant:")):
            continue
        detail = " ".join(c["detail"].split("\n")[0].split())
        body = textwrap.wrap(detail, width=max(20, width - len(indent))) or [""]
        lines.append("%s  %-*s %s" % (style(MARK[c["status"]], c["status"]), name_w,
                                      c["name"][:name_w], body[0]))
        for more in body[1:]:
            lines.append(indent + more)
        if c["status"] != "pass" and "\n" in c["detail"]:
            for extra in c["detail"].split("\n")[1:][:8]:
                lines.append(indent + extra[:width - len(indent)])
    m = d.get("metrics")
    lines.append("")
    if (d.get("output") or {}).get("kind") == "values":
        from .values import terminal_lines
        lines.extend(terminal_lines(d))
    elif m:
        ci = m.get("accuracy_ci") or {}
        lines.append("accuracy %.4f (95 %% CI %.4f-%.4f)   balanced %.4f   macro F1 %.4f" % (
            m["accuracy"], ci.get("low", float("nan")), ci.get("high", float("nan")),
            m["balanced_accuracy"], m["macro_f1"]))
        for phase in d.get("phases") or []:
            pm = phase.get("metrics")
            lines.append("  %-20s %5d images  accuracy %s" % (
                phase["name"][:20], phase["n_images"], "%.4f" % pm["accuracy"] if pm else "n/a"))
        weakest = sorted(m.get("per_class") or [], key=lambda r: r["recall"])[:3]
        if weakest and len(m.get("per_class")) > 2:
            lines.append("weakest classes (recall): " + ", ".join(
                "%s %.2f" % (r["class"], r["recall"]) for r in weakest))
    else:
        lines.append("no metrics: the submission did not produce usable predictions")
    t = d.get("timing") or {}
    if t.get("predict_s") is not None:
        lines.append("timing: load %.1f s, predict %.1f s (%.0f images/s), total %.1f s" % (
            t.get("load_s") or 0, t["predict_s"], t.get("images_per_s") or 0, t.get("total_s", 0)))
    n_fail = sum(c["status"] == "fail" for c in d["checks"])
    n_warn = sum(c["status"] == "warn" for c in d["checks"])
    if d["passed"]:
        verdict = "PASSED" + (" with %d warning%s" % (n_warn, "s" * (n_warn != 1)) if n_warn else "")
    else:
        verdict = "FAILED: %d check%s failed" % (n_fail, "s" * (n_fail != 1))
    lines.append(style("verdict: " + verdict, "pass" if d["passed"] else "fail"))
    return lines
