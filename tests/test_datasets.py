"""Data packs: the three layouts, their conversions, their errors, and bounded memory."""

import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from PIL import Image

from leafsub import datasets
from leafsub.datasets import open_pack, write_npy
from leafsub.errors import UsageError


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 20, 24, 3), dtype=np.uint8)
    y = rng.integers(0, 4, 40).astype(np.int64)
    y[:4] = [0, 1, 2, 3]
    return x, y


def _all(pack, batch=7, size=None):
    return np.concatenate(list(pack.iter_batches(batch, size=size)))


def _folder(root, x, y, ext=".png"):
    for k in range(int(y.max()) + 1):
        os.makedirs(os.path.join(root, "class_%d" % k), exist_ok=True)
    for i, (image, label) in enumerate(zip(x, y)):
        Image.fromarray(image).save(os.path.join(root, "class_%d" % label, "%03d%s" % (i, ext)))
    return str(root)


# --------------------------------------------------------------------------- the three layouts

def test_npz_stored_round_trip(tmp_path, arrays):
    x, y = arrays
    path = tmp_path / "a.npz"
    np.savez(path, images=x, labels=y, class_names=np.array(["a", "b", "c", "d"]))
    pack = open_pack(path)
    assert (pack.kind, pack.n, pack.n_classes, pack.image_size()) == ("npz", 40, 4, (20, 24))
    assert pack.class_names == ["a", "b", "c", "d"]
    assert pack.labels.dtype == np.int64 and np.array_equal(pack.labels, y)
    assert isinstance(pack._source, datasets._StoredNpySource)  # seek + read, never loaded whole
    assert np.array_equal(_all(pack), x)
    assert np.array_equal(pack.read([5, 1, 5]), x[[5, 1, 5]])
    assert pack.notes == []


@pytest.mark.parametrize("image_key,label_key", [("x", "y"), ("X_test", "Y_test"), ("imgs", "targets")])
def test_npz_compressed_streamed(tmp_path, arrays, monkeypatch, image_key, label_key):
    x, y = arrays
    monkeypatch.setattr(datasets, "SMALL_MEMBER_BYTES", 0)  # force the streaming reader
    path = tmp_path / "b.npz"
    np.savez_compressed(path, **{image_key: x, label_key: y})
    pack = open_pack(path)
    assert isinstance(pack._source, datasets._StreamNpySource)
    assert pack.class_names is None and pack.n_classes == 4
    assert np.array_equal(_all(pack, batch=6), x)
    assert np.array_equal(pack.read([39, 0, 17, 17]), x[[39, 0, 17, 17]])


def test_h5_lazy_with_grayscale_and_one_hot(tmp_path, arrays):
    import h5py

    x, y = arrays
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f["data"] = x[..., 0]
        f["labels"] = np.eye(5)[y]
        f["class_names"] = np.array([b"a", b"b", b"c", b"d", b"e"])
    pack = open_pack(path)
    assert pack.kind == "h5" and pack.class_names == ["a", "b", "c", "d", "e"] and pack.n_classes == 5
    assert np.array_equal(pack.labels, y)
    out = _all(pack)
    assert out.shape == (40, 20, 24, 3)
    assert np.array_equal(out, np.repeat(x[..., :1], 3, axis=-1))
    assert np.array_equal(pack.read([9, 2, 9]), out[[9, 2, 9]])
    assert any("grayscale" in n for n in pack.notes) and any("one-hot" in n for n in pack.notes)


def test_folder_pack(tmp_path, arrays):
    x, y = arrays
    root = _folder(tmp_path / "data", x, y)
    (tmp_path / "data" / "class_0" / "README.txt").write_text("not an image")
    (tmp_path / "data" / "class_1" / ".hidden.png").write_bytes(b"junk")
    os.makedirs(tmp_path / "data" / ".ipynb_checkpoints")
    pack = open_pack(root)
    assert pack.kind == "folder" and pack.class_names == ["class_0", "class_1", "class_2", "class_3"]
    order = np.lexsort((np.arange(40), y))  # class by class, file names sorted
    assert np.array_equal(pack.labels, y[order])
    assert np.array_equal(_all(pack), x[order])
    assert pack.image_size() == (20, 24)
    assert len(pack.files) == 40
    assert any("not images" in n for n in pack.notes)


