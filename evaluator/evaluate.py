"""``leafsub evaluate``: replay the platform's hidden-test protocol on a submission zip.

The flow (DESIGN.md, "evaluate"):

  1. read the arguments, the profile and the labelled data (exit 2 on bad input);
  2. extract the zip safely into a fresh temporary folder (``extract.py``) and read
     its structure without importing it (``structure.py``);
  3. stream the images, at the profile's size, into one uint8 .npy per phase; the
     labels stay here;
  4. start the child harness (``harness.py``, not leafsub) with the profile's
     working directory, under the time, memory and output limits (``runner.py``)
     and the OS isolation (``sandbox.py``); it loads the submission and returns
     what ``predict`` said for every image;
  5. judge: output contract, determinism, input mutation, harness variants,
     goldens from ``leafsub-manifest.json``, the mismatch detective;
  6. score (``metrics.py``) and report: terminal, ``--json``, ``--html``.

The parent never imports TensorFlow and never runs the submission's code.
"""

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time

import click
import numpy as np

from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..jsonfiles import dumps, write_atomic
from . import checks as C
from . import detective as D
from . import metrics as M

MANIFEST_NAME = "leafsub-manifest.json"
DEFAULT_TIME_LIMIT = 1200
DEFAULT_MEMORY_MB = 12000
VARIANT_IMAGES = 21   # images the harness variants are tried on (3 batches of 7)
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
        return None if p is None else np.asarray(p, dtype=np.int64)

    def check(self, name):
        """The first check record named ``name`` (or None)."""
        return next((c for c in self.data["checks"] if c["name"] == name), None)

    def to_dict(self):
        return self.data

    def __repr__(self):
        acc = self.accuracy
        return "<EvaluationResult %s, accuracy %s, %d checks>" % (
            "passed" if self.passed else "FAILED", "n/a" if acc is None else "%.4f" % acc,
            len(self.checks))


class _Progress:
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


def _as_list(data):
    if data is None:
        return []
    if isinstance(data, (list, tuple)):
        return list(data)
    return [data]


def _phase_name(path, i):
    base = os.path.basename(os.path.normpath(os.fspath(path)))
    return base or "phase %d" % (i + 1)


def _read_manifest(root):
    """The build's manifest and probe, when the zip has them and they are readable."""
    path = os.path.join(root, MANIFEST_NAME)
    if not os.path.isfile(path):
        return None, None
    try:
        with open(path, "r", encoding="utf-8") as f:
            manifest = json.load(f)
        probe_file = (manifest.get("probe") or {}).get("file")
        probe_path = os.path.join(root, probe_file) if probe_file else None
        if not probe_path or not os.path.isfile(probe_path):
            return manifest, None
        with np.load(probe_path, allow_pickle=False) as probe:
            images = np.asarray(probe["images"], dtype=np.float32)
            labels = np.asarray(probe["labels"], dtype=np.int64)
        return manifest, (images, labels)
    except (OSError, ValueError, KeyError, TypeError) as err:
        return {"unreadable": "%s: %s" % (type(err).__name__, err)}, None


