"""The child's isolation: no network, writes only in its own folders below the work dir,
reads only what a submission needs (not the data, the home, another process's /proc), its own
process group, no privilege; what it hands back is read as untrusted."""

import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from leafsub.evaluator import sandbox

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux isolation features")


def run_child(isolation, code, **kwargs):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          preexec_fn=isolation.preexec(), capture_output=True, text=True,
                          timeout=60, cwd=isolation.workdir, **kwargs)


@pytest.fixture
def loopback_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    yield server.getsockname()[1]
    server.close()


def test_child_has_no_network_even_to_loopback(tmp_path, loopback_server):
    isolation = sandbox.plan(tmp_path)
    if not isolation.network:
        pytest.skip("no network namespaces here: %s" % isolation.warnings)
    # Reachable from the parent ...
    socket.create_connection(("127.0.0.1", loopback_server), timeout=5).close()
    # ... but not from the isolated child.
    proc = run_child(isolation, """
        import socket
        try:
            socket.create_connection(("127.0.0.1", %d), timeout=5)
            print("CONNECTED")
        except OSError as e:
            print("BLOCKED", e.errno)
    """ % loopback_server)
    assert proc.stdout.startswith("BLOCKED"), proc.stdout + proc.stderr


def test_child_writes_only_below_its_work_dir(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    outside = tmp_path / "sentinel"
    outside.mkdir()
    (outside / "keep.txt").write_text("original")
    isolation = sandbox.plan(work)
    if not isolation.landlock:
        pytest.skip("no Landlock here: %s" % isolation.warnings)
    proc = run_child(isolation, """
        import os, sys
        open("inside.txt", "w").write("ok")
        results = []
        for action in (lambda: open(sys.argv[1] + "/new.txt", "w"),
                       lambda: open(sys.argv[1] + "/keep.txt", "w"),
                       lambda: os.remove(sys.argv[1] + "/keep.txt"),
                       lambda: os.mkdir(sys.argv[1] + "/d")):
            try:
                action()
                results.append("ALLOWED")
            except PermissionError:
                results.append("DENIED")
        open(os.devnull, "w").write("devnull stays usable")
        print(" ".join(results))
    """.replace("sys.argv[1]", repr(str(outside))))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["DENIED"] * 4
    assert (work / "inside.txt").read_text() == "ok"
    assert sorted(os.listdir(outside)) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "original"


def test_child_leads_its_own_process_group(tmp_path):
    proc = run_child(sandbox.plan(tmp_path), "import os; print(os.getpgid(0) == os.getpid())")
    assert proc.stdout.strip() == "True"


def test_turning_isolation_off_is_reported(tmp_path):
    isolation = sandbox.plan(tmp_path, isolate=False)
    assert not isolation.network and not isolation.landlock
    assert "isolation turned off" in isolation.warnings[0]
    assert "read every file your user can" in isolation.warnings[0]
    assert "NOT isolated" in isolation.summary


# --------------------------------------------------------------------------- read confinement

def _planted(tmp_path):
    """A work dir, and outside it a home with an SSH key and a labelled data file."""
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PLANTED-SECRET-KEY\n")
    data = tmp_path / "test.npz"
    data.write_bytes(b"labels")
    return work, home, data


READER = """
    import os, sys
    def attempt(what, path):
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb") as f:
                    f.read(1)
            print(what, "READ")
        except PermissionError:
            print(what, "DENIED")
    attempt("key", KEY)
    attempt("data", DATA)
    attempt("home", HOME)
    attempt("proc-parent-cmdline", "/proc/%d/cmdline" % PARENT)
    attempt("proc-parent-environ", "/proc/%d/environ" % PARENT)
    attempt("proc-self", "/proc/self/status")
    attempt("work", "inside.txt")
    os.symlink(KEY, "link")
    attempt("link", "link")
    import json, numpy          # the interpreter's stdlib and site-packages
    attempt("urandom", "/dev/urandom")
"""


def test_child_reads_only_what_a_submission_needs(tmp_path):
    work, home, data = _planted(tmp_path)
    (work / "inside.txt").write_text("ok")
    isolation = sandbox.plan(work, deny=[data])
    if not isolation.reads:
        pytest.skip("no Landlock here: %s" % isolation.warnings)
    code = (READER.replace("KEY", repr(str(home / ".ssh" / "id_rsa")))
            .replace("DATA", repr(str(data))).replace("HOME", repr(str(home)))
            .replace("PARENT", str(os.getpid())))
    proc = run_child(isolation, code)
    assert proc.returncode == 0, proc.stderr
    seen = dict(line.split() for line in proc.stdout.split("\n") if line.strip())
    assert seen == {"key": "DENIED", "data": "DENIED", "home": "DENIED",
                    "proc-parent-cmdline": "DENIED", "proc-parent-environ": "DENIED",
                    "proc-self": "READ", "work": "READ", "link": "DENIED",
                    "urandom": "READ"}, proc.stdout
    assert "PLANTED-SECRET-KEY" not in proc.stdout + proc.stderr
    assert "disk reads: only the submission" in isolation.summary


def test_the_machine_facts_a_framework_reads_at_start_stay_readable(tmp_path):
    """TensorFlow 2.12 lists the PCI devices and reads their NUMA nodes when it starts: a
    refusal there was blamed on the submission as a read outside the zip."""
    isolation = sandbox.plan(tmp_path)
    if not isolation.reads:
        pytest.skip("no Landlock here: %s" % isolation.warnings)
    if not os.path.isdir("/sys/bus/pci/devices") or not os.listdir("/sys/bus/pci/devices"):
        pytest.skip("no PCI devices listed in /sys on this machine")
    proc = run_child(isolation, """
        import os
        devices = sorted(os.listdir("/sys/bus/pci/devices"))
        with open(os.path.join("/sys/bus/pci/devices", devices[0], "numa_node")) as f:
            print(len(devices), f.read().strip())
        print(open("/sys/devices/system/cpu/online").read().strip())
    """)
    assert proc.returncode == 0, proc.stderr


def test_the_allow_list_is_asked_of_the_interpreter_the_child_runs():
    paths, problem = sandbox.readable_paths(sys.executable)
    assert problem is None
    for expected in (sys.prefix, sys.base_prefix, os.path.dirname(os.__file__),
                     os.path.dirname(os.path.dirname(np_file()))):
        assert any(expected == p or expected.startswith(p + os.sep) for p in paths), expected
    assert "/" not in paths
    home = os.path.realpath(os.path.expanduser("~"))
    assert not any(home == p or home.startswith(p + os.sep) for p in paths)


def np_file():
    import numpy
    return numpy.__file__


def test_a_sys_path_entry_holding_the_home_is_never_allowed(monkeypatch, tmp_path):
    home = tmp_path / "me"
    (home / "project" / ".venv").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(sandbox, "interpreter_paths", lambda python=None: (
        [str(tmp_path), str(home), str(home / "project" / ".venv"), "/"], None))
    paths, _ = sandbox.readable_paths()
    assert str(home / "project" / ".venv") in paths
    assert str(home) not in paths and str(tmp_path) not in paths and "/" not in paths


def test_another_interpreter_gets_its_own_allow_list(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = str(venv / "bin" / "python")
    paths, problem = sandbox.readable_paths(python)
    assert problem is None
    assert str(venv) in paths and str(venv / "bin") in paths
    assert str(venv / "lib" / ("python%d.%d" % sys.version_info[:2]) / "site-packages") in paths
    # ... and it starts under its confinement.
    work = tmp_path / "work"
    work.mkdir()
    isolation = sandbox.plan(work, python=python)
    if not isolation.reads:
        pytest.skip("no Landlock here")
    proc = subprocess.run([python, "-c", "import json, sys; print(sys.prefix)"],
                          preexec_fn=isolation.preexec(), capture_output=True, text=True,
                          timeout=60, cwd=str(work))
    assert proc.returncode == 0 and proc.stdout.strip() == str(venv), proc.stderr


def test_data_inside_a_folder_the_child_must_read_is_a_warning(tmp_path):
    data = os.path.join(sys.prefix, "test.npz")   # not created: only the path matters
    isolation = sandbox.plan(tmp_path, deny=[data])
    if not isolation.landlock:
        pytest.skip("no Landlock here")
    assert any(data in w and "isolation reduced" in w for w in isolation.warnings)


def test_the_child_environment_keeps_no_token_and_no_data_path(tmp_path):
    data = str(tmp_path / "test.npz")
    env = sandbox.child_environment({
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "TF_NUM_INTEROP_THREADS": "1",
        "GITHUB_TOKEN": "ghp_secret", "AWS_SECRET_ACCESS_KEY": "secret", "HOME": "/root",
        "MY_DATA": data, "LC_ALL": "C.UTF-8 " + data, "PYTHONPATH": "/x",
        "TF_TOKEN_app_terraform_io": "secret", "TF_VAR_db_password": "secret",
        "TF_CLI_CONFIG_FILE": "/root/.terraformrc", "CUDA_AUTH_TOKEN": "secret"}, deny=[data])
    assert env == {"PATH": "/usr/bin", "LANG": "C.UTF-8", "TF_NUM_INTEROP_THREADS": "1"}


def test_a_file_past_the_size_limit_fails_with_file_too_large(tmp_path):
    isolation = sandbox.plan(tmp_path)
    proc = run_child(isolation, """
        import errno
        with open("huge.bin", "wb") as f:
            f.seek(%d)
            try:
                f.write(b"x")
                f.flush()
                print("WRITTEN")
            except OSError as e:
                print("REFUSED", e.errno == errno.EFBIG)
    """ % sandbox.FILE_SIZE_LIMIT)
    assert proc.stdout.strip() == "REFUSED True", proc.stdout + proc.stderr
    assert (tmp_path / "huge.bin").stat().st_size <= sandbox.FILE_SIZE_LIMIT


GUARDED = """
    import importlib.util, os, sys
    spec = importlib.util.spec_from_file_location("harness", "harness.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    guard = harness.ReadGuard([os.getcwd()] + READABLE)
    guard.install()
    for attempt in (lambda: open(KEY).read(), lambda: os.listdir(HOME),
                    lambda: open(KEY, "a"), lambda: open("inside.txt").read(),
                    lambda: open("/proc/self/status").read()):
        try:
            attempt()
        except OSError:
            pass
    print(guard.denied())
"""


def test_the_harness_names_the_reads_the_confinement_refused(tmp_path):
    """ReadGuard in a confined child: refused reads are named; writes, allowed reads are not."""
    work, home, data = _planted(tmp_path)
    (work / "inside.txt").write_text("ok")
    shutil.copy(os.path.join(os.path.dirname(sandbox.__file__), "harness.py"), work)
    isolation = sandbox.plan(work)
    if not isolation.reads:
        pytest.skip("no Landlock here: %s" % isolation.warnings)
    key = str(home / ".ssh" / "id_rsa")
    proc = run_child(isolation, GUARDED.replace("READABLE", repr(isolation.readable))
                     .replace("KEY", repr(key)).replace("HOME", repr(str(home))))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr([key, str(home)])


def test_a_refused_read_of_the_data_fails_and_any_other_warns():
    from leafsub.evaluator import checks

    data = "/data/test.npz"
    fail, = checks.denied_reads(["/etc/shadow", data], [data])
    assert fail["name"] == "files" and fail["status"] == "fail"
    assert data in fail["detail"] and "labelled data" in fail["detail"]
    warn, = checks.denied_reads(["/home/me/class_names.txt"], [data])
    assert warn["status"] == "warn" and "platform will not have this file" in warn["detail"]
    proc, = checks.denied_reads(["/proc/4242/environ"], [data])
    assert proc["status"] == "warn" and "another process's /proc entry" in proc["detail"]
    assert checks.denied_reads([], [data]) == []
    assert checks.reads_of_data(["/data/test.npz/../test.npz", "/x"], [data]) == \
        ["/data/test.npz/../test.npz"]


# --------------------------------------------------------------------------- issue 24

PRIVILEGED = """
import errno, os, socket
out = []
for name, fn in (("mknod", lambda: os.mknod("dev0", 0o20600, os.makedev(1, 3))),
                 ("sethostname", lambda: socket.sethostname(socket.gethostname()))):
    try:
        fn()
        out.append(name + " ALLOWED")
    except OSError as e:
        out.append(name + " " + errno.errorcode[e.errno])
status = open("/proc/self/status").read()
caps = {l.split(":")[0]: int(l.split(":")[1], 16) for l in status.splitlines()
        if l.startswith("Cap")}
print(out, caps["CapEff"], caps["CapBnd"], caps["CapPrm"], "NoNewPrivs:\\t1" in status)
"""


@pytest.mark.parametrize("isolate", [True, False])
def test_the_child_keeps_no_privilege_even_when_leafsub_is_root(tmp_path, isolate):
    """Root or not, with or without isolation: no capability, no_new_privs, mknod refused."""
    work = tmp_path / "work"
    (work / "mine").mkdir(parents=True)
    isolation = sandbox.plan(work, isolate=isolate, writable=[work / "mine"])
    assert "privileges: none" in isolation.summary
    proc = subprocess.run([sys.executable, "-c", PRIVILEGED], preexec_fn=isolation.preexec(),
                          capture_output=True, text=True, timeout=60, cwd=work / "mine")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['mknod EPERM', 'sethostname EPERM'] 0 0 0 True", proc.stdout
    assert not (work / "mine" / "dev0").exists()


def test_the_child_cannot_write_in_the_parents_part_of_the_work_dir(tmp_path):
    """The work dir is the parent's (its index files, probe images): the child writes only in
    its own folders, so it cannot plant a link where the parent writes next."""
    work = tmp_path / "work"
    (work / "mine").mkdir(parents=True)
    isolation = sandbox.plan(work, writable=[work / "mine"])
    if not isolation.landlock:
        pytest.skip("no Landlock here: %s" % isolation.warnings)
    proc = run_child(isolation, """
        import os
        for path in ("v-again.npy.indices.npy", "mine/ok.txt"):
            try:
                os.symlink("/etc/passwd", path)
                print(path, "planted")
            except OSError as e:
                print(path, e.strerror)
    """)
    assert proc.stdout.splitlines() == ["v-again.npy.indices.npy Permission denied",
                                        "mine/ok.txt planted"], proc.stdout + proc.stderr


def test_what_the_child_hands_back_is_read_by_descriptor_and_refused_precisely(tmp_path):
    """A link, a FIFO (no hang), a pickle, a lying header: each a sentence, never followed."""
    import time

    import numpy as np

    from leafsub.evaluator import untrusted

    secret = tmp_path / "secret.npy"
    np.save(secret, np.arange(3))
    (tmp_path / "link.npy").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo.npy")
    np.save(tmp_path / "pickle.npy", np.array([{}], dtype=object), allow_pickle=True)
    with open(tmp_path / "huge.npy", "wb") as f:
        header = "{'descr': '<i8', 'fortran_order': False, 'shape': (100000000000,), }"
        header += " " * (117 - len(header)) + "\n"
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    (tmp_path / "short.npy").write_bytes(b"\x93NUMPY")
    expected = {"link.npy": "symbolic link", "fifo.npy": "a FIFO",
                "pickle.npy": "Python objects", "huge.npy": "declares 100000000000 elements",
                "short.npy": "not a .npy", "missing.npy": "missing"}
    for name, words in expected.items():
        started = time.monotonic()
        with pytest.raises(untrusted.Untrusted, match=words):
            untrusted.load_npy(tmp_path / name)
        assert time.monotonic() - started < 2
    assert untrusted.load_npy(secret).tolist() == [0, 1, 2]
    with pytest.raises(untrusted.Untrusted, match="larger|more than"):
        untrusted.load_npy(secret, limit=16)
    # The parent's own files: never written through a planted link.
    (tmp_path / "probe-images.npy").symlink_to(tmp_path / "target.npy")
    untrusted.save_npy(tmp_path / "probe-images.npy", np.zeros(2))
    assert not (tmp_path / "target.npy").exists()
    assert not os.path.islink(tmp_path / "probe-images.npy")


def test_a_forged_reply_is_refused_for_its_size_depth_and_types():
    from leafsub.evaluator import untrusted

    with pytest.raises(untrusted.Untrusted, match="nested deeper"):
        untrusted.parse_json(b"[" * 200000)
    with pytest.raises(untrusted.Untrusted, match="more than"):
        untrusted.parse_json(b" " * (untrusted.JSON_LIMIT + 1))
    assert untrusted.parse_json(b'{"error": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')
    for reply, words in (({"progress": "a lot"}, "'progress' is a str"),
                         ({"ok": "yes"}, "'ok' is a str"),
                         ({"ok": True, "n": True}, "'n' is a bool"),
                         ({"ok": False}, "without its 'error'"),
                         ({"ok": True, "types": [1]}, "'types' is a list"),
                         ({"ok": True, "versions": {"numpy": [1]}}, "not strings"),
                         ([], "not an object"), ({}, "without its 'ok'")):
        with pytest.raises(untrusted.Untrusted, match=words):
            untrusted.check_reply(reply)
    with pytest.raises(untrusted.Untrusted, match="'load_s'"):
        untrusted.require({"ok": True}, "load_s")


def test_submission_text_is_printed_with_its_control_characters_escaped():
    from leafsub.evaluator.terminal import format_evaluation
    from leafsub.textsafe import escape

    assert escape("\x1b[32mPASS\x1b[0m\tok\n\x1b]0;t\x07\u202e") == \
        "\\x1b[32mPASS\\x1b[0m\tok\n\\x1b]0;t\\x07\\u202e"
    lines = format_evaluation({"submission": "s.zip", "data": "d.npz", "profile": "p",
                               "n_images": 1, "passed": False, "checks": [
                                   {"name": "predicts", "status": "fail",
                                    "detail": "boom \x1b[32mPASS\nmore \x1b]0;title\x07"}]})
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text and "\\x1b[32mPASS" in text


def test_the_harness_writes_its_predictions_without_numpy_save_and_the_parent_reads_them(
        tmp_path, monkeypatch):
    """The harness's own .npy writer (bound before the submission's import) round-trips every
    output kind through the parent's untrusted reader, whatever numpy.save was replaced by."""
    import importlib.util

    import numpy as np

    from leafsub.evaluator import untrusted

    spec = importlib.util.spec_from_file_location(
        "harness_copy", os.path.join(os.path.dirname(sandbox.__file__), "harness.py"))
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    bound = harness._snapshot(np)
    monkeypatch.setattr(np, "save", lambda *a, **k: None)   # what a submission could do
    path = tmp_path / "out.npy"
    for array in (np.arange(5), np.array(["Species1", "x"]), np.zeros((3, 2), np.float32),
                  np.asfortranarray(np.ones((2, 3))), np.zeros((0,), np.int64),
                  np.array([True, False])):
        harness.write_npy(str(path), array, bound)
        back = untrusted.load_npy(path)
        assert back.dtype == array.dtype and back.shape == array.shape
        assert (back == array).all()
