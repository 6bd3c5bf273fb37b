"""Tensor packs: labelled samples that are not images, fed to predict() as stored.

For a challenge whose input is not an image (a time series [steps, features], a feature
vector): the samples go to predict() as they are stored, whatever their shape, with no
colour conversion, rounding or resizing. Same files, same key names (``x``/``y`` too).
"""

import numpy as np

from ..errors import UsageError
from .pack import ArrayPack


class TensorPack(ArrayPack):
    """A labelled set of samples of any per-sample shape, from an .npz or .h5 (or arrays).

    ``iter_batches`` and ``read`` give the samples in their stored dtype (any float or
    integer type); float samples must be finite. Use :func:`open_tensor_pack`.
    """

    @property
    def sample_shape(self):
        return tuple(int(s) for s in self._source.shape[1:])

    def image_size(self):
        return None

    def _checked(self, rows, first_row):
        rows = np.asarray(rows)
        if rows.dtype.kind == "f" and not np.all(np.isfinite(rows)):
            bad = first_row + int(np.flatnonzero(~np.all(np.isfinite(
                rows.reshape(len(rows), -1)), axis=1))[0])
            raise UsageError("%s: sample %d holds NaN or infinite values. A data pack holds the "
                             "samples exactly as the platform feeds them: fill or drop the "
                             "missing values first." % (self.where, bad))
        return np.ascontiguousarray(rows)

    def iter_batches(self, batch_size, size=None):
        """Yield ``[b, *sample_shape]`` batches in pack order, in the stored dtype."""
        batch_size = int(batch_size)
        if batch_size < 1:
            raise UsageError("batch size must be at least 1 (got %d)." % batch_size)
        start = 0
        for chunk in self._source.iter_chunks(batch_size):
            yield self._checked(chunk, start)
            start += len(chunk)

    def iter_images(self, batch_size):
        raise UsageError("%s: holds samples of shape %s, not images." % (self.where,
                                                                        list(self.sample_shape)))

    def read(self, indices, size=None):
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n):
            raise UsageError("%s: sample index out of range (the pack has %d samples)."
                             % (self.path, self.n))
        if not len(indices):
            return np.empty((0,) + self.sample_shape, dtype=self.dtype)
        return self._checked(self._source.take(indices), int(indices.min()))

    def __repr__(self):
        return "<TensorPack %s %s: %d samples of %s, %d classes>" % (
            self.kind, self.path, self.n, list(self.sample_shape), self.n_classes)
