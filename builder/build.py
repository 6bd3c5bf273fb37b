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
"""

import ast
import dataclasses
import importlib
import io
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile

import click
import numpy as np

from .. import __version__
from ..card import read_card, sha256_file
from ..errors import CheckFailed, LeafsubError, UsageError
from ..jsonfiles import dumps, write_atomic
from ..profiles import load_profile, model_dir
from ..submission_template import spec as runtime_spec
from . import zipwrite

MANIFEST_NAME = "leafsub-manifest.json"
PROBE_NAME = "leafsub-probe.npz"
METADATA_NAME = "metadata"
MB = 1_000_000
# Images per model call are chosen so that one call's input (all TTA views of a
# chunk, float32) stays below this many bytes; at most MAX_CHUNK images.
CHUNK_BYTES = 32 * MB
MAX_CHUNK = 64
SMALL_FILES_ALLOWANCE = 64 * 1024   # manifest + model.py, for the size pre-check


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


# --------------------------------------------------------------------------- helpers

def _split(value):
    """``"a,b"`` / ``["a", "b,c"]`` -> ``["a", "b", "c"]`` (None stays None)."""
    if value is None:
        return None
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    out = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            out += [s.strip() for s in os.fspath(item).split(",") if s.strip()]
        else:
            out.append(item)
    return out


def _mb(n):
    return "%.1f MB" % (n / MB) if n >= 100_000 else "%.2f MB" % (n / MB)


class _Progress:
    def __init__(self, enabled):
        self.enabled = enabled
        self.started = time.time()

    def __call__(self, message):
        if self.enabled:
            click.echo("build: %s" % message, err=True)


def _parse_weights(weights, n_models):
    if weights is None:
        return None
    raw = _split(weights)
    try:
        values = [float(w) for w in raw]
    except (TypeError, ValueError):
        raise UsageError("--weights %s: not a list of numbers. Pass one number per model, e.g. "
                         "--weights 0.5,0.3,0.2." % ",".join(map(str, raw))) from None
    if len(values) != n_models:
        raise UsageError("--weights: got %d weight%s for %d model%s. Pass exactly one weight per "
                         "--models entry, in the same order." % (
                             len(values), "" if len(values) == 1 else "s", n_models,
                             "" if n_models == 1 else "s"))
    if any(not np.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise UsageError("--weights %s: weights must be non-negative numbers with a positive "
                         "sum (they are normalised to sum to 1)." % ",".join(map(str, raw)))
    return values


def _resolve_combine(combine, weights, n_models, notes):
    """Returns ``(name, function or None, module path or None)``."""
    combiners = runtime_spec.COMBINERS
    if combine is None:
        combine = "weighted" if weights is not None else "mean"
    combine = str(combine).strip()
    if ":" not in combine:
        if combine not in combiners:
            raise UsageError("--combine %r is not one of %s, or MODULE:FUNCTION for your own "
                             "combiner." % (combine, ", ".join(combiners)))
        if combine == "weighted" and weights is None:
            raise UsageError("--combine weighted needs --weights, one per model (e.g. --weights "
                             "0.5,0.3,0.2).")
        if combine == "mean" and weights is not None:
            raise UsageError("--combine mean ignores weights: use --combine weighted (the "
                             "default when --weights is given), or drop --weights.")
        if n_models == 1 and (combine != "mean" or weights is not None):
            notes.append("one model: --combine/--weights have no effect")
        return combine, None, None
    module_name, _, function_name = combine.partition(":")
    if not module_name.isidentifier() or not function_name.isidentifier():
        raise UsageError("--combine %r: use MODULE:FUNCTION where MODULE is a single .py file in "
                         "the current folder (or on sys.path), e.g. --combine "
                         "mycombine:combine." % combine)
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name)
    except Exception as e:
        raise UsageError("--combine %s: cannot import %s from %s.py (%s: %s). The module must be "
                         "a .py file in the current folder or on sys.path."
                         % (combine, function_name, module_name, type(e).__name__, e)) from None
    finally:
        sys.path.remove(os.getcwd())
    path = getattr(module, "__file__", None)
    if not path or os.path.basename(path) != module_name + ".py":
        raise UsageError("--combine %s: %s is not a single .py file (found %s). Put the combiner in "
                         "one file next to where you run leafsub; it is copied next to model.py "
                         "in the zip." % (combine, module_name, path or "a built-in module"))
    if not callable(function):
        raise UsageError("--combine %s: %s.%s is not a function." % (combine, module_name,
                                                                     function_name))
    _note_imports(path, notes)
    if n_models == 1:
        notes.append("one model: the combiner %s is not used and not copied" % combine)
        return "mean", None, None
    return combine, function, os.path.abspath(path)


def _note_imports(path, notes):
    """Warn about imports a platform may not have (only stdlib, numpy, tensorflow are safe)."""
    try:
        tree = ast.parse(open(path, "r", encoding="utf-8").read())
    except (OSError, SyntaxError, UnicodeDecodeError) as e:
        raise UsageError("%s: cannot read the combiner module (%s)." % (path, e)) from None
    allowed = set(getattr(sys, "stdlib_module_names", ())) | {"numpy", "tensorflow"}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    others = sorted(found - allowed) if allowed - {"numpy", "tensorflow"} else []
    if others:
        notes.append("%s imports %s: the platform may not have %s (only the standard library, "
                     "numpy and tensorflow are safe)" % (os.path.basename(path), ", ".join(others),
                                                         "it" if len(others) == 1 else "them"))


def _resolve_preprocess(preprocess, cards, runs):
    """The effective spec of every member and where it comes from."""
    if preprocess is None:
        overrides = [None] * len(cards)
    else:
        overrides = [preprocess] if isinstance(preprocess, dict) else _split(preprocess)
        if len(overrides) != len(cards):
            raise UsageError("--preprocess: got %d entr%s for %d models. Give one per --models "
                             "entry, in the same order ('card' keeps what the model card says), "
                             "e.g. --preprocess caffe,card,none." % (
                                 len(overrides), "y" if len(overrides) == 1 else "ies", len(cards)))
    specs = []
    for card, run, over in zip(cards, runs, overrides):
        card_spec = dict(card["preprocess"])
        card_spec.setdefault("resize_method", "bilinear")
        if over is None or over in ("", "card", "-"):
            specs.append((_checked_spec(card_spec, run, _features(card)), "card (%s)" % card.get(
                "preprocess_source", "declared")))
            continue
        if isinstance(over, dict):
            spec = dict(over)
        elif over in runtime_spec.MODES:
            if over == "affine":
                raise UsageError("--preprocess affine needs scale and offset: declare it at export "
                                 "(preprocess={'mode': 'affine', ...}) and use 'card' here.")
            spec = {"mode": over}
        else:
            try:
                spec = {"mode": runtime_spec.preset(over)}
            except ValueError as e:
                raise UsageError("--preprocess %r (for %s): %s" % (over, run, e)) from None
        spec.setdefault("resize_method", card_spec["resize_method"])
        for key in TORCH_SPEC_KEYS:  # a torch model's geometry and layout are not overridden
            if card_spec.get(key) is not None:
                spec.setdefault(key, card_spec[key])
        specs.append((_checked_spec(spec, run, _features(card)), "--preprocess %s" % (
            over if isinstance(over, str) else "dict")))
    return specs


def _checked_spec(declared, run, features):
    """``validate_spec`` for a member, its ValueError as the user's error naming the run.

    A torch card's geometry and layout (``TORCH_SPEC_KEYS``, validated by
    runtime_torch.validate_spec in the submission) are carried through unchanged.
    """
    try:
        out = runtime_spec.validate_spec(declared, features)
    except ValueError as e:
        raise UsageError("%s: %s." % (run, e)) from None
    out.update({k: declared[k] for k in TORCH_SPEC_KEYS if declared.get(k) is not None})
    return out


def _check_classes(cards, runs, profile, notes):
    first = cards[0]["class_names"]
    for card, run in zip(cards[1:], runs[1:]):
        names = card["class_names"]
        if names != first:
            if len(names) != len(first):
                what = "%d classes, %s has %d" % (len(names), runs[0], len(first))
            else:
                i = next(k for k, (a, b) in enumerate(zip(names, first)) if a != b)
                what = "class %d is %r, in %s it is %r" % (i, names[i], runs[0], first[i])
            raise UsageError("%s: its class names differ from the first model's (%s). Every "
                             "member must predict the same classes in the same order; export it "
                             "again with class_names in the right order." % (run, what))
    count = profile["classes"]["count"]
    if len(first) != count:
        raise UsageError("%s: the model has %d classes but profile %s expects %d. Pass the right "
                         "--profile, or export a model for this challenge." % (
                             runs[0], len(first), profile["name"], count))
    names = profile["classes"].get("names")
    if names and list(names) != list(first):
        notes.append("the models' class names (%s) differ from profile %s's (%s); label i is "
                     "taken to mean the profile's i-th class" % (
                         ", ".join(first[:4]) + (", ..." if len(first) > 4 else ""),
                         profile["name"], ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")))


def _member_files(run, card):
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
    largest = max(int(np.prod(m["input_shape"])) if m.get("input_shape")
                  else m["input_size"][0] * m["input_size"][1] * 3 for m in members)
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


def _size_error(profile, total, limit, contributors, members, compression, deflate_saving,
                actual):
    what = "is" if actual else "would be about"
    top = sorted(contributors, key=lambda c: -c[1])[:3]
    remedies = []
    biggest = max(contributors[:len(members)], key=lambda c: c[1])[0]
    if len(members) > 1:
        remedies.append("drop a member (the ensemble has %d; %s is the largest)"
                        % (len(members), biggest))
    remedies.append("use a smaller architecture or input size for the largest member")
    remedies.append("export a float16 copy of the weights (halves their size; check the "
                    "accuracy after)")
    if compression != "deflate" and deflate_saving > 0.01 * total and not actual:
        remedies.append("--compression deflate (saves about %s here)" % _mb(deflate_saving))
    remedies.append("if your challenge allows more, set limits.zip_mb in your own profile "
                    "(--profile path.json); TTA and the combiner do not change the size")
    return CheckFailed(
        "The submission %s %s, above profile %s's limit of %s (limits.zip_mb); no zip was written. "
        "Largest contributors: %s. Remedies: %s." % (
            what, _mb(total), profile["name"], _mb(limit),
            ", ".join("%s %s" % (name, _mb(size)) for name, size in top), "; ".join(remedies)))


# --------------------------------------------------------------------------- build

def build(models, weights=None, combine=None, tta=None, profile=None, output="submission.zip",
          json_path=None, force=False, compression="auto", preprocess=None, progress=True,
          workers=None):
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
                      compression, preprocess, progress, workers, checks)
    except LeafsubError as e:
        if json_path:
            write_atomic(json_path, dumps({"passed": False, "exit_code": e.exit_code,
                                           "error": str(e), "checks": checks,
                                           "versions": {"leafsub": __version__}}))
        raise


def _build(models, weights, combine, tta, profile_arg, output, json_path, force, compression,
           preprocess, progress, workers, checks):
    say = _Progress(progress)
    timing = {}
    started = time.time()
    notes = []

    # 1. arguments, profile, cards -------------------------------------------------------
    shown = [os.fspath(m) for m in (_split(models) or [])]
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
    _check_classes(cards, runs, profile, notes)
    specs = _resolve_preprocess(preprocess, cards, runs)
    weights = _parse_weights(weights, len(runs))
    # The combiner is imported here only to check it; the self-check child runs it.
    combine_name, _, combine_path = _resolve_combine(combine, weights, len(runs), notes)
    views = _split(tta) or ["identity"]
    known_views = runtime_spec.TTA_VIEWS
    for view in views:
        if view not in known_views:
            raise UsageError("--tta %r is not a view leafsub knows; choose from %s."
                             % (view, ", ".join(known_views)))
    if len(set(views)) != len(views):
        raise UsageError("--tta %s: a view is listed twice (it would count double)."
                         % ",".join(views))
    for card, run, (spec, _) in zip(cards, runs, specs):
        if _tensor_input(card, run, profile, views, spec):
            if not any(c["name"] == "tta" for c in checks):
                checks.append({"name": "tta", "status": "pass", "detail": "skipped: not an "
                               "image profile (%s feeds samples of shape %s)" % (
                                   profile["name"], list(profile["input"]["shape"]))})
            continue
        if card["input"]["channels"] != profile["input"]["shape"][2]:
            raise UsageError("%s: the model takes %d-channel images, profile %s feeds %d."
                             % (run, card["input"]["channels"], profile["name"],
                                profile["input"]["shape"][2]))
        if card["input"]["height"] != card["input"]["width"] and {"rot90", "rot270"} & set(views):
            raise UsageError("%s: --tta rot90/rot270 need a square model input, this one is %dx%d."
                             % (run, card["input"]["height"], card["input"]["width"]))
    limit = int(profile["limits"]["zip_mb"] * MB)

    members = []
    for i, (run, card, (spec, spec_source)) in enumerate(zip(runs, cards, specs), start=1):
        directory = model_dir(profile, i, len(runs))
        given = shown[i - 1]
        members.append({
            "index": i, "run_dir": run, "given": given, "name": card["name"], "dir": directory,
            "card": card, "preprocess": spec, "preprocess_source": spec_source,
            "input_size": None if "shape" in card["input"] else
            [card["input"]["height"], card["input"]["width"]],
            "input_shape": card["input"].get("shape"),
            "output": card["output"], "label": "member %d (%s -> %s/)" % (i, given, directory),
        })
    reserved = {profile["interface"]["module"] + ".py", METADATA_NAME, MANIFEST_NAME, PROBE_NAME}
    reserved |= {m["dir"] for m in members}
    if combine_path and os.path.basename(combine_path) in reserved:
        raise UsageError("--combine %s: the module name %s clashes with a file of the submission; "
                         "rename it." % (combine_name, os.path.basename(combine_path)))

    # 2. files ---------------------------------------------------------------------------
    say("verifying the SavedModel files against their cards")
    for m in members:
        m["files"], extra = _member_files(m["run_dir"], m["card"])
        if extra:
            notes.append("%s: %d file(s) not recorded at export are left out (%s)"
                         % (m["run_dir"], len(extra), ", ".join(extra[:3])))
    timing["verify_s"] = round(time.time() - started, 3)

    # 3. size, before anything costly ------------------------------------------------------
    t = time.time()
    model_entries = [zipwrite.dir_entry(m["dir"]) for m in members]
    for m in members:
        for rel, path, digest in m["files"]:
            arcname = m["dir"] + "/" + rel
            model_entries.append(zipwrite.dir_entry(arcname) if digest is None
                                 else zipwrite.file_entry(arcname, path))
    probe_count = int(cards[0]["probe"]["count"])
    # model.py, the manifest, the probe batch (integer-valued float32: deflates to about half)
    # and a user combiner: estimated generously, checked exactly once the zip is written.
    own_bytes = SMALL_FILES_ALLOWANCE + probe_count * int(np.prod(profile["input"]["shape"])) * 4 + (
        os.path.getsize(combine_path) if combine_path else 0)

    def estimate_with(policy):
        planned = zipwrite.plan([dataclasses.replace(e) for e in model_entries], policy)
        per_member = [sum(e.estimate for e in planned if e.name.startswith(m["dir"] + "/"))
                      for m in members]
        return planned, per_member, sum(per_member) + own_bytes + 100 * len(planned)

    planned, per_member, estimate = estimate_with(compression)
    effective = compression
    if estimate > limit and compression == "auto":
        _, deflated_members, deflated = estimate_with("deflate")
        if deflated <= limit:
            notes.append("compression auto: deflating every file to fit under the %s limit "
                         "(about %s instead of %s)" % (_mb(limit), _mb(deflated), _mb(estimate)))
            effective, per_member, estimate = "deflate", deflated_members, deflated
    for m, size in zip(members, per_member):
        m["bytes"] = sum(e.size for e in planned if e.name.startswith(m["dir"] + "/"))
        m["estimate"] = size
    if estimate > limit:
        contributors = [("%s (%s)" % (m["dir"], m["given"]), m["estimate"]) for m in members]
        contributors.append(("model.py + manifest + probe", own_bytes))
        saving = 0
        if effective != "deflate":
            saving = max(0, estimate - estimate_with("deflate")[2])
        checks.append({"name": "size", "status": "fail", "detail": "about %s expected, limit %s"
                       % (_mb(estimate), _mb(limit))})
        raise _size_error(profile, estimate, limit, contributors, members, effective, saving,
                          actual=False)
    raw_total = sum(m["bytes"] for m in members)
    timing["plan_s"] = round(time.time() - t, 3)
    say("expected size about %s of %s allowed (%s of model files, compression %s)" % (
        _mb(estimate), _mb(limit), _mb(raw_total), effective))

    # 4. stage ---------------------------------------------------------------------------
    out_dir = os.path.dirname(output)
    try:
        os.makedirs(out_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".leafsub-build-", dir=out_dir)
    except OSError as e:
        raise UsageError("%s: cannot write in this folder (%s). Choose another -o/--output."
                         % (out_dir, e.strerror or e)) from None
    try:
        return _stage_check_write(profile, members, views, combine_name,
                                  combine_path, weights, compression, effective, workers, output,
                                  json_path, staging, limit, notes, checks, timing, started, say)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage_check_write(profile, members, views, combine_name, combine_path, weights,
                       compression, effective, workers, output, json_path, staging, limit, notes,
                       checks, timing, started, say):
    from .render import render_model_py

    t = time.time()
    for m in members:
        root = os.path.join(staging, m["dir"])
        os.makedirs(root)
        for rel, path, digest in m["files"]:
            target = os.path.join(root, *rel.rstrip("/").split("/"))
            if digest is None:
                os.makedirs(target, exist_ok=True)
            else:
                _link_or_copy(path, target)
    config_members = [{"dir": m["dir"], "name": m["name"], "input_size": m["input_size"],
                       "output": m["output"], "preprocess": m["preprocess"]} for m in members]
    for config, m in zip(config_members, members):
        if m["input_shape"]:
            config["input_shape"] = list(m["input_shape"])
    chunk = _chunk_size(members, len(views))
    try:
        text = render_model_py(profile, config_members, views, combine_name, weights, chunk)
    except ValueError as e:
        raise UsageError("profile %s: %s. Fix the profile's interface section." % (
            profile["name"], e)) from None
    module_file = profile["interface"]["module"] + ".py"
    with open(os.path.join(staging, module_file), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    required = profile["layout"]["required_files"]
    if METADATA_NAME in required:
        open(os.path.join(staging, METADATA_NAME), "wb").close()
    unknown = [name for name in required if name not in (module_file, METADATA_NAME)]
    if unknown:
        notes.append("the profile requires %s, which leafsub does not create: add it to the zip "
                     "yourself" % ", ".join(unknown))
    if combine_path:
        shutil.copyfile(combine_path, os.path.join(staging, os.path.basename(combine_path)))

    # 5. self-check: model.py in a fresh process, and leafsub's own runtime beside it ------
    # (in the child: this process never imports TensorFlow or holds a model)
    from .selfcheck import compare, run_child

    probe = _probe_images(members[0], profile)
    tolerance = max(float(m["card"]["probe"]["tolerance"]) for m in members)
    before = {e.name for e in zipwrite.entries_from_tree(staging)}
    timing["stage_s"] = round(time.time() - t, 3)
    say("self-check: importing the rendered %s in a fresh Python process" % (
        profile["interface"]["module"] + ".py"))
    t = time.time()
    reference = {"members": config_members, "views": list(views), "weights": weights,
                 "chunk_size": chunk, "method": combine_name}
    with tempfile.TemporaryDirectory(prefix="leafsub-probe-") as tmp:
        probe_path = os.path.join(tmp, "probe.npz")
        np.savez(probe_path, images=probe.astype(np.float32))
        info, arrays = run_child(staging, profile,
                                 [os.path.join(m["run_dir"], m["card"]["probe"]["file"])
                                  for m in members], probe_path, reference)
    scores = arrays["reference"]
    labels = np.argmax(scores, axis=1).astype(np.int64)
    goldens = []
    for m in members:
        with np.load(os.path.join(m["run_dir"], m["card"]["probe"]["file"])) as data:
            goldens.append({"label": m["label"], "goldens": data["probabilities"],
                            "tolerance": float(m["card"]["probe"]["tolerance"])})

    def hint(i, diff):
        return _mismatch_hint(members[i], arrays["hint_diffs"][i], goldens[i]["tolerance"])

    result = compare(info, arrays, profile, goldens, scores, hint)
    checks.extend(result.checks)
    timing["selfcheck_s"] = round(time.time() - t, 3)
    if result.failures:
        raise CheckFailed("Self-check failed; no zip was written. %s" % " ".join(result.failures))
    say("self-check passed: goldens reproduced (max difference %.2g), ensemble equals leafsub's "
        "runtime (max difference %.2g, tolerance %.2g)" % (
            max(result.member_diffs), result.ensemble_diff, result.tolerance))

    # The probe batch with what predict() must answer, and the manifest, go in the zip.
    with open(os.path.join(staging, PROBE_NAME), "wb") as f:
        f.write(_npz_bytes({"images": probe.astype(np.float32), "labels": labels,
                            "scores": scores}))
    versions = dict(info.get("versions") or {}, leafsub=__version__, numpy=np.__version__)
    versions["python"] = versions.get("python") or platform.python_version()
    top_files = sorted(n for n in os.listdir(staging) if os.path.isfile(os.path.join(staging, n)))
    manifest = {
        "leafsub_manifest": 1,
        "profile": profile["name"],
        "versions": versions,
        "members": [{"dir": m["dir"], "name": m["name"], "card": m["card"],
                     "preprocess": m["preprocess"], "preprocess_source": m["preprocess_source"],
                     "files": {m["dir"] + "/" + rel: digest for rel, _, digest in m["files"]
                               if digest}} for m in members],
        "combine": combine_name,
        "weights": weights,
        "tta": list(views),
        "chunk_size": chunk,
        "files": {name: sha256_file(os.path.join(staging, name)) for name in top_files},
        "probe": {"file": PROBE_NAME, "count": int(len(probe)), "tolerance": tolerance},
    }
    with open(os.path.join(staging, MANIFEST_NAME), "w", encoding="utf-8", newline="\n") as f:
        f.write(dumps(manifest))
    # The zip's files: what was staged, plus those two (nothing the child may have left).
    keep = before | {PROBE_NAME, MANIFEST_NAME}
    entries = [e for e in zipwrite.entries_from_tree(staging) if e.name in keep]

    # 6. the zip -------------------------------------------------------------------------
    t = time.time()
    entries = zipwrite.plan(entries, effective)
    say("writing %s (%d entries, compression %s)" % (output, len(entries), effective))

    def verify(tmp, stats):
        if stats.size > limit:
            sizes = [("%s (%s)" % (m["dir"], m["given"]),
                      sum(e.compressed for e in entries if e.name.startswith(m["dir"] + "/")))
                     for m in members]
            sizes.append(("model.py + manifest + probe",
                          sum(e.compressed for e in entries if "/" not in e.name)))
            checks.append({"name": "size", "status": "fail",
                           "detail": "%s, limit %s" % (_mb(stats.size), _mb(limit))})
            raise _size_error(profile, stats.size, limit, sizes, members, effective, 0,
                              actual=True)

    stats, digest = zipwrite.write_zip_atomic(output, entries, effective, workers=workers,
                                              planned=True, verify=verify)
    timing["zip_s"] = round(time.time() - t, 3)
    timing["total_s"] = round(time.time() - started, 3)
    checks.append({"name": "size", "status": "pass",
                   "detail": "%s of %s allowed" % (_mb(stats.size), _mb(limit))})

    member_info = []
    for m in members:
        prefix = m["dir"] + "/"
        member_info.append({
            "name": m["name"], "run_dir": m["run_dir"], "dir": m["dir"],
            "input_size": m["input_size"], "input_shape": m["input_shape"],
            "output": m["output"], "preprocess": m["preprocess"],
            "preprocess_source": m["preprocess_source"], "bytes": m["bytes"],
            "zip_bytes": sum(e.compressed for e in entries if e.name.startswith(prefix)),
        })
    other = [e for e in entries if "/" not in e.name]
    files = [{"name": e.name, "bytes": e.size, "zip_bytes": e.compressed,
              "method": "deflate" if e.method == zipwrite.DEFLATED else "store"}
             for e in other]
    result_obj = BuildResult(
        path=output, sha256=digest, size_bytes=stats.size, profile=profile["name"],
        members=member_info, files=files, combine=combine_name, weights=weights, tta=list(views),
        compression={"policy": compression, "effective": effective,
                     "deflated_entries": stats.deflated_entries,
                     "entries": stats.entries, "zip64": stats.zip64, "raw_bytes": stats.raw_bytes},
        checks=checks, selfcheck=result.to_dict(), limit_bytes=limit, timing=timing, notes=notes)
    if json_path:
        write_atomic(json_path, dumps(result_obj.to_dict()))
    return result_obj


def _probe_images(first, profile):
    """The build's probe batch at the profile's input shape, integer values in 0-255.

    Member 1's probe images (resized) when they are real images, else the fixed
    synthetic batch. Integer values, so that a uint8 platform sees the same batch.
    """
    from ..datasets import resize_for_data_pack
    from ..exporter.export import synthetic_probe

    card = first["card"]
    if "shape" in card["input"]:  # not an image: member 1's probe samples, as they are
        with np.load(os.path.join(first["run_dir"], card["probe"]["file"])) as data:
            return np.asarray(data["images"], dtype=np.float32)
    h, w = profile["input"]["shape"][:2]
    count = int(card["probe"]["count"])
    if card["probe"]["source"] == "user":
        with np.load(os.path.join(first["run_dir"], card["probe"]["file"])) as data:
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

    declared = member["preprocess"]["mode"]
    card_mode = member["card"]["preprocess"]["mode"]
    text = "model.py preprocesses it with %r (from %s)" % (declared, member["preprocess_source"])
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


# --------------------------------------------------------------------------- CLI

def _print_summary(result):
    click.echo("built %s for profile %s" % (result.path, result.profile))
    click.echo("  sha256 %s" % result.sha256)
    desc = "%d model%s, TTA %s" % (len(result.members), "" if len(result.members) == 1 else "s",
                                   "+".join(result.tta))
    if len(result.members) > 1:
        desc += ", combine %s" % result.combine
        if result.weights is not None:
            desc += " (weights %s)" % ", ".join("%g" % w for w in result.weights)
    click.echo("  %s" % desc)
    width = max(len(m["dir"]) for m in result.members)
    for m in result.members:
        size = ("%dx%d" % tuple(m["input_size"]) if m["input_size"] else
                "x".join(map(str, m["input_shape"])))
        click.echo("  %-*s  %-16s %9s %-8s %10s  (in the zip %s)" % (
            width, m["dir"], m["name"][:16], size, m["preprocess"]["mode"], _mb(m["bytes"]),
            _mb(m["zip_bytes"])))
    other = sum(f["zip_bytes"] for f in result.files)
    click.echo("  %-*s  %s  %s" % (width, "other", ", ".join(f["name"] for f in result.files),
                                   _mb(other)))
    click.echo("  total %s of %s allowed (%.1f %%), %d entries, compression %s (%d deflated)" % (
        _mb(result.size_bytes), _mb(result.limit_bytes),
        100.0 * result.size_bytes / result.limit_bytes, result.compression["entries"],
        result.compression["policy"], result.compression["deflated_entries"]))
    click.echo("self-check (rendered model.py in a fresh Python process):")
    for check in result.checks:
        click.echo("  %-4s %s: %s" % (check["status"], check["name"], check["detail"]))
    click.echo("  timing: %s" % ", ".join("%s %.1f s" % (k[:-2], v)
                                          for k, v in result.timing.items()))
    for note in result.notes:
        click.echo("note: %s" % note, err=True)


@click.command("build")
@click.option("--models", "-m", "models", required=True, multiple=True,
              metavar="RUN_DIR[,RUN_DIR...]",
              help="Run dirs written by 'leafsub export', in ensemble order (comma-separated or "
                   "repeated).")
@click.option("--weights", metavar="W1,W2,...",
              help="One weight per model (normalised); implies --combine weighted.")
@click.option("--combine", metavar="METHOD",
              help="mean (default), weighted, geometric, vote, or MODULE:FUNCTION: your own "
                   "f(probabilities, weights) -> [N, C] scores in MODULE.py (current folder), "
                   "copied next to model.py.")
@click.option("--tta", metavar="VIEW[,VIEW...]",
              help="Test-time augmentation views, averaged per model: identity, hflip, vflip, "
                   "rot90, rot180, rot270, crop_center, crop_tl, crop_tr, crop_bl, crop_br "
                   "(default identity).")
@click.option("--preprocess", metavar="MODE[,MODE...]",
              help="Override the cards' preprocessing, one per model: caffe, tf, torch, rescale, "
                   "none, an architecture (resnet50, ...), or 'card' to keep it. The goldens "
                   "must still be reproduced.")
@click.option("--profile", metavar="NAME|FILE",
              help="Challenge profile: an2dl-2021, an2dl-2022 (default), an2dl-2022-ts, "
                   "an2dl-2023, an2dl-2024, generic, or your own profile.json.")
@click.option("-o", "--output", default="submission.zip", show_default=True,
              type=click.Path(dir_okay=False), help="The zip to write.")
@click.option("--compression", type=click.Choice(list(zipwrite.POLICIES)), default="auto",
              show_default=True,
              help="auto: deflate small files, and large ones when a compressed sample saves "
                   ">= 12 % (weights barely compress); deflate: everything; store: nothing.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write the result (or the failure) as JSON.")
@click.option("--force", is_flag=True, help="Replace an existing output zip.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
def build_command(models, weights, combine, tta, preprocess, profile, output, compression,
                  json_path, force, quiet):
    """Build a CodaLab submission zip from exported run dirs.

    The zip holds model.py (leafsub's runtime + this build's settings + the
    profile's class), the SavedModels in SubmissionModel[i]/, metadata when the
    profile wants it, leafsub-manifest.json and leafsub-probe.npz. Before the
    zip is written, the rendered model.py is imported in a fresh Python process
    and must reproduce every model's goldens and leafsub's own computation of
    the ensemble. The same inputs give a byte-identical zip.

    \b
    Examples:
      leafsub build -m runs/resnet -o submission.zip
      leafsub build -m runs/a,runs/b,runs/c --weights 0.5,0.3,0.2 --tta identity,hflip \\
          --profile an2dl-2022 -o submission.zip --force

    Exit codes: 0 built and checked, 1 a check failed (goldens, size limit),
    2 bad arguments or run dirs.
    """
    result = build(list(models), weights=weights, combine=combine, tta=tta, profile=profile,
                   output=output, json_path=json_path, force=force, compression=compression,
                   preprocess=preprocess, progress=not quiet)
    _print_summary(result)


# --------------------------------------------------------------------------- non-image inputs

def _features(card):
    """How many numbers a per-channel (image) or per-feature (any other input) affine takes."""
    return int(card["input"]["shape"][-1]) if "shape" in card["input"] else 3


def _tensor_input(card, run, profile, views, spec):
    """For a model or profile whose input is not an image: check they agree; True if so.

    Raises:
      UsageError when one is an image and the other not, the shapes differ, TTA views are
      asked for, or an image preprocessing is declared.
    """
    from ..profiles import is_image

    model_image = "shape" not in card["input"]
    if model_image and is_image(profile):
        return False
    if model_image != is_image(profile):
        what = ("an image model (%dx%dx%d)" % (card["input"]["height"], card["input"]["width"],
                                               card["input"]["channels"]) if model_image
                else "a model of %s samples" % list(card["input"]["shape"]))
        raise UsageError("%s: %s, but profile %s feeds predict() %s. Pass the profile of this "
                         "challenge (--profile)." % (
                             run, what, profile["name"], "images" if is_image(profile) else
                             "samples of shape %s" % list(profile["input"]["shape"])))
    if list(card["input"]["shape"]) != list(profile["input"]["shape"]):
        raise UsageError("%s: the model takes samples of shape %s, profile %s feeds %s. Export a "
                         "model for this challenge, or pass its profile (--profile)."
                         % (run, list(card["input"]["shape"]), profile["name"],
                            list(profile["input"]["shape"])))
    if list(views) != ["identity"]:
        raise UsageError("--tta %s: test-time augmentation views are image transforms (flips, "
                         "rotations, crops); profile %s's input is not an image. Drop --tta."
                         % (",".join(views), profile["name"]))
    if spec["mode"] not in ("none", "affine"):
        raise UsageError("%s: preprocessing %r is an image pipeline; a model of samples takes "
                         "'none' or 'affine' (keep the card's: --preprocess card)."
                         % (run, spec["mode"]))
    return True


# --------------------------------------------------------------------------- torch

# Spec fields only a torch card has (runtime_torch.py): kept through the build.
TORCH_SPEC_KEYS = ("layout", "resize", "crop")


def check_framework(cards, runs, profile):
    """Every member runs with the profile's framework (a TorchScript file is no SavedModel)."""
    want = profile.get("framework", "tensorflow")
    for card, run in zip(cards, runs):
        have = card.get("framework", "tensorflow")
        if have != want:
            raise UsageError(
                "%s: a %s model, but profile %s runs %s submissions. Pass a %s profile (e.g. "
                "--profile %s), or export the model with %s." % (
                    run, have, profile["name"], want, have,
                    "torch-generic" if have == "torch" else "an2dl-2022",
                    "leafsub.export(model, ...) from Keras" if want == "tensorflow"
                    else "leafsub.export(torch_module, ...)"))
