"""Safe extraction of an untrusted submission zip (no TensorFlow: it runs in the parent).

The zip comes from the user, or from whoever the user got it from, so nothing in
it is trusted: names are checked before anything is written (no absolute paths,
no ``..``, no links, no duplicates, no names the platform could read
differently), the entry count and the declared sizes are checked against
limits before extracting, and the bytes actually written are counted while
streaming (headers can lie). A problem with the archive is the submission's
fault: it becomes a ``fail`` check, never an exception, and nothing
half-extracted is left behind.
"""

import dataclasses
import errno
import lzma
import os
import re
import shutil
import stat
import struct
import zipfile
import zlib

from ..errors import UsageError

from .checks import check

LIMITS = {"max_files": 10000, "max_total_bytes": 4 * 1024**3, "max_ratio": 200, "max_name_len": 255}

CHUNK = 1024 * 1024
RATIO_MIN_SIZE = 1024 * 1024
TOTAL_RATIO_MIN_SIZE = 64 * 1024 * 1024  # the whole archive's ratio is checked above this
SUPPORTED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                               zipfile.ZIP_LZMA})
METHOD_NAMES = {9: "Deflate64 (Windows' built-in 'Compressed folder' uses it for big files)",
                93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES encryption"}
FOREIGN_MAGIC = [(b"\x1f\x8b", "a gzip (.gz / .tar.gz) file"), (b"Rar!", "a RAR archive"),
                 (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"BZh", "a bzip2 file"),
                 (b"\xfd7zXZ\x00", "an xz file")]
ZIP_HOW = ("with `leafsub build`, or from inside the submission folder with "
           "`zip -r ../submission.zip .`")
ZIP_HINT = "create the zip " + ZIP_HOW
RECREATE = "Re-create the zip (%s) and check that the copy or upload finished." % ZIP_HOW

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError,
                struct.error)
_NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ})


@dataclasses.dataclass
class Extracted:
    """What ``extract_submission`` did.

    Attributes:
      root: the folder to treat as the submission (the single top folder when
        there is one, else ``dest``).
      dest: where the zip was extracted.
      files: relative POSIX paths (relative to ``dest``) of the regular files written.
      n_files: ``len(files)``.
      total_bytes: bytes actually written.
      top_folder: name of the single top folder that holds every entry, or None.
      checks: check dicts ``{"name", "status", "detail"}``; one is named "archive".
      ok: False when nothing usable was extracted (a fatal archive problem).
    """

    root: str
    dest: str
    files: list
    n_files: int
    total_bytes: int
    top_folder: str | None
    checks: list
    ok: bool


class _ArchiveProblem(Exception):
    """A fatal problem with the archive; ``str()`` is the check's detail."""


def _failed(dest, details):
    """An ``Extracted`` for a zip that cannot be used.

    Args:
      dest: the (now empty) extraction folder.
      details: one detail per distinct problem found.

    Returns:
      ``Extracted`` with ``ok=False`` and one "archive" fail check per problem.
    """
    checks = [check("archive", "fail", detail) for detail in details]
    return Extracted(root=dest, dest=dest, files=[], n_files=0, total_bytes=0, top_folder=None,
                     checks=checks, ok=False)


def _detail(zip_path, text):
    """Prefix ``text`` with the zip's path unless it already names it."""
    return text if text.startswith(zip_path) else "%s: %s" % (zip_path, text)


def _prepare_paths(zip_path, dest):
    """Check the caller's arguments and create ``dest``.

    Args:
      zip_path: path of the submission zip.
      dest: extraction folder; created when missing, must be empty otherwise.

    Returns:
      ``(zip_path, dest)`` as strings, ``dest`` absolute.

    Raises:
      UsageError when the zip is missing or a folder, or ``dest`` is unusable.
    """
    zip_path = require_zip_file(zip_path)
    dest = os.path.abspath(os.fspath(dest))
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise UsageError("Extraction folder %s exists and is not a folder: pass a new or empty "
                         "folder." % dest)
    os.makedirs(dest, exist_ok=True)
    if os.listdir(dest):
        raise UsageError("Extraction folder %s is not empty: pass a new or empty folder (the "
                         "submission is unpacked there and removed on failure)." % dest)
    return zip_path, dest


