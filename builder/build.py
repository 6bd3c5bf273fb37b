"""``leafsub build``: run dirs -> a checked, deterministic submission zip.

The steps, in order (each failure is one paragraph naming the file and the fix):

1. read the arguments, the profile and every run dir's card (UsageError, exit 2);
2. verify the SavedModel files against the SHA-256 sums of their cards;
3. check the expected zip size against the profile's limit before anything costly
   (CheckFailed, exit 1, with the largest contributors and the remedies);
4. stage exactly the zip's files in a temporary folder beside the output:
   ``model.py`` rendered from submission_template/, ``metadata`` when the profile
   wants it, ``SubmissionModel[i]/``, a user combiner's module;
5. self-check: import the staged model.py in a fresh Python process; every member's
   goldens must be reproduced and the ensemble must equal leafsub's own
   ``runtime.Ensemble``, run in the same child on the same loaded models (CheckFailed
   naming the member and the difference); then add ``leafsub-probe.npz`` (the probe
   batch and the labels predict() must give) and ``leafsub-manifest.json``;
6. write the zip (sorted entries, fixed times and modes, streamed, ZIP64 when
   needed) to a temporary file and rename it into place; check its real size.

A failed build leaves no zip behind, and an existing output is only replaced
with ``force``. This process never imports TensorFlow nor loads a model (its memory
stays flat whatever the ensemble's size): everything that runs a model runs in the
self-check child.

Where each step lives: 1 in configuration.py, whose ``BuildPlan`` (the profile,
the ``Member``s, views, combiner, weights, compression, limit, output) every later
step takes; 2 and 4-6 in staging.py, one function per phase (with render.py,
selfcheck.py and zipwrite.py); 3 in sizelimit.py. This module holds the ``build()``
API, ``BuildResult`` and the order of the steps.
"""


import dataclasses
import os
import shutil
import tempfile
import time

import click

from .. import __version__
from ..card import read_card
from ..errors import LeafsubError, UsageError
from ..jsonfiles import dumps, write_atomic
from ..profiles import load_profile, with_classes
from . import zipwrite
from .configuration import (BuildPlan, check_classes, check_framework, check_inputs,
                            parse_weights, plan_members, resolve_combine, resolve_preprocess,
                            resolve_views, split_list)
from .sizelimit import MB, expected_size, mb
from .staging import (MANIFEST_NAME, METADATA_NAME, PROBE_NAME, BuildLog, stage_check_write,
                      verify)


# --------------------------------------------------------------------------- result


@dataclasses.dataclass
class BuildResult:
    """What a build wrote and checked. ``to_dict()`` is the ``--json`` output."""

    path: str
    sha256: str
    size_bytes: int
    profile: str
    members: list
    files: list
    combine: str
    weights: list
    tta: list
    compression: dict
    checks: list
    selfcheck: dict
    limit_bytes: int
    timing: dict
    notes: list = dataclasses.field(default_factory=list)

    passed = True
    exit_code = 0

    def to_dict(self):
        return {"passed": True, "exit_code": 0, "path": self.path, "sha256": self.sha256,
                "size_bytes": self.size_bytes, "limit_bytes": self.limit_bytes,
                "profile": self.profile, "members": self.members, "files": self.files,
                "combine": self.combine, "weights": self.weights, "tta": self.tta,
                "compression": self.compression, "checks": self.checks,
                "selfcheck": self.selfcheck, "timing": self.timing, "notes": self.notes,
                "versions": {"leafsub": __version__}}


class _Progress:
    def __init__(self, enabled):
        self.enabled = enabled
        self.started = time.time()

    def __call__(self, message):
        if self.enabled:
            click.echo("build: %s" % message, err=True)


# --------------------------------------------------------------------------- build


