"""leafsub runtime, torch: the operations the runtime core (``spec.py``) runs on.

``TorchOps`` fills in ``spec.Ops``'s table with torch; ``Member`` is ``spec.BaseMember``
over it and a TorchScript file. Preprocessing, TTA and ensembling are ``spec.py``'s, the
same as a TensorFlow submission's: torchvision's ToTensor/Normalize/Resize/CenterCrop are
plain arithmetic there. It imports only the standard library, numpy and torch (no
torchvision: the platform may not have it).

Images are channels last inside the runtime; ``load_torchscript`` hands the model the
layout it was exported with (``"NCHW"`` for a usual ``torch.nn`` CNN).
"""

import os
import warnings

import numpy as np
import torch

# --- leafsub: spec import --- (model.py holds spec.py's text just above instead)
try:
    from .spec import *  # noqa: F401,F403  (leafsub.submission_template.spec)
except ImportError:  # a copy beside leafsub_spec.py: the evaluator's child, the self-check
    from leafsub_spec import *  # noqa: F401,F403
# --- end of the spec import ---

MODEL_FILE = "model.pt"


def to_layout(batch, layout):
    """A channels-last batch in the model's layout (``"NCHW"`` or ``"NHWC"``)."""
    if layout == "NHWC":
        return batch
    if layout == "NCHW":
        return batch.permute(0, 3, 1, 2).contiguous()
    raise ValueError("layout %r is not one of %s" % (layout, ", ".join(LAYOUTS)))


def load_torchscript(path, layout="NCHW"):
    """Load ``path/model.pt`` (TorchScript) for inference; return ``f(batch) -> np.ndarray``.

    ``f`` takes a preprocessed channels-last batch and hands the model ``layout``.
    ``torch.jit.load`` needs neither the model's Python class nor torchvision.
    """
    file = os.path.join(str(path), MODEL_FILE) if os.path.isdir(str(path)) else str(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 nudges to torch.export
        module = torch.jit.load(file, map_location="cpu")
    module.eval()

    def call(batch):
        x = to_layout(TorchOps.as_batch(batch), layout)
        with torch.inference_mode():
            y = module(x)
        return y.detach().cpu().numpy()

    call.module = module
    return call


class TorchOps(Ops):
    """spec.Ops's framework operations, in torch (channels-last tensors)."""

    @staticmethod
    def as_batch(images):
        x = TorchOps.as_samples(images)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError("expected images of shape [N, H, W, C], got shape %s"
                             % (tuple(x.shape),))
        return x

    @staticmethod
    def as_samples(x):
        x = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x, copy=True))
        return x if x.dtype == torch.float32 else x.to(torch.float32)

    @staticmethod
    def channels_last(x):
        return x.permute(0, 2, 3, 1)

    @staticmethod
    def interpolate(x, size, method):
        # antialias for bilinear and bicubic, as torchvision's Resize does on tensors
        kwargs = {"align_corners": False, "antialias": True} if method in (
            "bilinear", "bicubic") else {}
        y = torch.nn.functional.interpolate(x.permute(0, 3, 1, 2), size=size, mode=method,
                                            **kwargs)
        return y.permute(0, 2, 3, 1).contiguous()

    @staticmethod
    def flip(x, axis):
        return x.flip(axis)

    @staticmethod
    def rot90(x, k):
        return torch.rot90(x, k=k, dims=(1, 2))

    @staticmethod
    def concat(tensors):
        return torch.cat(tensors, dim=0)

    @staticmethod
    def constant(values):
        return torch.tensor(values, dtype=torch.float32)

    @staticmethod
    def load(path, spec):
        return load_torchscript(path, spec.get("layout", "NCHW"))


class Member(BaseMember):
    """One model of a submission: a TorchScript file, with its preprocessing and output kind."""

    ops = TorchOps


# leafsub's checks call the runtime by module-level names (rt.preprocess(x, spec), ...).
resize, center_crop, normalize, preprocess = (
    TorchOps.resize, TorchOps.center_crop, TorchOps.normalize, TorchOps.preprocess)
geometry, tta_batch, tta_view = TorchOps.geometry, TorchOps.tta_batch, TorchOps.tta_view
