"""Safe extraction of untrusted submission zips: every bad archive becomes a clear fail check.

Each zip is built in tmp_path with the zipfile module (and patched by hand where a real
tool would not write such a thing). A failed extraction must leave the destination empty.
"""

import io
import os
import stat
import struct
import time
import zipfile

import pytest

from leafsub.errors import UsageError
from leafsub.evaluator.extract import LIMITS, _ArchiveProblem, _copy_limited, extract_submission

GIB = 1024**3
MIB = 1024**2


def make_zip(path, entries, compression=zipfile.ZIP_DEFLATED):
    """Write ``entries`` (``(name or ZipInfo, bytes)`` pairs) to a zip at ``path``."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def patch_bytes(path, old, new):
    """Replace every occurrence of ``old`` by ``new`` (same length) in the file."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) == 2, "expected the name in the local header and the central directory"
    path.write_bytes(data.replace(old, new))


def patch_headers(path, local_offset, central_offset, fmt, value):
    """Overwrite one field of the first entry, in its local header and its central record."""
    data = bytearray(path.read_bytes())
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    struct.pack_into(fmt, data, local + local_offset, value)
    struct.pack_into(fmt, data, central + central_offset, value)
    path.write_bytes(bytes(data))


def extract(tmp_path, zip_path, **limits):
    return extract_submission(zip_path, tmp_path / "out", limits=limits or None)


def fail_detail(result, tmp_path):
    """The single "archive" fail detail of a rejected zip; checks nothing was left behind."""
    assert not result.ok
    assert [c["status"] for c in result.checks] == ["fail"]
    assert result.checks[0]["name"] == "archive"
    assert os.listdir(tmp_path / "out") == []
    assert result.files == [] and result.n_files == 0
    return result.checks[0]["detail"]


def test_good_zip_extracts_byte_identical_files_and_nothing_outside(tmp_path):
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("untouched")
    contents = {
        "model.py": b"class model:\n    pass\n",
        "metadata": b"",
        "SubmissionModel/saved_model.pb": os.urandom(300_000),
        "SubmissionModel/variables/variables.data-00000-of-00001": os.urandom(2 * MIB),
    }
    zip_path = make_zip(tmp_path / "good.zip", [("SubmissionModel/", b"")] + list(contents.items()))
    result = extract(tmp_path, zip_path)
    out = tmp_path / "out"
    assert result.ok and result.top_folder is None
    assert result.root == result.dest == str(out)
    assert sorted(result.files) == sorted(contents)
    assert result.n_files == 4
    assert result.total_bytes == sum(len(v) for v in contents.values())
    for name, data in contents.items():
        assert (out / name).read_bytes() == data
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "SubmissionModel").stat().st_mode) == 0o755
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == set(contents)
    assert sorted(os.listdir(tmp_path)) == ["good.zip", "out", "sentinel"]
    assert os.listdir(sentinel) == ["keep.txt"]
    assert (sentinel / "keep.txt").read_text() == "untouched"
    assert result.checks == [{"name": "archive", "status": "pass",
                              "detail": "4 files, 2.4 MB unpacked."}]


def test_macos_metadata_is_skipped_and_mentioned(tmp_path):
    zip_path = make_zip(tmp_path / "mac.zip", [
        ("model.py", b"x = 1\n"), (".DS_Store", b"junk"),
        ("__MACOSX/._model.py", b"junk"), ("SubmissionModel/.DS_Store", b"junk")])
    result = extract(tmp_path, zip_path)
    assert result.ok and result.files == ["model.py"]
    assert os.listdir(tmp_path / "out") == ["model.py"]
    assert result.checks[0]["status"] == "pass"
    assert "skipped 3 macOS metadata entries (__MACOSX/, .DS_Store)" in result.checks[0]["detail"]


