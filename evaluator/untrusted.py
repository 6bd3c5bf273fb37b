"""Reading what the child wrote or sent, and writing beside it, without trusting it.

Everything the child harness hands back (its JSON replies, the ``.npy`` files of its
predictions) was within reach of the submission's code: it may have replaced the
file by a symbolic link to one of the user's files, by a FIFO (an ``open`` that
blocks for ever), by a pickled object array or a header declaring 10^11 elements;
it may have written to the reply channel itself (a reply without its fields, 200,000
nested brackets, numbers given as strings). This module is the one place the parent
reads such things:

  * :func:`read_bytes` opens by descriptor: ``O_NOFOLLOW`` (a link is refused, never
    followed), ``O_NONBLOCK`` (a FIFO cannot block the open), regular files only
    (``fstat``), size-capped;
  * :func:`load_npy` reads a ``.npy`` without pickle, checking the header's declared
    size against the file's size before allocating anything;
  * :func:`parse_json` bounds the size and the nesting depth before ``json.loads``;
  * :func:`check_reply` checks a reply's fields for their types;
  * :func:`save_npy` writes a file of the parent's own next to the child's with
    ``O_CREAT | O_EXCL | O_NOFOLLOW``: a name the child planted (a link, a file) makes it
    fail instead of writing through it.

A bad artefact raises :class:`Untrusted` (a sentence for the user): the submission is at
fault, never leafsub.
"""

import errno
import io
import json
import os
import re
import stat

import numpy as np

NPY_LIMIT = 2 * 2**30        # the largest .npy of predictions read back
JSON_LIMIT = 4 * 2**20       # the longest reply line
JSON_DEPTH = 32              # the deepest nesting of a reply (the harness's use 3)
MANIFEST_LIMIT = 16 * 2**20  # the build's manifest, read from the zip


class Untrusted(Exception):
    """What the child handed back is not what the harness writes: one sentence why."""


def _flags():
    return (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
            | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))


def open_regular(path, limit, what):
    """A descriptor of ``path`` when it is a regular file of at most ``limit`` bytes.

    Returns ``(fd, size)``; raises :class:`Untrusted`.
    """
    name = os.path.basename(os.fspath(path))
    try:
        fd = os.open(path, _flags())
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise Untrusted("%s %s is a symbolic link, not the file the harness writes"
                            % (what, name))
        if err.errno == errno.ENOENT:
            raise Untrusted("%s %s is missing (the submission removed it)" % (what, name))
        raise Untrusted("%s %s cannot be opened (%s)" % (what, name, err.strerror))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a folder"
                    if stat.S_ISDIR(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                    or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "not a regular file")
            raise Untrusted("%s %s is %s, not the file the harness writes" % (what, name, kind))
        if st.st_size > limit:
            raise Untrusted("%s %s holds %d bytes, more than the %d the replay reads"
                            % (what, name, st.st_size, limit))
        # Back to a blocking descriptor: a regular file never blocks.
        os.set_blocking(fd, True)
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, limit, what="the file"):
    """The bytes of the regular file ``path`` (never through a link), at most ``limit``."""
    fd, size = open_regular(path, limit, what)
    try:
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise Untrusted("%s %s grew past %d bytes while being read"
                            % (what, os.path.basename(os.fspath(path)), limit))
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_npy(path, limit=NPY_LIMIT, what="the predictions file"):
    """A plain ndarray from a ``.npy`` the child wrote: no pickle, no unbounded allocation."""
    from numpy.lib import format as npformat

    fd, size = open_regular(path, limit, what)
    name = os.path.basename(os.fspath(path))
    with os.fdopen(fd, "rb") as f:
        try:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npformat.read_array_header_2_0(f)
            else:
                raise ValueError("unknown .npy version %s" % (version,))
        except (ValueError, TypeError, SyntaxError, OverflowError, MemoryError,
                RecursionError) as err:
            raise Untrusted("%s %s is not a .npy file numpy writes (%s)"
                            % (what, name, str(err)[:200]))
        if dtype.hasobject:
            raise Untrusted("%s %s holds Python objects (a pickled array), which the replay "
                            "never unpickles" % (what, name))
        if any(not isinstance(d, int) or d < 0 for d in shape):
            raise Untrusted("%s %s declares an impossible shape %s" % (what, name, shape))
        count = 1
        for d in shape:
            count *= d
        declared = count * dtype.itemsize
        offset = f.tell()
        if declared != size - offset:
            raise Untrusted("%s %s declares %d elements (%d bytes) but holds %d bytes of data"
                            % (what, name, count, declared, size - offset))
        data = f.read(declared)
        if len(data) != declared:
            raise Untrusted("%s %s changed while being read" % (what, name))
    array = np.frombuffer(data, dtype=dtype)
    array = array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)
    return np.array(array)  # writable, owned, a plain ndarray


