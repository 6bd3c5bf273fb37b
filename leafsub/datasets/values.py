"""Value packs: the data of a challenge whose ``predict`` returns values (a forecast).

An ``.npz`` or ``.h5`` holding the inputs ``x`` (float, ``[N, *sample_shape]``), the
targets ``y`` (float, ``[N, *output_shape]``: ``[N, 9]`` for a 9-step horizon of one
series, ``[N, 864, 7]`` for 864 steps of 7 features) and one array per extra ``predict``
argument of the profile (``interface.args``, e.g. ``categories``: one letter per series;
strings are allowed there, and only there). The same key names as the other packs
(``x``/``images``/``X``..., ``y``/``labels``/``targets``...).

Forecasting sets are small (thousands of series of a few hundred steps): a value pack is
read whole, once. The targets never reach the child; the inputs and the extra arguments do.

Example::

    np.savez("phase1.npz", x=x, y=y, categories=np.array(["A", "D", ...]))
    pack = open_values_pack("phase1.npz", sample_shape=(200,), args=("X", "categories"))
    pack.n, pack.y.shape, pack.extras["categories"][:3]
"""

import os

import numpy as np

from ..errors import UsageError
from .conventions import IMAGE_KEYS, LABEL_KEYS

TARGET_KEYS = ("y", "targets", "Y", "labels", "y_test", "Y_test")


class ValuesPack:
    """Inputs, float targets and the extra arguments' arrays of one phase.

    Attributes: ``path``, ``n``, ``x`` (the inputs, stored dtype), ``y`` (float64 targets),
    ``extras`` ({argument name: array of length n}), ``notes`` (what was converted).
    The :class:`~leafsub.datasets.tensors.TensorPack` interface the replay writes the
    child's files with: ``sample_shape``, ``dtype``, ``iter_batches``, ``read``.
    """

    kind = "values"
    labels = None
    class_names = None

    def __init__(self, path, x, y, extras, notes=()):
        self.path, self.x, self.y = path, x, y
        self.extras = dict(extras)
        self.notes = list(notes)

    @property
    def n(self):
        return int(self.x.shape[0])

    @property
    def sample_shape(self):
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def dtype(self):
        return self.x.dtype

    @property
    def output_shape(self):
        return tuple(int(d) for d in self.y.shape[1:])

    def iter_batches(self, batch_size, size=None):
        for start in range(0, self.n, max(1, int(batch_size))):
            yield np.ascontiguousarray(self.x[start:start + batch_size])

    def read(self, indices, size=None):
        return np.ascontiguousarray(self.x[np.asarray(indices, dtype=np.int64)])

    def __repr__(self):
        return "<ValuesPack %s: %d samples of %s, targets %s, extra arguments %s>" % (
            self.path, self.n, list(self.sample_shape), list(self.output_shape),
            sorted(self.extras) or "none")


def _read_arrays(path):
    """{name: array} of an .npz (no pickles) or an .h5 (datasets by their last name)."""
    with open(path, "rb") as f:
        magic = f.read(8)
    lower = path.lower()
    if magic.startswith(b"PK") or lower.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except ValueError as e:
            raise UsageError("%s: holds an object array (%s), which leafsub does not unpickle. "
                             "Save strings as a fixed-width array: np.array(values, dtype=str)."
                             % (path, e)) from None
        except (OSError, EOFError) as e:
            raise UsageError("%s: cannot read it as an .npz (%s)." % (path, e)) from None
    if magic.startswith(b"\x89HDF") or lower.endswith((".h5", ".hdf5", ".hdf")):
        try:
            import h5py
        except ImportError:
            raise UsageError("%s: reading .h5 data packs needs h5py (pip install h5py)."
                             % path) from None
        out = {}
        try:
            with h5py.File(path, "r") as f:
                def visit(name, obj):
                    if isinstance(obj, h5py.Dataset):
                        out.setdefault(name.rsplit("/", 1)[-1], obj[()])
                f.visititems(visit)
        except OSError as e:
            raise UsageError("%s: cannot read it as an HDF5 file (%s)." % (path, e)) from None
        for k, v in out.items():
            if isinstance(v, np.ndarray) and v.dtype.kind in "OS":
                out[k] = np.array([s.decode("utf-8") if isinstance(s, bytes) else str(s)
                                   for s in v.reshape(-1)]).reshape(v.shape)
        return out
    raise UsageError("%s: not a data pack leafsub reads. Give an .npz saved with "
                     "np.savez(path, x=inputs, y=targets, ...) or an .h5 with the same "
                     "datasets." % path)


