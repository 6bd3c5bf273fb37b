"""The platform's protocol as one immutable object, built once from a validated profile.

Every path that runs a submission (``leafsub evaluate``, the build's self-check, the
organizer's ingestion program, ``leafsub compare``) asks this object for the child's
request; the organizer's bundle writes ``Protocol.to_json()`` as its ``protocol.json``.
Every default is resolved here, at the boundary, so callers never re-default a field
(the way scikit-learn's ``check_array`` hands back something the caller can trust).

Example::

    proto = Protocol.from_profile(load_profile("an2dl-2023"))
    proto.input.describe()   # 'tf.Tensor float32 0-255 RGB, [batch, 96, 96, 3]'
    proto.child_request(folder="/tmp/x/submission")

``environment`` is the platform's own environment (its packages, each with its
evidence): ``leafsub evaluate`` replays in it by default (``evaluator/runtimes.py``).
Later fields (forecasting outputs and predict arguments) are added to the dataclasses
below and to ``from_profile``; nothing else builds a request.

Standard library only, and Python 3.8 syntax: the bundle's ingestion program runs a copy
of this file (``leafsub_protocol.py``) on the platform, and builds its request from
``protocol.json`` with :func:`request_from_json`, the function ``child_request`` uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# protocol.json's format: 2 is ``to_json()`` (1, the bundle's own dict, had no framework
# and no layout). A reader refuses a version it does not know.
PROTOCOL_VERSION = 2

FRAMEWORKS = ("tensorflow", "torch")


def _default_kind(shape):
    """image for [h, w, 1|3], tensor for anything else (a time series [steps, features], ...)."""
    return "image" if len(shape) == 3 and shape[-1] in (1, 3) else "tensor"


def _number(value):
    return ("%d" % value) if float(value).is_integer() else ("%g" % value)


def _environment(profile):
    """The profile's ``environment``, or one made of the legacy ``tensorflow``/``torch``
    version field (a user's profile written before ``environment`` existed)."""
    import copy
    if profile.get("environment"):
        return copy.deepcopy(profile["environment"])
    for name in ("tensorflow", "torch"):
        if profile.get(name):
            return {"packages": [{"name": name, "version": profile[name],
                                  "evidence": "the profile's '%s' field" % name}]}
    return {}


@dataclass(frozen=True)
class Interface:
    """How the platform reaches the submission: ``module.class_name(...).method(X)``."""
    module: str
    class_name: str
    constructor: str          # "path": Class(path_to_submission); "none": Class()
    method: str
    working_dir: str          # "submission" or "scratch"
    args: tuple = ("X",)      # predict's positional arguments, each fed from the data pack's
    #                           array of that name (the first is the input; e.g. X, categories)

    def call_text(self):
        """``model(path)`` or ``Model()``: the constructor call, as messages quote it."""
        return "%s(path)" % self.class_name if self.constructor == "path" \
            else "%s()" % self.class_name


@dataclass(frozen=True)
class Input:
    """What the platform feeds ``predict``: every field resolved (no defaults left)."""
    kind: str                 # "image" or "tensor"
    shape: tuple              # one sample, no batch axis
    container: str            # "numpy" or "tensor" (the framework's tensor)
    dtype: str
    range: tuple | None       # (lo, hi); None: any finite value (tensors only)
    channel_order: str | None  # "RGB"/"BGR" for images, None otherwise
    layout: str               # "NHWC" or "NCHW" (images); "NHWC" means as stored otherwise
    batch_size: int
    batched: bool = True      # False: predict gets one sample (a whole series [T, F]), no batch axis

    @property
    def is_image(self):
        return self.kind == "image"

    @property
    def unit(self):
        """What one sample is called in messages: ``"images"`` or ``"samples"``."""
        return "images" if self.is_image else "samples"

    def describe(self, framework="tensorflow"):
        """One line for messages and model.py: container, dtype, range, shape."""
        container = {"tensor": "torch.Tensor" if framework == "torch" else "tf.Tensor",
                     "numpy": "numpy.ndarray"}[self.container]
        shape = list(self.shape)
        if self.is_image and self.layout == "NCHW":
            shape = [shape[2], shape[0], shape[1]]
        dims = "[%s]" % ", ".join(["batch"] * self.batched + [
            "T" if d is None else str(d) for d in shape])
        if self.range is None:
            values = "any finite values"
        else:
            values = "%s-%s" % (_number(self.range[0]), _number(self.range[1]))
            if self.is_image:
                values += " " + self.channel_order
        return "%s %s %s, %s" % (container, self.dtype, values, dims)


@dataclass(frozen=True)
class Output:
    """What the platform expects back."""
    kind: str                 # "labels" (one class index per sample), "probabilities" or
    #                           "values" (a float array per sample: a forecast)
    container: str            # "numpy", "tensor" or "any"
    shape: tuple | None = None  # values: one sample's output shape; None: the data's targets'
    metric: str | None = None   # values: "mse", "rmse" or "mae" (the leaderboard's)

    @property
    def is_values(self):
        return self.kind == "values"


@dataclass(frozen=True)
class Protocol:
    """One challenge's protocol: the single source every runner of a submission reads."""
    name: str
    framework: str
    interface: Interface
    input: Input
    output: Output
    classes: dict = field(default_factory=dict)
    required_files: tuple = ()
    time_s: float = 1200.0
    memory_mb: float = 12000.0
    zip_mb: float | None = None
    assumptions: tuple = ()
    framework_version: str | None = None   # the profile's pinned "tensorflow" or "torch"
    # The profile's "environment": {"python": {...}, "packages": [{"name", "version",
    # "evidence", "source", "via"?, "requires"?}]}; {} when the profile names none.
    environment: dict = field(default_factory=dict)

    def platform_packages(self):
        """``{name: version or None}`` of the platform's environment (``python`` included
        when known): what a replay's versions are compared with."""
        from .evaluator.runtimes import platform_packages
        return platform_packages(self.environment)

    @classmethod
    def from_profile(cls, profile):
        """The protocol of a profile dict as ``leafsub.profiles.load_profile`` returns it."""
        if isinstance(profile, Protocol):
            return profile
        inp, iface, out = profile["input"], profile["interface"], profile["output"]
        shape = tuple(None if d is None else int(d) for d in inp["shape"])
        kind = inp.get("kind") or _default_kind(shape)
        image = kind == "image"
        rng = inp.get("range")
        if rng is None and image:
            rng = (0, 255)
        limits = profile.get("limits") or {}
        framework = profile.get("framework", "tensorflow")
        return cls(
            name=profile["name"],
            framework=framework,
            interface=Interface(module=iface["module"], class_name=iface["class_name"],
                                constructor=iface["constructor"], method=iface["method"],
                                working_dir=iface.get("working_dir", "submission"),
                                args=tuple(iface.get("args") or ("X",))),
            input=Input(kind=kind, shape=shape, container=inp["container"], dtype=inp["dtype"],
                        range=tuple(rng) if rng is not None else None,
                        channel_order=inp.get("channel_order", "RGB") if image else None,
                        layout=inp.get("layout", "NHWC"),
                        batch_size=int(inp.get("batch_size", 32)),
                        batched=bool(inp.get("batched", True))),
            output=Output(kind=out["kind"], container=out.get("container", "any"),
                          shape=tuple(int(d) for d in out["shape"]) if out.get("shape")
                          else None,
                          metric=out.get("metric", "mse") if out["kind"] == "values" else None),
            classes=dict(profile.get("classes") or {}),
            required_files=tuple(profile["layout"]["required_files"]),
            time_s=float(limits.get("time_s", 1200)),
            memory_mb=float(limits.get("memory_mb", 12000)),
            zip_mb=limits.get("zip_mb"),
            assumptions=tuple(profile.get("assumptions") or ()),
            framework_version=profile.get(framework),
            environment=_environment(profile),
        )

    def child_request(self, **extra):
        """The request the child harness (the platform's stand-in) reads, plus ``extra``
        (the folder, cwd, readable paths: where this run happens, not what the platform does)."""
        return request_from_json(self.to_json(), **extra)

    def to_json(self):
        """A JSON-ready dict of the whole protocol (the bundle's ``protocol.json`` holds it)."""
        data = asdict(self)
        data["leafsub_protocol"] = PROTOCOL_VERSION
        return data


def request_from_json(data, **extra):
    """The child harness's request from a protocol as ``Protocol.to_json`` wrote it.

    The one place a request is built: ``Protocol.child_request`` calls it, and so does
    the bundle's ingestion program, which has only ``protocol.json`` (and this file).

    Raises:
      ValueError when ``data`` is not a protocol of ``PROTOCOL_VERSION``.
    """
    version = data.get("leafsub_protocol")
    if version != PROTOCOL_VERSION:
        raise ValueError("protocol version %r, expected %d: write the bundle again with "
                         "leafsub bundle" % (version, PROTOCOL_VERSION))
    iface, inp = data["interface"], data["input"]
    request = {key: iface[key] for key in ("module", "class_name", "constructor", "method")}
    request.update({key: inp[key] for key in ("container", "dtype", "batch_size", "kind",
                                              "channel_order", "layout")})
    request.update(shape=list(inp["shape"]),
                   range=list(inp["range"]) if inp["range"] is not None else None,
                   framework=data["framework"], args=list(iface["args"]),
                   batched=inp["batched"], output_kind=data["output"]["kind"])
    request.update(extra)
    return request
