"""The checks' sequence: what is checked, in which order, and the records it makes.

:func:`run_checks` drives one :class:`replay.Replay`: the data checks, the session's
steps up to the main pass, then the checks that ask the child for more predictions:

  1. ``data: classes`` (the packs' class names against the profile's);
  2. extract, structure, the images written, the tensor data checks (not an image
     profile), the child started, load, the main pass (``replay.py``);
  3. ``deterministic`` and the harness variants (:func:`variant_checks`);
  4. ``goldens`` from ``leafsub-manifest.json`` (:func:`golden_check`);
  5. the mismatch detective (:func:`run_detective`);
  6. what the submission tried that the replay contained (:func:`containment_checks`).

Each function turns the child's replies into check records (``checks.check``) and
appends them to the replay's list; the verdict is taken from that list afterwards.
"""

import os
import time

import numpy as np

from ..profiles import is_image, is_values
from . import checks as C
from . import detective as D
from . import values as V
from .replay import phase_name

MANIFEST_NAME = "leafsub-manifest.json"
VARIANT_IMAGES = 21   # images the harness variants are tried on (3 batches of 7)


def run_checks(replay, submission, detective=True, variants=True, stated=(None, None)):
    """Every check of one evaluation, in order, recorded in ``replay.checks``.

    Raises :class:`replay.EndReplay` when a step leaves nothing to check further (its
    failed check is recorded); the caller closes the replay either way.
    """
    from .runner import ChildStopped

    replay.checks.extend(class_name_checks(replay.packs, replay.prof))
    replay.extract(submission)
    replay.write_images()
    if not is_image(replay.prof):
        replay.checks.extend(C.tensor_data_checks(replay.packs, replay.prof))
    # The build's manifest and probe, read from the extracted zip before the child runs
    # (the child may write in the submission's folder).
    manifest, probe = read_manifest(replay.root)
    forecast = V.read_forecast_manifest(replay.root) if is_values(replay.prof) else None
    replay.start_child()
    replay.load()
    labels_by_phase, raw_first = replay.main_pass()
    timing, started = replay.result["timing"], time.monotonic()
    try:
        if variants:
            variant_checks(replay.predict, replay.phase_files[0], raw_first, replay.packs[0].n,
                           replay.batch_size, dict(replay.inp, framework=replay.protocol.framework),
                           replay.workdir, replay.checks,
                           replay.iface["method"], compare=V.compare_values
                           if is_values(replay.prof) else C.compare_labels)
        if manifest is not None:
            golden_check(replay.predict, manifest, probe, replay.workdir, replay.checks,
                         replay.prof)
        elif is_values(replay.prof):  # a forecaster's build: its own manifest and probe
            check = V.golden_check(replay, forecast)
            if check is not None:
                replay.checks.append(check)
        timing["checks_s"] = round(time.monotonic() - started, 3)
        if detective and not is_image(replay.prof):
            replay.checks.append(C.not_an_image("mismatch detective", replay.prof))
        elif detective and replay.result["predictions"] is not None:
            started = time.monotonic()
            goldens = any(c["name"] == "goldens" and c["status"] == "pass"
                          for c in replay.checks)
            entry, check = run_detective(replay, np.asarray(labels_by_phase[0]), manifest,
                                         goldens, stated)
            replay.result["detective"] = entry
            replay.checks.append(_strip(check))
            timing["detective_s"] = round(time.monotonic() - started, 3)
    except ChildStopped as err:
        replay.checks.append(replay.stopped_check("checks", err, "running the checks"))
    containment_checks(replay)


def containment_checks(replay):
    """What the submission tried that the replay contained: worth a warning."""
    from .runner import OUTPUT_WARN

    child = replay.child
    if child.network_attempts:
        more = len(child.network_attempts) - 1
        replay.checks.append(C.check(
            "network", "warn", "the submission tried %s%s and went on without it; the "
            "platform has no network, so it would get the same error there. Bundle what it "
            "needs in the zip." % (child.network_attempts[0],
                                   " (and %d more)" % more if more else "")))
    replay.checks.extend(C.denied_reads(child.denied_reads, replay.data_paths()))
    if child.output_bytes > OUTPUT_WARN:
        replay.checks.append(C.check(
            "output volume", "warn", "the submission printed %.1f MB to stdout/stderr; the "
            "platform keeps a log of it, which slows the run and may be cut: print less"
            % (child.output_bytes / 2**20)))


