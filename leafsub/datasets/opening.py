"""Opening a pack: a path (class folders, .npz, .h5) or in-memory arrays, checked once.

:func:`open_pack` and :func:`from_arrays` give image packs; :func:`open_tensor_pack` and
:func:`tensors_from_arrays` give :class:`~leafsub.datasets.tensors.TensorPack` for a
challenge whose input is not an image.
"""

import os

import numpy as np

from ..errors import UsageError
from .conventions import check_image_shape, check_sample_array, labels_from
from .folder import open_folder
from .h5 import open_h5
from .npz import open_npz
from .pack import ArrayPack
from .sources import ArraySource
from .tensors import TensorPack


def open_pack(path):
    """Open a data pack: a folder of class sub-folders, an .npz or an .h5 file.

    Raises:
      UsageError naming the path: missing, unknown format, missing keys (with the keys found
      and the names accepted), images not [N, H, W, 3] / [N, H, W], labels of another
      length, an empty pack.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return open_folder(path)
    if not os.path.exists(path):
        raise UsageError("%s: no such file or folder. A data pack is a folder of class "
                         "sub-folders, an .npz or an .h5 file." % path)
    with open(path, "rb") as f:
        magic = f.read(8)
    lower = path.lower()
    if magic.startswith(b"PK") or lower.endswith(".npz"):
        return open_npz(path)
    if magic.startswith(b"\x89HDF") or lower.endswith((".h5", ".hdf5", ".hdf")):
        return open_h5(path)
    raise UsageError("%s: not a data pack leafsub reads. Give a folder of class sub-folders "
                     "(one folder per class), an .npz with 'images' and 'labels', or an .h5 "
                     "with the same datasets." % path)


def from_arrays(images, labels, class_names=None, path="<arrays>"):
    """A pack over in-memory arrays (same checks and conversions as an .npz)."""
    images = np.asarray(images)
    shape, notes = check_image_shape(images.shape, path)
    if shape[0] == 0:
        raise UsageError("%s: empty data pack: 0 images." % path)
    labels, class_names, n_classes, label_notes = labels_from(labels, shape[0], class_names, path)
    return ArrayPack(path, "arrays", ArraySource(images), labels, class_names,
                     notes + label_notes, n_classes)


def open_tensor_pack(path, sample_shape=None):
    """Open a data pack of non-image samples: an .npz or .h5 with the samples and labels.

    Keys as for image packs: the samples under ``x`` (or ``images``, ``X``, ``data``, ...),
    the labels under ``y`` (or ``labels``, ...), optional ``class_names``.

    Args:
      path: the .npz / .h5 file.
      sample_shape: the per-sample shape the profile feeds (e.g. ``(36, 6)``); a pack of
        another shape is refused, naming both.

    Returns:
      a :class:`TensorPack`.

    Raises:
      UsageError naming the file: a folder, missing keys, an object or string array,
      NaN/infinite values, labels of another length, an empty pack, the wrong shape.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UsageError("%s: a folder, but this challenge's input is not an image: give an .npz "
                         "(np.savez(path, x=samples, y=labels)) or an .h5 with the samples and "
                         "labels." % path)
    if not os.path.exists(path):
        raise UsageError("%s: no such file. A data pack for this challenge is an .npz or an .h5 "
                         "with the samples (x) and labels (y)." % path)
    with open(path, "rb") as f:
        magic = f.read(8)
    lower = path.lower()
    if magic.startswith(b"PK") or lower.endswith(".npz"):
        pack = open_npz(path, tensor=True)
    elif magic.startswith(b"\x89HDF") or lower.endswith((".h5", ".hdf5", ".hdf")):
        pack = open_h5(path, tensor=True)
    else:
        raise UsageError("%s: not a data pack leafsub reads. Give an .npz saved with "
                         "np.savez(path, x=samples, y=labels), or an .h5 with the same "
                         "datasets." % path)
    if sample_shape is not None and pack.sample_shape != tuple(int(d) for d in sample_shape):
        raise UsageError("%s: the samples have shape %s each; the profile feeds predict() "
                         "samples of shape %s. Use the data of this challenge, or the profile "
                         "that matches the data (--profile)." % (
                             pack.where, list(pack.sample_shape), list(sample_shape)))
    return pack


def tensors_from_arrays(samples, labels, class_names=None, path="<arrays>"):
    """A :class:`TensorPack` over in-memory arrays (same checks as an .npz)."""
    samples = np.asarray(samples)
    shape, notes = check_sample_array(samples.shape, samples.dtype, path)
    if shape[0] == 0:
        raise UsageError("%s: empty data pack: 0 samples." % path)
    labels, class_names, n_classes, label_notes = labels_from(labels, shape[0], class_names, path)
    return TensorPack(path, "arrays", ArraySource(samples), labels, class_names,
                      notes + label_notes, n_classes)
