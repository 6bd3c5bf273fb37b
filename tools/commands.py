"""Commands of the data tools and the demo (``leafsub data ...``, ``leafsub demo``),
registered by leafsub.cli.

Thin click shells: ``leafsub data`` over tools/stats.py, tools/dedupe.py, tools/split.py
and leafsub/datasets/ (every command reads the three pack layouts, a folder of class
sub-folders, an .npz, an .h5, through ``open_pack``); ``leafsub demo`` over
:func:`leafsub.tools.demo.run_demo`.
"""

import os
import sys
import time

import click

from ..errors import UsageError
from ..jsonfiles import dumps, write_atomic


def _parse_size(value):
    """'96' -> (96, 96); '96x128' -> (96, 128) (height x width)."""
    if value is None:
        return None
    text = str(value).lower().replace(",", "x").replace(" ", "")
    parts = text.split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or min(numbers) < 1:
        raise UsageError("--size %r: give one number (96) or HEIGHTxWIDTH (96x128)." % value)
    return tuple(numbers)


def _progress(label):
    """A progress callback printing to stderr at most twice a second, only on a terminal."""
    if not sys.stderr.isatty():
        return None
    state = {"last": 0.0}

    def report(done, total):
        now = time.time()
        if now - state["last"] > 0.5 or done == total:
            state["last"] = now
            click.echo("\r%s %d/%d" % (label, done, total), err=True, nl=done == total)

    return report


def _write_json(path, data):
    if path:
        try:
            write_atomic(path, dumps(data))
        except OSError as e:
            raise UsageError("%s: cannot write the JSON result (%s)." % (path, e)) from None


def _short(path, root):
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


@click.group("data")
def data_group():
    """Look at, clean, split and pack a labelled image set.

    \b
    DATA is a folder of class sub-folders (the image_dataset_from_directory
    layout), an .npz with images and labels, or an .h5 with the same datasets.
    \b
      leafsub data stats   DATA             class balance, class weights, image sizes
      leafsub data dedupe  DATA             exact and near-duplicate images
      leafsub data split   DATA -o OUT      stratified train/val/test, duplicates together
      leafsub data pack    DATA -o X.npz    a labelled pack the evaluator reads
    """


# --------------------------------------------------------------------------- stats

def format_stats(r):
    lines = ["%s (%s): %d images, %d classes" % (r["data"], r["kind"], r["n_images"], r["n_classes"])]
    width = max([len("class")] + [len(c["class"]) for c in r["classes"]])
    lines.append("  %-*s  %7s  %6s  %12s  %15s" % (width, "class", "images", "share", "max(n)/n_i",
                                                   "n/(k*n_i)"))
    for c in r["classes"]:
        w1 = "-" if c["weight_max_over_n"] is None else "%.3f" % c["weight_max_over_n"]
        w2 = "-" if c["weight_balanced"] is None else "%.3f" % c["weight_balanced"]
        lines.append("  %-*s  %7d  %5.1f%%  %12s  %15s" % (width, c["class"], c["count"],
                                                          100 * c["share"], w1, w2))
    if r.get("empty_classes"):
        lines.append("imbalance: classes without images: %s" % ", ".join(r["empty_classes"]))
    elif r["imbalance"] is not None:
        lines.append("imbalance (largest class / smallest): %.2f" % r["imbalance"])
    sizes = ", ".join("%dx%d: %d" % (s["height"], s["width"], s["count"]) for s in r["sizes"][:5])
    more = " (+%d more sizes)" % (r["n_sizes"] - 5) if r["n_sizes"] > 5 else ""
    lines.append("image sizes (height x width): %s%s" % (sizes, more))
    if r["n_size_outliers"]:
        lines.append("size outliers: %d image%s" % (r["n_size_outliers"], "s" if r["n_size_outliers"] > 1 else ""))
        for o in r["size_outliers"][:10]:
            where = _short(o["file"], r["data"]) if o["file"] else "#%d" % o["index"]
            lines.append("  %s  %dx%d  (%s)" % (where, o["height"], o["width"], o["reason"]))
        if r["n_size_outliers"] > 10:
            lines.append("  ... and %d more (all of them in --json)" % (r["n_size_outliers"] - 10))
    else:
        lines.append("size outliers: none")
    if "pixels" in r:
        p = r["pixels"]
        if p["mean"] is not None:
            lines.append("pixels (RGB, 0..255): mean %s, std %s" % (
                ", ".join("%.1f" % v for v in p["mean"]), ", ".join("%.1f" % v for v in p["std"])))
        if p["blank"]:
            lines.append("blank images (pixel std < 2): %d, e.g. %s" % (
                len(p["blank"]), p["blank"][0]["file"] or "#%d" % p["blank"][0]["index"]))
    for note in r["notes"]:
        lines.append("note: %s" % note)
    return "\n".join(lines)


