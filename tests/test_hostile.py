"""Broken and hostile submissions: a precise verdict for each, and nothing escapes.

A corpus of generated submissions (nothing binary is committed): broken archives,
wrong layouts, code that crashes, hangs, eats memory, exits, floods its output,
writes outside its folder, reaches for the network, forks away, returns the wrong
thing, and models that the runtime cannot load. Each case is run through the real
CLI in a subprocess and must give:

  - the documented exit code and the expected status of the named check, whose
    detail holds the expected words (one paragraph naming the problem and the fix);
  - no traceback from leafsub on stderr;
  - no file created or changed outside the evaluator's temporary directory (a
    sentinel tree the hostile code aims at stays as it was; the evaluator's TMPDIR
    is left empty; the working directory stays empty);
  - no process left running (none whose command line holds the case's marker or
    its temporary directory);
  - a return within the time limit plus 10 s.

The cases run concurrently (each is its own CLI process, its own folders and its
own marker); each test then checks its case's outcome. ``docs/verdicts.md`` is
generated from this table (``LEAFSUB_WRITE_VERDICTS=1 pytest tests/test_hostile.py``)
and a test checks that it lists every case with the verdict asserted here.
"""

import concurrent.futures
import dataclasses
import gzip
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zipfile

import numpy as np
import pytest

from conftest import run_cli
from submissions import color_data, write_zip

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the corpus checks /proc")

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, os.pardir, "docs", "verdicts.md")
WORKERS = 4
DEFAULT_TIME_LIMIT = 90
HANG_TIME_LIMIT = 20


# --------------------------------------------------------------------------- the cases

@dataclasses.dataclass
class Case:
    name: str
    group: str            # archive | layout | code | models | untrusted
    what: str             # what the user did (for the docs)
    make: object          # make(ctx) -> path of the zip
    exit: int
    check: str            # the check that carries the verdict
    status: str           # its status
    words: tuple = ()     # words its detail must hold (case-insensitive)
    time_limit: float = DEFAULT_TIME_LIMIT
    args: tuple = ()
    loopback: bool = False  # start a listener on 127.0.0.1 that must see no connection
    child: bool = True      # whether the evaluator starts the child (the docs say so)
    requires: tuple = ()    # OS isolation the case needs to be safe to run: netns, landlock, pidns
    series: bool = False    # evaluated on time series with the an2dl-2022-ts profile (SERIES)
    absent: tuple = ()      # words its detail must not hold (DATA: the --data file's path)
    stdout_absent: tuple = ()  # text that must not reach leafsub's stdout raw (escapes)


class Ctx:
    """What a maker gets: its folder, the sentinel tree, a marker, the loopback port, a secret."""

    def __init__(self, shared, folder, sentinel, marker, port, secret="leafsub-no-secret"):
        self.shared = shared
        self.dir = folder
        self.sentinel = sentinel
        self.marker = marker
        self.port = port
        self.secret = secret
        self.zip = os.path.join(folder, "submission.zip")
        self.build = os.path.join(folder, "build")
        os.makedirs(self.build, exist_ok=True)

    def fill(self, text):
        """Substitute SENTINEL, MARKER, PORT and DATA (the labelled --data file) in a template."""
        return (textwrap.dedent(text).replace("SENTINEL", self.sentinel)
                .replace("MARKER", self.marker).replace("PORT", str(self.port))
                .replace("DATA", self.shared.data))


def _submission(body, extra=None, metadata=True, saved_models=None):
    """A maker: model.py from ``body`` (with SENTINEL/MARKER/PORT filled in) plus metadata."""
    def make(ctx):
        files = {"model.py": ctx.fill(body)}
        if metadata:
            files["metadata"] = ""
        for name, content in (extra or {}).items():
            files[name] = content(ctx) if callable(content) else content
        folders = {k: v(ctx) for k, v in (saved_models or {}).items()}
        return write_zip(ctx.zip, files, folders)
    return make


PLAIN = '''
import numpy as np

class model:
    def __init__(self, path):
        self.path = path

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
'''


SERIES = ("--profile", "an2dl-2022-ts")


def _predict_body(lines, init="pass", head=""):
    """A model.py whose predict runs ``lines`` then returns zeros (unless lines return)."""
    return textwrap.dedent(head) + textwrap.dedent('''
        import numpy as np

        class model:
            def __init__(self, path):
        %s

            def predict(self, X):
        %s
                return np.zeros(len(X), dtype=np.int64)
        ''') % (textwrap.indent(textwrap.dedent(init).strip(), " " * 8),
                textwrap.indent(textwrap.dedent(lines).strip(), " " * 8))


def _init_body(lines, head=""):
    return _predict_body("pass", init=lines, head=head)


# ---- archive makers (raw bytes where zipfile would refuse to write the mistake)

def _raw(data):
    def make(ctx):
        with open(ctx.zip, "wb") as f:
            f.write(data(ctx) if callable(data) else data)
        return ctx.zip
    return make


