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


def interleaved(fns, repeats=5, warmup=1, rotate=True, clock=time.perf_counter):
    """Time each callable ``repeats`` times, interleaved; returns {name: [seconds, ...]}.

    With ``rotate`` the order turns by one every repetition (A,B,C / B,C,A / C,A,B ...),
    so that no callable always runs right after the same other one: a position effect
    (work the previous callable leaves behind, caches, clock changes) then spreads
    over all of them instead of biasing one ratio.

    ``clock``: ``time.perf_counter`` (wall) by default; ``time.process_time`` (CPU seconds
    of all this process's threads) is less disturbed by other processes on a busy machine.
    """
    times = {name: [] for name in fns}
    names = list(fns)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    for r in range(repeats):
        k = r % len(names) if rotate else 0
        for name in names[k:] + names[:k]:
            start = clock()
            fns[name]()
            times[name].append(clock() - start)
    return times


def ratio_stats(numerator, denominator):
    """min / median / max of the per-repetition ratios numerator[i] / denominator[i]."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return min(ratios), statistics.median(ratios), max(ratios)


RESULTS = []  # every report() line of this run, for summary()


def _line(label, stats, bar, higher_is_better):
    lo, med, hi = stats
    verdict = ""
    if bar is not None:
        ok = med >= bar if higher_is_better else med <= bar
        verdict = "  [bar %s %.2f: %s]" % (">=" if higher_is_better else "<=", bar,
                                           "met" if ok else "MISSED")
    return "%-60s min %7.3f  median %7.3f  max %7.3f%s" % (label, lo, med, hi, verdict)


def report(label, stats, bar=None, higher_is_better=False):
    """Print one line: the ratio's min/median/max and whether the median meets the bar."""
    RESULTS.append((label, stats, bar, higher_is_better))
    print(_line(label, stats, bar, higher_is_better))
    sys.stdout.flush()
    return stats[1]


def summary(title, extra=None):
    """Print the table of every ratio reported in this run, then the machine line."""
    print("\n== %s: ratios, min / median / max over the repetitions ==" % title)
    for row in RESULTS:
        print(_line(*row))
    print("machine: %s" % machine())
    if extra:
        print(extra)
    sys.stdout.flush()


def machine():
    """CPU model, cores, memory, Python, and TensorFlow/Keras when they are already imported."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem = ", %.0f GB RAM" % (kb / 1e6)
    except (OSError, StopIteration, ValueError):
        pass
    text = "%s, %d cores%s, Python %s" % (cpu, os.cpu_count(), mem, platform.python_version())
    if "tensorflow" in sys.modules:
        text += ", TensorFlow %s" % sys.modules["tensorflow"].__version__
    if "keras" in sys.modules:
        text += ", Keras %s" % sys.modules["keras"].__version__
    text += "; load average %.1f (1 min)" % os.getloadavg()[0]
    return text


def work_dir(default_name="leafsub-bench"):
    import tempfile

    return os.path.join(tempfile.gettempdir(), default_name)