def build(models, weights=None, combine=None, tta=None, profile=None, output="submission.zip",
          json_path=None, force=False, compression="auto", preprocess=None, progress=True,
          workers=None, classes=None):
    """Build a submission zip from exported run dirs, checked before it is written.

    Args:
      models: run dirs written by ``leafsub.export`` (a list, or "a,b,c").
      weights: one number per model (normalised); implies ``combine="weighted"``.
        Also accepted by "geometric", "vote" and a user combiner.
      combine: "mean" (default), "weighted", "geometric", "vote", or
        "module:function" for your own combiner: a function
        ``f(probabilities, weights) -> scores`` where ``probabilities`` is a list
        with one ``[N, C]`` array per model and ``weights`` the normalised
        weights. The module must be a single .py file in the current folder (or
        on sys.path); it is copied next to model.py and must import only the
        standard library, numpy and tensorflow.
      tta: view names (identity, hflip, vflip, rot90, rot180, rot270,
        crop_center, crop_tl, crop_tr, crop_bl, crop_br); default identity.
      profile: a built-in profile name or a profile JSON path (default an2dl-2022).
      output: the zip to write.
      json_path: also write the result (or the failure) as JSON there.
      force: replace an existing ``output``.
      compression: "auto" (deflate what shrinks: small files, and large ones when a
        sample saves >= 12 %), "deflate" or "store".
      preprocess: per model, a mode (caffe, tf, torch, rescale, none), an
        architecture preset (resnet50, ...) or None/"card" to keep the card's.
      progress: print progress messages on stderr.
      workers: compression threads (default: all CPUs).
      classes: the class count, for a generic profile (its ``classes.from_models``);
        default: the models' own count.

    Returns:
      BuildResult (``.path``, ``.sha256``, ``.size_bytes``, ``.members``, ``.checks``,
      ``.to_dict()``).

    Raises:
      UsageError (exit 2) for bad arguments or unreadable run dirs; CheckFailed
      (exit 1) when the self-check or the size limit fails. No zip is written then.

    Example:
      >>> leafsub.build(["runs/resnet", "runs/effnet"], tta=["identity", "hflip"],
      ...               profile="an2dl-2022", output="submission.zip")
    """
    checks = []
    try:
        return _build(models, weights, combine, tta, profile, output, json_path, force,
                      compression, preprocess, progress, workers, checks, classes)
    except LeafsubError as e:
        if json_path:
            write_atomic(json_path, dumps({"passed": False, "exit_code": e.exit_code,
                                           "error": str(e), "checks": checks,
                                           "versions": {"leafsub": __version__}}))
        raise


