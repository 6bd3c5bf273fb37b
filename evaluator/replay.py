"""One replay session: the child that runs the submission, and what it is asked.

A :class:`Replay` holds the state one evaluation shares: the temporary folder, the
extracted submission, the images written for the child (``phase*.npy``), the child
process (``runner.Child``), the check records and the result dict. Its steps:

  ``extract``      unzip safely (``extract.py``) and read the structure (``structure.py``);
  ``write_images`` each pack once, at the profile's size, as the .npy the child reads;
  ``start_child``  the child harness under the limits and the isolation;
  ``load``         the submission's class, in the child;
  ``main_pass``    every image of every phase, as the platform feeds them; scored;
  ``predict``      one ``predict`` command (the checks' sequence asks for more of them);
  ``close``        stop the child and record what it left behind.

Which checks follow the main pass, and in which order, is ``checklist.py``'s business.
A step that leaves nothing to check further records its failed check and raises
:class:`EndReplay`. The parent never imports TensorFlow and never runs the submission's
code: the child does.
"""

import os
import tempfile
import time

import numpy as np

from ..profiles import is_image, is_values
from ..protocol import Protocol
from . import checks as C
from . import metrics as M
from . import values as V


def phase_name(path, i):
    base = os.path.basename(os.path.normpath(os.fspath(path)))
    return base or "phase %d" % (i + 1)


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


class EndReplay(Exception):
    """The replay cannot go on; the checks recorded so far say why."""