def read_manifest(root):
    """The build's manifest and probe, when the zip has them and they are readable."""
    from . import untrusted

    path = os.path.join(root, MANIFEST_NAME)
    if not os.path.lexists(path):
        return None, None
    try:
        manifest = untrusted.read_json_file(path, what="the manifest")
        if not isinstance(manifest, dict):
            raise ValueError("%s is not a JSON object" % MANIFEST_NAME)
        probe_file = (manifest.get("probe") or {}).get("file")
        if probe_file is not None and not isinstance(probe_file, str):
            raise ValueError("its probe file is not a name")
        probe_path = os.path.join(root, probe_file) if probe_file else None
        if probe_path and not os.path.realpath(probe_path).startswith(
                os.path.join(os.path.realpath(root), "")):
            raise ValueError("its probe file %r lies outside the zip" % probe_file[:80])
        if not probe_path or not os.path.lexists(probe_path):
            return manifest, None
        probe = untrusted.load_npz(probe_path, what="the probe")
        images = np.asarray(probe["images"], dtype=np.float32)
        labels = np.asarray(probe["labels"], dtype=np.int64)
        return manifest, (images, labels)
    except (OSError, ValueError, KeyError, TypeError, AttributeError,
            untrusted.Untrusted) as err:
        return {"unreadable": "%s: %s" % (type(err).__name__, err)}, None


def class_name_checks(packs, prof):
    """A warning when a pack names its classes differently from the profile."""
    names = (prof.get("classes") or {}).get("names")
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
                               phase_name(pack.path, i), shown, prof["name"],
                               ", ".join(names[:4]) + (", ..." if len(names) > 4 else ""))))
    return out


def _strip(check):
    return {k: check[k] for k in ("name", "status", "detail")}


def variant_checks(predict, images, main, n, batch_size, inp, workdir, checks, method,
                   compare=C.compare_labels):
    """Same images, other plausible harnesses: the answers must not change."""
    k = min(n, max(batch_size, VARIANT_IMAGES))
    idx = np.arange(k)
    reference = main[:k]
    reply, again = predict(images, os.path.join(workdir, "v-again.npy"), indices=idx)
    if not reply.get("ok") or again is None:
        checks.append(C.check("deterministic", "fail", "the second call on the same images "
                              "failed: %s" % reply.get("error")))
        return
    checks.append(compare("deterministic", reference, again,
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
        checks.append(compare(name, reference[:len(ids)], out,
                                       "%d images" % len(ids), severity="warn",
                                       hint="the answer depends on how the batch is given; "
                                            "convert X with tf.cast(X, tf.float32) first"))


def golden_check(predict, manifest, probe, workdir, checks, prof):
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
    if not is_image(prof):
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
    from . import untrusted

    path = os.path.join(workdir, "probe-images.npy")   # the parent's folder (untrusted.py)
    untrusted.save_npy(path, images.astype(np.float32))
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


def run_detective(replay, base, manifest, goldens, stated):
    """The model's evidence first, then (unless it vouches) the sequential candidates.

    Returns ``(the JSON detective entry, the check)``.
    """
    expected, expected_from = stated
    from . import untrusted

    reply = replay.child.call({"op": "evidence"})
    evidence = reply.get("evidence") if reply.get("ok") else {
        "error": reply.get("error", "the child could not read them")}
    try:
        evidence = untrusted.check_evidence(evidence)
    except untrusted.Untrusted as err:
        evidence = {"error": str(err)}
    vouch = D.vouched(manifest, goldens, evidence, expected)
    results = fed = None
    images, labels = replay.phase_files[0], replay.packs[0].labels
    if not vouch and replay.protocol.framework != "torch":
        fed, vouch = read_fed(replay, images, labels, base, evidence, expected)
    if not vouch:
        calls = [0]

        def predict(transform, indices):
            calls[0] += 1
            out_path = os.path.join(replay.workdir, "d%d.npy" % calls[0])
            reply, out = replay.predict(images, out_path, indices=indices,
                                        transform=D.wire(transform))
            return as_labels(out) if reply.get("ok") else None

        results = D.run(predict, labels, base, evidence=evidence, expected=expected,
                        say=replay.say.say, table=D.candidates_for(replay.prof))
    check = D.finding_check(results, evidence=evidence, expected=expected,
                            expected_from=expected_from, vouch=vouch)
    return D.entry(results, check, evidence, expected, expected_from, vouch, fed), check


def read_fed(replay, images, labels, base, evidence, expected):
    """``predict`` once more on the first images of the detective's sample, with the
    loaded models' inputs and outputs read as they pass (``Harness._fed``); returns
    ``(fed or None, the vouching sentence or None)``. Costs ``D.FED_IMAGES`` images."""
    from . import untrusted

    idx = D.sample(labels, D.LOOKS[-1])[:D.FED_IMAGES]
    reply, out = replay.predict(images, os.path.join(replay.workdir, "fed.npy"), indices=idx,
                                tap=D.FED_SPECS)
    if not reply.get("ok") or "fed" not in reply:
        return None, None
    try:
        fed = untrusted.check_fed(reply["fed"], D.FED_SPECS)
    except untrusted.Untrusted:
        return None, None
    answers = as_labels(out)
    # The tapped call must answer as the main pass did: what it proves is about those answers.
    if answers is None or answers.shape != (len(idx),) or not np.array_equal(answers,
                                                                             base[idx]):
        return fed, None
    return fed, D.vouched_by_input(fed, evidence, len(idx), expected)


def as_labels(out):
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