def test_single_top_folder_extracts_but_fails_the_layout(tmp_path):
    zip_path = make_zip(tmp_path / "wrapped.zip", [
        ("submission/model.py", b"x = 1\n"), ("submission/metadata", b""),
        ("submission/SubmissionModel/saved_model.pb", b"pb"), ("__MACOSX/submission/._x", b"")])
    result = extract(tmp_path, zip_path)
    assert result.ok
    assert result.top_folder == "submission"
    assert result.root == str(tmp_path / "out" / "submission")
    assert os.path.isfile(os.path.join(result.root, "model.py"))
    checks = {c["name"]: c for c in result.checks}
    assert checks["archive"]["status"] == "pass"
    layout = checks["layout: top folder"]
    assert layout["status"] == "fail"
    for words in ("inside the folder 'submission/'", "model.py at the top of the zip",
                  "Zip the contents, not the folder",
                  "`cd submission && zip -r ../submission.zip .`"):
        assert words in layout["detail"]


def test_lone_savedmodel_folder_is_not_taken_for_a_top_folder(tmp_path):
    zip_path = make_zip(tmp_path / "model-only.zip", [
        ("SubmissionModel/saved_model.pb", b"pb"), ("SubmissionModel/variables/v", b"v")])
    result = extract(tmp_path, zip_path)
    assert result.ok and result.top_folder is None and result.root == str(tmp_path / "out")


def test_missing_zip_or_folder_or_busy_dest_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="nope.zip does not exist"):
        extract(tmp_path, tmp_path / "nope.zip")
    with pytest.raises(UsageError, match="is a folder, not a zip"):
        extract(tmp_path, tmp_path)
    zip_path = make_zip(tmp_path / "ok.zip", [("model.py", b"")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("x")
    with pytest.raises(UsageError, match="is not empty"):
        extract(tmp_path, zip_path)
    assert os.listdir(tmp_path / "out") == ["old"]


@pytest.mark.parametrize("content, words", [
    (b"", ["is empty (0 bytes)", "re-create the zip"]),
    (b"model.py\nmetadata\n", ["is not a zip archive", "zip -r ../submission.zip ."]),
    (b"Rar!\x1a\x07\x00" + bytes(100), ["is a rar archive, not a zip", "leafsub build"]),
    (b"\x1f\x8b\x08" + bytes(100), ["gzip", "not a zip"]),
])
def test_not_a_zip(tmp_path, content, words):
    path = tmp_path / "submission.zip"
    path.write_bytes(content)
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert str(path) in detail
    for word in words:
        assert word in detail.lower()


def test_truncated_zip(tmp_path):
    path = make_zip(tmp_path / "cut.zip", [("model.py", os.urandom(5000))])
    path.write_bytes(path.read_bytes()[:3000])
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert "truncated" in detail and "Re-create the zip" in detail


def test_crc_error_removes_what_was_already_extracted(tmp_path):
    payload = b"A" * 4000 + b"B" * 4000
    path = make_zip(tmp_path / "crc.zip", [("metadata", b"ok"), ("model.py", payload)],
                    compression=zipfile.ZIP_STORED)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"B" * 4000, b"C" * 4000))
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert "'model.py' is corrupt" in detail and "CRC" in detail and "Re-create the zip" in detail


@pytest.mark.parametrize("entries, words", [
    ([], ["has no files"]),
    ([("SubmissionModel/", b"")], ["has no files"]),
    ([("__MACOSX/._model.py", b"x"), (".DS_Store", b"x")], ["has no files except macos metadata"]),
])
def test_zip_without_files(tmp_path, entries, words):
    detail = fail_detail(extract(tmp_path, make_zip(tmp_path / "e.zip", entries)), tmp_path)
    for word in words:
        assert word in detail.lower()
    assert "zip -r ../submission.zip ." in detail


