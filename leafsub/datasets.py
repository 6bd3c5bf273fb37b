"""Data packs: labelled image sets in the layouts students already have.

``open_pack(path)`` reads three layouts and gives one interface, :class:`Pack`:

* a folder of class sub-folders (the ``image_dataset_from_directory`` layout):
  class names are the sorted sub-folder names, images are found recursively
  (.png .jpg .jpeg .bmp .gif .tif .tiff; hidden files and folders are ignored;
  EXIF orientation is ignored, as TensorFlow's decoders do; a GIF gives its first frame);
* an ``.npz`` with the images and the labels under conventional key names
  (:data:`IMAGE_KEYS`, :data:`LABEL_KEYS`, optional ``class_names``);
* an ``.h5`` / ``.hdf5`` file with the same key conventions.

Images always come out as uint8 ``[b, H, W, 3]`` RGB. Grayscale ``[N, H, W]`` or
``[N, H, W, 1]`` is repeated to 3 channels; float images in 0..1 are scaled by 255,
float images in 0..255 are rounded and clipped; each such conversion is recorded in
``Pack.notes`` for the caller to show. Labels may be integers ``[N]``, one-hot
``[N, C]`` or strings (mapped through ``class_names``, else their sorted values).

Memory stays bounded: image arrays are never loaded whole. An ``.h5`` dataset is
read by slices; an ``.npz`` member is read from its ``.npy`` header onwards, by
seeking when the member is stored (``np.savez``) and through zipfile's streaming
decompression when it is deflated (``np.savez_compressed``). ``write_npy`` streams a
whole pack into one uint8 ``.npy`` that a child process opens with ``mmap_mode="r"``.
"""

import os
import struct
import tempfile
import zipfile

import numpy as np

from .errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
IMAGE_KEYS = ("images", "x", "X", "data", "x_test", "X_test", "imgs")
LABEL_KEYS = ("labels", "y", "Y", "targets", "y_test", "Y_test")
CLASS_NAME_KEYS = ("class_names", "classes")

# Raw bytes per chunk when streaming (write_npy and the range probe).
CHUNK_BYTES = 8 * 1024 * 1024
# A float image pack whose sampled maximum is at most this is taken to be 0..1.
UNIT_RANGE_MAX = 1.0 + 1e-3
# How many rows the float-range probe looks at.
PROBE_ROWS = 256
# Below this many bytes a deflated .npz member is simply decompressed whole for random reads.
SMALL_MEMBER_BYTES = 64 * 1024 * 1024


def _accepted(keys):
    return ", ".join(repr(k) for k in keys)


def _as_size(size):
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        return (int(size), int(size))
    h, w = size
    return (int(h), int(w))


# --------------------------------------------------------------------------- row sources
# A source gives raw rows of the image array (any dtype, [b, H, W] or [b, H, W, C]).


class _ArraySource:
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


class _StoredNpySource:
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


