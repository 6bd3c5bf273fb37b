"""Steps 2 and 4 to 6 of ``leafsub build`` (see build.py): the zip's files, staged,
self-checked and written.

One function per phase, each taking the build's ``BuildPlan`` and reporting to its
``BuildLog``: ``verify`` checks every member's SavedModel files against its card
(``member_files``); ``stage_check_write`` runs the others in order: ``stage`` puts
exactly the zip's files beside the output, ``render`` writes model.py, ``self_check``
imports it in a fresh Python process (selfcheck.py) that must reproduce every member's
goldens and leafsub's own ensemble, ``add_probe_and_manifest`` records the probe batch
and the manifest, and ``write`` writes the deterministic zip (zipwrite.py) atomically,
checking its real size.
"""

import dataclasses
import io
import os
import platform
import shutil
import tempfile
import time
import zipfile

import numpy as np

from .. import __version__
from ..card import sha256_file
from ..errors import CheckFailed, UsageError
from ..evaluator.checks import Check
from ..jsonfiles import dumps
from . import zipwrite
from .sizelimit import MB, mb, size_error

MANIFEST_NAME = "leafsub-manifest.json"
PROBE_NAME = "leafsub-probe.npz"
METADATA_NAME = "metadata"
# Images per model call are chosen so that one call's input (all TTA views of a
# chunk, float32) stays below this many bytes; at most MAX_CHUNK images.
CHUNK_BYTES = 32 * MB
MAX_CHUNK = 64


def member_files(run, card):
    """``[(relative path inside the SavedModel, absolute path, sha256 or None for folders)]``.

    Raises:
      CheckFailed when a file recorded in the card is missing or changed since export.
    """
    saved = os.path.join(run, card["saved_model"])
    if not os.path.isdir(saved):
        raise UsageError("%s: the SavedModel folder %s recorded in leafsub.json is missing. "
                         "Export the model again." % (run, card["saved_model"]))
    prefix = card["saved_model"].rstrip("/") + "/"
    expected = {k[len(prefix):]: v for k, v in card["files"].items() if k.startswith(prefix)}
    if not expected:
        raise UsageError("%s: leafsub.json lists no SavedModel files. Export the model again."
                         % run)
    out, seen, extra = [], set(), []
    for folder, dirs, files in os.walk(saved):
        dirs.sort()
        rel_dir = os.path.relpath(folder, saved).replace(os.sep, "/")
        if rel_dir != ".":
            out.append((rel_dir + "/", folder, None))
        for name in sorted(files):
            rel = name if rel_dir == "." else rel_dir + "/" + name
            if rel in expected:
                out.append((rel, os.path.join(folder, name), expected[rel]))
                seen.add(rel)
            else:
                extra.append(rel)
    missing = sorted(set(expected) - seen)
    if missing:
        raise CheckFailed("%s: %d SavedModel file(s) recorded at export are missing (%s). "
                          "Export the model again." % (run, len(missing), ", ".join(missing[:5])))
    changed = [rel for rel, path, digest in out if digest and sha256_file(path) != digest]
    if changed:
        raise CheckFailed("%s: %d SavedModel file(s) changed since export (%s: the SHA-256 differs "
                          "from leafsub.json). Export the model again." % (
                              run, len(changed), ", ".join(changed[:5])))
    return out, extra


