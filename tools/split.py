"""Stratified train/validation/test split that keeps near-duplicates together (pure logic).

``allocate`` decides how many images of one class go to each split (largest remainder, so
each count is within one image of the requested fraction); ``stratified_split`` assigns
the images, placing each group of duplicates as one unit on one side. Groups are placed
first (largest first), singletons then fill what each class still needs in each split,
in a seeded random order; the only way a class ends more than one image off its target is
a duplicate group too large for the room left, which is reported.
"""

import numpy as np

SPLITS = ("train", "val", "test")


def fractions_of(val, test=0.0):
    """(train, val, test) fractions from the requested val and test ones."""
    val, test = float(val), float(test or 0.0)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError("--val and --test must be fractions in [0, 1) whose sum is below 1 "
                         "(got val=%g, test=%g)" % (val, test))
    return (1.0 - val - test, val, test)


def allocate(count, fractions, behind=None):
    """Split ``count`` items over ``fractions`` (summing to 1) by largest remainder.

    Each result is floor or ceil of ``count * fraction``. Ties in the remainders go to
    the split that is furthest ``behind`` its global target (an optional array), so that
    the totals over many classes stay close to the requested fractions too.
    """
    f = np.asarray(fractions, dtype=np.float64)
    quota = count * f
    base = np.floor(quota + 1e-9).astype(np.int64)
    left = int(count - base.sum())
    if left > 0:
        rema = quota - base
        rema = np.where(f > 0, rema, -1.0)
        tie = np.zeros(len(f)) if behind is None else np.asarray(behind, dtype=np.float64)
        order = sorted(range(len(f)), key=lambda s: (-round(rema[s], 9), -tie[s], s))
        for s in order[:left]:
            base[s] += 1
    return base


def class_targets(labels, n_classes, fractions, rng):
    """targets[c, s]: images of class c wanted in split s (each row sums to the class count)."""
    counts = np.bincount(labels, minlength=n_classes)
    targets = np.zeros((n_classes, len(fractions)), dtype=np.int64)
    f = np.asarray(fractions)
    for c in rng.permutation(n_classes):
        sofar = targets.sum(axis=0)
        wanted = f * (sofar.sum() + counts[c])
        targets[c] = allocate(int(counts[c]), fractions, behind=wanted - sofar)
    return targets


