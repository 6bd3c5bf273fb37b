"""A deterministic, streaming ZIP writer (stdlib only).

Why not ``zipfile.ZipFile.write``: it stamps each entry with the file's mtime
and mode, compresses on one core, and cannot decide per file whether deflate
is worth it. This writer:

* sorts the entries by name, stamps every one 1980-01-01 00:00:00 with fixed
  modes (files 0644, folders 0755), writes no extra timestamps: the same input
  files give the same bytes;
* streams: files are read in pieces of ``PIECE`` bytes and never held whole, so
  memory stays bounded whatever the model size (at most ``window`` pieces in
  flight);
* deflates on every core: each piece is compressed on its own in a thread pool
  (zlib releases the GIL) with the previous 32 KiB as its dictionary and a sync
  flush at its end, like pigz, so the concatenation is one ordinary deflate
  stream and the bytes do not depend on the number of threads;
* switches to ZIP64 per entry when a size or offset needs it, and writes the
  ZIP64 end records when the archive needs them;
* ``compression="auto"`` deflates small files when that makes them smaller and,
  for large files, deflates a sample first and stores the file when deflate
  would save less than ``AUTO_MIN_SAVING`` (weights barely compress).

The output is written to a temporary file beside the target and renamed into
place only when complete (``write_zip_atomic``): a failure leaves no zip.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import os
import struct
import tempfile
import zlib

STORED = 0
DEFLATED = 8
POLICIES = ("auto", "deflate", "store")

PIECE = 1 << 20               # bytes read, and deflated, at a time
DICT_BYTES = 32 * 1024        # deflate window: the dictionary each piece gets
SMALL_FILE = 1 << 20          # "auto": below this, deflate the whole file to decide
SAMPLE_WINDOWS = 32           # "auto": above it, deflate this many windows ...
SAMPLE_BYTES = 256 * 1024     # ... of this size, evenly spread over the file
# (8 MB in all: within 0.5 % of the true ratio on EfficientNetB4 weights; 8 x 128 KB was 8 % off)
# "auto": deflate a large file only if it saves >= 12 %. Storing then costs at most
# 1/(1 - 0.12) = 1.136x the deflated size per file, and random-weight ResNet50s, whose
# samples save 11.4-11.7 %, are stored: 0.13x zip -6's time for 1.10x its size (bench_build).
AUTO_MIN_SAVING = 0.12
DEFAULT_LEVEL = 6

ZIP64_LIMIT = 0xFFFFFFFF      # sizes and offsets at or above this need ZIP64
ZIP64_COUNT_LIMIT = 0xFFFF
DOS_TIME = 0                  # 00:00:00
DOS_DATE = (0 << 9) | (1 << 5) | 1   # 1980-01-01
FILE_ATTR = (0o100644 << 16)
DIR_ATTR = (0o040755 << 16) | 0x10   # 0x10: MS-DOS directory bit
MADE_BY_UNIX = 3 << 8
FLAG_UTF8 = 1 << 11


@dataclasses.dataclass
class Entry:
    """One archive member: a folder (name ends with "/"), a file on disk, or bytes."""

    name: str
    path: str = None
    data: bytes = None
    method: int = None          # decided by plan(); STORED or DEFLATED
    size: int = 0               # uncompressed size
    estimate: int = 0           # expected stored size in the zip (before writing)
    compressed: int = None      # actual stored size (after writing)
    crc: int = 0
    offset: int = 0

    @property
    def is_dir(self):
        return self.name.endswith("/")


def file_entry(name, path):
    return Entry(name=name, path=os.fspath(path))


def bytes_entry(name, data):
    return Entry(name=name, data=bytes(data))


def dir_entry(name):
    return Entry(name=name.rstrip("/") + "/")


def entries_from_tree(root, prefix=""):
    """Entries for every folder and file under ``root`` (names relative to it, "/"-separated)."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        base = prefix + ("" if rel == "." else rel + "/")
        if base:
            out.append(dir_entry(base))
        for name in sorted(files):
            out.append(file_entry(base + name, os.path.join(folder, name)))
    return out


# --------------------------------------------------------------------------- deflate

def _deflate_piece(data, zdict, level, final):
    """Raw-deflate one piece; the pieces of a file concatenate into one valid stream."""
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def _sample_ratio(path, size, level):
    """Deflated/raw ratio of a large file: exact up to SAMPLE_WINDOWS * SAMPLE_BYTES, else
    measured on SAMPLE_WINDOWS windows evenly spread over the file."""
    raw = packed = 0
    with open(path, "rb") as f:
        if size <= SAMPLE_WINDOWS * SAMPLE_BYTES:
            for block in iter(lambda: f.read(PIECE), b""):
                raw += len(block)
                packed += len(_deflate_piece(block, None, level, True))
            return packed / raw if raw else 1.0
        step = (size - SAMPLE_BYTES) / (SAMPLE_WINDOWS - 1)
        for i in range(SAMPLE_WINDOWS):
            f.seek(int(i * step))
            block = f.read(SAMPLE_BYTES)
            raw += len(block)
            packed += len(_deflate_piece(block, None, level, True))
    return packed / raw if raw else 1.0


