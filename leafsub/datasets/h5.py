"""The ``.h5`` / ``.hdf5`` layout: the same key names as an ``.npz``, read by slices.

A dataset inside a group is found by its last name component; class names may also be
the file's ``class_names`` attribute. h5py is imported only when such a file is opened.
"""

from ..errors import UsageError
from .conventions import (CLASS_NAME_KEYS, IMAGE_KEYS, LABEL_KEYS, check_image_shape,
                          check_sample_array, decode_names, labels_from, pick_key)
from .pack import ArrayPack
from .sources import H5Source
from .tensors import TensorPack


def open_h5(path, tensor=False):
    """An :class:`ArrayPack` (a :class:`TensorPack` when ``tensor``) over an .h5 file."""
    try:
        import h5py
    except ImportError:
        raise UsageError("%s: reading .h5 data packs needs h5py (pip install h5py)." % path) from None
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UsageError("%s: cannot read it as an HDF5 file (%s)." % (path, e)) from None
    with f:
        datasets = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                datasets[name] = obj

        f.visititems(visit)
        # Top-level names first; a dataset inside a group is found by its last name component.
        by_name = {}
        for name in sorted(datasets, key=lambda s: (s.count("/"), s)):
            by_name.setdefault(name.rsplit("/", 1)[-1], name)
        keys = sorted(datasets)
        image_name = by_name[pick_key(by_name, IMAGE_KEYS, path, "images", keys)]
        label_name = by_name[pick_key(by_name, LABEL_KEYS, path, "labels", keys)]
        where = "%s (dataset %r)" % (path, image_name)
        ds = datasets[image_name]
        if ds.dtype.kind not in "iuf":
            raise UsageError("%s: images have dtype %s; expected uint8 (or float)." % (where, ds.dtype))
        shape, notes = (check_sample_array(ds.shape, ds.dtype, where) if tensor
                        else check_image_shape(ds.shape, where))
        n = shape[0]
        if n == 0:
            raise UsageError("%s: empty data pack: the images dataset has 0 images." % where)
        class_names = None
        for key in CLASS_NAME_KEYS:
            if key in by_name:
                class_names = decode_names(datasets[by_name[key]][()])
                break
        if class_names is None and "class_names" in f.attrs:
            class_names = decode_names(f.attrs["class_names"])
        labels, class_names, n_classes, label_notes = labels_from(
            datasets[label_name][()], n, class_names, "%s (dataset %r)" % (path, label_name))
        notes.extend(label_notes)
        source = H5Source(path, image_name, shape, ds.dtype)
    return (TensorPack if tensor else ArrayPack)(path, "h5", source, labels, class_names, notes,
                                                 n_classes, where=where)
