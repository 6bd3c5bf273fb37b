"""``leafsub.evaluate``: replay the platform's hidden-test protocol on a submission zip.

This module is the Python API (:func:`evaluate`, :class:`EvaluationResult`) and the
orchestration of one evaluation; the parts live in their own modules:
``replay.py`` (the session with the child), ``checklist.py`` (what is checked in which
order), ``terminal.py`` (what a terminal shows), ``commands.py`` (the click command).

The flow (docs/ARCHITECTURE.md, step 4 "Evaluate"):

  1. read the arguments, the profile and the labelled data (exit 2 on bad input);
  2. (``replay.py``) extract the zip safely into a fresh temporary folder
     (``extract.py``) and read its structure without importing it (``structure.py``);
  3. stream the images, at the profile's size, into one uint8 .npy per phase; the
     labels stay here;
  4. start the child harness (``harness.py``, not leafsub) with the profile's
     working directory, under the time, memory and output limits (``runner.py``)
     and the OS isolation (``sandbox.py``); it loads the submission and returns
     what ``predict`` said for every image;
  5. (``checklist.py``) judge: output contract, determinism, input mutation, harness variants,
     goldens from ``leafsub-manifest.json``, the mismatch detective;
  6. score (``metrics.py``) and report: terminal, ``--json``, ``--html``.

The parent never imports TensorFlow and never runs the submission's code.
"""

import dataclasses
import os
import shutil
import sys
import time

import numpy as np

from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..jsonfiles import dumps, write_atomic
from ..profiles import is_image, is_values
from ..protocol import Protocol
from . import checks as C
from . import detective as D
from .checklist import run_checks
from .replay import EndReplay, Replay
from .terminal import Progress

DEFAULT_TIME_LIMIT = 1200
DEFAULT_MEMORY_MB = 12000
SERIES_HINT_PX = 16   # a [N, H, W] "grayscale" pack narrower than this is taken for series


@dataclasses.dataclass
class EvaluationResult:
    """What ``leafsub.evaluate`` returns. ``to_dict()`` is the ``--json`` content.

    In a notebook it displays as its report (``_repr_html_``): the verdict, the metrics,
    what failed or warned, and the misclassified images (read from the data on display).
    """

    data: dict
    # images(indices) -> uint8 [k, H, W, 3], for the notebook's gallery (not in the JSON)
    images: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def passed(self):
        return bool(self.data["passed"])

    @property
    def exit_code(self):
        return EXIT_OK if self.passed else EXIT_CHECK_FAILED

    @property
    def checks(self):
        return self.data["checks"]

    @property
    def metrics(self):
        return self.data.get("metrics")

    @property
    def accuracy(self):
        return (self.data.get("metrics") or {}).get("accuracy")

    @property
    def predictions(self):
        p = self.data.get("predictions")
        if p is None:
            return None
        if (self.data.get("output") or {}).get("kind") == "values":
            return np.asarray(p, dtype=np.float64)   # a forecast (one phase, or phases alike)
        return np.asarray(p, dtype=np.int64)

    def check(self, name):
        """The first check record named ``name`` (or None)."""
        return next((c for c in self.data["checks"] if c["name"] == name), None)

    def to_dict(self):
        return self.data

    def _repr_html_(self):
        from .report_html import render_fragment

        try:
            return render_fragment(self.data, images=self.images)
        except Exception:   # noqa: BLE001 - a notebook falls back to the text repr
            return None

    def __repr__(self):
        m = self.data.get("metrics") or {}
        if m.get("kind") == "values":   # a forecast: its leaderboard metric
            return "<EvaluationResult %s, %s %.6g, %d checks>" % (
                "passed" if self.passed else "FAILED", m["metric"], m["score"], len(self.checks))
        acc = self.accuracy
        return "<EvaluationResult %s, accuracy %s, %d checks>" % (
            "passed" if self.passed else "FAILED", "n/a" if acc is None else "%.4f" % acc,
            len(self.checks))


def _as_list(data):
    if data is None:
        return []
    if isinstance(data, (list, tuple)):
        return list(data)
    return [data]


