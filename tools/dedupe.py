"""Exact and near-duplicate images: hashing, candidate search and grouping (pure logic).

How two images are judged duplicates:

1. **Exact**: the SHA-256 of the decoded pixels (shape + RGB bytes) is equal, whatever the
   file format or name.
2. **Near** (re-encoded, resized, lightly recompressed copies), in two stages:

   * *candidates*: a 64-bit DCT perceptual hash (pHash) of the 32x32 grayscale thumbnail:
     the 8x8 lowest DCT frequencies, each bit set when its coefficient is above the median
     of the 63 non-DC ones. Pairs at Hamming distance <= ``threshold`` (default
     :data:`DEFAULT_THRESHOLD` = 10 of 64) are candidates. They are found with a
     multi-index search: the hash is cut into 4 chunks of 16 bits, and by the pigeonhole
     principle two hashes within distance T agree within T // 4 bits on at least one
     chunk, so each image only probes the buckets of its chunks' near neighbours
     instead of being compared with every other image.
   * a second, coarser candidate source catches what pHash misses on smooth images (a
     gradient or a flat background has almost no DCT energy beyond the first coefficients,
     so its pHash bits are decided by noise): a 64-bit average hash (aHash: the 8x8 box
     thumbnail, each bit set when the cell is brighter than the mean) within
     :data:`AHASH_THRESHOLD` = 6 bits.
   * *verification*: pHash sees only the coarse layout, so distinct images with the same
     layout (a dark leaf centred on a pale background) can be close. A candidate pair is
     kept only when the 32x32 grayscale thumbnails also match: mean absolute difference
     <= ``max_diff`` (default :data:`DEFAULT_MAX_DIFF` = 8 grey levels of 255), correlation
     >= :data:`MIN_CORRELATION` (0.95), and mean colours within :data:`MAX_COLOUR_DIFF`.
     Measured on 5,200 synthetic leaves: JPEG (q 60-90) and resized (0.4x-2.7x) copies
     stay under 4.1 grey levels and above 0.985 correlation; the closest distinct pairs
     by pHash were at >= 16 grey levels and <= 0.91 correlation.

Groups are the connected components of the kept pairs (union-find).
"""

import hashlib

import numpy as np

DEFAULT_THRESHOLD = 10
DEFAULT_MAX_DIFF = 8.0
AHASH_THRESHOLD = 6
MIN_CORRELATION = 0.95
MAX_COLOUR_DIFF = 16.0
THUMB = 32
_CHUNKS = 4
_CHUNK_BITS = 64 // _CHUNKS
_BLOCK_PAIRS = 1 << 20


# --------------------------------------------------------------------------- hashing

def _dct_matrix(n):
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT8 = _dct_matrix(THUMB)[:8].astype(np.float64)


def thumbnail(image):
    """32x32 grayscale thumbnail (uint8) of one uint8 [h, w, 3] image, PIL box-filtered."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("L").resize(
        (THUMB, THUMB), Image.BOX), dtype=np.uint8)


def phash(thumbs):
    """64-bit DCT perceptual hashes (uint64 [b]) of 32x32 grayscale thumbnails [b, 32, 32]."""
    t = np.asarray(thumbs, dtype=np.float64).reshape(-1, THUMB, THUMB)
    coeffs = np.einsum("ki,bij,lj->bkl", _DCT8, t, _DCT8).reshape(len(t), 64)
    median = np.median(coeffs[:, 1:], axis=1, keepdims=True)
    bits = coeffs > median
    return np.packbits(bits, axis=1, bitorder="little").view("<u8")[:, 0].astype(np.uint64)


def ahash(thumbs):
    """64-bit average hashes (uint64 [b]) of 32x32 grayscale thumbnails: 8x8 cells above their mean."""
    t = np.asarray(thumbs, dtype=np.float64).reshape(-1, 8, THUMB // 8, 8, THUMB // 8).mean((2, 4))
    t = t.reshape(len(t), 64)
    bits = t > t.mean(1, keepdims=True)
    return np.packbits(bits, axis=1, bitorder="little").view("<u8")[:, 0].astype(np.uint64)


def pixel_sha256(image):
    """SHA-256 (hex) of an image's decoded pixels, shape included."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h = hashlib.sha256(("%dx%dx%d:" % image.shape).encode())
    h.update(image.tobytes())
    return h.hexdigest()


