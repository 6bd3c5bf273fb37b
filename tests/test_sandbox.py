"""The child's isolation: no network, writes only below the work dir, its own process group."""

import os
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
    assert "NOT isolated" in isolation.summary
