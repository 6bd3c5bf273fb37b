"""Bench: what the read confinement costs the child's start-up.

Side by side, interleaved repetition by repetition (A, B, C, ...):

  * ``confined``: the child as ``leafsub evaluate`` starts it (private network and PID
    namespaces, Landlock confining writes *and reads* to the allow-list of
    ``sandbox.readable_paths``);
  * ``writes only``: the same without the read rules (the isolation before issue #14);
  * ``none``: no isolation at all (``--no-isolation``; the PID namespace stays);
  * ``confined + hooks``: ``confined`` with the harness's audit hooks installed first
    (its NetworkGuard and the ReadGuard that names refused reads), as the harness runs;
  * ``every layer``: ``confined + hooks`` plus what issue #24 added to the start-up: the
    writes confined to the child's own folders (more Landlock rules), every capability
    dropped with no_new_privs, the descriptor limit (RLIMIT_NOFILE), the harness's
    snapshot of numpy taken before the submission's import. Its ratio to ``confined +
    hooks`` (today's start-up) is the figure issue #24 must keep within 1.1x.

Also timed: one scan of the runner's new limits on a live TensorFlow child (threads of
the tree, memfd and pipe buffers through its descriptors, the disk below its folders),
which the runner repeats while the child works (threads every 0.25 s, descriptors and
disk every 1 s).

Each child runs ``python -c "import numpy, tensorflow; <one tiny conv>"``: the part of the
replay's start-up that the confinement touches (every file the interpreter and
TensorFlow open is checked against the ruleset). Also timed: the interpreter probe that
derives the allow-list (``sandbox.interpreter_paths``, once per interpreter and process),
cold, against a bare ``python -c pass`` of the same interpreter.

    python bench/bench_confine.py [--repeats 5] [--python PATH]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import interleaved, ratio_stats, report, summary

CHILD = ("import numpy as np, tensorflow as tf; "
         "tf.nn.conv2d(tf.zeros((1, 8, 8, 3)), tf.zeros((3, 3, 3, 2)), 1, 'SAME').numpy()")
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "evaluator",
                       "harness.py")
# The same, after installing the harness's audit hooks (NetworkGuard, ReadGuard) as it does.
HOOKED = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('h', %r); "
          "h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h); "
          "h.NetworkGuard(True).install(); h.ReadGuard(sys.argv[1:]).install(); " + CHILD)
# The same with issue #24's start-up work in the child: the descriptor limit, the numpy
# snapshot before the submission's import (the capability drop is in the preexec).
EVERY = HOOKED.replace("h.ReadGuard(sys.argv[1:]).install(); ",
                       "h.ReadGuard(sys.argv[1:]).install(); import resource; "
                       "resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096)); "
                       "import numpy; h._snapshot(numpy); ")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--issue24", action="store_true",
                        help="only today's start-up against every layer, wall and CPU time")
    args = parser.parse_args()

    from leafsub.evaluator import sandbox

    work = tempfile.mkdtemp(prefix="leafsub-bench-confine-")
    harness = shutil.copy(HARNESS, work)   # as the runner does: the child reads its copy
    env = sandbox.child_environment(os.environ)
    mine = os.path.join(work, "mine")   # the child's own folder (issue #24: its only writable one)
    os.makedirs(mine)
    env.update(HOME=mine, TMPDIR=mine, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")

    confined = sandbox.plan(work, python=args.python)
    confined.drop = False   # today's: writes anywhere below the work dir, privileges kept
    every = sandbox.plan(work, python=args.python, writable=[mine, os.path.join(work, "out")])
    if not confined.reads:
        sys.exit("no read confinement on this machine: %s" % confined.warnings)
    writes_only = sandbox.plan(work, python=args.python)
    writes_only.readable = []
    none = sandbox.plan(work, isolate=False, python=args.python)

    def child(isolation, code=CHILD):
        def run():
            proc = subprocess.run([args.python, "-c", code % harness
                                   if code in (HOOKED, EVERY) else code, work]
                                  + confined.readable,
                                  preexec_fn=isolation.preexec(), cwd=work, env=env,
                                  capture_output=True, text=True)
            if proc.returncode:
                sys.exit("child failed:\n" + proc.stderr[-3000:])
        return run

    def probe_cold():
        sandbox._INTERPRETERS.clear()
        sandbox.readable_paths(args.python)

    def bare_start():
        subprocess.run([args.python, "-I", "-c", "pass"], check=True)

    if args.issue24:
        return _issue24(args, child, confined, every, work, env)
    times = interleaved({"confined": child(confined), "writes only": child(writes_only),
                         "none": child(none), "hooks": child(confined, HOOKED),
                         "every": child(every, EVERY)},
                        repeats=args.repeats)
    report("child start, every layer of issue #24 / today's (confined + hooks)",
           ratio_stats(times["every"], times["hooks"]))
    report("child start, reads+writes confined / writes only",
           ratio_stats(times["confined"], times["writes only"]))
    report("child start, reads+writes confined / no isolation",
           ratio_stats(times["confined"], times["none"]))
    report("child start, confined + harness hooks / confined",
           ratio_stats(times["hooks"], times["confined"]))
    probe = interleaved({"probe": probe_cold, "bare": bare_start}, repeats=args.repeats * 2)
    report("allow-list probe (cold) / bare python -I -c pass",
           ratio_stats(probe["probe"], probe["bare"]))
    started = time.perf_counter()
    for _ in range(100):
        sandbox.readable_paths(args.python)
    warm_ms = (time.perf_counter() - started) * 10

    def median_s(xs):
        return sorted(xs)[len(xs) // 2]

    scan_ms = _scan_cost(args.python, every, env, work)
    summary("read confinement start-up", extra=(
        "seconds (median): child confined %.2f, writes only %.2f, none %.2f, confined + hooks "
        "%.2f, every layer %.2f; one scan of the runner's limits on a TF child: threads "
        "%.2f ms, memfd/pipes %.2f ms, disk %.2f ms; probe cold %.3f, bare python %.3f, "
        "probe warm %.3f ms; %d readable paths; python %s" % (
            median_s(times["confined"]), median_s(times["writes only"]), median_s(times["none"]),
            median_s(times["hooks"]), median_s(times["every"]), *scan_ms,
            median_s(probe["probe"]), median_s(probe["bare"]), warm_ms, len(confined.readable),
            args.python)))


def _children_cpu():
    """CPU seconds of every finished descendant (the harness is reaped by the waiter, the
    waiter by us): what the start-up costs, less disturbed by a loaded machine than wall time."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _issue24(args, child, confined, every, work, env):
    runs = {"today": child(confined, HOOKED), "every": child(every, EVERY)}
    wall = interleaved(runs, repeats=args.repeats)
    cpu = interleaved(runs, repeats=args.repeats, clock=_children_cpu)
    report("child start (wall), every layer of issue #24 / today's",
           ratio_stats(wall["every"], wall["today"]), bar=1.1)
    report("child start (CPU of the child), every layer of issue #24 / today's",
           ratio_stats(cpu["every"], cpu["today"]), bar=1.1)
    scan_ms = _scan_cost(args.python, every, env, work)

    def median_s(xs):
        return sorted(xs)[len(xs) // 2]

    summary("issue #24 start-up", extra=(
        "seconds (median): wall today %.2f, every layer %.2f; CPU today %.2f, every layer "
        "%.2f; one scan of the runner's limits on a TF child: threads %.2f ms, memfd/pipes "
        "%.2f ms, disk %.2f ms" % (median_s(wall["today"]), median_s(wall["every"]),
                                   median_s(cpu["today"]), median_s(cpu["every"]), *scan_ms)))


def _scan_cost(python, isolation, env, work):
    """Milliseconds (median of 20) of each scan the runner repeats, on a live TF child."""
    from leafsub.evaluator import runner

    proc = subprocess.Popen([python, "-c", CHILD + "; import time; print('ready', flush=True); "
                             "time.sleep(120)"], preexec_fn=isolation.preexec(), cwd=work,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        proc.stdout.readline()
        out = []
        for fn in (lambda: runner.tree_threads(proc.pid),
                   lambda: runner.held_outside_rss([p for p, _ in
                                                     runner.tree_processes(proc.pid)]),
                   lambda: runner.disk_used(isolation.writable)):
            spent = []
            for _ in range(20):
                started = time.perf_counter()
                fn()
                spent.append((time.perf_counter() - started) * 1000)
            out.append(sorted(spent)[10])
        return out
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
