"""The data-pack package's shape: one public API, no private helper reached from outside.

leafsub/datasets/ is split by concept; the rest of the code base imports only from
``leafsub.datasets`` and only public names (issues 17 and 18).
"""

import ast
import os

import numpy as np

from leafsub import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "leafsub", "datasets")
# Names that were private helpers of the one-module datasets.py and that other modules used.
OLD_PRIVATE_HELPERS = ("_resize_batch", "_as_size")
# Kept on the package for tests/test_datasets.py, which checks which reader a pack chose.
COMPAT_ALIASES = {"_ArraySource", "_StoredNpySource", "_StreamNpySource", "_H5Source"}


def _python_files_outside_the_package():
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in (
            "__pycache__", "build", "node_modules") and not d.endswith(".egg-info"))
        if os.path.abspath(folder).startswith(PACKAGE):
            continue
        for name in sorted(names):
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def _private_uses_of_datasets(path):
    """(line, name) of every private name taken from leafsub.datasets in one source file."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "datasets":
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                ("leafsub.datasets.", "datasets.")):
            found.append((node.lineno, node.module))  # a submodule: import from the package
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
              and isinstance(node.value, ast.Name) and node.value.id == "datasets"):
            found.append((node.lineno, node.attr))
    return found


def test_the_old_private_helpers_are_gone_outside_the_package():
    files = list(_python_files_outside_the_package())
    scanned = {os.path.relpath(f, ROOT) for f in files}
    assert {"builder/build.py", "tools/split.py", "evaluator/evaluate.py"} <= scanned
    here = os.path.abspath(__file__)
    offenders = []
    for path in files:
        if os.path.abspath(path) == here:
            continue
        text = open(path, encoding="utf-8").read()
        offenders += ["%s: %s" % (os.path.relpath(path, ROOT), old)
                      for old in OLD_PRIVATE_HELPERS if old in text]
    assert offenders == []


def test_no_module_outside_the_package_takes_a_private_name_from_it():
    offenders = []
    for path in _python_files_outside_the_package():
        for line, name in _private_uses_of_datasets(path):
            if name in COMPAT_ALIASES and os.path.basename(path) == "test_datasets.py":
                continue
            offenders.append("%s:%d %s" % (os.path.relpath(path, ROOT), line, name))
    assert offenders == []


def test_the_detector_sees_a_private_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from leafsub.datasets import _as_size, open_pack\n"
                   "from ..datasets.npz import open_npz\n"
                   "from leafsub import datasets\nx = datasets._resize_batch\n")
    assert _private_uses_of_datasets(str(bad)) == [
        (1, "_as_size"), (2, "datasets.npz"), (4, "_resize_batch")]


def test_pil_is_imported_only_by_the_data_preparation_module():
    importers = []
    for name in sorted(os.listdir(PACKAGE)):
        if name.endswith(".py"):
            tree = ast.parse(open(os.path.join(PACKAGE, name), encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("PIL"):
                    importers.append(name)
                elif isinstance(node, ast.Import) and any(a.name.startswith("PIL")
                                                          for a in node.names):
                    importers.append(name)
    assert sorted(set(importers)) == ["imaging.py"]


def test_the_public_names_and_what_they_do():
    assert datasets.as_size(96) == (96, 96) and datasets.as_size((64, 80)) == (64, 80)
    assert datasets.as_size(np.int64(5)) == (5, 5) and datasets.as_size(None) is None
    batch = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    assert datasets.resize_for_data_pack(batch, (4, 6)) is batch
    assert datasets.resize_for_data_pack(batch, (8, 3)).shape == (2, 8, 3, 3)
    for name in ("open_pack", "open_tensor_pack", "from_arrays", "tensors_from_arrays",
                 "write_npy", "write_npz", "write_tensor_npy", "NpzWriter", "Pack",
                 "ArrayPack", "FolderPack", "TensorPack", "IMAGE_KEYS", "LABEL_KEYS"):
        assert hasattr(datasets, name), name


def test_a_tunable_set_on_the_package_reaches_the_module_that_reads_it(monkeypatch):
    before = datasets.limits.CHUNK_BYTES
    monkeypatch.setattr(datasets, "CHUNK_BYTES", 1234)
    assert datasets.limits.CHUNK_BYTES == 1234 == datasets.CHUNK_BYTES
    monkeypatch.undo()
    assert datasets.limits.CHUNK_BYTES == before == datasets.CHUNK_BYTES