@data_group.command("stats")
@click.argument("data", type=click.Path())
@click.option("--pixels", is_flag=True, help="Also decode every image: per-channel mean/std, blank images.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the result as JSON here.")
def stats_command(data, pixels, json_path):
    """Class counts, imbalance, class weights, image sizes and size outliers.

    \b
    Class weights are given both ways: max(n)/n_i (the largest class weighs 1) and
    n/(k*n_i) (scikit-learn's "balanced"; pass it to model.fit(class_weight=...)).
    A size outlier is 1.5x off the median height or width, or 1.25x off its aspect.
    \b
    Example:
      leafsub data stats training_set/ --json stats.json
    """
    from .stats import data_stats

    result = data_stats(data, pixels=pixels, progress=_progress("decoding"))
    _write_json(json_path, result)
    click.echo(format_stats(result))


# --------------------------------------------------------------------------- dedupe

def format_dedupe(r, moves=None, show=5):
    lines = ["%s: %d images; %d duplicate group%s, %d duplicate image%s (%d exact cop%s) "
             "[%.1f s]" % (r["data"], r["n_images"], r["n_groups"], "" if r["n_groups"] == 1 else "s",
                           r["n_duplicates"], "" if r["n_duplicates"] == 1 else "s", r["n_exact"],
                           "y" if r["n_exact"] == 1 else "ies",
                           r["timing"]["hash_s"] + r["timing"]["group_s"])]
    for gi, g in enumerate(r["groups"], 1):
        classes = ", ".join(str(c) for c in g["classes"])
        flag = "  <- different labels" if g["conflicting_labels"] else ""
        lines.append("group %d: %d images, %s, class %s%s" % (gi, g["size"], g["kind"], classes, flag))
        for m in g["members"][:show]:
            where = _short(m["file"], r["data"]) if "file" in m else "#%d" % m["index"]
            how = ("exact copy of #%d" % m["exact_copy_of"] if m["exact_copy_of"] is not None
                   else "pHash distance %d" % m["distance"])
            lines.append("  %s  (%s)" % (where, how if m is not g["members"][0] else "first"))
        if g["size"] > show:
            lines.append("  ... and %d more" % (g["size"] - show))
        if gi >= 20 and len(r["groups"]) > 20:
            lines.append("... and %d more groups (all of them in --json)" % (len(r["groups"]) - 20))
            break
    if r["n_conflicting"]:
        lines.append("warning: %d group%s mix labels: the same picture under two classes is label "
                     "noise." % (r["n_conflicting"], "s" if r["n_conflicting"] > 1 else ""))
    if moves is not None:
        lines.append("moved %d file%s to %s (undo list: %s)" % (
            len(moves), "" if len(moves) == 1 else "s", r["moved_to"],
            os.path.join(r["moved_to"], "leafsub-dedupe.json")))
    for note in r["notes"]:
        lines.append("note: %s" % note)
    return "\n".join(lines)


@data_group.command("dedupe")
@click.argument("data", type=click.Path())
@click.option("--threshold", default=None, type=click.IntRange(0, 16), metavar="BITS",
              help="Max pHash Hamming distance (of 64 bits) for a candidate pair [default: 10].")
@click.option("--max-diff", default=None, type=click.FloatRange(0, 255), metavar="LEVELS",
              help="Max mean absolute difference of the 32x32 grey thumbnails for a pair to count "
                   "as duplicates [default: 8].")
@click.option("--move-to", type=click.Path(file_okay=False), metavar="DIR",
              help="Move duplicates out of a class-folder DATA into DIR (same relative paths).")