def evaluate(submission, data, profile=None, runtime=None, python=None, batch_size=None,
             time_limit=None, memory_limit=None, json_path=None, html_path=None, progress=True,
             isolate=True, detective=True, variants=True, keep_workdir=False,
             expect_preprocess=None, card=None, classes=None):
    """Replay the hidden-test protocol on ``submission`` and score it on ``data``.

    Args:
      submission: the submission zip.
      data: a data pack (class folders, .npz or .h5) or a list of them (one phase each).
      profile: a built-in profile name or a profile JSON path (default an2dl-2022).
      runtime: where the child runs. None: ``$LEAFSUB_RUNTIME``, else ``"platform"``: the
        profile's environment (the platform's TensorFlow, Keras, numpy, ... in a cached
        virtual environment, created on first use; this Python, with a warning, when it
        cannot be created). ``"local"``: this Python (the result names what differs from
        the platform). ``"tensorflow==2.17.0,keras==3.4.1"``: a cached virtual
        environment with those pins.
      python: run the child with this interpreter instead (exclusive with ``runtime``).
      batch_size: images per ``predict`` call (default: the profile's).
      time_limit: seconds for the whole replay (default: the profile's).
      memory_limit: MB of resident memory for the child (default: the profile's).
      json_path, html_path: also write the result as JSON / a self-contained HTML report.
      progress: print progress on stderr.
      isolate: use the OS isolation (private network, confined reads and writes) where
        available.
      detective, variants: run the mismatch detective / the harness variants.
      keep_workdir: keep the temporary folder (its path is in the result) for debugging.
      expect_preprocess: the preprocessing mode training used (caffe, tf, torch, rescale,
        none), as the user states it: the detective confirms or contradicts it.
      card: a run dir written by ``leafsub export``: its model card states the mode.
      classes: the class count, for a generic profile (``classes.from_models``);
        default: the data's (its class names, else its largest label + 1).

    Returns:
      an :class:`EvaluationResult` (``.passed``, ``.exit_code``, ``.to_dict()``).

    Raises:
      UsageError (exit 2) for bad arguments or unreadable data. A broken submission is
      not an exception: it is a result with failed checks.

    Example:
      >>> result = leafsub.evaluate("submission.zip", "test.npz")   # doctest: +SKIP
      >>> result.passed, result.accuracy                              # doctest: +SKIP
      (True, 0.8125)
    """
    from ..profiles import load_profile, with_classes
    from .runtimes import resolve_runtime

    started = time.monotonic()
    say = Progress(progress)
    from .extract import require_zip_file

    submission = require_zip_file(submission)
    for path, flag in ((json_path, "--json"), (html_path, "--html")):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(os.fspath(path)))):
            raise UsageError("%s %s: the folder %s does not exist; create it or give another "
                             "path." % (flag, path, os.path.dirname(os.path.abspath(path))))
    datas = _as_list(data)
    if not datas:
        raise UsageError("No data to evaluate on: give --data with a folder of class "
                         "sub-folders, an .npz or an .h5 (labelled images).")
    prof = load_profile(profile)
    protocol = Protocol.from_profile(prof)
    # "is None", not "or": an explicit 0 is a mistake to report, not a request for the default.
    batch_size = int(protocol.input.batch_size if batch_size is None else batch_size)
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1, got %d." % batch_size)
    limits = prof.get("limits") or {}
    if time_limit is None:
        time_limit = limits.get("time_s") or DEFAULT_TIME_LIMIT
    if memory_limit is None:
        memory_limit = limits.get("memory_mb") or DEFAULT_MEMORY_MB
    time_limit, memory_limit = float(time_limit), int(memory_limit)
    if time_limit <= 0 or memory_limit <= 0:
        raise UsageError("--time-limit and --memory-limit must be positive.")
    packs = [_open_data(d, prof) for d in datas]
    if is_values(prof):
        pass  # a forecast has no classes
    elif classes is None and prof["classes"].get("from_models"):
        # The data's class names, else its largest label + 1 (--classes when the data
        # lacks the model's last classes).
        prof = with_classes(prof, max([p.n_classes for p in packs] + [prof["classes"]["count"]]),
                            "the data's classes")
    else:
        prof = with_classes(prof, classes, "--classes")
    n_classes = int((prof.get("classes") or {}).get("count", 0))
    for pack in packs:
        if pack.labels is None:  # a values pack (a forecast's targets)
            continue
        top = int(pack.labels.max()) if pack.n else -1
        if top >= n_classes:
            raise UsageError("%s: labels go up to %d, but the %s profile has %d classes. Use the "
                             "profile of this challenge (--profile), or data with its labels."
                             % (pack.path, top, prof["name"], n_classes))
    stated = _stated_preprocess(expect_preprocess, card)
    chosen = resolve_runtime(runtime=runtime, python=python, say=say.say,
                             framework=protocol.framework, environment=protocol.environment)
    if os.path.abspath(chosen.python) == os.path.abspath(sys.executable):
        # The child runs with this Python: without the framework it could only crash.
        from ..frameworks import require
        require(protocol.framework, "Evaluating a submission of the %s profile with this "
                "Python (the child that runs model.py imports %s)" % (prof["name"],
                                                                      protocol.framework))

    replay = Replay(prof, packs, chosen, say, batch_size=batch_size, time_limit=time_limit,
                    memory_limit=memory_limit, isolate=isolate, started=started)
    replay.result["submission"] = os.path.abspath(submission)
    replay.result["environment"] = _environment(protocol, chosen, None)
    try:
        # The replay line below says where it runs (chosen.label in the result's "runtime").
        say.say("Evaluating %s with the %s profile" % (submission, prof["name"]))
        say.say("  replay: %s" % replay.result["environment"]["summary"])
        run_checks(replay, submission, detective=detective, variants=variants, stated=stated)
    except EndReplay:
        pass  # the checks so far say why
    except BaseException:
        replay.close()
        if not keep_workdir:
            shutil.rmtree(replay.workdir, ignore_errors=True)
        raise
    replay.close()
    replay.result["environment"] = _environment(protocol, chosen, replay.result.get("child"))
    _environment_checks(replay.result)
    return _finish(replay, started, json_path, html_path, keep_workdir)


