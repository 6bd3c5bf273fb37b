"""What the evaluator shows on a terminal: colour or not, progress, the result's lines.

One small module that ``leafsub evaluate`` and ``leafsub compare`` share, so that the
NO_COLOR / terminal rule is one rule; it holds no evaluation logic.
"""

import os
import sys
import textwrap
import time

import click

from ..textsafe import escape


def use_color(stream=None):
    """Colour on ``stream`` (stdout): a terminal, not ``TERM=dumb``, no ``NO_COLOR``."""
    stream = stream or sys.stdout
    if "NO_COLOR" in os.environ:   # https://no-color.org: present, whatever its value
        return False
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"


def in_notebook(stream=None):
    """True when ``stream`` (stderr) is a Jupyter kernel's output stream: a notebook cell
    redraws a line on a carriage return as a terminal does."""
    stream = stream or sys.stderr
    return "ipykernel" in sys.modules and type(stream).__name__ == "OutStream"


class Progress:
    """Progress on stderr: a bar on a terminal or in a notebook cell, a few lines elsewhere
    (a log file, CI)."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.tty = enabled and (sys.stderr.isatty() or in_notebook())
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


def environment_lines(env, width=80):
    """Where the replay ran and the platform's environment: the top of every report."""
    if not env:
        return []
    rep = env.get("replay") or {}
    known = {k: v for k, v in ((env.get("platform") or {}).get("packages") or {}).items() if v}
    shown = lambda versions, names: ", ".join(  # noqa: E731
        "%s %s" % (n, versions[n]) for n in names if versions.get(n))
    names = ("python", "tensorflow", "keras", "numpy", "scikit-learn") + (
        () if (rep.get("packages") or {}).get("tensorflow") and "torch" not in known
        else ("torch",))
    where = {"platform": "the platform's environment", "runtime": "--runtime",
             "local": "your Python", "python": "--python"}.get(rep.get("kind"), rep.get("kind"))
    out = ["replayed in %s: %s" % (where, shown(rep.get("packages") or {}, names))]
    out.append("platform: %s" % (shown(known, tuple(known)) if known else "not published"))
    if env.get("differs"):
        # The versions of both sides are on the two lines above: name what differs.
        out[-1] += "; differs: %s" % ", ".join(x["package"] for x in env["differs"])
    elif env.get("same"):
        out[-1] += " (the same)"
    wrapped = []
    for line in out:
        wrapped.extend(textwrap.wrap(line, width=width, subsequent_indent="  ") or [line])
    return wrapped


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
    env_lines = environment_lines(d.get("environment"), width)
    lines.append("profile %s, %d %s%s" % (
        d["profile"], d["n_images"], "images" if (d.get("input") or {}).get("kind", "image")
        == "image" else "samples", "" if env_lines else ", " + d.get("runtime", "")))
    lines.extend(env_lines)
    lines.append("")
    checks = d["checks"]
    shown = checks if verbose else [c for c in checks if c["status"] != "pass"]
    passed = [c for c in checks if c["status"] == "pass"]
    if passed and not verbose:
        # As pytest does: the passing checks fold into one line; what needs attention
        # follows in full. --verbose lists every check.
        lines.append(_folded(passed, width, style))
    name_w = min(28, max([len(c["name"]) for c in shown] + [8]))
    indent = " " * (6 + name_w + 1)
    for c in shown:
        detail = " ".join(escape(c["detail"].split("\n")[0]).split())
        body = textwrap.wrap(detail, width=max(20, width - len(indent))) or [""]
        lines.append("%s  %-*s %s" % (style(MARK[c["status"]], c["status"]), name_w,
                                      c["name"][:name_w], body[0]))
        for more in body[1:]:
            lines.append(indent + more)
        if c["status"] != "pass" or verbose:
            for extra in c["detail"].split("\n")[1:]:
                for piece in textwrap.wrap(escape(extra), width=max(20, width - len(indent)),
                                           subsequent_indent="  ") or [""]:
                    lines.append(indent + piece)
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
        for phase in (d.get("phases") or []) if len(d.get("phases") or []) > 1 else []:
            pm = phase.get("metrics")  # one phase is the line above: not said twice
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
        verdict = "PASSED: %d check%s passed" % (len(passed), "s" * (len(passed) != 1)) + (
            ", %d warning%s" % (n_warn, "s" * (n_warn != 1)) if n_warn else "")
    else:
        verdict = "FAILED: %d check%s failed" % (n_fail, "s" * (n_fail != 1)) + (
            " (%s)" % ", ".join(c["name"] for c in checks if c["status"] == "fail")
            if n_fail <= 3 else "") + (", %d warning%s" % (n_warn, "s" * (n_warn != 1))
                                       if n_warn else "")
    lines.append(style("verdict: " + verdict, "pass" if d["passed"] else "fail"))
    return lines


def _folded(passed, width, style):
    """``PASS  23 checks passed: layout, load, ...`` on one line of at most ``width`` columns."""
    rest = "  %d check%s passed: " % (len(passed), "s" * (len(passed) != 1))
    room = width - len(MARK["pass"]) - len(rest)
    names = []
    for c in passed:
        name = c["name"]
        if ": " in name:   # "model.py: syntax", "model.py: class", ...: "model.py" once
            name = name.split(": ", 1)[0]
            name = "variants" if name == "variant" else name
        if name not in names:
            names.append(name)
    text = ""
    for i, name in enumerate(names):
        piece = (", " if text else "") + name
        left = len(names) - i - 1
        if len(text) + len(piece) + (len(", +%d more" % left) if left else 0) > room:
            text += (", " if text else "") + "+%d more" % (left + 1)
            break
        text += piece
    return style(MARK["pass"], "pass") + rest + text