def test_folder_mixed_sizes_needs_a_size(tmp_path, arrays):
    x, y = arrays
    root = _folder(tmp_path / "data", x, y)
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(tmp_path / "data" / "class_2" / "big.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "data" / "class_2" / "gray.jpg")
    pack = open_pack(root)
    assert pack.image_size() is None
    with pytest.raises(UsageError, match="same size"):
        next(pack.iter_batches(8))
    out = _all(pack, size=(16, 16))
    assert out.shape == (42, 16, 16, 3) and out.dtype == np.uint8
    assert any("grayscale" in n for n in pack.notes)


def test_resize_is_pil_bilinear(tmp_path, arrays):
    x, y = arrays
    path = tmp_path / "a.npz"
    np.savez(path, images=x, labels=y)
    out = open_pack(path).read([3], size=12)[0]
    expected = np.asarray(Image.fromarray(x[3]).resize((12, 12), Image.BILINEAR))
    assert np.array_equal(out, expected)


# --------------------------------------------------------------------------- conversions

def test_float_unit_range_scaled_with_a_note(tmp_path, arrays):
    x, y = arrays
    path = tmp_path / "f.npz"
    np.savez(path, images=x.astype(np.float32) / 255.0, labels=y)
    pack = open_pack(path)
    assert np.array_equal(_all(pack), x)
    assert any("0..1" in n for n in pack.notes)


def test_float_0_255_rounded_and_clipped(tmp_path, arrays):
    x, y = arrays
    f = x.astype(np.float64) + 0.3
    f[0, 0, 0, 0] = 255.4
    path = tmp_path / "f.npz"
    np.savez(path, images=f, labels=y)
    pack = open_pack(path)
    out = _all(pack)
    assert np.array_equal(out[1:], x[1:])
    assert out[0, 0, 0, 0] == 255
    assert any("0..255" in n for n in pack.notes)


def test_preprocessed_images_are_rejected(tmp_path, arrays):
    x, y = arrays
    path = tmp_path / "p.npz"
    np.savez(path, images=x.astype(np.float32) / 127.5 - 1, labels=y)
    with pytest.raises(UsageError, match="preprocessed"):
        next(open_pack(path).iter_batches(4))


def test_string_labels(tmp_path, arrays):
    x, y = arrays
    names = np.array(["oak", "ash", "elm", "yew"])[y]
    path = tmp_path / "s.npz"
    np.savez(path, images=x, labels=names)
    pack = open_pack(path)
    assert pack.class_names == ["ash", "elm", "oak", "yew"]
    assert [pack.class_names[i] for i in pack.labels] == list(names)


# --------------------------------------------------------------------------- errors

def _error(path):
    with pytest.raises(UsageError) as info:
        p = open_pack(path)
        p.image_size()
        list(p.iter_batches(64))
    return str(info.value)


def test_missing_key_names_file_keys_and_accepted(tmp_path, arrays):
    x, y = arrays
    path = tmp_path / "k.npz"
    np.savez(path, pictures=x, labels=y)
    msg = _error(path)
    assert str(path) in msg and "'pictures'" in msg and "'labels'" in msg
    assert all(repr(k) in msg for k in datasets.IMAGE_KEYS)
    np.savez(path, images=x, classes_idx=y)
    msg = _error(path)
    assert "'classes_idx'" in msg and all(repr(k) in msg for k in datasets.LABEL_KEYS)


def test_bad_shapes_lengths_and_empty(tmp_path, arrays):
    x, y = arrays
    path = tmp_path / "e.npz"
    np.savez(path, images=x.transpose(0, 3, 1, 2), labels=y)
    assert "channels-first" in _error(path)
    np.savez(path, images=x, labels=y[:-1])
    msg = _error(path)
    assert "39 labels for 40 images" in msg and str(path) in msg
    np.savez(path, images=x[:0], labels=y[:0])
    assert "empty" in _error(path)
    np.savez(path, images=x, labels=y, class_names=np.array(["a", "b"]))
    assert "class names" in _error(path)
    os.makedirs(tmp_path / "empty" / "a")
    assert "empty" in _error(tmp_path / "empty")
    os.makedirs(tmp_path / "flat")
    Image.fromarray(x[0]).save(tmp_path / "flat" / "0.png")
    assert "no class sub-folders" in _error(tmp_path / "flat")
    (tmp_path / "model.bin").write_bytes(b"\0" * 16)
    assert "not a data pack" in _error(tmp_path / "model.bin")
    assert "no such file" in _error(tmp_path / "missing.npz")


def test_unreadable_image_is_named(tmp_path, arrays):
    x, y = arrays
    root = _folder(tmp_path / "data", x, y)
    bad = tmp_path / "data" / "class_1" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    msg = _error(root)
    assert str(bad) in msg
    # truncated data behind a valid header is caught when the pixels are decoded
    good = tmp_path / "data" / "class_1" / "broken.jpg"
    Image.fromarray(x[0]).save(good, format="PNG")
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    pack = open_pack(root)
    with pytest.raises(UsageError, match="broken.jpg"):
        list(pack.iter_batches(64, size=(20, 24)))


# --------------------------------------------------------------------------- write_npy

@pytest.mark.parametrize("compressed", [False, True])
def test_write_npy(tmp_path, arrays, monkeypatch, compressed):
    x, y = arrays
    monkeypatch.setattr(datasets, "SMALL_MEMBER_BYTES", 0)
    path = tmp_path / "a.npz"
    (np.savez_compressed if compressed else np.savez)(path, images=x, labels=y)
    seen = []
    shape = write_npy(open_pack(path), tmp_path / "out.npy", None, batch_size=9,
                      progress=lambda done, total: seen.append((done, total)))
    assert shape == (40, 20, 24, 3)
    out = np.load(tmp_path / "out.npy", mmap_mode="r")
    assert out.dtype == np.uint8 and np.array_equal(out, x)
    assert seen[-1] == (40, 40) and len(seen) == 5
    write_npy(str(path), tmp_path / "small.npy", (10, 12))
    assert np.load(tmp_path / "small.npy").shape == (40, 10, 12, 3)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".leafsub-")] == []