_KIND = {"platform": "the platform's environment", "runtime": "--runtime",
         "local": "your Python", "python": "--python"}


def _fmt(versions, names=("python", "tensorflow", "keras", "numpy", "scikit-learn", "torch")):
    return ", ".join("%s %s" % (n, versions[n]) for n in names if versions.get(n))


def _environment(proto, chosen, child):
    """The result's ``environment``: where the replay ran, the platform's environment, and
    what differs (the child's own versions once it loaded; before, the runtime's)."""
    from .runtimes import differences

    platform = proto.platform_packages()
    replay = dict(chosen.versions or {})
    replay.update({k: v for k, v in (child or {}).items() if v})
    differs = differences(platform, replay)
    known = {k: v for k, v in platform.items() if v}
    same = bool(known) and not differs
    if proto.framework != "torch":
        replay.pop("torch", None)      # this Python may have it; a TensorFlow replay does not use it
    replay_text = "%s (%s)" % (_KIND.get(chosen.kind, chosen.kind), _fmt(replay) or chosen.label)
    if not known:
        platform_text = "not published"
    else:
        platform_text = _fmt(known, tuple(known))
    if same:
        summary = "%s, as the platform's: %s" % (_KIND.get(chosen.kind, chosen.kind),
                                                 _fmt(replay))
    else:
        summary = "%s; platform: %s" % (replay_text, platform_text)
    if differs:
        summary += "; differs: " + ", ".join("%s %s here vs %s" % (n, found or "absent", want)
                                             for n, want, found in differs)
    return {
        "replay": {"kind": chosen.kind, "label": chosen.label, "python_path": chosen.python,
                   "packages": replay},
        "platform": {"packages": platform,
                     "evidence": [dict(p) for p in proto.environment.get("packages") or ()],
                     "python": dict(proto.environment.get("python") or {})},
        "differs": [{"package": n, "platform": want, "replay": found}
                    for n, want, found in differs],
        "same": same,
        "fallback": bool(chosen.fallback),
        "notes": list(chosen.notes),
        "summary": summary,
    }


# The checks whose failure can come from the packages rather than from the submission,
# unless the message says it came from the replay's limits or confinement.
_HINGES = ("loads", "predicts", "output", "goldens", "deterministic")
_NOT_PACKAGES = ("time limit", "memory limit", "no network", "outside the zip", "sys.exit",
                 "killed", "file too large", "permission denied")


def _environment_checks(result):
    """A warning when the replay is not the platform's environment and that matters: it
    fell back to this Python, a nearer TensorFlow stood in, or a check failed that could
    pass (or a pass that could fail) with the platform's versions."""
    env = result["environment"]
    checks = result["checks"]
    failed = [c for c in checks if c["status"] == "fail" and c["name"].split(":")[0] in _HINGES
              and not any(m in c["detail"].lower() for m in _NOT_PACKAGES)]
    relevant = [d for d in env["differs"] if d["package"] in (
        "tensorflow", "keras", "numpy", "torch", "tf-keras", "scikit-learn")]
    sentences = list(env["notes"])
    if relevant and failed:
        shown = ", ".join("%s %s here, %s on the platform" % (
            d["package"], d["replay"] or "absent", d["platform"]) for d in relevant)
        hinge = ("This replay's packages differ from the platform's (%s): the failure may not "
                 "happen on the platform, or it may fail there differently. %s" % (
                     shown, "Evaluate without --runtime local (in the platform's environment) "
                     "for its verdict." if env["replay"]["kind"] != "platform" else
                     "No closer environment installs on this Python."))
        keras = {d["package"]: d for d in relevant}.get("keras")
        if keras and str(keras["platform"]).startswith("2.") \
                and str(keras["replay"] or "").startswith("3."):
            hinge += (" The platform's Keras %s is Keras 2: there tf.keras.models.load_model "
                      "reads a SavedModel folder, so advice that holds only for Keras 3 (load "
                      "it with tf.saved_model.load) need not apply." % keras["platform"])
        for c in failed:
            c["detail"] = c["detail"].rstrip() + "\n" + hinge
        sentences.append(hinge)
    if env["fallback"] or sentences:
        checks.insert(0, C.check("environment", "warn", " ".join(
            s[0].upper() + s[1:] for s in sentences if s)))