def plan(entries, compression="auto", level=DEFAULT_LEVEL):
    """Sort ``entries``, decide each one's method and estimate its size in the zip.

    Returns the sorted list (the same Entry objects, updated).

    Raises:
      ValueError for an unknown policy or duplicate names.
    """
    if compression not in POLICIES:
        raise ValueError("compression %r is not one of %s" % (compression, ", ".join(POLICIES)))
    entries = sorted(entries, key=lambda e: e.name.encode("utf-8"))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError("duplicate names in the archive: %s" % ", ".join(dup))
    for e in entries:
        if e.is_dir:
            e.method, e.size, e.estimate = STORED, 0, 0
            continue
        e.size = len(e.data) if e.data is not None else os.path.getsize(e.path)
        if e.size == 0 or compression == "store":
            e.method, e.estimate = STORED, e.size
        elif compression == "deflate":
            e.method = DEFLATED
            e.estimate = (int(e.size * _sample_ratio(e.path, e.size, level)) if e.size > SMALL_FILE
                          else len(_deflate_piece(_read_all(e), None, level, True)))
        elif e.size <= SMALL_FILE:
            packed = len(_deflate_piece(_read_all(e), None, level, True))
            e.method, e.estimate = (DEFLATED, packed) if packed < e.size else (STORED, e.size)
        else:
            ratio = _sample_ratio(e.path, e.size, level)
            if ratio <= 1.0 - AUTO_MIN_SAVING:
                e.method, e.estimate = DEFLATED, int(e.size * ratio)
            else:
                e.method, e.estimate = STORED, e.size
    return entries


def _read_all(entry):
    if entry.data is not None:
        return entry.data
    with open(entry.path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- writing

def _needs_zip64(entry):
    # A deflated piece can grow a little (stored blocks); leave a margin as zipfile does.
    return entry.size * 1.05 + 1024 >= ZIP64_LIMIT


def _name_bytes(entry):
    raw = entry.name.encode("utf-8")
    flags = 0 if entry.name.isascii() else FLAG_UTF8
    return raw, flags


def _local_header(entry, zip64):
    name, flags = _name_bytes(entry)
    if zip64:
        extra = struct.pack("<HHQQ", 0x0001, 16, entry.size, entry.compressed or 0)
        sizes = (0xFFFFFFFF, 0xFFFFFFFF)
    else:
        extra = b""
        sizes = (entry.compressed or 0, entry.size)
    version = 45 if zip64 else 20
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, version, flags, entry.method, DOS_TIME,
                       DOS_DATE, entry.crc, sizes[0], sizes[1], len(name), len(extra)) + name + extra


def _central_header(entry, zip64):
    name, flags = _name_bytes(entry)
    fields = []
    comp, size, offset = entry.compressed, entry.size, entry.offset
    if zip64 or size >= ZIP64_LIMIT or comp >= ZIP64_LIMIT:
        fields += [size, comp]
        size = comp = 0xFFFFFFFF
    if offset >= ZIP64_LIMIT:
        fields.append(offset)
        offset = 0xFFFFFFFF
    extra = struct.pack("<HH%dQ" % len(fields), 0x0001, 8 * len(fields), *fields) if fields else b""
    version = 45 if fields else 20
    attr = DIR_ATTR if entry.is_dir else FILE_ATTR
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, MADE_BY_UNIX | version, version, flags,
                       entry.method, DOS_TIME, DOS_DATE, entry.crc, comp, size, len(name),
                       len(extra), 0, 0, 0, attr, offset) + name + extra


def _pieces(entry):
    """Yield the raw content of ``entry`` in PIECE-sized blocks (one empty block for an empty entry)."""
    if entry.data is not None:
        for start in range(0, max(len(entry.data), 1), PIECE):
            yield entry.data[start:start + PIECE]
        return
    remaining = entry.size
    with open(entry.path, "rb") as f:
        if remaining == 0:
            yield b""
        while remaining > 0:
            block = f.read(min(PIECE, remaining))
            if not block:
                raise OSError("%s: the file shrank while it was being zipped" % entry.path)
            remaining -= len(block)
            yield block
        if f.read(1):
            raise OSError("%s: the file grew while it was being zipped" % entry.path)


@dataclasses.dataclass
class ZipStats:
    size: int
    entries: int
    zip64: bool
    raw_bytes: int
    deflated_entries: int