@click.option("--keep", type=click.Choice(["first", "none"]), default="first", show_default=True,
              help="With --move-to: leave the first image of each group in place, or move them all "
                   "(planted outliers).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the groups as JSON here.")
def dedupe_command(data, threshold, max_diff, move_to, keep, json_path):
    """Find exact and near-duplicate images (re-encoded, resized copies).

    \b
    Exact: same decoded pixels (SHA-256). Near: a 64-bit DCT perceptual hash
    finds candidates (Hamming distance <= --threshold), confirmed by comparing
    32x32 grey thumbnails (mean difference <= --max-diff grey levels, correlation
    >= 0.95). Groups are connected pairs. Nothing is changed unless --move-to.
    \b
    Examples:
      leafsub data dedupe training_set/
      leafsub data dedupe training_set/ --move-to quarantine/ --keep none --json dupes.json
    """
    from . import dedupe

    result = dedupe.find_duplicates(
        data, threshold=dedupe.DEFAULT_THRESHOLD if threshold is None else threshold,
        max_diff=dedupe.DEFAULT_MAX_DIFF if max_diff is None else max_diff,
        progress=_progress("hashing"))
    moves = None
    if move_to:
        moves = dedupe.quarantine(result, move_to, keep=keep)
        result["moved"] = moves
        result["moved_to"] = move_to
    _write_json(json_path, result)
    click.echo(format_dedupe(result, moves))


# --------------------------------------------------------------------------- split

def format_split(r):
    rep = r["report"]
    t = rep["totals"]
    lines = ["%s -> %s (%s, seed %d): train %d, val %d, test %d" % (
        r["data"], r["out"], r["format"], r["seed"], t["train"], t["val"], t["test"])]
    width = max([5] + [len(c["class"]) for c in rep["per_class"]])
    lines.append("  %-*s  %6s  %6s  %6s  %6s" % (width, "class", "total", "train", "val", "test"))
    for c in rep["per_class"]:
        lines.append("  %-*s  %6d  %6d  %6d  %6d" % (width, c["class"], c["total"], c["train"],
                                                      c["val"], c["test"]))
    lines.append("largest deviation from the requested fractions: %.2f image%s per class" % (
        rep["max_deviation"], "" if rep["max_deviation"] == 1 else "s"))
    if r["duplicate_groups"]:
        lines.append("duplicates kept on one side: %d groups (%d images)" % (
            len(r["duplicate_groups"]), r["n_grouped_images"]))
    for note in r["notes"]:
        lines.append("note: %s" % note)
    return "\n".join(lines)


@data_group.command("split")
@click.argument("data", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--val", type=click.FloatRange(0, 1, max_open=True), required=True,
              help="Validation fraction, e.g. 0.2.")