def _explain_failure(error, stage, iface):
    """A one-paragraph reason for a load/predict failure, with the usual fix."""
    text = error or ""
    hints = []
    low = text.lower()
    if "network is unreachable" in low or "errno 101" in low or "name or service not known" \
            in low or "temporary failure in name resolution" in low or "connection refused" in low:
        hints.append("The platform has no network: the submission tried to connect; bundle "
                     "everything it needs in the zip.")
    outside_read = "cannot read files outside the zip" in low
    if outside_read and "tried to read /proc/" in low:
        hints.append(C.PROC_READ)
    elif outside_read:
        hints.append(C.OUTSIDE_READ)
    if ("permission denied" in low or "read-only file system" in low) and not outside_read:
        hints.append("The submission tried to write outside its own folder (or to read outside "
                     "the zip), which the replay (like the platform) does not allow.")
    if "file too large" in low or "errno 27]" in low:
        from .sandbox import FILE_SIZE_LIMIT
        hints.append("The submission wrote a file past the replay's limit of %d GB (a runaway "
                     "write would fill the disk): the platform's disk is limited too; write "
                     "less, or nothing, to disk." % (FILE_SIZE_LIMIT // 2**30))
    if "modulenotfounderror" in low:
        hints.append("The platform has only the standard library, numpy and tensorflow (and "
                     "what the profile lists); put your own modules next to model.py in the zip.")
    if ("unknown layer" in low or "custom_objects" in low or "could not locate" in low
            or "unable to restore custom" in low):
        hints.append("The model needs custom code (a custom layer, loss or Lambda) to load: "
                     "export it with 'leafsub export' (an inference-only SavedModel needs no "
                     "custom objects) or register the objects in model.py.")
    if "file format not supported" in low or ("keras 3" in low and "load_model" in low):
        hints.append("Keras 3 load_model reads only .keras files: load a SavedModel with "
                     "tf.saved_model.load (as leafsub build's model.py does).")
    if "optimizer" in low and ("restore" in low or "slot" in low):
        hints.append("The model was saved with its optimizer state: save it inference-only "
                     "('leafsub export' does).")
    missing = C.missing_custom_code(text)
    if missing:  # the precise verdict goes first: what is missing and the three fixes
        hints.insert(0, missing)
        hints = [h for h in hints if not h.startswith(("The model needs custom code",
                                                       "The platform has only"))]
    return " ".join(hints)


def _tail(text, lines=8):
    rows = [r for r in (text or "").strip().splitlines() if r.strip()]
    return "\n".join(rows[-lines:])


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
    say = _Progress(progress)
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
    n_classes = int(prof["classes"]["count"])
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
        top = int(pack.labels.max()) if pack.n else -1
        if top >= n_classes:
            raise UsageError("%s: labels go up to %d, but the %s profile has %d classes. Use the "
                             "profile of this challenge (--profile), or data with its labels."
                             % (pack.path, top, prof["name"], n_classes))
    stated = _stated_preprocess(expect_preprocess, card)
    chosen = resolve_runtime(runtime=runtime, python=python, say=say.say,
                             framework=prof.get("framework", "tensorflow"))

    replay = _Replay(prof, packs, chosen, say, batch_size=batch_size, time_limit=time_limit,
                     memory_limit=memory_limit, isolate=isolate)
    replay.result["submission"] = os.path.abspath(submission)
    try:
        say.say("Evaluating %s with the %s profile (%s)" % (submission, prof["name"],
                                                            chosen.label))
        replay.run(submission, detective=detective, variants=variants, stated=stated)
    except _EndReplay:
        pass  # the checks so far say why
    except BaseException:
        replay.close()
        if not keep_workdir:
            shutil.rmtree(replay.workdir, ignore_errors=True)
        raise
    replay.close()
    return _finish(replay, started, json_path, html_path, keep_workdir)


class _EndReplay(Exception):
    """The replay cannot go on; the checks recorded so far say why."""


class _Replay:
    """One evaluation's steps and the state they share (the child, the checks, the result).

    ``run`` goes: extract -> read the structure -> write the images -> start the child
    -> load -> the main pass -> determinism, variants, goldens, detective. A step that
    leaves nothing to check further records its failed check and raises
    :class:`_EndReplay`.
    """

    def __init__(self, prof, packs, runtime, say, batch_size, time_limit, memory_limit,
                 isolate):
        self.prof, self.packs, self.runtime, self.say = prof, packs, runtime, say
        self.iface, self.inp = prof["interface"], prof["input"]
        self.n_classes = int(prof["classes"]["count"])
        self.batch_size, self.time_limit = batch_size, time_limit
        self.memory_limit, self.isolate = memory_limit, isolate
        self.workdir = tempfile.mkdtemp(prefix="leafsub-eval-")
        self.child = None
        self.root = None
        self.phase_files = []
        self.result = {
            "passed": False, "profile": prof["name"], "profile_title": prof.get("title"),
            "assumptions": prof.get("assumptions", []),
            "data": [os.path.abspath(p.path) for p in packs] if len(packs) > 1
            else os.path.abspath(packs[0].path),
            "n_images": int(sum(p.n for p in packs)),
            "class_names": prof["classes"].get("names"), "runtime": runtime.label,
            "input": {"kind": prof["input"].get("kind", "image"),
                      "shape": list(prof["input"]["shape"]), "dtype": prof["input"]["dtype"]},
            "metrics": None, "checks": [],
            "timing": {"load_s": None, "predict_s": None, "images_per_s": None},
            "predictions": None, "labels": None,
        }
        self.checks = self.result["checks"]
        self.checks.extend(_class_name_checks(packs, prof))
        self.started = time.monotonic()

    # ------------------------------------------------------------------ the steps

    def run(self, submission, detective=True, variants=True, stated=(None, None)):
        from .runner import ChildStopped

        self.extract(submission)
        self.write_images()
        self.start_child()
        self.load()
        labels_by_phase, raw_first = self.main_pass()
        timing, started = self.result["timing"], time.monotonic()
        try:
            if variants:
                _variant_checks(self.predict, self.phase_files[0], raw_first, self.packs[0].n,
                                self.batch_size, dict(self.inp, framework=self.prof.get(
                                    "framework", "tensorflow")), self.workdir, self.checks,
                                self.iface["method"])
            manifest, probe = _read_manifest(self.root)
            if manifest is not None:
                _golden_check(self.predict, manifest, probe, self.workdir, self.checks, self.prof)
            timing["checks_s"] = round(time.monotonic() - started, 3)
            if detective and not _is_image(self.prof):
                self.checks.append(C.not_an_image("mismatch detective", self.prof))
            elif detective and self.result["predictions"] is not None:
                started = time.monotonic()
                goldens = any(c["name"] == "goldens" and c["status"] == "pass"
                              for c in self.checks)
                entry, check = _run_detective(self, np.asarray(labels_by_phase[0]), manifest,
                                              goldens, stated)
                self.result["detective"] = entry
                self.checks.append(_strip(check))
                timing["detective_s"] = round(time.monotonic() - started, 3)
        except ChildStopped as err:
            self.checks.append(self.stopped_check("checks", err, "running the checks"))
        self.containment_checks()

    def extract(self, submission):
        """Unzip safely and read the structure; stop when there is nothing the child could run."""
        from .extract import extract_submission
        from .structure import check_structure

        extracted = extract_submission(submission, os.path.join(self.workdir, "submission"))
        self.checks.extend(extracted.checks)
        if not extracted.ok:
            raise _EndReplay()
        self.root = extracted.root
        structure = check_structure(self.root, self.prof)
        self.checks.extend(structure)
        module = self.iface["module"]
        unrunnable = {"%s.py: syntax" % module, "%s.py: class" % module}
        if not os.path.isfile(os.path.join(self.root, module + ".py")) or any(
                c["status"] == "fail" and c["name"] in unrunnable for c in structure):
            raise _EndReplay()

    def write_images(self):
        """Each pack once, at the profile's size, as the uint8 .npy the child memory-maps."""
        from ..datasets import write_npy

        if not _is_image(self.prof):
            return _write_samples(self)
        h, w = int(self.inp["shape"][0]), int(self.inp["shape"][1])
        data_dir = os.path.join(self.workdir, "data")
        os.makedirs(data_dir)
        for i, pack in enumerate(self.packs):
            path = os.path.join(data_dir, "phase%d.npy" % i)
            name = _phase_name(pack.path, i)
            write_npy(pack, path, size=(h, w),
                      progress=self.say.bar("preparing %s" % name) if pack.n >= 5000 else None)
            self.phase_files.append(path)
            for note in pack.notes:
                self.checks.append(C.check("data: %s" % name, "warn" if "resiz" in note.lower()
                                           else "pass", note))
        self.say.say("  %d images at %dx%d prepared for the child" % (
            self.result["n_images"], h, w))

    def start_child(self):
        from .runner import Child

        request = {"module": self.iface["module"], "class_name": self.iface["class_name"],
                   "constructor": self.iface["constructor"], "method": self.iface["method"],
                   "range": list(self.inp.get("range") or (0, 255)),
                   "channel_order": self.inp.get("channel_order", "RGB"),
                   "kind": self.inp.get("kind", "image"),
                   "framework": self.prof.get("framework", "tensorflow"),
                   "layout": self.inp.get("layout", "NHWC")}
        if self.iface.get("working_dir") == "scratch":
            request["cwd"] = os.path.join(self.workdir, "scratch")
            os.makedirs(request["cwd"])
        self.child = Child(self.runtime.python, self.workdir, self.root, request,
                           self.time_limit, self.memory_limit, isolate=self.isolate,
                           deny=[pack.path for pack in self.packs])
        iso = self.child.isolation
        self.checks.append(C.check("isolation", "warn" if iso.warnings else "pass",
                                   "; ".join(iso.warnings) if iso.warnings else iso.summary))
        self.result["isolation"] = iso.summary
        self.child.start()

    def load(self):
        from .runner import ChildStopped

        iface = self.iface
        self.say.say("  loading the submission in the child (%s)..." % (
            "%s(path)" % iface["class_name"] if iface["constructor"] == "path"
            else iface["class_name"] + "()"))
        try:
            reply = self.child.call({"op": "load"})
        except ChildStopped as err:
            self.checks.append(self.stopped_check("loads", err, "loading"))
            raise _EndReplay()
        if not reply.get("ok"):
            self.checks.append(C.check("loads", "fail", self.failure_detail(reply)))
            raise _EndReplay()
        versions = reply.get("versions") or {}
        timing = self.result["timing"]
        self.result["child"] = versions
        timing["load_s"] = round(float(reply["load_s"]), 3)
        timing["startup_s"] = round(time.monotonic() - self.started, 3)
        timing["framework_s"] = round(float(reply.get("framework_s", 0)), 3)
        framework = ("torch %s" % versions["torch"]) if versions.get("torch") else (
            "TensorFlow %s" % versions.get("tensorflow"))
        self.checks.append(C.check("loads", "pass", "%s loaded in %.1f s (Python %s, "
                                   "%s%s)" % (iface["class_name"], reply["load_s"],
                                              versions.get("python"), framework,
                                              ", Keras %s" % versions["keras"]
                                              if versions.get("keras") else "")))

    def main_pass(self):
        """Every image of every phase, as the platform feeds them; score what comes back.

        Returns ``(labels per phase, raw outputs of phase 0)``.
        """
        from .runner import ChildStopped

        method = self.iface["method"]
        phases, all_labels, all_preds = [], [], []
        predict_s, types, mutated, raw_first = 0.0, set(), 0, None
        predicts = C.check("predicts", "pass", "")  # its detail is known after the last phase
        for i, (pack, images) in enumerate(zip(self.packs, self.phase_files)):
            name = _phase_name(pack.path, i)
            try:
                reply, outputs = self.predict(
                    images, os.path.join(self.workdir, "out-phase%d.npy" % i),
                    label="predicting" if len(self.packs) == 1 else name)
            except ChildStopped as err:
                self.checks.append(self.stopped_check("predicts", err, "predicting %s" % name))
                raise _EndReplay()
            if not reply.get("ok"):
                output_problem = reply.get("kind") == "output"
                self.checks.append(C.check("output: shape" if output_problem else "predicts",
                                           "fail", self.failure_detail(
                                               reply, traceback=not output_problem)))
                raise _EndReplay()
            predict_s += float(reply["predict_s"])
            types.update(reply["types"])
            mutated += int(reply.get("mutated_batches", 0))
            if i == 0:
                raw_first = outputs
                self.checks.append(predicts)
            labels, out_checks = C.interpret_outputs(outputs, pack.n, self.prof, method)
            if i == 0 or any(c["status"] != "pass" for c in out_checks):
                self.checks.extend(out_checks)
            phase = {"name": name, "data": os.path.abspath(pack.path), "n_images": pack.n,
                     "predict_s": round(float(reply["predict_s"]), 3)}
            if labels is not None and labels.size and labels.min() >= 0 \
                    and labels.max() < self.n_classes:
                phase["metrics"] = M.classification_metrics(pack.labels, labels, self.n_classes,
                                                            self.prof["classes"].get("names"))
                all_labels.append(pack.labels)
                all_preds.append(labels)
            phases.append(phase)
        n = self.result["n_images"]
        predicts["detail"] = "%d images in %d batches of up to %d, %.1f s in %s()" % (
            n, sum(-(-p.n // self.batch_size) for p in self.packs), self.batch_size, predict_s,
            method)
        timing = self.result["timing"]
        timing["predict_s"] = round(predict_s, 3)
        timing["images_per_s"] = round(n / predict_s, 1) if predict_s > 0 else None
        self.checks.append(C.output_container(sorted(types), self.prof, method))
        if self.inp["container"] == "numpy":
            self.checks.append(C.check(
                "input not mutated", "warn" if mutated else "pass",
                "%s() modified the input array in place in %d batches; copy it first (keras' "
                "preprocess_input mutates numpy arrays)." % (method, mutated) if mutated else
                "%s() left every input batch unchanged" % method))
        elif self.prof.get("framework") == "torch":  # a torch.Tensor: in-place ops are idiomatic
            self.checks.append(C.check(
                "input not mutated", "warn" if mutated else "pass",
                "%s() modified the input tensor in place in %d batches (an in-place op such as "
                "X.div_(255) or X -= mean); write X = X / 255 instead." % (method, mutated)
                if mutated else "%s() left every input batch unchanged" % method))
        if len(all_preds) == len(self.packs):
            self.score(np.concatenate(all_labels), np.concatenate(all_preds))
        if len(self.packs) > 1:
            self.result["phases"] = phases
        return all_preds, raw_first

    def score(self, y_true, y_pred):
        metrics = M.classification_metrics(y_true, y_pred, self.n_classes,
                                           self.prof["classes"].get("names"))
        low, high = M.bootstrap_ci(y_true, y_pred, "accuracy")
        metrics["accuracy_ci"] = {"low": low, "high": high, "level": 0.95}
        metrics["n"] = int(y_true.size)
        self.result.update(metrics=metrics, predictions=y_pred.tolist(), labels=y_true.tolist())

    def containment_checks(self):
        """What the submission tried that the replay contained: worth a warning."""
        from .runner import OUTPUT_WARN

        child = self.child
        if child.network_attempts:
            more = len(child.network_attempts) - 1
            self.checks.append(C.check(
                "network", "warn", "the submission tried %s%s and went on without it; the "
                "platform has no network, so it would get the same error there. Bundle what it "
                "needs in the zip." % (child.network_attempts[0],
                                       " (and %d more)" % more if more else "")))
        self.checks.extend(C.denied_reads(child.denied_reads, self.data_paths()))
        if child.output_bytes > OUTPUT_WARN:
            self.checks.append(C.check(
                "output volume", "warn", "the submission printed %.1f MB to stdout/stderr; the "
                "platform keeps a log of it, which slows the run and may be cut: print less"
                % (child.output_bytes / 2**20)))

    # ------------------------------------------------------------------ helpers

    def predict(self, images, out, indices=None, transform=None, label=None, **override):
        """One ``predict`` command: ``(reply, outputs or None)``; raises ChildStopped."""
        command = {"op": "predict", "images": images, "out": out, "progress": bool(label),
                   "container": self.inp["container"], "dtype": self.inp["dtype"],
                   "batch_size": self.batch_size}
        command.update(override)
        if indices is not None:
            path = out + ".indices.npy"
            np.save(path, np.asarray(indices, dtype=np.int64))
            command["indices"] = path
        if transform:
            command["transform"] = transform
        reply = self.child.call(command, on_progress=self.say.bar(label) if label else None)
        if not reply.get("ok"):
            return reply, None
        return reply, np.load(out, allow_pickle=False)

    def data_paths(self):
        return [os.path.realpath(os.fspath(p.path)) for p in self.packs]

    def failure_detail(self, reply, traceback=True):
        """The paragraph for a load/predict failure: the error, the usual fix, the traceback."""
        hint = _explain_failure(reply.get("error", "") + "\n" + reply.get("traceback", ""),
                                reply.get("kind"), self.iface)
        labelled = C.reads_of_data(reply.get("reads") or (), self.data_paths())
        if labelled:  # not a file to put in the zip: the answers
            hint = C.DATA_READ % labelled[0]
        return "%s.%s\n%s" % (reply.get("error", "").rstrip(". "), " " + hint if hint else "",
                              _tail(reply.get("traceback"), 6) if traceback else "")

    def stopped_check(self, name, err, doing):
        """The failed check for a child that a limit stopped, or that died."""
        detail = "the submission %s while %s" % (err.detail, doing)
        if err.reason == "time":
            detail += ("; the whole replay may take %.0f s (--time-limit). A predict() that "
                       "never returns is killed the same way on the platform." % self.time_limit)
        elif err.reason == "memory":
            detail += "; reduce the batch or the model size, or raise --memory-limit."
        elif err.reason == "exited":
            detail += " (sys.exit/os._exit in model.py, or a crash in native code)."
            if self.child.log.strip():
                detail += " Its last output:\n" + _tail(self.child.log)
        return C.check(name, "fail", detail)

    def close(self):
        """Stop the child (whatever state it is in) and record what it left behind."""
        child, self.child = self.child, None
        if child is None:
            return
        child.close()
        if getattr(child, "leftover", None):
            self.checks.append(C.check(
                "processes", "warn", "the submission left %d process%s running after its last "
                "call (%s); the replay killed %s. Do not start background processes: the "
                "platform may wait for them or kill them mid-work."
                % (len(child.leftover), "" if len(child.leftover) == 1 else "es",
                   "; ".join(cmd[:60] for _, cmd in child.leftover[:2]),
                   "it" if len(child.leftover) == 1 else "them")))
        self.result["timing"]["child_peak_rss_mb"] = round(child.peak_rss / 2**20, 1)
        if child.log.strip():
            self.result["child_log_tail"] = _tail(child.log, 40)


def _class_name_checks(packs, prof):
    """A warning when a pack names its classes differently from the profile."""
    names = prof["classes"].get("names")
    out = []
    for i, pack in enumerate(packs):
        if not names or not pack.class_names or list(pack.class_names) == list(names):
            continue
        shown = ", ".join(map(str, pack.class_names[:4])) + (", ..." if len(pack.class_names) > 4
                                                             else "")
        out.append(C.check("data: classes", "warn",
                           "%s names its classes %s, the %s profile %s: label k of the data is "
                           "scored as the profile's class k. Check that the order is the same "
                           "(image_dataset_from_directory sorts folder names)." % (
                               _phase_name(pack.path, i), shown, prof["name"],
                               ", ".join(names[:4]) + (", ..." if len(names) > 4 else ""))))
    return out


def _strip(check):
    return {k: check[k] for k in ("name", "status", "detail")}


def _variant_checks(predict, images, main, n, batch_size, inp, workdir, checks, method):
    """Same images, other plausible harnesses: the answers must not change."""
    k = min(n, max(batch_size, VARIANT_IMAGES))
    idx = np.arange(k)
    reference = main[:k]
    reply, again = predict(images, os.path.join(workdir, "v-again.npy"), indices=idx)
    if not reply.get("ok") or again is None:
        checks.append(C.check("deterministic", "fail", "the second call on the same images "
                              "failed: %s" % reply.get("error")))
        return
    checks.append(C.compare_labels("deterministic", reference, again,
                                   "the same %d images twice" % k, severity="fail",
                                   hint="predict() must give the same answer for the same "
                                        "image: no dropout at inference, no random TTA, no state "
                                        "kept between calls"))
    other_container = "numpy" if inp["container"] == "tensor" else "tensor"
    other_dtype = C.other_dtype(inp)
    small = np.arange(min(n, VARIANT_IMAGES))
    variants = [
        ("variant: %s input" % ("numpy" if other_container == "numpy" else
                                "torch.Tensor" if inp.get("framework") == "torch" else "tf.Tensor"),
         idx, {"container": other_container}),
        ("variant: %s input" % other_dtype, idx, {"dtype": other_dtype}),
        ("variant: batch size 1", small[:8], {"batch_size": 1}),
        ("variant: batch size 7", small, {"batch_size": 7}),
    ]
    for name, ids, override in variants:
        reply, out = predict(images, os.path.join(workdir, "v-%d.npy" % len(checks)),
                             indices=ids, **override)
        if not reply.get("ok") or out is None:
            checks.append(C.check(name, "warn", "predict() failed with this harness: %s. The "
                                  "platform's harness is assumed to be the profile's; another "
                                  "would break it." % reply.get("error")))
            continue
        checks.append(C.compare_labels(name, reference[:len(ids)], out,
                                       "%d images" % len(ids), severity="warn",
                                       hint="the answer depends on how the batch is given; "
                                            "convert X with tf.cast(X, tf.float32) first"))


def _golden_check(predict, manifest, probe, workdir, checks, prof):
    if manifest.get("unreadable"):
        checks.append(C.check("goldens", "warn", "%s is unreadable (%s): the goldens cannot be "
                              "checked" % (MANIFEST_NAME, manifest["unreadable"])))
        return
    if probe is None:
        checks.append(C.check("goldens", "warn", "%s names no readable probe file: the goldens "
                              "cannot be checked" % MANIFEST_NAME))
        return
    images, labels = probe
    if manifest.get("profile") and manifest["profile"] != prof["name"]:
        checks.append(C.check("profile", "warn", "the zip was built for the %s profile and is "
                              "evaluated with %s" % (manifest["profile"], prof["name"])))
    if not _is_image(prof):
        if tuple(images.shape[1:]) != tuple(prof["input"]["shape"]):
            checks.append(C.check("goldens", "warn", "the probe samples have shape %s, the "
                                  "profile feeds %s: rebuild for this profile" % (
                                      list(images.shape[1:]), list(prof["input"]["shape"]))))
            return
    elif images.ndim != 4 or tuple(images.shape[1:3]) != tuple(prof["input"]["shape"][:2]):
        h, w = prof["input"]["shape"][:2]
        checks.append(C.check("goldens", "warn", "the probe images are %s, not %dx%d: rebuild for "
                              "this profile" % (list(images.shape[1:3]), h, w)))
        return
    path = os.path.join(workdir, "probe-images.npy")
    np.save(path, images.astype(np.float32))
    reply, out = predict(path, os.path.join(workdir, "probe-out.npy"))
    if not reply.get("ok") or out is None:
        checks.append(C.check("goldens", "fail", "predict() failed on the build's probe batch: %s"
                              % reply.get("error")))
        return
    checks.append(C.compare_labels("goldens", labels, out,
                                   "the build's %d probe images" % len(labels), severity="fail",
                                   hint="this runtime does not reproduce what leafsub build "
                                        "checked: a TensorFlow version difference or an edited "
                                        "model.py"))


def _run_detective(replay, base, manifest, goldens, stated):
    """The model's evidence first, then (unless it vouches) the sequential candidates.

    Returns ``(the JSON detective entry, the check)``.
    """
    expected, expected_from = stated
    reply = replay.child.call({"op": "evidence"})
    evidence = reply.get("evidence") if reply.get("ok") else {
        "error": reply.get("error", "the child could not read them")}
    vouch = D.vouched(manifest, goldens, evidence, expected)
    results = None
    if not vouch:
        images, labels = replay.phase_files[0], replay.packs[0].labels
        calls = [0]

        def predict(transform, indices):
            calls[0] += 1
            out_path = os.path.join(replay.workdir, "d%d.npy" % calls[0])
            reply, out = replay.predict(images, out_path, indices=indices, transform=transform)
            return _as_labels(out) if reply.get("ok") else None

        results = D.run(predict, labels, base, evidence=evidence, expected=expected,
                        say=replay.say.say, table=D.candidates_for(replay.prof))
    check = D.finding_check(results, evidence=evidence, expected=expected,
                            expected_from=expected_from, vouch=vouch)
    return D.entry(results, check, evidence, expected, expected_from, vouch), check


def _as_labels(out):
    if out is None:
        return None
    out = np.asarray(out)
    if out.dtype.kind in "USO":
        return None
    if out.ndim == 2 and out.shape[1] > 1:
        return np.argmax(out, axis=1)
    out = out.reshape(len(out), -1)[:, 0] if out.ndim > 1 else out
    if out.dtype.kind == "f" and not np.all(np.isfinite(out)):
        return None
    return out.astype(np.int64)


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
        pack = replay.packs[0] if len(replay.packs) == 1 and _is_image(replay.prof) else None
        h, w = int(replay.inp["shape"][0]), int(replay.inp["shape"][1])
        images = (lambda idx: pack.read(idx, size=(h, w))) if pack is not None else None
        write_report(result, html_path, images=images)
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


# --------------------------------------------------------------------------- terminal

_MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


def format_text(d, width=80, color=False, verbose=False):
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
        lines.append("%s  %-*s %s" % (style(_MARK[c["status"]], c["status"]), name_w,
                                      c["name"][:name_w], body[0]))
        for more in body[1:]:
            lines.append(indent + more)
        if c["status"] != "pass" and "\n" in c["detail"]:
            for extra in c["detail"].split("\n")[1:][:8]:
                lines.append(indent + extra[:width - len(indent)])
    m = d.get("metrics")
    lines.append("")
    if m:
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


@click.command("evaluate")
@click.argument("submission", type=click.Path(dir_okay=True))
@click.option("--data", "data", multiple=True, required=True, metavar="DATA",
              help="Labelled images: a folder of class sub-folders, an .npz or an .h5. Repeat "
                   "for several phases.")
@click.option("--profile", default=None, help="Challenge profile: a built-in name (an2dl-2022 "
              "by default) or a JSON file.")
@click.option("--runtime", default=None, metavar="tensorflow==X.Y.Z",
              help="Run the submission under this TensorFlow (a cached virtual environment, "
                   "created on first use); torch==X.Y.Z for a torch profile.")
@click.option("--python", "python", default=None, type=click.Path(),
              help="Run the submission with this Python interpreter (it needs numpy and "
                   "tensorflow, or torch for a torch profile).")
@click.option("--batch-size", type=int, default=None, help="Images per predict() call "
              "(default: the profile's).")
@click.option("--time-limit", type=float, default=None, help="Seconds for the whole replay "
              "(default: the profile's).")
@click.option("--memory-limit", type=int, default=None, help="MB of memory for the submission's "
              "process (default: the profile's).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the result as JSON.")
@click.option("--html", "html_path", default=None, type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML report.")
@click.option("--no-detective", is_flag=True, help="Skip the mismatch detective.")
@click.option("--expect-preprocess", default=None, metavar="MODE",
              help="The preprocessing training used (caffe, tf, torch, rescale, none): the "
                   "mismatch detective confirms or contradicts it.")
@click.option("--card", "card", default=None, type=click.Path(), metavar="RUN_DIR",
              help="A run dir from 'leafsub export': its model card states the training "
                   "preprocessing (for a hand-written zip).")
@click.option("--no-isolation", is_flag=True, help="Run without the private network and the "
              "read and write confinement (reported as a warning).")
@click.option("--keep", is_flag=True, help="Keep the temporary folder, for debugging.")
@click.option("-v", "--verbose", is_flag=True, help="List every check, passed ones included.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def evaluate_command(submission, data, profile, runtime, python, batch_size, time_limit,
                     memory_limit, json_path, html_path, no_detective, expect_preprocess, card,
                     no_isolation, keep, verbose, quiet):
    """Replay the platform's protocol on SUBMISSION (a zip) and score it.

    Extracts the zip safely, checks its layout, runs it in a separate child
    process as the platform does (input container, dtype, batch size; time and
    memory limits; no network), scores it, and looks for preprocessing
    mismatches. Exit 0: every check passed; 1: a check failed; 2: bad usage or
    unreadable input. Every check and message: docs/verdicts.md.

    \b
    Examples:
      leafsub evaluate submission.zip --data test.npz --html report.html
      leafsub evaluate submission.zip --data val/ --profile an2dl-2024 --json r.json
      leafsub evaluate submission.zip --data test.npz --runtime tensorflow==2.15.1
    """
    result = evaluate(submission, list(data), profile=profile, runtime=runtime, python=python,
                      batch_size=batch_size, time_limit=time_limit, memory_limit=memory_limit,
                      json_path=json_path, html_path=html_path, progress=not quiet,
                      isolate=not no_isolation, detective=not no_detective, keep_workdir=keep,
                      expect_preprocess=expect_preprocess, card=card)
    from .compare import _use_color  # one NO_COLOR / terminal rule for every command

    for line in format_text(result.to_dict(), color=_use_color(), verbose=verbose):
        click.echo(line)
    for path, what in ((json_path, "JSON"), (html_path, "report")):
        if path:
            click.echo("%s written to %s" % (what, path))
    if keep:
        click.echo("temporary folder kept: %s" % result.to_dict().get("workdir"))
    sys.exit(result.exit_code)


# --------------------------------------------------------------------------- non-image inputs

def _is_image(prof):
    from ..profiles import is_image

    return is_image(prof)


def _open_data(path, prof):
    """An image pack, or, for a profile whose input is not an image, a tensor pack of its shape."""
    from ..datasets import open_pack, open_tensor_pack

    if _is_image(prof):
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


def _write_samples(replay):
    """Each tensor pack once, as stored, as the .npy the child reads (no resize, no uint8)."""
    from ..datasets import write_tensor_npy

    data_dir = os.path.join(replay.workdir, "data")
    os.makedirs(data_dir)
    for i, pack in enumerate(replay.packs):
        path = os.path.join(data_dir, "phase%d.npy" % i)
        name = _phase_name(pack.path, i)
        write_tensor_npy(pack, path, progress=replay.say.bar("preparing %s" % name)
                         if pack.n >= 5000 else None)
        replay.phase_files.append(path)
        for note in pack.notes:
            replay.checks.append(C.check("data: %s" % name, "pass", note))
    replay.checks.extend(C.tensor_data_checks(replay.packs, replay.prof))
    replay.say.say("  %d samples of shape %s prepared for the child" % (
        replay.result["n_images"], list(replay.inp["shape"])))


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

