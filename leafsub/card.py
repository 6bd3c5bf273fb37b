"""The model card, ``leafsub.json``: what export recorded and every later step checks against."""

import hashlib
import os

from .errors import UsageError
from .jsonfiles import dumps, read_json, validate, write_atomic

CARD_NAME = "leafsub.json"


def sha256_file(path, chunk=1 << 20):
    """Hex SHA-256 of a file, read in chunks (memory does not grow with the file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def hash_tree(root, base):
    """``{relative path: sha256}`` for every file under ``root``, paths relative to ``base``, sorted."""
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            out[os.path.relpath(path, base).replace(os.sep, "/")] = sha256_file(path)
    return out


def card_path(run_dir):
    return os.path.join(os.fspath(run_dir), CARD_NAME)


def read_card(run_dir):
    """Read and validate ``RUN_DIR/leafsub.json``.

    Raises:
      UsageError naming the file and the field when it is missing, not JSON,
      or does not follow the card schema.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise UsageError("%s: not a folder. Pass the run directory that 'leafsub export' wrote "
                         "(it holds leafsub.json, probe.npz and the SavedModel)." % run_dir)
    path = card_path(run_dir)
    if not os.path.exists(path):
        raise UsageError("%s: no model card (%s) in this folder. Export the model first: "
                         "leafsub.export(model, '%s', ...) in the training script, or "
                         "'leafsub export MODEL_PATH %s'." % (run_dir, CARD_NAME, run_dir, run_dir))
    card = validate(read_json(path, "model card"), "card", path, "model card")
    if len(card["class_names"]) != len(set(card["class_names"])):
        raise UsageError("%s: invalid model card: field 'class_names' has duplicates." % path)
    return card


def write_card(run_dir, card):
    """Validate and write the card atomically (a failed write leaves the old card)."""
    path = card_path(run_dir)
    validate(card, "card", path, "model card")
    write_atomic(path, dumps(card))
    return path
