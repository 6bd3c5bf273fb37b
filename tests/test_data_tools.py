"""`leafsub data`: the pure logic (weights, allocation, hashing, grouping) and the commands."""

import io
import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from leafsub.datasets import from_arrays, open_pack
from leafsub.tools import dedupe, split, stats, synthleaf
from conftest import run_cli


# --------------------------------------------------------------------------- stats logic

def test_class_weights_both_conventions():
    w = stats.class_weights([100, 50, 25, 0])
    assert w["max_over_n"] == [1.0, 2.0, 4.0, None]
    # sklearn "balanced": n / (k * n_i) with n = 175, k = 4
    assert w["balanced"][:3] == pytest.approx([175 / 400, 175 / 200, 175 / 100])
    assert w["balanced"][3] is None
    assert stats.imbalance([100, 50, 25]) == 4.0
    assert stats.imbalance([10, 0]) == float("inf")


def test_size_distribution_and_outliers():
    sizes = [(96, 96)] * 50 + [(100, 100)] * 3 + [(96, 200), (30, 30)]
    dist = stats.size_distribution(sizes)
    assert dist[0] == {"height": 96, "width": 96, "count": 50}
    out = dict(stats.size_outliers(sizes))
    assert sorted(out) == [53, 54]  # 100x100 is within tolerance; the wide and the tiny are not
    assert "aspect" in out[53] and "height 30" in out[54]


# --------------------------------------------------------------------------- split logic

@pytest.mark.parametrize("count", [0, 1, 2, 7, 10, 33, 101])
@pytest.mark.parametrize("fractions", [(0.8, 0.2, 0.0), (0.7, 0.2, 0.1), (0.5, 0.25, 0.25), (0.9, 0.05, 0.05)])
def test_allocate_is_within_one_of_each_fraction(count, fractions):
    got = split.allocate(count, fractions)
    assert got.sum() == count
    assert np.all(np.abs(got - count * np.asarray(fractions)) < 1)
    assert all(g == 0 for g, f in zip(got, fractions) if f == 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_split_keeps_class_proportions(seed):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 120, 9)
    labels = rng.permutation(np.repeat(np.arange(9), counts))
    fractions = split.fractions_of(0.2, 0.1)
    assignment, targets, achieved = split.stratified_split(labels, fractions, seed=seed)
    for c in range(9):
        got = np.bincount(assignment[labels == c], minlength=3)
        assert np.all(np.abs(got - counts[c] * np.asarray(fractions)) < 1), (c, got, counts[c])
    totals = np.bincount(assignment, minlength=3)
    assert np.all(np.abs(totals - len(labels) * np.asarray(fractions)) <= 3)
    again, _, _ = split.stratified_split(labels, fractions, seed=seed)
    other, _, _ = split.stratified_split(labels, fractions, seed=seed + 10)
    assert np.array_equal(assignment, again) and not np.array_equal(assignment, other)


def test_stratified_split_keeps_groups_together():
    rng = np.random.default_rng(5)
    labels = rng.permutation(np.repeat(np.arange(4), [200, 150, 90, 60]))
    groups = []
    free = rng.permutation(len(labels))
    for size in [8, 5, 5, 3, 3, 2, 2, 2, 2]:  # duplicates within a class
        c = rng.integers(0, 4)
        members = [i for i in free if labels[i] == c][:size]
        free = np.array([i for i in free if i not in members])
        groups.append(np.array(members))
    mixed = np.array([free[0], free[1], free[2]])  # and one group across classes
    groups.append(mixed)
    fractions = split.fractions_of(0.2, 0.1)
    assignment, _, _ = split.stratified_split(labels, fractions, seed=3, groups=groups)
    for g in groups:
        assert len(set(assignment[g].tolist())) == 1
    for c in range(4):
        n_c = (labels == c).sum()
        got = np.bincount(assignment[labels == c], minlength=3)
        assert np.all(np.abs(got - n_c * np.asarray(fractions)) < 1), (c, got)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError):
        split.fractions_of(0.6, 0.5)
    with pytest.raises(ValueError):
        split.fractions_of(-0.1)


# --------------------------------------------------------------------------- hashing and grouping

def _jpeg(image, quality):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _resize(image, h, w=None):
    return np.asarray(Image.fromarray(image).resize((w or h, h), Image.BILINEAR))


def test_hashes_survive_reencoding_and_resizing():
    images, _, _ = synthleaf.generate(3, size=96, n_classes=4, seed=9)
    for image in images[:6]:
        copies = [_jpeg(image, 60), _resize(image, 64), _resize(image, 150), _resize(_jpeg(image, 80), 120, 90)]
        fp = dedupe.fingerprint_images([image] + copies)
        assert dedupe.hamming(fp.hashes[0], fp.hashes[1:]).max() <= dedupe.DEFAULT_THRESHOLD
        pairs = np.array([[0, k] for k in range(1, 5)])
        assert len(dedupe.verify_pairs(pairs, fp)) == 4
    fp = dedupe.fingerprint_images([images[0], images[0].copy()])
    assert fp.shas[0] == fp.shas[1] and len(fp.shas[0]) == 64


