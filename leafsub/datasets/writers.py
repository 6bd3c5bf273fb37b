"""Writing packs: one uint8 ``.npy`` for the child, an images/labels ``.npz``, a tensor ``.npy``.

Every writer streams chunk by chunk (memory bounded whatever the pack's size) and
writes atomically: a temporary file in the target folder, then ``os.replace``.
"""

import os
import tempfile
import zipfile

import numpy as np

from ..errors import UsageError
from . import limits
from .conventions import as_size
from .opening import open_pack
from .pack import Pack


def chunk_rows(pack, size):
    """Images per chunk so that neither the raw rows read nor the uint8 rows written pass
    ``limits.CHUNK_BYTES``."""
    row = size[0] * size[1] * 3
    if pack.raw_shape:
        raw = int(np.prod(pack.raw_shape[1:], dtype=np.int64)) * pack.dtype.itemsize
        row = max(row, raw * (2 if pack.dtype.kind == "f" else 1))  # + the float32 working copy
    return max(1, min(1024, limits.CHUNK_BYTES // row))


def write_npy(pack, path, size=None, batch_size=None, progress=None):
    """Stream every image of ``pack`` into one uint8 ``[n, H, W, 3]`` .npy at ``path``.

    Memory stays bounded whatever the pack's size: the file is created with
    ``numpy.lib.format.open_memmap`` (header and length) and then filled chunk by chunk
    with plain file writes, so neither the pack nor the output is ever held whole (a
    memory map written through would keep every touched page in the process's RSS).
    Written atomically (temporary file in the same folder, then ``os.replace``).

    Args:
      pack: a :class:`Pack` (or a path, opened with :func:`open_pack`).
      path: the .npy to write.
      size: (H, W) or int to resize to (PIL bilinear); None keeps the pack's uniform size.
      batch_size: images per chunk (default: about 8 MB of output per chunk).
      progress: optional callable(done, total) called after each chunk.

    Returns:
      the output shape (n, H, W, 3).
    """
    from numpy.lib.format import open_memmap

    if not isinstance(pack, Pack):
        pack = open_pack(pack)
    size = as_size(size) or pack.default_size()
    h, w = size
    shape = (pack.n, h, w, 3)
    if batch_size is None:
        batch_size = chunk_rows(pack, (h, w))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".leafsub-", suffix=".npy", dir=directory)
    os.close(fd)
    try:
        header = open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        offset = header.offset
        del header  # unmap before writing through the file
        done = 0
        with open(tmp, "r+b") as f:
            f.seek(offset)
            for batch in pack.iter_batches(batch_size, size=size):
                f.write(np.ascontiguousarray(batch, dtype=np.uint8).tobytes())
                done += len(batch)
                if progress is not None:
                    progress(done, pack.n)
            if done != pack.n:
                raise UsageError("%s: %d images read where %d were expected." % (pack.path, done, pack.n))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return shape


class NpzWriter:
    """Write an images/labels ``.npz`` pack image batch by image batch (memory bounded).

    The members are those :func:`open_pack` reads: ``images.npy`` (uint8 [n, H, W, 3]),
    ``labels.npy`` (int64 [n]) and, when known, ``class_names.npy`` (str). Stored
    uncompressed by default, so that readers can seek to any image; ``compress=True``
    deflates (smaller, read in order). The file appears at ``path`` only on
    :meth:`close` (temporary file + ``os.replace``); :meth:`abort` removes it.

        with NpzWriter("test.npz", n, (96, 96)) as w:
            for batch in pack.iter_batches(256, size=(96, 96)):
                w.write(batch)
            w.labels, w.class_names = pack.labels, pack.class_names
    """

    def __init__(self, path, n, size, compress=False, labels=None, class_names=None):
        self.path = os.fspath(path)
        self.n = int(n)
        self.size = as_size(size)
        self.labels = labels
        self.class_names = class_names
        self.written = 0
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, self._tmp = tempfile.mkstemp(prefix=".leafsub-", suffix=".npz", dir=directory)
        os.close(fd)
        mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self._zip = zipfile.ZipFile(self._tmp, "w", mode, allowZip64=True)
        self._images = self._zip.open("images.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (self.n, self.size[0], self.size[1], 3)}
        np.lib.format.write_array_header_1_0(self._images, header)

    def write(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        if batch.shape[1:] != (self.size[0], self.size[1], 3):
            raise ValueError("batch of shape %s written to a %s pack" % (batch.shape, self.size))
        if self.written + len(batch) > self.n:
            raise ValueError("more than the %d images announced" % self.n)
        self._images.write(batch.tobytes())
        self.written += len(batch)

    def close(self):
        if self.written != self.n:
            self.abort()
            raise ValueError("%d images written where %d were announced" % (self.written, self.n))
        self._images.close()
        labels = np.asarray(self.labels if self.labels is not None else np.zeros(0), dtype=np.int64)
        if len(labels) != self.n:
            self.abort()
            raise ValueError("%d labels for %d images" % (len(labels), self.n))
        with self._zip.open("labels.npy", "w") as f:
            np.lib.format.write_array(f, labels)
        if self.class_names is not None:
            with self._zip.open("class_names.npy", "w") as f:
                np.lib.format.write_array(f, np.array([str(c) for c in self.class_names], dtype=str))
        self._zip.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self):
        try:
            self._images.close()
        except Exception:
            pass
        try:
            self._zip.close()
        except Exception:
            pass
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_npz(pack, path, size=None, compress=False, batch_size=None, progress=None):
    """Write a whole pack as an images/labels ``.npz`` (the format ``open_pack`` reads).

    Streams: memory stays bounded whatever the pack's size. Returns the images' shape.
    """
    if not isinstance(pack, Pack):
        pack = open_pack(pack)
    size = as_size(size) or pack.default_size()
    if batch_size is None:
        batch_size = chunk_rows(pack, size)
    with NpzWriter(path, pack.n, size, compress=compress, labels=pack.labels,
                   class_names=pack.class_names) as writer:
        for batch in pack.iter_batches(batch_size, size=size):
            writer.write(batch)
            if progress is not None:
                progress(writer.written, pack.n)
    return (pack.n, size[0], size[1], 3)


def write_tensor_npy(pack, path, progress=None):
    """Stream every sample of a :class:`TensorPack` into one ``.npy`` (its stored dtype).

    Memory stays bounded (chunks of about ``limits.CHUNK_BYTES``); written atomically.
    Returns the output shape.
    """
    from numpy.lib.format import open_memmap

    shape = (pack.n,) + pack.sample_shape
    row = max(1, int(np.prod(pack.sample_shape, dtype=np.int64)) * pack.dtype.itemsize)
    rows = max(1, min(4096, limits.CHUNK_BYTES // row))
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".leafsub-", suffix=".npy",
                               dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        header = open_memmap(tmp, mode="w+", dtype=pack.dtype, shape=shape)
        offset = header.offset
        del header
        done = 0
        with open(tmp, "r+b") as f:
            f.seek(offset)
            for batch in pack.iter_batches(rows):
                f.write(np.ascontiguousarray(batch, dtype=pack.dtype).tobytes())
                done += len(batch)
                if progress is not None:
                    progress(done, pack.n)
        if done != pack.n:
            raise UsageError("%s: %d samples read where %d were expected." % (pack.path, done, pack.n))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return shape
