"""``leafsub.evaluate``: replay the platform's hidden-test protocol on a submission zip.

This module is the Python API (:func:`evaluate`, :class:`EvaluationResult`) and the
orchestration of one evaluation; the parts live in their own modules:
``replay.py`` (the session with the child), ``checklist.py`` (what is checked in which
order), ``terminal.py`` (what a terminal shows), ``commands.py`` (the click command).

The flow (DESIGN.md, "evaluate"):

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
from ..profiles import is_image
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
    """What ``leafsub.evaluate`` returns. ``to_dict()`` is the ``--json`` content."""

    data: dict

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
             expect_preprocess=None, card=None):
    """Replay the hidden-test protocol on ``submission`` and score it on ``data``.

    Args:
      submission: the submission zip.
      data: a data pack (class folders, .npz or .h5) or a list of them (one phase each).
      profile: a built-in profile name or a profile JSON path (default an2dl-2022).
      runtime: e.g. ``"tensorflow==2.15.1"``: run the child under that TensorFlow (a
        cached virtual environment, created on first use).
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
    from ..profiles import load_profile
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
    n_classes = int((prof.get("classes") or {}).get("count", 0))
    # "is None", not "or": an explicit 0 is a mistake to report, not a request for the default.
    batch_size = int(prof["input"].get("batch_size", 32) if batch_size is None else batch_size)
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
                             framework=prof.get("framework", "tensorflow"))

    replay = Replay(prof, packs, chosen, say, batch_size=batch_size, time_limit=time_limit,
                    memory_limit=memory_limit, isolate=isolate)
    replay.result["submission"] = os.path.abspath(submission)
    try:
        say.say("Evaluating %s with the %s profile (%s)" % (submission, prof["name"],
                                                            chosen.label))
        run_checks(replay, submission, detective=detective, variants=variants, stated=stated)
    except EndReplay:
        pass  # the checks so far say why
    except BaseException:
        replay.close()
        if not keep_workdir:
            shutil.rmtree(replay.workdir, ignore_errors=True)
        raise
    replay.close()
    return _finish(replay, started, json_path, html_path, keep_workdir)


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
    if html_path:
        from .report_html import write_report
        pack = replay.packs[0] if len(replay.packs) == 1 and is_image(replay.prof) else None
        size = tuple(int(d) for d in replay.inp["shape"][:2]) if pack is not None else None
        images = (lambda idx: pack.read(idx, size=size)) if pack is not None else None
        values = replay.packs[0] if len(replay.packs) == 1 and getattr(
            replay.packs[0], "kind", None) == "values" else None
        write_report(result, html_path, images=images,
                     history=values.read if values is not None else None)
    return EvaluationResult(result)


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
    from ..profiles import is_values, predict_args

    if is_values(prof):
        return open_values_pack(path, tuple(prof["input"]["shape"]), predict_args(prof),
                                prof["output"].get("shape"))
    if is_image(prof):
        pack = open_pack(path)
        raw = getattr(getattr(pack, "_source", None), "shape", ())
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