def test_near_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2 ** 63, 400, dtype=np.uint64)
    flips = [np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False)))
             for k in rng.integers(0, 14, 400)]
    hashes = np.concatenate([base, base ^ np.array(flips, dtype=np.uint64)])
    for threshold in (0, 3, 6, 10, 12):
        got = dedupe.near_pairs(hashes, threshold)
        d = dedupe.hamming(hashes[:, None], hashes[None, :])
        i, j = np.nonzero(np.triu(d <= threshold, 1))
        assert np.array_equal(got, np.stack([i, j], 1)), threshold


def test_union_find_groups():
    groups = dedupe.union_find_groups(10, [(0, 3), (3, 7), (2, 5), (9, 9)])
    assert [g.tolist() for g in groups] == [[0, 3, 7], [2, 5]]
    assert dedupe.union_find_groups(3, np.zeros((0, 2))) == []


def _planted_set(n_distinct=5004, copies=98, seed=0):
    """Distinct synthetic leaves plus two outlier pictures planted `copies` times each:
    exact copies, JPEG re-encodes, resized-and-back and JPEG-of-downsized copies."""
    per_class = -(-n_distinct // 8)
    images, labels, _ = synthleaf.generate(per_class, size=96, n_classes=8, seed=seed)
    images, labels = images[:n_distinct], labels[:n_distinct]
    rng = np.random.default_rng(1)
    photo = _resize((rng.random((12, 12, 3)) * 255).astype(np.uint8), 96)   # a blotchy picture
    yy, xx = np.mgrid[:96, :96]
    gradient = np.stack([xx * 2.6, yy * 2.6, (xx + yy) * 1.3], -1).astype(np.uint8)  # a smooth one
    makers = [lambda a: a.copy(), lambda a: _jpeg(a, 70), lambda a: _resize(_resize(a, 128), 96),
              lambda a: _resize(_jpeg(_resize(a, 80), 85), 96)]
    planted = [makers[k % 4](o) for o in (photo, gradient) for k in range(copies)]
    all_images = np.concatenate([images, np.stack(planted)])
    all_labels = np.concatenate([labels, rng.integers(0, 8, 2 * copies)])
    order = rng.permutation(len(all_images))
    return all_images[order], all_labels[order], np.argsort(order)[n_distinct:]


def test_dedupe_finds_planted_outliers_in_5200_images_and_nothing_else():
    images, labels, planted_at = _planted_set()
    assert len(images) == 5200
    pack = from_arrays(images, labels)
    started = time.perf_counter()
    result = dedupe.find_duplicates(pack)
    seconds = time.perf_counter() - started
    print("dedupe on 5,200 96x96 images: %.2f s (hash %.2f s, group %.2f s)"
          % (seconds, result["timing"]["hash_s"], result["timing"]["group_s"]))
    groups = sorted(sorted(m["index"] for m in g["members"]) for g in result["groups"])
    assert groups == sorted([sorted(planted_at[:98].tolist()), sorted(planted_at[98:].tolist())])
    # per picture: 25 exact + 25 JPEG + 24 + 24 resized copies, each kind identical among itself
    assert 2 * (24 + 24 + 23 + 23) <= result["n_exact"] <= 2 * 97
    assert {g["kind"] for g in result["groups"]} == {"mixed"}
    assert seconds < 60


# --------------------------------------------------------------------------- the commands

@pytest.fixture(scope="module")
def leaves(tmp_path_factory):
    """A class-folder set of 4 species x 30 with planted duplicates (one across classes)."""
    root = tmp_path_factory.mktemp("data") / "leaves"
    synthleaf.write_folder(str(root), 30, size=64, n_classes=4, seed=4)
    names = sorted(os.listdir(root))
    first = np.asarray(Image.open(root / names[0] / ("%s_00000.png" % names[0])))
    Image.fromarray(first).save(root / names[0] / "copy_jpeg.jpg", quality=85)
    Image.fromarray(_resize(first, 100)).save(root / names[0] / "copy_big.png")
    Image.fromarray(first).save(root / names[1] / "mislabelled.png")
    return root


def _copy_tree(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_stats_command(leaves, tmp_path):
    done = run_cli("data", "stats", leaves, "--json", tmp_path / "s.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["n_images"] == 123 and result["n_classes"] == 4
    counts = [c["count"] for c in result["classes"]]
    assert counts == [32, 31, 30, 30]
    assert result["class_weights"]["max_over_n"][2] == pytest.approx(32 / 30)
    assert result["class_weights"]["balanced"][0] == pytest.approx(123 / (4 * 32))
    assert [o["file"].endswith("copy_big.png") for o in result["size_outliers"]] == [True]
    assert "copy_big.png" in done.stdout and "n/(k*n_i)" in done.stdout


def test_dedupe_command_reports_and_quarantines(leaves, tmp_path):
    data = _copy_tree(leaves, tmp_path / "leaves")
    done = run_cli("data", "dedupe", data, "--json", tmp_path / "d.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "d.json").read_text())
    assert result["n_groups"] == 1
    files = sorted(os.path.basename(m["file"]) for m in result["groups"][0]["members"])
    first = sorted(os.listdir(leaves))[0] + "_00000.png"
    assert files == sorted([first, "copy_big.png", "copy_jpeg.jpg", "mislabelled.png"])
    assert result["groups"][0]["conflicting_labels"] and "different labels" in done.stdout

    inside = run_cli("data", "dedupe", data, "--move-to", data / "dupes")
    assert inside.returncode == 2 and "outside" in inside.stderr
    moved = run_cli("data", "dedupe", data, "--move-to", tmp_path / "quarantine")
    assert moved.returncode == 0, moved.stderr
    manifest = json.loads((tmp_path / "quarantine" / "leafsub-dedupe.json").read_text())
    assert len(manifest["moves"]) == 3 and all(os.path.exists(m["to"]) for m in manifest["moves"])
    assert open_pack(data).n == 120
    again = run_cli("data", "dedupe", data, "--json", tmp_path / "d2.json")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "d2.json").read_text())["n_groups"] == 0


def test_split_command_folders(leaves, tmp_path):
    out = tmp_path / "splits"
    done = run_cli("data", "split", leaves, "-o", out, "--val", "0.2", "--test", "0.1", "--seed", "3",
                   "--json", tmp_path / "split.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "split.json").read_text())
    parts = {s: open_pack(out / s) for s in ("train", "val", "test")}
    assert sum(p.n for p in parts.values()) == 123
    for s, f in zip(("train", "val", "test"), (0.7, 0.2, 0.1)):
        assert parts[s].class_names == sorted(os.listdir(leaves))
        for c, n_c in enumerate([32, 31, 30, 30]):
            assert abs((parts[s].labels == c).sum() - f * n_c) < 1
    # the planted duplicates all landed on the same side
    group = result["duplicate_groups"][0]
    manifest = json.loads((out / "split.json").read_text())
    sides = [s for s, members in manifest["members"].items() for i in group
             if open_pack(leaves).files[i].split(str(leaves) + os.sep)[1] in members]
    assert len(sides) == 4 and len(set(sides)) == 1

    refused = run_cli("data", "split", leaves, "-o", out, "--val", "0.2")
    assert refused.returncode == 2 and str(out) in refused.stderr and "--force" in refused.stderr
    forced = run_cli("data", "split", leaves, "-o", out, "--val", "0.25", "--force", "--no-dedupe")
    assert forced.returncode == 0, forced.stderr
    assert not (out / "test").exists() and abs(open_pack(out / "val").n - 0.25 * 123) < 1


def test_split_command_npz_and_pack(leaves, tmp_path):
    out = tmp_path / "splits"
    done = run_cli("data", "split", leaves, "-o", out, "--val", "0.2", "--format", "npz", "--size", "48")
    assert done.returncode == 0, done.stderr
    train, val = open_pack(out / "train.npz"), open_pack(out / "val.npz")
    assert (train.n, val.n) == (99, 24) and train.image_size() == (48, 48)
    assert val.class_names == sorted(os.listdir(leaves))

    packed = run_cli("data", "pack", out / "val.npz", "-o", tmp_path / "hidden.npz", "--json", tmp_path / "p.json")
    assert packed.returncode == 0, packed.stderr
    hidden = open_pack(tmp_path / "hidden.npz")
    assert np.array_equal(np.concatenate(list(hidden.iter_batches(10))), np.concatenate(list(val.iter_batches(7))))
    mixed = run_cli("data", "pack", leaves, "-o", tmp_path / "x.npz")
    assert mixed.returncode == 2 and "--size" in mixed.stderr and str(leaves) in mixed.stderr
    exists = run_cli("data", "pack", leaves, "-o", tmp_path / "hidden.npz", "--size", "64")
    assert exists.returncode == 2 and "--force" in exists.stderr


def test_every_command_has_help_with_an_example():
    for command in ("stats", "dedupe", "split", "pack"):
        done = run_cli("data", command, "--help")
        assert done.returncode == 0 and "leafsub data %s" % command in done.stdout


def test_errors_are_one_paragraph_naming_the_path(tmp_path):
    np.savez(tmp_path / "bad.npz", pictures=np.zeros((2, 4, 4, 3), np.uint8), labels=[0, 1])
    for args in (("stats", tmp_path / "bad.npz"), ("dedupe", tmp_path / "missing"),
                 ("split", tmp_path / "bad.npz", "-o", tmp_path / "o", "--val", "0.2")):
        done = run_cli("data", *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and str(args[1]) in done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
