"""The mismatch detective's candidates for a torch platform, as data.

A torch submission's silent failures are the Keras ones plus one of its own: a
forgotten ``Normalize``, a forgotten ``ToTensor`` (/255), and a batch handed to
the model in the wrong axis order (``x.view(n, 3, h, w)`` on channels-last
pixels instead of ``x.permute(0, 3, 1, 2)``: no error, scrambled images).

Each candidate is a transform the harness applies (``harness.Harness._apply``) to
the RGB 0-255 batch: ``scale``/``offset`` per channel, ``channels`` (a reorder), or
``memory`` (the pixels laid out in the other axis order, in the profile's shape:
the wrong ``reshape`` turns them back into the right images). ``candidates(profile)``
gives the table of candidate specs for a profile (``detective.CANDIDATES``' format).
"""

from ..protocol import Protocol
from ..submission_template.spec import TORCH_MEAN_RGB as MEAN, TORCH_STD_RGB as STD


def _normalize(unit):
    """torchvision's Normalize(ImageNet) on values already divided by ``255 / unit``."""
    return {"scale": [unit / (255.0 * s) for s in STD], "offset": [-unit * m / s
                                                               for m, s in zip(MEAN, STD)]}


def _spec(name, transform, family, mode, aspects, consistent, finding):
    return {"name": name, "transform": transform, "family": family, "mode": mode,
            "aspects": aspects, "consistent": consistent, "what": finding, "finding": finding}


def candidates(profile):
    """The candidate specs (``detective.CANDIDATES``' format) for a torch profile, in the
    order they are tried."""
    layout = Protocol.from_profile(profile).input.layout
    other = "NHWC" if layout == "NCHW" else "NCHW"
    scrambled = (
        "the channel layout is wrong: model.py feeds the channels-last (NHWC) batch to the "
        "channels-first model with x.view/reshape(n, 3, h, w), which scrambles the pixels, "
        "instead of x.permute(0, 3, 1, 2)" if other == "NCHW" else
        "the channel layout is wrong: model.py reads the channels-first (NCHW) batch with "
        "x.view/reshape(n, h, w, 3), which scrambles the pixels, instead of "
        "x.permute(0, 2, 3, 1)")
    return [
        _spec("normalize", _normalize(1.0), "centring", "torch", ("centring", "scale"),
              ("torch",), "the model was trained on torchvision ToTensor() + Normalize(ImageNet "
              "mean, std) and model.py passes it raw 0-255 pixels"),
        _spec("normalize after /255", _normalize(255.0), "centring", None, ("centring",),
              ("torch",), "model.py divides by 255 (ToTensor) but forgets Normalize(ImageNet "
              "mean, std): the model was trained with both"),
        _spec("x/255", {"scale": [1.0 / 255.0] * 3}, "scale", "rescale", ("scale",),
              ("rescale",), "the model expects inputs in 0-1 (ToTensor) and model.py passes "
              "raw 0-255 pixels"),
        _spec("x*255", {"scale": [255.0] * 3}, "scale", None, ("scale",), ("none",),
              "double scaling: model.py divides by 255 but the model was trained on 0-255 "
              "pixels"),
        _spec("BGR", {"channels": [2, 1, 0]}, "channel order", None, ("channel order",), (),
              "the channel order is swapped: model.py feeds RGB to a model trained on BGR "
              "images (e.g. loaded with OpenCV), or the reverse"),
        # The pixels in the other axis order, in the profile's shape (see harness._layout).
        _spec(other, {"memory": other}, "layout", None, ("layout",), (), scrambled),
    ]