def _depth(text):
    """The deepest nesting of brackets in JSON ``text`` (strings left out)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    depth = deepest = 0
    for ch in re.sub(r"[^\[\]{}]", "", bare):
        if ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > JSON_DEPTH:
                    return deepest
        else:
            depth -= 1
    return deepest


def parse_json(data, limit=JSON_LIMIT, depth=JSON_DEPTH, what="a reply"):
    """``json.loads`` of untrusted bytes, bounded in size and nesting depth."""
    if len(data) > limit:
        raise Untrusted("%s of %d bytes, more than the %d the harness ever sends"
                        % (what, len(data), limit))
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError:
        raise Untrusted("%s that is not UTF-8" % what)
    if _depth(text) > depth:
        raise Untrusted("%s nested deeper than %d levels" % (what, depth))
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise Untrusted("%s that is not JSON (%s)" % (what, str(err)[:120]))


# What each field of a reply may hold (the harness's replies; harness.py writes them).
_NUMBER = (int, float)
_FIELDS = {
    "ok": bool, "kind": str, "error": str, "traceback": str,
    "load_s": _NUMBER, "framework_s": _NUMBER, "predict_s": _NUMBER,
    "n": int, "mutated_batches": int, "dtype": str,
    "progress": int, "total": int,
}
_LISTS = {"types": str, "network": str, "reads": str, "shape": int, "loaded": dict,
          "fed": dict}
_MAPS = {"versions": (str, type(None)), "evidence": None}


def _bad(field, value):
    kind = type(value).__name__
    return Untrusted("a reply whose field %r is %s %s" % (
        field, "an" if kind[0] in "aeiou" else "a", kind))


def check_reply(message):
    """``message`` when it is shaped as the harness's replies are; raises :class:`Untrusted`.

    Unknown fields are allowed (a newer harness may add some); the known ones must have
    their types, and a final reply must say ``ok``.
    """
    if not isinstance(message, dict):
        raise Untrusted("a reply that is %s, not an object" % type(message).__name__)
    for field, value in message.items():
        if field in _FIELDS:
            want = _FIELDS[field]
            if isinstance(value, bool) and want is not bool and bool not in (
                    want if isinstance(want, tuple) else (want,)):
                raise _bad(field, value)
            if not isinstance(value, want):
                raise _bad(field, value)
        elif field in _LISTS:
            if not isinstance(value, list) or len(value) > 10000 or not all(
                    isinstance(v, _LISTS[field]) and not isinstance(v, bool) for v in value):
                raise _bad(field, value)
        elif field in _MAPS:
            if not isinstance(value, dict):
                raise _bad(field, value)
            want = _MAPS[field]
            if want and not all(isinstance(v, want) for v in value.values()):
                raise Untrusted("a reply whose field %r holds values that are not strings"
                                % field)
    if "progress" not in message:
        if "ok" not in message:
            raise Untrusted("a reply without its 'ok' field")
        if message["ok"] is False and "error" not in message:
            raise Untrusted("a failing reply without its 'error' field")
    return message


def require(message, *fields):
    """Raise :class:`Untrusted` unless the successful reply ``message`` has ``fields``."""
    missing = [f for f in fields if f not in message]
    if missing:
        raise Untrusted("a reply without its %s field%s" % (
            ", ".join("'%s'" % f for f in missing), "" if len(missing) == 1 else "s"))
    return message


def create(path):
    """Open a new file of the parent's for writing: never through a name the child planted."""
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0))
    try:
        return os.fdopen(os.open(path, flags, 0o600), "wb")
    except FileExistsError:
        raise Untrusted("%s already exists where the replay writes its own file (the "
                        "submission planted it)" % os.path.basename(os.fspath(path)))