def hamming(a, b):
    """Bitwise Hamming distance between uint64 arrays (broadcasting)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return np.bitwise_count(x).astype(np.int64)


class Fingerprints:
    """What dedupe keeps per image: pHash, aHash, pixel SHA-256, thumbnail, mean colour."""

    def __init__(self, hashes, shas, thumbs, colours):
        self.hashes = hashes      # uint64 [n] pHash
        self.ahashes = ahash(thumbs)
        self.shas = shas          # list of hex str
        self.thumbs = thumbs      # uint8 [n, 32, 32]
        self.colours = colours    # float32 [n, 3]

    @property
    def n(self):
        return len(self.hashes)


def fingerprint_images(images):
    """Fingerprints of a sequence of uint8 [h, w, 3] images (sizes may differ)."""
    images = list(images)
    thumbs = np.stack([thumbnail(im) for im in images]) if images else np.zeros((0, THUMB, THUMB), np.uint8)
    return Fingerprints(phash(thumbs), [pixel_sha256(im) for im in images], thumbs,
                        np.array([np.asarray(im).reshape(-1, 3).mean(0) for im in images],
                                 dtype=np.float32).reshape(-1, 3))


def fingerprint_pack(pack, batch_size=256, progress=None):
    """Fingerprints of every image of a :class:`leafsub.datasets.Pack`, at native size."""
    parts = []
    done = 0
    for batch in pack.iter_images(batch_size):
        parts.append(fingerprint_images(batch))
        done += len(batch)
        if progress:
            progress(done, pack.n)
    if not parts:
        return fingerprint_images([])
    return Fingerprints(np.concatenate([p.hashes for p in parts]), sum((p.shas for p in parts), []),
                        np.concatenate([p.thumbs for p in parts]),
                        np.concatenate([p.colours for p in parts]))


# --------------------------------------------------------------------------- candidate search

def _flip_masks(bits, radius):
    """All masks of ``bits`` bits with at most ``radius`` bits set (uint64)."""
    from itertools import combinations

    masks = [0]
    for r in range(1, radius + 1):
        for combo in combinations(range(bits), r):
            masks.append(sum(1 << b for b in combo))
    return np.array(masks, dtype=np.uint64)


def _pairs_from_ranges(queries, lo, hi, order):
    """(i, order[k]) for every query i and k in [lo[i], hi[i])."""
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i = np.repeat(queries, counts)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    k = np.arange(total) + starts
    return i, order[k]


def near_pairs(hashes, threshold=DEFAULT_THRESHOLD):
    """All pairs (i < j) whose hashes are within ``threshold`` bits: int64 [p, 2], sorted.

    Multi-index hashing: 4 chunks of 16 bits, each probed with every flip of at most
    ``threshold // 4`` bits; candidates are then checked on the full 64 bits.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    threshold = int(threshold)
    radius = max(0, threshold // _CHUNKS)
    masks = _flip_masks(_CHUNK_BITS, radius)
    found = []
    idx = np.arange(n, dtype=np.int64)
    chunk_mask = np.uint64((1 << _CHUNK_BITS) - 1)
    for c in range(_CHUNKS):
        keys = (hashes >> np.uint64(c * _CHUNK_BITS)) & chunk_mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        for mask in masks:
            probe = keys ^ mask
            lo = np.searchsorted(sorted_keys, probe, side="left")
            hi = np.searchsorted(sorted_keys, probe, side="right")
            # Crowded buckets (many images with the same coarse layout) give many raw pairs:
            # expand them in blocks of about _BLOCK_PAIRS and keep only the close ones.
            ends = np.cumsum(hi - lo)
            first = 0
            while first < n:
                base = ends[first - 1] if first else 0
                last = int(np.searchsorted(ends, base + _BLOCK_PAIRS, side="right"))
                last = min(n, max(last, first + 1))
                i, j = _pairs_from_ranges(idx[first:last], lo[first:last], hi[first:last], order)
                keep = i < j
                i, j = i[keep], j[keep]
                keep = hamming(hashes[i], hashes[j]) <= threshold
                if keep.any():
                    found.append(i[keep] * n + j[keep])
                first = last
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    codes = np.unique(np.concatenate(found))
    return np.stack([codes // n, codes % n], axis=1)


def verify_pairs(pairs, fp, max_diff=DEFAULT_MAX_DIFF, min_correlation=MIN_CORRELATION,
                 max_colour_diff=MAX_COLOUR_DIFF):
    """Keep the candidate pairs whose thumbnails and mean colours really match."""
    if len(pairs) == 0:
        return pairs
    out = []
    for start in range(0, len(pairs), 4096):
        p = pairs[start:start + 4096]
        a = fp.thumbs[p[:, 0]].reshape(len(p), -1).astype(np.float32)
        b = fp.thumbs[p[:, 1]].reshape(len(p), -1).astype(np.float32)
        mad = np.abs(a - b).mean(1)
        a -= a.mean(1, keepdims=True)
        b -= b.mean(1, keepdims=True)
        denom = np.sqrt((a * a).sum(1) * (b * b).sum(1))
        corr = np.where(denom > 0, (a * b).sum(1) / np.maximum(denom, 1e-9), (mad <= max_diff) * 1.0)
        colour = np.abs(fp.colours[p[:, 0]] - fp.colours[p[:, 1]]).max(1)
        out.append(p[(mad <= max_diff) & (corr >= min_correlation) & (colour <= max_colour_diff)])
    return np.concatenate(out)


def exact_pairs(shas):
    """Pairs (first, other) of images whose pixel SHA-256 are equal: int64 [p, 2]."""
    first = {}
    pairs = []
    for i, s in enumerate(shas):
        if s in first:
            pairs.append((first[s], i))
        else:
            first[s] = i
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


# --------------------------------------------------------------------------- grouping

def union_find_groups(n, pairs):
    """Connected components of size >= 2: list of sorted int64 arrays, largest first."""
    parent = np.arange(n, dtype=np.int64)

    def root(x):
        r = x
        while parent[r] != r:
            r = parent[r]
        while parent[x] != r:  # path compression
            parent[x], x = r, parent[x]
        return r

    for a, b in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)], dtype=np.int64) if n else np.zeros(0, np.int64)
    order = np.argsort(roots, kind="stable")
    _, starts, counts = np.unique(roots[order], return_index=True, return_counts=True)
    groups = [order[s:s + c] for s, c in zip(starts, counts) if c >= 2]
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    return [np.sort(g) for g in groups]