def test_write_npy_failure_leaves_nothing(tmp_path, arrays):
    x, y = arrays
    root = _folder(tmp_path / "data", x, y)
    (tmp_path / "data" / "class_3" / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    os.makedirs(out)
    with pytest.raises(UsageError, match="zz.png"):
        write_npy(open_pack(root), out / "x.npy", (20, 24))
    assert os.listdir(out) == []


def _write_big_npz(path, n, size, compressed):
    """An images/labels .npz written member by member, without holding the array."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 8, n).astype(np.int64)
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", mode, allowZip64=True) as zf:
        with zf.open("images.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "|u1", "fortran_order": False, "shape": (n, size, size, 3)})
            base = np.linspace(0, 255, size * size * 3).astype(np.uint8).reshape(size, size, 3)
            for start in range(0, n, 1000):
                k = min(1000, n - start)
                chunk = np.broadcast_to(base, (k, size, size, 3)).copy()
                chunk[:, 0, 0, 0] = labels[start:start + k]
                chunk[:, 1, :4, 0] = rng.integers(0, 256, (k, 4))
                f.write(chunk.tobytes())
        with zf.open("labels.npy", "w") as f:
            np.lib.format.write_array(f, labels)
    return labels


def _write_big_h5(path, n, size):
    """A float32 0..1 images/labels .h5 written by slices (2.2 GB for 20,000 96x96 images)."""
    import h5py

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 8, n).astype(np.int64)
    base = np.linspace(0, 255, size * size * 3).astype(np.uint8).reshape(size, size, 3)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x_test", (n, size, size, 3), dtype=np.float32, chunks=(32, size, size, 3))
        for start in range(0, n, 1000):
            k = min(1000, n - start)
            chunk = np.broadcast_to(base, (k, size, size, 3)).copy()
            chunk[:, 0, 0, 0] = labels[start:start + k]
            ds[start:start + k] = chunk.astype(np.float32) / 255.0
        f["y_test"] = labels
    return labels


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["npz-stored", "npz-deflated", "h5-float32"])
def test_write_npy_memory_bounded_on_20000_images(tmp_path, layout):
    n, size = 20000, 96
    compressed = layout == "npz-deflated"
    if layout == "h5-float32":
        pack_path = tmp_path / "big.h5"
        labels = _write_big_h5(pack_path, n, size)
    else:
        pack_path = tmp_path / "big.npz"
        labels = _write_big_npz(pack_path, n, size, compressed)
    out = tmp_path / "big.npy"
    script = textwrap.dedent("""
        import sys
        from leafsub.datasets import open_pack, write_npy
        pack = open_pack(sys.argv[1])
        write_npy(pack, sys.argv[2], (96, 96))
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent
        status = open("/proc/self/status").read()
        print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(pack_path), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.strip())
    print("write_npy peak RSS on %d %dx%d images (%s): %d MB" % (n, size, size, layout, peak_mb))
    assert peak_mb < 150
    result = np.load(out, mmap_mode="r")
    assert result.shape == (n, size, size, 3)
    assert np.array_equal(result[:, 0, 0, 0], labels.astype(np.uint8))
    assert np.array_equal(result[12345, 5], np.linspace(0, 255, size * size * 3).astype(
        np.uint8).reshape(size, size, 3)[5])


# --------------------------------------------------------------------------- writing packs

@pytest.mark.parametrize("compress", [False, True])
def test_write_npz_round_trip_from_a_folder(tmp_path, arrays, compress):
    x, y = arrays
    pack = open_pack(_folder(tmp_path / "data", x, y))
    out = tmp_path / "pack.npz"
    assert datasets.write_npz(pack, out, compress=compress, batch_size=6) == (40, 20, 24, 3)
    again = open_pack(out)
    assert again.class_names == pack.class_names and np.array_equal(again.labels, pack.labels)
    assert np.array_equal(_all(again), _all(pack))
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["class_names.npy", "images.npy", "labels.npy"]
        assert {i.compress_type for i in z.infolist()} == {
            zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}


def test_npz_writer_refuses_a_short_write_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with datasets.NpzWriter(tmp_path / "x.npz", 3, (4, 4), labels=[0, 1, 2]) as w:
            w.write(np.zeros((2, 4, 4, 3), np.uint8))
    assert os.listdir(tmp_path) == []


def test_iter_images_keeps_each_size(tmp_path, arrays):
    x, y = arrays
    root = _folder(tmp_path / "data", x[:4], y[:4])
    Image.fromarray(np.zeros((30, 10, 3), np.uint8)).save(tmp_path / "data" / "class_0" / "tall.png")
    pack = open_pack(root)
    shapes = [im.shape for batch in pack.iter_images(2) for im in batch]
    assert sorted(shapes) == sorted([(20, 24, 3)] * 4 + [(30, 10, 3)])
    assert pack.image_sizes().tolist().count([30, 10]) == 1
    with pytest.raises(UsageError, match="30x10: 1 image"):
        next(pack.iter_batches(2))