def stratified_split(labels, fractions, seed=0, groups=(), n_classes=None):
    """Assign every image to a split.

    Args:
      labels: int [n] class of each image.
      fractions: (train, val, test) summing to 1 (test may be 0).
      seed: the random order of the images within each class.
      groups: index arrays of images that must stay on the same side (duplicates).
      n_classes: number of classes (default: max label + 1).

    Returns:
      (assignment int8 [n] with 0 train, 1 val, 2 test; targets [C, 3]; achieved [C, 3]).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    k = int(n_classes if n_classes is not None else (labels.max() + 1 if n else 0))
    rng = np.random.default_rng(seed)
    targets = class_targets(labels, k, fractions, rng)
    achieved = np.zeros_like(targets)
    assignment = np.full(n, -1, dtype=np.int8)
    open_splits = [s for s in range(len(fractions)) if fractions[s] > 0]

    def place(members):
        cls, cnt = np.unique(labels[members], return_counts=True)
        best, best_score = None, None
        for s in open_splits:
            left = targets[cls, s] - achieved[cls, s]
            # room that stays after placing, and the worst overshoot it would cause
            score = (min(0, int((left - cnt).min())), int(left.sum()), fractions[s])
            if best_score is None or score > best_score:
                best, best_score = s, score
        assignment[members] = best
        achieved[cls, best] += cnt

    multi = [np.asarray(g, dtype=np.int64) for g in groups if len(g) > 1]
    if multi:
        order = rng.permutation(len(multi))
        multi = [multi[i] for i in order]
        multi.sort(key=len, reverse=True)
        seen = np.zeros(n, dtype=bool)
        for g in multi:
            g = g[~seen[g]]
            if len(g):
                seen[g] = True
                place(g)
    for c in range(k):
        free = np.flatnonzero((labels == c) & (assignment < 0))
        for i in rng.permutation(free):
            left = targets[c] - achieved[c]
            s = max(open_splits, key=lambda s: (left[s], fractions[s]))
            assignment[i] = s
            achieved[c, s] += 1
    return assignment, targets, achieved


def split_report(labels, assignment, fractions, class_names=None, n_classes=None):
    """Per-class counts per split, requested vs achieved, and the worst deviation (images)."""
    labels = np.asarray(labels)
    k = int(n_classes if n_classes is not None else labels.max() + 1)
    counts = np.zeros((k, 3), dtype=np.int64)
    np.add.at(counts, (labels, assignment.astype(np.int64)), 1)
    total = counts.sum(axis=1)
    requested = total[:, None] * np.asarray(fractions)[None, :]
    deviation = np.abs(counts - requested)
    rows = []
    for c in range(k):
        rows.append({"class": class_names[c] if class_names else str(c), "total": int(total[c]),
                     **{SPLITS[s]: int(counts[c, s]) for s in range(3)},
                     "max_deviation": round(float(deviation[c].max()), 3)})
    return {"fractions": {SPLITS[s]: round(float(fractions[s]), 6) for s in range(3)},
            "totals": {SPLITS[s]: int(counts[:, s].sum()) for s in range(3)},
            "per_class": rows, "max_deviation": round(float(deviation.max()) if k else 0.0, 3)}


# --------------------------------------------------------------------------- API (I/O)

def folder_class_names(pack):
    """Class folder names in label order (sorted order = label order, as Keras reads them)."""
    if pack.class_names:
        names = list(pack.class_names)
        if names == sorted(names) and len(set(names)) == len(names):
            return names
    width = len(str(max(pack.n_classes - 1, 0)))
    return ["class_%0*d" % (width, i) for i in range(pack.n_classes)]


def _prepare_output(out, force, data_path):
    import os

    from ..errors import UsageError

    out = os.path.abspath(out)
    src = os.path.abspath(data_path)
    if out == src or out.startswith(src + os.sep) or src.startswith(out + os.sep):
        raise UsageError("%s: the output must be outside the data (%s) and must not contain it."
                         % (out, data_path))
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise UsageError("%s: exists and is not a folder; choose another output." % out)
        if os.listdir(out) and not force:
            raise UsageError("%s: already exists and is not empty. Pass --force to replace it, "
                             "or choose another output folder." % out)
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise UsageError("%s: its parent folder %s does not exist." % (out, parent))
    return out


def _swap_in(tmp, out):
    import os
    import shutil

    old = None
    if os.path.exists(out):
        old = out + ".leafsub-old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def split_data(data, out, val, test=0.0, seed=0, fmt="folders", size=None, force=False,
               keep_duplicates_together=True, threshold=None, compress=False, progress=None):
    """Split a data pack into train/val[/test], stratified, duplicates on one side.

    Args:
      data: a path or an open Pack.
      out: output folder (refused when non-empty unless ``force``).
      val, test: fractions; train gets the rest.
      seed: which images go where.
      fmt: "folders" (``out/train/<class>/...``, files copied as they are from a folder
        pack, PNG from arrays) or "npz" (``out/train.npz`` ... in the format ``open_pack`` reads).
      size: (H, W) to resize to; needed for "npz" when the images differ in size.
      keep_duplicates_together: group exact and near duplicates first (see tools/dedupe.py).

    Returns a JSON-ready dict (also written as ``out/split.json``): ``report`` (see
    :func:`split_report`), ``duplicate_groups`` (index lists), ``outputs``, ``seed``.
    """
    import os
    import shutil
    import tempfile

    from ..datasets import NpzWriter, Pack, as_size, open_pack
    from ..errors import UsageError
    from ..jsonfiles import dumps, write_atomic

    from . import dedupe

    if fmt not in ("folders", "npz"):
        raise UsageError("--format must be 'folders' or 'npz' (got %r)." % fmt)
    try:
        fractions = fractions_of(val, test)
    except ValueError as e:
        raise UsageError(str(e)) from None
    pack = data if isinstance(data, Pack) else open_pack(data)
    out = _prepare_output(out, force, pack.path)
    size = as_size(size)
    if fmt == "npz" and size is None:
        size = pack.default_size()

    groups = []
    if keep_duplicates_together:
        fp = dedupe.fingerprint_pack(pack)
        groups = dedupe.duplicate_groups(fp, threshold=threshold or dedupe.DEFAULT_THRESHOLD)
    assignment, targets, achieved = stratified_split(pack.labels, fractions, seed=seed, groups=groups,
                                                     n_classes=pack.n_classes)
    report = split_report(pack.labels, assignment, fractions, pack.class_names, pack.n_classes)
    counts = [int((assignment == s).sum()) for s in range(3)]
    used = [s for s in range(3) if fractions[s] > 0]

    tmp = tempfile.mkdtemp(prefix=".leafsub-split-", dir=os.path.dirname(out))
    outputs = {}
    members = {SPLITS[s]: [] for s in used}
    try:
        if fmt == "folders":
            names = folder_class_names(pack)
            for s in used:
                for name in names:
                    os.makedirs(os.path.join(tmp, SPLITS[s], name))
                outputs[SPLITS[s]] = os.path.join(out, SPLITS[s])
            if pack.files is not None:
                root = os.path.abspath(pack.path)
                for i, src in enumerate(pack.files):
                    s = SPLITS[assignment[i]]
                    rel = os.path.relpath(os.path.abspath(src), root).split(os.sep, 1)[1]
                    dst = os.path.join(tmp, s, names[pack.labels[i]], rel)
                    if size is None:
                        os.makedirs(os.path.dirname(dst), exist_ok=True)
                        shutil.copy2(src, dst)
                    else:
                        _save_png(pack.read([i], size=size)[0], os.path.splitext(dst)[0] + ".png")
                    members[s].append(os.path.relpath(src, pack.path))
                    if progress:
                        progress(i + 1, pack.n)
            else:
                width = len(str(pack.n - 1))
                start = 0
                for batch in pack.iter_batches(256, size=size):
                    for j, image in enumerate(batch):
                        i = start + j
                        s = SPLITS[assignment[i]]
                        _save_png(image, os.path.join(tmp, s, names[pack.labels[i]],
                                                      "%0*d.png" % (width, i)))
                        members[s].append(i)
                    start += len(batch)
                    if progress:
                        progress(start, pack.n)
        else:
            writers = {}
            try:
                for s in used:
                    idx = np.flatnonzero(assignment == s)
                    writers[s] = NpzWriter(os.path.join(tmp, SPLITS[s] + ".npz"), len(idx), size,
                                           compress=compress, labels=pack.labels[idx],
                                           class_names=pack.class_names)
                    outputs[SPLITS[s]] = os.path.join(out, SPLITS[s] + ".npz")
                start = 0
                for batch in pack.iter_batches(256, size=size):
                    a = assignment[start:start + len(batch)]
                    for s in used:
                        rows = np.flatnonzero(a == s)
                        if len(rows):
                            writers[s].write(batch[rows])
                            members[SPLITS[s]].extend((start + rows).tolist())
                    start += len(batch)
                    if progress:
                        progress(start, pack.n)
                for s in used:
                    writers.pop(s).close()
            finally:
                for w in writers.values():
                    w.abort()
        result = {
            "leafsub_split": 1, "data": pack.path, "out": out, "format": fmt, "seed": int(seed),
            "size": list(size) if size else None, "counts": {SPLITS[s]: counts[s] for s in range(3)},
            "report": report, "outputs": outputs,
            "duplicate_groups": [[int(i) for i in g] for g in groups],
            "n_grouped_images": int(sum(len(g) for g in groups)),
            "members": members, "notes": list(pack.notes),
        }
        write_atomic(os.path.join(tmp, "split.json"), dumps(result))
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _save_png(image, path):
    from PIL import Image
    import os

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
