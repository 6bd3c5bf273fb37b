"""Bench 2: test-time augmentation with k views costs <= 1.1 x k single passes, and an
ensemble of m members <= 1.1 x the sum of its members' single passes.

Runs the shared runtime (the same code model.py embeds) on random-weight
keras.applications models at 96x96, batch 32, timings interleaved:

  TTA       ``Member.predict_proba(x, views)`` (the k views made on the batch at once,
            fed to the model in slices of max(32, runtime.MIN_CALL_BATCH) = 64,
            runtime.call_in_slices) vs
            ``Member.predict_proba(x)`` (one view), ratio time(k views) / (k x time(1 view)),
            bar <= 1.1; side by side, in the same repetitions, the previous way (one
            model call on all k x 32 stacked views), and the largest difference between
            the two ways' probabilities;
  ensemble  ``Ensemble(members).predict_proba(x)`` vs each member's own single pass,
            ratio time(ensemble) / sum of the members' times, bar <= 1.1; once with
            different architectures, once with m copies of one model (m x the single pass).

  breakdown MobileNetV2, k=8: making the views alone, one model call on the k x 32 stacked
            batch, and k calls on 32, each against k single passes / k calls on 32.

    python bench/bench_tta_ensemble.py [--repeats 3] [--quick] [--tta-only] [--breakdown-only]
                                       [--work DIR]

--quick: MobileNetV2 only, k = 2 and 4, m = 2 (a smoke run). --tta-only: the TTA ratios
only. --clock cpu: CPU seconds of the process instead of wall time.
Timed units are --calls (default 4) calls each; the order rotates every repetition.
"""

import argparse
import functools
import os
import tempfile
import time

import numpy as np

