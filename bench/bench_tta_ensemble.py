"""Bench 2: test-time augmentation with k views costs <= 1.1 x k single passes, and an
ensemble of m members <= 1.1 x the sum of its members' single passes.

Runs the shared runtime (the same code model.py embeds) on random-weight
keras.applications models at 96x96, batch 32, timings interleaved.

    python bench/bench_tta_ensemble.py [--repeats 5] [--work DIR]
"""

import argparse
import os
import tempfile

import numpy as np

from common import export_run, interleaved, machine, ratio_stats, report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "leafsub-bench"))
    args = parser.parse_args()

    from leafsub.card import read_card
    from leafsub.submission_template import runtime

    print("machine: %s" % machine())
    archs = ["mobilenet_v2", "efficientnet_b0", "resnet50"]
    members = []
    for arch in archs:
        run = export_run(arch, os.path.join(args.work, arch))
        card = read_card(run)
        members.append(runtime.Member(os.path.join(run, "saved_model"), card["preprocess"],
                                      (card["input"]["height"], card["input"]["width"]),
                                      card["output"]))
    x = np.random.default_rng(0).uniform(0, 255, (args.batch, 96, 96, 3)).astype(np.float32)

    print("\nTTA: time(k views) / (k x time(1 view)), batch %d" % args.batch)
    for member, arch in zip(members[:2], archs[:2]):
        for k, views in ((2, ["identity", "hflip"]),
                         (4, ["identity", "hflip", "vflip", "rot180"]),
                         (8, ["identity", "hflip", "vflip", "rot90", "rot180", "rot270",
                              "crop_center", "crop_tl"])):
            t = interleaved({"one": lambda: member.predict_proba(x),
                             "k": lambda v=views: member.predict_proba(x, v)}, args.repeats)
            report("%s, k=%d" % (arch, k), ratio_stats(t["k"], [s * k for s in t["one"]]), 1.1)

    print("\nEnsemble: time(ensemble of m) / sum of the members' single passes, batch %d"
          % args.batch)
    for m in (2, 3):
        ensemble = runtime.Ensemble(members[:m], method="mean")
        fns = {"ens": lambda e=ensemble: e.predict_proba(x)}
        for i, member in enumerate(members[:m]):
            fns["m%d" % i] = lambda mm=member: mm.predict_proba(x)
        t = interleaved(fns, args.repeats)
        singles = [sum(t["m%d" % i][r] for i in range(m)) for r in range(args.repeats)]
        report("ensemble of %d (%s)" % (m, "+".join(archs[:m])), ratio_stats(t["ens"], singles),
               1.1)
        same = runtime.Ensemble([members[0]] * m, method="mean")
        t = interleaved({"ens": lambda e=same: e.predict_proba(x),
                         "one": lambda: members[0].predict_proba(x)}, args.repeats)
        report("ensemble of %d x mobilenet_v2 vs %d x one" % (m, m),
               ratio_stats(t["ens"], [s * m for s in t["one"]]), 1.1)


if __name__ == "__main__":
    main()