@pytest.mark.parametrize("name, words", [
    ("/etc/cron.d/evil", ["is an absolute path", "every name is relative"]),
    ("C:/Windows/evil.py", ["starts with a drive letter"]),
    ("../evil.py", ["has a '..' component", "outside the folder"]),
    ("SubmissionModel/../../evil.py", ["has a '..' component"]),
    ("..\\..\\evil.py", ["has a '..' component"]),
    ("\\evil.py", ["is an absolute path"]),
    ("SubmissionModel\\saved_model.pb", ["backslashes as folder separators", "Compress-Archive",
                                         "Re-create the zip"]),
])
def test_unsafe_or_ambiguous_paths(tmp_path, name, words):
    path = make_zip(tmp_path / "p.zip", [("model.py", b"x"), (name, b"evil")])
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    for word in words:
        assert word in detail
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize("kind, words", [
    (stat.S_IFLNK, ["'SubmissionModel' is a symbolic link", "Links are refused",
                    "put the real file in the zip"]),
    (stat.S_IFIFO, ["'SubmissionModel' is not a regular file or folder", "FIFO",
                    "Only regular files and folders are allowed"]),
])
def test_links_and_special_files(tmp_path, kind, words):
    info = zipfile.ZipInfo("SubmissionModel")
    info.external_attr = (kind | 0o777) << 16
    path = make_zip(tmp_path / "l.zip", [("model.py", b"x"), (info, b"/home/me/models/best")])
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    for word in words:
        assert word in detail


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("second", ["model.py", "./model.py"])
def test_duplicate_names(tmp_path, second):
    path = make_zip(tmp_path / "d.zip", [("model.py", b"old"), (second, b"new"), ("metadata", b"")])
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert "the name 'model.py' appears twice" in detail and "re-create the zip" in detail


def test_file_and_folder_with_the_same_name(tmp_path):
    path = make_zip(tmp_path / "d.zip", [("SubmissionModel", b"x"),
                                         ("SubmissionModel/saved_model.pb", b"pb")])
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert "'SubmissionModel' is a file in the zip but" in detail


@pytest.mark.parametrize("raw, probably", [
    (b"caf\xc3\xa9.py", "(probably 'café.py')"),   # UTF-8 bytes without the UTF-8 flag
    (b"caf\xe9.py", ""),                           # Latin-1 bytes
])
def test_name_not_marked_utf8(tmp_path, raw, probably):
    placeholder = b"caf" + b"X" * (len(raw) - 6) + b".py"
    path = make_zip(tmp_path / "n.zip", [("model.py", b"x"), (placeholder.decode(), b"x")])
    patch_bytes(path, placeholder, raw)
    with zipfile.ZipFile(path) as zf:
        assert not zf.getinfo(raw.decode("cp437")).flag_bits & 0x800
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    for word in ("not marked UTF-8", "CP437", "may see a different name", "plain ASCII", probably):
        assert word in detail


def test_name_marked_utf8_but_invalid(tmp_path):
    path = make_zip(tmp_path / "n.zip", [("cafX.py", b"x"), ("model.py", b"x")])
    patch_bytes(path, b"cafX.py", b"caf\xe9.py")
    patch_headers(path, 6, 8, "<H", 0x800)
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert "marked UTF-8 but is not valid UTF-8" in detail and "plain ASCII" in detail


def test_local_header_name_that_differs_from_the_directory(tmp_path):
    path = make_zip(tmp_path / "h.zip", [("model.py", b"x" * 100)])
    data = path.read_bytes()
    local = data.index(b"PK\x03\x04") + 30
    path.write_bytes(data[:local] + b"../evil1" + data[local + 8:])
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert "'model.py' cannot be read (File name in directory" in detail and "corrupt" in detail
    assert not (tmp_path / "evil").exists()


def test_name_too_long(tmp_path):
    path = make_zip(tmp_path / "n.zip", [("model.py", b"x"), ("w" * 30 + ".h5", b"x")])
    detail = fail_detail(extract(tmp_path, path, max_name_len=20), tmp_path)
    assert "name part of 33 bytes, more than the limit of 20" in detail
    assert "Shorten the file name" in detail


def test_path_too_long_for_the_file_system(tmp_path):
    deep = "/".join(["d" * 250] * 20) + "/model.py"
    path = make_zip(tmp_path / "deep.zip", [("metadata", b""), (deep, b"x")])
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert "cannot be created on this file system (File name too long" in detail
    assert "Shorten or simplify the folder and file names" in detail


def test_password_protected_entry(tmp_path):
    path = make_zip(tmp_path / "enc.zip", [("model.py", b"x")])
    patch_headers(path, 6, 8, "<H", 0x1)
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert "'model.py' is password-protected" in detail and "without a password" in detail