def duplicate_groups(fp, threshold=DEFAULT_THRESHOLD, max_diff=DEFAULT_MAX_DIFF):
    """Groups of duplicate images (exact and near) from fingerprints: list of int64 arrays."""
    exact = exact_pairs(fp.shas)
    candidates = np.unique(np.concatenate([near_pairs(fp.hashes, threshold),
                                           near_pairs(fp.ahashes, AHASH_THRESHOLD)]), axis=0)
    near = verify_pairs(candidates, fp, max_diff=max_diff)
    return union_find_groups(fp.n, np.concatenate([exact, near]))


def describe_groups(groups, fp, labels=None, class_names=None, files=None):
    """JSON-ready description of each group: members, exact copies, distances, classes."""
    out = []
    for g in groups:
        first = int(g[0])
        sha_first = {}
        members = []
        for i in g:
            i = int(i)
            sha = fp.shas[i]
            m = {"index": i, "distance": int(hamming(fp.hashes[first], fp.hashes[i])),
                 "exact_copy_of": sha_first.get(sha)}
            sha_first.setdefault(sha, i)
            if files is not None:
                m["file"] = files[i]
            if labels is not None:
                m["label"] = int(labels[i])
                if class_names:
                    m["class"] = class_names[int(labels[i])]
            members.append(m)
        n_exact = sum(1 for m in members if m["exact_copy_of"] is not None)
        kind = "exact" if n_exact == len(members) - 1 else ("near" if n_exact == 0 else "mixed")
        group_labels = sorted({m["label"] for m in members}) if labels is not None else []
        out.append({"size": len(members), "kind": kind, "members": members,
                    "labels": group_labels,
                    "classes": [class_names[k] for k in group_labels] if class_names else group_labels,
                    "conflicting_labels": len(group_labels) > 1})
    return out


# --------------------------------------------------------------------------- API (I/O)

