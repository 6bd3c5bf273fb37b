"""Data-set statistics (pure logic): class balance, class weights, image sizes and outliers.

Class weights, two conventions (a class with no images gets None):
  * ``max_over_n``: ``max(n) / n_i`` (the largest class weighs 1);
  * ``balanced``: ``n / (k * n_i)``, scikit-learn's ``class_weight="balanced"``
    (weights average to 1 over the images).

An image's size is an outlier when its height or width is at least
:data:`SIZE_FACTOR` (1.5) times smaller or larger than the median height or width, or its
aspect ratio is at least :data:`ASPECT_FACTOR` (1.25) times off the median aspect ratio.
"""

import numpy as np

SIZE_FACTOR = 1.5
ASPECT_FACTOR = 1.25
BLANK_STD = 2.0  # an image whose pixel standard deviation is below this is reported as blank


def class_counts(labels, n_classes):
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=int(n_classes))


def class_weights(counts):
    """{"max_over_n": [...], "balanced": [...]}: one weight per class (None for an empty class)."""
    counts = np.asarray(counts, dtype=np.float64)
    n, k = counts.sum(), len(counts)
    top = counts.max() if k else 0.0
    return {
        "max_over_n": [None if c == 0 else float(top / c) for c in counts],
        "balanced": [None if c == 0 else float(n / (k * c)) for c in counts],
    }


def imbalance(counts):
    """Largest class size over the smallest (inf when a class is empty, 1.0 when balanced)."""
    counts = np.asarray(counts)
    if len(counts) == 0 or counts.max() == 0:
        return None
    return float("inf") if counts.min() == 0 else float(counts.max() / counts.min())


def size_distribution(sizes, top=10):
    """Distinct (height, width) with their counts, most frequent first: list of dicts."""
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    if len(sizes) == 0:
        return []
    values, counts = np.unique(sizes, axis=0, return_counts=True)
    order = np.lexsort((values[:, 1], values[:, 0], -counts))
    return [{"height": int(values[i, 0]), "width": int(values[i, 1]), "count": int(counts[i])}
            for i in order[:top]]


def size_outliers(sizes):
    """Indices of size outliers and why: list of (index, reason) sorted by index."""
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    if len(sizes) == 0:
        return []
    h, w = sizes[:, 0], sizes[:, 1]
    mh, mw = np.median(h), np.median(w)
    aspect = w / np.maximum(h, 1)
    ma = np.median(aspect)
    out = []
    for i in range(len(sizes)):
        reasons = []
        if max(h[i] / mh, mh / max(h[i], 1)) >= SIZE_FACTOR:
            reasons.append("height %d vs median %g" % (h[i], mh))
        if max(w[i] / mw, mw / max(w[i], 1)) >= SIZE_FACTOR:
            reasons.append("width %d vs median %g" % (w[i], mw))
        if max(aspect[i] / ma, ma / max(aspect[i], 1e-9)) >= ASPECT_FACTOR:
            reasons.append("aspect %.2f vs median %.2f" % (aspect[i], ma))
        if reasons:
            out.append((i, "; ".join(reasons)))
    return out


class PixelStats:
    """Streaming per-channel mean and standard deviation (0..255), and blank images."""

    def __init__(self):
        self.count = 0
        self.sum = np.zeros(3)
        self.sumsq = np.zeros(3)
        self.blank = []

    def add(self, images, first_index):
        for j, im in enumerate(images):
            px = np.asarray(im, dtype=np.float64).reshape(-1, 3)
            self.count += len(px)
            self.sum += px.sum(0)
            self.sumsq += (px * px).sum(0)
            if px.std() < BLANK_STD:
                self.blank.append(first_index + j)

    def result(self):
        if self.count == 0:
            return {"mean": None, "std": None}
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sumsq / self.count - mean * mean, 0))
        return {"mean": [round(float(v), 3) for v in mean], "std": [round(float(v), 3) for v in std]}


# --------------------------------------------------------------------------- API (I/O)

def data_stats(data, pixels=False, progress=None, max_outliers=None):
    """Statistics of a data pack (a path or an open Pack) as a JSON-ready dict.

    Keys: ``data``, ``kind``, ``n_images``, ``n_classes``, ``classes`` (per class: name,
    count, share, weights), ``imbalance``, ``class_weights``, ``sizes`` (distribution),
    ``size_outliers`` ([{index, file, height, width, reason}]), ``pixels`` (per-channel mean
    and std 0..255 and blank images, when ``pixels``), ``notes``.
    """
    from ..datasets import Pack, open_pack

    pack = data if isinstance(data, Pack) else open_pack(data)
    counts = class_counts(pack.labels, pack.n_classes)
    weights = class_weights(counts)
    names = pack.class_names or [str(i) for i in range(pack.n_classes)]
    sizes = pack.image_sizes()
    outliers = size_outliers(sizes)
    result = {
        "data": pack.path, "kind": pack.kind, "n_images": pack.n, "n_classes": pack.n_classes,
        "classes": [{"class": names[i], "label": i, "count": int(counts[i]),
                     "share": round(float(counts[i]) / max(pack.n, 1), 6),
                     "weight_max_over_n": weights["max_over_n"][i],
                     "weight_balanced": weights["balanced"][i]} for i in range(len(counts))],
        "imbalance": imbalance(counts),
        "class_weights": weights,
        "sizes": size_distribution(sizes),
        "n_sizes": int(len(np.unique(sizes, axis=0))) if len(sizes) else 0,
        "size_outliers": [{"index": int(i), "file": pack.files[i] if pack.files else None,
                           "height": int(sizes[i, 0]), "width": int(sizes[i, 1]), "reason": why}
                          for i, why in outliers[:max_outliers]],
        "n_size_outliers": len(outliers),
        "notes": list(pack.notes),
    }
    if result["imbalance"] == float("inf"):
        result["imbalance"] = None
        result["empty_classes"] = [names[i] for i in range(len(counts)) if counts[i] == 0]
    if pixels:
        acc = PixelStats()
        done = 0
        for batch in pack.iter_images(256):
            acc.add(batch, done)
            done += len(batch)
            if progress:
                progress(done, pack.n)
        result["pixels"] = dict(acc.result(), blank=[
            {"index": int(i), "file": pack.files[i] if pack.files else None} for i in acc.blank])
        result["notes"] = list(pack.notes)
    return result