def write_zip(fileobj, entries, compression="auto", level=DEFAULT_LEVEL, workers=None,
              force_zip64=False, planned=False):
    """Write ``entries`` as a ZIP archive to a seekable binary ``fileobj``.

    Args:
      entries: Entry objects (see file_entry, bytes_entry, dir_entry).
      compression: "auto", "deflate" or "store" (see the module docstring).
      level: zlib level for deflated entries.
      workers: compression threads (default: the number of CPUs).
      force_zip64: use ZIP64 records for every file entry (testing, tools).
      planned: ``entries`` already went through ``plan`` (skip re-deciding).

    Returns:
      ZipStats.
    """
    if not planned:
        entries = plan(entries, compression, level)
    workers = max(1, workers or os.cpu_count() or 1)
    window = 4 * workers + 2
    base = fileobj.tell()
    central = []
    any_zip64 = False

    def begin(entry):
        entry.offset = fileobj.tell() - base
        entry.compressed = 0
        entry.zip64 = force_zip64 or _needs_zip64(entry)
        fileobj.write(_local_header(entry, entry.zip64))

    def end(entry):
        nonlocal any_zip64
        if not entry.zip64 and (entry.compressed >= ZIP64_LIMIT or entry.size >= ZIP64_LIMIT):
            raise OSError("%s: compressed to %d bytes, beyond what its header can hold; "
                          "use compression='store'" % (entry.name, entry.compressed))
        here = fileobj.tell()
        fileobj.seek(base + entry.offset)
        fileobj.write(_local_header(entry, entry.zip64))
        fileobj.seek(here)
        any_zip64 = any_zip64 or entry.zip64 or entry.offset >= ZIP64_LIMIT
        central.append(_central_header(entry, entry.zip64))

    def events(pool):
        """('begin', e) / ('piece', e, bytes or future) / ('end', e), reading ahead of the writer."""
        for entry in entries:
            yield ("begin", entry)
            if not entry.is_dir:
                crc, read, previous = 0, 0, b""
                n_pieces = max(1, -(-entry.size // PIECE))
                for i, block in enumerate(_pieces(entry)):
                    crc = zlib.crc32(block, crc)
                    read += len(block)
                    if entry.method == DEFLATED:
                        final = i == n_pieces - 1
                        yield ("piece", entry, pool.submit(_deflate_piece, block, previous, level,
                                                           final), len(block))
                        previous = (previous[-DICT_BYTES:] + block)[-DICT_BYTES:]
                    else:
                        yield ("piece", entry, block, len(block))
                if read != entry.size:
                    raise OSError("%s: expected %d bytes, read %d" % (entry.name, entry.size, read))
                entry.crc = crc
            yield ("end", entry)

    def handle(event):
        if event[0] == "begin":
            begin(event[1])
        elif event[0] == "end":
            end(event[1])
        else:
            data = event[2].result() if isinstance(event[2], concurrent.futures.Future) else event[2]
            fileobj.write(data)
            event[1].compressed += len(data)

    pending = collections.deque()
    in_flight = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for event in events(pool):
                pending.append(event)
                if event[0] == "piece":
                    in_flight += 1
                while pending:
                    head = pending[0]
                    if head[0] == "piece":
                        ready = not isinstance(head[2], concurrent.futures.Future) or head[2].done()
                        if not ready and in_flight <= window:
                            break
                        in_flight -= 1
                    handle(pending.popleft())
            while pending:
                handle(pending.popleft())
        except BaseException:
            for event in pending:
                if event[0] == "piece" and isinstance(event[2], concurrent.futures.Future):
                    event[2].cancel()
            raise

    cd_offset = fileobj.tell() - base
    for record in central:
        fileobj.write(record)
    cd_size = fileobj.tell() - base - cd_offset
    count = len(central)
    if any_zip64 or force_zip64 or count >= ZIP64_COUNT_LIMIT or cd_offset >= ZIP64_LIMIT \
            or cd_size >= ZIP64_LIMIT:
        any_zip64 = True
        eocd64 = fileobj.tell() - base
        fileobj.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, MADE_BY_UNIX | 45, 45, 0, 0,
                                  count, count, cd_size, cd_offset))
        fileobj.write(struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1))
    fileobj.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(count, 0xFFFF),
                              min(count, 0xFFFF), min(cd_size, 0xFFFFFFFF),
                              min(cd_offset, 0xFFFFFFFF), 0))
    size = fileobj.tell() - base
    return ZipStats(size=size, entries=count, zip64=any_zip64,
                    raw_bytes=sum(e.size for e in entries),
                    deflated_entries=sum(1 for e in entries if e.method == DEFLATED))


def sha256_of(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_zip_atomic(path, entries, compression="auto", level=DEFAULT_LEVEL, workers=None,
                     force_zip64=False, planned=False, verify=None):
    """Write the zip to a temporary file beside ``path``, then rename it into place.

    ``verify(tmp_path, stats)``, when given, runs on the complete temporary file
    before the rename; if it raises, the temporary file is removed and nothing
    appears at ``path``.

    Returns:
      (ZipStats, sha256 hex of the written file).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".leafsub-zip-", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "w+b") as f:
            stats = write_zip(f, entries, compression, level, workers, force_zip64, planned)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        digest = sha256_of(tmp)
        if verify is not None:
            verify(tmp, stats)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return stats, digest