def _build(models, weights, combine, tta, profile_arg, output, json_path, force, compression,
           preprocess, progress, workers, checks, classes=None):
    log = BuildLog(say=_Progress(progress), checks=checks)
    say, notes = log.say, log.notes

    # 1. arguments, profile, cards -------------------------------------------------------
    shown = [os.fspath(m) for m in (split_list(models) or [])]
    runs = [os.path.abspath(m) for m in shown]
    if not runs:
        raise UsageError("No models given: pass the run dirs written by 'leafsub export', e.g. "
                         "--models runs/resnet,runs/effnet.")
    profile = load_profile(profile_arg)
    if compression not in zipwrite.POLICIES:
        raise UsageError("--compression %r is not one of %s." % (compression,
                                                                 ", ".join(zipwrite.POLICIES)))
    output = os.path.abspath(os.fspath(output or "submission.zip"))
    if os.path.isdir(output):
        raise UsageError("%s: is a folder; -o/--output names the zip file to write, e.g. "
                         "-o submission.zip." % output)
    if os.path.exists(output) and not force:
        raise UsageError("%s: already exists. Pass --force (force=True) to replace it, or choose "
                         "another -o/--output." % output)
    say("profile %s; reading %d run dir%s" % (profile["name"], len(runs),
                                              "" if len(runs) == 1 else "s"))
    cards = [read_card(run) for run in runs]
    check_framework(cards, runs, profile)
    # The self-check runs model.py with this Python: it needs the profile's framework.
    from ..frameworks import require
    require(profile.get("framework", "tensorflow"), "Building a %s submission (profile %s "
            "checks model.py with this Python)" % (profile.get("framework", "tensorflow"),
                                                    profile["name"]))
    if classes is None and profile["classes"].get("from_models"):
        profile = with_classes(profile, len(cards[0]["class_names"]), "the models' class count")
    else:
        profile = with_classes(profile, classes, "--classes")
    check_classes(cards, runs, profile, notes)
    specs = resolve_preprocess(preprocess, cards, runs)
    weights = parse_weights(weights, len(runs))
    # The combiner is imported here only to check it; the self-check child runs it.
    combine_name, _, combine_path = resolve_combine(combine, weights, len(runs), notes)
    views = resolve_views(tta)
    check_inputs(cards, runs, specs, profile, views, checks)
    plan = BuildPlan(profile=profile, members=plan_members(runs, shown, cards, specs, profile),
                     views=views, combine_name=combine_name, combine_path=combine_path,
                     weights=weights, compression=compression,
                     limit=int(profile["limits"]["zip_mb"] * MB), output=output, workers=workers)
    reserved = {plan.module_file, METADATA_NAME, MANIFEST_NAME, PROBE_NAME}
    reserved |= {m.dir for m in plan.members}
    if combine_path and os.path.basename(combine_path) in reserved:
        raise UsageError("--combine %s: the module name %s clashes with a file of the submission; "
                         "rename it." % (combine_name, os.path.basename(combine_path)))

    # 2. files ---------------------------------------------------------------------------
    verify(plan, log)

    # 3. size, before anything costly ------------------------------------------------------
    t = time.time()
    plan.effective, estimate, raw_total = expected_size(plan.members, profile, combine_path,
                                                        compression, plan.limit, notes, checks)
    log.timing["plan_s"] = round(time.time() - t, 3)
    say("expected size about %s of %s allowed (%s of model files, compression %s)" % (
        mb(estimate), mb(plan.limit), mb(raw_total), plan.effective))

    # 4-6. stage, self-check, write ------------------------------------------------------
    out_dir = os.path.dirname(output)
    try:
        os.makedirs(out_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".leafsub-build-", dir=out_dir)
    except OSError as e:
        raise UsageError("%s: cannot write in this folder (%s). Choose another -o/--output."
                         % (out_dir, e.strerror or e)) from None
    try:
        outcome = stage_check_write(plan, staging, log)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _result(plan, outcome, log, json_path)


def _result(plan, outcome, log, json_path):
    """The BuildResult of a written zip (and its ``--json``): the members and the
    top-level files as dicts, with their share of the zip."""
    entries, stats = outcome.entries, outcome.stats
    member_info = []
    for m in plan.members:
        prefix = m.dir + "/"
        member_info.append({
            "name": m.name, "run_dir": m.run_dir, "dir": m.dir,
            "input_size": m.input_size, "input_shape": m.input_shape,
            "output": m.output, "preprocess": m.preprocess,
            "preprocess_source": m.preprocess_source, "bytes": m.bytes,
            "zip_bytes": sum(e.compressed for e in entries if e.name.startswith(prefix)),
        })
    other = [e for e in entries if "/" not in e.name]
    files = [{"name": e.name, "bytes": e.size, "zip_bytes": e.compressed,
              "method": "deflate" if e.method == zipwrite.DEFLATED else "store"}
             for e in other]
    result_obj = BuildResult(
        path=plan.output, sha256=outcome.digest, size_bytes=stats.size,
        profile=plan.profile["name"], members=member_info, files=files,
        combine=plan.combine_name, weights=plan.weights, tta=list(plan.views),
        compression={"policy": plan.compression, "effective": plan.effective,
                     "deflated_entries": stats.deflated_entries,
                     "entries": stats.entries, "zip64": stats.zip64, "raw_bytes": stats.raw_bytes},
        checks=log.checks, selfcheck=outcome.selfcheck.to_dict(), limit_bytes=plan.limit,
        timing=log.timing, notes=log.notes)
    if json_path:
        write_atomic(json_path, dumps(result_obj.to_dict()))
    return result_obj
