"""The build's configuration, resolved from the run dirs' cards and the options.

Step 1 of ``leafsub build`` (see build.py): which members, with which preprocessing,
combined how, over which TTA views, for which profile. Every function here checks one
option against the cards and the profile and raises a UsageError (exit 2) naming the
run dir or the option and the fix; nothing here reads a model or imports TensorFlow
(the tables come from submission_template/spec.py).
"""

import ast
import dataclasses
import importlib
import os
import sys

import numpy as np

from ..errors import UsageError
from ..evaluator.checks import Check
from ..profiles import model_dir
from ..protocol import Protocol
from ..submission_template import spec as runtime_spec

# Spec fields only a torch card has (its geometry and layout): kept through the build.
TORCH_SPEC_KEYS = ("layout", "resize", "crop")


def split_list(value):
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


def parse_weights(weights, n_models):
    if weights is None:
        return None
    raw = split_list(weights)
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


def resolve_combine(combine, weights, n_models, notes):
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


def resolve_preprocess(preprocess, cards, runs):
    """The effective spec of every member and where it comes from."""
    if preprocess is None:
        overrides = [None] * len(cards)
    else:
        overrides = [preprocess] if isinstance(preprocess, dict) else split_list(preprocess)
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
    """``validate_spec`` for a member (a torch card's geometry and layout included), its
    ValueError as the user's error naming the run."""
    try:
        return runtime_spec.validate_spec(declared, features)
    except ValueError as e:
        raise UsageError("%s: %s." % (run, e)) from None


def check_classes(cards, runs, profile, notes):
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


def resolve_views(tta):
    """The TTA views (identity by default), each a view leafsub knows, none twice."""
    views = split_list(tta) or ["identity"]
    known_views = runtime_spec.TTA_VIEWS
    for view in views:
        if view not in known_views:
            raise UsageError("--tta %r is not a view leafsub knows; choose from %s."
                             % (view, ", ".join(known_views)))
    if len(set(views)) != len(views):
        raise UsageError("--tta %s: a view is listed twice (it would count double)."
                         % ",".join(views))
    return views


def check_inputs(cards, runs, specs, profile, views, checks):
    """Every member's input suits the profile's (channels; rot90/rot270 need a square input).

    A model of samples (not images) must match the profile's shape exactly
    (``tensor_input``); the TTA check is then reported as skipped in ``checks``.
    """
    for card, run, (spec, _) in zip(cards, runs, specs):
        if tensor_input(card, run, profile, views, spec):
            if not any(c["name"] == "tta" for c in checks):
                checks.append(Check("tta", "pass", "skipped: not an image profile (%s feeds "
                                    "samples of shape %s)" % (
                                        profile["name"], list(profile["input"]["shape"]))))
            continue
        if card["input"]["channels"] != profile["input"]["shape"][2]:
            raise UsageError("%s: the model takes %d-channel images, profile %s feeds %d."
                             % (run, card["input"]["channels"], profile["name"],
                                profile["input"]["shape"][2]))
        if card["input"]["height"] != card["input"]["width"] and {"rot90", "rot270"} & set(views):
            raise UsageError("%s: --tta rot90/rot270 need a square model input, this one is %dx%d."
                             % (run, card["input"]["height"], card["input"]["width"]))


@dataclasses.dataclass
class Member:
    """One model of the build: where it comes from, what model.py runs, where it goes in the zip.

    The build fills in ``files`` (staging.verify), ``bytes`` and ``estimate``
    (sizelimit.expected_size) as it goes. ``render`` reads a member as it reads one of
    CONFIG's member dicts (``member["dir"]``, ``member.get("input_shape")``):
    ``render.config_dict`` is the one projection of a member into CONFIG.
    """

    index: int
    run_dir: str
    given: str  # the run dir as the user named it
    name: str
    dir: str  # its folder in the zip
    card: dict
    preprocess: dict
    preprocess_source: str
    input_size: list  # [h, w], or None for a model whose input is not an image
    input_shape: list  # that model's sample shape, else None
    output: str
    label: str  # how messages name it
    files: list = dataclasses.field(default_factory=list)  # (rel, path, digest or None)
    bytes: int = 0
    estimate: int = 0

    def __getitem__(self, key):
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)


@dataclasses.dataclass
class BuildPlan:
    """Everything the build will write, resolved and checked from the options and the
    cards (step 1); each later step of build.py takes it.

    The size check (step 3) settles ``effective``, the compression policy the zip is
    written with.
    """

    profile: dict
    members: list  # [Member], in ensemble order
    views: list  # the TTA view names
    combine_name: str  # a runtime combiner, or "module:function"
    combine_path: str  # a user combiner's module file, copied next to model.py; else None
    weights: list  # one number per member, or None
    compression: str  # the policy asked for (zipwrite.POLICIES)
    limit: int  # the profile's limits.zip_mb, in bytes
    output: str  # the zip to write, an absolute path
    workers: int = None  # compression threads (None: all CPUs)
    effective: str = None  # the policy the size check settled on

    @property
    def module_file(self):
        """model.py's name in the zip (the profile's ``interface.module``)."""
        return self.profile["interface"]["module"] + ".py"


def plan_members(runs, shown, cards, specs, profile):
    """One Member per run dir: its card, preprocessing, input and folder in the zip."""
    members = []
    for i, (run, card, (spec, spec_source)) in enumerate(zip(runs, cards, specs), start=1):
        directory = model_dir(profile, i, len(runs))
        given = shown[i - 1]
        members.append(Member(
            index=i, run_dir=run, given=given, name=card["name"], dir=directory, card=card,
            preprocess=spec, preprocess_source=spec_source,
            input_size=None if "shape" in card["input"] else
            [card["input"]["height"], card["input"]["width"]],
            input_shape=card["input"].get("shape"), output=card["output"],
            label="member %d (%s -> %s/)" % (i, given, directory)))
    return members


# --------------------------------------------------------------------------- non-image inputs


def _features(card):
    """How many numbers a per-channel (image) or per-feature (any other input) affine takes."""
    return int(card["input"]["shape"][-1]) if "shape" in card["input"] else 3


def tensor_input(card, run, profile, views, spec):
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


def check_framework(cards, runs, profile):
    """Every member runs with the profile's framework (a TorchScript file is no SavedModel)."""
    want = Protocol.from_profile(profile).framework
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