def _declared_entry_count(fp):
    """Entry count from the end-of-central-directory record, without parsing the directory.

    Args:
      fp: the zip, opened in binary mode.

    Returns:
      The declared number of entries, or None when no record is found (the
      caller lets ``zipfile`` say what is wrong).
    """
    fp.seek(0, os.SEEK_END)
    size = fp.tell()
    tail_len = min(size, _EOCD.size + 65535)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return None
    count = _EOCD.unpack_from(tail, at)[4]
    locator_at = at - _EOCD64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at:locator_at + 4] == b"PK\x06\x07":
        record_at = size - tail_len + locator_at - _EOCD64.size
        if record_at >= 0:
            fp.seek(record_at)
            record = fp.read(_EOCD64.size)
            if len(record) == _EOCD64.size and record[:4] == b"PK\x06\x06":
                count = max(count, _EOCD64.unpack(record)[7])
    return count


def _not_a_zip_detail(zip_path, head, error, has_directory):
    """Detail for a file ``zipfile`` cannot open.

    Args:
      zip_path: the file, for the message.
      head: its first bytes.
      error: what ``zipfile`` raised.
      has_directory: whether an end-of-central-directory record was found.

    Returns:
      One paragraph: empty file, another archive format, truncated or corrupt
      zip, or not a zip at all.
    """
    if not head:
        return "%s is empty (0 bytes): the copy or download did not finish. %s" % (
            zip_path, RECREATE)
    for magic, kind in FOREIGN_MAGIC:
        if head.startswith(magic):
            return ("%s is %s, not a zip: the platform only accepts .zip files; %s."
                    % (zip_path, kind, ZIP_HINT))
    if head.startswith(b"PK") and not has_directory:
        return ("%s starts like a zip but its end (the central directory) is missing: it is "
                "truncated. %s" % (zip_path, RECREATE))
    if head.startswith(b"PK") or has_directory:
        return "%s is corrupt (%s). %s" % (zip_path, error, RECREATE)
    return "%s is not a zip archive: the platform only accepts .zip files; %s." % (
        zip_path, ZIP_HINT)


def _open_zip(fp, zip_path, limits):
    """Open the archive after checking its declared entry count.

    Args:
      fp: the zip, opened in binary mode.
      zip_path: the file, for the messages.
      limits: the effective limits.

    Returns:
      An open ``zipfile.ZipFile``.

    Raises:
      _ArchiveProblem: not a zip, corrupt, or too many entries.
    """
    head = fp.read(8)
    count = _declared_entry_count(fp)
    if count is not None and count > limits["max_files"]:
        raise _ArchiveProblem(_too_many_detail(zip_path, count, limits))
    fp.seek(0)
    try:
        zf = zipfile.ZipFile(fp)
    except UnicodeDecodeError as error:
        raise _ArchiveProblem(
            "%s has an entry whose name is marked UTF-8 but is not valid UTF-8 (%r): the "
            "platform cannot read it. Rename the files to plain ASCII names and re-create the "
            "zip." % (zip_path, error.object[:60])) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as error:
        has_directory = zipfile.is_zipfile(fp)
        raise _ArchiveProblem(_not_a_zip_detail(zip_path, head, error, has_directory)) from None
    if len(zf.infolist()) > limits["max_files"]:
        zf.close()
        raise _ArchiveProblem(_too_many_detail(zip_path, len(zf.infolist()), limits))
    return zf


def _too_many_detail(zip_path, count, limits):
    return ("%s has %d entries, more than the limit of %d: a submission needs model.py, "
            "metadata and the model folders. Remove stray files (data sets, checkpoints, "
            "__pycache__) and re-create the zip." % (zip_path, count, limits["max_files"]))


