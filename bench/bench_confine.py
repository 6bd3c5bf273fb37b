"""Bench: what the read confinement costs the child's start-up.

Side by side, interleaved repetition by repetition (A, B, C, ...):

  * ``confined``: the child as ``leafsub evaluate`` starts it (private network and PID
    namespaces, Landlock confining writes *and reads* to the allow-list of
    ``sandbox.readable_paths``);
  * ``writes only``: the same without the read rules (the isolation before issue #14);
  * ``none``: no isolation at all (``--no-isolation``; the PID namespace stays);
  * ``confined + hooks``: ``confined`` with the harness's audit hooks installed first
    (its NetworkGuard and the ReadGuard that names refused reads), as the harness runs.

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()

    from leafsub.evaluator import sandbox

    work = tempfile.mkdtemp(prefix="leafsub-bench-confine-")
    harness = shutil.copy(HARNESS, work)   # as the runner does: the child reads its copy
    env = sandbox.child_environment(os.environ)
    env.update(HOME=work, TMPDIR=work, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")

    confined = sandbox.plan(work, python=args.python)
    if not confined.reads:
        sys.exit("no read confinement on this machine: %s" % confined.warnings)
    writes_only = sandbox.plan(work, python=args.python)
    writes_only.readable = []
    none = sandbox.plan(work, isolate=False, python=args.python)

    def child(isolation, code=CHILD):
        def run():
            proc = subprocess.run([args.python, "-c", code % harness
                                   if code is HOOKED else code, work] + confined.readable,
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

    times = interleaved({"confined": child(confined), "writes only": child(writes_only),
                         "none": child(none), "hooks": child(confined, HOOKED)},
                        repeats=args.repeats)
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

    summary("read confinement start-up", extra=(
        "seconds (median): child confined %.2f, writes only %.2f, none %.2f, confined + hooks "
        "%.2f; probe cold %.3f, bare python %.3f, probe warm %.3f ms; %d readable paths; "
        "python %s" % (
            median_s(times["confined"]), median_s(times["writes only"]), median_s(times["none"]),
            median_s(times["hooks"]),
            median_s(probe["probe"]), median_s(probe["bare"]), warm_ms, len(confined.readable),
            args.python)))


if __name__ == "__main__":
    main()
