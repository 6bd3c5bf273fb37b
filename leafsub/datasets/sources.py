"""Row sources: raw rows of a pack's image (or sample) array, never the array whole.

Each source has ``shape``, ``dtype``, ``iter_chunks(rows)``, ``take(indices)`` and
``head(k)``: an array in memory, a stored ``.npy`` zip member or file (seek + read), a
deflated ``.npy`` member (streaming decompression, in order) and an HDF5 dataset (slices).
"""

import zipfile

import numpy as np

from ..errors import UsageError
from . import limits


class ArraySource:
    """An array already in memory (small arrays, Fortran-ordered members)."""

    def __init__(self, array):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype

    def iter_chunks(self, rows):
        for start in range(0, self.shape[0], rows):
            yield self.array[start:start + rows]

    def take(self, indices):
        return self.array[np.asarray(indices, dtype=np.int64)]

    def head(self, k):
        return self.array[:k]


class StoredNpySource:
    """An uncompressed .npy member of a zip (or a plain .npy file): rows read by seek + read."""

    def __init__(self, path, data_offset, shape, dtype):
        self.path = path
        self.offset = data_offset
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def _read(self, f, start, count):
        f.seek(self.offset + start * self.row_bytes)
        want = count * self.row_bytes
        buf = f.read(want)
        if len(buf) != want:
            raise UsageError("%s: the image array is truncated (expected %d rows of %d bytes). "
                             "Re-create the file." % (self.path, self.shape[0], self.row_bytes))
        return np.frombuffer(buf, dtype=self.dtype).reshape((count,) + self.shape[1:])

    def iter_chunks(self, rows):
        with open(self.path, "rb") as f:
            for start in range(0, self.shape[0], rows):
                yield self._read(f, start, min(rows, self.shape[0] - start))

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices),) + self.shape[1:], dtype=self.dtype)
        with open(self.path, "rb") as f:
            for j, i in enumerate(indices):
                out[j] = self._read(f, int(i), 1)[0]
        return out

    def head(self, k):
        with open(self.path, "rb") as f:
            return self._read(f, 0, min(k, self.shape[0]))


class StreamNpySource:
    """A deflated .npy member of a zip: rows read in order through streaming decompression."""

    def __init__(self, path, member, header_bytes, shape, dtype):
        self.path = path
        self.member = member
        self.header_bytes = header_bytes
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def _stream(self):
        zf = zipfile.ZipFile(self.path)
        fp = zf.open(self.member)
        fp.read(self.header_bytes)
        return zf, fp

    def _read(self, fp, count):
        want = count * self.row_bytes
        buf = fp.read(want)
        if len(buf) != want:
            raise UsageError("%s: member %s is truncated (expected %d rows of %d bytes). "
                             "Re-create the file." % (self.path, self.member, self.shape[0],
                                                     self.row_bytes))
        return np.frombuffer(buf, dtype=self.dtype).reshape((count,) + self.shape[1:])

    def iter_chunks(self, rows):
        zf, fp = self._stream()
        try:
            for start in range(0, self.shape[0], rows):
                yield self._read(fp, min(rows, self.shape[0] - start))
        finally:
            fp.close()
            zf.close()

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices),) + self.shape[1:], dtype=self.dtype)
        if len(indices) == 0:
            return out
        order = np.argsort(indices, kind="stable")
        wanted = indices[order]
        rows = max(1, limits.CHUNK_BYTES // max(1, self.row_bytes))
        k = 0
        for start, chunk in zip(range(0, self.shape[0], rows), self.iter_chunks(rows)):
            stop = start + len(chunk)
            while k < len(wanted) and wanted[k] < stop:
                out[order[k]] = chunk[wanted[k] - start]
                k += 1
            if k == len(wanted):
                break
        return out

    def head(self, k):
        zf, fp = self._stream()
        try:
            return self._read(fp, min(k, self.shape[0]))
        finally:
            fp.close()
            zf.close()


class H5Source:
    """An HDF5 dataset, read by slices (h5py opened per call: no handle held open)."""

    def __init__(self, path, key, shape, dtype):
        self.path = path
        self.key = key
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    def _open(self):
        import h5py
        return h5py.File(self.path, "r")

    def iter_chunks(self, rows):
        with self._open() as f:
            ds = f[self.key]
            for start in range(0, self.shape[0], rows):
                yield ds[start:start + rows]

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            return np.empty((0,) + self.shape[1:], dtype=self.dtype)
        unique, inverse = np.unique(indices, return_inverse=True)
        with self._open() as f:
            rows = f[self.key][unique.tolist()]  # h5py wants increasing indices
        return rows[inverse]

    def head(self, k):
        with self._open() as f:
            return f[self.key][:k]
