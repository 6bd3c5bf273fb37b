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

One module per concept: :mod:`.conventions` (key names, shape and label checks),
:mod:`.sources` (raw rows of an array: in memory, a stored or deflated ``.npy``
member, an HDF5 dataset), :mod:`.pack` (:class:`Pack`, :class:`ArrayPack`),
:mod:`.folder`, :mod:`.npz`, :mod:`.h5` (the layouts), :mod:`.tensors`
(:class:`TensorPack`), :mod:`.values` (:class:`ValuesPack`: inputs, float
targets and the extra predict arguments of a forecasting challenge), :mod:`.opening` (``open_pack`` and friends), :mod:`.writers`
(``write_npy``, ``NpzWriter``, ``write_npz``, ``write_tensor_npy``), :mod:`.imaging`
(PIL decoding and resizing *for data preparation*, never a prediction of what a
submission computes) and :mod:`.limits` (the streaming tunables). Import from
``leafsub.datasets``: this module is the public API.
"""

import sys
import types

from . import limits
from .conventions import (CLASS_NAME_KEYS, IMAGE_EXTENSIONS, IMAGE_KEYS, LABEL_KEYS,
                          as_size)
from .folder import FolderPack
from .imaging import resize_for_data_pack
from .limits import CHUNK_BYTES, PROBE_ROWS, SMALL_MEMBER_BYTES, UNIT_RANGE_MAX
from .opening import from_arrays, open_pack, open_tensor_pack, tensors_from_arrays
from .pack import ArrayPack, Pack
from .sources import ArraySource, H5Source, StoredNpySource, StreamNpySource
from .tensors import TensorPack
from .values import TARGET_KEYS, ValuesPack, open_values_pack, values_from_arrays
from .writers import NpzWriter, write_npy, write_npz, write_tensor_npy

# The row-source classes under their names from before the split (tests check which
# reader a pack chose).
_ArraySource = ArraySource
_StoredNpySource = StoredNpySource
_StreamNpySource = StreamNpySource
_H5Source = H5Source

_LIMITS = ("CHUNK_BYTES", "PROBE_ROWS", "SMALL_MEMBER_BYTES", "UNIT_RANGE_MAX")


class _Package(types.ModuleType):
    """Setting a tunable here (``datasets.SMALL_MEMBER_BYTES = 0``) sets it in :mod:`.limits`,
    where every module reads it: as it was when the package was one module."""

    def __setattr__(self, name, value):
        if name in _LIMITS:
            setattr(limits, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
