"""The ``.npz`` layout: images and labels under conventional key names.

Only the ``.npy`` headers are read when opening; the image member becomes a row source:
stored members are read by seeking, deflated ones by streaming decompression (or read
whole below ``limits.SMALL_MEMBER_BYTES``). Pickled object arrays are never loaded.
"""

import struct
import zipfile

import numpy as np

from ..errors import UsageError
from . import limits
from .conventions import (CLASS_NAME_KEYS, IMAGE_KEYS, LABEL_KEYS, check_image_shape,
                          check_sample_array, decode_names, labels_from, pick_key)
from .pack import ArrayPack
from .sources import ArraySource, StoredNpySource, StreamNpySource
from .tensors import TensorPack


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


def open_npz(path, tensor=False):
    """An :class:`ArrayPack` (a :class:`TensorPack` when ``tensor``) over an .npz, headers read only."""
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
        image_key = pick_key(members, IMAGE_KEYS, path, "images", keys)
        label_key = pick_key(members, LABEL_KEYS, path, "labels", keys)
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
        shape, shape_notes = (check_sample_array(shape, dtype, where) if tensor
                              else check_image_shape(shape, where))
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
                    class_names = decode_names(raw)
                break
        raw_labels = load_small(label_key)
        if raw_labels is None:
            raise UsageError("%s: the labels %r are a pickled object array; save them as integers "
                             "(or strings, dtype=str)." % (path, label_key))
        labels, class_names, n_classes, label_notes = labels_from(
            raw_labels, n, class_names, "%s (key %r)" % (path, label_key))
        notes.extend(label_notes)

        if fortran:
            # Rows are not contiguous: rare (np.save of a transposed array); read it whole.
            with zf.open(info) as fp:
                array = np.lib.format.read_array(fp, allow_pickle=False)
            source = ArraySource(np.ascontiguousarray(array))
            notes.append("the images array is stored in Fortran order and was read whole")
        elif info.compress_type == zipfile.ZIP_STORED:
            source = StoredNpySource(path, _local_data_offset(path, info) + header_bytes, shape, dtype)
        elif info.file_size <= limits.SMALL_MEMBER_BYTES:
            with zf.open(info) as fp:
                array = np.lib.format.read_array(fp, allow_pickle=False)
            source = ArraySource(array)
        else:
            source = StreamNpySource(path, info.filename, header_bytes, shape, dtype)
    pack = (TensorPack if tensor else ArrayPack)(path, "npz", source, labels, class_names, notes,
                                                 n_classes, where=where)
    return pack
