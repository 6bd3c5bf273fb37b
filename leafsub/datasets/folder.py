"""The class-folder layout (``image_dataset_from_directory``): one sub-folder per class.

Class names are the sorted sub-folder names; images are found recursively, hidden
files and folders ignored; each file is decoded with PIL (:mod:`.imaging`).
"""

import os

import numpy as np

from ..errors import UsageError
from .conventions import IMAGE_EXTENSIONS
from .imaging import image_file_size, load_rgb
from .pack import Pack


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
            sizes = np.empty((self.n, 2), dtype=np.int64)
            for i, name in enumerate(self.files):
                sizes[i] = image_file_size(name)
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
        return load_rgb(name, size, self._note)

    def _stack(self, names, size):
        if size is None:
            size = self.default_size()
        out = np.empty((len(names), size[0], size[1], 3), dtype=np.uint8)
        for j, name in enumerate(names):
            out[j] = self._load(name, size)
        return out

    def _iter_raw(self, batch_size, size):
        if size is None:
            size = self.default_size()
        for start in range(0, self.n, batch_size):
            yield self._stack(self.files[start:start + batch_size], size)

    def iter_images(self, batch_size):
        batch_size = max(1, int(batch_size))
        for start in range(0, self.n, batch_size):
            yield [self._load(name, None) for name in self.files[start:start + batch_size]]

    def _read_raw(self, indices, size):
        return self._stack([self.files[i] for i in indices], size)


def open_folder(path):
    """A :class:`FolderPack` over a folder of class sub-folders (labels from the folder names)."""
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