def _finish(replay, started, json_path, html_path, keep_workdir):
    """Take the verdict, write the outputs, clean up."""
    result = replay.result
    result["timing"]["total_s"] = round(time.monotonic() - started, 3)
    result["timing"]["parent_peak_rss_mb"] = _peak_rss_mb()
    result["passed"] = C.verdict(result["checks"])
    if keep_workdir:
        result["workdir"] = replay.workdir
    else:
        shutil.rmtree(replay.workdir, ignore_errors=True)
    if json_path:
        write_atomic(json_path, dumps(result))
    pack = replay.packs[0] if len(replay.packs) == 1 and is_image(replay.prof) else None
    images = None
    if pack is not None:
        h, w = int(replay.inp["shape"][0]), int(replay.inp["shape"][1])
        images = (lambda idx: pack.read(idx, size=(h, w)))   # noqa: E731
    values = replay.packs[0] if len(replay.packs) == 1 and getattr(
        replay.packs[0], "kind", None) == "values" else None
    if html_path:
        from .report_html import write_report
        write_report(result, html_path, images=images,
                     history=values.read if values is not None else None)
    return EvaluationResult(result, images=images)


def _peak_rss_mb():
    """This (parent) process's peak resident memory so far, in MB (None where unknown).

    Linux: VmHWM of /proc/self/status, the high-water mark of this process's own memory.
    Not getrusage's ru_maxrss there: exec carries over the peak of the process that
    started us (a notebook or benchmark holding TensorFlow would be counted as ours).
    """
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


def _open_data(path, prof):
    """An image pack, or, for a profile whose input is not an image, a tensor pack of its shape."""
    from ..datasets import open_pack, open_tensor_pack, open_values_pack
    from ..profiles import is_values

    if is_values(prof):
        return open_values_pack(path, tuple(prof["input"]["shape"]), list(prof["interface"]["args"]),
                                prof["output"].get("shape"))
    if is_image(prof):
        pack = open_pack(path)
        raw = pack.raw_shape
        if len(raw) == 3 and min(raw[1:]) < SERIES_HINT_PX:
            # [N, 36, 6] read as 6-pixel-wide grayscale images: surely not what was meant.
            raise UsageError("%s: holds arrays of shape %s, which an image profile (%s) would "
                             "read as grayscale images %d pixels wide. If these are time series "
                             "or other samples that are not images, evaluate with a profile for "
                             "them: --profile an2dl-2022-ts, or your own with input.shape %s."
                             % (path, list(raw), prof["name"], min(raw[1:]), list(raw[1:])))
        return pack
    return open_tensor_pack(path, tuple(prof["input"]["shape"]))


def _stated_preprocess(expect_preprocess, card):
    """``(mode, where it was stated)`` from ``--expect-preprocess`` / ``--card``, or Nones."""
    modes = D.STATED_MODES
    if expect_preprocess is not None and expect_preprocess not in modes:
        raise UsageError("--expect-preprocess %s: not a preprocessing mode; give one of %s "
                         "(what training applied before the model)." % (
                             expect_preprocess, ", ".join(modes)))
    if card is None:
        return (expect_preprocess, "--expect-preprocess" if expect_preprocess else None)
    from ..card import card_path, read_card

    mode = read_card(card)["preprocess"]["mode"]
    if mode not in modes:
        raise UsageError("%s: the card's preprocessing is %r, which the detective cannot "
                         "check; give --expect-preprocess instead." % (card_path(card), mode))
    if expect_preprocess is not None and expect_preprocess != mode:
        raise UsageError("--expect-preprocess %s contradicts the card %s ('%s'): give one of "
                         "them." % (expect_preprocess, card_path(card), mode))
    return (mode, "the card %s" % card_path(card))