def save_npy(path, array):
    """``np.save`` to a new file (see :func:`create`); a name already there is unlinked first
    (``unlink`` removes a link itself, never what it points to)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    with create(path) as f:
        np.save(f, np.asarray(array), allow_pickle=False)
    return path


def read_json_file(path, limit=MANIFEST_LIMIT, what="the file"):
    """A JSON file (the build's manifest in the zip), by descriptor, bounded."""
    return parse_json(read_bytes(path, limit, what), limit=limit, depth=64,
                      what="%s %s" % (what, os.path.basename(os.fspath(path))))


def load_npz(path, limit=NPY_LIMIT, what="the file"):
    """The arrays of a ``.npz`` (the build's probe in the zip), by descriptor, no pickle."""
    data = read_bytes(path, limit, what)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            # A member may be a compression bomb: its declared size is checked first.
            if sum(i.file_size for i in npz.zip.infolist()) > limit:
                raise ValueError("its members unpack to more than %d bytes" % limit)
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
        raise Untrusted("%s %s is not a readable .npz (%s)"
                        % (what, os.path.basename(os.fspath(path)), str(err)[:120]))


def check_evidence(evidence):
    """The child's reading of the model files (``evidence.read``), when shaped as it writes
    it: the fields the detective reads, of their types. Raises :class:`Untrusted`."""
    def bad(what):
        return Untrusted("an 'evidence' reply whose %s is not what the harness writes" % what)

    def optional(item, key, kinds):
        if key in item and item[key] is not None and (isinstance(item[key], bool)
                                                      or not isinstance(item[key], kinds)):
            raise bad("%s" % key)

    if not isinstance(evidence, dict):
        raise bad("value")
    optional(evidence, "error", str)
    for key in ("read", "unreadable"):
        if not isinstance(evidence.get(key, []), list) or not all(
                isinstance(v, str) for v in evidence.get(key, [])):
            raise bad(key)
    for key, name in (("bases", "name"), ("layers", "layer")):
        items = evidence.get(key, [])
        if not isinstance(items, list):
            raise bad(key)
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get(name), str) or \
                    not item[name]:
                raise bad(key)
            optional(item, "preset", str)
            optional(item, "file", str)
            optional(item, "scale", _NUMBER)
            optional(item, "offset", _NUMBER)
    return evidence


# What one entry of a tapped predict's ``fed`` list holds (``Harness._fed``).
_FED = {"model": str, "how": str, "calls": int, "rows": int, "agrees": int}


def check_fed(fed, modes):
    """The child's ``fed`` list (what each loaded model was fed, ``Harness._fed``) when
    shaped as the harness writes it, with only the ``modes`` it was asked about; raises
    :class:`Untrusted`."""
    if not isinstance(fed, list) or len(fed) > 100:
        raise Untrusted("a 'fed' reply that is not a short list")
    for entry in fed:
        if not isinstance(entry, dict):
            raise Untrusted("a 'fed' entry that is not an object")
        for key, kind in _FED.items():
            if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
                raise Untrusted("a 'fed' entry whose %r is not what the harness writes" % key)
        named = entry.get("modes")
        if not isinstance(named, list) or not all(isinstance(m, str) and m in modes
                                                  for m in named):
            raise Untrusted("a 'fed' entry whose 'modes' are not the ones asked about")
    return fed