@click.option("--test", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Test fraction (0: no test split).")
@click.option("--seed", default=0, show_default=True, help="Which images go where.")
@click.option("--format", "fmt", type=click.Choice(["folders", "npz"]), default="folders",
              show_default=True, help="Class sub-folders per split, or one .npz per split.")
@click.option("--size", metavar="H[xW]", help="Resize to this size (needed for npz when sizes differ).")
@click.option("--compress", is_flag=True, help="With --format npz: deflate the .npz files.")
@click.option("--no-dedupe", is_flag=True, help="Do not group near-duplicates (faster; leaks possible).")
@click.option("--force", is_flag=True, help="Replace a non-empty output folder.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the result as JSON here.")
def split_command(data, out, val, test, seed, fmt, size, compress, no_dedupe, force, json_path):
    """Stratified train/val[/test] split, near-duplicates kept on one side.

    \b
    Every class is split in the requested proportions, within one image per class
    (largest remainder). Exact and near-duplicate images (as found by `leafsub data
    dedupe`) are placed together, so a copy in validation cannot flatter the model.
    OUT/split.json records which image went where.
    \b
    Examples:
      leafsub data split training_set/ -o splits/ --val 0.2 --test 0.1 --seed 42
      leafsub data split data.npz -o splits/ --val 0.2 --format npz
    """
    from .split import split_data

    result = split_data(data, out, val, test=test, seed=seed, fmt=fmt, size=_parse_size(size),
                        force=force, keep_duplicates_together=not no_dedupe, compress=compress,
                        progress=_progress("writing"))
    _write_json(json_path, {k: v for k, v in result.items() if k != "members"})
    click.echo(format_split(result))


# --------------------------------------------------------------------------- pack

@data_group.command("pack")
@click.argument("data", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .npz to write.")
@click.option("--size", metavar="H[xW]", help="Resize to this size (needed when image sizes differ).")
@click.option("--compress", is_flag=True, help="Deflate (smaller; readers then stream it in order).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write a summary as JSON here.")
def pack_command(data, output, size, compress, force, json_path):
    """Write a labelled .npz pack, the format `leafsub evaluate --data` reads.

    \b
    images: uint8 [N, H, W, 3] RGB, labels: int64 [N], class_names: the class
    folder names. Streams: memory does not grow with the number of images.
    Use it to keep a local "hidden" test set next to your submissions.
    \b
    Example:
      leafsub data pack splits/test -o hidden_test.npz --size 96
    """
    from ..datasets import open_pack, write_npz

    if not output.lower().endswith(".npz"):
        raise UsageError("%s: the output must end in .npz." % output)
    if os.path.exists(output) and not force:
        raise UsageError("%s: already exists. Pass --force to replace it." % output)
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise UsageError("%s: the folder %s does not exist." % (output, parent))
    pack = open_pack(data)
    started = time.perf_counter()
    shape = write_npz(pack, output, size=_parse_size(size), compress=compress,
                      progress=_progress("packing"))
    result = {"data": pack.path, "output": os.path.abspath(output), "n_images": shape[0],
              "height": shape[1], "width": shape[2], "n_classes": pack.n_classes,
              "class_names": pack.class_names, "compressed": bool(compress),
              "bytes": os.path.getsize(output), "seconds": round(time.perf_counter() - started, 3),
              "notes": list(pack.notes)}
    _write_json(json_path, result)
    click.echo("%s: %d images %dx%d, %d classes (%.1f MB%s) from %s" % (
        output, shape[0], shape[1], shape[2], pack.n_classes, result["bytes"] / 1e6,
        ", deflated" if compress else "", pack.path))
    for note in pack.notes:
        click.echo("note: %s" % note)


# --------------------------------------------------------------------------- demo

@click.command("demo")
@click.option("--out", "out_dir", default="leafsub-demo", show_default=True,
              type=click.Path(file_okay=False), help="Folder for everything the demo writes.")
@click.option("--quick", is_flag=True, help="A smaller, faster run (fewer images and epochs).")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic data set.")
@click.option("--force", is_flag=True, help="Replace an existing --out folder.")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up log lines too.")
@click.option("--forecast", is_flag=True,
              help="The forecasting flow instead (an2dl-2023-forecast: export_forecaster, "
                   "build for phase 1 and phase 2, evaluate each).")
def demo_command(out_dir, quick, seed, force, verbose, forecast):
    """Run the whole flow on a built-in synthetic leaf data set.

    Generates leaf images, trains two small CNNs with different preprocessing
    conventions, exports them, builds a TTA ensemble for an2dl-2022, evaluates
    it on a held-out split, and shows the evaluator catching a submission that
    forgot the training preprocessing. Nothing is downloaded; a few minutes on
    2 CPU cores.
    """
    if verbose:  # before TensorFlow is imported: leafsub.tflog reads it then
        os.environ["LEAFSUB_VERBOSE"] = "1"
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if forecast:
        from .demo_forecast import run_forecast_demo

        summary = run_forecast_demo(
            out_dir if out_dir != "leafsub-demo" else "leafsub-demo-forecast", seed=seed,
            force=force, epochs=8 if quick else 15)
        if not (all(summary["passed"].values()) and summary["wrong_phase_caught"]):
            sys.exit(1)
        return
    from ..frameworks import require
    require("tensorflow", "leafsub demo (it trains two small Keras models)")
    from .demo import run_demo

    summary = run_demo(out_dir, quick=quick, seed=seed, force=force)
    if not (summary["ensemble_passed"] and summary["mismatch_caught"]):
        sys.exit(1)


COMMANDS = [data_group, demo_command]
