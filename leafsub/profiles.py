"""Challenge profiles: the platform's protocol as data (see schemas/profile.schema.json)."""

import copy
import os
from importlib import resources

from .errors import UsageError
from .jsonfiles import read_json, validate

DEFAULT_PROFILE = "an2dl-2022"

_DEFAULTS = {
    ("input", "channel_order"): "RGB",
    ("input", "batch_size"): 32,
    ("interface", "working_dir"): "submission",
    ("interface", "args"): ["X"],         # predict's positional arguments, fed in this order
    ("input", "batched"): True,           # False: one whole sample per call, no batch axis
    ("output", "container"): "any",
}


def builtin_names():
    """Names of the profiles shipped with leafsub, sorted."""
    folder = resources.files("leafsub").joinpath("profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _default_kind(shape):
    """image for [h, w, 1|3], tensor for anything else (a time series [steps, features], ...)."""
    return "image" if len(shape) == 3 and shape[-1] in (1, 3) else "tensor"


def _with_defaults(profile):
    profile = copy.deepcopy(profile)
    profile["input"].setdefault("kind", _default_kind(profile["input"]["shape"]))
    for (section, key), value in _DEFAULTS.items():
        if key == "channel_order" and profile["input"]["kind"] != "image":
            continue  # channels have no order in a time series
        profile[section].setdefault(key, copy.deepcopy(value))
    return profile


def _validated(data, source):
    """Schema validation, with one clearer message for the commonest mix-up."""
    inp = data.get("input") if isinstance(data, dict) else None
    if isinstance(inp, dict) and isinstance(inp.get("shape"), list) and "channel_order" in inp \
            and inp.get("kind", _default_kind(inp["shape"])) == "tensor":
        raise UsageError("%s: invalid profile: field 'input.channel_order' is for images, and "
                         "this input (shape %s) is a tensor. Remove channel_order (and set "
                         "\"kind\": \"image\" if it really is an image)."
                         % (source, inp["shape"]))
    return _with_defaults(validate(data, "profile", source, "profile"))


def is_image(profile):
    """Whether the profile's input is an image batch (resize, channels, TTA and the
    mismatch detective apply) rather than any other tensor (a time series, features)."""
    return profile["input"].get("kind", "image") == "image"


def sample_shape(profile):
    """The shape of one input sample, without the batch axis (a tuple of ints)."""
    return tuple(None if d is None else int(d) for d in profile["input"]["shape"])


def is_values(profile):
    """Whether ``predict`` returns values (a forecast), scored by MSE/RMSE/MAE, not labels."""
    return profile["output"]["kind"] == "values"


def load_profile(name_or_path=None):
    """Load a built-in profile by name, or a user's profile from a JSON file.

    Args:
      name_or_path: e.g. ``"an2dl-2022"`` or ``"my-challenge.json"``; None for
        the default (``an2dl-2022``).

    Returns:
      The validated profile dict, optional fields filled with their defaults.

    Raises:
      UsageError naming the unknown profile (and the built-in ones) or the
      invalid file and field.
    """
    name_or_path = name_or_path or DEFAULT_PROFILE
    if isinstance(name_or_path, dict):
        return _validated(name_or_path, "<profile dict>")
    text = os.fspath(name_or_path)
    if text.endswith(".json") or os.sep in text or os.path.exists(text):
        data = read_json(text, "challenge profile")
        return _validated(data, text)
    if text not in builtin_names():
        raise UsageError("Unknown profile %r. Built-in profiles: %s; or pass your own as "
                         "--profile path/to/profile.json (copy the 'generic' one to start)."
                         % (text, ", ".join(builtin_names())))
    source = resources.files("leafsub").joinpath("profiles", text + ".json")
    with resources.as_file(source) as path:
        data = read_json(path, "built-in profile")
    return _validated(data, str(source))


def with_classes(profile, count, source):
    """The profile with ``count`` classes, for a profile whose ``classes.from_models`` says
    that the count comes from the models or the data (generic, torch-generic).

    ``count`` None: the profile as it is. A profile that fixes its classes (a challenge's)
    keeps them: asking for another count is a UsageError naming ``source``.
    """
    if count is None:
        return profile
    count = int(count)
    if count < 2:
        raise UsageError("%s %d: a classifier has at least 2 classes." % (source, count))
    classes = profile["classes"]
    if count == classes["count"]:
        return profile
    if not classes.get("from_models"):
        raise UsageError("%s %d: profile %s is a challenge's and has %d classes; the class "
                         "count can only be set for a generic profile (%s)." % (
                             source, count, profile["name"], classes["count"],
                             ", ".join(n for n in builtin_names() if n.endswith("generic"))))
    profile = copy.deepcopy(profile)
    profile["classes"]["count"] = count
    names = profile["classes"].get("names")
    if names and len(names) != count:
        del profile["classes"]["names"]
    return profile


def profile_option_help(default=True):
    """The --profile help text, from the registry (the profiles/ folder), not a hand list."""
    names = builtin_names()
    return ("Challenge profile: a built-in one (%s%s) or your own profile.json. 'leafsub "
            "profiles' describes each." % (", ".join(names), "; default %s" % DEFAULT_PROFILE
                                           if default else ""))


def describe_builtins():
    """One line per built-in profile: its name, framework and title (for --help texts)."""
    lines = []
    for name in builtin_names():
        prof = load_profile(name)
        lines.append("%s (%s): %s" % (name, "PyTorch" if prof.get("framework") == "torch"
                                      else "TensorFlow", prof.get("title", "")))
    return lines


def model_dir(profile, index, count):
    """The folder name of member ``index`` (1-based) in a submission of ``count`` models."""
    if count == 1:
        return profile["layout"]["model_dir"]
    return profile["layout"]["multi_model_dir"].replace("{i}", str(index))