class Replay:
    """One evaluation's steps and the state they share (the child, the checks, the result).

    ``checklist.run_checks`` calls them in order: extract -> read the structure -> write
    the images -> start the child -> load -> the main pass, then the checks that use
    ``predict``. A step that leaves nothing to check further records its failed check
    and raises :class:`EndReplay`.
    """

    def __init__(self, prof, packs, runtime, say, batch_size, time_limit, memory_limit,
                 isolate, started=None):
        self.prof, self.packs, self.runtime, self.say = prof, packs, runtime, say
        self.iface, self.inp = prof["interface"], prof["input"]
        self.protocol = Protocol.from_profile(prof)
        self.n_classes = int((prof.get("classes") or {}).get("count", 0))
        self.batch_size, self.time_limit = batch_size, time_limit
        self.memory_limit, self.isolate = memory_limit, isolate
        self.workdir = tempfile.mkdtemp(prefix="leafsub-eval-")
        self.child = None
        self.root = None
        self.phase_files = []
        self.arg_files = {}   # phase file -> the .npy of each extra predict argument
        self.result = {
            "passed": False, "profile": prof["name"], "profile_title": prof.get("title"),
            "assumptions": prof.get("assumptions", []),
            "data": [os.path.abspath(p.path) for p in packs] if len(packs) > 1
            else os.path.abspath(packs[0].path),
            "n_images": int(sum(p.n for p in packs)),
            "class_names": (prof.get("classes") or {}).get("names"), "runtime": runtime.label,
            "input": {"kind": self.protocol.input.kind,
                      "shape": list(prof["input"]["shape"]), "dtype": prof["input"]["dtype"]},
            "metrics": None, "checks": [],
            "timing": {"load_s": None, "predict_s": None, "images_per_s": None},
            "predictions": None, "labels": None,
        }
        self.checks = self.result["checks"]
        # When the evaluation began (the data opened, the runtime chosen before this):
        # ``startup_s`` is everything up to the submission being loaded.
        self.started = time.monotonic() if started is None else started

    # ------------------------------------------------------------------ the steps

    def extract(self, submission):
        """Unzip safely and read the structure; stop when there is nothing the child could run."""
        from .extract import extract_submission
        from .structure import check_structure

        extracted = extract_submission(submission, os.path.join(self.workdir, "submission"))
        self.checks.extend(extracted.checks)
        if not extracted.ok:
            raise EndReplay()
        self.root = extracted.root
        structure = check_structure(self.root, self.prof)
        self.checks.extend(structure)
        module = self.iface["module"]
        unrunnable = {"%s.py: syntax" % module, "%s.py: class" % module}
        if not os.path.isfile(os.path.join(self.root, module + ".py")) or any(
                c["status"] == "fail" and c["name"] in unrunnable for c in structure):
            raise EndReplay()

    def write_images(self):
        """Each pack once, at the profile's size, as the uint8 .npy the child memory-maps."""
        from ..datasets import write_npy

        if not is_image(self.prof):
            return self.write_samples()
        h, w = int(self.inp["shape"][0]), int(self.inp["shape"][1])
        data_dir = os.path.join(self.workdir, "data")
        os.makedirs(data_dir)
        for i, pack in enumerate(self.packs):
            path = os.path.join(data_dir, "phase%d.npy" % i)
            name = phase_name(pack.path, i)
            write_npy(pack, path, size=(h, w),
                      progress=self.say.bar("preparing %s" % name) if pack.n >= 5000 else None)
            self.phase_files.append(path)
            for note in pack.notes:
                self.checks.append(C.check("data: %s" % name, "warn" if "resiz" in note.lower()
                                           else "pass", note))
        self.say.say("  %d images at %dx%d prepared for the child" % (
            self.result["n_images"], h, w))

    def write_samples(self):
        """Each tensor pack once, as stored, as the .npy the child reads (no resize, no uint8)."""
        from ..datasets import write_tensor_npy

        data_dir = os.path.join(self.workdir, "data")
        os.makedirs(data_dir)
        for i, pack in enumerate(self.packs):
            path = os.path.join(data_dir, "phase%d.npy" % i)
            name = phase_name(pack.path, i)
            write_tensor_npy(pack, path, progress=self.say.bar("preparing %s" % name)
                             if pack.n >= 5000 else None)
            self.phase_files.append(path)
            for k, arg in enumerate(self.protocol.interface.args[1:]):  # categories, ...
                self.arg_files.setdefault(path, []).append(os.path.join(
                    data_dir, "phase%d-arg%d.npy" % (i, k)))
                np.save(self.arg_files[path][-1], pack.extras[arg], allow_pickle=False)
            for note in pack.notes:
                self.checks.append(C.check("data: %s" % name, "pass", note))
        self.say.say("  %d samples of shape %s prepared for the child" % (
            self.result["n_images"], list(self.inp["shape"])))

    def start_child(self):
        from .runner import Child

        request = self.protocol.child_request()
        scratch = []
        if self.protocol.interface.working_dir == "scratch":
            request["cwd"] = os.path.join(self.workdir, "scratch")
            os.makedirs(request["cwd"])
            scratch.append(request["cwd"])
        self.child = Child(self.runtime.python, self.workdir, self.root, request,
                           self.time_limit, self.memory_limit, isolate=self.isolate,
                           deny=[pack.path for pack in self.packs], writable=scratch)
        iso = self.child.isolation
        self.checks.append(C.check("isolation", "warn" if iso.warnings else "pass",
                                   "; ".join(iso.warnings) if iso.warnings else iso.summary))
        self.result["isolation"] = iso.summary
        self.child.start()

    def load(self):
        from .runner import ChildStopped

        iface = self.iface
        self.say.say("  loading the submission in the child (%s)..."
                     % self.protocol.interface.call_text())
        try:
            reply = self.child.call({"op": "load"})
        except ChildStopped as err:
            self.checks.append(self.stopped_check("loads", err, "loading"))
            raise EndReplay()
        if not reply.get("ok"):
            self.checks.append(C.check("loads", "fail", self.failure_detail(reply)))
            raise EndReplay()
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
        if is_values(self.prof):  # a forecast: values.py checks and scores it
            return V.main_pass(self)
        method = self.iface["method"]
        phases, all_labels, all_preds, totals = [], [], [], {}
        for i, name, pack, reply, outputs in self.phase_outputs(totals):
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
        totals["predicts"]["detail"] = "%d images in %d batches of up to %d, %.1f s in %s()" % (
            self.result["n_images"], sum(-(-p.n // self.batch_size) for p in self.packs),
            self.batch_size, totals["predict_s"], method)
        self.pass_checks(totals)
        if len(all_preds) == len(self.packs):
            self.score(np.concatenate(all_labels), np.concatenate(all_preds))
        if len(self.packs) > 1:
            self.result["phases"] = phases
        return all_preds, totals["raw_first"]

    def phase_outputs(self, totals):
        """Each phase predicted as the platform calls it, for the labels' and the values'
        main pass: yields ``(i, name, pack, reply, outputs)``. A failure is recorded as its
        check and ends the replay. ``totals`` (a dict) gathers what :meth:`pass_checks`
        judges afterwards: predict_s, types, mutated, the last reply, phase 0's raw outputs
        and the ``predicts`` check (recorded at phase 0; its detail is the caller's)."""
        from .runner import ChildStopped

        totals.update(predict_s=0.0, types=set(), mutated=0, raw_first=None, reply={},
                      predicts=C.check("predicts", "pass", ""))
        for i, (pack, images) in enumerate(zip(self.packs, self.phase_files)):
            name = phase_name(pack.path, i)
            try:
                reply, outputs = self.predict(
                    images, os.path.join(self.workdir, "out-phase%d.npy" % i),
                    label="predicting" if len(self.packs) == 1 else name)
            except ChildStopped as err:
                self.checks.append(self.stopped_check("predicts", err, "predicting %s" % name))
                raise EndReplay()
            if not reply.get("ok"):
                output_problem = reply.get("kind") == "output"
                self.checks.append(C.check("output: shape" if output_problem else "predicts",
                                           "fail", self.failure_detail(
                                               reply, traceback=not output_problem)))
                raise EndReplay()
            totals["predict_s"] += float(reply["predict_s"])
            totals["types"].update(reply["types"])
            totals["mutated"] += int(reply.get("mutated_batches", 0))
            totals["reply"] = reply
            if i == 0:
                totals["raw_first"] = outputs
                self.checks.append(totals["predicts"])
            yield i, name, pack, reply, outputs

    def pass_checks(self, totals):
        """After the main pass (labels or values): timing, the output container, the models
        predict never called, and whether predict modified its input."""
        method, predict_s, mutated = self.iface["method"], totals["predict_s"], totals["mutated"]
        n = self.result["n_images"]
        timing = self.result["timing"]
        timing["predict_s"] = round(predict_s, 3)
        timing["images_per_s"] = round(n / predict_s, 1) if predict_s > 0 else None
        self.checks.append(C.output_container(sorted(totals["types"]), self.prof, method))
        self.checks.extend(C.unused_models(totals["reply"].get("loaded"),
                                           (self.prof.get("limits") or {}).get("zip_mb"), method))
        if self.inp["container"] == "numpy":
            self.checks.append(C.check(
                "input not mutated", "warn" if mutated else "pass",
                "%s() modified the input array in place in %d batches; copy it first (keras' "
                "preprocess_input mutates numpy arrays)." % (method, mutated) if mutated else
                "%s() left every input batch unchanged" % method))
        elif self.protocol.framework == "torch":  # a torch.Tensor: in-place ops are idiomatic
            self.checks.append(C.check(
                "input not mutated", "warn" if mutated else "pass",
                "%s() modified the input tensor in place in %d batches (an in-place op such as "
                "X.div_(255) or X -= mean); write X = X / 255 instead." % (method, mutated)
                if mutated else "%s() left every input batch unchanged" % method))

    def score(self, y_true, y_pred):
        metrics = M.classification_metrics(y_true, y_pred, self.n_classes,
                                           self.prof["classes"].get("names"))
        low, high = M.bootstrap_ci(y_true, y_pred, "accuracy")
        metrics["accuracy_ci"] = {"low": low, "high": high, "level": 0.95}
        metrics["n"] = int(y_true.size)
        self.result.update(metrics=metrics, predictions=y_pred.tolist(), labels=y_true.tolist())

    # ------------------------------------------------------------------ helpers

    def predict(self, images, out, indices=None, transform=None, label=None, **override):
        """One ``predict`` command: ``(reply, outputs or None)``; raises ChildStopped.

        ``out`` names the predictions file; the child saves it in its own folder
        (``Child.outdir``) and the parent reads it back as untrusted (``untrusted.py``).
        """
        from . import untrusted

        name = os.path.basename(out)
        out = self.child.output_path(name)
        command = {"op": "predict", "images": images, "out": out, "progress": bool(label),
                   "container": self.inp["container"], "dtype": self.inp["dtype"],
                   "batch_size": self.batch_size}
        command.update(override)
        if images in self.arg_files:
            command["args"] = self.arg_files[images]
        if indices is not None:
            path = os.path.join(self.workdir, name + ".indices.npy")  # the parent's folder
            untrusted.save_npy(path, np.asarray(indices, dtype=np.int64))
            command["indices"] = path
        if transform:
            command["transform"] = transform
        reply = self.child.call(command, on_progress=self.say.bar(label) if label else None)
        if not reply.get("ok"):
            return reply, None
        return reply, self.child.read_output(out)

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