def _pick(arrays, keys, path, what, example):
    for key in keys:
        if key in arrays:
            return key
    raise UsageError("%s: no %s array (looked for %s; found %s). Save it as %s." % (
        path, what, ", ".join(keys), ", ".join(sorted(arrays)) or "nothing", example))


def _shape_matches(shape, expected):
    return len(shape) == len(expected) and all(e is None or int(e) == int(s)
                                               for s, e in zip(shape, expected))


def open_values_pack(path, sample_shape=None, args=("X",), output_shape=None):
    """Open the data of a values challenge: inputs, targets, one array per extra argument.

    Args:
      path: the .npz / .h5 file.
      sample_shape: the per-sample input shape the profile feeds (None in an axis: any).
      args: the profile's ``interface.args``; every name after the first needs an array.
      output_shape: the profile's ``output.shape`` (None: the targets decide it).

    Returns:
      a :class:`ValuesPack`.

    Raises:
      UsageError naming the file: missing arrays (with the names found), lengths that
      differ, non-finite or non-numeric inputs or targets, shapes other than the profile's.
    """
    path = os.fspath(path)
    if os.path.isdir(path) or not os.path.exists(path):
        raise UsageError("%s: no such file. The data of a forecasting challenge is an .npz or "
                         "an .h5 with the inputs (x), the targets (y) and one array per extra "
                         "predict argument." % path)
    arrays = _read_arrays(path)
    example = "np.savez(path, x=inputs, y=targets%s)" % "".join(
        ", %s=..." % a for a in args[1:])
    x_key = _pick(arrays, IMAGE_KEYS, path, "inputs", example)
    y_key = _pick(arrays, TARGET_KEYS, path, "targets", example)
    x, y = np.asarray(arrays[x_key]), np.asarray(arrays[y_key])
    notes = []
    for key, a, what in ((x_key, x, "inputs"), (y_key, y, "targets")):
        if a.dtype.kind not in "iuf" or a.ndim < 2:
            raise UsageError("%s: %r (the %s) has dtype %s and shape %s; expected numbers, "
                             "one row per sample [N, ...]." % (path, key, what, a.dtype,
                                                              list(a.shape)))
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise UsageError("%s: %r (the %s) holds NaN or infinite values: fill or drop them "
                             "first." % (path, key, what))
    n = x.shape[0]
    if n == 0:
        raise UsageError("%s: empty data pack: 0 samples." % path)
    if y.shape[0] != n:
        raise UsageError("%s: %d inputs (%r) but %d targets (%r): one target per sample."
                         % (path, n, x_key, y.shape[0], y_key))
    if sample_shape is not None and not _shape_matches(x.shape[1:], sample_shape):
        raise UsageError("%s: the inputs have shape %s each; the profile feeds predict() %s. "
                         "Use the data of this challenge, or the matching profile (--profile)."
                         % (path, list(x.shape[1:]), ["T" if d is None else d
                                                      for d in sample_shape]))
    if output_shape is not None and tuple(y.shape[1:]) != tuple(output_shape):
        raise UsageError("%s: the targets have shape %s each; the profile's output is %s."
                         % (path, list(y.shape[1:]), list(output_shape)))
    extras = {}
    for name in args[1:]:
        if name not in arrays:
            raise UsageError("%s: predict takes %s, and the pack has no %r array to feed it "
                             "(found %s). Save it beside x and y: %s." % (
                                 path, ", ".join(args), name, ", ".join(sorted(arrays)), example))
        a = np.asarray(arrays[name])
        if a.shape[:1] != (n,):
            raise UsageError("%s: %r has %s rows; expected one per sample (%d)."
                             % (path, name, a.shape[0] if a.ndim else 0, n))
        if a.dtype.kind not in "iufbU":
            raise UsageError("%s: %r has dtype %s; expected numbers or strings." % (
                path, name, a.dtype))
        extras[name] = a
    if x.dtype.kind in "iu":
        notes.append("%s: integer inputs (%s), fed as stored" % (x_key, x.dtype))
    return ValuesPack(path, np.ascontiguousarray(x), y.astype(np.float64), extras, notes)


def values_from_arrays(x, y, extras=None, path="<arrays>"):
    """A :class:`ValuesPack` over in-memory arrays (no checks but the lengths)."""
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    extras = {k: np.asarray(v) for k, v in (extras or {}).items()}
    if y.shape[:1] != x.shape[:1] or any(v.shape[:1] != x.shape[:1] for v in extras.values()):
        raise UsageError("%s: inputs, targets and extra arrays differ in length." % path)
    return ValuesPack(path, x, y, extras)