import common
from common import export_run, machine, ratio_stats, report, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calls", type=int, default=4,
                        help="model calls per timed unit (longer units, less noise)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tta-only", action="store_true", help="only the TTA ratios")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: time.perf_counter; cpu: time.process_time, the CPU seconds "
                             "of this process (steadier when other processes share the cores)")
    parser.add_argument("--breakdown-only", action="store_true",
                        help="only the breakdown of MobileNetV2 k=8 (where the time goes)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "leafsub-bench"))
    args = parser.parse_args()

    from leafsub.card import read_card
    from leafsub.submission_template import runtime

    print("machine: %s; clock: %s" % (machine(), args.clock))
    global interleaved
    interleaved = functools.partial(common.interleaved, clock={
        "wall": time.perf_counter, "cpu": time.process_time}[args.clock])
    archs = ["mobilenet_v2", "efficientnet_b0", "resnet50"]
    tta_archs, ks, ms = archs[:2], (2, 4, 8), (2, 3)
    if args.quick:
        archs, tta_archs, ks, ms = archs[:2], archs[:1], (2, 4), (2,)
    if args.tta_only:
        archs = tta_archs
    members = []
    for arch in archs:
        run = export_run(arch, os.path.join(args.work, arch))
        card = read_card(run)
        members.append(runtime.Member(os.path.join(run, "saved_model"), card["preprocess"],
                                      (card["input"]["height"], card["input"]["width"]),
                                      card["output"]))
    n = args.calls

    def times(fn):
        return lambda: [fn() for _ in range(n)]

    x = np.random.default_rng(0).uniform(0, 255, (args.batch, 96, 96, 3)).astype(np.float32)

    all_views = {2: ["identity", "hflip"],
                 4: ["identity", "hflip", "vflip", "rot180"],
                 8: ["identity", "hflip", "vflip", "rot90", "rot180", "rot270",
                     "crop_center", "crop_tl"]}
    if args.breakdown_only:
        breakdown(members[0], archs[0], x, all_views[8], args.repeats, times)
        summary("bench_tta_ensemble, breakdown")
        return

    print("\nTTA: time(k views) / (k x time(1 view)), batch %d, %d calls per timed unit"
          % (args.batch, n))
    for member, arch in zip(members, tta_archs):
        for k in ks:
            views = all_views[k]
            t = interleaved({"one": times(lambda: member.predict_proba(x)),
                             "k": times(lambda v=views: member.predict_proba(x, v)),
                             "stacked": times(lambda v=views: one_stacked_call(member, x, v))},
                            args.repeats)
            ones = [s * k for s in t["one"]]
            report("%s, k=%d, slices of %d (now)" % (
                arch, k, min(k * args.batch, max(args.batch, runtime.MIN_CALL_BATCH))),
                   ratio_stats(t["k"], ones), 1.1)
            report("%s, k=%d, one call of %d (before)" % (arch, k, k * args.batch),
                   ratio_stats(t["stacked"], ones), 1.1)
            diff = np.abs(member.predict_proba(x, views) - one_stacked_call(member, x, views))
            print("%s, k=%d: largest |now - before| in the probabilities: %.3g"
                  % (arch, k, float(diff.max())))
    if args.tta_only:
        summary("bench_tta_ensemble, TTA only (time ratios: <= 1.1 is the bar)")
        return

    print("\nEnsemble: time(ensemble of m) / sum of the members' single passes, batch %d"
          % args.batch)
    for m in ms:
        ensemble = runtime.Ensemble(members[:m], method="mean")
        fns = {"ens": times(lambda e=ensemble: e.predict_proba(x))}
        for i, member in enumerate(members[:m]):
            fns["m%d" % i] = times(lambda mm=member: mm.predict_proba(x))
        t = interleaved(fns, args.repeats)
        singles = [sum(t["m%d" % i][r] for i in range(m)) for r in range(args.repeats)]
        report("ensemble of %d (%s)" % (m, "+".join(archs[:m])), ratio_stats(t["ens"], singles),
               1.1)
        same = runtime.Ensemble([members[0]] * m, method="mean")
        t = interleaved({"ens": times(lambda e=same: e.predict_proba(x)),
                         "one": times(lambda: members[0].predict_proba(x))}, args.repeats)
        report("ensemble of %d x mobilenet_v2 vs %d x one" % (m, m),
               ratio_stats(t["ens"], [s * m for s in t["one"]]), 1.1)

    breakdown(members[0], archs[0], x, all_views[8], args.repeats, times)
    summary("bench_tta_ensemble (time ratios: <= 1.1 is the bar)")


interleaved = common.interleaved   # main() binds the --clock


def one_stacked_call(member, x, views):
    """Member.predict_proba as it was before the slicing: one call on all k x N views."""
    from leafsub.submission_template import runtime

    batch = runtime.normalize(runtime.tta_batch(runtime.resize(x, member.input_size), views),
                              member.spec)
    return runtime.merge_views(runtime.to_probabilities(member.call(batch), member.output_kind),
                               len(views))


def breakdown(member, arch, x, views, repeats, times):
    """Where the time of k views goes: making the views vs one k x N model call vs k calls."""
    from leafsub.submission_template import runtime

    k, n = len(views), int(x.shape[0])
    print("\nBreakdown, %s, k=%d, batch %d" % (arch, k, n))
    stacked = runtime.normalize(runtime.tta_batch(x, views), member.spec)
    parts = [stacked[i * n:(i + 1) * n] for i in range(k)]
    single = runtime.normalize(x, member.spec)
    t = interleaved({
        "one": times(lambda: member.predict_proba(x)),
        "views": times(lambda: runtime.normalize(runtime.tta_batch(x, views), member.spec)),
        "stacked": times(lambda: member.call(stacked)),
        "split": times(lambda: [member.call(p) for p in parts]),
        "call1": times(lambda: member.call(single)),
    }, repeats)
    report("%s k=%d: making the views / (k x single pass)" % (arch, k),
           ratio_stats(t["views"], [s * k for s in t["one"]]))
    report("%s k=%d: one model call on k x %d / (k x call on %d)" % (arch, k, n, n),
           ratio_stats(t["stacked"], [s * k for s in t["call1"]]))
    report("%s k=%d: k calls on %d (views split) / (k x call on %d)" % (arch, k, n, n),
           ratio_stats(t["split"], [s * k for s in t["call1"]]))
    # The model's efficient batch size: the cost per image of one call on B images.
    sizes = [b for b in (64, 128, 256) if b <= k * n]
    t = interleaved(dict({"call1": times(lambda: member.call(single))},
                         **{"b%d" % b: times(lambda b=b: member.call(stacked[:b])) for b in sizes}),
                    repeats)
    for b in sizes:
        report("%s: one call on %d / (%d x call on %d)" % (arch, b, b // n, n),
               ratio_stats(t["b%d" % b], [s * b / n for s in t["call1"]]))


if __name__ == "__main__":
    main()
