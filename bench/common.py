"""Shared helpers for the benchmarks: models of realistic shape, interleaved timing, ratios.

The machines are noisy, so every figure is a ratio of two things measured side
by side in the same run, repetition by repetition (A, B, A, B, ...), and each
benchmark reports min / median / max of that ratio over the repetitions.
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ARCHS = {
    "mobilenet_v2": ("MobileNetV2", "tf"),
    "efficientnet_b0": ("EfficientNetB0", "none"),
    "resnet50": ("ResNet50", "caffe"),
    "convnext_tiny": ("ConvNeXtTiny", "none"),
}


def random_weight_model(arch, size=96, classes=8, seed=0):
    """A keras.applications model with random weights (nothing is downloaded)."""
    import keras

    keras.utils.set_random_seed(seed)
    cls_name, _ = ARCHS[arch]
    cls = getattr(keras.applications, cls_name)
    return cls(weights=None, input_shape=(size, size, 3), classes=classes)


def export_run(arch, run_dir, size=96, classes=8, seed=0):
    """Export a random-weight model of ``arch`` with its preset preprocessing (cached on disk)."""
    import leafsub

    if os.path.exists(os.path.join(run_dir, "leafsub.json")):
        return run_dir
    model = random_weight_model(arch, size, classes, seed)
    leafsub.export(model, run_dir, preprocess=ARCHS[arch][1],
                   class_names=["c%d" % i for i in range(classes)])
    return run_dir


def interleaved(fns, repeats=5, warmup=1):
    """Time each callable ``repeats`` times, interleaved; returns {name: [seconds, ...]}."""
    times = {name: [] for name in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_stats(numerator, denominator):
    """min / median / max of the per-repetition ratios numerator[i] / denominator[i]."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return min(ratios), statistics.median(ratios), max(ratios)


def report(label, stats, bar=None, higher_is_better=False):
    """Print one line: the ratio's min/median/max and whether the median meets the bar."""
    lo, med, hi = stats
    verdict = ""
    if bar is not None:
        ok = med >= bar if higher_is_better else med <= bar
        verdict = "  [bar %s %.2f: %s]" % (">=" if higher_is_better else "<=", bar,
                                           "met" if ok else "MISSED")
    print("%-58s min %6.3f  median %6.3f  max %6.3f%s" % (label, lo, med, hi, verdict))
    sys.stdout.flush()
    return med


def machine():
    import platform

    return "%s, %d cores, Python %s" % (platform.processor() or platform.machine(),
                                        os.cpu_count(), platform.python_version())