def test_unsupported_compression_method(tmp_path):
    path = make_zip(tmp_path / "d64.zip", [("model.py", b"x" * 100)])
    patch_headers(path, 8, 10, "<H", 9)
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert "compressed with Deflate64" in detail and "standard deflate" in detail


def test_too_many_entries(tmp_path):
    path = make_zip(tmp_path / "many.zip", [("f%d" % i, b"") for i in range(6)])
    detail = fail_detail(extract(tmp_path, path, max_files=5), tmp_path)
    assert "has 6 entries, more than the limit of 5" in detail and "Remove stray files" in detail


def write_many_empty_entries(path, count):
    """A valid zip of ``count`` empty stored files, written directly (zipfile is slow at this)."""
    local, central = [], []
    offset = 0
    for i in range(count):
        name = b"f%06d" % i
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 33, 0, 0, 0, len(name), 0)
        local.append(header + name)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 33, 0, 0, 0,
                                   len(name), 0, 0, 0, 0, 0o644 << 16, offset) + name)
        offset += len(header) + len(name)
    directory = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, len(directory), offset, 0)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + len(directory), 1)
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count,
                        len(directory), offset)
    path.write_bytes(b"".join(local) + directory + end64 + locator + end)
    return path


def test_100k_tiny_files_rejected_fast(tmp_path):
    path = write_many_empty_entries(tmp_path / "many.zip", 100_000)
    with zipfile.ZipFile(path) as zf:
        assert len(zf.infolist()) == 100_000
    start = time.perf_counter()
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert time.perf_counter() - start < 0.2
    assert "has 100000 entries, more than the limit of %d" % LIMITS["max_files"] in detail


@pytest.fixture(scope="module")
def bomb_zip(tmp_path_factory):
    """1 GiB of zeros, deflated by streaming to about 1 MB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("SubmissionModel/variables/variables.data-00000-of-00001")
        info.compress_type = zipfile.ZIP_DEFLATED
        chunk = bytes(16 * MIB)
        with zf.open(info, "w") as member:
            for _ in range(GIB // len(chunk)):
                member.write(chunk)
    assert path.stat().st_size < 2 * MIB
    return path


def test_zip_bomb_rejected_by_ratio_quickly(tmp_path, bomb_zip):
    start = time.perf_counter()
    detail = fail_detail(extract(tmp_path, bomb_zip), tmp_path)
    assert time.perf_counter() - start < 1
    assert "declares 1.1 GB unpacked from 1.0 MB packed" in detail
    assert "more than the limit of 200" in detail and "zip bomb" in detail


def test_declared_total_over_the_limit(tmp_path):
    path = make_zip(tmp_path / "big.zip", [("model.py", os.urandom(3000)),
                                           ("metadata", os.urandom(3000))])
    detail = fail_detail(extract(tmp_path, path, max_total_bytes=5000), tmp_path)
    assert "declares 6.0 KB of files once unpacked, more than the limit of 5.0 KB" in detail
    assert "Leave those out and re-create the zip" in detail


def test_header_that_lies_about_the_size(tmp_path, bomb_zip):
    path = tmp_path / "liar.zip"
    path.write_bytes(bomb_zip.read_bytes())
    patch_headers(path, 22, 24, "<L", MIB)
    with zipfile.ZipFile(path) as zf:
        assert zf.infolist()[0].file_size == MIB
    start = time.perf_counter()
    detail = fail_detail(extract(tmp_path, path), tmp_path)
    assert time.perf_counter() - start < 1
    assert "is corrupt (Bad CRC-32" in detail and "does not match its header" in detail
    assert "Re-create the zip" in detail


def test_streaming_copy_stops_once_the_real_bytes_exceed_the_budget():
    dst = io.BytesIO()
    with pytest.raises(_ArchiveProblem, match="more bytes than the size limit allows"):
        _copy_limited(io.BytesIO(bytes(5 * MIB)), dst, 2 * MIB + 5, "big.bin")
    assert len(dst.getvalue()) <= 2 * MIB + 5