def find_duplicates(data, threshold=DEFAULT_THRESHOLD, max_diff=DEFAULT_MAX_DIFF, progress=None):
    """Exact and near-duplicate groups in a data pack (a path or an open Pack).

    Returns a JSON-ready dict: ``data``, ``n_images``, ``threshold``, ``max_diff``,
    ``n_groups``, ``n_duplicates`` (images beyond the first of each group), ``n_exact``
    (images whose pixels equal an earlier member's), ``n_conflicting`` (groups whose members
    carry different labels), ``groups`` (see :func:`describe_groups`), ``notes``, ``timing``.
    """
    import time

    from ..datasets import Pack, open_pack

    pack = data if isinstance(data, Pack) else open_pack(data)
    started = time.perf_counter()
    fp = fingerprint_pack(pack, progress=progress)
    hashed = time.perf_counter()
    groups = duplicate_groups(fp, threshold=threshold, max_diff=max_diff)
    grouped = time.perf_counter()
    described = describe_groups(groups, fp, pack.labels, pack.class_names, pack.files)
    return {
        "data": pack.path, "kind": pack.kind, "n_images": pack.n,
        "threshold": int(threshold), "max_diff": float(max_diff),
        "n_groups": len(groups), "n_duplicates": int(sum(len(g) - 1 for g in groups)),
        "n_exact": int(sum(1 for g in described for m in g["members"] if m["exact_copy_of"] is not None)),
        "n_conflicting": int(sum(1 for g in described if g["conflicting_labels"])),
        "groups": described, "notes": list(pack.notes),
        "timing": {"hash_s": round(hashed - started, 3), "group_s": round(grouped - hashed, 3)},
    }


def quarantine(result, move_to, keep="first"):
    """Move duplicate files of a folder pack out of it, into ``move_to`` (same relative paths).

    Args:
      result: what :func:`find_duplicates` returned for a folder pack.
      move_to: a folder outside the data folder (created if needed).
      keep: "first" leaves the first member of each group in place (a planted copy set
        keeps one example), "none" moves whole groups (outliers that should not be there).

    Returns:
      the list of moves [{"from", "to", "group"}], also appended to
      ``move_to/leafsub-dedupe.json`` so that they can be undone.
    """
    import json
    import os
    import shutil

    from ..errors import UsageError
    from ..jsonfiles import dumps, write_atomic

    if keep not in ("first", "none"):
        raise UsageError("--keep must be 'first' or 'none' (got %r)." % keep)
    if result["kind"] != "folder":
        raise UsageError("%s: --move-to works on a folder of class sub-folders; in a %s pack "
                         "images are rows of an array. Use --json to get the duplicate indices and "
                         "drop them when you load the arrays." % (result["data"], result["kind"]))
    root = os.path.abspath(result["data"])
    dest_root = os.path.abspath(move_to)
    if dest_root == root or dest_root.startswith(root + os.sep):
        raise UsageError("%s: --move-to must be outside the data folder %s (inside it, the "
                         "quarantine folder would be read as a class)." % (move_to, result["data"]))
    plan = []
    for gi, group in enumerate(result["groups"], 1):
        members = group["members"] if keep == "none" else group["members"][1:]
        for m in members:
            src = os.path.abspath(m["file"])
            rel = os.path.relpath(src, root)
            plan.append((src, os.path.join(dest_root, rel), gi))
    clash = [dst for _, dst, _ in plan if os.path.exists(dst)]
    if clash:
        raise UsageError("%s: already exists in the quarantine folder; nothing was moved. Choose "
                         "another --move-to folder or empty this one." % clash[0])
    manifest_path = os.path.join(dest_root, "leafsub-dedupe.json")
    os.makedirs(dest_root, exist_ok=True)
    previous = []
    if os.path.exists(manifest_path):
        try:
            with open(manifest_path, encoding="utf-8") as f:
                previous = json.load(f).get("moves", [])
        except (OSError, ValueError):
            previous = []
    moves = []
    try:
        for src, dst, gi in plan:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.move(src, dst)
            moves.append({"from": src, "to": dst, "group": gi})
    finally:
        write_atomic(manifest_path, dumps({"leafsub_dedupe": 1, "data": root,
                                           "moves": previous + moves}))
    return moves