def _is_ignored(parts):
    """True for macOS metadata: anything under ``__MACOSX/`` and ``.DS_Store`` files."""
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store"


def _entry_kind(info):
    """``"dir"``, ``"file"``, ``"link"`` or ``"special"``, from the name and the unix mode."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special"
    if info.filename.endswith("/") or kind == stat.S_IFDIR:
        return "dir"
    return "file"


def _name_problem(info, limits):
    """Why an entry's name is unsafe or ambiguous, or None.

    Args:
      info: the entry.
      limits: the effective limits.

    Returns:
      ``(kind, message)`` with kind one of "path", "backslash", "encoding",
      "name length", or None when the name is fine.
    """
    name = info.filename
    shown = repr(name)
    if name.startswith("/") or name.startswith("\\"):
        return "path", "entry %s is an absolute path" % shown
    if re.match(r"^[A-Za-z]:", name):
        return "path", "entry %s starts with a drive letter" % shown
    if ".." in re.split(r"[/\\]", name):
        return "path", "entry %s has a '..' component (it would land outside the folder)" % shown
    if "\\" in name:
        return "backslash", ("entry %s uses backslashes as folder separators (zips made by "
                             "Windows PowerShell's Compress-Archive do): on Linux it is one "
                             "file with a backslash in its name, not a folder" % shown)
    if not info.flag_bits & 0x800 and not name.isascii():
        raw = name.encode("cp437")
        try:
            meant = " (probably %r)" % raw.decode("utf-8")
        except UnicodeDecodeError:
            meant = ""
        return "encoding", ("entry %s has non-ASCII bytes %r in its name but is not marked "
                            "UTF-8%s: unzip tools fall back to CP437, so the platform may see "
                            "a different name" % (shown, raw, meant))
    for part in name.split("/"):
        if len(part.encode("utf-8")) > limits["max_name_len"]:
            return "name length", ("entry %s has a name part of %d bytes, more than the limit of "
                                   "%d" % (shown[:80] + "...", len(part.encode("utf-8")),
                                           limits["max_name_len"]))
    return None


def _entry_problem(info, limits):
    """What makes one entry unusable, or None.

    Args:
      info: the entry.
      limits: the effective limits.

    Returns:
      ``(kind, message)`` or None.
    """
    problem = _name_problem(info, limits)
    if problem:
        return problem
    kind = _entry_kind(info)
    if kind == "link":
        return "link", "entry %r is a symbolic link" % info.filename
    if kind == "special":
        return "special", ("entry %r is not a regular file or folder (a device, FIFO or socket; "
                           "mode %o)" % (info.filename, info.external_attr >> 16))
    if kind == "dir":
        return None
    if info.flag_bits & 0x1:
        return "encrypted", "entry %r is password-protected" % info.filename
    if info.compress_type not in SUPPORTED_METHODS:
        method = METHOD_NAMES.get(info.compress_type, "method %d" % info.compress_type)
        return "method", "entry %r is compressed with %s" % (info.filename, method)
    if info.file_size > RATIO_MIN_SIZE:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits["max_ratio"]:
            return "ratio", ("entry %r declares %s unpacked from %s packed (ratio %.0f, more than "
                             "the limit of %d)" % (info.filename, _size(info.file_size),
                                                   _size(info.compress_size), ratio,
                                                   limits["max_ratio"]))
    return None


PROBLEM_FIXES = {
    "path": "Unsafe paths are refused; re-create the zip from inside the submission folder "
            "(`zip -r ../submission.zip .`) so every name is relative.",
    "backslash": "Re-create the zip with `leafsub build`, 7-Zip, or `python -m zipfile -c "
                 "submission.zip model.py metadata SubmissionModel`.",
    "encoding": "Rename the files to plain ASCII names (letters, digits, - _ .) and re-create "
                "the zip.",
    "name length": "Shorten the file name and re-create the zip.",
    "link": "Links are refused (they can point anywhere); put the real file in the zip "
            "(`zip -r` without -y, or copy the file over the link) and re-create it.",
    "special": "Only regular files and folders are allowed; remove it and re-create the zip.",
    "encrypted": "The platform cannot read password-protected entries; re-create the zip "
                 "without a password.",
    "method": "Python's zipfile, and so probably the platform, cannot read it; re-create the "
              "zip with standard deflate (`leafsub build`, or `zip -r`).",
    "ratio": "This looks like a zip bomb; if the file is real, store it less compressible or "
             "leave it out, and re-create the zip.",
    "duplicate": "The platform would keep only one of them, you cannot tell which; remove the "
                 "duplicates (e.g. a zip updated with `zip -u` twice) and re-create the zip.",
}


def _size(n):
    """``n`` bytes as a short human string, e.g. ``12.3 MB`` (decimal units)."""
    if n < 1000:
        return "%d bytes" % n
    for unit in ("KB", "MB"):
        n /= 1000
        if n < 1000:
            return "%.1f %s" % (n, unit)
    return "%.1f GB" % (n / 1000)


def _parts(name):
    """The path components of an entry name, without empty and ``.`` parts."""
    return [part for part in name.split("/") if part not in ("", ".")]


def _plan(zf, zip_path, limits):
    """Check every entry from the central directory, before writing anything.

    Args:
      zf: the open archive.
      zip_path: the zip, for the messages.
      limits: the effective limits.

    Returns:
      ``(entries, ignored)``: entries is a list of ``(info, parts, is_dir)`` to
      extract, ignored the number of macOS metadata entries skipped.

    Raises:
      _ArchiveProblem with one detail per kind of problem found.
    """
    found = {}
    entries = []
    ignored = 0
    seen = {}
    declared = 0
    for info in zf.infolist():
        problem = _entry_problem(info, limits)
        if problem:
            found.setdefault(problem[0], []).append(problem[1])
            continue
        parts = _parts(info.filename)
        if not parts:
            continue
        is_dir = _entry_kind(info) == "dir"
        if _is_ignored(parts):
            ignored += 1
            continue
        key = "/".join(parts)
        if key in seen and not (is_dir and seen[key]):
            found.setdefault("duplicate", []).append("the name %r appears twice" % key)
            continue
        seen[key] = is_dir
        if not is_dir:
            declared += info.file_size
        entries.append((info, parts, is_dir))
    for info, parts, is_dir in entries:
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if seen.get(prefix) is False:
                found.setdefault("duplicate", []).append(
                    "%r is a file in the zip but %r needs it to be a folder"
                    % (prefix, info.filename))
                break
    details = [_problem_detail(zip_path, kind, messages) for kind, messages in found.items()]
    # Many entries, each too small for the per-entry ratio check, can still be a bomb.
    try:
        packed = os.path.getsize(zip_path)
    except OSError:
        packed = 0
    if "ratio" not in found and declared > TOTAL_RATIO_MIN_SIZE and packed and \
            declared / packed > limits["max_ratio"]:
        details.append(_problem_detail(zip_path, "ratio", [
            "its %d files declare %s unpacked from a %s zip (ratio %.0f, more than the limit "
            "of %d)" % (sum(not d for _, _, d in entries), _size(declared), _size(packed),
                        declared / packed, limits["max_ratio"])]))
    if declared > limits["max_total_bytes"]:
        details.append("%s declares %s of files once unpacked, more than the limit of %s: this "
                       "looks like a zip bomb, or the zip holds far more than a submission "
                       "needs (data sets, checkpoints). Leave those out and re-create the zip."
                       % (zip_path, _size(declared), _size(limits["max_total_bytes"])))
    if details:
        raise _ArchiveProblem(*details)
    if not any(not is_dir for _, _, is_dir in entries):
        raise _ArchiveProblem(
            "%s has no files%s: zip the submission's files (model.py, metadata, SubmissionModel/), "
            "e.g. `cd SUBMISSION_FOLDER && zip -r ../submission.zip .`."
            % (zip_path, " except macOS metadata (__MACOSX/, .DS_Store)" if ignored else ""))
    return entries, ignored


def _problem_detail(zip_path, kind, messages):
    """One paragraph for all the entries with the same kind of problem."""
    more = " (and %d more like it)" % (len(messages) - 1) if len(messages) > 1 else ""
    return "%s: %s%s. %s" % (zip_path, messages[0], more, PROBLEM_FIXES[kind])


def _top_folder(entries):
    """The single folder holding every entry, or None.

    A lone SavedModel folder (``saved_model.pb`` right inside it) is not a
    wrapping folder: that zip lacks model.py, which the structure checks report.
    """
    tops = {parts[0] for _, parts, _ in entries}
    if len(tops) != 1:
        return None
    if any(len(parts) == 1 and not is_dir for _, parts, is_dir in entries):
        return None
    if any(parts[1:] == ["saved_model.pb"] for _, parts, _ in entries):
        return None
    return tops.pop()


def _make_dirs(dest, parts, made):
    """Create ``dest/parts...`` one level at a time, refusing anything that is not a real folder.

    Args:
      dest: the extraction folder (exists).
      parts: path components below it.
      made: set of relative paths already created (updated).

    Returns:
      The absolute path of the folder.
    """
    path = dest
    for depth, part in enumerate(parts, 1):
        path = os.path.join(path, part)
        key = "/".join(parts[:depth])
        if key in made:
            continue
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise _ArchiveProblem("%r is both a file and a folder in the zip; remove one and "
                                      "re-create the zip." % key) from None
        os.chmod(path, 0o755)
        made.add(key)
    return path


def _copy_limited(src, dst, budget, name):
    """Stream ``src`` into ``dst`` in chunks, stopping once more than ``budget`` bytes come out.

    Args:
      src: readable binary file (the zip member).
      dst: writable binary file.
      budget: bytes still allowed in total.
      name: the entry's name, for the messages.

    Returns:
      Bytes written.

    Raises:
      _ArchiveProblem when the data cannot be read (corrupt, CRC error) or is
      more than the budget (a header that lies). Write errors propagate.
    """
    written = 0
    while True:
        try:
            chunk = src.read(CHUNK)
        except _READ_ERRORS as error:
            raise _ArchiveProblem("entry %r is corrupt (%s): its data does not match its "
                                  "header. %s" % (name, error, RECREATE)) from None
        if not chunk:
            return written
        written += len(chunk)
        if written > budget:
            raise _ArchiveProblem(
                "entry %r unpacks to more bytes than the size limit allows, although the zip's "
                "headers declared less: the zip is corrupt or a zip bomb. %s" % (name, RECREATE))
        dst.write(chunk)


def _write_file(zf, info, path, budget):
    """Extract one member to ``path`` (new file, mode 0o644, links never followed).

    Args:
      zf: the open archive.
      info: the member.
      path: absolute destination path (must not exist).
      budget: bytes still allowed in total.

    Returns:
      Bytes written.

    Raises:
      _ArchiveProblem when the member cannot be read or exceeds the budget.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(
        os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise _ArchiveProblem("%r appears twice in the zip (or as a file and a folder); remove "
                              "the duplicate and re-create the zip." % info.filename) from None
    with os.fdopen(fd, "wb") as dst:
        try:
            src = zf.open(info)
        except _READ_ERRORS as error:
            raise _ArchiveProblem("entry %r cannot be read (%s): the zip is corrupt. %s"
                                  % (info.filename, error, RECREATE)) from None
        with src:
            written = _copy_limited(src, dst, budget, info.filename)
    os.chmod(path, 0o644)
    return written


def _clear(dest):
    """Remove everything below ``dest`` (never following links), leaving ``dest`` empty."""
    for name in os.listdir(dest):
        path = os.path.join(dest, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _extract_entries(zf, entries, dest, limits):
    """Write the planned entries under ``dest``.

    Args:
      zf: the open archive.
      entries: ``(info, parts, is_dir)`` from ``_plan``.
      dest: the empty extraction folder.
      limits: the effective limits.

    Returns:
      ``(files, total_bytes)``.
    """
    made = set()
    files = []
    total = 0
    for info, parts, is_dir in entries:
        if is_dir:
            _make_dirs(dest, parts, made)
            continue
        folder = _make_dirs(dest, parts[:-1], made)
        total += _write_file(zf, info, os.path.join(folder, parts[-1]),
                             limits["max_total_bytes"] - total)
        files.append("/".join(parts))
    return files, total


def _top_folder_check(top):
    return check("layout: top folder", "fail",
                  "The zip has everything inside the folder '%s/', but the platform looks for "
                  "model.py at the top of the zip. Zip the contents, not the folder (e.g. "
                  "`cd %s && zip -r ../submission.zip .`). The rest of this report evaluates "
                  "'%s/' as if it were the top." % (top, top, top))


def require_zip_file(zip_path):
    """The path as a string, or UsageError (exit 2) when it is missing or a folder."""
    zip_path = os.fspath(zip_path)
    if not os.path.exists(zip_path):
        raise UsageError("Submission zip %s does not exist: check the path (the zip `leafsub "
                         "build -o FILE` wrote, or the one you downloaded)." % zip_path)
    if os.path.isdir(zip_path):
        raise UsageError("%s is a folder, not a zip: pass the submission .zip file (to check a "
                         "folder, zip its contents first: `cd %s && zip -r ../submission.zip .`)."
                         % (zip_path, zip_path))
    return zip_path


def extract_submission(zip_path, dest, limits=None):
    """Extract an untrusted submission zip into ``dest``, safely.

    Args:
      zip_path: the submission zip.
      dest: extraction folder; created when missing, must be empty otherwise.
      limits: overrides of ``LIMITS`` (``max_files``, ``max_total_bytes``,
        ``max_ratio``, ``max_name_len``).

    Returns:
      ``Extracted``. ``ok`` is False, with "archive" fail checks saying what is
      wrong and what to do, when the archive cannot be used; ``dest`` is then
      left empty.

    Raises:
      UsageError when ``zip_path`` does not exist or is a folder, ``dest`` is
      not an empty folder, or the disk is full.
    """
    limits = dict(LIMITS, **(limits or {}))
    zip_path, dest = _prepare_paths(zip_path, dest)
    try:
        fp = open(zip_path, "rb")
    except OSError as error:
        raise UsageError("Cannot read %s (%s): check its permissions." % (zip_path,
                                                                            error.strerror))
    with fp:
        try:
            with _open_zip(fp, zip_path, limits) as zf:
                entries, ignored = _plan(zf, zip_path, limits)
                files, total = _extract_entries(zf, entries, dest, limits)
        except _ArchiveProblem as problem:
            _clear(dest)
            return _failed(dest, [_detail(zip_path, arg) for arg in problem.args])
        except OSError as error:
            _clear(dest)
            if error.errno in _NAME_ERRNOS:
                where = os.path.relpath(error.filename or dest, dest)
                return _failed(dest, [
                    "%s: a name in the zip cannot be created on this file system (%s: %s). "
                    "Shorten or simplify the folder and file names and re-create the zip."
                    % (zip_path, error.strerror, where[:120])])
            raise UsageError("Cannot extract %s into %s (%s): check the free disk space and "
                             "the folder's permissions, or pass another folder."
                             % (zip_path, dest, error.strerror)) from None
    top = _top_folder(entries)
    detail = "%d file%s, %s unpacked" % (len(files), "" if len(files) == 1 else "s",
                                         _size(total))
    if ignored:
        detail += "; skipped %d macOS metadata entries (__MACOSX/, .DS_Store)" % ignored
    checks = [check("archive", "pass", detail + ".")]
    if top:
        checks.append(_top_folder_check(top))
    root = os.path.join(dest, top) if top else dest
    return Extracted(root=root, dest=dest, files=files, n_files=len(files), total_bytes=total,
                     top_folder=top, checks=checks, ok=True)