def _chunk_size(members, n_views):
    largest = max(int(np.prod(m.input_shape)) if m.input_shape
                  else m.input_size[0] * m.input_size[1] * 3 for m in members)
    per_image = largest * 4 * max(1, n_views)
    return int(max(1, min(MAX_CHUNK, CHUNK_BYTES // per_image)))


def _npz_bytes(arrays):
    """``np.savez`` output with fixed timestamps (np.savez stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            item = io.BytesIO()
            np.lib.format.write_array(item, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.create_system = 3
            z.writestr(info, item.getvalue())
    return buf.getvalue()


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@dataclasses.dataclass
class BuildLog:
    """What the build's steps report as they go: the checks and notes of the result, the
    timings (``*_s``, in the order of the steps), and progress messages (``say``)."""

    say: object  # say(message): a progress line
    checks: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    timing: dict = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass
class SelfChecked:
    """What the self-check (step 5) hands to the writing of the zip (step 6)."""

    result: object  # selfcheck.SelfCheckResult
    probe: object  # the probe batch model.py was run on (float32, 0-255)
    scores: object  # leafsub's own ensemble's scores on it: what predict() must answer
    versions: dict  # the child's framework and Python versions


@dataclasses.dataclass
class BuildOutcome:
    """The written zip: its entries (zipwrite.Entry, with their compressed sizes),
    zipwrite's stats, its SHA-256 and the self-check's result."""

    entries: list
    stats: object
    digest: str
    selfcheck: object  # selfcheck.SelfCheckResult


def verify(plan, log):
    """Step 2: every member's files against its card (sets ``Member.files``; a file not
    recorded at export is left out, with a note)."""
    log.say("verifying the SavedModel files against their cards")
    for m in plan.members:
        m.files, extra = member_files(m.run_dir, m.card)
        if extra:
            log.notes.append("%s: %d file(s) not recorded at export are left out (%s)"
                             % (m.run_dir, len(extra), ", ".join(extra[:3])))
    log.timing["verify_s"] = round(time.time() - log.started, 3)


def stage_check_write(plan, staging, log):
    """Stage the zip's files in ``staging``, self-check them, write ``plan.output`` (steps 4-6).

    Appends to ``log``'s checks, notes and timing as it goes.

    Returns:
      BuildOutcome.

    Raises:
      CheckFailed (exit 1) when the self-check fails or the written zip is above
      ``plan.limit`` (no zip is left behind); UsageError for a profile whose interface
      cannot be rendered.
    """
    t = time.time()
    stage(plan, staging, log)
    config = render(plan, staging)
    probe = _probe_images(plan.members[0], plan.profile)
    staged = {e.name for e in zipwrite.entries_from_tree(staging)}
    log.timing["stage_s"] = round(time.time() - t, 3)
    checked = self_check(plan, staging, config, probe, log)
    keep = add_probe_and_manifest(plan, staging, config, checked)
    # The zip's files: what was staged, plus those two (nothing the child may have left).
    return write(plan, staging, staged | keep, checked.result, log)


def stage(plan, staging, log):
    """Step 4: the members' files (linked when possible), ``metadata`` when the profile
    wants it and a user combiner's module, in ``staging``."""
    for m in plan.members:
        root = os.path.join(staging, m.dir)
        os.makedirs(root)
        for rel, path, digest in m.files:
            target = os.path.join(root, *rel.rstrip("/").split("/"))
            if digest is None:
                os.makedirs(target, exist_ok=True)
            else:
                _link_or_copy(path, target)
    required = plan.profile["layout"]["required_files"]
    if METADATA_NAME in required:
        open(os.path.join(staging, METADATA_NAME), "wb").close()
    unknown = [name for name in required if name not in (plan.module_file, METADATA_NAME)]
    if unknown:
        log.notes.append("the profile requires %s, which leafsub does not create: add it to the "
                         "zip yourself" % ", ".join(unknown))
    if plan.combine_path:
        shutil.copyfile(plan.combine_path,
                        os.path.join(staging, os.path.basename(plan.combine_path)))


def render(plan, staging):
    """Step 4: model.py, rendered into ``staging``.

    Returns:
      its CONFIG (``render.config_dict``), which the self-check's reference runs too.
    """
    from .render import config_dict, render_model_py

    profile = plan.profile
    chunk = _chunk_size(plan.members, len(plan.views))
    config = config_dict(profile, plan.members, plan.views, plan.combine_name, plan.weights,
                         chunk)
    try:
        text = render_model_py(profile, plan.members, plan.views, plan.combine_name,
                               plan.weights, chunk)
    except ValueError as e:
        raise UsageError("profile %s: %s. Fix the profile's interface section." % (
            profile["name"], e)) from None
    with open(os.path.join(staging, plan.module_file), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return config


def self_check(plan, staging, config, probe, log):
    """Step 5: model.py in a fresh process, and leafsub's own runtime beside it (in the
    child: this process never imports TensorFlow or holds a model), on ``probe``.

    Returns:
      SelfChecked.

    Raises:
      CheckFailed naming the member and the difference when it fails.
    """
    from .selfcheck import compare, run_child

    members, profile = plan.members, plan.profile
    log.say("self-check: importing the rendered %s in a fresh Python process" % plan.module_file)
    t = time.time()
    reference = {"members": config["members"], "views": config["tta"], "weights": plan.weights,
                 "chunk_size": config["chunk_size"], "method": plan.combine_name}
    with tempfile.TemporaryDirectory(prefix="leafsub-probe-") as tmp:
        probe_path = os.path.join(tmp, "probe.npz")
        np.savez(probe_path, images=probe.astype(np.float32))
        info, arrays = run_child(staging, profile,
                                 [os.path.join(m.run_dir, m.card["probe"]["file"])
                                  for m in members], probe_path, reference)
    scores = arrays["reference"]
    goldens = []
    for m in members:
        with np.load(os.path.join(m.run_dir, m.card["probe"]["file"])) as data:
            goldens.append({"label": m.label, "goldens": data["probabilities"],
                            "tolerance": float(m.card["probe"]["tolerance"])})

    def hint(i, diff):
        return _mismatch_hint(members[i], arrays["hint_diffs"][i], goldens[i]["tolerance"])

    result = compare(info, arrays, profile, goldens, scores, hint)
    log.checks.extend(result.checks)
    log.timing["selfcheck_s"] = round(time.time() - t, 3)
    if result.failures:
        raise CheckFailed("Self-check failed; no zip was written. %s" % " ".join(result.failures))
    log.say("self-check passed: goldens reproduced (max difference %.2g), ensemble equals "
            "leafsub's runtime (max difference %.2g, tolerance %.2g)" % (
                max(result.member_diffs), result.ensemble_diff, result.tolerance))
    return SelfChecked(result=result, probe=probe, scores=scores,
                       versions=dict(info.get("versions") or {}))


def add_probe_and_manifest(plan, staging, config, checked):
    """Step 5's record in the zip: the probe batch with what predict() must answer, and
    the manifest. Returns their names."""
    members, probe, scores = plan.members, checked.probe, checked.scores
    labels = np.argmax(scores, axis=1).astype(np.int64)
    with open(os.path.join(staging, PROBE_NAME), "wb") as f:
        f.write(_npz_bytes({"images": probe.astype(np.float32), "labels": labels,
                            "scores": scores}))
    versions = dict(checked.versions, leafsub=__version__, numpy=np.__version__)
    versions["python"] = versions.get("python") or platform.python_version()
    top_files = sorted(n for n in os.listdir(staging) if os.path.isfile(os.path.join(staging, n)))
    manifest = {
        "leafsub_manifest": 1,
        "profile": plan.profile["name"],
        "versions": versions,
        "members": [{"dir": m.dir, "name": m.name, "card": m.card,
                     "preprocess": m.preprocess, "preprocess_source": m.preprocess_source,
                     "files": {m.dir + "/" + rel: digest for rel, _, digest in m.files
                               if digest}} for m in members],
        "combine": plan.combine_name,
        "weights": plan.weights,
        "tta": list(plan.views),
        "chunk_size": config["chunk_size"],
        "files": {name: sha256_file(os.path.join(staging, name)) for name in top_files},
        "probe": {"file": PROBE_NAME, "count": int(len(probe)),
                  "tolerance": max(float(m.card["probe"]["tolerance"]) for m in members)},
    }
    with open(os.path.join(staging, MANIFEST_NAME), "w", encoding="utf-8", newline="\n") as f:
        f.write(dumps(manifest))
    return {PROBE_NAME, MANIFEST_NAME}


def write(plan, staging, names, selfcheck, log):
    """Step 6: the zip of ``names`` (staging's entries), written atomically to
    ``plan.output`` with ``plan.effective`` compression, its real size checked.

    Returns:
      BuildOutcome.
    """
    t = time.time()
    entries = [e for e in zipwrite.entries_from_tree(staging) if e.name in names]
    entries = zipwrite.plan(entries, plan.effective)
    log.say("writing %s (%d entries, compression %s)" % (plan.output, len(entries),
                                                         plan.effective))

    def verify_size(tmp, stats):
        if stats.size > plan.limit:
            sizes = [("%s (%s)" % (m.dir, m.given),
                      sum(e.compressed for e in entries if e.name.startswith(m.dir + "/")))
                     for m in plan.members]
            sizes.append(("model.py + manifest + probe",
                          sum(e.compressed for e in entries if "/" not in e.name)))
            log.checks.append(Check("size", "fail", "%s, limit %s" % (mb(stats.size),
                                                                      mb(plan.limit))))
            raise size_error(plan.profile, stats.size, plan.limit, sizes, plan.members,
                             plan.effective, 0, actual=True)

    stats, digest = zipwrite.write_zip_atomic(plan.output, entries, plan.effective,
                                              workers=plan.workers, planned=True,
                                              verify=verify_size)
    log.timing["zip_s"] = round(time.time() - t, 3)
    log.timing["total_s"] = round(time.time() - log.started, 3)
    log.checks.append(Check("size", "pass", "%s of %s allowed" % (mb(stats.size),
                                                                  mb(plan.limit))))
    return BuildOutcome(entries=entries, stats=stats, digest=digest, selfcheck=selfcheck)


def _probe_images(first, profile):
    """The build's probe batch at the profile's input shape, integer values in 0-255.

    Member 1's probe images (resized) when they are real images, else the fixed
    synthetic batch. Integer values, so that a uint8 platform sees the same batch.
    """
    from ..datasets import resize_for_data_pack
    from ..exporter.export import synthetic_probe

    card = first.card
    if "shape" in card["input"]:  # not an image: member 1's probe samples, as they are
        with np.load(os.path.join(first.run_dir, card["probe"]["file"])) as data:
            return np.asarray(data["images"], dtype=np.float32)
    h, w = profile["input"]["shape"][:2]
    count = int(card["probe"]["count"])
    if card["probe"]["source"] == "user":
        with np.load(os.path.join(first.run_dir, card["probe"]["file"])) as data:
            images = data["images"]
        # Any resize will do (the batch only has to be the same for model.py and the
        # reference); PIL keeps TensorFlow out of this process.
        images = resize_for_data_pack(np.clip(np.round(images), 0, 255).astype(np.uint8), (h, w))
    else:
        images = synthetic_probe(count, (h, w))
    return np.clip(np.round(images), 0, 255).astype(np.float32)


def _mismatch_hint(member, diffs, tol):
    """Which preprocessing reproduces the goldens (``diffs``: the child's, per standard
    mode in ``selfcheck.HINT_MODES`` order), to name in the error."""
    from .selfcheck import HINT_MODES

    declared = member.preprocess["mode"]
    card_mode = member.card["preprocess"]["mode"]
    text = "model.py preprocesses it with %r (from %s)" % (declared, member.preprocess_source)
    if card_mode != declared:
        text += "; its card (leafsub.json) says %r" % card_mode
    best = None
    for mode, diff in zip(HINT_MODES, diffs):
        if mode == declared or not np.isfinite(diff):
            continue
        if best is None or diff < best[1]:
            best = (mode, float(diff))
    if best and best[1] <= tol:
        text += ". With %r the goldens are reproduced (max difference %.2g): declare %r for it " \
                "(or drop --preprocess to use the card's)" % (best[0], best[1], best[0])
    else:
        text += ". No standard preprocessing reproduces them either: re-export the model with " \
                "preprocess_fn=<the function training used>"
    return text + "."
