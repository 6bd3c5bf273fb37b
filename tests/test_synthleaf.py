"""The synthetic leaf set: deterministic, shaped as promised, neither trivial nor hopeless."""

import os

import numpy as np
import pytest

from leafsub.datasets import open_pack
from leafsub.tools import synthleaf


def test_shapes_types_and_balance():
    images, labels, names = synthleaf.generate(6, size=64, n_classes=5, seed=0)
    assert images.shape == (30, 64, 64, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and np.array_equal(np.bincount(labels), [6] * 5)
    assert names == synthleaf.class_names(5) and len(set(names)) == 5
    assert all("_" in n and n[0].isupper() for n in names)
    assert not np.array_equal(labels, np.sort(labels))  # shuffled, not class by class
    assert images.std() > 20  # not blank


def test_same_seed_same_bytes_other_seed_other_images():
    a = synthleaf.generate(5, size=48, n_classes=8, seed=11)
    b = synthleaf.generate(5, size=48, n_classes=8, seed=11)
    c = synthleaf.generate(5, size=48, n_classes=8, seed=12)
    assert a[0].tobytes() == b[0].tobytes() and np.array_equal(a[1], b[1])
    assert a[0].tobytes() != c[0].tobytes()


def test_all_species_render_and_images_are_distinct():
    images, labels, names = synthleaf.generate(3, size=32, n_classes=synthleaf.MAX_CLASSES, seed=1)
    assert len(names) == synthleaf.MAX_CLASSES
    flat = images.reshape(len(images), -1)
    assert len({row.tobytes() for row in flat}) == len(images)


def test_bad_arguments():
    with pytest.raises(ValueError):
        synthleaf.generate(2, n_classes=1)
    with pytest.raises(ValueError):
        synthleaf.generate(2, n_classes=synthleaf.MAX_CLASSES + 1)


def _features(x):
    """Rotation-blind simple features: colour statistics and edge energy of the centre."""
    c = x[:, x.shape[1] // 4:-x.shape[1] // 4, x.shape[2] // 4:-x.shape[2] // 4].astype(np.float32)
    g = c.mean(-1)
    edges = np.abs(np.diff(g, axis=1)).mean((1, 2)) + np.abs(np.diff(g, axis=2)).mean((1, 2))
    return np.column_stack([c.mean((1, 2)), c.std((1, 2)), edges])


def test_species_separable_but_not_trivially():
    images, labels, _ = synthleaf.generate(80, size=96, n_classes=8, seed=3)
    f = _features(images)
    f = (f - f.mean(0)) / f.std(0)
    train = np.arange(len(labels)) % 2 == 0
    centroids = np.stack([f[train & (labels == k)].mean(0) for k in range(8)])
    pred = np.argmin(((f[~train, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (pred == labels[~train]).mean()
    # chance is 1/8: simple statistics carry some signal, but they do not solve the task
    assert 0.2 < accuracy < 0.8, accuracy


def test_species_differ_in_leaf_colour_and_shape_statistics():
    images, labels, _ = synthleaf.generate(30, size=64, n_classes=8, seed=5)
    params = synthleaf._draw_params(labels, np.random.default_rng(0), 8)
    width = np.array([params["width"][labels == k].mean() for k in range(8)])
    lobes = np.array([params["lobes"][labels == k].mean() for k in range(8)])
    assert len(np.unique(np.round(width, 1))) >= 5
    assert len(np.unique(lobes)) >= 4


def test_write_folder_is_a_pack(tmp_path):
    out, labels, names = synthleaf.write_folder(str(tmp_path / "leaves"), 3, size=40, n_classes=4, seed=2)
    assert sorted(os.listdir(out)) == sorted(names)
    pack = open_pack(out)
    assert pack.n == 12 and pack.class_names == names and pack.image_size() == (40, 40)
    images, _, _ = synthleaf.generate(3, size=40, n_classes=4, seed=2)
    got = np.concatenate(list(pack.iter_batches(5)))
    assert {r.tobytes() for r in got} == {r.tobytes() for r in images}  # PNG is lossless
    assert np.array_equal(np.sort(pack.labels), np.sort(labels))
    by_bytes = {r.tobytes(): int(k) for r, k in zip(images, labels)}
    assert [by_bytes[r.tobytes()] for r in got] == pack.labels.tolist()  # same numbering