def _good_zip_bytes(ctx):
    path = os.path.join(ctx.build, "good.zip")
    noise = np.random.default_rng(0).integers(0, 256, 8000, dtype=np.uint8).tobytes()
    write_zip(path, {"model.py": PLAIN, "metadata": "", "noise.bin": noise})
    with open(path, "rb") as f:
        data = f.read()
    return data[:len(data) // 2]


def _entries(*entries, base=True):
    """A zip of ``(ZipInfo or name, data)`` entries, after model.py and metadata."""
    def make(ctx):
        with zipfile.ZipFile(ctx.zip, "w", zipfile.ZIP_DEFLATED) as z:
            if base:
                z.writestr("model.py", PLAIN)
                z.writestr("metadata", "")
            for info, data in entries:
                info = info(ctx) if callable(info) else info
                z.writestr(info, data(ctx) if callable(data) else data)
        return ctx.zip
    return make


def _info(name, mode=None, flags=0, method=zipfile.ZIP_DEFLATED):
    def make(ctx):
        info = zipfile.ZipInfo(ctx.fill(name), date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = method
        if mode is not None:
            info.external_attr = mode << 16
        info.flag_bits |= flags
        return info
    return make


def _patched(placeholder, replacement, flags=0, method=None):
    """A zip whose last entry's name, flags or method are patched after writing
    (zipfile would not write them)."""
    def make(ctx):
        info = zipfile.ZipInfo(placeholder, date_time=(2024, 1, 1, 0, 0, 0))
        with zipfile.ZipFile(ctx.zip, "w", zipfile.ZIP_STORED) as z:
            z.writestr("model.py", PLAIN)
            z.writestr("metadata", "")
            z.writestr(info, b"data")
        with open(ctx.zip, "rb") as f:
            data = bytearray(f.read())
        if replacement is not None:
            assert data.count(placeholder.encode()) == 2
            data = bytearray(bytes(data).replace(placeholder.encode(), replacement))
        name = placeholder.encode() if replacement is None else replacement
        local = data.rfind(b"PK\x03\x04", 0, data.find(name))
        central = data.rfind(b"PK\x01\x02")
        if method is not None:
            data[local + 8:local + 10] = method.to_bytes(2, "little")
            data[central + 10:central + 12] = method.to_bytes(2, "little")
        if flags:
            for at in (local + 6, central + 8):
                value = int.from_bytes(data[at:at + 2], "little") | flags
                data[at:at + 2] = value.to_bytes(2, "little")
        with open(ctx.zip, "wb") as f:
            f.write(bytes(data))
        return ctx.zip
    return make


def _corrupt_crc(ctx):
    with zipfile.ZipFile(ctx.zip, "w", zipfile.ZIP_STORED) as z:
        z.writestr("model.py", PLAIN)
        z.writestr("metadata", "")
    with open(ctx.zip, "rb") as f:
        data = bytearray(f.read())
    at = data.find(b"class model")
    data[at] ^= 0x20  # 'class' -> 'Class': the bytes no longer match the CRC
    with open(ctx.zip, "wb") as f:
        f.write(bytes(data))
    return ctx.zip


def _bomb(ctx):
    with zipfile.ZipFile(ctx.zip, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("model.py", PLAIN)
        z.writestr("metadata", "")
        z.writestr("SubmissionModel/variables/variables.data-00000-of-00001",
                   bytes(64 * 2**20))
    return ctx.zip


def _many_small_bombs(ctx):
    chunk = bytes(2**20)  # 1 MiB: each entry is below the per-entry ratio check
    with zipfile.ZipFile(ctx.zip, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("model.py", PLAIN)
        z.writestr("metadata", "")
        for i in range(100):
            z.writestr("weights/part%03d.bin" % i, chunk)
    return ctx.zip


def _hundred_thousand(ctx):
    with zipfile.ZipFile(ctx.zip, "w", zipfile.ZIP_STORED) as z:
        z.writestr("model.py", PLAIN)
        z.writestr("metadata", "")
        for i in range(100000):
            z.writestr("tiny/%d" % i, b"")
    return ctx.zip


def _duplicates(ctx):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(ctx.zip, "w") as z:
            z.writestr("model.py", PLAIN)
            z.writestr("metadata", "")
            z.writestr("model.py", "raise SystemExit('the other copy')\n")
    return ctx.zip


def _top_folder(ctx):
    return write_zip(ctx.zip, {"my_submission/model.py": PLAIN, "my_submission/metadata": ""})


def _gzip(ctx):
    with gzip.open(ctx.zip, "wb") as f:
        f.write(b"model.py")
    return ctx.zip


# ---- layout makers

def _junk_saved_model(ctx):
    folder = os.path.join(ctx.build, "junk")
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "weights.npy"), np.zeros(4))
    return folder


def _keras_file_folder(ctx):
    folder = os.path.join(ctx.build, "kerasfile")
    os.makedirs(folder, exist_ok=True)
    shutil.copy(ctx.shared.model_file("custom.keras"), os.path.join(folder, "model.keras"))
    return folder


SAVED_MODEL_PY = '''
import os
import numpy as np
import tensorflow as tf

class model:
    def __init__(self, path):
        self.model = tf.saved_model.load(os.path.join(path, "SubmissionModel"))

    def predict(self, X):
        return np.zeros(len(X), dtype=np.int64)
'''


# ---- models makers

def _keras_file(name):
    def content(ctx):
        with open(ctx.shared.model_file(name), "rb") as f:
            return f.read()
    return content


def _model_folder(name):
    return lambda ctx: ctx.shared.model_file(name)


KERAS_LOAD = '''
import os
import numpy as np
import keras

class model:
    def __init__(self, path):
        self.model = keras.models.load_model(os.path.join(path, "model.keras"))

    def predict(self, X):
        return np.argmax(self.model.predict(X, verbose=0), axis=-1)
'''

TF_KERAS_LOAD = '''
import os
import numpy as np
import tf_keras

class model:
    def __init__(self, path):
        self.model = tf_keras.models.load_model(os.path.join(path, "SubmissionModel"))

    def predict(self, X):
        return np.argmax(self.model(X).numpy(), axis=-1)
'''

TF_KERAS_3_LOAD = '''
import os
import numpy as np
import tensorflow as tf

class model:
    def __init__(self, path):
        self.model = tf.keras.models.load_model(os.path.join(path, "SubmissionModel"))

    def predict(self, X):
        return np.argmax(self.model(X).numpy(), axis=-1)
'''

# ---- code bodies

# The cheat of issue #14: read the labelled --data file by its path, hash each image,
# return the stored label. Unconfined it scores 100 % (test_the_data_cheat_...).
DATA_CHEAT = '''
import hashlib
import numpy as np

def key(image):
    return hashlib.sha1(np.round(np.asarray(image)).astype(np.uint8).tobytes()).hexdigest()

class model:
    def __init__(self, path):
        data = np.load("DATA")
        self.answers = {key(x): int(y) for x, y in zip(data["images"], data["labels"])}

    def predict(self, X):
        return np.array([self.answers.get(key(x), 0) for x in np.asarray(X)], dtype=np.int64)
'''

SLEEPER = "[sys.executable, '-S', '-c', 'import time; time.sleep(10 ** 6)', 'MARKER']"

CASES = [
    # archives: nothing here starts the child
    Case("not-a-zip", "archive", "uploaded a text file named .zip",
         _raw(b"this is my model, trust me\n"), 1, "archive", "fail",
         ("is not a zip archive", "zip -r"), child=False),
    Case("zero-bytes", "archive", "the download stopped before the first byte (0-byte file)",
         _raw(b""), 1, "archive", "fail", ("is empty (0 bytes)", "re-create the zip"),
         child=False),
    Case("gzip-renamed", "archive", "gzipped the files and named the result .zip",
         _gzip, 1, "archive", "fail", ("gzip", "only accepts .zip"), child=False),
    Case("truncated", "archive", "the upload or copy stopped half-way (truncated zip)",
         _raw(_good_zip_bytes), 1, "archive", "fail",
         ("truncated", "re-create the zip"), child=False),
    Case("bad-crc", "archive", "a zip whose data does not match its checksum (corrupt copy)",
         _corrupt_crc, 1, "archive", "fail", ("corrupt", "re-create the zip"), child=False),
    Case("empty-zip", "archive", "zipped an empty folder (no entries)",
         _entries(base=False), 1, "archive", "fail", ("has no files",), child=False),
    Case("only-macos-metadata", "archive", "a zip with nothing but __MACOSX/ and .DS_Store",
         _entries(("__MACOSX/._model.py", b"x"), (".DS_Store", b"x"), base=False), 1,
         "archive", "fail", ("has no files except macOS metadata",), child=False),
    Case("dot-dot", "archive", "an entry ../../../sentinel/pwned.txt (path traversal)",
         _entries((_info("../../../sentinel/pwned.txt"), b"pwned")), 1, "archive", "fail",
         ("'..' component", "relative"), child=False),
    Case("absolute-path", "archive", "an entry with an absolute path into the sentinel tree",
         _entries((_info("SENTINEL/pwned.txt"), b"pwned")), 1, "archive", "fail",
         ("absolute path", "relative"), child=False),
    Case("drive-letter", "archive", "an entry named C:/Users/me/model.py (made on Windows)",
         _entries((_info("C:/Users/me/model.py"), b"x")), 1, "archive", "fail",
         ("drive letter",), child=False),
    Case("backslashes", "archive", "entries with backslash separators (PowerShell "
         "Compress-Archive)",
         _entries(("SubmissionModel\\saved_model.pb", b"x")), 1, "archive", "fail",
         ("backslashes", "7-Zip"), child=False),
    Case("symlink", "archive", "a symbolic link to the sentinel file, then a write through it",
         _entries((_info("SubmissionModel", mode=stat.S_IFLNK | 0o777), "SENTINEL"),
                  (_info("SubmissionModel/existing.txt"), b"pwned")), 1, "archive", "fail",
         ("symbolic link", "links are refused"), child=False),
    Case("fifo", "archive", "an entry that is a named pipe (FIFO)",
         _entries((_info("pipe", mode=stat.S_IFIFO | 0o644), b"")), 1, "archive", "fail",
         ("not a regular file",), child=False),
    Case("zip-bomb", "archive", "a 64 MiB file of zeros packed into a few KB (zip bomb)",
         _bomb, 1, "archive", "fail", ("zip bomb", "ratio"), child=False),
    Case("zip-bomb-many", "archive", "100 entries of 1 MiB zeros each, 100 KB packed (each entry "
         "below the per-entry check)", _many_small_bombs, 1, "archive", "fail",
         ("zip bomb", "102 files"), child=False),
    Case("100k-files", "archive", "100 000 tiny files", _hundred_thousand, 1, "archive", "fail",
         ("100002 entries", "more than the limit of 10000"), child=False),
    Case("duplicate-names", "archive", "model.py twice in the zip (zip -u after an edit)",
         _duplicates, 1, "archive", "fail", ("appears twice", "duplicates"), child=False),
    Case("file-and-folder", "archive", "'model.py' both a file and a folder",
         _entries(("model.py/x.py", b"x")), 1, "archive", "fail",
         ("is a file in the zip but",), child=False),
    Case("name-not-utf8", "archive", "a name with a Latin-1 byte, not marked UTF-8",
         _patched("caf_.py", b"caf\xe9.py"), 1, "archive", "fail",
         ("not marked UTF-8", "ASCII"), child=False),
    Case("name-bad-utf8", "archive", "a name marked UTF-8 that is not valid UTF-8",
         _patched("caf_.py", b"caf\xe9.py", flags=0x800), 1, "archive", "fail",
         ("marked UTF-8 but is not valid UTF-8",), child=False),
    Case("encrypted", "archive", "a password-protected entry",
         _patched("secret.bin", None, flags=0x1), 1, "archive", "fail",
         ("password-protected",), child=False),
    Case("deflate64", "archive", "an entry compressed with Deflate64 (Windows Explorer, big files)",
         _patched("big.bin", None, method=9), 1, "archive", "fail", ("Deflate64",),
         child=False),
    Case("top-folder", "archive", "zipped the folder instead of its contents (one top folder)",
         _top_folder, 1, "layout: top folder", "fail", ("my_submission/", "zip the contents")),

    # layout
    Case("no-model-py", "layout", "forgot model.py",
         lambda ctx: write_zip(ctx.zip, {"metadata": "", "readme.txt": "x"}), 1,
         "layout: required files", "fail", ("model.py is missing",), child=False),
    Case("model-py-case", "layout", "named the file Model.py",
         lambda ctx: write_zip(ctx.zip, {"Model.py": PLAIN, "metadata": ""}), 1,
         "layout: required files", "fail", ("found Model.py instead", "rename"), child=False),
    Case("wrong-class-name", "layout", "class Model instead of class model",
         _submission(PLAIN.replace("class model", "class Model")), 1, "model.py: class",
         "fail", ("found class Model", "lower-case"), child=False),
    Case("wrong-constructor", "layout", "def __init__(self) where the platform calls model(path)",
         _submission(PLAIN.replace("def __init__(self, path):\n        self.path = path",
                                   "def __init__(self):\n        pass")), 1,
         "model.py: constructor", "fail", ("__init__(self, path)", "model(path)")),
    Case("no-metadata", "layout", "forgot the metadata file",
         _submission(PLAIN, metadata=False), 1, "layout: required files", "fail",
         ("metadata is missing", "empty file named metadata")),
    Case("no-saved-model", "layout", "model.py loads SubmissionModel/, which is not in the zip",
         _submission(SAVED_MODEL_PY), 1, "loads", "fail", ("SubmissionModel",)),
    Case("not-a-saved-model", "layout", "SubmissionModel/ holds a .npy, not a SavedModel",
         _submission(SAVED_MODEL_PY, saved_models={"SubmissionModel": _junk_saved_model}), 1,
         "layout: models", "fail", ("not a TensorFlow SavedModel", "weights.npy")),
    Case("keras-not-saved-model", "layout", "SubmissionModel/ holds model.keras where a "
         "SavedModel is expected",
         _submission(SAVED_MODEL_PY, saved_models={"SubmissionModel": _keras_file_folder}), 1,
         "layout: models", "fail", ("a Keras model file, not a SavedModel", "leafsub export")),

    # code
    Case("syntax-error", "code", "a syntax error in model.py",
         _submission(PLAIN.replace("return np.zeros", "return np.zeros(")), 1,
         "model.py: syntax", "fail", ("line", "py_compile"), child=False),
    Case("not-utf8-source", "code", "model.py saved as Latin-1 with an accented comment",
         lambda ctx: write_zip(ctx.zip, {"model.py": b"# caf\xe9\n" + PLAIN.encode(),
                                         "metadata": ""}), 1,
         "model.py: syntax", "fail", ("not valid UTF-8", "save it as UTF-8"), child=False),
    Case("missing-module", "code", "imports a module the platform lacks (not in the zip)",
         _submission("import leafsub_hostile_missing_module\n" + PLAIN), 1, "loads", "fail",
         ("ModuleNotFoundError", "leafsub_hostile_missing_module", "standard library")),
    Case("init-raises", "code", "__init__ raises an exception",
         _submission(_init_body("raise ValueError('weights not found in ' + path)")), 1,
         "loads", "fail", ("raised ValueError", "weights not found")),
    Case("predict-raises", "code", "predict raises an exception",
         _submission(_predict_body("raise RuntimeError('shape mismatch')")), 1, "predicts",
         "fail", ("raised RuntimeError", "shape mismatch")),
    Case("predict-hangs", "code", "predict never returns",
         _submission(_predict_body("time.sleep(10 ** 6)", head="import time")), 1,
         "predicts", "fail", ("time limit of %d s" % HANG_TIME_LIMIT, "never returns"),
         time_limit=HANG_TIME_LIMIT),
    Case("predict-eats-memory", "code", "predict allocates memory without bound "
         "(--memory-limit 1500)",
         _submission(_predict_body("""
             hoard = []
             while True:
                 hoard.append(bytearray(b"x") * (100 * 2 ** 20))
         """)), 1, "predicts", "fail", ("memory limit", "1500 MB"),
         args=("--memory-limit", "1500")),
    Case("import-sys-exit", "code", "model.py calls sys.exit() when imported",
         _submission("import sys\nsys.exit(0)\n" + PLAIN), 1, "loads", "fail",
         ("called sys.exit(0)", "remove the call")),
    Case("init-sys-exit", "code", "__init__ calls sys.exit(3)",
         _submission(_init_body("sys.exit(3)", head="import sys")), 1, "loads", "fail",
         ("called sys.exit(3)", "remove the call")),
    Case("init-os-exit", "code", "__init__ calls os._exit(3)",
         _submission(_init_body("os._exit(3)", head="import os")), 1, "loads", "fail",
         ("exited with code 3", "os._exit")),
    Case("predict-sys-exit", "code", "predict calls sys.exit(1)",
         _submission(_predict_body("sys.exit(1)", head="import sys")), 1, "predicts", "fail",
         ("called sys.exit(1)", "remove the call")),
    Case("predict-os-exit", "code", "predict calls os._exit(0)",
         _submission(_predict_body("os._exit(0)", head="import os")), 1, "predicts", "fail",
         ("exited with code 0", "os._exit")),
    Case("prints-100mb", "code", "predict prints 100 MB",
         _submission(_predict_body("""
             line = "x" * 1023 + "\\n"
             for _ in range(100 * 1024):
                 sys.stdout.write(line)
         """, head="import sys")), 1, "predicts", "fail", ("printing more than 64 MB",)),
    Case("prints-2mb", "code", "predict prints 2 MB (and is otherwise fine)",
         _submission(_predict_body("""
             if not getattr(self, "printed", False):
                 self.printed = True
                 print("y" * (2 * 2 ** 20))
         """)), 0, "output volume",
         "warn", ("printed", "print less")),
    Case("writes-outside", "code", "predict writes SENTINEL/pwned.txt (outside its folder)",
         _submission(_predict_body("open('SENTINEL/pwned.txt', 'w').write('pwned')")), 1,
         "predicts", "fail", ("PermissionError", "write outside its own folder"),
         requires=("landlock",)),
    Case("modifies-outside", "code", "__init__ appends to an existing file outside its folder, "
         "then deletes it", _submission(_init_body("""
             try:
                 open('SENTINEL/existing.txt', 'a').write('pwned')
             finally:
                 os.remove('SENTINEL/existing.txt')
         """, head="import os")), 1, "loads", "fail",
         ("PermissionError", "write outside its own folder"), requires=("landlock",)),
    Case("network-connect", "code", "predict connects to a server (a loopback listener here)",
         _submission(_predict_body("socket.create_connection(('127.0.0.1', PORT), timeout=5)",
                                   head="import socket")), 1, "predicts", "fail",
         ("127.0.0.1:", "no network"), loopback=True),
    Case("network-subprocess", "code", "predict connects from a child process (past any "
         "Python-level guard: only the network namespace stops it)",
         _submission(_predict_body("""
             code = "import socket; socket.create_connection(('127.0.0.1', PORT), timeout=5)"
             proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
             if proc.returncode:
                 raise RuntimeError(proc.stderr.strip().splitlines()[-1])
         """, head="import subprocess, sys")), 1, "predicts", "fail",
         ("network is unreachable", "no network"), loopback=True, requires=("netns",)),
    Case("network-download", "code", "model.py downloads its weights when imported (urllib)",
         _submission("import urllib.request\nurllib.request.urlopen("
                     "'http://127.0.0.1:PORT/weights.h5', timeout=5).read()\n" + PLAIN), 1,
         "loads", "fail", ("urlopen", "no network"), loopback=True),
    Case("network-dns", "code", "__init__ looks up a host name",
         _submission(_init_body("socket.getaddrinfo('weights.example.invalid', 443)",
                                head="import socket")), 1, "loads", "fail",
         ("name resolution", "no network")),
    Case("network-swallowed", "code", "__init__ tries a server, catches the error and goes on "
         "(answers normally)", _submission(_init_body("""
             try:
                 socket.create_connection(('127.0.0.1', PORT), timeout=5)
             except OSError:
                 pass
         """, head="import socket")), 0, "loads", "pass", ("loaded",), loopback=True),
    Case("one-hot", "code", "predict returns one-hot vectors",
         _submission(_predict_body("return np.eye(8, dtype=np.float32)[np.arange(len(X)) % 8]")),
         1, "output: shape", "fail", ("one-hot", "np.argmax")),
    Case("floats", "code", "predict returns float scores, one per image",
         _submission(_predict_body("return np.linspace(0, 7.5, len(X))")), 1, "output: type",
         "fail", ("float64", "argmax")),
    Case("strings", "code", "predict returns class names",
         _submission(_predict_body("return np.array(['Species1'] * len(X))")), 1,
         "output: type", "fail", ("strings", "not its name")),
    Case("wrong-length", "code", "predict returns one label too few",
         _submission(_predict_body("return np.zeros(len(X) - 1, dtype=np.int64)")), 1,
         "output: shape", "fail", ("one prediction per image",)),
    Case("nan", "code", "predict returns NaN",
         _submission(_predict_body("return np.full(len(X), np.nan)")), 1, "output: no NaN",
         "fail", ("NaN",)),
    Case("not-deterministic", "code", "predict answers differently each call",
         _submission(_predict_body("""
             self.calls = getattr(self, "calls", 0) + 1
             return (np.arange(len(X)) + self.calls) % 8
         """)), 1, "deterministic", "fail", ("differ", "same answer")),
    Case("fork-bomb", "code", "predict starts 100 detached processes (setsid) that sleep forever",
         _submission(_predict_body("""
             for _ in range(100):
                 subprocess.Popen(SLEEPER, start_new_session=True)
             time.sleep(30)
         """.replace("SLEEPER", SLEEPER), head="import subprocess, sys, time")), 1,
         "predicts", "fail", ("stopped for starting", "at most 64")),
    Case("daemon-escape", "code", "predict double-forks a process that leaves the session and "
         "sleeps forever, then answers normally",
         _submission(_predict_body("""
             if not getattr(self, "forked", False):
                 self.forked = True
                 pid = os.fork()
                 if pid == 0:
                     os.setsid()
                     if os.fork() == 0:
                         os.execv(sys.executable, SLEEPER)
                     os._exit(0)
                 os.waitpid(pid, 0)
         """.replace("SLEEPER", SLEEPER), head="import os, sys")), 0, "predicts", "pass",
         ("24 images",), requires=("pidns",)),
    Case("kill-evaluator", "code", "predict sends SIGKILL to its parent processes (the "
         "evaluator), ignoring errors, then answers normally",
         _submission(_predict_body("""
             def ppid(pid):
                 with open("/proc/%s/stat" % pid) as f:
                     return int(f.read().rsplit(")", 1)[1].split()[1])
             target = ppid("self")
             for _ in range(2):
                 try:
                     os.kill(target, signal.SIGKILL)
                 except OSError:
                     pass
                 try:
                     target = ppid(target)
                 except (OSError, ValueError, IndexError):
                     break
         """, head="import os, signal")), 0, "predicts", "pass", ("24 images",),
         requires=("pidns",)),

    # reads: the child sees only what it needs (read confinement)
    Case("read-data-labels", "code", "__init__ opens the labelled --data file by its path and "
         "predict returns the stored labels (hashing each image)",
         _submission(DATA_CHEAT), 1, "loads", "fail",
         ("tried to read", "test.npz", "labelled data", "outside the zip"),
         requires=("landlock",)),
    Case("read-data-swallowed", "code", "__init__ tries the --data file, catches the error and "
         "answers zeros", _submission(_init_body("""
             try:
                 self.answers = np.load("DATA")["labels"]
             except OSError:
                 self.answers = None
         """)), 1, "files", "fail", ("test.npz", "labelled data", "outside the zip"),
         requires=("landlock",)),
    Case("absolute-path-read", "code", "__init__ reads the class names from an absolute path of the "
         "student's machine (beside the notebook, not in the zip)",
         _submission(_init_body("""
             with open("SENTINEL/notebook/class_names.txt") as f:
                 self.names = f.read().split()
         """)), 1, "loads", "fail",
         ("tried to read", "class_names.txt", "platform will not have this file"),
         requires=("landlock",)),
    Case("ssh-key", "code", "predict reads ~/.ssh/id_rsa of the user (a planted key)",
         _submission(_predict_body("""
             with open(os.path.join("SENTINEL/home", ".ssh", "id_rsa")) as f:
                 raise RuntimeError("got it: " + f.read())
         """, head="import os")), 1, "predicts", "fail",
         ("tried to read", ".ssh/id_rsa", "outside the zip"), requires=("landlock",)),
    Case("proc-parent", "code", "predict walks up /proc/<parent>/environ and cmdline (the "
         "evaluator's tokens and its --data path)",
         _submission(_predict_body("""
             def parent(pid):
                 with open("/proc/%s/stat" % pid) as f:
                     return int(f.read().rsplit(")", 1)[1].split()[1])
             pid, found = parent("self"), []
             for _ in range(3):
                 for name in ("environ", "cmdline"):
                     with open("/proc/%d/%s" % (pid, name), "rb") as f:
                         found.append(f.read().decode("utf-8", "replace"))
                 pid = parent(pid)
             raise RuntimeError("got it: " + " ".join(found))
         """)), 1, "predicts", "fail", ("tried to read", "/environ", "outside the zip"),
         requires=("landlock",)),
    Case("symlink-scratch", "code", "predict links ~/.ssh/id_rsa into its own folder (a "
         "symbolic link it may create there) and reads the link",
         _submission(_predict_body("""
             link = os.path.join(os.getcwd(), "notes.txt")
             if not os.path.islink(link):
                 os.symlink("SENTINEL/home/.ssh/id_rsa", link)
             with open(link) as f:
                 raise RuntimeError("got it: " + f.read())
         """, head="import os")), 1, "predicts", "fail",
         ("notes.txt (a link to", "id_rsa", "outside the zip"), requires=("landlock",)),
    Case("find-data-path", "code", "predict looks for the --data path in what it can see of "
         "itself: its environment, argv, the request file, its open descriptors",
         _submission(_predict_body("""
             found = [repr(sorted(os.environ.items())), repr(sys.argv)]
             for arg in sys.argv[1:]:
                 if os.path.isfile(arg):
                     with open(arg) as f:
                         found.append(f.read())
             for fd in os.listdir("/proc/self/fd"):
                 try:
                     found.append(os.readlink("/proc/self/fd/" + fd))
                 except OSError:
                     pass
             raise RuntimeError("found: " + " ".join(found))
         """, head="import os, sys")), 1, "predicts", "fail", ("found:", "request.json"),
         absent=("DATA", "test.npz"), requires=("landlock",)),
    Case("threads-eat-memory", "code", "predict starts 8 threads that allocate without bound "
         "(--memory-limit 1500)",
         _submission(_predict_body("""
             hoard = []
             def eat():
                 while True:
                     hoard.append(bytearray(b"x") * (50 * 2 ** 20))
             for _ in range(8):
                 threading.Thread(target=eat, daemon=True).start()
             time.sleep(60)
         """, head="import threading, time")), 1, "predicts", "fail",
         ("memory limit", "1500 MB"), args=("--memory-limit", "1500")),
    Case("huge-file", "code", "predict writes a file without end into its folder (the "
         "scratch space)",
         _submission(_predict_body("""
             chunk = b"\\0" * (64 * 2 ** 20)
             with open("scratch.bin", "wb") as f:
                 f.seek(2 * 2 ** 30 - 2 * len(chunk))   # sparse up to near the limit
                 while True:
                     f.write(chunk)
         """)), 1, "predicts", "fail", ("File too large", "limit of 2 GB")),

    # models
    Case("custom-layer", "models", "a .keras model with a custom layer, loaded without "
         "custom_objects", _submission(KERAS_LOAD, extra={"model.keras": _keras_file(
             "custom.keras")}), 1, "loads", "fail",
         ("Could not locate class 'Scale'", "custom")),
    Case("lambda-keras-file", "models", "a Keras 3 .keras model with a Lambda calling "
         "mylib.double (mylib not in the zip)",
         _submission(KERAS_LOAD, extra={"model.keras": _keras_file("lambda.keras")}), 1,
         "loads", "fail", ("could not be deserialized", "custom")),
    Case("lambda-tf-keras-saved-model", "models", "a tf_keras SavedModel with a Lambda calling "
         "mylib.double (mylib not in the zip), loaded with tf_keras",
         _submission(TF_KERAS_LOAD, saved_models={"SubmissionModel": _model_folder(
             "lambda_sm")}), 0, "loads", "pass", ("loaded",)),
    Case("custom-optimizer", "models", "a .keras model saved with the state of a custom "
         "optimizer (class MyAdam), loaded with compile=True",
         _submission(KERAS_LOAD, extra={"model.keras": _keras_file("myadam.keras")}), 1,
         "loads", "fail", ("Could not locate class 'MyAdam'", "custom")),
    Case("keras3-load-saved-model", "models", "tf.keras.models.load_model on a SavedModel "
         "(with optimizer slots) under Keras 3",
         _submission(TF_KERAS_3_LOAD, saved_models={"SubmissionModel": _model_folder(
             "opt_sm")}), 1, "loads", "fail",
         ("File format not supported", "tf.saved_model.load")),

    # time series: the same protocol, float32 [batch, 36, 6] in, 12 classes (an2dl-2022-ts)
    Case("series-custom-loss", "models", "a time-series model (Conv1D + LSTM) saved with "
         "model.save and the team's own focal loss, loaded with keras.models.load_model "
         "(profile an2dl-2022-ts)",
         _submission(KERAS_LOAD, extra={"model.keras": _keras_file("series_loss.keras")}), 1,
         "loads", "fail", ("custom object 'focal_loss'", "custom_objects", "leafsub export"),
         args=SERIES, series=True),
    Case("series-scores", "code", "a time-series predict() that returns the [batch, 12] "
         "softmax scores instead of the class indices (profile an2dl-2022-ts)",
         _submission(_predict_body("return np.full((len(X), 12), 1 / 12, dtype=np.float32)")),
         1, "output: shape", "fail", ("[24, 12]", "integers in 0..11", "np.argmax"),
         args=SERIES, series=True),
    Case("series-fixed-batch", "code", "a time-series predict() that flattens with a hard-coded "
         "batch of 32 (tf.reshape(X, (32, 216))) (profile an2dl-2022-ts)",
         _submission(_predict_body("tf.reshape(X, (32, 36 * 6))", head="import tensorflow as tf")),
         1, "predicts", "fail", ("predict() raised", "batch of 24"), args=SERIES, series=True),
]

# ---- issue 24: what a submission touched is not trusted (the "untrusted" group of cases)

# What a forging submission needs: its predict command (found in the harness's frame: the
# path of the predictions file), the reply descriptor (the harness's argv), a reply.
_COMMAND = '''
def _command():
    frame = sys._getframe(1)
    while frame is not None and "command" not in frame.f_locals:
        frame = frame.f_back
    return frame.f_locals["command"]

def _forge(reply):
    os.write(int(sys.argv[2]), (json.dumps(reply) + "\\n").encode())

def _forged_ok(n):
    _forge({"ok": True, "n": n, "predict_s": 0.0, "types": ["numpy.ndarray"], "shape": [n],
            "dtype": "int64", "mutated_batches": 0})

def _huge_header(out):
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (100000000000,), }"
    header = header + " " * (117 - len(header)) + "\\n"
    with open(out, "wb") as f:
        f.write(b"\\x93NUMPY\\x01\\x00" + len(header).to_bytes(2, "little") + header.encode()
                + b"\\0" * 64)
'''


def _forge_artefact(make_file):
    """predict makes its own 'predictions file' (the line ``make_file``) and forges the reply."""
    return _submission(_predict_body('''
        out = _command()["out"]
        %s
        _forged_ok(len(X))
        time.sleep(30)
    ''' % make_file, head="import json, os, sys, time\n" + _COMMAND))


_PRIVILEGES = r'''
import ctypes, errno, fcntl, os, socket, struct

def _try(name, fn, out):
    try:
        fn()
        out.append(name + " ALLOWED")
    except OSError as e:
        out.append("%s refused (%s)" % (name, errno.errorcode.get(e.errno, e.errno)))

def _klog():
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(4096)
    if libc.klogctl(3, buf, 4096) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

def _immutable():
    with open("locked.txt", "w") as f:
        f.write("x")
    fd = os.open("locked.txt", os.O_RDONLY)
    try:
        fcntl.ioctl(fd, 0x40086602, struct.pack("i", 0x10))   # FS_IOC_SETFLAGS, IMMUTABLE
        fcntl.ioctl(fd, 0x40086602, struct.pack("i", 0))      # undone at once if it worked
    finally:
        os.close(fd)
'''

UNTRUSTED_CASES = [
    Case("plant-parent-links", "untrusted", "predict plants symbolic links at the names where "
         "leafsub's own process writes next (the index files of the harness variants, the "
         "probe images), pointing outside and at a .pth in site-packages",
         _submission(_predict_body('''
             work = os.path.dirname(os.path.dirname(_command()["out"]))
             site = os.path.join(os.path.dirname(os.__file__), "site-packages", "pwn.pth")
             for name in ("v-again.npy.indices.npy", "v-4.npy.indices.npy", "probe-images.npy"):
                 try:
                     os.symlink(os.path.join("SENTINEL", "pwned-" + name), os.path.join(
                         work, name))
                 except OSError:
                     pass
             try:
                 os.symlink(site, os.path.join(work, "v-5.npy.indices.npy"))
             except OSError:
                 pass
         ''', head="import json, os, sys\n" + _COMMAND)), 0, "deterministic", "pass",
         ("twice",), requires=("landlock",)),
    Case("forged-output-link", "untrusted", "predict replaces its predictions file by a "
         "symbolic link to one of the user's files and forges the harness's reply",
         _forge_artefact("os.symlink(os.path.join('SENTINEL', 'existing.txt'), out)"),
         1, "predicts", "fail", ("symbolic link", "never writes")),
    Case("forged-output-fifo", "untrusted", "predict makes its predictions file a FIFO (an "
         "open that never returns) and forges the reply",
         _forge_artefact("os.mkfifo(out)"), 1, "predicts", "fail", ("a FIFO", "never writes"),
         time_limit=60),
    Case("forged-output-pickle", "untrusted", "predict saves a pickled object array as its "
         "predictions and forges the reply",
         _forge_artefact("np.save(out, np.array([{'x': 1}] * len(X), dtype=object), "
                         "allow_pickle=True)"), 1, "predicts", "fail",
         ("Python objects", "never unpickles")),
    Case("forged-output-huge-header", "untrusted", "predict writes a .npy whose header declares "
         "10^11 elements (800 GB) and forges the reply",
         _forge_artefact("_huge_header(out)"), 1, "predicts", "fail",
         ("declares 100000000000 elements",)),
    Case("forged-reply-nested", "untrusted", "__init__ writes 200,000 nested brackets to the "
         "harness's reply channel",
         _submission(_init_body('''
             os.write(int(sys.argv[2]), b"[" * 200000 + b"\\n")
             time.sleep(30)
         ''', head="import os, sys, time")), 1, "loads", "fail",
         ("nested deeper than", "reply channel")),
    Case("forged-reply-types", "untrusted", "predict sends progress given as strings on the "
         "harness's reply channel",
         _submission(_predict_body('''
             _forge({"progress": "a lot", "total": "all"})
         ''', head="import json, os, sys\n" + _COMMAND)), 1, "predicts", "fail",
         ("field 'progress' is a str",)),
    Case("forged-reply-missing", "untrusted", "__init__ sends a reply without its fields "
         "({\"ok\": true}) before the harness's",
         _submission(_init_body('''
             os.write(int(sys.argv[2]), b'{"ok": true}\\n')
         ''', head="import os, sys")), 1, "loads", "fail", ("without its 'load_s' field",)),
    Case("root-privileges", "untrusted", "__init__ tries what only privilege allows: a device "
         "node, the host name, the kernel log, an undeletable (immutable) file",
         _submission(_init_body('''
             out = []
             _try("mknod", lambda: os.mknod("dev0", 0o20600, os.makedev(1, 3)), out)
             _try("sethostname", lambda: socket.sethostname(socket.gethostname()), out)
             _try("klogctl", _klog, out)
             _try("immutable", _immutable, out)
             raise RuntimeError("; ".join(out))
         ''', head=_PRIVILEGES)), 1, "loads", "fail",
         ("mknod refused (EPERM)", "sethostname refused (EPERM)", "klogctl refused (EPERM)",
          "immutable refused"), absent=("ALLOWED",)),
    Case("locks-its-folder", "untrusted", "__init__ makes folders in its own folder that its "
         "owner cannot enter or change (mode 000), to leave the work dir behind",
         _submission(_init_body('''
             for name in ("locked", os.path.join(os.environ["HOME"], "locked")):
                 os.makedirs(os.path.join(name, "inner"))
                 with open(os.path.join(name, "inner", "kept.bin"), "wb") as f:
                     f.write(b"x" * 4096)
                 os.chmod(os.path.join(name, "inner"), 0)
                 os.chmod(name, 0)
         ''', head="import os")), 0, "predicts", "pass", ("images",)),
    Case("threads-4000", "untrusted", "predict starts 4,000 threads that sleep (a 64-process "
         "limit that counts processes only lets them all run)",
         _submission(_predict_body('''
             for _ in range(4000):
                 threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
             time.sleep(60)
         ''', head="import threading, time")), 1, "predicts", "fail",
         ("threads", "at most 1024")),
    Case("memfd-hoard", "untrusted", "predict fills memfd files (memory that no resident-set "
         "count shows) until stopped (--memory-limit 1200)",
         _submission(_predict_body('''
             chunk = b"x" * (32 * 2 ** 20)
             fds = []
             while True:
                 fd = os.memfd_create("hoard")
                 fds.append(fd)
                 for _ in range(4):
                     os.write(fd, chunk)
         ''', head="import os")), 1, "predicts", "fail",
         ("memory limit", "memfd"), args=("--memory-limit", "1200")),
    Case("pipe-hoard", "untrusted", "predict fills pipe buffers (kernel memory that no "
         "resident-set count shows), 1 MB each, until it can open no more",
         _submission(_predict_body('''
             held, pipes, refused = 0, [], None
             try:
                 while True:
                     r, w = os.pipe()
                     pipes.append((r, w))
                     try:
                         fcntl.fcntl(w, 1031, 1 << 20)   # F_SETPIPE_SZ
                     except OSError as e:
                         refused = e.strerror
                     os.set_blocking(w, False)
                     try:
                         while True:
                             held += os.write(w, b"x" * 65536)
                     except BlockingIOError:
                         pass
             except OSError as e:
                 raise RuntimeError("held %d MB in %d pipes, then %s (growing a pipe: %s)"
                                    % (held >> 20, len(pipes), e.strerror, refused))
         ''', head="import fcntl, os")), 1, "predicts", "fail",
         ("Too many open files", "growing a pipe: Operation not permitted")),
    Case("disk-budget", "untrusted", "predict fills its folder with 1.5 GB files (each under "
         "the 2 GB per-file cap) until stopped",
         _submission(_predict_body('''
             i = 0
             while True:
                 fd = os.open("fill%d.bin" % i, os.O_WRONLY | os.O_CREAT, 0o600)
                 os.posix_fallocate(fd, 0, 1536 * 2 ** 20)
                 os.close(fd)
                 i += 1
                 time.sleep(0.2)
         ''', head="import os, time")), 1, "predicts", "fail", ("disk budget",)),
    Case("huge-model-py", "untrusted", "model.py holds one 3 MB literal (the parent parses it "
         "before anything runs)",
         _submission(PLAIN + "\nDATA_BLOB = [%s]\n" % ", ".join(
             str(i * 2654435761 % 10 ** 9) for i in range(330000))), 1,
         "model.py: syntax", "fail", ("more than the 2 MB",), child=False),
    Case("complex-outputs", "untrusted", "predict returns complex numbers",
         _submission(_predict_body("return np.zeros(len(X), dtype=np.complex128)")), 1,
         "output: type", "fail", ("complex numbers",)),
    Case("object-outputs", "untrusted", "predict returns an array of Python objects (None)",
         _submission(_predict_body("return np.array([None] * len(X), dtype=object)")), 1,
         "output: shape", "fail", ("Python objects", "dtype=object")),
    Case("masked-outputs", "untrusted", "predict returns a masked array (a subclass of ndarray "
         "whose masked values np.asarray would show)",
         _submission(_predict_body("return np.ma.masked_array(np.zeros(len(X), dtype=np.int64), "
                                   "mask=True)")), 1, "output: shape", "fail",
         ("subclass of numpy.ndarray", "MaskedArray")),
    Case("ansi-escapes", "untrusted", "predict raises an error whose message holds ANSI escape "
         "sequences (a fake green PASS, a window title)",
         _submission(_predict_body(r'''
             raise RuntimeError("\x1b[2K\r\x1b[32mPASS  everything\x1b[0m \x1b]0;pwned\x07")
         ''')), 1, "predicts", "fail", ("\\x1b[32mPASS",),
         stdout_absent=("\x1b[32mPASS", "\x1b]0;", "\x1b[2K")),
    Case("replace-numpy-save", "untrusted", "model.py replaces numpy.save (and json.dumps) in "
         "its process so that its string outputs would be saved as integers",
         _submission(_predict_body('return np.array(["Species1"] * len(X))', head='''
             import json, numpy
             _save = numpy.save
             def save(file, arr, *a, **k):
                 return _save(file, numpy.zeros(len(arr), dtype=numpy.int64), *a, **k)
             numpy.save = save
             json.dumps = lambda *a, **k: '{"ok": true}'
         ''')), 1, "output: type", "fail", ("returned strings",)),
]
CASES += UNTRUSTED_CASES

NAMES = [c.name for c in CASES]
assert len(set(NAMES)) == len(NAMES), "case names must be unique"


# --------------------------------------------------------------------------- the models

MODELS_SCRIPT = '''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import keras
import tf_keras
sys.path.insert(0, ".")
import mylib

@keras.saving.register_keras_serializable(package="mine")
class Scale(keras.layers.Layer):
    def call(self, x):
        return x * 2.0

def head(x):
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Dense(8, activation="softmax")(x)

inputs = keras.Input((96, 96, 3))
keras.Model(inputs, head(Scale()(inputs))).save("custom.keras")
inputs = keras.Input((96, 96, 3))
keras.Model(inputs, head(keras.layers.Lambda(mylib.double)(inputs))).save("lambda.keras")

class MyAdam(keras.optimizers.Adam):
    pass

inputs = keras.Input((96, 96, 3))
m = keras.Model(inputs, head(inputs))
m.compile(optimizer=MyAdam(), loss="sparse_categorical_crossentropy")
m.fit(np.zeros((4, 96, 96, 3)), np.zeros(4), verbose=0)
m.save("myadam.keras")

m = tf_keras.Sequential([tf_keras.Input((96, 96, 3)), tf_keras.layers.Lambda(mylib.double),
                         tf_keras.layers.GlobalAveragePooling2D(),
                         tf_keras.layers.Dense(8, activation="softmax")])
m.save("lambda_sm", save_format="tf")
m = tf_keras.Sequential([tf_keras.Input((96, 96, 3)), tf_keras.layers.GlobalAveragePooling2D(),
                         tf_keras.layers.Dense(8, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
m.fit(np.zeros((4, 96, 96, 3)), np.zeros(4), verbose=0)
m.save("opt_sm", save_format="tf")

def focal_loss(y_true, y_pred):
    return keras.losses.categorical_crossentropy(y_true, y_pred) * 2.0

inputs = keras.Input((36, 6))
x = keras.layers.Conv1D(8, 3, activation="relu")(inputs)
x = keras.layers.LSTM(8)(x)
m = keras.Model(inputs, keras.layers.Dense(12, activation="softmax")(x))
m.compile(optimizer="adam", loss=focal_loss)
m.save("series_loss.keras")
'''


class Shared:
    """The data, the model files (made once, in a subprocess), the per-case folders."""

    def __init__(self, root):
        self.root = root
        images, labels = color_data(per_class=3, seed=5)
        self.data = os.path.join(root, "test.npz")
        np.savez(self.data, images=images, labels=labels)
        # 24 series of 36 steps x 6 features, 2 per class of the an2dl-2022-ts profile
        rng = np.random.default_rng(5)
        self.series = os.path.join(root, "series.npz")
        np.savez(self.series, x=rng.normal(0, 1, (24, 36, 6)).astype(np.float32),
                 y=np.repeat(np.arange(12), 2))
        self.models_dir = os.path.join(root, "models")
        self._lock = threading.Lock()
        self._models = None

    def model_file(self, name):
        with self._lock:
            if self._models is None:
                os.makedirs(self.models_dir, exist_ok=True)
                with open(os.path.join(self.models_dir, "mylib.py"), "w") as f:
                    f.write("def double(x):\n    return x * 2.0\n")
                proc = subprocess.run([sys.executable, "-c", MODELS_SCRIPT], cwd=self.models_dir,
                                      capture_output=True, text=True, timeout=300,
                                      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
                assert proc.returncode == 0, proc.stderr[-3000:]
                os.remove(os.path.join(self.models_dir, "mylib.py"))
                self._models = True
        return os.path.join(self.models_dir, name)


# --------------------------------------------------------------------------- running

@dataclasses.dataclass
class Outcome:
    case: Case
    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    result: dict
    leftover: list
    sentinel_before: dict
    sentinel_after: dict
    stray: list            # unexpected entries in the case's folder, TMPDIR, cwd
    connections: int       # connections the loopback listener accepted
    ctx: Ctx

    def check(self, name):
        return next((c for c in self.result.get("checks", []) if c["name"] == name), None)


def _snapshot(folder):
    """Every file and folder below ``folder`` with its content and mode."""
    tree = {}
    for where, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(where, name)
            st = os.lstat(path)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    content = f.read()
            tree[os.path.relpath(path, folder)] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777,
                                                   content, st.st_mtime_ns)
    return tree


def _running_with(needles):
    """Live processes whose command line holds one of ``needles``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % name, "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z" and any(n in cmd for n in needles):
            found.append((int(name), cmd[:160]))
    return found


class _Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


EXPECTED_ENTRIES = {"build", "submission.zip", "result.json", "tmp", "sentinel", "cwd"}


def run_case(case, shared):
    folder = os.path.join(shared.root, case.name)
    os.makedirs(folder)
    sentinel = os.path.join(folder, "sentinel")
    os.makedirs(os.path.join(sentinel, "keep"))
    with open(os.path.join(sentinel, "existing.txt"), "w") as f:
        f.write("original\n")
    with open(os.path.join(sentinel, "keep", "data.bin"), "wb") as f:
        f.write(bytes(range(256)))
    # What a student's machine holds beside the submission: an SSH key in the home, the
    # notebook's class-names file. Never readable by the child.
    secret = "leafsub-secret-%s" % uuid.uuid4().hex
    os.makedirs(os.path.join(sentinel, "home", ".ssh"))
    with open(os.path.join(sentinel, "home", ".ssh", "id_rsa"), "w") as f:
        f.write("-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n" % secret)
    os.makedirs(os.path.join(sentinel, "notebook"))
    with open(os.path.join(sentinel, "notebook", "class_names.txt"), "w") as f:
        f.write("\n".join("Species%d" % i for i in range(1, 9)) + "\n")
    tmp = os.path.join(folder, "tmp")
    cwd = os.path.join(folder, "cwd")
    os.makedirs(tmp)
    os.makedirs(cwd)
    marker = "leafsub-hostile-%s-%s" % (case.name, uuid.uuid4().hex[:8])
    listener = _Listener() if case.loopback else None
    try:
        ctx = Ctx(shared, folder, sentinel, marker, listener.port if listener else 9, secret)
        zip_path = case.make(ctx)
        before = _snapshot(sentinel)
        json_path = os.path.join(folder, "result.json")
        args = ["evaluate", zip_path, "--data", shared.series if case.series else shared.data,
                "--json", json_path,
                "--time-limit", case.time_limit, "--no-detective", *case.args]
        started = time.monotonic()
        proc = run_cli(*args, cwd=cwd, env={"TMPDIR": tmp, "HOSTILE_API_TOKEN": secret},
                       timeout=case.time_limit + 120)
        elapsed = time.monotonic() - started
        leftover = _running_with([marker, tmp])
        deadline = time.monotonic() + 2
        while leftover and time.monotonic() < deadline:
            time.sleep(0.2)
            leftover = _running_with([marker, tmp])
        if listener:
            time.sleep(0.3)
    finally:
        if listener:
            listener.close()
    result = {}
    if os.path.isfile(json_path):
        with open(json_path, encoding="utf-8") as f:
            result = json.load(f)
    stray = sorted(set(os.listdir(folder)) - EXPECTED_ENTRIES)
    stray += ["tmp/" + n for n in os.listdir(tmp)] + ["cwd/" + n for n in os.listdir(cwd)]
    return Outcome(case, proc.returncode, proc.stdout, proc.stderr, elapsed, result, leftover,
                   before, _snapshot(sentinel), stray,
                   listener.accepted if listener else 0, ctx)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, request):
    """Start every case at once (WORKERS at a time); each test waits for its own."""
    shared = Shared(str(tmp_path_factory.mktemp("hostile")))
    selected = {item.callspec.params["name"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_hostile_case"}
    # The model files are made in the background while the other cases run; the slow
    # cases go first (the hang: wall time, little CPU), the ones that never start a child last.
    order = sorted((c for c in CASES if c.name in selected and not _missing(c)),
                   key=lambda c: (not c.child, c.group == "models", -c.time_limit))
    if any(c.group == "models" for c in order):
        threading.Thread(target=shared.model_file, args=("custom.keras",), daemon=True).start()
    pool = concurrent.futures.ThreadPoolExecutor(WORKERS)
    futures = {c.name: pool.submit(run_case, c, shared) for c in order}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)
    if os.environ.get("LEAFSUB_WRITE_VERDICTS"):
        done = {n: f.result() for n, f in futures.items() if f.done() and not f.exception()}
        if len(done) == len(CASES):
            write_doc([done[n] for n in NAMES])


def _first_paragraph(detail):
    return detail.split("\n")[0]


def _missing(case):
    """The isolation the case needs and this machine lacks (the case is then skipped)."""
    from leafsub.evaluator import sandbox
    netns, abi, pidns = sandbox.support()
    have = {"netns": netns, "landlock": bool(abi), "pidns": pidns}
    return [r for r in case.requires if not have[r]]


@pytest.mark.parametrize("name", NAMES)
def test_hostile_case(outcomes, name):
    case = next(c for c in CASES if c.name == name)
    if _missing(case):
        pytest.skip("needs %s, which this machine lacks: the case would escape for real"
                    % ", ".join(_missing(case)))
    out = outcomes[name].result()
    label = "%s: exit %s\nstdout:\n%s\nstderr:\n%s" % (name, out.returncode, out.stdout[-3000:],
                                                       out.stderr[-3000:])
    print(label)
    assert "Traceback" not in out.stderr, label
    assert out.returncode == case.exit, label
    assert out.result, "no JSON result: " + label
    check = out.check(case.check)
    assert check is not None, "no check %r in %s" % (case.check, [
        (c["name"], c["status"]) for c in out.result["checks"]])
    assert check["status"] == case.status, check
    paragraph = _first_paragraph(check["detail"])
    for word in case.words:
        word = word.replace("PORT", str(out.ctx.port))
        assert word.lower() in check["detail"].lower(), (word, check["detail"])
    for word in case.absent:
        word = word.replace("DATA", out.ctx.shared.data)
        assert word not in check["detail"], ("leaked", word, check["detail"])
    for raw in case.stdout_absent:
        assert raw not in out.stdout and raw not in out.stderr, ("printed raw", raw)
    assert len(paragraph) > 20
    # A failing verdict names its problem in the first paragraph: no leafsub traceback there.
    assert "Traceback (most recent call last)" not in paragraph
    if case.exit == 1:
        assert out.result["passed"] is False
        failing = [c for c in out.result["checks"] if c["status"] == "fail"]
        assert failing and all(len(_first_paragraph(c["detail"])) > 20 for c in failing)
    # Nothing escapes.
    assert out.elapsed < case.time_limit + 10, out.elapsed
    assert out.leftover == [], out.leftover
    assert out.sentinel_after == out.sentinel_before
    assert out.stray == [], out.stray
    assert out.connections == 0
    for text in (out.stdout, out.stderr, json.dumps(out.result)):
        assert out.ctx.secret not in text, "the planted secret leaked: " + label
    # The child ran only where the table says it does.
    ran = out.check("isolation") is not None
    assert ran == case.child, (ran, case.child)
    if ran:
        assert out.check("isolation")["status"] == "pass" or "isolation reduced" in \
            out.check("isolation")["detail"]


def test_the_data_cheat_scores_100_percent_without_the_read_confinement(tmp_path):
    """The hole the read confinement closes, shown: unconfined, the cheat passes at 100 %."""
    case = dataclasses.replace(next(c for c in CASES if c.name == "read-data-labels"),
                               args=("--no-isolation",))
    out = run_case(case, Shared(str(tmp_path)))
    assert out.returncode == 0, out.stdout[-3000:]
    assert out.result["metrics"]["accuracy"] == 1.0


def test_the_corpus_is_big_enough_and_covers_every_group():
    assert len(CASES) >= 40
    assert {c.group for c in CASES} == {"archive", "layout", "code", "models", "untrusted"}
    assert {c.exit for c in CASES} <= {0, 1}


def test_isolation_is_complete_on_this_machine_or_says_what_is_missing():
    from leafsub.evaluator import sandbox
    iso = sandbox.plan("/tmp")
    if sys.platform == "linux" and all(sandbox.support()[i] for i in (0, 2)) and iso.landlock:
        assert iso.warnings == [] and "private PID namespace" in iso.summary
    else:
        assert iso.warnings and all("isolation reduced" in w for w in iso.warnings)


def test_the_docs_list_every_case_with_its_verdict():
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == sorted(NAMES), set(rows) ^ set(NAMES)
    for case in CASES:
        cells = rows[case.name]
        assert cells[1] == case.group, cells
        assert cells[3] == "`%s`" % case.check, cells
        assert cells[4] == case.status, cells
        assert cells[5] == str(case.exit), cells


# --------------------------------------------------------------------------- the docs

DOC_HEAD = """# Verdicts: what `leafsub evaluate` says about a broken or hostile submission

Every row is a submission that `tests/test_hostile.py` generates and evaluates with
the real CLI (`leafsub evaluate submission.zip --data test.npz`), with the verdict the
test asserts: the check that carries it, its status, the exit code, and the first
sentence of the message. Look a message up here to see what it is about.

This page is generated from the test's table (`LEAFSUB_WRITE_VERDICTS=1 pytest
tests/test_hostile.py`); a test checks that it lists every case with the verdict the
test asserts, so it cannot drift. Paths in the messages are shortened
(`submission.zip`, `SENTINEL` for a folder outside the submission, `DATA` for the
labelled `--data` file, `WORK_DIR` for the evaluator's temporary folder, `PID` for a
process id, `PORT` for a port).

Exit codes: **0** every check passed (warnings allowed), **1** a check failed: the
submission is at fault (every broken or hostile zip), **2** bad usage or unreadable
input that the *caller* gave (a missing zip path, a missing or unreadable `--data`), never
a problem inside the zip. A traceback from leafsub itself is a bug (exit 3).

For every case the test also checks: no traceback from leafsub, no file created or
changed outside the evaluator's temporary directory (a sentinel folder that the
hostile code aims at stays as it was), no process left running, and a return within
the time limit plus 10 s.

## Isolation: what holds the hostile cases in

The submission runs in a child process (`evaluator/harness.py`, not leafsub), started
by `evaluator/runner.py` under `evaluator/sandbox.py`'s isolation. The `isolation`
check of every report says what this machine gave:

| layer | Linux with user namespaces and Landlock | elsewhere |
|---|---|---|
| network | a private network namespace: no interface but a downed loopback, every connection fails (*Network is unreachable*); the harness also refuses Python-level connections and name lookups and names them in the message | Landlock ABI >= 4 denies TCP; else a warning *isolation reduced*, and only the harness's Python-level guard remains |
| disk writes | Landlock: writes only in the child's own folders below the evaluator's temporary directory (the submission, its home, its temporary and scratch folders, the folder it saves its predictions in; *Permission denied* elsewhere); `HOME` and `TMPDIR` point inside it. The rest of the work dir (the harness, its request, the image batches, the files leafsub writes for a command) is leafsub's: the child reads it, never writes it | a warning *isolation reduced* |
| disk reads | Landlock: reads only the extracted submission, the work dir (the image batches leafsub hands over), the child's Python installation (its prefixes, `sys.path` and the folders of the libraries it maps, asked of that interpreter: this Python, a `--runtime` venv or `--python`), the system's programs and libraries, `/dev/null`, `/dev/urandom`, a few kernel facts (`/proc/cpuinfo`) and its own `/proc/self`. Never the `--data` file, the home, SSH keys, another process's `/proc` (*Permission denied*; the verdict names the file: *model.py tried to read X: submissions cannot read files outside the zip*) | a warning *isolation reduced* |
| environment | an allow-list (`PATH`, locale, time zone, `LD_LIBRARY_PATH`, `TF_*`, `CUDA_*`, thread settings): no token, no variable naming the `--data` file | same |
| processes | a private PID namespace: every process the submission starts (even after `setsid()` or a double fork) dies with the child; the kernel ends the namespace | its session and its descendants are killed; a warning says a detached process could survive |
| signals | the submission cannot see or signal processes outside its PID namespace; Landlock ABI >= 6 also scopes signals | - |
| privileges (everywhere on Linux) | every capability dropped (effective, permitted, inheritable, ambient and the bounding set, so `exec` cannot give them back) and `no_new_privs`, after the namespaces and the ruleset: when leafsub runs as root (a container, Colab, CI) the child is still refused device nodes, the host name, the kernel log, immutable files (*Operation not permitted*), and its work dir is always removable. The child is not started if root's capabilities cannot be dropped | - |
| limits (everywhere) | time (`--time-limit`, the whole replay); memory (`--memory-limit`): the resident memory of the child's whole process tree (shared pages counted once) *plus* what it holds outside its resident pages, measured through its descriptors every second (memfd and `/dev/shm` files, pipe buffers; the kernel bounds an unprivileged user's pipe buffers too); processes (at most 64) and threads (at most 1024: a thread is a process to the kernel); open descriptors (4096); output (64 MB printed: stopped; more than 1 MB: a warning); file size (2 GB: *File too large*); disk (4 GB written below the child's folders beyond the extracted zip, files deleted but kept open included, and 100,000 new entries; measured every 0.25 s, every second past 2,000 new entries). Each has its own verdict (*stopped at the memory limit*, *stopped for running N threads*, *stopped at the disk budget*, ...). A cgroup v2 (`memory.max`, `pids.max`) and a size-limited tmpfs are not used: the limits are measured by the parent, so what a submission does between two scans passes until the next one (`disk-budget` below allocates with `fallocate`, gigabytes in milliseconds, and is stopped past the budget, not at it) | same |

`--no-isolation` turns the network and disk layers off on purpose (a warning in the
report); the process namespace and the limits stay.

A read the confinement refused but the submission got past (it caught the error) is a
`files` warning naming the file, except a read of the labelled `--data` file, which
fails the replay: that is an attempt to see the answers.

## What leafsub trusts: nothing the submission touched

The parent process (leafsub) never follows a path the child could have written and
never believes a reply it did not check (`evaluator/untrusted.py`):

- the build's manifest and goldens are read once, from the extracted zip, before the
  child starts; `model.py` is parsed before anything runs, at most 2 MB of it, in a
  forked process limited in memory (768 MB more than leafsub holds) and time (30 s);
- every file the child hands back (its predictions) is opened by descriptor:
  `O_NOFOLLOW` (a symbolic link is refused, never followed), `O_NONBLOCK` (a FIFO cannot
  hang the open), regular files only, at most 2 GB; a `.npy` is read without pickle, its
  header's declared size checked against the file's size before anything is allocated;
- the files leafsub writes for a command (index files, probe images) are in its own part
  of the work dir, created with `O_EXCL | O_NOFOLLOW`: a name the submission planted is
  never written through;
- every reply on the harness's channel is checked: at most 4 MB a line, 32 levels of
  nesting, each field of its type, the fields the parent reads present;
- a bad file or reply is the submission's fault: a failed check that says what was
  wrong (*handed back a file the harness never writes: ... is a symbolic link*, *sent a
  reply nested deeper than 32 levels on the harness's reply channel*), exit 1, never a
  leafsub traceback (exit 3), never a hang;
- text from the submission (its messages, its exceptions) is printed on the terminal with
  its control characters escaped (`\\x1b[32mPASS` is shown as such, never as a green
  PASS); the HTML report escapes it as HTML.

What a submission can still do in its own process: the harness runs the submission's
code in the same Python interpreter, so nothing in that process is out of its reach.
The harness binds what it needs before the import (its reply channel, its own `.npy`
writer instead of `numpy.save`, a snapshot of numpy's functions, `tf.constant`,
`torch.from_numpy`), so replacing a module attribute (`numpy.save = ...`,
`json.dumps = ...`) changes nothing it does. But the submission can still reach any
object through `gc` or a stack frame, patch numpy's or TensorFlow's internals (which the
bound functions call), write to the reply descriptor itself, or rewrite its own
predictions file after the harness wrote it. It can therefore make the *harness* report
what it likes about its own outputs, the way a submission on the platform could fool
that platform's harness. It cannot make leafsub's process follow a link, block, crash,
allocate without bound or believe a malformed reply (those are checked outside the
child), nor reach anything the isolation above refuses. The labels are never in the
child's reach, so a forged reply cannot forge the score: the score is computed by the
parent from the predictions file, whose content is whatever the submission answered.

Attempts the submission catches and ignores (`network-swallowed`, `daemon-escape`,
`kill-evaluator` below) change nothing outside and do not fail the replay: the platform
would not notice them either. The harness still records every network attempt (its
replies carry them under `network`, and its log says `[leafsub harness] blocked a
connection to ...`), and the runner records the processes still running when the child
is told to quit; the report shows them as `network` and `processes` warnings.

## The cases

"""

DOC_COLUMNS = ("| case | group | what the user did | check | status | exit "
               "| message (first sentence) |\n|---|---|---|---|---|---|---|\n")


def _doc_message(out, detail):
    from leafsub.textsafe import escape

    text = escape(_first_paragraph(detail))   # a message may hold escape sequences
    text = text.replace(out.ctx.zip, "submission.zip").replace(out.ctx.sentinel, "SENTINEL")
    text = text.replace(out.ctx.shared.data, "DATA")
    text = text.replace(str(out.ctx.port), "PORT") if out.case.loopback else text
    text = re.sub(re.escape(os.path.join(out.ctx.dir, "tmp")) + r"/leafsub-eval-[^/]+/submission",
                  "SUBMISSION_FOLDER", text)
    text = re.sub(re.escape(os.path.join(out.ctx.dir, "tmp")) + r"/leafsub-eval-[^/']+",
                  "WORK_DIR", text)
    text = re.sub(r"/proc/\d+/", "/proc/PID/", text)
    # The first sentence: up to the first '. ' followed by a capital (or a backquote).
    ends = [m.start() for m in re.finditer(r"\. (?=[A-Z`(])", text)
            if m.start() > 40 and not text[:m.start() + 1].endswith("e.g.")]
    sentence = text[:ends[0] + 1] if ends else text
    if len(sentence) > 300:
        sentence = sentence[:297] + "..."
    return sentence.replace("|", "\\|")


def write_doc(outs):
    lines = [DOC_HEAD]
    titles = {"archive": "Archives", "layout": "Layout", "code": "Code", "models": "Models",
              "untrusted": "What the submission touched, not trusted"}
    for group in ("archive", "layout", "code", "models", "untrusted"):
        lines.append("### %s\n\n" % titles[group])
        lines.append(DOC_COLUMNS)
        for out in outs:
            case = out.case
            if case.group != group:
                continue
            check = out.check(case.check)
            lines.append("| `%s` | %s | %s%s | `%s` | %s | %d | %s |\n" % (
                case.name, case.group, case.what.replace("|", "\\|"),
                "" if case.child else " (the submission never runs)", case.check,
                case.status, case.exit, _doc_message(out, check["detail"])))
        lines.append("\n")
    lines.append(_kept_sections())
    with open(DOC, "w", encoding="utf-8") as f:
        f.write("".join(lines))


# Sections of the page that other tests generate (test_detective.py: the detective's
# verdicts), from their marker to the end: kept as they are.
KEPT_MARKER = "<!-- generated by tests/test_detective.py"


def _kept_sections():
    try:
        with open(DOC, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return ""
    return text[text.index(KEPT_MARKER):] if KEPT_MARKER in text else ""