class _StreamNpySource:
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
        rows = max(1, CHUNK_BYTES // max(1, self.row_bytes))
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


class _H5Source:
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


# --------------------------------------------------------------------------- the pack


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

    def _default_size(self):
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
        return self._iter_raw(batch_size, _as_size(size))

    def iter_images(self, batch_size):
        """Yield lists of uint8 [h, w, 3] RGB images at their own size (sizes may differ)."""
        for batch in self.iter_batches(batch_size):
            yield list(batch)

    def read(self, indices, size=None):
        """The images at ``indices`` (any order, repeats allowed) as uint8 [k, H, W, 3]."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.n):
            raise UsageError("%s: image index out of range (the pack has %d images)." % (self.path, self.n))
        return self._read_raw(indices, _as_size(size))


def _resize_batch(batch, size):
    """uint8 [b, h, w, 3] -> uint8 [b, H, W, 3] with PIL bilinear (no-op when already that size)."""
    if size is None or tuple(batch.shape[1:3]) == tuple(size):
        return batch
    from PIL import Image

    h, w = size
    out = np.empty((len(batch), h, w, 3), dtype=np.uint8)
    for i, image in enumerate(batch):
        out[i] = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    return out


class ArrayPack(Pack):
    """A pack backed by an image array in an .npz or .h5 file (or in memory)."""

    def __init__(self, path, kind, source, labels, class_names, notes, n_classes=None, where=None):
        super().__init__(path, labels, class_names, notes, n_classes)
        self.kind = kind
        self._source = source
        self._where = where or self.path
        self._scale = None  # for float images: 255.0 (0..1) or 1.0 (0..255), decided once

    def image_size(self):
        return tuple(int(s) for s in self._source.shape[1:3])

    def image_sizes(self):
        """(H, W) of every image: int64 [n, 2] (all equal in an array pack)."""
        return np.tile(np.array(self.image_size(), dtype=np.int64), (self.n, 1))

    @property
    def dtype(self):
        return self._source.dtype

    def _decide_scale(self):
        if self._scale is not None or self._source.dtype.kind != "f":
            return
        row_bytes = max(1, int(np.prod(self._source.shape[1:], dtype=np.int64)) * self._source.dtype.itemsize)
        k = max(1, min(PROBE_ROWS, CHUNK_BYTES // row_bytes, self.n))
        if isinstance(self._source, _StreamNpySource):
            sample = self._source.head(k)
        else:
            sample = self._source.take(np.unique(np.linspace(0, self.n - 1, k).astype(np.int64)))
        sample = np.asarray(sample)
        if not np.all(np.isfinite(sample)):
            raise UsageError("%s: the images contain NaN or infinite values. Save the raw images "
                             "(uint8 0..255, or float 0..1) in the pack." % self._where)
        lo, hi = float(sample.min()), float(sample.max())
        if lo < -0.01:
            raise UsageError("%s: the images have values from %.3g to %.3g: they look already "
                             "preprocessed (normalised). A pack must hold raw images, uint8 0..255 "
                             "or float 0..1; save the images before preprocessing." % (self._where, lo, hi))
        if hi <= UNIT_RANGE_MAX:
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
                                 % (self._where, first_row, first_row + len(raw) - 1))
            if self._scale != 1.0 and x.max() > 255.0 * UNIT_RANGE_MAX:
                raise UsageError("%s: the images mix ranges: the first ones are in 0..1 but images "
                                 "%d..%d go up to %.4g. Save every image in one range (0..255 or 0..1)."
                                 % (self._where, first_row, first_row + len(raw) - 1,
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
                                 "uint8 0..255 (or float 0..1)." % (self._where, dtype, lo, hi))
            out = raw.astype(np.uint8)
        else:
            raise UsageError("%s: images have dtype %s; expected uint8 (or float 0..1 / 0..255)."
                             % (self._where, dtype))
        if out.shape[-1] == 1:
            out = np.repeat(out, 3, axis=-1)
        return np.ascontiguousarray(out)

    def _iter_raw(self, batch_size, size):
        self._decide_scale()
        start = 0
        for chunk in self._source.iter_chunks(batch_size):
            yield _resize_batch(self._to_uint8(chunk, start), size)
            start += len(chunk)

    def _read_raw(self, indices, size):
        self._decide_scale()
        if len(indices) == 0:
            h, w = size or self.image_size()
            return np.empty((0, h, w, 3), dtype=np.uint8)
        return _resize_batch(self._to_uint8(self._source.take(indices), int(indices.min())), size)


class FolderPack(Pack):
    """A folder of class sub-folders of image files."""

    kind = "folder"

    def __init__(self, path, files, labels, class_names, notes):
        super().__init__(path, labels, class_names, notes)
        self.files = files
        self._sizes = None

    def image_sizes(self):
        """(H, W) of every image, from the file headers (cached); names an unreadable file."""
        if self._sizes is None:
            from PIL import Image

            sizes = np.empty((self.n, 2), dtype=np.int64)
            for i, name in enumerate(self.files):
                try:
                    with Image.open(name) as im:
                        w, h = im.size
                except Exception as e:  # PIL raises many kinds
                    raise _unreadable(name, e) from None
                sizes[i] = (h, w)
            self._sizes = sizes
        return self._sizes

    def image_size(self):
        sizes = self.image_sizes()
        if len(sizes) and np.all(sizes == sizes[0]):
            return (int(sizes[0, 0]), int(sizes[0, 1]))
        return None

    def _size_summary(self):
        sizes = self.image_sizes()
        values, counts = np.unique(sizes, axis=0, return_counts=True)
        order = np.argsort(-counts)[:3]
        return "height x width " + ", ".join(
            "%dx%d: %d image%s" % (values[i][0], values[i][1], counts[i], "" if counts[i] == 1 else "s")
            for i in order) + (", ..." if len(values) > 3 else "")

    def _load(self, name, size):
        from PIL import Image

        try:
            with Image.open(name) as im:
                im.load()
                if size is not None and (im.size[1], im.size[0]) != tuple(size):
                    target = (size[1], size[0])
                else:
                    target = None
                arr = self._rgb(im, name, target)
        except UsageError:
            raise
        except Exception as e:
            raise _unreadable(name, e) from None
        return arr

    def _rgb(self, im, name, target):
        from PIL import Image

        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            a = np.asarray(im).astype(np.float64)
            if mode.startswith("I;16"):
                a = a / 257.0
                self._note("16-bit images (e.g. %s) were scaled to 8 bits" % os.path.basename(name))
            elif mode == "F" and a.size and a.max() <= UNIT_RANGE_MAX:
                a = a * 255.0
            im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
            mode = "L"
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            self._note("images with an alpha channel (e.g. %s): alpha dropped, as TensorFlow's "
                       "decoders do with channels=3" % os.path.basename(name))
        if mode in ("L", "1", "LA"):
            self._note("grayscale images (e.g. %s) were repeated to 3 channels" % os.path.basename(name))
        if mode == "CMYK":
            self._note("CMYK images (e.g. %s) were converted to RGB" % os.path.basename(name))
        if mode != "RGB":
            im = im.convert("RGB")
        if target is not None:
            im = im.resize(target, Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)

    def _stack(self, names, size):
        if size is None:
            size = self._default_size()
        out = np.empty((len(names), size[0], size[1], 3), dtype=np.uint8)
        for j, name in enumerate(names):
            out[j] = self._load(name, size)
        return out

    def _iter_raw(self, batch_size, size):
        if size is None:
            size = self._default_size()
        for start in range(0, self.n, batch_size):
            yield self._stack(self.files[start:start + batch_size], size)

    def iter_images(self, batch_size):
        batch_size = max(1, int(batch_size))
        for start in range(0, self.n, batch_size):
            yield [self._load(name, None) for name in self.files[start:start + batch_size]]

    def _read_raw(self, indices, size):
        return self._stack([self.files[i] for i in indices], size)


def _unreadable(name, error):
    return UsageError("%s: cannot read this image (%s: %s). Remove or replace the file, or "
                      "re-save it as PNG/JPEG." % (name, type(error).__name__, error))


# --------------------------------------------------------------------------- opening


def open_pack(path):
    """Open a data pack: a folder of class sub-folders, an .npz or an .h5 file.

    Raises:
      UsageError naming the path: missing, unknown format, missing keys (with the keys found
      and the names accepted), images not [N, H, W, 3] / [N, H, W], labels of another
      length, an empty pack.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return _open_folder(path)
    if not os.path.exists(path):
        raise UsageError("%s: no such file or folder. A data pack is a folder of class "
                         "sub-folders, an .npz or an .h5 file." % path)
    with open(path, "rb") as f:
        magic = f.read(8)
    lower = path.lower()
    if magic.startswith(b"PK") or lower.endswith(".npz"):
        return _open_npz(path)
    if magic.startswith(b"\x89HDF") or lower.endswith((".h5", ".hdf5", ".hdf")):
        return _open_h5(path)
    raise UsageError("%s: not a data pack leafsub reads. Give a folder of class sub-folders "
                     "(one folder per class), an .npz with 'images' and 'labels', or an .h5 "
                     "with the same datasets." % path)


def _open_folder(path):
    entries = sorted(os.listdir(path))
    classes = [e for e in entries if not e.startswith(".") and os.path.isdir(os.path.join(path, e))]
    loose = [e for e in entries if not e.startswith(".") and e.lower().endswith(IMAGE_EXTENSIONS)
             and os.path.isfile(os.path.join(path, e))]
    if not classes:
        if loose:
            raise UsageError("%s: has images but no class sub-folders, so the labels are unknown. "
                             "Put each class's images in a sub-folder named after the class "
                             "(e.g. %s/Species_A/img001.png), or give an .npz with images and labels."
                             % (path, path.rstrip("/")))
        raise UsageError("%s: empty data pack: no class sub-folders with images. Expected one "
                         "sub-folder per class holding .png/.jpg files." % path)
    files, labels, notes, ignored, empty = [], [], [], [], []
    for label, name in enumerate(classes):
        found = []
        for folder, dirs, names in os.walk(os.path.join(path, name)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(names):
                if f.startswith("."):
                    continue
                full = os.path.join(folder, f)
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    found.append(full)
                else:
                    ignored.append(full)
        if not found:
            empty.append(name)
        files.extend(found)
        labels.extend([label] * len(found))
    if not files:
        raise UsageError("%s: empty data pack: the class sub-folders (%s) hold no images (%s)."
                         % (path, ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else ""),
                            "/".join(IMAGE_EXTENSIONS)))
    if loose:
        notes.append("%d image(s) directly in %s (not in a class sub-folder) were ignored, e.g. %s"
                     % (len(loose), path, loose[0]))
    if ignored:
        notes.append("%d file(s) that are not images were ignored, e.g. %s" % (len(ignored), ignored[0]))
    if empty:
        notes.append("class folder(s) with no images: %s (kept as classes, as "
                     "image_dataset_from_directory does)" % ", ".join(empty))
    return FolderPack(path, files, np.asarray(labels, dtype=np.int64), classes, notes)


def _pick(keys, accepted, path, what, all_keys):
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


def _check_image_shape(shape, where):
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


def _decode_names(raw):
    names = []
    for v in np.asarray(raw).reshape(-1).tolist():
        names.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
    return names


def _labels_from(raw, n, class_names, where):
    """(int64 [n] labels, class_names, n_classes or None, notes)."""
    y = np.asarray(raw)
    notes = []
    n_classes = None
    if y.dtype.kind in "SUO":
        values = _decode_names(y)
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


def _npy_member_header(fp):
    """(shape, fortran_order, dtype) of an .npy stream positioned at its start; reads the header only."""
    from numpy.lib import format as npformat

    version = npformat.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = npformat.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = npformat.read_array_header_2_0(fp)
    else:  # (3, 0): the 2.0 layout with a utf-8 header
        import ast

        hlen = struct.unpack("<I", fp.read(4))[0]
        d = ast.literal_eval(fp.read(hlen).decode("utf-8"))
        shape, fortran, dtype = d["shape"], d["fortran_order"], np.dtype(d["descr"])
    return tuple(shape), bool(fortran), np.dtype(dtype)


def _member_layout(zf, info):
    """(shape, fortran, dtype, header_bytes) of an .npy member, reading only its header."""
    with zf.open(info) as fp:
        shape, fortran, dtype = _npy_member_header(fp)
        header_bytes = fp.tell()
    return shape, fortran, dtype, header_bytes


def _local_data_offset(path, info):
    """Where a stored zip member's bytes start in the file (after its local header)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise UsageError("%s: damaged zip (bad local header for %s). Re-create the file."
                             % (path, info.filename))
        name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _open_npz(path, tensor=False):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UsageError("%s: cannot read it as an .npz (%s). Re-create it with "
                         "np.savez(path, images=images, labels=labels)." % (path, e)) from None
    with zf:
        members = {}
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                members[info.filename[:-4]] = info
        keys = sorted(members)
        image_key = _pick(members, IMAGE_KEYS, path, "images", keys)
        label_key = _pick(members, LABEL_KEYS, path, "labels", keys)
        where = "%s (key %r)" % (path, image_key)
        info = members[image_key]
        try:
            shape, fortran, dtype, header_bytes = _member_layout(zf, info)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise UsageError("%s: cannot read the images array %r (%s). Re-create the file."
                             % (path, image_key, e)) from None
        if dtype.hasobject:
            raise UsageError("%s: the images are an object array (a list of differently sized "
                             "images?); save one [N, H, W, 3] uint8 array." % where)
        shape, shape_notes = (_check_sample_array(shape, dtype, where) if tensor
                              else _check_image_shape(shape, where))
        n = shape[0]
        if n == 0:
            raise UsageError("%s: empty data pack: the images array has 0 images." % where)

        def load_small(key):
            with zf.open(members[key]) as fp:
                try:
                    return np.lib.format.read_array(fp, allow_pickle=False)
                except ValueError:
                    return None

        class_names = None
        notes = list(shape_notes)
        for key in CLASS_NAME_KEYS:
            if key in members:
                raw = load_small(key)
                if raw is None:
                    notes.append("%r is a pickled object array and was not read (leafsub does not "
                                 "unpickle data); save it with np.array(names, dtype=str)" % key)
                else:
                    class_names = _decode_names(raw)
                break
        raw_labels = load_small(label_key)
        if raw_labels is None:
            raise UsageError("%s: the labels %r are a pickled object array; save them as integers "
                             "(or strings, dtype=str)." % (path, label_key))
        labels, class_names, n_classes, label_notes = _labels_from(
            raw_labels, n, class_names, "%s (key %r)" % (path, label_key))
        notes.extend(label_notes)

        if fortran:
            # Rows are not contiguous: rare (np.save of a transposed array); read it whole.
            with zf.open(info) as fp:
                array = np.lib.format.read_array(fp, allow_pickle=False)
            source = _ArraySource(np.ascontiguousarray(array))
            notes.append("the images array is stored in Fortran order and was read whole")
        elif info.compress_type == zipfile.ZIP_STORED:
            source = _StoredNpySource(path, _local_data_offset(path, info) + header_bytes, shape, dtype)
        elif info.file_size <= SMALL_MEMBER_BYTES:
            with zf.open(info) as fp:
                array = np.lib.format.read_array(fp, allow_pickle=False)
            source = _ArraySource(array)
        else:
            source = _StreamNpySource(path, info.filename, header_bytes, shape, dtype)
    pack = (TensorPack if tensor else ArrayPack)(path, "npz", source, labels, class_names, notes,
                                                 n_classes, where=where)
    return pack


def _open_h5(path, tensor=False):
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
        image_name = by_name[_pick(by_name, IMAGE_KEYS, path, "images", keys)]
        label_name = by_name[_pick(by_name, LABEL_KEYS, path, "labels", keys)]
        where = "%s (dataset %r)" % (path, image_name)
        ds = datasets[image_name]
        if ds.dtype.kind not in "iuf":
            raise UsageError("%s: images have dtype %s; expected uint8 (or float)." % (where, ds.dtype))
        shape, notes = (_check_sample_array(ds.shape, ds.dtype, where) if tensor
                        else _check_image_shape(ds.shape, where))
        n = shape[0]
        if n == 0:
            raise UsageError("%s: empty data pack: the images dataset has 0 images." % where)
        class_names = None
        for key in CLASS_NAME_KEYS:
            if key in by_name:
                class_names = _decode_names(datasets[by_name[key]][()])
                break
        if class_names is None and "class_names" in f.attrs:
            class_names = _decode_names(f.attrs["class_names"])
        labels, class_names, n_classes, label_notes = _labels_from(
            datasets[label_name][()], n, class_names, "%s (dataset %r)" % (path, label_name))
        notes.extend(label_notes)
        source = _H5Source(path, image_name, shape, ds.dtype)
    return (TensorPack if tensor else ArrayPack)(path, "h5", source, labels, class_names, notes,
                                                 n_classes, where=where)


def from_arrays(images, labels, class_names=None, path="<arrays>"):
    """A pack over in-memory arrays (same checks and conversions as an .npz)."""
    images = np.asarray(images)
    shape, notes = _check_image_shape(images.shape, path)
    if shape[0] == 0:
        raise UsageError("%s: empty data pack: 0 images." % path)
    labels, class_names, n_classes, label_notes = _labels_from(labels, shape[0], class_names, path)
    return ArrayPack(path, "arrays", _ArraySource(images), labels, class_names,
                     notes + label_notes, n_classes)


# --------------------------------------------------------------------------- writing


def _chunk_rows(pack, size):
    """Images per chunk so that neither the raw rows read nor the uint8 rows written pass CHUNK_BYTES."""
    row = size[0] * size[1] * 3
    source = getattr(pack, "_source", None)
    if source is not None:
        raw = int(np.prod(source.shape[1:], dtype=np.int64)) * source.dtype.itemsize
        row = max(row, raw * (2 if source.dtype.kind == "f" else 1))  # + the float32 working copy
    return max(1, min(1024, CHUNK_BYTES // row))


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
    size = _as_size(size) or pack._default_size()
    h, w = size
    shape = (pack.n, h, w, 3)
    if batch_size is None:
        batch_size = _chunk_rows(pack, (h, w))
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
        self.size = _as_size(size)
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
    size = _as_size(size) or pack._default_size()
    if batch_size is None:
        batch_size = _chunk_rows(pack, size)
    with NpzWriter(path, pack.n, size, compress=compress, labels=pack.labels,
                   class_names=pack.class_names) as writer:
        for batch in pack.iter_batches(batch_size, size=size):
            writer.write(batch)
            if progress is not None:
                progress(writer.written, pack.n)
    return (pack.n, size[0], size[1], 3)


# --------------------------------------------------------------------------- tensor packs
# For a challenge whose input is not an image (a time series [steps, features], a feature
# vector): the samples go to predict() as they are stored, whatever their shape, with no
# colour conversion, rounding or resizing. Same files, same key names (``x``/``y`` too).


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
                             "missing values first." % (self._where, bad))
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
        raise UsageError("%s: holds samples of shape %s, not images." % (self._where,
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


def _check_sample_array(shape, dtype, where):
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise UsageError("%s: the samples have shape %s; expected [N, ...]: one row per sample "
                         "(e.g. [N, 36, 6] for series of 36 steps and 6 features)."
                         % (where, list(shape)))
    if np.dtype(dtype).kind not in "iuf":
        raise UsageError("%s: the samples have dtype %s; expected numbers (float or integer)."
                         % (where, dtype))
    return shape, []


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
        pack = _open_npz(path, tensor=True)
    elif magic.startswith(b"\x89HDF") or lower.endswith((".h5", ".hdf5", ".hdf")):
        pack = _open_h5(path, tensor=True)
    else:
        raise UsageError("%s: not a data pack leafsub reads. Give an .npz saved with "
                         "np.savez(path, x=samples, y=labels), or an .h5 with the same "
                         "datasets." % path)
    if sample_shape is not None and pack.sample_shape != tuple(int(d) for d in sample_shape):
        raise UsageError("%s: the samples have shape %s each; the profile feeds predict() "
                         "samples of shape %s. Use the data of this challenge, or the profile "
                         "that matches the data (--profile)." % (
                             pack._where, list(pack.sample_shape), list(sample_shape)))
    return pack


def tensors_from_arrays(samples, labels, class_names=None, path="<arrays>"):
    """A :class:`TensorPack` over in-memory arrays (same checks as an .npz)."""
    samples = np.asarray(samples)
    shape, notes = _check_sample_array(samples.shape, samples.dtype, path)
    if shape[0] == 0:
        raise UsageError("%s: empty data pack: 0 samples." % path)
    labels, class_names, n_classes, label_notes = _labels_from(labels, shape[0], class_names, path)
    return TensorPack(path, "arrays", _ArraySource(samples), labels, class_names,
                      notes + label_notes, n_classes)


def write_tensor_npy(pack, path, progress=None):
    """Stream every sample of a :class:`TensorPack` into one ``.npy`` (its stored dtype).

    Memory stays bounded (chunks of about ``CHUNK_BYTES``); written atomically.
    Returns the output shape.
    """
    from numpy.lib.format import open_memmap

    shape = (pack.n,) + pack.sample_shape
    row = max(1, int(np.prod(pack.sample_shape, dtype=np.int64)) * pack.dtype.itemsize)
    rows = max(1, min(4096, CHUNK_BYTES // row))
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
