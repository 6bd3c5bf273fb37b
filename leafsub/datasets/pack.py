"""The pack: one interface over every layout (:class:`Pack`) and the array-backed kind.

:class:`ArrayPack` turns raw rows of any dtype into uint8 RGB (grayscale repeated,
floats scaled or rounded, each conversion noted) and resizes them for the data pack
with :func:`~leafsub.datasets.imaging.resize_for_data_pack` when a size is asked.
"""

import os

import numpy as np

from ..errors import UsageError
from . import limits
from .conventions import as_size
from .imaging import resize_for_data_pack
from .sources import StreamNpySource


class Pack:
    """A labelled image set. Use :func:`open_pack` to make one.

    Attributes:
      path: the file or folder it was read from.
      kind: "folder", "npz" or "h5".
      n: number of images.
      labels: int64 [n].
      class_names: list of str, or None when the pack does not say.
      n_classes: len(class_names) when known, else the width of one-hot labels, else max(label) + 1.
      notes: conversions and oddities worth telling the user (strings).
      files: for a folder pack, the image paths in label order (else None).
    """

    kind = None
    raw_shape = ()   # an array pack: the stored array's shape, [n, ...] as the file holds it

    def __init__(self, path, labels, class_names, notes, n_classes=None):
        self.path = os.fspath(path)
        self.labels = labels
        self.class_names = class_names
        self.notes = list(notes)
        self.files = None
        self.n = int(len(labels))
        if class_names is not None:
            self.n_classes = len(class_names)
        elif n_classes is not None:
            self.n_classes = int(n_classes)
        else:
            self.n_classes = int(labels.max()) + 1 if self.n else 0

    def __len__(self):
        return self.n

    def __repr__(self):
        return "<Pack %s %s: %d images, %d classes>" % (self.kind, self.path, self.n, self.n_classes)

    def _note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    # Subclasses implement: image_size(), _iter_raw(batch_size, size) and _read_raw(indices, size),
    # both returning uint8 [b, H, W, 3].

    def image_size(self):
        """(H, W) when every image has the same size, else None."""
        raise NotImplementedError

    def default_size(self):
        """The pack's one image size (H, W); a UsageError when the images differ in size."""
        size = self.image_size()
        if size is None:
            raise UsageError("%s: the images do not all have the same size (%s); give a size "
                             "to resize them to (--size 96x96 on the command line, size=(96, 96) "
                             "in Python)." % (self.path, self._size_summary()))
        return size

    def _size_summary(self):
        return "several sizes"

    def iter_batches(self, batch_size, size=None):
        """Yield uint8 [b, H, W, 3] RGB batches in pack order (labels[i] is image i).

        Args:
          batch_size: images per batch (the last one may be smaller).
          size: (H, W) or an int; images of another size are resized with PIL bilinear.
            None keeps the pack's size (which must then be uniform).
        """
        batch_size = int(batch_size)
        if batch_size < 1:
            raise UsageError("batch size must be at least 1 (got %d)." % batch_size)
        return self._iter_raw(batch_size, as_size(size))

    def iter_images(self, batch_size):
        """Yield lists of uint8 [h, w, 3] RGB images at their own size (sizes may differ)."""
        for batch in self.iter_batches(batch_size):
            yield list(batch)

    def read(self, indices, size=None):
        """The images at ``indices`` (any order, repeats allowed) as uint8 [k, H, W, 3]."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n):
            raise UsageError("%s: image index out of range (the pack has %d images)." % (self.path, self.n))
        return self._read_raw(indices, as_size(size))


class ArrayPack(Pack):
    """A pack backed by an image array in an .npz or .h5 file (or in memory)."""

    def __init__(self, path, kind, source, labels, class_names, notes, n_classes=None, where=None):
        super().__init__(path, labels, class_names, notes, n_classes)
        self.kind = kind
        self._source = source
        self.where = where or self.path
        self._scale = None  # for float images: 255.0 (0..1) or 1.0 (0..255), decided once

    def image_size(self):
        return tuple(int(s) for s in self._source.shape[1:3])

    def image_sizes(self):
        """(H, W) of every image: int64 [n, 2] (all equal in an array pack)."""
        return np.tile(np.array(self.image_size(), dtype=np.int64), (self.n, 1))

    @property
    def dtype(self):
        return self._source.dtype

    @property
    def raw_shape(self):
        return tuple(int(s) for s in self._source.shape)

    def _decide_scale(self):
        if self._scale is not None or self._source.dtype.kind != "f":
            return
        row_bytes = max(1, int(np.prod(self._source.shape[1:], dtype=np.int64)) * self._source.dtype.itemsize)
        k = max(1, min(limits.PROBE_ROWS, limits.CHUNK_BYTES // row_bytes, self.n))
        if isinstance(self._source, StreamNpySource):
            sample = self._source.head(k)
        else:
            sample = self._source.take(np.unique(np.linspace(0, self.n - 1, k).astype(np.int64)))
        sample = np.asarray(sample)
        if not np.all(np.isfinite(sample)):
            raise UsageError("%s: the images contain NaN or infinite values. Save the raw images "
                             "(uint8 0..255, or float 0..1) in the pack." % self.where)
        lo, hi = float(sample.min()), float(sample.max())
        if lo < -0.01:
            raise UsageError("%s: the images have values from %.3g to %.3g: they look already "
                             "preprocessed (normalised). A pack must hold raw images, uint8 0..255 "
                             "or float 0..1; save the images before preprocessing." % (self.where, lo, hi))
        if hi <= limits.UNIT_RANGE_MAX:
            self._scale = 255.0
            self._note("images are %s in 0..1: scaled to 0..255 (x * 255, rounded)" % self._source.dtype)
        else:
            self._scale = 1.0
            self._note("images are %s in 0..255: rounded to uint8" % self._source.dtype)

    def _to_uint8(self, raw, first_row):
        raw = np.asarray(raw)
        if raw.ndim == 3:
            raw = raw[..., None]
        dtype = raw.dtype
        if dtype == np.uint8:
            out = raw
        elif dtype.kind == "f":
            x = raw.astype(np.float32)  # a copy: scaled and rounded in place below
            x *= np.float32(self._scale)
            if not np.all(np.isfinite(x)):
                raise UsageError("%s: NaN or infinite pixel values in images %d..%d."
                                 % (self.where, first_row, first_row + len(raw) - 1))
            if self._scale != 1.0 and x.max() > 255.0 * limits.UNIT_RANGE_MAX:
                raise UsageError("%s: the images mix ranges: the first ones are in 0..1 but images "
                                 "%d..%d go up to %.4g. Save every image in one range (0..255 or 0..1)."
                                 % (self.where, first_row, first_row + len(raw) - 1,
                                    float(x.max()) / self._scale))
            if x.min() < -0.5 or x.max() > 255.5:
                self._note("some pixel values were outside 0..255 and were clipped")
            np.rint(x, out=x)
            np.clip(x, 0, 255, out=x)
            out = x.astype(np.uint8)
        elif dtype.kind in "iu":
            lo, hi = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
            if lo < 0 or hi > 255:
                raise UsageError("%s: images are %s with values %d..%d, outside 0..255. Save them as "
                                 "uint8 0..255 (or float 0..1)." % (self.where, dtype, lo, hi))
            out = raw.astype(np.uint8)
        else:
            raise UsageError("%s: images have dtype %s; expected uint8 (or float 0..1 / 0..255)."
                             % (self.where, dtype))
        if out.shape[-1] == 1:
            out = np.repeat(out, 3, axis=-1)
        return np.ascontiguousarray(out)

    def _iter_raw(self, batch_size, size):
        self._decide_scale()
        start = 0
        for chunk in self._source.iter_chunks(batch_size):
            yield resize_for_data_pack(self._to_uint8(chunk, start), size)
            start += len(chunk)

    def _read_raw(self, indices, size):
        self._decide_scale()
        if len(indices) == 0:
            h, w = size or self.image_size()
            return np.empty((0, h, w, 3), dtype=np.uint8)
        rows = self._to_uint8(self._source.take(indices), int(indices.min()))
        return resize_for_data_pack(rows, size)
