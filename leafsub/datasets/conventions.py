"""What a data pack's arrays must look like: key names, image shapes, labels, sizes.

Pure checks shared by every reader (.npz, .h5, in-memory arrays): they validate the
arrays once, at the boundary, and raise a UsageError naming the file and the fix.
"""

import numpy as np

from ..errors import UsageError

# File names a class folder reads, and the key names an .npz / .h5 pack may use.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
IMAGE_KEYS = ("images", "x", "X", "data", "x_test", "X_test", "imgs")
LABEL_KEYS = ("labels", "y", "Y", "targets", "y_test", "Y_test")
CLASS_NAME_KEYS = ("class_names", "classes")


def _accepted(keys):
    return ", ".join(repr(k) for k in keys)


def as_size(size):
    """A size argument as ``(H, W)`` ints: an int ``n`` is ``(n, n)``; None stays None.

    The form every pack function and tool accepts for ``size`` (``96``, ``(96, 128)``).
    """
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        return (int(size), int(size))
    h, w = size
    return (int(h), int(w))


def pick_key(keys, accepted, path, what, all_keys):
    """The first of the ``accepted`` names present in ``keys``.

    Else a UsageError listing the keys found (``all_keys``) and the names accepted, with a
    hint for the usual mistakes (a submission zip, ``np.savez`` with positional arrays).
    """
    for k in accepted:
        if k in keys:
            return k
    hint = ""
    if not all_keys and path.lower().endswith(".zip"):
        hint = (" The zip holds no .npy arrays: is it a submission zip? The data must be an .npz "
                "saved with np.savez(path, images=images, labels=labels).")
    if any(k.startswith("arr_") for k in all_keys):
        hint = (" The keys arr_0, arr_1, ... come from np.savez with positional arrays: save with "
                "np.savez(path, images=images, labels=labels) instead.")
    raise UsageError("%s: no %s found. Keys in the file: %s. Accepted names for the %s: %s.%s"
                     % (path, what, ", ".join(repr(k) for k in all_keys) or "(none)", what,
                        _accepted(accepted), hint))


def check_image_shape(shape, where):
    """(shape, notes) of an image array that is [N, H, W, 3], [N, H, W, 1] or [N, H, W].

    Else a UsageError naming ``where``, with a hint for channels-first or RGBA arrays.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4 and shape[-1] == 3:
        return shape, []
    if len(shape) == 4 and shape[-1] == 1:
        return shape, ["images are grayscale [N, H, W, 1]: repeated to 3 channels"]
    if len(shape) == 3:
        return shape, ["images are grayscale [N, H, W]: repeated to 3 channels"]
    hint = ""
    if len(shape) == 4 and shape[1] in (1, 3) and shape[-1] not in (1, 3):
        hint = " It looks channels-first: transpose it with images.transpose(0, 2, 3, 1)."
    elif len(shape) == 4 and shape[-1] == 4:
        hint = " It has 4 channels (RGBA?): keep the first three, images[..., :3]."
    raise UsageError("%s: images have shape %s; expected [N, H, W, 3] RGB (or [N, H, W] "
                     "grayscale).%s" % (where, list(shape), hint))


def decode_names(raw):
    """Class names (or string labels) stored as bytes or str, as a list of str."""
    names = []
    for v in np.asarray(raw).reshape(-1).tolist():
        names.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
    return names


def labels_from(raw, n, class_names, where):
    """Labels as class indices: (int64 [n] labels, class_names, n_classes or None, notes).

    ``raw`` may be integers [n], one-hot (or soft) [n, C] or strings, mapped through
    ``class_names`` (else their sorted values). Raises a UsageError naming ``where``.
    """
    y = np.asarray(raw)
    notes = []
    n_classes = None
    if y.dtype.kind in "SUO":
        values = decode_names(y)
        if len(values) != n:
            raise UsageError("%s: %d labels for %d images; there must be one label per image."
                             % (where, len(values), n))
        if class_names is None:
            class_names = sorted(set(values))
            notes.append("labels are strings: classes numbered in sorted order (%s)"
                         % ", ".join(class_names[:6]) + (", ..." if len(class_names) > 6 else ""))
        index = {c: i for i, c in enumerate(class_names)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            raise UsageError("%s: label(s) %s are not among the class names (%s)."
                             % (where, ", ".join(unknown[:5]), ", ".join(class_names[:10])))
        return np.asarray([index[v] for v in values], dtype=np.int64), class_names, None, notes
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if y.shape[0] != n:
            raise UsageError("%s: %d labels for %d images; there must be one label per image."
                             % (where, y.shape[0], n))
        if y.dtype.kind not in "iufb":
            raise UsageError("%s: labels have dtype %s; expected integers or one-hot rows." % (where, y.dtype))
        yf = y.astype(np.float64)
        n_classes = y.shape[1]
        labels = np.argmax(yf, axis=1).astype(np.int64)
        exact = np.all((yf == 0) | (yf == 1)) and np.all(yf.sum(axis=1) == 1)
        if not exact:
            notes.append("labels are [N, %d] but not exactly one-hot (soft labels?): the largest "
                         "entry of each row is taken as the class" % n_classes)
        else:
            notes.append("labels are one-hot [N, %d]: converted to class indices" % n_classes)
    elif y.ndim == 1:
        if y.shape[0] != n:
            raise UsageError("%s: %d labels for %d images; there must be one label per image."
                             % (where, y.shape[0], n))
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise UsageError("%s: labels are floats that are not whole numbers; expected "
                                 "class indices 0..C-1 (or one-hot rows)." % where)
        elif y.dtype.kind not in "iub":
            raise UsageError("%s: labels have dtype %s; expected class indices 0..C-1." % (where, y.dtype))
        labels = y.astype(np.int64)
    else:
        raise UsageError("%s: labels have shape %s; expected [N] class indices or [N, C] one-hot."
                         % (where, list(y.shape)))
    if len(labels) and labels.min() < 0:
        raise UsageError("%s: negative label %d; expected class indices 0..C-1." % (where, labels.min()))
    if class_names is not None and len(labels) and labels.max() >= len(class_names):
        raise UsageError("%s: label %d but only %d class names (%s). Fix the class names or the labels."
                         % (where, labels.max(), len(class_names), ", ".join(class_names[:10])))
    if class_names is not None and n_classes is not None and n_classes != len(class_names):
        raise UsageError("%s: one-hot labels have %d columns but there are %d class names."
                         % (where, n_classes, len(class_names)))
    return labels, class_names, n_classes, notes


def check_sample_array(shape, dtype, where):
    """(shape, notes) of a tensor pack's sample array: [N, ...] numbers, else a UsageError."""
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise UsageError("%s: the samples have shape %s; expected [N, ...]: one row per sample "
                         "(e.g. [N, 36, 6] for series of 36 steps and 6 features)."
                         % (where, list(shape)))
    if np.dtype(dtype).kind not in "iuf":
        raise UsageError("%s: the samples have dtype %s; expected numbers (float or integer)."
                         % (where, dtype))
    return shape, []
